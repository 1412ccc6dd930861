"""
The parts of the package that pyproject.toml cannot say (everything else is there).

- Dependencies: the runtime section of requirements.txt, so that the pins
  stay in one file (the test section is not a dependency).
- A built wheel also gets, beside the C{server} package: the dashboard
  (C{web/static}, vendor files included) as C{server/web/static}, the twist
  plugin as C{twisted/plugins/simplestats_plugin.py}, and the Python client
  (C{clients/python/simplestats_client}) when the checkout has it.

Why copied at build time rather than mapped with C{package-dir}: any mapping
outside the checkout's own layout makes setuptools' editable install an import
hook instead of a path entry for the checkout, and Twisted finds plugins only
in C{twisted/plugins} folders on C{sys.path}, so C{twist simplestats} would
stop working in the editable install.  Unmapped, the editable install puts
the checkout on C{sys.path}: the plugin, C{web/static} and the client are
used where they are (L{server.web.webroot} finds the dashboard either way).
"""

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def runtime_requirements(path=os.path.join(HERE, "requirements.txt")):
    """
    The requirement lines of requirements.txt's C{# Runtime} section (up to
    C{# Tests}).
    """
    with open(path) as f:
        lines = [line.strip() for line in f]
    try:
        start = lines.index("# Runtime")
        end = lines.index("# Tests")
    except ValueError:
        raise SystemExit("setup.py: requirements.txt has lost its '# Runtime' or '# Tests' line")
    return [line for line in lines[start + 1:end] if line and not line.startswith("#")]


# (source in the checkout, destination in the wheel, files it must hold)
EXTRAS = [
    ("web/static", "server/web/static", ["index.html", "vendor/jquery.min.js"]),
    ("twisted/plugins/simplestats_plugin.py", "twisted/plugins/simplestats_plugin.py", []),
]
# Copied when the checkout has it.
OPTIONAL = [
    ("clients/python/simplestats_client", "simplestats_client", ["__init__.py"]),
]
HINTS = {"vendor/jquery.min.js": ": run `npm ci` in web/ (scripts/setup.sh does) before building"}
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "dropin.cache")


class build_py_with_extras(build_py):
    """
    Copies the dashboard, the twist plugin and the client into the build.
    """

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the checkout itself is on sys.path
        present = [extra for extra in OPTIONAL if os.path.exists(os.path.join(HERE, extra[0]))]
        for source, destination, needed in EXTRAS + present:
            source = os.path.join(HERE, source)
            for name in needed:
                if not os.path.exists(os.path.join(source, name)):
                    raise SystemExit("setup.py: %s is missing%s"
                                     % (os.path.join(source, name), HINTS.get(name, "")))
            target = os.path.join(self.build_lib, destination)
            if os.path.isdir(source):
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(source, target, ignore=SKIP)
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copyfile(source, target)


setup(
    install_requires=runtime_requirements(),
    cmdclass={"build_py": build_py_with_extras},
)
