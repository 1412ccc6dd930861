"""
Alerts: the rule check, each condition with for, hysteresis and repeat,
silences, series joining a rule, and a restart that does not notify again;
all on a task.Clock.
"""

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from server.alerts.engine import FIRING, OK, PENDING, RESOLVED, AlertEngine
from server.alerts.rules import RuleError, check_rule, required_literal
from server.core.model import COUNTER, GAUGE, TIMER, Sample
from server.core.store import Store
from server.test.support import T0, make_core

HOOK = [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}]


class Recorder:
    """
    A delivery that records what it is given; C{fail} of them fail first.
    """

    def __init__(self, fail=0):
        self.sent = []
        self.fail = fail
        self.attempts = 0

    def __call__(self, channel, note):
        self.attempts += 1
        if self.fail:
            self.fail -= 1
            return defer.fail(RuntimeError("endpoint answered 500"))
        self.sent.append((channel["type"], note["state"], note["series"], note))
        return defer.succeed(None)


class Harness:
    """
    A core, its store and an engine on one clock.
    """

    def __init__(self, testcase, recorder=None, core=None):
        self.core = core or make_core(testcase)
        self.clock = self.core.clock
        self.store = self.core.store
        self.recorder = recorder or Recorder()
        self.engine = AlertEngine(self.core, self.clock, self.recorder,
                                  base_url="http://dash:8080", new_id=self._ids())
        self.core.extend("alerts", self.engine)
        self.engine.start()

    @staticmethod
    def _ids():
        n = iter(range(1, 10 ** 6))
        return lambda: "r%d" % next(n)

    def rule(self, **body):
        spec = check_rule(dict({"name": "r", "notify": HOOK}, **body), self.store.tiers)
        spec["id"] = self.engine.fresh_id(self.engine.rules)
        self.engine.put_rule(spec)
        return spec["id"]

    def send(self, name, value, mtype=GAUGE, tags=()):
        errors = self.core.submit([Sample(name, tags, mtype, value)], "tcp")
        assert not errors, errors

    def step(self, seconds=5.0):
        """Advance the clock and close what is due (as the rollup timer does)."""
        self.clock.advance(seconds)
        self.store.tick(self.clock.seconds())
        # Deliveries start in the next reactor turn.
        self.clock.advance(0)

    def feed(self, name, values, **kw):
        """One value per 5 s bucket, each bucket then closed."""
        for value in values:
            self.send(name, value, **kw)
            self.step()
        # The late grace: the last bucket closes 5 s after its end.
        self.step()

    def state(self, rule_id, key):
        return self.engine.instances[(rule_id, key)].state

    def sent(self):
        return [(state, series) for _, state, series, _ in self.recorder.sent]


class CheckRuleTests(SynchronousTestCase):

    def tiers(self):
        return Store(make_core(self).settings.tiers).tiers

    def test_good_rule_gets_defaults(self):
        """A minimal above rule gets field last, the finest resolution, for 0 and no repeat."""
        rule = check_rule({"name": "hot", "filter": "room.temp", "above": 50, "notify": HOOK},
                          self.tiers())
        self.assertEqual((rule["field"], rule["resolution"], rule["for"], rule["repeat"],
                          rule["condition"]), ("last", 5, 0.0, 0.0, "above"))
        self.assertEqual(rule["notify"][0]["url"], "http://127.0.0.1:9/hook")

    def test_bad_rules_name_the_member(self):
        """Each wrong member is a RuleError naming it."""
        base = {"name": "x", "filter": "a", "above": 1}
        for body, parameter in (
                ([], "body"), ({"filter": "a", "above": 1}, "name"),
                (dict(base, name=""), "name"),
                ({"name": "x", "above": 1}, "filter"),
                (dict(base, filter="/(a/"), "filter"),
                (dict(base, field="p42"), "field"),
                (dict(base, resolution="7s"), "resolution"),
                (dict(base, above="hot"), "above"),
                (dict(base, below=3), "condition"),
                ({"name": "x", "filter": "a"}, "condition"),
                (dict(base, recover=5), "recover"),
                (dict(base, **{"for": "soon"}), "for"),
                (dict(base, notify={}), "notify"),
                (dict(base, notify=[{"type": "pigeon"}]), "notify[0].type"),
                (dict(base, notify=[{"type": "webhook", "url": "ftp://x"}]), "notify[0].url"),
                (dict(base, notify=[{"type": "email"}]), "notify[0].to"),
                (dict(base, notify=[{"type": "email", "to": "a@b", "port": 0}]),
                 "notify[0].port"),
                (dict(base, notify=[{"type": "email", "to": "a@b", "username": "u"}]),
                 "notify[0].password"),
                (dict(base, notify=[{"type": "apprise", "url": "nothing"}]), "notify[0].url"),
                ({"name": "x", "filter": "a", "stopped": {}}, "stopped.after"),
                ({"name": "x", "filter": "a", "anomaly": {"method": "x"}}, "anomaly.method"),
                ({"name": "x", "filter": "a", "anomaly": {"method": "dayweek"}}, "resolution"),
                ({"name": "x y", "probe": {"tcp": "h:1"}}, "probe.name"),
                ({"name": "x", "probe": {"tcp": "h"}}, "probe.tcp"),
                ({"name": "x", "probe": {}}, "probe"),
                ({"name": "x", "probe": {"http": "http://h/", "failures": 0}}, "probe.failures")):
            with self.assertRaises(RuleError, msg=repr(body)) as caught:
                check_rule(body, self.tiers())
            self.assertEqual(caught.exception.parameter, parameter, body)

    def test_required_literal(self):
        """The index's literal is the longest plain piece; none for regexes, tags, negations."""
        self.assertEqual(required_literal("web*.CPU.user host:a"), ".cpu.user")
        self.assertEqual(required_literal("/^web/ -db host:x"), "")
        self.assertEqual(required_literal("--api"), "api")


