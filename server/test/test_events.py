"""
Events: the DogStatsD parser, the bounded holder, the HTTP API, the statsd
datagram, the journal and the snapshot.
"""

import json
import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from server.core.events import EventError, Events, check_event
from server.core.model import COUNTER, Sample
from server.core.parse_statsd import BadMetric, parse_event
from server.durability.journal import read_journal
from server.durability.snapshot import SNAPSHOT_NAME
from server.receivers.statsd import StatsdProtocol
from server.test.support import T0, make_core, replayed
from server.test.test_persistence import Server, run_snapshot
from server.test.test_web_api import APITestCase

PEER = ("127.0.0.1", 9999)

GOOD_EVENTS = [
    ("_e{5,4}:hello|text", None, {"what": "hello", "data": "text", "tags": []}),
    ("_e{6,9}:deploy|line\\\\nend|d:1795391000|h:web1|p:low|t:error|k:k1|s:jenkins|#env:prod,api",
     1795391000.0, {"what": "deploy", "data": "line\nend", "tags": ["env:prod", "api"], "host": "web1",
                    "priority": "low", "alert_type": "error", "aggregation_key": "k1",
                    "source_type": "jenkins"}),
    # Lengths in UTF-8 bytes (the agent), or in characters (some clients).
    ("_e{7,1}:d\u00e9ploy|x", None, {"what": "d\u00e9ploy", "data": "x", "tags": []}),
    ("_e{6,1}:d\u00e9ploy|x", None, {"what": "d\u00e9ploy", "data": "x", "tags": []}),
    # The title may hold a | when the length says so.
    ("_e{3,0}:a|b|", None, {"what": "a|b", "data": "", "tags": []}),
]

BAD_EVENTS = [
    ("_e{1,1}", "must start"),
    ("_e{9,1}:a|b", "not 9 and 1 long"),
    ("_e{1,5}:a|b", "not 1 and 5 long"),
    ("_e{0,1}:|b", "needs a title"),
    ("_e{1,1}:a|b|d:soon", "d: is not a timestamp"),
    ("_e{1,1}:a|bc", "not 1 and 1 long"),
    ("_e{1,1}:a|b|z:1", "unknown event field"),
]


class ParseEventTests(SynchronousTestCase):

    def test_good_events(self):
        """Each DogStatsD event line parses to its time and members."""
        for line, when, members in GOOD_EVENTS:
            self.assertEqual(parse_event(line.replace("\\\\", "\\")), (when, members), line)

    def test_bad_events(self):
        """A malformed event line is a BadMetric saying what is wrong."""
        for line, message in BAD_EVENTS:
            with self.assertRaises(BadMetric, msg=line) as caught:
                parse_event(line)
            self.assertIn(message, caught.exception.args[0], line)


class CheckEventTests(SynchronousTestCase):

    def test_shape(self):
        """Graphite's JSON: tags as a list or a string; a bad member is named."""
        event = check_event({"what": "deploy", "tags": "a b,c", "data": "x"}, 5.0, "http")
        self.assertEqual(event, {"id": None, "when": 5.0, "what": "deploy", "tags": ["a", "b", "c"],
                                 "data": "x", "source": "http"})
        for body, parameter in (([], "body"), ({}, "what"), ({"what": " "}, "what"),
                                ({"what": "x" * 201}, "what"), ({"what": "a", "tags": 3}, "tags"),
                                ({"what": "a", "tags": ["t"] * 21}, "tags"),
                                ({"what": "a", "data": 1}, "data"),
                                ({"what": "a", "priority": "high"}, "priority"),
                                ({"what": "a", "alert_type": "bad"}, "alert_type")):
            with self.assertRaises(EventError) as caught:
                check_event(body, 5.0, "http")
            self.assertEqual(caught.exception.parameter, parameter, body)


