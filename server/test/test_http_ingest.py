"""
HTTP ingest (L{server.web.ingest}) through StubTreq and through the site
on a StringTransport: no sockets, a Clock for time.
"""

import json

from treq.testing import StubTreq
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from server.core.model import TIMER, Partial
from server.receivers.parse_tuple import parse_line
from server.test.support import T0, make_core, replayed
from server.web.api import WebAPI
from server.web.ingest import HttpIngest, is_ingest_path
from server.web.routing import Routes
from server.web.site import LimitedSite

BASE = "http://127.0.0.1:8080"
TOKEN = "s3cret-token-0123456789"
REMOTE = IPv4Address("TCP", "192.0.2.7", 40000)

SEED = {"grouping": "fifo", "metric": "fifo.vm.creations", "time": T0, "value": 1,
        "tags": {"fifo-host": "fifo01"}}
SEED_TAGS = "fifo-host:fifo01,grouping:fifo"


class Recovering:
    holding = True


class IngestCase(SynchronousTestCase):
    argv = ()
    recovery = None

    def setUp(self):
        self.core = make_core(self, *self.argv)
        self.clock = self.core.clock
        self.counters = self.core.counters
        self.ingest = HttpIngest(self.core, self.core.settings, self.clock, self.recovery)
        api = WebAPI(self.core, self.core.settings, self.clock)
        self.root = Routes(api.app.resource(), (is_ingest_path, self.ingest.app.resource()))
        self.stub = StubTreq(self.root)

    def request(self, method, path, body=None, headers=None):
        d = self.stub.request(method, BASE + path, data=body, headers=headers)
        self.stub.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(self.stub.content(response))
        return response, content

    def post_json(self, path, body, status, method="POST", headers=None):
        response, content = self.request(method, path, body, headers)
        self.assertEqual(response.code, status, content)
        self.assertEqual(response.headers.getRawHeaders("content-type"),
                         ["application/json; charset=utf-8"])
        return json.loads(content)

    def series(self, name, tags="", fields="count"):
        response, content = self.request(
            "GET", "/api/series?name=%s&tags=%s&fields=%s&from=%d&until=%d"
            % (name, tags, fields, T0 - 60, T0 + 60))
        self.assertEqual(response.code, 200, content)
        body = json.loads(content)
        return {field: [v for _, v in points if v is not None]
                for field, points in body["fields"].items()}

    def known(self, name):
        return any(key.split(";")[0] == name for key in self.core.store.series)


