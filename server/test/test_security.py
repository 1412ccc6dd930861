"""
Who may write, and what comes back out: the loopback and token rules of
the write calls, the token a non-loopback bind generates, and the CSV
export's guard against spreadsheet formulas.

StubTreq always reports its client as 127.0.0.1 (port 31337), so the
ordinary API tests only ever see the loopback side of the rule; here a
small resource in front of the API sets another client address.
"""

import csv
import io
import json

from treq.testing import StubTreq
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from server.core.model import GAUGE, SAMPLE, TIMER, Sample
from server.service import makeService
from server.test.support import T0, make_core, settings_for, synchronous
from server.web.transfer import FORMULA_START
from server.web.api import WebAPI

BASE = "http://127.0.0.1:8080"
TOKEN = "s3cret-token-0123456789"
ROW = b'["sec.a", null, 1]\n'


class FromAddress(Resource):
    """
    Serves C{inner} as if every request came from C{address}.
    """

    isLeaf = True

    def __init__(self, inner, address):
        Resource.__init__(self)
        self.inner = inner
        self.address = address

    def render(self, request):
        request.client = self.address
        return self.inner.render(request)


class ClientHost(Resource):
    """
    Answers with the host of the client address the request carries.
    """

    isLeaf = True

    def render(self, request):
        return request.getClientAddress().host.encode()


class WriteRuleCase(SynchronousTestCase):
    argv = ()

    def setUp(self):
        self.core = make_core(self, *self.argv)
        self.api = WebAPI(self.core, self.core.settings, self.core.clock)

    def stub(self, address=None):
        resource = self.api.app.resource()
        if address is not None:
            resource = FromAddress(resource, address)
        return StubTreq(resource)

    def call(self, stub, method, path, **kwargs):
        response = self.successResultOf(stub.request(method, BASE + path, **kwargs))
        body = self.successResultOf(stub.content(response))
        return response.code, json.loads(body)

    def import_(self, stub, headers=None):
        return self.call(stub, "POST", "/api/import?format=ndjson", data=ROW, headers=headers)

    def delete(self, stub, headers=None):
        return self.call(stub, "DELETE", "/api/series?key=sec.a", headers=headers)


class LoopbackRuleTests(WriteRuleCase):
    """
    No token set: writes from loopback clients only.
    """

    def test_stubtreq_reports_loopback(self):
        """StubTreq's requests come from 127.0.0.1: the default harness sits on the loopback side."""
        stub = StubTreq(ClientHost())
        response = self.successResultOf(stub.get(BASE + "/"))
        self.assertEqual(self.successResultOf(stub.content(response)), b"127.0.0.1")

    def test_loopback_clients_write(self):
        """Import and delete are taken from 127.0.0.1, 127.x.y.z and ::1 without a token."""
        for address in (None, IPv4Address("TCP", "127.0.0.1", 5000),
                        IPv4Address("TCP", "127.8.9.10", 5000), IPv6Address("TCP", "::1", 5000)):
            stub = self.stub(address)
            self.assertEqual(self.import_(stub), (200, {"imported": 1, "series": 1,
                                                        "format": "ndjson"}))
            self.assertEqual(self.delete(stub), (200, {"deleted": 1, "keys": ["sec.a"]}))

    def test_other_clients_are_refused(self):
        """From any other address import and delete are 403 naming the address, and nothing changes."""
        self.assertEqual(self.import_(self.stub())[0], 200)
        for host in ("203.0.113.7", "10.0.0.1", "0.0.0.0", "128.0.0.1"):
            stub = self.stub(IPv4Address("TCP", host, 5000))
            self.assertEqual(self.import_(stub), (403, {
                "error": "writes from %s need an API token (set --api-token)" % (host,)}))
            self.assertEqual(self.delete(stub)[0], 403)
        stub = self.stub(IPv6Address("TCP", "2001:db8::1", 5000))
        self.assertEqual(self.import_(stub)[0], 403)
        self.assertEqual(self.delete(stub)[0], 403)
        self.assertEqual(list(self.core.store.series), ["sec.a"])
        self.assertEqual(self.core.counters["simplestats.import.points"], 1)

    def test_a_token_header_does_not_open_writes_without_a_token_set(self):
        """With no token configured, a made-up token header from afar is still refused."""
        stub = self.stub(IPv4Address("TCP", "203.0.113.7", 5000))
        self.assertEqual(self.import_(stub, {"X-SimpleStats-Token": ""})[0], 403)
        self.assertEqual(self.import_(stub, {"X-SimpleStats-Token": "anything-at-all-long"})[0],
                         403)

    def test_reads_from_anywhere(self):
        """Reads need neither loopback nor token."""
        self.assertEqual(self.import_(self.stub())[0], 200)
        stub = self.stub(IPv4Address("TCP", "203.0.113.7", 5000))
        self.assertEqual(self.call(stub, "GET", "/api/health")[0], 200)
        self.assertEqual(self.call(stub, "GET", "/api/metrics")[1]["count"], 1)
        self.assertEqual(self.call(stub, "GET", "/api/series?name=sec.a")[0], 200)