class ThresholdTests(SynchronousTestCase):

    def test_above_fires_and_resolves_with_notifications(self):
        """above 50 with for 0: firing on the first bucket over, resolved (with how long) below."""
        h = Harness(self)
        rid = h.rule(filter="room.temp", above=50)
        h.feed("room.temp", [40, 60])
        self.assertEqual(h.state(rid, "room.temp"), FIRING)
        h.feed("room.temp", [45])
        self.assertEqual(h.state(rid, "room.temp"), RESOLVED)
        self.assertEqual(h.sent(), [("firing", "room.temp"), ("resolved", "room.temp")])
        resolved = h.recorder.sent[1][3]
        self.assertEqual(resolved["value"], 45.0)
        self.assertEqual(resolved["threshold"], 50.0)
        self.assertGreater(resolved["fired_for"], 0)
        self.assertIn("series=room.temp", resolved["url"])
        self.assertTrue(resolved["url"].startswith("http://dash:8080/?"))

    def test_below(self):
        """below fires under the threshold and not at it."""
        h = Harness(self)
        rid = h.rule(filter="disk.free", below=10)
        h.feed("disk.free", [10])
        self.assertEqual(h.state(rid, "disk.free"), OK)
        h.feed("disk.free", [9.5])
        self.assertEqual(h.state(rid, "disk.free"), FIRING)

    def test_for_needs_the_condition_to_hold(self):
        """With for 10 the instance is pending, back to ok on a good bucket, firing after 10 s."""
        h = Harness(self)
        rid = h.rule(filter="cpu", above=90, **{"for": 10})
        h.feed("cpu", [95])
        self.assertEqual(h.state(rid, "cpu"), PENDING)
        h.feed("cpu", [50])
        self.assertEqual(h.state(rid, "cpu"), OK)
        h.feed("cpu", [95, 96])
        self.assertEqual(h.state(rid, "cpu"), PENDING)
        h.feed("cpu", [97])
        self.assertEqual(h.state(rid, "cpu"), FIRING)
        self.assertEqual(h.sent(), [("firing", "cpu")])

    def test_hysteresis(self):
        """Fires above 90, stays firing at 85, resolves only below recover 80."""
        h = Harness(self)
        rid = h.rule(filter="cpu", above=90, recover=80)
        h.feed("cpu", [95, 85, 81])
        self.assertEqual(h.state(rid, "cpu"), FIRING)
        h.feed("cpu", [79])
        self.assertEqual(h.state(rid, "cpu"), RESOLVED)
        self.assertEqual(h.sent(), [("firing", "cpu"), ("resolved", "cpu")])

    def test_no_second_notification_while_firing(self):
        """Without repeat, a rule firing for many buckets notifies once."""
        h = Harness(self)
        h.rule(filter="cpu", above=90)
        h.feed("cpu", [95] * 10)
        self.assertEqual(h.sent(), [("firing", "cpu")])

    def test_repeat(self):
        """repeat 20: notified again every 20 s while firing, and not more often."""
        h = Harness(self)
        h.rule(filter="cpu", above=90, repeat=20)
        h.feed("cpu", [95] * 9)
        notes = [n for _, _, _, n in h.recorder.sent]
        self.assertEqual([n["repeat"] for n in notes], [False, True, True])
        self.assertEqual(len({n["id"] for n in notes}), 3)

    def test_fields_of_timers_and_counters(self):
        """p99 of a timer and rate of a counter are what the rule reads."""
        h = Harness(self)
        slow = h.rule(filter="api.latency", field="p99", above=100)
        busy = h.rule(filter="api.hits", field="rate", above=1)
        for v in [10] * 97 + [500] * 3:
            h.send("api.latency", v, mtype=TIMER)
        for _ in range(4):
            h.send("api.hits", 1, mtype=COUNTER)
        h.step()
        h.step()
        self.assertEqual(h.state(slow, "api.latency"), FIRING)
        self.assertEqual(h.state(busy, "api.hits"), OK)  # 4 in 5 s: 0.8/s
        self.assertNotIn((slow, "api.hits"), h.engine.instances)

    def test_one_instance_per_series_and_later_series_join(self):
        """A rule matches each series apart, tags in the filter, and a series created later."""
        h = Harness(self)
        rid = h.rule(filter="temp host:web*", above=50)
        h.send("temp", 60, tags=(("host", "web1"),))
        h.send("temp", 10, tags=(("host", "web2"),))
        h.send("temp", 99, tags=(("host", "db1"),))
        h.step()
        h.step()
        self.assertEqual(h.state(rid, "temp;host=web1"), FIRING)
        self.assertEqual(h.state(rid, "temp;host=web2"), OK)
        self.assertNotIn((rid, "temp;host=db1"), h.engine.instances)
        h.feed("temp", [70], tags=(("host", "web3"),))
        self.assertEqual(h.state(rid, "temp;host=web3"), FIRING)

    def test_rule_added_later_reads_existing_series(self):
        """A rule saved after a series exists evaluates it on its next bucket."""
        h = Harness(self)
        h.feed("cpu", [95])
        rid = h.rule(filter="cpu", above=90)
        h.feed("cpu", [96])
        self.assertEqual(h.state(rid, "cpu"), FIRING)


