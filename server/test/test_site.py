"""
The HTTP site's limits (server.web.site), the export's backpressure
(server.web.transfer.stream), the TCP idle timeout and the open files budget,
driven through Site.buildProtocol and StringTransport on a Clock: no sockets.
"""

import json

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from server.receivers import fdlimit
from server.web import transfer
from server.receivers.tcp import HINT, TupleFactory
from server.durability.recovery import StartupError
from server.test.support import make_core
from server.web.api import WebAPI
from server.web.site import REFUSAL_SLACK, LimitedSite

TOKEN = "s3cret-token-0123456789"
HUGE = 200 * 1024 * 1024
LOOPBACK = IPv4Address("TCP", "127.0.0.1", 40000)
REMOTE = IPv4Address("TCP", "192.0.2.7", 40000)


class Held(Resource):
    """
    A leaf that never answers by itself: keeps its connection busy.
    """

    isLeaf = True

    def __init__(self):
        Resource.__init__(self)
        self.requests = []

    def render_GET(self, request):
        self.requests.append(request)
        return NOT_DONE_YET


class Streamed(Resource):
    """
    A leaf that streams a generator through transfer.stream and records
    how far the generator was pulled.
    """

    isLeaf = True

    def __init__(self, clock, count):
        Resource.__init__(self)
        self.clock = clock
        self.count = count
        self.pulled = 0
        self.closed = False
        self.done = []

    def chunks(self):
        try:
            for i in range(self.count):
                self.pulled += 1
                yield b"chunk %d\n" % (i,)
        finally:
            self.closed = True

    def render_GET(self, request):
        d = transfer.stream(request, self.chunks(), self.clock)

        def finished(_):
            self.done.append(True)
            if not request._disconnected:
                request.finish()

        d.addCallback(finished)
        return NOT_DONE_YET


class Root(Resource):
    """
    /held and /stream; every other path goes whole to the API's router.
    """

    def __init__(self, api, extras):
        Resource.__init__(self)
        self.api = api
        self.extras = extras

    def getChildWithDefault(self, name, request):
        if name in self.extras:
            return self.extras[name]
        request.postpath.insert(0, request.prepath.pop())
        return self.api


class SiteCase(SynchronousTestCase):
    """
    A LimitedSite on a Clock in front of the real API, plus /held and
    /stream leaves.
    """

    args = ()

    def setUp(self):
        self.core = make_core(self, *self.args)
        self.clock = self.core.clock
        self.settings = self.core.settings
        api = WebAPI(self.core, self.settings, self.clock)
        root = api.app.resource()
        self.held = Held()
        self.streamed = Streamed(self.clock, 50)
        top = Root(root, {b"held": self.held, b"stream": self.streamed})
        self.site = LimitedSite(top, self.settings, self.core, self.clock)
        self.counters = self.core.counters

    def connect(self, peer=LOOPBACK):
        channel = self.site.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer, lenient=True)
        channel.makeConnection(transport)
        return channel, transport

    def close(self, channel):
        channel.connectionLost(Failure(ConnectionDone()))

    def status(self, transport):
        line = transport.value().split(b"\r\n", 1)[0]
        return int(line.split(b" ")[1]) if line else None

    def body(self, transport):
        return json.loads(transport.value().split(b"\r\n\r\n", 1)[1])


def upload_head(method=b"POST", path=b"/api/import", length=HUGE, token=None, extra=b""):
    head = b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % (method, path, length)
    if token is not None:
        head += b"X-SimpleStats-Token: %s\r\n" % (token,)
    return head + extra + b"\r\n"