class TokenRuleTests(WriteRuleCase):
    """
    A token set: every write needs it, from loopback too; the address no
    longer matters.
    """

    argv = ("--api-token", TOKEN)

    def test_missing_token_is_401(self):
        """Without the header (or with it empty) writes are 401, from loopback and from afar."""
        for address in (None, IPv4Address("TCP", "203.0.113.7", 5000)):
            stub = self.stub(address)
            for headers in (None, {"X-SimpleStats-Token": ""}):
                code, body = self.import_(stub, headers)
                self.assertEqual(code, 401)
                self.assertIn("X-SimpleStats-Token", body["error"])
                self.assertEqual(self.delete(stub, headers)[0], 401)
        self.assertEqual(self.core.store.series, {})

    def test_wrong_token_is_403(self):
        """A wrong token (shorter, longer, a prefix, other case, non-ASCII) is 403."""
        for wrong in (TOKEN[:-1], TOKEN + "x", TOKEN.upper(), "x", TOKEN[:-1] + "\u00e9"):
            for address in (None, IPv4Address("TCP", "203.0.113.7", 5000)):
                stub = self.stub(address)
                headers = {"X-SimpleStats-Token": wrong.encode("utf-8")}
                self.assertEqual(self.import_(stub, headers), (403, {"error": "wrong API token"}))
                self.assertEqual(self.delete(stub, headers)[0], 403)
        self.assertEqual(self.core.store.series, {})

    def test_right_token_writes_from_anywhere(self):
        """The right token is enough from any address."""
        headers = {"X-SimpleStats-Token": TOKEN}
        for address in (None, IPv4Address("TCP", "203.0.113.7", 5000)):
            stub = self.stub(address)
            self.assertEqual(self.import_(stub, headers)[0], 200)
            self.assertEqual(self.delete(stub, headers), (200, {"deleted": 1, "keys": ["sec.a"]}))


class GeneratedTokenTests(SynchronousTestCase):
    def build(self, bind):
        settings = settings_for(self, "--bind", bind, "--tcp-port", "0", "--udp-port", "0",
                                "--http-port", "0")
        with capturedLogs() as events:
            top = makeService(settings, MemoryReactorClock(), run_in_thread=synchronous)
        self.addCleanup(top.core.journal.close)
        return top, [formatEvent(e) for e in events]

    def test_non_loopback_bind_generates_and_logs_a_token(self):
        """Binding to 0.0.0.0 or :: without a token makes one, logs it, and writes then need it."""
        tokens = set()
        for bind in ("0.0.0.0", "::", "192.0.2.1"):
            top, messages = self.build(bind)
            token = top.settings.api_token
            self.assertGreaterEqual(len(token), 16)
            logged = [m for m in messages if token in m]
            self.assertEqual(len(logged), 1, messages)
            self.assertIn("X-SimpleStats-Token", logged[0])
            self.assertIn(bind, logged[0])
            tokens.add(token)
            stub = StubTreq(top.api.app.resource())
            response = self.successResultOf(stub.post(BASE + "/api/import", data=ROW))
            self.assertEqual(response.code, 401)  # loopback alone is not enough now
            response = self.successResultOf(stub.post(BASE + "/api/import", data=ROW,
                                                      headers={"X-SimpleStats-Token": token}))
            self.assertEqual(response.code, 200)
        self.assertEqual(len(tokens), 3)

    def test_loopback_bind_makes_no_token(self):
        """Binding to 127.0.0.1 or ::1 makes no token and logs none."""
        for bind in ("127.0.0.1", "::1"):
            top, messages = self.build(bind)
            self.assertEqual(top.settings.api_token, "")
            self.assertEqual([m for m in messages if "token" in m.lower()], [])

    def test_a_chosen_token_is_kept(self):
        """With --api-token set, a non-loopback bind keeps it and logs no token."""
        settings = settings_for(self, "--bind", "0.0.0.0", "--api-token", TOKEN)
        with capturedLogs() as events:
            top = makeService(settings, MemoryReactorClock(), run_in_thread=synchronous)
        self.addCleanup(top.core.journal.close)
        self.assertEqual(top.settings.api_token, TOKEN)
        self.assertEqual([e for e in events if TOKEN in formatEvent(e)], [])