class StoppedTests(SynchronousTestCase):

    def test_stopped_fires_after_silence_and_resolves_on_report(self):
        """stopped after 15: fires once the series is silent 15 s, resolves when it reports."""
        h = Harness(self)
        rid = h.rule(filter="job.*", stopped={"after": 15})
        # A counter: it has no field last, which a stopped rule does not read.
        h.feed("job.backup", [1], mtype=COUNTER)
        for _ in range(5):
            h.clock.advance(1)
            h.engine.check_stopped()
        self.assertEqual(h.state(rid, "job.backup"), OK)
        for _ in range(10):
            h.clock.advance(1)
            h.engine.check_stopped()
        self.assertEqual(h.state(rid, "job.backup"), FIRING)
        h.send("job.backup", 1, mtype=COUNTER)
        h.engine.check_stopped()
        self.assertEqual(h.state(rid, "job.backup"), RESOLVED)
        h.clock.advance(0)
        self.assertEqual(h.sent(), [("firing", "job.backup"), ("resolved", "job.backup")])

    def test_stopped_forgets_deleted_series(self):
        """A deleted series does not fire as stopped; the sweep forgets its instance."""
        h = Harness(self)
        rid = h.rule(filter="job.*", stopped={"after": 15})
        h.feed("job.x", [1])
        h.core.delete(["job.x"])
        h.clock.advance(60)
        h.engine.check_stopped()
        self.assertEqual(h.state(rid, "job.x"), OK)
        h.engine.sweep_gone()
        self.assertNotIn((rid, "job.x"), h.engine.instances)
        self.assertNotIn("job.x", h.engine.by_series)
        self.assertEqual(h.sent(), [])

    def test_sweep_resolves_a_firing_instance_of_a_deleted_series(self):
        """A firing instance whose series is deleted resolves (notified, with the reason) and goes."""
        h = Harness(self)
        rid = h.rule(filter="cpu", above=90)
        h.feed("cpu", [95])
        h.feed("mem", [1])
        h.core.delete(["cpu"])
        h.engine.sweep_gone()
        h.clock.advance(0)
        self.assertNotIn((rid, "cpu"), h.engine.instances)
        self.assertEqual(h.sent(), [("firing", "cpu"), ("resolved", "cpu")])
        self.assertEqual(h.engine.history[-1]["reason"], "series deleted")
        self.assertIn("mem", h.engine.by_series)