class AuthorizationOnHeadersTests(SiteCase):
    args = ("--api-token", TOKEN)

    def test_missing_token_is_401_before_any_body_byte(self):
        """A 200 MB import without the token gets 401 on its headers: no body byte read, no temp file."""
        channel, transport = self.connect(REMOTE)
        channel.dataReceived(upload_head())
        self.assertEqual(self.status(transport), 401)
        self.assertIn("X-SimpleStats-Token", self.body(transport)["error"])
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(channel.requests[-1].content)
        self.assertEqual(self.counters["simplestats.http.unauthorized"], 1)
        self.assertEqual(self.counters["simplestats.http.body_bytes"], 0)
        # Whatever the client sends after the refusal is not read.
        answer = transport.value()
        channel.dataReceived(b"x" * 65536)
        self.assertEqual(transport.value(), answer)
        self.assertEqual(self.counters["simplestats.http.body_bytes"], 0)

    def test_wrong_token_is_403(self):
        """A wrong token is a 403 on the headers."""
        channel, transport = self.connect(REMOTE)
        channel.dataReceived(upload_head(token=b"wrong-token-0123456789"))
        self.assertEqual(self.status(transport), 403)
        self.assertEqual(self.body(transport), {"error": "wrong API token"})

    def test_loopback_needs_the_token_too_when_one_is_set(self):
        """With a token set, a loopback client without it is refused as well."""
        channel, transport = self.connect(LOOPBACK)
        channel.dataReceived(upload_head())
        self.assertEqual(self.status(transport), 401)

    def test_delete_is_refused_on_its_headers(self):
        """DELETE /api/series without the token is a 401 too."""
        channel, transport = self.connect(REMOTE)
        channel.dataReceived(b"DELETE /api/series?key=a HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(self.status(transport), 401)

    def test_no_100_continue_after_a_refusal(self):
        """A client that waits for 100 Continue gets the 401 alone, so it never sends the body."""
        channel, transport = self.connect(REMOTE)
        channel.dataReceived(upload_head(extra=b"Expect: 100-continue\r\n"))
        self.assertEqual(self.status(transport), 401)
        self.assertNotIn(b"100 Continue", transport.value())

    def test_right_token_reads_the_body(self):
        """With the right token the body is read (and counted) and nothing is answered yet."""
        channel, transport = self.connect(REMOTE)
        channel.dataReceived(upload_head(token=TOKEN.encode(), length=1000) + b"x" * 500)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.counters["simplestats.http.body_bytes"], 500)
        self.assertEqual(channel.phase, "body")

    def test_authorized_upload_gets_100_continue(self):
        """With the right token a client waiting for 100 Continue gets it."""
        channel, transport = self.connect(REMOTE)
        channel.dataReceived(upload_head(token=TOKEN.encode(), length=1000,
                                         extra=b"Expect: 100-continue\r\n"))
        self.assertEqual(transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n")

    def test_the_handler_still_checks(self):
        """The API's own check stays: a whole import without the token is a 401 from the handler too."""
        from treq.testing import StubTreq
        api = WebAPI(self.core, self.settings, self.clock)
        stub = StubTreq(api.app.resource())
        response = self.successResultOf(stub.post("http://127.0.0.1/api/import", data=b"[]"))
        self.assertEqual(response.code, 401)


class LoopbackRuleOnHeadersTests(SiteCase):
    def test_remote_writes_without_a_token_are_403(self):
        """Without a token set, a write from off loopback is a 403 on its headers."""
        channel, transport = self.connect(REMOTE)
        channel.dataReceived(upload_head())
        self.assertEqual(self.status(transport), 403)
        self.assertIn("192.0.2.7", self.body(transport)["error"])

    def test_loopback_writes_go_on(self):
        """Without a token set, a loopback upload is read."""
        channel, transport = self.connect(LOOPBACK)
        channel.dataReceived(upload_head(length=10) + b"[]")
        self.assertNotEqual(self.status(transport), 401)
        self.assertNotEqual(self.status(transport), 403)
        self.assertEqual(self.counters["simplestats.http.unauthorized"], 0)


class MalformedRequestTests(SiteCase):
    def exchange(self, data):
        channel, transport = self.connect()
        with capturedLogs() as events:
            channel.dataReceived(data)
        failures = [e for e in events if e.get("log_failure") is not None]
        self.assertEqual(failures, [], "a traceback was logged")
        return transport

    def test_nul_in_path_is_400(self):
        """GET /%00 is a 400 naming the NUL byte, without a traceback."""
        transport = self.exchange(b"GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(self.status(transport), 400)
        self.assertIn(b"NUL", transport.value())
        self.assertEqual(self.counters["simplestats.http.bad_requests"], 1)

    def test_nul_in_a_static_file_name_is_400(self):
        """/index.html%00 and /a%00b/c are 400s."""
        for path in (b"/index.html%00", b"/a%00b/c", b"/api/health%00"):
            transport = self.exchange(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % (path,))
            self.assertEqual(self.status(transport), 400, path)

    def test_path_not_utf8_is_400(self):
        """A path whose bytes are not UTF-8 (raw or %-encoded) is a 400 without a traceback."""
        for path in (b"/%ff", b"/%c0%ae", b"/api/%ff"):
            transport = self.exchange(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % (path,))
            self.assertEqual(self.status(transport), 400, path)
            self.assertIn(b"UTF-8", transport.value())
        # Raw bytes in the request line: Twisted's own 400.
        transport = self.exchange(b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(self.status(transport), 400)

    def test_host_not_utf8_is_400(self):
        """A Host header that is not UTF-8 is a 400 without a traceback."""
        transport = self.exchange(b"GET /api/health HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n")
        self.assertEqual(self.status(transport), 400)

    def test_unknown_method_is_405(self):
        """BREW is a 405 naming the methods taken, answered on the headers."""
        transport = self.exchange(b"BREW /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(self.status(transport), 405)
        self.assertIn("BREW", self.body(transport)["error"])

    def test_over_long_header_line_is_431(self):
        """A header line past the line limit is a 431, not a silent close."""
        transport = self.exchange(b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
        self.assertEqual(self.status(transport), 431)
        self.assertTrue(transport.disconnecting)

    def test_twisteds_own_refusals_are_4xx_and_counted(self):
        """Too many headers, a bad Content-Length, a bad request line: 400s, counted."""
        cases = [b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 600 + b"\r\n",
                 b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                 b"GET / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n",
                 b"GET /api/health\r\n\r\n",
                 b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]
        for data in cases:
            transport = self.exchange(data)
            self.assertEqual(self.status(transport), 400, data[:40])
        self.assertEqual(self.counters["simplestats.http.bad_requests"], len(cases))

    def test_a_read_takes_no_big_body(self):
        """A GET announcing a 1 MB body is a 413 on its headers."""
        transport = self.exchange(upload_head(method=b"GET", path=b"/api/health", length=1 << 20))
        self.assertEqual(self.status(transport), 413)
        self.assertIn("GET takes no body", self.body(transport)["error"])

    def test_a_batch_read_by_post_takes_no_big_body(self):
        """A POST of /api/series/batch (a read) announcing a 1 MB body is a 413 on its headers."""
        transport = self.exchange(upload_head(path=b"/api/series/batch", length=1 << 20))
        self.assertEqual(self.status(transport), 413)
        self.assertIn("POST takes no body larger than 65536", self.body(transport)["error"])

    def test_a_graphite_post_takes_no_big_body(self):
        """A POST to /render (a read, as Grafana sends it) takes no body larger than a read's."""
        transport = self.exchange(upload_head(method=b"POST", path=b"/render", length=1 << 20))
        self.assertEqual(self.status(transport), 413)
        self.assertIn("POST takes no body", self.body(transport)["error"])

    def test_upload_over_the_limit_is_413(self):
        """An upload announced over --max-upload-bytes is a 413 on its headers."""
        transport = self.exchange(upload_head(length=self.settings.max_upload_bytes + 1))
        self.assertEqual(self.status(transport), 413)
        self.assertEqual(self.counters["simplestats.http.too_large"], 1)

    def test_good_requests_still_work(self):
        """GET /api/health through the site is a 200 with JSON."""
        transport = self.exchange(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(self.status(transport), 200)
        self.assertIn(b'"status":"ok"', transport.value())


class DeadlineTests(SiteCase):
    def test_headers_must_arrive_within_the_deadline(self):
        """A client trickling its headers a byte a second is answered 408 at --http-header-timeout."""
        channel, transport = self.connect()
        head = b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        for i in range(9):
            channel.dataReceived(head[i:i + 1])
            self.clock.advance(1)
        self.assertEqual(transport.value(), b"")
        channel.dataReceived(head[9:10])
        self.clock.advance(1)
        self.assertEqual(self.status(transport), 408)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters["simplestats.http.header_timeouts"], 1)

    def test_idle_connection_closes_at_the_idle_timeout(self):
        """A connection that sends nothing is closed at --http-idle-timeout, counted."""
        channel, transport = self.connect()
        self.clock.advance(self.settings.http_idle_timeout - 1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters["simplestats.http.idle_timeouts"], 1)

    def test_keep_alive_then_next_request_gets_a_fresh_deadline(self):
        """After an answer the connection is idle again; the next request's headers get their own deadline."""
        channel, transport = self.connect()
        channel.dataReceived(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(self.status(transport), 200)
        self.assertEqual(channel.phase, "idle")
        self.clock.advance(30)
        transport.clear()
        channel.dataReceived(b"GET /api/health HTTP/1.1\r\n")
        self.clock.advance(9)
        channel.dataReceived(b"Host: x\r\n\r\n")
        self.assertEqual(self.status(transport), 200)

    def test_slow_upload_is_408(self):
        """An upload under --http-body-min-rate after --http-body-timeout is answered 408."""
        channel, transport = self.connect()
        channel.dataReceived(upload_head(length=100000))
        seconds = 0
        while not transport.disconnecting and seconds < 100:
            channel.dataReceived(b"x" * 100)
            self.clock.advance(1)
            seconds += 1
        self.assertEqual(self.status(transport), 408)
        # 20 s plus 1 s per 1024 bytes received: 100 B/s ends after about 22 s.
        self.assertTrue(21 <= seconds <= 23, seconds)
        self.assertEqual(self.counters["simplestats.http.body_timeouts"], 1)

    def test_upload_at_a_good_rate_is_not_cut(self):
        """An upload at 2 KB/s goes on past the base deadline."""
        channel, transport = self.connect()
        channel.dataReceived(upload_head(length=200000))
        for _ in range(60):
            channel.dataReceived(b"x" * 2048)
            self.clock.advance(1)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.counters["simplestats.http.body_timeouts"], 0)

    def test_an_answer_nobody_reads_is_dropped(self):
        """A transport paused for --http-write-timeout during an answer gets the connection aborted."""
        channel, transport = self.connect()
        channel.dataReceived(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        channel.pauseProducing()  # what the transport does when its buffer fills
        self.clock.advance(self.settings.http_write_timeout - 1)
        channel.resumeProducing()
        channel.pauseProducing()
        self.clock.advance(self.settings.http_write_timeout - 1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.counters["simplestats.http.write_timeouts"], 1)


class ConnectionCapTests(SiteCase):
    args = ("--max-http-connections", "3")

    def test_idlest_connection_makes_room(self):
        """At the cap a new connection is admitted and the connection idle longest is closed."""
        conns = [self.connect() for _ in range(3)]
        conns[0][0].dataReceived(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")  # idle again, most recently
        channel, transport = self.connect()
        self.assertEqual(transport.value(), b"")
        self.assertFalse(conns[0][1].disconnecting)
        self.assertTrue(conns[1][1].disconnecting)
        self.assertFalse(conns[2][1].disconnecting)
        self.assertEqual(self.counters["simplestats.http.evicted_connections"], 1)
        self.assertEqual(len(self.site.channels), 3)
        self.assertEqual(self.core.gauges["simplestats.http.open_connections"], 3.0)

    def test_busy_connections_are_kept_and_new_one_gets_503(self):
        """When every admitted connection is answering, a new one gets 503 and is counted."""
        conns = [self.connect() for _ in range(3)]
        for channel, _ in conns:
            channel.dataReceived(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        channel, transport = self.connect()
        self.assertEqual(self.status(transport), 503)
        self.assertIn("--max-http-connections", self.body(transport)["error"])
        self.assertFalse(any(t.disconnecting for _, t in conns))
        self.assertEqual(self.counters["simplestats.http.refused_connections"], 1)
        # Once one is answered and gone, there is room again.
        self.held.requests[0].finish()
        self.close(conns[0][0])
        self.close(channel)
        channel, transport = self.connect()
        self.assertEqual(transport.value(), b"")
        self.assertIn(channel, self.site.channels)

    def test_past_the_slack_sockets_are_closed_unanswered(self):
        """Past the cap plus the refusal slack, buildProtocol returns None (the socket is closed at once)."""
        for _ in range(3):
            channel, _ = self.connect()
            channel.dataReceived(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(REFUSAL_SLACK):
            self.connect()  # refused with 503, still closing
        self.assertIsNone(self.site.buildProtocol(LOOPBACK))
        self.assertEqual(self.counters["simplestats.http.refused_connections"], REFUSAL_SLACK + 1)


class ExportProducerTests(SiteCase):
    def test_pauses_and_resumes_with_the_transport(self):
        """The export makes no chunk while the transport is paused and goes on when it resumes."""
        channel, transport = self.connect()
        channel.dataReceived(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(self.streamed.pulled, 1)  # the first chunk at once
        self.assertIn(b"chunk 0\n", transport.value())
        # What the transport does when its write buffer is full.
        channel.pauseProducing()
        written = len(transport.value())
        for _ in range(10):
            self.clock.advance(1)
        self.assertEqual(self.streamed.pulled, 1)
        self.assertEqual(len(transport.value()), written)
        channel.resumeProducing()
        self.clock.advance(0)
        self.assertEqual(self.streamed.pulled, 50)
        self.assertEqual(self.streamed.done, [True])
        self.assertTrue(transport.value().endswith(b"0\r\n\r\n"))
        self.assertIn(b"chunk 49\n", transport.value())

    def test_stops_when_the_client_goes(self):
        """A client gone mid-export stops the generator (closed) and nothing more is pulled."""
        channel, transport = self.connect()
        channel.dataReceived(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        self.close(channel)
        pulled = self.streamed.pulled
        for _ in range(10):
            self.clock.advance(0)
        self.assertEqual(self.streamed.pulled, pulled)
        self.assertTrue(self.streamed.closed)


class TupleIdleTests(SynchronousTestCase):
    def connect(self, factory):
        proto = factory.buildProtocol(LOOPBACK)
        transport = StringTransport(peerAddress=LOOPBACK)
        proto.makeConnection(transport)
        return proto, transport

    def test_idle_timeout_is_per_whole_line(self):
        """Bytes of an unfinished line do not keep a connection open; each whole line does."""
        core = make_core(self, "--tcp-idle-timeout", "30")
        factory = TupleFactory(core, core.settings, core.clock)
        proto, transport = self.connect(factory)
        self.assertEqual(transport.value(), HINT + b"\r\n")
        for _ in range(5):
            core.clock.advance(20)
            proto.dataReceived(b'["a", null, 1]\n')
        self.assertFalse(transport.disconnecting)
        for _ in range(29):
            proto.dataReceived(b"x")
            core.clock.advance(1)
        self.assertFalse(transport.disconnecting)
        core.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(transport.value().endswith(
            b"--ERROR no complete line in 30 s; closing the connection\r\n"))
        self.assertEqual(core.counters["simplestats.tcp.idle_timeouts"], 1)

    def test_zero_means_never(self):
        """--tcp-idle-timeout 0 keeps an idle connection open."""
        core = make_core(self, "--tcp-idle-timeout", "0")
        factory = TupleFactory(core, core.settings, core.clock)
        proto, transport = self.connect(factory)
        core.clock.advance(86400)
        self.assertFalse(transport.disconnecting)

    def test_cap_and_slack(self):
        """Over --max-connections: --ERROR, counted; past the slack the socket is closed unanswered."""
        core = make_core(self, "--max-connections", "2")
        factory = TupleFactory(core, core.settings, core.clock)
        for _ in range(2):
            self.connect(factory)
        proto, transport = self.connect(factory)
        self.assertIn(b"--ERROR too many connections (limit 2)", transport.value())
        for _ in range(REFUSAL_SLACK - 1):
            self.connect(factory)
        self.assertIsNone(factory.buildProtocol(LOOPBACK))
        self.assertEqual(core.counters["simplestats.tcp.refused_connections"], REFUSAL_SLACK + 1)
        self.assertEqual(core.gauges["simplestats.tcp.open_connections"], 2.0)


class OpenFilesBudgetTests(SynchronousTestCase):
    def settings(self, *argv):
        return make_core(self, *argv).settings

    def test_caps_lowered_to_fit_the_limit(self):
        """Under ulimit -n 1024 the default caps are lowered to leave --fd-reserve, with a warning."""
        settings = self.settings()
        with capturedLogs() as events:
            fitted = fdlimit.fit_connection_caps(settings, 1024)
        total = fitted.max_connections + fitted.max_http_connections
        self.assertEqual(total, 1024 - settings.fd_reserve - 2 * REFUSAL_SLACK)
        self.assertEqual(fitted.max_connections, fitted.max_http_connections)
        text = " ".join(str(e.get("log_format")) for e in events)
        self.assertIn("--max-http-connections", text)
        self.assertIn("--fd-reserve", text)

    def test_caps_that_fit_are_kept(self):
        """With room for everything the settings are returned unchanged."""
        settings = self.settings()
        self.assertIs(fdlimit.fit_connection_caps(settings, 65536), settings)
        self.assertIs(fdlimit.fit_connection_caps(settings, None), settings)

    def test_no_room_at_all_is_a_startup_error(self):
        """A limit below the reserve is refused at start-up, naming --fd-reserve."""
        settings = self.settings()
        error = self.assertRaises(StartupError, fdlimit.fit_connection_caps, settings, 80)
        self.assertIn("--fd-reserve", str(error))

    def test_soft_limit_raised_to_hard(self):
        """The soft open files limit is raised to the hard one."""
        calls = []
        limit = fdlimit.raise_soft_limit(lambda which: (1024, 524288),
                                         lambda which, pair: calls.append(pair))
        self.assertEqual(calls, [(524288, 524288)])
        self.assertEqual(limit, 524288)

    def test_soft_limit_kept_when_raising_fails(self):
        """When raising is not allowed the soft limit in force is returned."""
        def refuse(which, pair):
            raise ValueError("not allowed")
        self.assertEqual(fdlimit.raise_soft_limit(lambda which: (1024, 4096), refuse), 1024)
