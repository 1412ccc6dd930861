"""
Saved dashboards: the shape check, the HTTP API, the journal and the
snapshot.
"""

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from server.core.boards import BoardError, check_board
from server.test.support import T0, replayed
from server.test.test_persistence import Server, run_snapshot
from server.test.test_web_api import APITestCase

BOARD = {
    "name": "API",
    "refresh": 5,
    "panels": [
        {"title": "latency", "series": ["api.latency;host=web1"], "filter": "api.latency host:*",
         "fields": ["p90"], "range": {"from": "-6h", "until": "now"}, "unit": "ms",
         "kind": "lines", "width": 6},
        {"series": ["web.requests"], "range": "follow", "kind": "bars", "units": {"web.requests": "/s"},
         "log": True},
        {"filter": "cpu", "kind": "number", "range": {"from": 1795390000}},
    ],
}


class CheckBoardTests(SynchronousTestCase):

    def test_good_board_kept_as_given(self):
        """A good dashboard is kept with its own extra members; server members are dropped."""
        body = dict(BOARD, id="mine", created=1)
        self.assertEqual(check_board(body), BOARD)

    def test_bad_shapes_name_the_member(self):
        """Each wrong member is a BoardError naming it, panels by position."""
        def with_panel(**panel):
            return {"name": "x", "panels": [{"series": ["a"]}, dict({"series": ["a"]}, **panel)]}
        for body, parameter in (
                ([], "body"), ({"panels": []}, "name"), ({"name": "", "panels": []}, "name"),
                ({"name": 3, "panels": []}, "name"), ({"name": "x"}, "panels"),
                ({"name": "x", "panels": {}}, "panels"),
                ({"name": "x", "panels": [{}] * 101}, "panels"),
                ({"name": "x", "panels": [3]}, "panels[0]"),
                ({"name": "x", "panels": [{}]}, "panels[0].series"),
                (with_panel(series=[], filter=" "), "panels[1].series"),
                (with_panel(series="a"), "panels[1].series"),
                (with_panel(filter=3), "panels[1].filter"),
                (with_panel(fields="p90"), "panels[1].fields"),
                (with_panel(range="last week"), "panels[1].range"),
                (with_panel(range={"until": "now"}), "panels[1].range"),
                (with_panel(range={"from": True}), "panels[1].range.from"),
                (with_panel(range={"from": "-1h", "until": []}), "panels[1].range.until"),
                (with_panel(unit="x" * 21), "panels[1].unit"),
                (with_panel(kind="pie"), "panels[1].kind"),
                (with_panel(units=["ms"]), "panels[1].units"),
                (with_panel(units={"a": 5}), "panels[1].units"),
                (with_panel(log="yes"), "panels[1].log"),
                ({"name": "x", "panels": [], "refresh": 0}, "refresh"),
                ({"name": "x", "panels": [], "refresh": "5"}, "refresh"),
                ({"name": "x", "panels": [], "refresh": True}, "refresh"),
                ({"name": "x", "panels": [], "refresh": 86401}, "refresh"),
                (with_panel(title=5), "panels[1].title")):
            with self.assertRaises(BoardError, msg=repr(body)) as caught:
                check_board(body)
            self.assertEqual(caught.exception.parameter, parameter, body)
        with self.assertRaises(BoardError) as caught:
            check_board(with_panel(kind="pie"))
        self.assertEqual(str(caught.exception),
                         "panels[1].kind must be one of lines, area, bars, number, got 'pie'")