class AnomalyTests(SynchronousTestCase):

    def test_ewma_band(self):
        """After its warm-up, a value far outside mean +- k sd fires; back inside resolves."""
        h = Harness(self)
        rid = h.rule(filter="lat", anomaly={"k": 3, "alpha": 0.2, "warmup": 5})
        h.feed("lat", [100, 102, 98, 101, 99, 100, 101])
        self.assertEqual(h.state(rid, "lat"), OK)
        h.feed("lat", [200])
        self.assertEqual(h.state(rid, "lat"), FIRING)
        low, high = h.engine.instances[(rid, "lat")].threshold
        self.assertLess(low, 100)
        self.assertLess(high, 200)
        h.feed("lat", [100, 100, 100, 100])
        self.assertEqual(h.state(rid, "lat"), RESOLVED)

    def test_day_week_band(self):
        """dayweek: today's value against the same minute of the previous days."""
        h = Harness(self)
        rid = h.rule(filter="req", resolution="1m", anomaly={"method": "dayweek", "k": 2})
        # Seven past days at this time of day: 100 +- 5.
        for day, v in zip(range(7, 0, -1), (95, 105, 100, 98, 102, 97, 103)):
            ts = T0 + 3600 - day * 86400
            self.assertEqual(h.core.submit([Sample("req", (), GAUGE, v, ts)], "tcp"), [])
        h.clock.advance(3600)
        h.store.tick(h.clock.seconds())
        h.send("req", 100)
        h.clock.advance(125)
        h.store.tick(h.clock.seconds())
        self.assertEqual(h.state(rid, "req"), OK)
        # The next day at the same time of day, far above the band.
        h.clock.advance(86400 - 125)
        h.store.tick(h.clock.seconds())
        h.send("req", 300)
        h.clock.advance(125)
        h.store.tick(h.clock.seconds())
        self.assertEqual(h.state(rid, "req"), FIRING)


class ProbeTests(SynchronousTestCase):

    def test_fires_after_failures_in_a_row_and_resolves(self):
        """A probe fires after `failures` failures in a row (a success between resets it)."""
        h = Harness(self)
        rid = h.rule(name="web", probe={"tcp": "127.0.0.1:1", "failures": 3})
        key = "probe.web.up"
        for up in (False, False, True, False, False):
            h.engine.probe_result(rid, up, None)
        self.assertEqual(h.state(rid, key), OK)
        h.engine.probe_result(rid, False, None)
        self.assertEqual(h.state(rid, key), FIRING)
        h.engine.probe_result(rid, True, 3.0)
        self.assertEqual(h.state(rid, key), RESOLVED)
        h.clock.advance(0)
        self.assertEqual(h.sent(), [("firing", key), ("resolved", key)])


class SilenceTests(SynchronousTestCase):

    def silence(self, h, rule_id, until, series=None):
        h.engine.put_silence({"id": h.engine.fresh_id(h.engine.silences), "rule_id": rule_id,
                              "series": series, "until": until, "comment": ""})

    def test_silenced_rule_changes_state_but_sends_nothing(self):
        """A silence mutes notifications until its time; the state still moves and shows muted."""
        h = Harness(self)
        rid = h.rule(filter="cpu", above=90, repeat=10)
        until = h.clock.seconds() + 30
        self.silence(h, rid, until)
        h.feed("cpu", [95])
        self.assertEqual(h.state(rid, "cpu"), FIRING)
        self.assertEqual(h.sent(), [])
        self.assertTrue(h.engine.alerts()[0][0]["muted"])
        h.feed("cpu", [95] * 6)
        # Past the silence: the repeats go out, none before its end.
        self.assertTrue(h.sent())
        self.assertTrue(all(n["time"] >= until for _, _, _, n in h.recorder.sent))
        self.assertFalse(h.engine.alerts()[0][0]["muted"])

    def test_silence_of_one_instance(self):
        """A silence of one series leaves the rule's other series notifying."""
        h = Harness(self)
        rid = h.rule(filter="temp", above=50)
        self.silence(h, rid, h.clock.seconds() + 300, series="temp;host=a")
        h.send("temp", 60, tags=(("host", "a"),))
        h.send("temp", 60, tags=(("host", "b"),))
        h.step()
        h.step()
        self.assertEqual(h.sent(), [("firing", "temp;host=b")])


class DeliveryTests(SynchronousTestCase):

    def test_retried_with_backoff_and_counted(self):
        """A failed delivery is retried after 1, 2, 4 s; failures show on the rule and counters."""
        h = Harness(self, Recorder(fail=2))
        rid = h.rule(filter="cpu", above=90)
        h.send("cpu", 95)
        h.clock.advance(5)
        h.store.tick(h.clock.seconds())
        h.clock.advance(5)
        h.store.tick(h.clock.seconds())
        h.clock.advance(0)
        self.assertEqual((h.recorder.attempts, h.sent()), (1, []))
        h.clock.advance(1)
        self.assertEqual(h.recorder.attempts, 2)
        h.clock.advance(2)
        self.assertEqual(h.sent(), [("firing", "cpu")])
        status = h.engine.rule_status(rid)
        self.assertEqual(status["failures"], 2)
        self.assertIn("500", status["last_error"])
        self.assertEqual(status["deliveries"], 1)
        self.assertEqual(h.core.counters["simplestats.alerts.retries"], 2)
        self.assertEqual(h.engine.outbox, {})

    def test_delivery_that_raises_is_a_failure(self):
        """A channel raising (not failing its Deferred) is retried like a failure."""
        calls = []

        def broken(channel, note):
            calls.append(note)
            raise ValueError("bad config")

        h = Harness(self, broken)
        h.rule(filter="cpu", above=90)
        h.feed("cpu", [95])
        for _ in range(200):
            h.clock.advance(1)
        self.assertEqual(len(calls), 6)
        self.assertEqual(h.core.counters["simplestats.alerts.failed"], 1)


