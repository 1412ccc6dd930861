"""
End to end: the secrets of a real server process and the modes of its
files.  The generated token is kept in the data directory (0600) and is the
same after a restart; with --read-token on every read of data needs it
(X-SimpleStats-Token or Authorization: Bearer) while the dashboard's static
files stay open; --api-token-file works; a token on the command line is
warned about; a token file others may read stops the start.

The servers run under umask 0, so every 0600 seen here was set by the
server itself, not left to the umask.
"""

import os
import stat
import time

import pytest

TOKEN = "e2e-file-token-0123456789"


@pytest.fixture
def open_umask():
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def reads(server, token=None, scheme="X-SimpleStats-Token"):
    if token is None:
        headers = {}
    elif scheme == "Bearer":
        headers = {"Authorization": "Bearer " + token}
    else:
        headers = {"X-SimpleStats-Token": token}
    return server.http("GET", "/api/metrics", headers=headers)


def test_generated_token_is_kept_and_reads_need_it(make_server, open_umask):
    """--read-token on, no token given: one is generated into api-token (0600), needed for reads, the same after a restart."""
    server = make_server("--bind", "127.0.0.1", "--read-token", "on").start()
    path = os.path.join(server.data_dir, "api-token")
    assert mode(path) == 0o600
    with open(path) as f:
        token = f.read().strip()
    assert len(token) >= 16
    assert server.log.count(token) == 1      # shown once, when it is made
    assert path in server.log

    status, headers, body = reads(server)
    assert status == 401, body
    assert headers["WWW-Authenticate"] == 'Bearer realm="SimpleStats"'
    assert b"X-SimpleStats-Token" in body
    assert reads(server, "wrong-token-0123456789")[0] == 403
    assert reads(server, token)[0] == 200
    assert reads(server, token, "Bearer")[0] == 200
    for static in ("/", "/app.js", "/app.css", "/vendor/jquery.min.js"):
        assert server.http("GET", static)[0] == 200, static

    with server.connect() as conn:
        conn.read_line()
        assert conn.request(b'["e2e.secret.a", null, 1]') == b"--OK\r\n"
    server.stop()            # the final snapshot is written
    names = sorted(os.listdir(server.data_dir))
    assert "snapshot.jsonl.gz" in names
    assert any(name.startswith("journal.") for name in names)
    assert "simplestats.lock" in names
    for name in names:
        assert mode(os.path.join(server.data_dir, name)) == 0o600, name

    server.start()
    assert token not in server.log           # later starts name the file only
    assert path in server.log
    status, _, body = reads(server, token)
    assert status == 200
    assert b"e2e.secret.a" in body
    assert reads(server)[0] == 401
    server.stop()


def test_token_file_option(make_server, tmp_path):
    """--api-token-file's token authorizes writes and reads; nothing is written in the data directory."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    server = make_server("--read-token", "on", "--api-token-file", str(token_file)).start()
    assert "api-token" not in os.listdir(server.data_dir)
    body = b'["e2e.secret.file", %d, 2]\n' % (int(time.time()) - 60,)
    assert server.http("POST", "/api/import?format=ndjson", body=body)[0] == 401
    status, _, answer = server.http("POST", "/api/import?format=ndjson", body=body,
                                    headers={"Authorization": "Bearer " + TOKEN})
    assert status == 200, answer
    status, _, answer = reads(server, TOKEN)
    assert status == 200 and b"e2e.secret.file" in answer
    assert TOKEN not in server.log
    server.stop()


def test_token_on_the_command_line_is_warned_about(make_server):
    """--api-token on the command line works, with a warning that it shows in /proc/PID/cmdline."""
    server = make_server("--api-token", TOKEN).start()
    line = server.wait_for_log(r".*the API token is on the command line.*").group(0)
    assert "--api-token-file" in line and "SIMPLESTATS_API_TOKEN" in line
    assert TOKEN not in line
    server.stop()


def test_a_token_file_others_may_read_stops_the_start(make_server):
    """A generated token file made group- and world-readable stops the next start, naming it and chmod 600."""
    server = make_server("--read-token", "on").start()
    server.stop()
    path = os.path.join(server.data_dir, "api-token")
    os.chmod(path, 0o644)
    assert server.start_expecting_failure() == 1
    assert path in server.log
    assert "chmod 600" in server.log
