"""
The spreadsheet export (format=csv-wide), export by key, and ISO 8601
timestamps on import.
"""

import csv
import io
import json

from server.core.model import COUNTER, GAUGE, TIMER, Sample
from server.test.support import T0
from server.test.test_web_api import APITestCase


class WideExportTests(APITestCase):

    def feed(self):
        for k in range(3):
            self.submit(Sample("lat", (("host", "a"),), TIMER, 100.0 + k, T0 + k),
                        Sample("hits", (), COUNTER, 2.0, T0 + k))
        self.submit(Sample("hits", (), COUNTER, 5.0, T0 + 10), Sample("temp", (), GAUGE, 21.5, T0))
        self.clock.advance(20)

    def export(self, query, status=200):
        d = self.stub.request("GET", "http://127.0.0.1:8080/api/export?" + query)
        for _ in range(1000):
            self.stub.flush()
            if d.called:
                break
            self.clock.advance(0)
        response = self.successResultOf(d)
        content = self.stub.content(response)
        for _ in range(1000):
            self.stub.flush()
            if content.called:
                break
            self.clock.advance(0)
        body = self.successResultOf(content)
        self.assertEqual(response.code, status, body)
        return response, body

    def test_one_numeric_column_per_field(self):
        """csv-wide: ISO time, epoch, key, type, then numbers only, a cell empty where the type has no field."""
        self.feed()
        response, body = self.export("format=csv-wide&key=lat%%3Bhost%%3Da&key=hits&from=%d&resolution=5s"
                                     % (T0,))
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/csv; charset=utf-8"])
        rows = list(csv.reader(io.StringIO(body.decode())))
        self.assertEqual(rows[0], ["timestamp", "epoch", "series", "type", "count", "rate", "sum", "min",
                                   "max", "mean", "std", "median", "p90", "p95", "p99", "last"])
        table = [dict(zip(rows[0], r)) for r in rows[1:]]
        self.assertEqual([(r["timestamp"], r["series"]) for r in table],
                         [("2026-11-23T00:00:00Z", "lat;host=a"), ("2026-11-23T00:00:00Z", "hits"),
                          ("2026-11-23T00:00:10Z", "hits")])
        lat, hits, later = table
        self.assertEqual((lat["epoch"], lat["type"], lat["count"], lat["min"], lat["max"], lat["mean"],
                          lat["rate"]), ("%d" % T0, "timer", "3", "100", "102", "101", ""))
        self.assertEqual((hits["count"], hits["rate"], hits["mean"]), ("6", "1.2", ""))
        self.assertEqual(later["count"], "5")
        for row in table:
            for name in rows[0][4:]:
                if row[name]:
                    float(row[name])  # numbers only: no units, no JSON

    def test_resolution_rules_apply(self):
        """csv-wide reads one tier, chosen as a plot's, with the same 400 when it cannot answer."""
        self.feed()
        _, body = self.export("format=csv-wide&key=temp&from=%d&resolution=1m" % (T0 - 60,))
        rows = list(csv.reader(io.StringIO(body.decode())))
        self.assertEqual(rows[0][4:], ["min", "max", "mean", "last", "updates"])
        self.assertEqual(rows[1][:4], ["2026-11-23T00:00:00Z", "%d" % T0, "temp", "gauge"])
        _, by_filter = self.export("format=csv-wide&filter=temp&from=%d&resolution=1m" % (T0 - 60,))
        self.assertEqual(by_filter, body)
        _, body = self.export("format=csv-wide&key=temp&from=-7d&resolution=5s", 400)
        self.assertEqual(json.loads(body)["parameter"], "resolution")

    def test_export_by_key_in_any_format(self):
        """key= exports exactly those series (what is plotted), not a filter's matches."""
        self.feed()
        _, body = self.export("format=ndjson&key=hits&key=nope&key=hits")
        names = {json.loads(line)[0] for line in body.splitlines()}
        self.assertEqual(names, {"hits"})
        _, body = self.export("format=csv&key=nope", 404)
        self.assertEqual(json.loads(body)["parameter"], "key")


class ImportIsoTests(APITestCase):

    def post(self, body, fmt):
        response, raw = self.request("POST", "/api/import?format=" + fmt, data=body)
        return response.code, json.loads(raw)

    def test_iso_timestamps(self):
        """An import takes ISO 8601 times in CSV, ndjson and JSON; no offset is UTC."""
        code, body = self.post(b"name,timestamp,value\niso.a,2026-11-22T23:00:00Z,1c\n"
                               b"iso.a,2026-11-22 23:00:07+00:00,2c\n", "csv")
        self.assertEqual(code, 200, body)
        code, body = self.post(b'["iso.b", "2026-11-22T23:00:00", "3c"]\n', "ndjson")
        self.assertEqual(code, 200, body)
        code, body = self.post(b'[["iso.c", "2026-11-23T00:00:00+01:00", "4c"]]', "json")
        self.assertEqual(code, 200, body)
        for key, count, ts in (("iso.a", 1.0, T0 - 3600), ("iso.b", 3.0, T0 - 3600),
                               ("iso.c", 4.0, T0 - 3600)):
            body = self.get_json("/api/series?key=%s&from=%d&until=%d&resolution=5s"
                                 % (key, ts, ts))
            self.assertEqual(body["fields"]["count"], [[ts, count]], key)

    def test_bad_time_names_its_row_and_one_is_singular(self):
        """A time that is neither a number nor ISO 8601 is a bad row with its number; "1 bad row"."""
        code, body = self.post(b"name,timestamp,value\niso.a,2026-11-22T23:00:00Z,1c\n"
                               b"iso.a,22/11/2026 23:00,1c\n", "csv")
        self.assertEqual(code, 400)
        self.assertEqual(body["error"], "1 bad row in the csv file; nothing was imported")
        self.assertEqual(body["bad_rows"][0]["row"], 3)
        self.assertIn("ISO 8601", body["bad_rows"][0]["error"])
        code, body = self.post(b'["a", "x", 1]\n["a", "y", 1]\n', "ndjson")
        self.assertEqual(body["error"], "2 bad rows in the ndjson file; nothing was imported")
