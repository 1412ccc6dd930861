"""
Secrets and files: the generated token kept in the data directory (0600,
reused, refused when others may read it), --api-token-file, the warning
for a token on the command line, the read rule (--read-token) on the
headers and in the handlers, Authorization: Bearer, and the mode of every
file the server writes in its data directory.
"""

import os
import stat

from treq.testing import StubTreq
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from server.durability import snapshot
from server.web import tokenfile
from server.durability.datadir import LOCK_NAME, DataDirLock
from server.durability.journal import Journal, journal_files, write_journal_file
from server.durability.recovery import StartupError
from server.service import makeService
from server.settings import SettingsError, load
from server.test.support import settings_for, synchronous
from server.test.test_site import LOOPBACK, REMOTE, SiteCase, upload_head
from server.web.tokenfile import TOKEN_NAME, TokenError, generated_token, read_token_file
from server.web.auth import is_static
from server.web.webroot import find_web_root

TOKEN = "s3cret-token-0123456789"
WEB_ROOT = find_web_root("")


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class UmaskMixin:
    def open_umask(self):
        """Run the rest of the test under umask 0: every mode must be set, not left to it."""
        old = os.umask(0)
        self.addCleanup(os.umask, old)


class GeneratedTokenFileTests(UmaskMixin, SynchronousTestCase):
    def setUp(self):
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, TOKEN_NAME)

    def test_created_0600_then_reused(self):
        """The first call writes a new token (0600, one line) into api-token; the next ones read it back."""
        self.open_umask()
        token, path, created = generated_token(self.directory)
        self.assertEqual((path, created), (self.path, True))
        self.assertGreaterEqual(len(token), 16)
        self.assertEqual(mode(path), 0o600)
        with open(path) as f:
            self.assertEqual(f.read(), token + "\n")
        self.assertEqual(generated_token(self.directory), (token, path, False))
        self.assertEqual(os.listdir(self.directory), [TOKEN_NAME])  # no temporary left

    def test_makes_the_directory(self):
        """A data directory that does not exist yet is made for the token."""
        directory = os.path.join(self.mktemp(), "data")
        token, path, created = generated_token(directory)
        self.assertTrue(created)
        self.assertEqual(generated_token(directory)[0], token)

    def test_a_file_others_may_read_is_refused(self):
        """A token file readable (or writable) by group or others is refused, naming it and chmod 600."""
        token, path, _ = generated_token(self.directory)
        for bad in (0o640, 0o604, 0o644, 0o620):
            os.chmod(path, bad)
            error = self.assertRaises(TokenError, generated_token, self.directory)
            self.assertIn(path, str(error))
            self.assertIn("chmod 600", str(error))
            self.assertIn("%04o" % (bad,), str(error))
        os.chmod(path, 0o400)
        self.assertEqual(generated_token(self.directory)[0], token)

    def test_not_a_regular_file_is_refused(self):
        """A directory or a symbolic link in the token's place is refused, naming the file."""
        os.mkdir(self.path)
        self.assertIn(self.path, str(self.assertRaises(TokenError, generated_token, self.directory)))
        os.rmdir(self.path)
        target = os.path.join(self.directory, "elsewhere")
        with open(target, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(target, 0o600)
        os.symlink(target, self.path)
        error = self.assertRaises(TokenError, generated_token, self.directory)
        self.assertIn("symbolic link", str(error))

    def test_unusable_contents_are_refused(self):
        """An empty, short or several-line token file is refused with the reason, never replaced."""
        for text, reason in (("", "is empty"), ("short\n", "at least 16"),
                             ("a" * 20 + "\n" + "b" * 20 + "\n", "one line")):
            with open(self.path, "w") as f:
                f.write(text)
            os.chmod(self.path, 0o600)
            error = self.assertRaises(TokenError, generated_token, self.directory)
            self.assertIn(self.path, str(error))
            self.assertIn(reason, str(error))
            with open(self.path) as f:
                self.assertEqual(f.read(), text)


class TokenFileOptionTests(SynchronousTestCase):
    def write(self, text, file_mode=0o600):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, file_mode)
        return path

    def test_trailing_newline_is_taken_off(self):
        """The token is the file's one line, without its newline (LF or CRLF) or with none."""
        for text in (TOKEN, TOKEN + "\n", TOKEN + "\r\n"):
            self.assertEqual(read_token_file(self.write(text)), (TOKEN, False))

    def test_others_may_read_is_reported(self):
        """A token file others may read is used, and reported so the caller can warn."""
        self.assertEqual(read_token_file(self.write(TOKEN, 0o644)), (TOKEN, True))

    def test_errors_name_the_file(self):
        """Missing, unreadable, short, empty and two-line files are errors naming the file."""
        missing = os.path.abspath(self.mktemp())
        error = self.assertRaises(TokenError, read_token_file, missing)
        self.assertIn(missing, str(error))
        self.assertIn("No such file", str(error))
        for text, reason in (("", "empty"), ("short", "at least 16"), (TOKEN + "\n\n", "one line"),
                             (TOKEN + " x", "one line")):
            path = self.write(text)
            error = self.assertRaises(TokenError, read_token_file, path)
            self.assertIn(path, str(error))
            self.assertIn(reason, str(error))
        directory = self.mktemp()
        os.mkdir(directory)
        self.assertIn(directory, str(self.assertRaises(TokenError, read_token_file, directory)))

    def test_visible_on_command_line(self):
        """The token is found in a NUL-separated command line, and not when it is absent."""
        cmdline = self.write("python\0-m\0server.main\0--api-token\0%s\0" % (TOKEN,))
        self.assertTrue(tokenfile.visible_on_command_line(TOKEN, cmdline))
        other = self.write("python\0-m\0server.main\0")
        self.assertFalse(tokenfile.visible_on_command_line(TOKEN, other))
        self.assertTrue(tokenfile.visible_on_command_line(TOKEN, self.mktemp(), ["x", TOKEN]))