class NsqTests(IngestCase):
    def test_ping(self):
        """GET /ping answers OK as text, as nsqd does."""
        response, content = self.request("GET", "/ping")
        self.assertEqual((response.code, content), (200, b"OK"))
        self.assertEqual(response.headers.getRawHeaders("content-type"),
                         ["text/plain; charset=utf-8"])

    def test_seed_message(self):
        """The dtrace seed's message is one point of metric + tags + grouping, answered OK."""
        for path in ("/put", "/pub"):
            response, content = self.request("POST", path + "?topic=tachyon-metric-json",
                                             json.dumps(SEED).encode())
            self.assertEqual((response.code, content), (200, b"OK"))
        self.assertEqual(self.series("fifo.vm.creations", SEED_TAGS), {"count": [2.0]})
        self.assertEqual(list(self.core.store.series),
                         ["fifo.vm.creations;fifo-host=fifo01;grouping=fifo"])
        self.assertEqual(self.counters["simplestats.nsq.points"], 2)

    def test_time_in_milliseconds(self):
        """A time from 3e9 on is in milliseconds."""
        message = dict(SEED, time=int(T0 * 1000) + 10, value=4.5)
        response, _ = self.request("POST", "/put?topic=t", json.dumps(message).encode())
        self.assertEqual(response.code, 200)
        series = self.core.store.series["fifo.vm.creations;fifo-host=fifo01;grouping=fifo"]
        self.core.store.fold_series(series)
        self.assertEqual(series.last_seen, T0 + 0.01)

    def test_mput_takes_every_line(self):
        """/mput and /mpub take one message per line, each a point."""
        lines = [dict(SEED, value=v, tags={"n": str(i)}) for i, v in enumerate((1, 2, 3))]
        body = b"\n".join(json.dumps(m).encode() for m in lines) + b"\n"
        for path in ("/mput", "/mpub"):
            response, content = self.request("POST", path + "?topic=t", body)
            self.assertEqual((response.code, content), (200, b"OK"))
        self.assertEqual(self.series("fifo.vm.creations", "grouping:fifo,n:2"), {"count": [2.0]})
        self.assertEqual(self.counters["simplestats.nsq.points"], 6)

    def test_mput_with_a_bad_message_takes_nothing(self):
        """One bad message refuses the whole /mput: 400 naming its number and field, nothing stored."""
        body = b"\n".join([json.dumps(SEED).encode(), b'{"metric": "x", "value": "abc"}',
                           json.dumps(SEED).encode()])
        answer = self.post_json("/mput?topic=t", body, 400)
        self.assertEqual(answer["bad_messages"], [
            {"message": 2, "field": "value", "error": answer["bad_messages"][0]["error"]}])
        self.assertTrue(answer["error"].startswith("message 2, field value: value \"abc\""),
                        answer)
        self.assertTrue(answer["error"].endswith("; nothing was taken"), answer)
        self.assertEqual(answer["bad_message_count"], 1)
        self.assertEqual(dict(self.core.store.series), {})
        self.assertEqual(self.counters["simplestats.nsq.bad"], 1)
        self.assertEqual(self.counters["simplestats.nsq.points"], 0)

    def test_mput_lists_every_bad_message(self):
        """Every bad message of an /mput is counted; the first twenty are listed."""
        body = b"\n".join([b'{"value": 1}'] * 25 + [json.dumps(SEED).encode()])
        answer = self.post_json("/mput?topic=t", body, 400)
        self.assertEqual(answer["bad_message_count"], 25)
        self.assertEqual(len(answer["bad_messages"]), 20)
        self.assertTrue(answer["error"].startswith("25 bad messages; the first: message 1,"
                                                   " field metric"), answer)
        self.assertEqual(self.counters["simplestats.nsq.bad"], 25)

    def test_core_refusal_names_the_message(self):
        """A time the core refuses (too far ahead) refuses the /mput whole, naming message and field."""
        late = dict(SEED, time=T0 + 3600)
        body = json.dumps(SEED).encode() + b"\n" + json.dumps(late).encode()
        answer = self.post_json("/mput?topic=t", body, 400)
        self.assertEqual([(b["message"], b["field"]) for b in answer["bad_messages"]],
                         [(2, "time")])
        self.assertIn("in the future", answer["error"])
        self.assertEqual(dict(self.core.store.series), {})
        self.assertEqual(self.counters["simplestats.nsq.bad"], 1)

    def test_type_conflict_names_the_metric(self):
        """A point that cannot join its series' type is refused naming the metric field."""
        self.request("POST", "/put?topic=t", b'{"metric": "m", "value": "1c"}')
        answer = self.post_json("/put?topic=t", b'{"metric": "m", "value": 1}', 400)
        self.assertEqual(answer["bad_messages"][0]["field"], "metric")
        self.assertIn("is a counter", answer["error"])
        self.assertNotIn("nothing was taken", answer["error"])

    def test_topic_and_body_refusals(self):
        """No topic, a bad topic, binary mode and an empty body are 400s saying so."""
        cases = [("/put", b"{}", "topic parameter is required"),
                 ("/put?topic=a%20b", b"{}", "topic must be"),
                 ("/mpub?topic=t&binary=true", b"{}", "binary=true is not taken"),
                 ("/put?topic=t", b"", "the body holds no message"),
                 ("/put?topic=t", b"[1]", "message 1: expected a JSON object")]
        for path, body, words in cases:
            answer = self.post_json(path, body, 400)
            self.assertIn(words, answer["error"], path)
        self.assertEqual(self.counters["simplestats.nsq.bad"], len(cases))

    def test_answer_waits_for_the_journal(self):
        """The OK goes out only once the journal has the points; a failed write is a 503."""
        pending = []
        self.core.durable = lambda: pending.append(defer.Deferred()) or pending[-1]
        d = self.stub.request("POST", BASE + "/put?topic=t", data=json.dumps(SEED).encode())
        self.stub.flush()
        self.assertNoResult(d)
        pending[0].callback(None)
        self.stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(self.successResultOf(self.stub.content(response)), b"OK")

        d = self.stub.request("POST", BASE + "/put?topic=t", data=json.dumps(SEED).encode())
        self.stub.flush()
        pending[1].errback(OSError(28, "No space left on device"))
        self.stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 503)
        body = json.loads(self.successResultOf(self.stub.content(response)))
        self.assertIn("No space left on device", body["error"])
        self.assertEqual(self.counters["simplestats.journal.errors"], 1)

    def test_points_are_in_the_journal(self):
        """What /mput took replays from the journal into the same series."""
        body = json.dumps(SEED).encode() + b"\n" + json.dumps(dict(SEED, value=2)).encode()
        self.request("POST", "/mput?topic=t", body)
        fresh = replayed(self, self.core)
        key = "fifo.vm.creations;fifo-host=fifo01;grouping=fifo"
        self.assertEqual(list(fresh.store.series), [key])
        self.assertEqual(fresh.store.series[key].last_seen, T0)