class EventsTests(SynchronousTestCase):

    def test_bounded_oldest_dropped(self):
        """Past the limit the oldest events (by time) go, and are counted."""
        events = Events(3)
        for when in (50, 10, 40, 30, 20):
            events.add(check_event({"what": "e%d" % when}, when, "http"))
        self.assertEqual([e["when"] for e in events.between(0, 100)], [30.0, 40.0, 50.0])
        self.assertEqual(events.dropped, 2)
        self.assertEqual(events.next_id, 6)

    def test_between_and_tags(self):
        """between() keeps the range, inclusive, and events with every tag asked."""
        events = Events(10)
        for when, tags in ((10, ["a"]), (20, ["a", "b"]), (30, ["b"])):
            events.add(check_event({"what": "x", "tags": tags}, when, "http"))
        self.assertEqual([e["when"] for e in events.between(10, 20)], [10.0, 20.0])
        self.assertEqual([e["when"] for e in events.between(0, 99, ["b"])], [20.0, 30.0])
        self.assertEqual([e["when"] for e in events.between(0, 99, ["a", "b"])], [20.0])
        self.assertTrue(events.delete(2))
        self.assertFalse(events.delete(2))
        self.assertEqual([e["id"] for e in events.between(0, 99)], [1, 3])


class EventAPITests(APITestCase):

    def post(self, body, status=201, headers=None):
        response, raw = self.request("POST", "/api/events", data=json.dumps(body).encode(),
                                     headers=headers)
        self.assertEqual(response.code, status, raw)
        return json.loads(raw)

    def test_post_list_delete(self):
        """POST answers 201 with the id; GET lists by range and tags; DELETE removes."""
        first = self.post({"what": "deploy api", "tags": ["deploy", "api"], "data": "v1",
                           "when": T0 - 600})
        self.assertEqual(first["id"], 1)
        self.assertEqual(first["source"], "http")
        self.post({"what": "deploy web", "tags": "deploy web", "when": "-5m"})
        self.post({"what": "old", "when": T0 - 3 * 86400})
        body = self.get_json("/api/events")
        self.assertEqual([e["what"] for e in body["events"]], ["deploy api", "deploy web"])
        self.assertEqual((body["count"], body["stored"], body["dropped"]), (2, 3, 0))
        self.assertEqual(body["events"][1]["when"], T0 - 300)
        body = self.get_json("/api/events?from=-7d&tags=deploy,api")
        self.assertEqual([e["id"] for e in body["events"]], [1])
        response, raw = self.request("DELETE", "/api/events/1")
        self.assertEqual(json.loads(raw), {"deleted": 1})
        self.assertEqual(self.request("DELETE", "/api/events/1")[0].code, 404)
        self.assertEqual(self.request("DELETE", "/api/events/abc")[0].code, 404)
        self.assertEqual([e["id"] for e in self.get_json("/api/events?from=-7d")["events"]], [3, 2])
        self.assertEqual(self.core.journal.pending, [])

    def test_bad_bodies_are_400_naming_the_member(self):
        """A body that is not JSON or an event of the wrong shape is a 400 naming what; counted."""
        for data, parameter in ((b"{", "body"), (b"[]", "body"), (b'{"what": ""}', "what"),
                                (b'{"what": "a", "when": "soon"}', "when"),
                                (b'{"what": "a", "when": true}', "when")):
            response, raw = self.request("POST", "/api/events", data=data)
            self.assertEqual(response.code, 400, data)
            self.assertEqual(json.loads(raw)["parameter"], parameter, data)
        self.assertEqual(self.core.counters["simplestats.events.bad"], 4)

    def test_bounded_by_setting(self):
        """--max-events bounds the events held; the oldest are dropped and counted."""
        self.core.events.limit = 2
        for k in range(4):
            self.post({"what": "e%d" % k, "when": T0 - 100 + k})
        body = self.get_json("/api/events")
        self.assertEqual([e["what"] for e in body["events"]], ["e2", "e3"])
        self.assertEqual(body["dropped"], 2)
        self.assertEqual(self.core.counters["simplestats.events.dropped"], 2)


class EventTokenTests(APITestCase):
    argv = ("--api-token", "s3cret-token-0123456789")

    def test_writes_need_the_token(self):
        """POST and DELETE of events need the token when one is set; GET does not."""
        response, _ = self.request("POST", "/api/events", data=b'{"what": "x"}')
        self.assertEqual(response.code, 401)
        response, _ = self.request("POST", "/api/events", data=b'{"what": "x"}',
                                   headers={"X-SimpleStats-Token": "s3cret-token-0123456789"})
        self.assertEqual(response.code, 201)
        self.assertEqual(self.request("DELETE", "/api/events/1")[0].code, 401)
        self.assertEqual(self.get_json("/api/events")["count"], 1)