class RestartTests(SynchronousTestCase):

    def restart(self, h):
        """A fresh core and engine from h's snapshot state plus its journal."""
        from server.durability.journal import read_journal
        import os
        header = h.core.durable_state()
        h.core.durable()
        records, torn = read_journal(os.path.join(h.core.settings.data_dir, "journal.000001.log"))
        fresh = Harness.__new__(Harness)
        fresh.core = make_core(self)
        fresh.core.clock = h.clock
        fresh.clock, fresh.store = h.clock, fresh.core.store
        fresh.recorder = Recorder()
        fresh.engine = AlertEngine(fresh.core, fresh.clock, fresh.recorder)
        fresh.core.extend("alerts", fresh.engine)
        return fresh, header, records

    def entries(self, records):
        import json
        out = []
        for kind, now, data in records:
            if kind == "json":
                out.extend(json.loads(data) if isinstance(data, (bytes, str)) else data)
        return out

    def test_restart_from_journal_does_not_notify_again(self):
        """Replaying the journal restores rule, firing state and sent marks: nothing resent."""
        h = Harness(self)
        rid = h.rule(filter="cpu", above=90)
        h.feed("cpu", [95])
        self.assertEqual(h.sent(), [("firing", "cpu")])
        fresh, _, records = self.restart(h)
        from server.durability.recovery import replay
        replay(fresh.core, records)
        fresh.engine.start()
        fresh.clock.advance(1)
        self.assertEqual(fresh.engine.instances[(rid, "cpu")].state, FIRING)
        self.assertEqual(fresh.recorder.sent, [])
        fresh.feed("cpu", [96, 97])
        self.assertEqual(fresh.recorder.sent, [])
        fresh.feed("cpu", [10])
        self.assertEqual([(s, k) for _, s, k, _ in fresh.recorder.sent], [("resolved", "cpu")])

    def test_restart_from_snapshot_state(self):
        """The snapshot header's state alone restores rules, instances, silences and history."""
        h = Harness(self)
        rid = h.rule(filter="cpu", above=90)
        h.feed("cpu", [95])
        h.engine.put_silence({"id": "s1", "rule_id": rid, "series": None,
                              "until": h.clock.seconds() + 99, "comment": "deploy"})
        fresh, header, _ = self.restart(h)
        fresh.core.load_state(header)
        fresh.engine.start()
        fresh.clock.advance(1)
        self.assertEqual(fresh.engine.instances[(rid, "cpu")].state, FIRING)
        self.assertEqual(list(fresh.engine.silences), ["s1"])
        self.assertEqual([r["state"] for r in fresh.engine.history], ["firing"])
        self.assertEqual(fresh.recorder.sent, [])

    def test_undelivered_notification_is_sent_after_restart(self):
        """A notification the restart interrupted (no sent mark) is delivered once after it."""
        h = Harness(self, Recorder(fail=10))
        h.rule(filter="cpu", above=90)
        h.feed("cpu", [95])
        fresh, header, _ = self.restart(h)
        fresh.core.load_state(header)
        fresh.engine.start()
        fresh.clock.advance(0)
        self.assertEqual([(s, k) for _, s, k, _ in fresh.recorder.sent], [("firing", "cpu")])

    def test_snapshot_leaves_out_threshold_instances_that_never_fired(self):
        """The snapshot keeps fired, stopped and anomaly instances, not threshold ones still at ok."""
        h = Harness(self)
        hot = h.rule(filter="cpu", above=90)
        gone = h.rule(filter="cpu", stopped={"after": 60})
        h.feed("cpu.a", [10])
        h.feed("cpu.b", [95])
        kept = {(i["rule_id"], i["series"]) for i in h.engine.to_json()["instances"]}
        self.assertEqual(kept, {(hot, "cpu.b"), (gone, "cpu.a"), (gone, "cpu.b")})

    def test_old_snapshot_without_alerts_loads(self):
        """A snapshot header written before alerts holds none and loads."""
        h = Harness(self)
        h.core.load_state({"events": [], "dashboards": []})
        self.assertEqual((h.engine.rules, h.engine.instances), ({}, {}))


