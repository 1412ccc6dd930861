"""
End to end (#16): alerts of a real server process delivered to real
components -- an SMTP server (aiosmtpd, STARTTLS and login), HTTP servers
for the webhooks and for Apprise's json:// -- and a probe of a local port
closed, then opened.
"""

import email
import json
import socket
import threading
import time
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

# Buckets of 1 s closed at once, ticks and checks five times a second: an
# alert fires within a second or two of its data.
FAST = ("--retentions", "1s:1h,60s:8d", "--late-grace", "0", "--rollup-interval", "0.2",
        "--alerts-check-interval", "0.2")


def wait_for(check, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("%s not true within %.0f s" % (what, timeout))
        time.sleep(0.05)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post_json(server, path, body, method="POST"):
    status, _, raw = server.http(method, path, body=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return status, json.loads(raw)


class Receiver:
    """
    A real HTTP server on a thread that records each POST's path and JSON
    body and answers with the next of C{codes} (then 200).
    """

    def __init__(self, codes=()):
        self.posts = []
        self.codes = list(codes)
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.attempts += 1
                code = receiver.codes.pop(0) if receiver.codes else 200
                if code == 200:
                    receiver.posts.append((self.path, json.loads(body)))
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % (self.port,)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def states(self):
        return [(body.get("state"), body.get("series")) for _, body in self.posts]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receivers():
    made = []

    def make(codes=()):
        receiver = Receiver(codes)
        made.append(receiver)
        return receiver
    yield make
    for receiver in made:
        receiver.close()


def feed(server, line, until, timeout=20.0, what="state"):
    """Send the statsd C{line} every 0.2 s until C{until()} is true."""
    def step():
        server.send_udp(line)
        return until()
    return wait_for(step, timeout, what)


def alert_states(server, rule_id):
    return {a["series"]: a["state"] for a in server.get_json("/api/alerts")["alerts"]
            if a["rule_id"] == rule_id}


def test_webhook_fires_resolves_and_survives_kill(make_server, receivers):
    """A webhook gets firing then resolved with the contract's members; kill -9 sends nothing again."""
    hook = receivers()
    flaky = receivers(codes=[500])
    server = make_server(*FAST).start()
    status, rule = post_json(server, "/api/alerts/rules", {
        "name": "hot", "filter": "room.temp", "field": "last", "above": 50, "for": 0,
        "notify": [{"type": "webhook", "url": hook.url + "/hook"},
                   {"type": "webhook", "url": flaky.url + "/flaky"}]})
    assert status == 201, rule
    rid = rule["id"]
    status, bad = post_json(server, "/api/alerts/rules", {"name": "x", "filter": "a",
                                                          "above": "warm"})
    assert (status, bad["parameter"]) == (400, "above"), bad
    feed(server, b"room.temp:61|g", lambda: hook.posts and flaky.posts, what="firing hook")
    path, body = hook.posts[0]
    assert path == "/hook"
    for member in ("rule", "series", "state", "value", "threshold", "since", "url"):
        assert member in body, body
    assert (body["rule"], body["series"], body["state"], body["value"], body["threshold"]) == (
        "hot", "room.temp", "firing", 61.0, 50.0)
    assert body["url"].startswith("http://127.0.0.1:%d/?series=room.temp" % (server.http_port,))
    # The dashboard link opens.
    assert server.http("GET", body["url"][len(server.base_url):])[0] == 200
    # The endpoint that answered 500 first got exactly one delivery (the retry).
    wait_for(lambda: flaky.attempts >= 2, what="retry")
    time.sleep(1.5)
    assert flaky.attempts == 2 and len(flaky.posts) == 1, (flaky.attempts, flaky.posts)
    assert alert_states(server, rid) == {"room.temp": "firing"}
    listed = server.get_json("/api/alerts/rules")["rules"][0]
    assert listed["status"]["failures"] == 1 and "500" in listed["status"]["last_error"]
    # Crash while firing: the restart does not notify again.
    time.sleep(0.3)
    server.kill()
    server.start()
    assert alert_states(server, rid) == {"room.temp": "firing"}
    for _ in range(10):
        server.send_udp(b"room.temp:62|g")
        time.sleep(0.2)
    assert hook.states() == [("firing", "room.temp")]
    feed(server, b"room.temp:20|g", lambda: len(hook.posts) >= 2, what="resolved hook")
    assert hook.states() == [("firing", "room.temp"), ("resolved", "room.temp")]
    resolved = hook.posts[1][1]
    assert resolved["value"] == 20.0 and resolved["fired_for"] > 0
    history = server.get_json("/api/alerts/history", {"from": "-1h"})["history"]
    assert [h["state"] for h in history if h["rule_id"] == rid] == ["firing", "resolved"]
    # A clean restart (from the final snapshot) keeps the rule, the state and the history.
    server.stop()
    server.start()
    assert [r["id"] for r in server.get_json("/api/alerts/rules")["rules"]] == [rid]
    assert alert_states(server, rid) == {"room.temp": "resolved"}
    again = server.get_json("/api/alerts/history", {"from": "-1h"})["history"]
    assert [h["state"] for h in again if h["rule_id"] == rid] == ["firing", "resolved"]
    time.sleep(0.5)
    assert len(hook.posts) == 2
    server.stop()


def test_stopped_and_silence(make_server, receivers):
    """stopped fires after the series goes quiet and resolves when it reports; a silenced rule sends nothing."""
    hook = receivers()
    server = make_server(*FAST).start()
    status, rule = post_json(server, "/api/alerts/rules", {
        "name": "gone", "filter": "job.*", "stopped": {"after": 2},
        "notify": [{"type": "webhook", "url": hook.url}]})
    assert status == 201, rule
    feed(server, b"job.backup:1|c", lambda: alert_states(server, rule["id"]), what="instance")
    wait_for(lambda: hook.posts, what="stopped firing")
    assert hook.states() == [("firing", "job.backup")]
    feed(server, b"job.backup:1|c", lambda: len(hook.posts) >= 2, what="stopped resolved")
    assert hook.states()[1] == ("resolved", "job.backup")
    status, silence = post_json(server, "/api/alerts/silences", {"rule_id": rule["id"],
                                                                 "for": "1h"})
    assert status == 201, silence
    wait_for(lambda: alert_states(server, rule["id"])["job.backup"] == "firing",
             what="silent firing")
    time.sleep(0.5)
    assert len(hook.posts) == 2
    assert server.get_json("/api/alerts")["alerts"][0]["muted"] is True
    server.kill()
    server.start()
    assert [s["id"] for s in server.get_json("/api/alerts/silences")["silences"]] == [silence["id"]]
    server.stop()


def test_apprise_json_url_delivers(make_server, receivers):
    """An Apprise json:// URL of a local HTTP server receives the notification."""
    target = receivers()
    server = make_server(*FAST).start()
    status, rule = post_json(server, "/api/alerts/rules", {
        "name": "load", "filter": "host.load", "above": 4,
        "notify": [{"type": "apprise", "url": "json://127.0.0.1:%d/" % (target.port,)}]})
    assert status == 201, rule
    feed(server, b"host.load:9|g", lambda: target.posts, what="apprise post")
    body = target.posts[0][1]
    assert "[FIRING] load: host.load = 9" in body["title"], body
    assert "Dashboard:" in body["message"]
    server.stop()


def test_probe_of_a_closed_then_opened_port(make_server, receivers):
    """A tcp probe of a closed port fires after its failures, resolves once it listens, and writes its series."""
    hook = receivers()
    port = free_port()
    server = make_server(*FAST).start()
    status, rule = post_json(server, "/api/alerts/rules", {
        "name": "db", "probe": {"tcp": "127.0.0.1:%d" % (port,), "interval": 1, "failures": 2,
                                "timeout": 1},
        "notify": [{"type": "webhook", "url": hook.url}]})
    assert status == 201, rule
    wait_for(lambda: hook.posts, what="probe firing")
    assert hook.states() == [("firing", "probe.db.up")]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    try:
        wait_for(lambda: len(hook.posts) >= 2, what="probe resolved")
        assert hook.states()[1] == ("resolved", "probe.db.up")
    finally:
        listener.close()
    names = {m["name"] for m in server.get_json("/api/metrics", {"filter": "probe.db"})["metrics"]}
    assert names == {"probe.db.up", "probe.db.latency_ms"}
    server.stop()


class Mailbox:
    """What the SMTP server received, and from whom it took a login."""

    def __init__(self):
        self.messages = []
        self.logins = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                              email.message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"


def test_email_over_starttls_with_login(make_server, tmp_path):
    """A real SMTP server (STARTTLS required, login required) receives the firing and the resolved mail."""
    import ssl

    import trustme
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    box = Mailbox()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"alerts" and auth_data.password == b"pa55"
        box.logins.append((mechanism, ok))
        return AuthResult(success=ok)

    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, authenticator=authenticator,
                            auth_required=True, auth_require_tls=True)
    controller.start()
    try:
        alerts_file = tmp_path / "alerts.toml"
        alerts_file.write_text(
            '[email]\nhost = "localhost"\nport = %d\nstarttls = true\nusername = "alerts"\n'
            'password = "pa55"\nfrom = "SimpleStats <simplestats@example.com>"\nca_file = "%s"\n'
            '[[rules]]\nname = "disk"\nfilter = "disk.free"\nbelow = 10\nrecover = 15\n'
            'notify = [{type = "email", to = ["ops@example.com", "On Call <oncall@example.com>"]}]\n'
            % (port, ca_file))
        server = make_server(*FAST, "--alerts-file", str(alerts_file)).start()
        rules = server.get_json("/api/alerts/rules")["rules"]
        assert [(r["id"], r["source"]) for r in rules] == [("file-disk", "file")]
        assert rules[0]["notify"][0]["password"] == "********"
        status, refused = post_json(server, "/api/alerts/rules/file-disk", {}, method="DELETE")
        assert status == 409, refused
        feed(server, b"disk.free:5|g", lambda: box.messages, what="firing mail")
        sender, recipients, message = box.messages[0]
        assert sender == "simplestats@example.com"
        assert recipients == ["ops@example.com", "oncall@example.com"]
        assert message["Subject"] == "[FIRING] disk: disk.free = 5 (below 10)"
        assert message["From"] == "SimpleStats <simplestats@example.com>"
        text = message.get_content()
        assert "Value:      5" in text and "Dashboard:  http://127.0.0.1:%d/?series=disk.free" % (
            server.http_port,) in text
        # Between below and recover: still firing, no mail.
        for _ in range(8):
            server.send_udp(b"disk.free:12|g")
            time.sleep(0.2)
        assert len(box.messages) == 1
        feed(server, b"disk.free:20|g", lambda: len(box.messages) >= 2, what="resolved mail")
        resolved = box.messages[1][2]
        assert resolved["Subject"].startswith("[RESOLVED] disk: disk.free = 20")
        assert "Fired for:" in resolved.get_content()
        assert box.logins and all(ok for _, ok in box.logins)
        server.stop()
    finally:
        controller.stop()


def test_dead_endpoint_never_delays_ingest(make_server):
    """A webhook that accepts and never answers: ingest and reads go on, the reactor is not held."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    try:
        server = make_server(*FAST).start()
        status, rule = post_json(server, "/api/alerts/rules", {
            "name": "many", "filter": "load", "above": 1,
            "notify": [{"type": "webhook", "url": "http://127.0.0.1:%d/" % (silent.getsockname()[1],),
                        "timeout": 30}]})
        assert status == 201, rule
        # Forty series firing at once: forty notifications to an endpoint that never answers.
        for n in range(40):
            server.send_udp(b"load.h%02d:5|g" % (n,))
        wait_for(lambda: server.get_json("/api/alerts", {"state": "firing"})["firing"] == 40,
                 what="forty firing")
        began = time.monotonic()
        for n in range(50):
            server.send_udp(b"ingest.after:%d|c" % (n + 1,))
        body = wait_for(lambda: server.get_json("/api/metrics", {"filter": "ingest.after"})["metrics"],
                        timeout=5, what="ingest after")
        assert time.monotonic() - began < 3
        assert body[0]["key"] == "ingest.after"
        health = server.get_json("/api/health")
        assert health["reactor"]["max_lag_ms"] < 1000, health["reactor"]
        server.stop()
    finally:
        silent.close()