class DattssTests(IngestCase):
    def agg(self, prt, status=200, query="?auth=x"):
        return self.post_json("/agg" + query, json.dumps({"prt": prt}).encode(), status,
                              method="PUT")

    def test_zero_and_fractional_values(self):
        """A zero is a value and fractions are taken: counter, timer and gauge read back."""
        answer = self.agg({
            "c": [{"typ": "c", "pth": "x.count", "sum": 0, "cnt": 1, "emp": False}],
            "ms": [{"typ": "ms", "pth": "x.query", "sum": 1.5, "cnt": 3, "min": 0, "max": 1,
                    "lst": 0.5, "fst": 0, "bot": 0, "top": 1, "pct": 0.1}],
            "g": [{"typ": "g", "pth": "x.live", "lst": 0, "cnt": 2, "sum": 0.25, "min": 0,
                   "max": 0.25}]})
        self.assertEqual(answer, {"ok": True})
        self.assertEqual(self.series("x.count"), {"count": [0.0]})
        self.assertEqual(self.series("x.query", fields="count,sum,min,max,last"),
                         {"count": [3.0], "sum": [1.5], "min": [0.0], "max": [1.0],
                          "last": [0.5]})
        self.assertEqual(self.series("x.live", fields="last,min,max,updates"),
                         {"last": [0.0], "min": [0.0], "max": [0.25], "updates": [2.0]})
        self.assertEqual(self.counters["simplestats.dattss.points"], 3)

    def test_merged_as_a_tuple_partial(self):
        """A DaTtSs timer partial is the very partial the TCP tuple protocol takes for it."""
        ours = parse_line(b'["x.t", null, {"type": "ms", "count": 3, "sum": 18, "min": 3,'
                          b' "max": 10, "last": 10}]', self.core.settings.limits).items[0]
        self.assertEqual(ours, Partial("x.t", (), TIMER, {"count": 3.0, "sum": 18.0, "min": 3.0,
                                                          "max": 10.0, "last": 10.0}))
        self.agg({"ms": [{"pth": "x.t", "cnt": 3, "sum": 18, "min": 3, "max": 10, "lst": 10,
                          "bot": 3, "top": 10}]})
        self.core.submit([ours._replace(name="y.t")], "tcp")
        fields = "count,sum,min,max,mean,std,median,p99,last"
        self.assertEqual(self.series("x.t", fields=fields), self.series("y.t", fields=fields))
        # More than two values and no sketch: percentiles unknown, not invented.
        self.assertEqual(self.series("x.t", fields="median")["median"], [])

    def test_bad_partial_refused_by_position(self):
        """One bad partial is refused by kind and index; the others are applied: 200, ok false."""
        answer = self.agg({
            "c": [{"pth": "a.c", "sum": 2}],
            "ms": [{"pth": "a.t", "cnt": 1, "sum": 4, "min": 4, "max": 4},
                   {"pth": "a.u", "cnt": 1, "sum": 4, "min": 4, "max": 4},
                   {"pth": "a.v", "cnt": 1, "sum": 4},
                   {"pth": "a.w", "cnt": 1, "sum": 5, "min": 5, "max": 5}]})
        self.assertEqual(answer["ok"], False)
        self.assertEqual(answer["accepted"], 4)
        self.assertEqual(answer["refused"], [
            {"kind": "ms", "index": 2, "error": "a ms partial needs min, max"}])
        self.assertEqual(self.series("a.w"), {"count": [1.0]})
        self.assertFalse(self.known("a.v"))
        self.assertEqual(self.counters["simplestats.dattss.bad"], 1)
        self.assertEqual(self.counters["simplestats.dattss.points"], 4)

    def test_core_refusals_by_position(self):
        """A partial the core refuses (another type on the same name) is reported by position too."""
        answer = self.agg({"c": [{"pth": "same", "sum": 1}],
                           "g": [{"pth": "other", "lst": 1}, {"pth": "same", "lst": 3}]})
        self.assertEqual(answer["accepted"], 2)
        self.assertEqual([(r["kind"], r["index"]) for r in answer["refused"]], [("g", 1)])
        self.assertIn("is a counter", answer["refused"][0]["error"])
        self.assertEqual(self.counters["simplestats.dattss.bad"], 1)

    def test_nothing_accepted_is_400(self):
        """When every partial is refused the answer is a 400 with the same body."""
        answer = self.agg({"c": [{"pth": "a b", "sum": 1}]}, status=400)
        self.assertEqual((answer["ok"], answer["accepted"]), (False, 0))
        self.assertEqual(answer["refused"][0]["index"], 0)

    def test_malformed_body(self):
        """A body that is no DaTtSs commit is a 400 saying why, counted."""
        for body in (b"nope", b'{"prt": 1}', b'{"prt": {"c": 3}}'):
            answer = self.post_json("/agg?auth=x", body, 400, method="PUT")
            self.assertEqual(answer["ok"], False)
            self.assertTrue(answer["error"])
        self.assertEqual(self.counters["simplestats.dattss.bad"], 3)

    def test_empty_commit(self):
        """A commit with no partials (a quiet process) is ok."""
        self.assertEqual(self.agg({"c": [], "ms": [], "g": []}), {"ok": True})