class AlertsAPITests(SynchronousTestCase):

    def setUp(self):
        from treq.testing import StubTreq
        from server.web.alerts import AlertsAPI
        self.h = Harness(self)
        self.api = AlertsAPI(self.h.core, self.h.engine, self.h.core.settings, self.h.clock)
        self.stub = StubTreq(self.api.app.resource())

    def call(self, method, path, body=None, status=200, headers=None):
        import json
        kwargs = {"headers": headers or {}}
        if body is not None:
            kwargs["data"] = json.dumps(body).encode()
        d = self.stub.request(method, "http://127.0.0.1:8080" + path, **kwargs)
        for _ in range(20):
            self.stub.flush()
            self.h.clock.advance(0)
        response = self.successResultOf(d)
        content = self.successResultOf(self.stub.content(response))
        self.assertEqual(response.code, status, content)
        return json.loads(content)

    def test_rule_crud(self):
        """POST gives 201 with an id; GET lists it; PUT changes it; DELETE removes it."""
        made = self.call("POST", "/api/alerts/rules", {
            "name": "hot", "filter": "room.temp", "field": "last", "above": 50, "for": 0,
            "notify": [{"type": "webhook", "url": "http://127.0.0.1:9999/hook"}]}, 201)
        rid = made["id"]
        self.assertEqual((made["name"], made["above"], made["source"]), ("hot", 50.0, "api"))
        listed = self.call("GET", "/api/alerts/rules")
        self.assertEqual([r["id"] for r in listed["rules"]], [rid])
        changed = self.call("PUT", "/api/alerts/rules/" + rid,
                            {"name": "hot", "filter": "room.temp", "above": 60})
        self.assertEqual((changed["id"], changed["above"]), (rid, 60.0))
        self.assertEqual(self.call("DELETE", "/api/alerts/rules/" + rid), {"deleted": rid})
        self.call("GET", "/api/alerts/rules/" + rid, status=404)
        self.assertEqual(self.call("GET", "/api/alerts/rules")["rules"], [])

    def test_bad_rule_is_400_naming_the_field(self):
        """A bad rule is a 400 whose parameter names the member, and is counted."""
        body = self.call("POST", "/api/alerts/rules",
                         {"name": "x", "filter": "a", "above": "hot"}, 400)
        self.assertEqual(body["parameter"], "above")
        self.assertIn("above", body["error"])
        body = self.call("POST", "/api/alerts/rules", {"name": "x", "filter": "a",
                                                       "above": 1, "field": "nope"}, 400)
        self.assertEqual(body["parameter"], "field")
        self.assertEqual(self.h.core.counters["simplestats.alerts.bad_rules"], 2)

    def test_alerts_silences_and_history(self):
        """GET /api/alerts lists the instances firing first; a silence mutes; history by time."""
        rid = self.call("POST", "/api/alerts/rules", {"name": "hot", "filter": "temp",
                                                      "above": 50}, 201)["id"]
        self.h.send("temp.a", 60)
        self.h.send("temp.b", 10)
        self.h.step()
        self.h.step()
        alerts = self.call("GET", "/api/alerts")["alerts"]
        self.assertEqual([(a["series"], a["state"]) for a in alerts],
                         [("temp.a", "firing"), ("temp.b", "ok")])
        first = alerts[0]
        for member in ("rule", "rule_id", "series", "state", "value", "since"):
            self.assertIn(member, first)
        self.assertEqual((first["rule"], first["rule_id"], first["value"]), ("hot", rid, 60.0))
        silence = self.call("POST", "/api/alerts/silences",
                            {"rule_id": rid, "series": "temp.a", "for": "1h"}, 201)
        self.assertEqual(silence["until"], self.h.clock.seconds() + 3600)
        self.assertTrue(self.call("GET", "/api/alerts?state=firing")["alerts"][0]["muted"])
        self.call("POST", "/api/alerts/silences", {"rule_id": "nope", "for": 60}, 400)
        self.call("POST", "/api/alerts/silences", {"rule_id": rid}, 400)
        history = self.call("GET", "/api/alerts/history?from=-1h&until=now")["history"]
        self.assertEqual([(r["series"], r["state"]) for r in history], [("temp.a", "firing")])
        self.assertEqual(self.call("GET", "/api/alerts/history?from=-1h&until=-30m")["history"],
                         [])

    def test_writes_need_the_token(self):
        """With a token set, a write without it is refused and a write with it is taken."""
        from server.settings import load
        self.api.settings = load(["--api-token", "s3cret-token-value-123"])
        self.call("POST", "/api/alerts/rules", {"name": "x", "filter": "a", "above": 1}, 401)
        self.call("POST", "/api/alerts/rules", {"name": "x", "filter": "a", "above": 1}, 201,
                  headers={"X-SimpleStats-Token": "s3cret-token-value-123"})

    def test_email_defaults_of_the_file_apply_to_api_rules(self):
        """An email channel posted through the API takes the alerts file's [email] members it lacks."""
        self.api.email_defaults = {"host": "smtp.example.com", "port": 587, "from": "a@example.com"}
        made = self.call("POST", "/api/alerts/rules", {
            "name": "m", "filter": "a", "above": 1,
            "notify": [{"type": "email", "to": "ops@example.com", "port": 2525}]}, 201)
        channel = made["notify"][0]
        self.assertEqual((channel["host"], channel["port"], channel["from"], channel["to"]),
                         ("smtp.example.com", 2525, "a@example.com", ["ops@example.com"]))

    def test_secrets_are_hidden_and_kept(self):
        """An email password is shown hidden, and a PUT of the listing keeps the old one."""
        rid = self.call("POST", "/api/alerts/rules", {
            "name": "m", "filter": "a", "above": 1, "notify": [
                {"type": "email", "to": ["a@b.c"], "username": "u", "password": "pw"}]},
            201)["id"]
        shown = self.call("GET", "/api/alerts/rules/" + rid)
        self.assertEqual(shown["notify"][0]["password"], "********")
        body = {k: v for k, v in shown.items() if k != "status"}
        self.call("PUT", "/api/alerts/rules/" + rid, body)
        self.assertEqual(self.h.engine.rules[rid].spec["notify"][0]["password"], "pw")


