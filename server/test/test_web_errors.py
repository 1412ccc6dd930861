"""
The web port's error answers (L{server.web.errors}) through the site's whole
tree (ingest, Graphite, the JSON API and the static files) on StubTreq: every
error body is JSON naming the problem.
"""

import json
import os

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from server.core.graphite_names import Pattern
from server.core.model import GAUGE, Sample
from server.test.support import make_core
from server.web.api import WebAPI
from server.web.graphite.api import GraphiteAPI, is_graphite_path
from server.web.ingest import HttpIngest, is_ingest_path
from server.web.routing import Routes

BASE = "http://127.0.0.1:8080"


class BrokenSnapshotter:
    """
    A snapshotter whose status raises, as a bug in a handler would.
    """

    @property
    def status(self):
        raise RuntimeError("the status broke")


class ErrorsCase(SynchronousTestCase):
    argv = ()
    snapshotter = None

    def setUp(self):
        self.core = make_core(self, *self.argv)
        clock = self.core.clock
        settings = self.core.settings
        self.api = WebAPI(self.core, settings, clock, self.snapshotter)
        ingest = HttpIngest(self.core, settings, clock)
        graphite = GraphiteAPI(self.core, settings, clock)
        self.stub = StubTreq(Routes(self.api.app.resource(), (is_ingest_path, ingest.app.resource()),
                                    (is_graphite_path, graphite.app.resource())))

    def error(self, method, path, status):
        d = self.stub.request(method, BASE + path)
        self.stub.flush()
        response = self.successResultOf(d)
        body = self.successResultOf(self.stub.content(response))
        self.assertEqual(response.code, status, body)
        self.assertEqual(response.headers.getRawHeaders("content-type"),
                         ["application/json; charset=utf-8"], (method, path, body))
        return response, json.loads(body)["error"]


class MethodAndPathTests(ErrorsCase):
    def test_wrong_method_is_a_json_405(self):
        """A method its path does not take is a JSON 405 naming the method, the path and those it takes, with Allow, on every app."""
        for method, path, allowed in (("GET", "/put?topic=t1", "POST, PUT"),
                                      ("DELETE", "/ping", "GET, HEAD"),
                                      ("GET", "/agg", "POST, PUT"),
                                      ("PATCH", "/api/health", "GET, HEAD"),
                                      ("DELETE", "/render", "GET, HEAD, POST"),
                                      ("PUT", "/metrics/find", "GET, HEAD, POST"),
                                      ("POST", "/index.html", "GET, HEAD")):
            response, error = self.error(method, path, 405)
            self.assertEqual(error, "method %s is not allowed on %s; it takes %s"
                             % (method, path.split("?")[0], allowed))
            self.assertEqual(response.headers.getRawHeaders("allow"), [allowed])
        self.assertEqual(self.core.counters["simplestats.http.errors"], 7)

    def test_unknown_path_is_a_json_404(self):
        """A path no route nor file answers is a JSON 404 naming it, under /api/, Graphite's paths and the static files."""
        for path in ("/api/nope", "/tags/x/y", "/nonexistent.html", "/js/nope.js"):
            _, error = self.error("GET", path, 404)
            self.assertTrue(error.startswith("no such path %s: " % (path,)), error)

    def test_failing_handler_is_a_json_500(self):
        """A handler that raises is a JSON 500 naming the call and the exception, counted."""
        self.api.snapshotter = BrokenSnapshotter()
        _, error = self.error("GET", "/api/health", 500)
        self.assertEqual(error, "internal error answering GET /api/health: RuntimeError:"
                                " the status broke")
        self.assertEqual(self.core.counters["simplestats.http.internal_errors"], 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_failing_render_is_a_json_500(self):
        """A Graphite call that fails inside is a JSON 500 naming the target and the exception."""
        def broken(pattern, series):
            raise RuntimeError("the pattern broke")

        self.assertEqual(self.core.submit([Sample("a.b", (), GAUGE, 1.0)], "test"), [])
        self.patch(Pattern, "ranked_paths", broken)
        _, error = self.error("GET", "/render?target=a.*", 500)
        self.assertEqual(error, "internal error rendering a.*: RuntimeError: the pattern broke")
        self.assertEqual(self.core.counters["simplestats.graphite.errors"], 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class NoDashboardTests(ErrorsCase):
    def setUp(self):
        empty = self.mktemp()
        os.makedirs(empty)
        self.argv = ("--web-root", empty)
        ErrorsCase.setUp(self)
        self.api.web_root = None

    def test_missing_dashboard_is_a_json_404(self):
        """Without the dashboard's files, / is a JSON 404 saying to give --web-root."""
        _, error = self.error("GET", "/", 404)
        self.assertIn("give --web-root", error)
