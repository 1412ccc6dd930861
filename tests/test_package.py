"""
SimpleStats as a Python package: the editable install made by
scripts/setup.sh works from any directory without PYTHONPATH (trial, twist,
the console script, the dashboard), and a wheel built from the checkout holds
everything a fresh virtualenv needs to serve the dashboard.

The commands run are those of the virtualenv running the tests
(C{.venv/bin/trial}, C{.venv/bin/twist}, ...), each from a temporary
directory, with PYTHONPATH removed from the environment.
"""

import os
import shutil
import subprocess
import sys
import urllib.request

import pytest

from serverproc import REPO_ROOT, ServerProcess

BIN = os.path.dirname(sys.executable)
STATIC = os.path.join(REPO_ROOT, "web", "static")
VENDOR_FILE = "vendor/jquery.min.js"
# The Python client, which the wheel holds too when the checkout has it.
CLIENT = os.path.join(REPO_ROOT, "clients", "python", "simplestats_client")
# Bounds for each command, so that a hang fails instead of blocking the suite.
COMMAND_TIMEOUT = 60


def clean_env():
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def run(argv, cwd, timeout=COMMAND_TIMEOUT):
    """
    Run C{argv} in C{cwd} without PYTHONPATH; stdout and stderr together.
    """
    return subprocess.run(argv, cwd=str(cwd), env=clean_env(), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


def get(server, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (server.http_port, path),
                                timeout=10) as response:
        return response.status, response.headers.get("Content-Type"), response.read()


def assert_serves_dashboard(server):
    status, content_type, body = get(server, "/")
    assert (status, content_type) == (200, "text/html"), (status, content_type)
    with open(os.path.join(STATIC, "index.html"), "rb") as f:
        assert body == f.read()
    status, _, body = get(server, "/" + VENDOR_FILE)
    with open(os.path.join(STATIC, VENDOR_FILE), "rb") as f:
        assert (status, body) == (200, f.read())


def started_elsewhere(tmp_path, python):
    """
    A server run by C{python -m server.main} from an empty directory that is
    not the checkout.
    """
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    (tmp_path / "data").mkdir()
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log", env=clean_env(),
                           python=python, cwd=cwd)
    return server.start()


# -- the editable install -----------------------------------------------------


def test_editable_install_is_this_checkout(tmp_path):
    """From another directory the virtualenv imports server and the twist plugin from this checkout."""
    found = run([sys.executable, "-c",
                 "import server, twisted.plugins.simplestats_plugin as p;"
                 " print(server.__file__); print(p.__file__)"], tmp_path)
    assert found.returncode == 0, found.stdout
    assert found.stdout.split() == [
        os.path.join(REPO_ROOT, "server", "__init__.py"),
        os.path.join(REPO_ROOT, "twisted", "plugins", "simplestats_plugin.py"),
    ], "the virtualenv's install is not this checkout: run `pip install -e .` (scripts/setup.sh does)"


def test_trial_from_another_directory(tmp_path):
    """.venv/bin/trial runs the server's unit tests from another directory."""
    result = run([os.path.join(BIN, "trial"), "--temp-directory", str(tmp_path / "trial"),
                  "server.test.test_settings"], tmp_path)
    assert result.returncode == 0, result.stdout
    assert "PASSED" in result.stdout


def test_twist_help_from_another_directory(tmp_path):
    """.venv/bin/twist simplestats --help lists the server's settings."""
    result = run([os.path.join(BIN, "twist"), "simplestats", "--help"], tmp_path)
    assert result.returncode == 0, result.stdout
    assert "--tcp-port=" in result.stdout
    assert "--move-corrupt-aside " in result.stdout  # a switch, as for server.main


def test_console_script_help(tmp_path):
    """.venv/bin/simplestats --help is the server's own flag list."""
    result = run([os.path.join(BIN, "simplestats"), "--help"], tmp_path)
    assert result.returncode == 0, result.stdout
    assert "--retentions VALUE" in result.stdout


def test_twist_unknown_flag_is_a_usage_error(tmp_path):
    """twist simplestats --bogus: usage error (status 64) naming the flag, no traceback."""
    result = run([os.path.join(BIN, "twist"), "simplestats", "--bogus"], tmp_path)
    assert result.returncode == 64, result.stdout
    assert result.stdout.startswith("Error: option --bogus not recognized\n")
    assert "Traceback" not in result.stdout