class RulesFileTests(SynchronousTestCase):

    def write(self, text):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_file_rules_with_email_defaults(self):
        """[[rules]] are read with ids file-<name>; [email] fills in the email channels."""
        from server.alerts.rulesfile import read_rules_file
        path = self.write('[email]\nhost = "smtp.example.com"\nport = 587\nstarttls = true\n'
                          '[[rules]]\nname = "hot room"\nfilter = "room.temp"\nabove = 50\n'
                          'for = "30s"\nnotify = [{type = "email", to = ["ops@example.com"]}]\n'
                          '[[rules]]\nname = "gone"\nfilter = "job.*"\nstopped = {after = 15}\n')
        rules = read_rules_file(path, Store(make_core(self).settings.tiers).tiers)
        self.assertEqual([r["id"] for r in rules], ["file-hot-room", "file-gone"])
        self.assertEqual(rules[0]["for"], 30.0)
        self.assertEqual((rules[0]["notify"][0]["host"], rules[0]["notify"][0]["port"],
                          rules[0]["notify"][0]["starttls"]), ("smtp.example.com", 587, True))
        self.assertEqual(rules.email["host"], "smtp.example.com")

    def test_bad_file_names_rule_and_member(self):
        """A bad rule in the file is an error naming the file, the rule and the member."""
        from server.alerts.rulesfile import RulesFileError, read_rules_file
        tiers = Store(make_core(self).settings.tiers).tiers
        path = self.write('[[rules]]\nname = "hot"\nfilter = "x"\nabove = "warm"\n')
        with self.assertRaises(RulesFileError) as caught:
            read_rules_file(path, tiers)
        self.assertIn("'hot'", str(caught.exception))
        self.assertIn("above", str(caught.exception))
        with self.assertRaises(RulesFileError):
            read_rules_file(self.write("[[rules]\n"), tiers)

    def test_apply_replaces_only_what_changed(self):
        """Applying the file again keeps unchanged rules' instances, drops removed rules."""
        from server.alerts.rulesfile import apply_file_rules, read_rules_file
        h = Harness(self)
        tiers = h.store.tiers
        one = read_rules_file(self.write('[[rules]]\nname = "a"\nfilter = "x"\nabove = 1\n'
                                         '[[rules]]\nname = "b"\nfilter = "y"\nabove = 1\n'),
                              tiers)
        self.assertEqual(apply_file_rules(h.engine, one, 0), (2, 0))
        h.feed("x", [5])
        self.assertEqual(h.state("file-a", "x"), FIRING)
        self.assertEqual(apply_file_rules(h.engine, one[:1], 0), (0, 1))
        self.assertEqual(h.state("file-a", "x"), FIRING)
        self.assertEqual(sorted(h.engine.rules), ["file-a"])