class BoardAPITests(APITestCase):
    argv = ("--max-dashboards", "2", "--max-dashboard-bytes", "2000")

    def call(self, method, path, body=None, status=200):
        data = None if body is None else (body if isinstance(body, bytes) else
                                          json.dumps(body).encode())
        response, raw = self.request(method, path, data=data)
        self.assertEqual(response.code, status, raw)
        return response, json.loads(raw)

    def test_create_list_get_update_delete(self):
        """POST 201 with an id and Location; GET lists and reads; PUT replaces; DELETE removes."""
        response, made = self.call("POST", "/api/dashboards", BOARD, 201)
        board_id = made["id"]
        self.assertEqual(response.headers.getRawHeaders("location"),
                         ["/api/dashboards/" + board_id])
        self.assertEqual((made["created"], made["updated"]), (T0, T0))
        self.assertEqual(made["panels"], BOARD["panels"])
        _, other = self.call("POST", "/api/dashboards", {"name": "a first", "panels": []}, 201)
        _, listing = self.call("GET", "/api/dashboards")
        self.assertEqual(listing, {"count": 2, "dashboards": [
            {"id": other["id"], "name": "a first", "panels": 0, "updated": T0},
            {"id": board_id, "name": "API", "panels": 3, "updated": T0}]})
        _, got = self.call("GET", "/api/dashboards/" + board_id)
        self.assertEqual(got, made)
        self.clock.advance(10)
        _, put = self.call("PUT", "/api/dashboards/" + board_id,
                           {"name": "API 2", "panels": BOARD["panels"][:1], "id": "other"})
        self.assertEqual((put["id"], put["name"], put["created"], put["updated"]),
                         (board_id, "API 2", T0, T0 + 10))
        self.assertEqual(self.call("GET", "/api/dashboards/" + board_id)[1], put)
        self.assertEqual(self.call("DELETE", "/api/dashboards/" + board_id)[1],
                         {"deleted": board_id})
        for method in ("GET", "PUT", "DELETE"):
            body = self.call(method, "/api/dashboards/" + board_id, BOARD, 404)[1]
            self.assertEqual(body["parameter"], "id")
        self.assertEqual(self.core.journal.pending, [])

    def test_refusals(self):
        """A bad shape is a 400 naming it; over the size 413; over the count 409."""
        body = self.call("POST", "/api/dashboards",
                         {"name": "x", "panels": [{"series": ["a"], "kind": "pie"}]}, 400)[1]
        self.assertEqual(body["parameter"], "panels[0].kind")
        self.assertEqual(self.call("POST", "/api/dashboards", b"{", 400)[1]["parameter"], "body")
        self.assertEqual(self.core.counters["simplestats.dashboards.bad"], 1)
        self.call("POST", "/api/dashboards", {"name": "x" * 100, "panels": [{"filter": "y" * 2000}]},
                  413)
        self.call("POST", "/api/dashboards", BOARD, 201)
        self.call("POST", "/api/dashboards", BOARD, 201)
        body = self.call("POST", "/api/dashboards", BOARD, 409)[1]
        self.assertIn("--max-dashboards", body["error"])
        self.assertEqual(len(self.core.boards), 2)


class BoardTokenTests(APITestCase):
    argv = ("--api-token", "s3cret-token-0123456789")

    def test_writes_need_the_token(self):
        """POST, PUT and DELETE of dashboards need the token when one is set; GET does not."""
        response, _ = self.request("POST", "/api/dashboards", data=json.dumps(BOARD).encode())
        self.assertEqual(response.code, 401)
        response, raw = self.request("POST", "/api/dashboards", data=json.dumps(BOARD).encode(),
                                     headers={"X-SimpleStats-Token": "s3cret-token-0123456789"})
        self.assertEqual(response.code, 201)
        board_id = json.loads(raw)["id"]
        for method in ("PUT", "DELETE"):
            response, _ = self.request(method, "/api/dashboards/" + board_id,
                                       data=json.dumps(BOARD).encode(),
                                       headers={"X-SimpleStats-Token": "wrong"})
            self.assertEqual(response.code, 403)
        self.assertEqual(self.get_json("/api/dashboards")["count"], 1)


class BoardDurabilityTests(SynchronousTestCase):

    def test_replay_rebuilds_dashboards(self):
        """Replaying the journal rebuilds the dashboards, updates and deletions included."""
        from server.test.support import make_core
        core = make_core(self)
        for n, board_id in enumerate(("a", "b")):
            core.put_board(dict(check_board(BOARD), id=board_id, created=T0, updated=T0 + n))
        core.put_board(dict(check_board({"name": "renamed", "panels": []}), id="a", created=T0,
                            updated=T0 + 5))
        core.delete_board("b")
        fresh = replayed(self, core)
        self.assertEqual(fresh.boards.to_json(), core.boards.to_json())
        self.assertEqual(fresh.boards.listing()[0]["name"], "renamed")

    def test_snapshot_keeps_dashboards(self):
        """Dashboards in the snapshot and those journaled after it survive a restart."""
        clock = Clock()
        clock.advance(T0)
        server = Server(self, clock)
        core = server.core
        core.put_board(dict(check_board(BOARD), id="a", created=T0, updated=T0))
        core.put_board(dict(check_board(BOARD), id="gone", created=T0, updated=T0))
        core.delete_board("gone")
        snapshotter = server.snapshotter()
        snapshotter.state = core.durable_state
        self.successResultOf(run_snapshot(clock, snapshotter))
        core.put_board(dict(check_board({"name": "later", "panels": []}), id="b", created=T0,
                            updated=T0))
        again = server.recovered(self)
        self.assertEqual(sorted(again.core.boards.by_id), ["a", "b"])
        self.assertEqual(again.core.boards.by_id["a"]["panels"], BOARD["panels"])