def test_twist_bad_value_says_what_the_server_says(tmp_path):
    """twist simplestats --tcp-port abc: usage error with the server's own message, no traceback."""
    result = run([os.path.join(BIN, "twist"), "simplestats", "--tcp-port", "abc",
                  "--data-dir", str(tmp_path / "data")], tmp_path)
    own = run([os.path.join(BIN, "simplestats"), "--tcp-port", "abc"], tmp_path)
    assert own.returncode == 2
    message = own.stdout.strip().replace("simplestats: bad setting: ", "")
    assert message.startswith("--tcp-port: ")
    assert result.returncode == 64, result.stdout
    assert result.stdout.startswith("Error: bad setting: %s\n" % (message,))
    assert "Traceback" not in result.stdout
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_twist_unusable_data_dir_is_one_line(tmp_path):
    """twist simplestats on a data directory that is a file: status 1 and one line, no traceback."""
    (tmp_path / "file").write_text("")
    result = run([os.path.join(BIN, "twist"), "simplestats", "--data-dir",
                  str(tmp_path / "file")], tmp_path)
    assert result.returncode == 1, result.stdout
    assert result.stdout.startswith("simplestats: cannot start: data directory ")
    assert "Traceback" not in result.stdout


def test_dashboard_served_from_another_directory(tmp_path):
    """Started from another directory, the server serves the dashboard and its vendor files at /."""
    server = started_elsewhere(tmp_path, sys.executable)
    try:
        assert_serves_dashboard(server)
    finally:
        server.stop()


# -- a wheel in a fresh virtualenv ----------------------------------------------


def checkout_copy(destination):
    """
    The checkout's tracked files plus the vendor files npm copied (what a
    fresh clone holds after scripts/setup.sh), in C{destination}.
    """
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, check=True,
                             stdout=subprocess.PIPE).stdout.decode().split("\0")
    for name in filter(None, tracked):
        source = os.path.join(REPO_ROOT, name)
        if os.path.isfile(source):
            os.makedirs(os.path.join(destination, os.path.dirname(name)), exist_ok=True)
            shutil.copy2(source, os.path.join(destination, name))
    shutil.copytree(os.path.join(STATIC, "vendor"),
                    os.path.join(destination, "web", "static", "vendor"))


def test_wheel_in_a_fresh_virtualenv(tmp_path):
    """A wheel of the checkout, installed in a new virtualenv, runs and serves the dashboard from elsewhere."""
    if not os.path.isdir(os.path.join(STATIC, "vendor")):
        pytest.fail("web/static/vendor is missing: run scripts/setup.sh (npm ci in web/)")
    source = tmp_path / "checkout"
    checkout_copy(str(source))
    built = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                 str(tmp_path / "wheels"), str(source)], tmp_path)
    assert built.returncode == 0, built.stdout
    (wheel,) = (tmp_path / "wheels").iterdir()
    names = set(subprocess.run([sys.executable, "-m", "zipfile", "-l", str(wheel)],
                               check=True, stdout=subprocess.PIPE, text=True).stdout.split())
    expected = ["server/web/static/index.html", "server/web/static/" + VENDOR_FILE,
                "twisted/plugins/simplestats_plugin.py", "server/test/test_settings.py"]
    if os.path.isdir(CLIENT):
        expected.append("simplestats_client/__init__.py")
    for name in expected:
        assert name in names, name

    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    assert made.returncode == 0, made.stdout
    python = str(venv / "bin" / "python")
    # The dependencies come from pip's cache (setup.sh installed the same pins).
    installed = run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                     str(wheel)], tmp_path, timeout=120)
    assert installed.returncode == 0, installed.stdout

    modules = ["server"] + (["simplestats_client"] if os.path.isdir(CLIENT) else [])
    for module in modules:
        found = run([python, "-c", "import %s; print(%s.__file__)" % (module, module)], tmp_path)
        assert found.stdout.strip().startswith(str(venv)), found.stdout
    twist = run([str(venv / "bin" / "twist"), "simplestats", "--help"], tmp_path)
    assert twist.returncode == 0 and "--tcp-port=" in twist.stdout, twist.stdout
    script = run([str(venv / "bin" / "simplestats"), "--help"], tmp_path)
    assert script.returncode == 0 and "--retentions VALUE" in script.stdout, script.stdout

    server = started_elsewhere(tmp_path, python)
    try:
        assert_serves_dashboard(server)
    finally:
        server.stop()