class TokenTests(IngestCase):
    argv = ("--api-token", TOKEN)

    def test_agg_takes_the_key_as_auth(self):
        """With a token set, /agg takes it as ?auth=, and refuses a missing or wrong one."""
        body = json.dumps({"prt": {"c": [{"pth": "a", "sum": 1}]}}).encode()
        self.assertEqual(self.post_json("/agg?auth=" + TOKEN, body, 200, "PUT"), {"ok": True})
        self.assertEqual(self.post_json("/agg?auth=nope-0123456789", body, 403, "PUT"),
                         {"error": "wrong API token"})
        self.assertEqual(self.post_json("/agg", body, 401, "PUT")["error"],
                         "this call needs the API token in its auth parameter (/agg?auth=<token>,"
                         " where a DaTtSs client puts its key) or in the X-SimpleStats-Token"
                         " header (or Authorization: Bearer)")
        self.assertNotIn("auth parameter", self.post_json("/put?topic=t", body, 401)["error"])
        self.assertEqual(self.post_json("/agg", body, 200, "PUT",
                                        headers={"X-SimpleStats-Token": TOKEN}), {"ok": True})

    def test_nsq_needs_the_token_header(self):
        """With a token set, NSQ writes need it (as every write); ?auth= is only for /agg."""
        body = json.dumps(SEED).encode()
        self.post_json("/put?topic=t", body, 401)
        self.post_json("/put?topic=t&auth=" + TOKEN, body, 401)
        response, content = self.request("POST", "/put?topic=t", body,
                                         {"Authorization": "Bearer " + TOKEN})
        self.assertEqual((response.code, content), (200, b"OK"))


