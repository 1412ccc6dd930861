"""
Installing the reference systems into the cache directory (bench/.cache/,
ignored by git), once: Etsy statsd 0.9.0 from npm, and carbon 1.1.10 with
whisper from PyPI in a virtualenv of their own (and, for the Graphite render
API's oracle tests, graphite-web 1.1.10 with them in another).

Each install writes a marker file naming what it installed only after it
succeeded, so an interrupted install is redone on the next run.
"""

import json
import os
import shutil
import subprocess
import sys

STATSD_VERSION = "0.9.0"
CARBON_VERSION = "1.1.10"
# The set carbon-cache 1.1.10 was checked to run with under Python 3.11; pinned
# so a new release of one of them cannot change the reference under us.
CARBON_REQUIREMENTS = (
    "carbon==1.1.10",
    "whisper==1.1.10",
    "Twisted==26.10.0",
    "txAMQP==0.8.2",
    "cachetools==8.0.1",
    "urllib3==2.8.0",
)
GRAPHITE_WEB_VERSION = "1.1.10"
# graphite-web requires Django below 3.1; its grammar was written for
# pyparsing 2 (3 renames what it calls).
GRAPHITE_WEB_REQUIREMENTS = (
    "graphite-web==1.1.10",
    "Django==2.2.28",
    "django-tagging==0.4.3",
    "pyparsing==2.4.7",
    "pytz==2025.2",
    "six==1.17.0",
    "cairocffi==1.7.1",
)


class InstallError(RuntimeError):
    """
    A reference could not be installed; the message says what to do.
    """


def _run(argv, log, env=None, cwd=None):
    log("  $ " + " ".join(argv))
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd)
    if done.returncode != 0:
        raise InstallError("%s failed (%d):\n%s%s" % (
            " ".join(argv), done.returncode, done.stdout[-2000:], done.stderr[-3000:]))
    return done


def _marker(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_marker(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def ensure_statsd(cache, log=print, npm="npm"):
    """
    Install statsd 0.9.0 under C{cache}/statsd with npm (no install
    scripts: the optional syslog addon is not needed without a backend).

    @return: the path of its C{stats.js}.
    """
    root = os.path.join(cache, "statsd")
    stats_js = os.path.join(root, "node_modules", "statsd", "stats.js")
    marker = os.path.join(root, "installed.json")
    if (_marker(marker) or {}).get("statsd") == STATSD_VERSION and os.path.exists(stats_js):
        return stats_js
    if shutil.which(npm) is None or shutil.which("node") is None:
        raise InstallError("statsd needs node and npm on PATH (node 20 was used)")
    log("installing statsd %s into %s" % (STATSD_VERSION, root))
    os.makedirs(root, exist_ok=True)
    _run([npm, "install", "--prefix", root, "--no-audit", "--no-fund", "--ignore-scripts",
          "--no-save", "statsd@%s" % STATSD_VERSION], log)
    with open(os.path.join(os.path.dirname(stats_js), "package.json")) as f:
        version = json.load(f)["version"]
    if version != STATSD_VERSION:
        raise InstallError("npm installed statsd %s, not %s" % (version, STATSD_VERSION))
    _write_marker(marker, {"statsd": version})
    return stats_js


def ensure_carbon(cache, log=print, python=None):
    """
    Install carbon 1.1.10 and whisper into a virtualenv at C{cache}/carbon-venv.

    @return: the virtualenv's path.
    """
    return _ensure_venv(os.path.join(cache, "carbon-venv"), CARBON_REQUIREMENTS,
                        "carbon-cache.py", "carbon %s + whisper" % (CARBON_VERSION,), log, python)


def ensure_graphite_web(cache, log=print, python=None):
    """
    Install graphite-web 1.1.10 (with Django 2.2.28, the last release it
    accepts) beside carbon 1.1.10 and whisper into a virtualenv of their
    own at C{cache}/graphite-venv: the oracle of the Graphite render API.

    @return: the virtualenv's path.
    """
    return _ensure_venv(os.path.join(cache, "graphite-venv"),
                        CARBON_REQUIREMENTS + GRAPHITE_WEB_REQUIREMENTS, "carbon-cache.py",
                        "graphite-web %s + carbon %s" % (GRAPHITE_WEB_VERSION, CARBON_VERSION),
                        log, python)


def _ensure_venv(venv, requirements, script, what, log, python):
    """
    A virtualenv at C{venv} holding C{requirements}, made anew unless its
    marker says it holds exactly them.

    C{GRAPHITE_NO_PREFIX} keeps carbon's and graphite-web's setup from
    installing into /opt/graphite instead of the virtualenv.
    """
    marker = os.path.join(venv, "installed.json")
    script = os.path.join(venv, "bin", script)
    wanted = {"requirements": list(requirements)}
    if _marker(marker) == wanted and os.path.exists(script):
        return venv
    log("installing %s into %s" % (what, venv))
    if os.path.exists(venv):
        shutil.rmtree(venv)
    _run([python or sys.executable, "-m", "venv", venv], log)
    env = dict(os.environ, GRAPHITE_NO_PREFIX="True", PIP_DISABLE_PIP_VERSION_CHECK="1")
    _run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--quiet"]
         + list(requirements), log, env=env)
    if not os.path.exists(script):
        raise InstallError("%s installed but %s is missing" % (what, script))
    _write_marker(marker, wanted)
    return venv


def load_whisper(venv):
    """
    Import the whisper module installed in the carbon virtualenv (a single
    standard-library-only file), whatever interpreter runs the harness.
    """
    import glob
    import importlib.util
    found = glob.glob(os.path.join(venv, "lib", "python*", "site-packages", "whisper.py"))
    if not found:
        raise InstallError("whisper.py not found in %s" % venv)
    spec = importlib.util.spec_from_file_location("bench_whisper", found[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
