"""
gzip of the API's JSON answers (server.web.site.compressed) through StubTreq.
"""

import gzip
import json

from treq.testing import RequestTraversalAgent, StubTreq
from twisted.web.client import readBody
from twisted.web.http_headers import Headers

from server.core.model import COUNTER, TIMER, Sample
from server.test.support import T0
from server.test.test_web_api import BASE, APITestCase
from server.web.site import compressed

GZIP = {"Accept-Encoding": "gzip, deflate"}


class GzipTests(APITestCase):

    def setUp(self):
        APITestCase.setUp(self)
        self.stub = StubTreq(compressed(self.api.app.resource()))
        # treq asks for gzip and decompresses by itself: the raw agent shows
        # what went over the wire.
        self.agent = RequestTraversalAgent(compressed(self.api.app.resource()))
        for k in range(500):
            self.submit(Sample("t", (), TIMER, float(k % 17), T0 - 3600 + 5 * k),
                        Sample("c", (), COUNTER, 1.0, T0 - 3600 + 5 * k))

    def request(self, method, path, headers=None):
        d = self.agent.request(method.encode(), (BASE + path).encode(),
                               Headers({k: [v] for k, v in (headers or {}).items()}))
        fired = []
        d.addBoth(lambda result: fired.append(True) or result)
        for _ in range(10000):
            self.agent.flush()
            if fired:
                break
            self.clock.advance(0)
        response = self.successResultOf(d)
        body = readBody(response)
        for _ in range(10000):
            self.agent.flush()
            if body.called:
                break
            self.clock.advance(0)
        return response, self.successResultOf(body)

    def test_json_is_compressed_when_accepted(self):
        """A JSON answer is gzip when the client accepts it, and the same JSON once decompressed."""
        path = "/api/series/batch?key=t&key=c&from=-2h"
        plain, plain_body = self.request("GET", path)
        self.assertIsNone(plain.headers.getRawHeaders("content-encoding"))
        packed, packed_body = self.request("GET", path, headers=GZIP)
        self.assertEqual(packed.code, 200)
        self.assertEqual(packed.headers.getRawHeaders("content-encoding"), ["gzip"])
        self.assertEqual(packed.headers.getRawHeaders("vary"), ["Accept-Encoding"])
        self.assertEqual(json.loads(gzip.decompress(packed_body)), json.loads(plain_body))
        self.assertLess(len(packed_body) * 4, len(plain_body))

    def test_streamed_metric_list_and_errors_are_compressed(self):
        """The metric list, written a slice at a time, and an error answer decompress whole."""
        response, body = self.request("GET", "/api/metrics", headers=GZIP)
        self.assertEqual([m["key"] for m in json.loads(gzip.decompress(body))["metrics"]], ["c", "t"])
        response, body = self.request("GET", "/api/series?key=nope", headers=GZIP)
        self.assertEqual(response.code, 404)
        self.assertEqual(json.loads(gzip.decompress(body))["parameter"], "key")

    def test_export_is_not_compressed(self):
        """The export stream goes out as it is, whole, even to a client that accepts gzip."""
        response, body = self.request("GET", "/api/export?format=ndjson&filter=c", headers=GZIP)
        self.assertEqual(response.code, 200)
        self.assertIsNone(response.headers.getRawHeaders("content-encoding"))
        rows = [json.loads(line) for line in body.splitlines()]
        # Counter rows are "<count>c": every point is in the stream.
        self.assertEqual(sum(float(r[2].rstrip("c")) for r in rows), 500)

    def test_static_files_are_not_compressed(self):
        """Only /api/ answers are compressed."""
        response, _ = self.request("GET", "/no-such-file.js", headers=GZIP)
        self.assertIsNone(response.headers.getRawHeaders("content-encoding"))