class RecoveringTests(IngestCase):
    recovery = Recovering()

    def test_503_while_recovering(self):
        """While start-up recovers, writes and /ping answer 503 with Retry-After."""
        response, content = self.request("GET", "/ping")
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["1"])
        answer = self.post_json("/put?topic=t", json.dumps(SEED).encode(), 503)
        self.assertIn("recovering", answer["error"])
        self.post_json("/agg", b'{"prt": {}}', 503, "PUT")
        self.assertEqual(dict(self.core.store.series), {})


class SizeCapTests(IngestCase):
    argv = ("--max-ingest-bytes", "100")

    def test_over_the_cap_is_413(self):
        """A body over --max-ingest-bytes is a 413 from the handler too (the site refuses it first)."""
        body = json.dumps(dict(SEED, tags={"k": "v" * 100})).encode()
        answer = self.post_json("/put?topic=t", body, 413)
        self.assertIn("--max-ingest-bytes", answer["error"])
        self.assertEqual(self.counters["simplestats.nsq.bad"], 1)


class SiteTests(SynchronousTestCase):
    """
    The site's checks on the headers, for the ingest paths.
    """

    def make_site(self, *argv):
        core = make_core(self, *argv)
        ingest = HttpIngest(core, core.settings, core.clock)
        api = WebAPI(core, core.settings, core.clock)
        site = LimitedSite(Routes(api.app.resource(), (is_ingest_path, ingest.app.resource())), core.settings,
                           core, core.clock)
        return core, site

    def exchange(self, site, data, peer=REMOTE):
        channel = site.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer, lenient=True)
        channel.makeConnection(transport)
        channel.dataReceived(data)
        head, _, body = transport.value().partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), body

    def test_agg_auth_parameter_passes_the_headers_check(self):
        """A remote PUT /agg?auth=TOKEN is read and applied; a wrong key is 403 before its body."""
        core, site = self.make_site("--api-token", TOKEN)
        body = b'{"prt": {"c": [{"pth": "a", "sum": 1}]}}'
        head = b"PUT /agg?auth=%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
        status, answer = self.exchange(site, head % (TOKEN.encode(), len(body)) + body)
        self.assertEqual(status, 200)
        self.assertIn(b'{"ok": true}', answer)
        status, _ = self.exchange(site, head % (b"wrong-0123456789", len(body)))
        self.assertEqual(status, 403)
        self.assertEqual(core.counters["simplestats.http.unauthorized"], 1)

    def test_remote_nsq_write_without_token_is_refused(self):
        """Without a token set, an NSQ write from off loopback is a 403, as an import."""
        _, site = self.make_site()
        status, answer = self.exchange(
            site, b"POST /put?topic=t HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        self.assertEqual(status, 403)
        self.assertIn(b"need an API token", answer)

    def test_ping_is_open_to_probes(self):
        """/ping answers a remote probe even when reads need the token."""
        _, site = self.make_site("--api-token", TOKEN, "--read-token", "on")
        status, answer = self.exchange(site, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(status, 200)
        self.assertTrue(answer.endswith(b"OK\r\n0\r\n\r\n") or answer.endswith(b"OK"), answer)
        status, _ = self.exchange(site, b"GET /api/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(status, 401)

    def test_body_cap_on_the_headers(self):
        """An ingest body larger than --max-ingest-bytes is a 413 on its headers."""
        core, site = self.make_site("--max-ingest-bytes", "1000")
        status, answer = self.exchange(
            site, b"POST /mput?topic=t HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n",
            peer=IPv4Address("TCP", "127.0.0.1", 40000))
        self.assertEqual(status, 413)
        self.assertIn(b"limit of 1000 bytes", answer)
        self.assertEqual(core.counters["simplestats.http.too_large"], 1)