class SettingsTests(SynchronousTestCase):
    def test_read_token_values(self):
        """--read-token takes auto, on or off (auto by default); anything else names the flag."""
        self.assertEqual(load([]).read_token, "auto")
        self.assertEqual(load(["--read-token", "ON"]).read_token, "on")
        self.assertEqual(load([], {"SIMPLESTATS_READ_TOKEN": "off"}).read_token, "off")
        error = self.assertRaises(SettingsError, load, ["--read-token", "yes"])
        self.assertIn("--read-token: must be auto, on or off", str(error))

    def test_token_and_token_file_together_are_refused(self):
        """A token (flag or environment) and --api-token-file together are an error."""
        self.assertRaises(SettingsError, load, ["--api-token", TOKEN, "--api-token-file", "x"])
        self.assertRaises(SettingsError, load, ["--api-token-file", "x"],
                          {"SIMPLESTATS_API_TOKEN": TOKEN})

    def test_bad_token_is_not_echoed(self):
        """A token refused for its length is not repeated in the error."""
        error = self.assertRaises(SettingsError, load, ["--api-token", "short-secret"])
        self.assertNotIn("short-secret", str(error))


class ServiceTokenTests(SynchronousTestCase):
    def build(self, *argv, data=None):
        argv = ("--tcp-port", "0", "--udp-port", "0", "--http-port", "0") + argv
        if data is not None:
            settings = load(["--data-dir", data, *argv])
        else:
            settings = settings_for(self, *argv)
        with capturedLogs() as events:
            top = makeService(settings, MemoryReactorClock(), run_in_thread=synchronous)
        self.addCleanup(top.core.journal.close)
        self.addCleanup(top.getServiceNamed("persistence").lock.release)
        return top, [formatEvent(e) for e in events]

    def test_same_token_after_a_restart(self):
        """Beyond loopback the generated token is kept: the second start reads it, and logs its path, not it."""
        data = self.mktemp()
        first, messages = self.build("--bind", "0.0.0.0", data=data)
        token = first.settings.api_token
        path = os.path.join(os.path.abspath(data), TOKEN_NAME)
        self.assertEqual(len([m for m in messages if token in m]), 1)
        self.assertEqual(mode(path), 0o600)
        first.core.journal.close()
        first.getServiceNamed("persistence").lock.release()
        second, messages = self.build("--bind", "0.0.0.0", data=data)
        self.assertEqual(second.settings.api_token, token)
        self.assertEqual([m for m in messages if token in m], [])
        self.assertEqual(len([m for m in messages if path in m]), 1)

    def test_read_token_on_loopback_generates_one(self):
        """--read-token on with no token on loopback generates and keeps one; reads then need it."""
        top, _ = self.build("--bind", "127.0.0.1", "--read-token", "on")
        token = top.settings.api_token
        self.assertGreaterEqual(len(token), 16)
        stub = StubTreq(top.api.app.resource())
        response = self.successResultOf(stub.get("http://127.0.0.1/api/metrics"))
        self.assertEqual(response.code, 401)
        response = self.successResultOf(stub.get(
            "http://127.0.0.1/api/metrics", headers={"Authorization": "Bearer " + token}))
        self.assertEqual(response.code, 200)

    def test_loopback_needs_no_token_and_writes_no_file(self):
        """On loopback with reads open, no token is made and no token file written."""
        top, _ = self.build("--bind", "127.0.0.1")
        self.assertEqual(top.settings.api_token, "")
        self.assertNotIn(TOKEN_NAME, os.listdir(top.settings.data_dir))

    def test_group_readable_token_file_stops_the_start(self):
        """A token file others may read stops the start with a StartupError naming it and chmod 600."""
        data = self.mktemp()
        os.makedirs(data)
        path = os.path.join(data, TOKEN_NAME)
        with open(path, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(path, 0o644)
        settings = load(["--data-dir", data, "--bind", "0.0.0.0"])
        error = self.assertRaises(StartupError, makeService, settings, MemoryReactorClock(),
                                  run_in_thread=synchronous)
        self.assertIn(os.path.abspath(path), str(error))
        self.assertIn("chmod 600", str(error))

    def test_token_file_option(self):
        """--api-token-file's token is the one used; nothing is written in the data directory and it is not logged."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(path, 0o600)
        top, messages = self.build("--bind", "0.0.0.0", "--api-token-file", path)
        self.assertEqual(top.settings.api_token, TOKEN)
        self.assertNotIn(TOKEN_NAME, os.listdir(top.settings.data_dir))
        self.assertEqual([m for m in messages if TOKEN in m], [])
        self.assertEqual(len([m for m in messages if path in m]), 1)

    def test_unreadable_token_file_stops_the_start(self):
        """A missing --api-token-file stops the start with an error naming it."""
        path = os.path.abspath(self.mktemp())
        settings = settings_for(self, "--api-token-file", path)
        error = self.assertRaises(StartupError, makeService, settings, MemoryReactorClock(),
                                  run_in_thread=synchronous)
        self.assertIn(path, str(error))

    def test_token_on_the_command_line_is_warned_about(self):
        """A token found in the process's command line gets a warning naming the safer ways, without the token."""
        cmdline = self.mktemp()
        with open(cmdline, "wb") as f:
            f.write(b"python\0-m\0server.main\0--api-token\0" + TOKEN.encode() + b"\0")
        settings = settings_for(self, "--api-token", TOKEN)
        with capturedLogs() as events:
            self.assertEqual(tokenfile.resolve_token(settings, cmdline).api_token, TOKEN)
        messages = [formatEvent(e) for e in events]
        self.assertEqual(len(messages), 1)
        self.assertIn("--api-token-file", messages[0])
        self.assertIn("SIMPLESTATS_API_TOKEN", messages[0])
        self.assertNotIn(TOKEN, messages[0])
        with open(cmdline, "wb") as f:
            f.write(b"python\0-m\0server.main\0")
        with capturedLogs() as events:
            tokenfile.resolve_token(settings, cmdline)
        self.assertEqual(list(events), [])

    def test_reads_open_beyond_loopback_are_warned_about(self):
        """--read-token off beyond loopback starts, with a warning that every series is readable."""
        top, messages = self.build("--bind", "0.0.0.0", "--read-token", "off")
        self.assertTrue([m for m in messages if "--read-token off" in m])


class StaticPathTests(SynchronousTestCase):
    def test_static_paths(self):
        """The dashboard's page, scripts and styles are static; /api/*, /render, /metrics and odd spellings of /api are not."""
        for path in (b"/", b"/index.html", b"/app.js", b"/app.css", b"/vendor/jquery.min.js",
                     b"/vendor/bootstrap.min.css", b"/js/api.js"):
            self.assertTrue(is_static(path), path)
        for path in (b"/api/metrics", b"/api/export", b"/api/x.js", b"/api", b"/render",
                     b"/metrics", b"/metrics/find", b"/vendor/", b"/%61pi/metrics",
                     b"/%61pi/x.js", b"//api/x.js", b"/vendor/../api/x.js", b"/a/%2e%2e/api/x.js",
                     b"http://h/api/x"):
            self.assertFalse(is_static(path), path)


class ReadRuleOnHeadersTests(SiteCase):
    """
    --read-token on, on loopback: reads of data need the token on their
    headers; the static files stay open.
    """

    args = ("--api-token", TOKEN, "--read-token", "on", "--web-root", WEB_ROOT)

    def get(self, path, peer=LOOPBACK, headers=b"", method=b"GET"):
        channel, transport = self.connect(peer)
        channel.dataReceived(b"%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (method, path, headers))
        return transport

    def test_reads_without_the_token_are_401(self):
        """Every /api GET and any non-static path without the token is 401 (with a Bearer challenge), counted."""
        paths = (b"/api/metrics", b"/api/series?name=a", b"/api/export",
                 b"/api/dayweek?name=a", b"/render?target=a", b"/metrics")
        for path in paths:
            transport = self.get(path)
            self.assertEqual(self.status(transport), 401, path)
            self.assertIn(b'WWW-Authenticate: Bearer realm="SimpleStats"', transport.value())
            self.assertIn("X-SimpleStats-Token", self.body(transport)["error"])
        self.assertEqual(self.counters["simplestats.http.unauthorized"], len(paths))

    def test_health_stays_open(self):
        """/api/health answers without the token (load balancers, probes): counts and state only."""
        self.assertEqual(self.status(self.get(b"/api/health")), 200)

    def test_wrong_token_is_403(self):
        """A wrong token in either header is a 403."""
        for header in (b"X-SimpleStats-Token: wrong-token-0123456789\r\n",
                       b"Authorization: Bearer wrong-token-0123456789\r\n"):
            transport = self.get(b"/api/metrics", headers=header)
            self.assertEqual(self.status(transport), 403)
            self.assertEqual(self.body(transport), {"error": "wrong API token"})

    def test_right_token_in_either_header_reads(self):
        """The token as X-SimpleStats-Token or as Authorization: Bearer (any case of the scheme) reads."""
        for header in (b"X-SimpleStats-Token: %s\r\n", b"Authorization: Bearer %s\r\n",
                       b"Authorization: bearer %s\r\n"):
            transport = self.get(b"/api/metrics", headers=header % (TOKEN.encode(),))
            self.assertEqual(self.status(transport), 200, transport.value())
            self.assertIn(b'{"metrics":[],"count":0', transport.value())

    def test_other_authorization_schemes_do_not_count(self):
        """Authorization: Basic with the token is not a token: 401."""
        transport = self.get(b"/api/metrics", headers=b"Authorization: Basic %s\r\n" % (
            TOKEN.encode(),))
        self.assertEqual(self.status(transport), 401)

    def test_static_files_stay_open(self):
        """The page, its script, its style and the vendored libraries are served without the token (HEAD: no body to pump)."""
        for path in (b"/", b"/app.js", b"/app.css", b"/vendor/jquery.min.js"):
            transport = self.get(path, method=b"HEAD")
            self.assertEqual(self.status(transport), 200, path)
        self.assertEqual(self.counters["simplestats.http.unauthorized"], 0)
        self.assertEqual(self.status(self.get(b"/api/metrics", method=b"HEAD")), 401)

    def test_bearer_token_writes(self):
        """Authorization: Bearer carries the token for a write too: the upload's body is read."""
        channel, transport = self.connect(REMOTE)
        channel.dataReceived(upload_head(length=1000, extra=b"Authorization: Bearer %s\r\n"
                                         % (TOKEN.encode(),)) + b"x" * 10)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(channel.phase, "body")

    def test_handlers_check_reads_too(self):
        """Without the site in front, the API's read handlers still refuse a read without the token."""
        from server.web.api import WebAPI
        stub = StubTreq(WebAPI(self.core, self.settings, self.clock).app.resource())
        for path in ("/api/metrics", "/api/export"):
            response = self.successResultOf(stub.get("http://127.0.0.1" + path))
            self.assertEqual(response.code, 401, path)
        response = self.successResultOf(stub.get("http://127.0.0.1/api/metrics",
                                                 headers={"X-SimpleStats-Token": TOKEN}))
        self.assertEqual(response.code, 200)


class ReadRuleBeyondLoopbackTests(SiteCase):
    """
    --read-token auto (the default) and a bind beyond loopback: reads of
    data need the token.
    """

    args = ("--api-token", TOKEN, "--bind", "0.0.0.0")

    def test_beyond_loopback_reads_need_the_token(self):
        """Bound to 0.0.0.0, a full export without the token is 401, from afar and from loopback alike."""
        for peer in (REMOTE, LOOPBACK):
            channel, transport = self.connect(peer)
            channel.dataReceived(b"GET /api/export HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(self.status(transport), 401)
        channel, transport = self.connect(REMOTE)
        channel.dataReceived(b"GET /api/export HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s"
                             b"\r\n\r\n" % (TOKEN.encode(),))
        self.assertEqual(self.status(transport), 200)


class ReadTokenOffTests(SiteCase):
    """
    --read-token off beyond loopback: reads are open, writes still need the
    token.
    """

    args = ("--api-token", TOKEN, "--bind", "0.0.0.0", "--read-token", "off")

    def test_read_token_off_opens_reads(self):
        """Reads need no token; a write without it is still 401."""
        channel, transport = self.connect(REMOTE)
        channel.dataReceived(b"GET /api/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(self.status(transport), 200)
        channel, transport = self.connect(REMOTE)
        channel.dataReceived(upload_head())
        self.assertEqual(self.status(transport), 401)


class ReadRuleLoopbackTests(SiteCase):
    """
    --read-token auto on a loopback bind: reads are open.
    """

    args = ("--api-token", TOKEN)

    def test_loopback_bind_reads_are_open(self):
        """Bound to loopback (auto), reads need no token even with one set."""
        channel, transport = self.connect(LOOPBACK)
        channel.dataReceived(b"GET /api/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(self.status(transport), 200)
        self.assertEqual(self.counters["simplestats.http.unauthorized"], 0)


class DataFileModeTests(UmaskMixin, SynchronousTestCase):
    def setUp(self):
        self.open_umask()
        self.directory = self.mktemp()
        os.makedirs(self.directory)

    def test_journal_files_are_0600(self):
        """Journal files are 0600 under umask 0, the one of each start."""
        journal = Journal(self.directory, 0)
        self.addCleanup(journal.close)
        self.successResultOf(journal.close())
        again = Journal(self.directory, 0)
        self.addCleanup(again.close)
        files = journal_files(self.directory)
        self.assertEqual(len(files), 2)
        for _, path in files:
            self.assertEqual(mode(path), 0o600, path)

    def test_rewritten_journal_file_is_0600(self):
        """A journal file rewritten in repair is 0600, even over a leftover 0644 temporary."""
        path = os.path.join(self.directory, "journal.000001.log")
        with open(path + ".tmp", "wb") as f:
            f.write(b"old")
        os.chmod(path + ".tmp", 0o644)
        write_journal_file(path, [])
        self.assertEqual(mode(path), 0o600)
        self.assertFalse(os.path.exists(path + ".tmp"))

    def test_snapshot_is_0600(self):
        """The snapshot is written 0600, over a leftover 0666 temporary too."""
        temp = os.path.join(self.directory, snapshot.SNAPSHOT_NAME + ".tmp")
        with open(temp, "wb") as f:
            f.write(b"old")
        os.chmod(temp, 0o666)
        snapshot.write_file(self.directory, [b"{}"])
        self.assertEqual(mode(os.path.join(self.directory, snapshot.SNAPSHOT_NAME)), 0o600)

    def test_lock_file_is_0600(self):
        """The data directory's lock file is 0600, an older 0644 one included."""
        lock = DataDirLock(self.directory)
        path = os.path.join(self.directory, LOCK_NAME)
        self.assertEqual(mode(path), 0o600)
        lock.release()
        os.chmod(path, 0o644)
        DataDirLock(self.directory).release()
        self.assertEqual(mode(path), 0o600)

    def test_every_file_of_a_server_is_0600(self):
        """After a start beyond loopback and a snapshot, every file in the data directory is 0600."""
        settings = load(["--data-dir", self.directory, "--bind", "0.0.0.0"])
        top = makeService(settings, MemoryReactorClock(), run_in_thread=synchronous)
        self.addCleanup(top.core.journal.close)
        self.addCleanup(top.getServiceNamed("persistence").lock.release)
        d = top.snapshotter.take()
        for _ in range(100):
            top.core.clock.advance(0)
        self.successResultOf(d)
        names = sorted(os.listdir(self.directory))
        self.assertIn(TOKEN_NAME, names)
        self.assertIn(snapshot.SNAPSHOT_NAME, names)
        self.assertIn(LOCK_NAME, names)
        for name in names:
            self.assertEqual(mode(os.path.join(self.directory, name)), 0o600, name)
