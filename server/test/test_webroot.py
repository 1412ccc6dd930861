"""
The dashboard's files are found from the package, whatever the working
directory; without them the API still answers and / says what is missing.
"""

import os

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from server.test.support import make_core
from server.web import api as api_module
from server.web.api import WebAPI
from server.web.webroot import find_web_root


class FindWebRootTests(SynchronousTestCase):
    def folder(self, with_index):
        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        if with_index:
            with open(os.path.join(path, "index.html"), "w") as f:
                f.write("<html></html>")
        return path

    def test_configured_wins(self):
        """--web-root is used as given (made absolute), before any candidate."""
        found = find_web_root("some/where", [self.folder(True)])
        self.assertEqual(found, os.path.abspath("some/where"))

    def test_first_candidate_with_index(self):
        """The first candidate holding an index.html is chosen; one without is skipped."""
        empty, full, other = self.folder(False), self.folder(True), self.folder(True)
        self.assertEqual(find_web_root("", [empty, full, other]), full)

    def test_none_found(self):
        """No candidate holds an index.html: None."""
        self.assertIsNone(find_web_root("", [self.folder(False), "/nonexistent"]))

    def test_default_does_not_depend_on_working_directory(self):
        """From an unrelated working directory the default still finds the dashboard."""
        elsewhere = self.folder(False)
        before = os.getcwd()
        os.chdir(elsewhere)
        self.addCleanup(os.chdir, before)
        found = find_web_root("")
        self.assertIsNotNone(found)
        self.assertTrue(os.path.isabs(found))
        self.assertTrue(os.path.isfile(os.path.join(found, "index.html")))


class MissingDashboardTests(SynchronousTestCase):
    def test_root_names_what_is_missing(self):
        """Without the dashboard's files / is a 404 saying so, and the API still answers."""
        self.patch(api_module, "find_web_root", lambda configured: None)
        core = make_core(self)
        stub = StubTreq(WebAPI(core, core.settings, core.clock).app.resource())
        response = self.successResultOf(stub.get("http://127.0.0.1/"))
        self.assertEqual(response.code, 404)
        body = self.successResultOf(response.text())
        self.assertIn("dashboard's files are not installed", body)
        self.assertIn("--web-root", body)
        health = self.successResultOf(stub.get("http://127.0.0.1/api/health"))
        self.assertEqual(health.code, 200)