class StatsdEventTests(SynchronousTestCase):

    def setUp(self):
        self.core = make_core(self)
        self.proto = StatsdProtocol(self.core, self.core.settings.limits, self.core.clock)

    def test_event_datagram_beside_metrics(self):
        """An _e line in a packet becomes an event; the metrics around it apply; the packet journaled without it."""
        self.proto.datagramReceived(b"a:1|c\n_e{6,2}:deploy|ok|#env:prod\nb:2|c", PEER)
        events = self.core.events.between(0, T0 + 1)
        self.assertEqual([(e["what"], e["data"], e["tags"], e["when"], e["source"]) for e in events],
                         [("deploy", "ok", ["env:prod"], T0, "statsd")])
        self.assertEqual(self.core.counters["simplestats.udp.points"], 2)
        self.assertEqual(self.core.counters["simplestats.udp.bad"], 0)
        self.assertEqual(self.core.counters["simplestats.events.received"], 1)
        self.assertEqual(self.core.received["udp"], 3)
        self.core.durable()
        records, _ = read_journal(os.path.join(self.core.settings.data_dir, "journal.000001.log"))
        raw = [r for r in records if not isinstance(r, list)]
        self.assertEqual([r[2] for r in raw], [b"a:1|c\nb:2|c"])
        self.assertEqual([r[0][0] for r in records if isinstance(r, list)], ["e"])

    def test_bad_event_is_a_bad_line(self):
        """A malformed _e line is counted in simplestats.udp.bad; the packet's metrics still apply."""
        self.proto.datagramReceived(b"_e{9,1}:a|b\na:1|c", PEER)
        self.assertEqual(self.core.counters["simplestats.udp.bad"], 1)
        self.assertEqual(self.core.counters["simplestats.udp.points"], 1)
        self.assertEqual(len(self.core.events), 0)

    def test_event_only_packet(self):
        """A packet of one event journals the event and no raw packet."""
        self.proto.datagramReceived(b"_e{1,1}:a|b", PEER)
        self.assertEqual(len(self.core.events), 1)
        self.core.durable()
        records, _ = read_journal(os.path.join(self.core.settings.data_dir, "journal.000001.log"))
        self.assertEqual([r[0][0] for r in records], ["e"])

    def test_replay_rebuilds_events(self):
        """Replaying the journal rebuilds the events, deletions included, with their ids."""
        self.proto.datagramReceived(b"_e{1,1}:a|b\n_e{1,1}:c|d", PEER)
        self.core.add_event(check_event({"what": "http"}, T0 - 5, "http"))
        self.assertTrue(self.core.delete_event(2))
        fresh = replayed(self, self.core)
        self.assertEqual(fresh.events.to_json(), self.core.events.to_json())
        self.assertEqual([e["id"] for e in fresh.events.between(0, T0 + 1)], [3, 1])


class EventSnapshotTests(SynchronousTestCase):

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(T0)
        self.server = Server(self, self.clock)

    def test_snapshot_keeps_events(self):
        """Events in the snapshot and events journaled after it both survive a restart."""
        core = self.server.core
        core.add_event(check_event({"what": "before", "tags": ["a"]}, T0, "http"))
        core.add_event(check_event({"what": "gone"}, T0, "http"))
        core.delete_event(2)
        self.server.submit(self, [Sample("c", (), COUNTER, 1.0)])
        snapshotter = self.server.snapshotter()
        snapshotter.state = core.durable_state
        self.successResultOf(run_snapshot(self.clock, snapshotter))
        core.add_event(check_event({"what": "after"}, T0 + 1, "http"))
        again = self.server.recovered(self)
        self.assertEqual([(e["id"], e["what"]) for e in again.core.events.between(0, T0 + 9)],
                         [(1, "before"), (3, "after")])
        self.assertEqual(again.core.events.next_id, 4)

    def test_snapshot_without_events_loads(self):
        """A snapshot written before events existed loads with none."""
        self.server.submit(self, [Sample("c", (), COUNTER, 1.0)])
        self.successResultOf(run_snapshot(self.clock, self.server.snapshotter()))
        path = os.path.join(self.server.directory, SNAPSHOT_NAME)
        import gzip
        with gzip.open(path) as f:
            self.assertNotIn(b'"events"', f.readline())
        again = self.server.recovered(self)
        self.assertEqual(len(again.core.events), 0)
        self.assertIn("c", again.store.series)