class CSVFormulaTests(SynchronousTestCase):
    """
    A spreadsheet runs a cell that starts with = + - @ (or a tab or carriage
    return) as a formula: the CSV export prefixes such a cell with a quote,
    and the import takes the quote off again.
    """

    def setUp(self):
        self.core = make_core(self)
        self.api = WebAPI(self.core, self.core.settings, self.core.clock)
        self.stub = StubTreq(self.api.app.resource())

    def export(self, fmt="csv"):
        d = self.stub.get(BASE + "/api/export?format=" + fmt)
        for _ in range(1000):
            self.stub.flush()
            self.core.clock.advance(0)
            if d.called:
                break
        response = self.successResultOf(d)
        d = self.stub.content(response)
        for _ in range(1000):
            self.stub.flush()
            self.core.clock.advance(0)
            if d.called:
                break
        return self.successResultOf(d)

    def test_formula_cells_are_quoted_and_restored(self):
        """Names, tags and values starting with - + @ are quoted in the CSV and imported back unchanged."""
        hostile = [
            Sample("-cmd", (), SAMPLE, 3.0, T0 - 100),
            Sample("sec.tag", (("-k", "x"),), SAMPLE, 1.0, T0 - 100),
            Sample("sec.plus", (("host", "+1+1"),), SAMPLE, 1.0, T0 - 100),
            Sample("sec.minus", (("host", "-2+3"),), SAMPLE, 1.0, T0 - 100),
            Sample("sec.at", (("cmd", "@SUM:1"),), SAMPLE, 1.0, T0 - 100),
            Sample("sec.gauge", (), GAUGE, -2.0, T0 - 100),
            Sample("sec.timer", (), TIMER, -5.0, T0 - 100),
        ]
        self.assertEqual(self.core.submit(hostile, "test"), [])
        body = self.export()
        rows = list(csv.reader(io.StringIO(body.decode())))
        self.assertEqual(rows[0], ["name", "timestamp", "value", "tags"])
        cells = [cell for row in rows[1:] for cell in row]
        for cell in cells:
            self.assertFalse(cell.startswith(FORMULA_START), cell)
        self.assertIn("'-cmd", cells)
        self.assertIn("'-k=x", cells)
        # A negative gauge is a partial: "-2g" would be read back as a change.
        self.assertIn('{"type":"g","last":-2}', cells)
        self.assertIn("'-5ms", cells)
        # A tag value is never at the start of its cell: the key comes first.
        self.assertIn("host=+1+1", cells)
        self.assertIn("cmd=@SUM:1", cells)

        fresh = make_core(self)
        api = WebAPI(fresh, fresh.settings, fresh.clock)
        stub = StubTreq(api.app.resource())
        response = self.successResultOf(stub.post(BASE + "/api/import?format=csv", data=body))
        answer = json.loads(self.successResultOf(stub.content(response)))
        self.assertEqual((response.code, answer["imported"]), (200, len(hostile)))
        self.assertEqual(sorted(fresh.store.series), sorted(self.core.store.series))
        self.assertIn("-cmd", fresh.store.series)
        self.assertIn("sec.tag;-k=x", fresh.store.series)
        self.assertIn("sec.plus;host=+1+1", fresh.store.series)
        self.assertIn("sec.minus;host=-2+3", fresh.store.series)
        self.assertIn("sec.at;cmd=@SUM:1", fresh.store.series)
        fresh.store.settle()
        self.assertEqual(fresh.store.series["sec.gauge"].gauge, -2.0)
        # The same export from the copy: nothing was lost or changed.
        self.api, self.core, self.stub = api, fresh, stub
        self.assertEqual(self.export(), body)