class GuardTests(SynchronousTestCase):

    def test_series_matching_no_literal_and_a_failing_rule_do_not_break_the_tick(self):
        """A series no literal matches is fine; an evaluation that raises is counted, the tick goes on."""
        h = Harness(self)
        rid = h.rule(filter="cpu", above=90)
        h.feed("mem", [1])
        self.assertNotIn((rid, "mem"), h.engine.instances)

        def broken(*args):
            raise RuntimeError("boom")
        h.engine._evaluate = broken
        h.send("cpu", 95)
        h.step()
        h.step()
        self.assertEqual(h.core.counters["simplestats.alerts.errors"], 1)
        self.assertEqual(len(h.store.series["cpu"].stored[0]), 1)
        self.flushLoggedErrors(RuntimeError)


class BurstTests(SynchronousTestCase):

    def test_at_most_sixteen_deliveries_at_once(self):
        """40 instances firing together: 16 deliveries run, the rest wait and go as those end."""
        pending = []

        def slow(channel, note):
            d = defer.Deferred()
            pending.append(d)
            return d

        h = Harness(self, slow)
        h.rule(filter="temp", above=50)
        for n in range(40):
            h.send("temp", 60, tags=(("room", "r%02d" % n),))
        h.step()
        h.step()
        self.assertEqual(len(pending), 16)
        for d in list(pending):
            d.callback(None)
        h.clock.advance(0)
        h.clock.advance(0)
        self.assertEqual(len(pending), 32)
        for d in pending[16:]:
            d.callback(None)
        h.clock.advance(0)
        h.clock.advance(0)
        for d in pending[32:]:
            d.callback(None)
        self.assertEqual(len(pending), 40)
        self.assertEqual(h.engine.outbox, {})
        self.assertEqual(h.core.counters["simplestats.alerts.sent"], 40)


class ProberTests(SynchronousTestCase):

    class FakeResponse:
        def __init__(self, code):
            self.code = code

        def deliverBody(self, protocol):
            protocol.dataReceived(b"ok")

    class FakeHTTP:
        """Answers GETs with the next status of `codes`; None is a connection refused."""

        def __init__(self, codes):
            self.codes = list(codes)
            self.urls = []

        def get(self, url, timeout):
            self.urls.append((url, timeout))
            code = self.codes.pop(0)
            if code is None:
                return defer.fail(ConnectionRefusedError("refused"))
            return defer.succeed(ProberTests.FakeResponse(code))

    def test_http_probe_writes_series_and_alerts(self):
        """An HTTP probe every interval: up/latency series written; 2 failures in a row fire; 200 resolves."""
        from server.alerts.probe import Prober
        h = Harness(self)
        http = self.FakeHTTP([200, 500, None, 200])
        prober = Prober(h.core, h.engine, h.clock, http)
        rid = h.rule(name="api", probe={"http": "http://127.0.0.1:9/health", "interval": 10,
                                         "failures": 2, "timeout": 3})
        prober.sync()
        h.clock.advance(0)
        self.assertEqual(http.urls, [("http://127.0.0.1:9/health", 3.0)])
        self.assertEqual(sorted(h.store.series), ["probe.api.latency_ms", "probe.api.up"])
        h.clock.advance(10)
        self.assertEqual(h.state(rid, "probe.api.up"), OK)
        h.clock.advance(10)
        self.assertEqual(h.state(rid, "probe.api.up"), FIRING)
        h.clock.advance(10)
        self.assertEqual(h.state(rid, "probe.api.up"), RESOLVED)
        h.clock.advance(0)
        self.assertEqual(h.sent(), [("firing", "probe.api.up"), ("resolved", "probe.api.up")])
        h.store.settle()
        self.assertEqual(h.store.series["probe.api.up"].value, 1.0)

    def test_changed_or_deleted_rule_stops_its_probe(self):
        """sync() stops the probe of a deleted rule and restarts a changed one."""
        from server.alerts.probe import Prober
        h = Harness(self)
        calls = []

        def connect(host, port, timeout):
            calls.append((host, port))
            return defer.succeed(None)

        prober = Prober(h.core, h.engine, h.clock, None, connect=connect)
        rid = h.rule(name="db", probe={"tcp": "127.0.0.1:5432", "interval": 5})
        prober.sync()
        h.clock.advance(0)
        h.clock.advance(5)
        self.assertEqual(calls, [("127.0.0.1", 5432)] * 2)
        spec = dict(h.engine.rules[rid].spec, probe=dict(h.engine.rules[rid].spec["probe"],
                                                         tcp="127.0.0.1:6543"))
        h.engine.put_rule(spec)
        prober.sync()
        h.clock.advance(0)
        self.assertEqual(calls[-1], ("127.0.0.1", 6543))
        h.engine.delete_rule(rid)
        prober.sync()
        h.clock.advance(60)
        self.assertEqual(len(calls), 3)
