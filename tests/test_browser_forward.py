"""
Forwarding on the dashboard's server panel, in a real browser against a
real server (#17): a destination that is down shows as not connected with
its queue growing as buckets close; once a listener takes the port the row
turns connected and the queue drains.  Without C{--forward} there is no
forwarding section at all.
"""

import socket
import threading
import time

from test_browser import (  # noqa: F401 (browser, context, artifacts: fixtures used by name)
    WAIT_MS, Watch, artifacts, browser, check_axe, context)

ROW = "#forward-panel tr.forward-row"
# Reconnection at most a second apart, delivery confirmed after half a second, buckets closed without grace.
FLAGS = ("--forward-reconnect-min", "0.2", "--forward-reconnect-max", "1",
         "--forward-confirm-seconds", "0.5", "--late-grace", "0")


def closed_port():
    """
    A loopback port nothing listens on (taken from the kernel, then let go).
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Sink:
    """
    A TCP listener on C{port} that reads and discards, keeping a count of
    the bytes and what it got (up to 1 MB: a few buckets' lines in this test).
    """

    def __init__(self, port):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(4)
        self.listener.settimeout(0.2)
        self.received = 0
        self.data = b""
        self.closing = False
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.closing:
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            thread = threading.Thread(target=self._read, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _read(self, conn):
        conn.settimeout(0.2)
        with conn:
            while not self.closing:
                try:
                    data = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                self.received += len(data)
                if len(self.data) < 1 << 20:
                    self.data += data

    def close(self):
        self.closing = True
        for thread in self.threads:
            thread.join(2)
        self.listener.close()


def row_state(page):
    return page.evaluate("""sel => Array.from(document.querySelectorAll(sel)).map(tr => ({
        destination: tr.getAttribute('data-destination'), state: tr.getAttribute('data-state'),
        connected: tr.getAttribute('data-connected'), queued: Number(tr.getAttribute('data-queued')),
        cells: Array.from(tr.children).map(td => td.textContent), title: tr.children[1].title,
        ageRed: tr.children[3].classList.contains('text-danger'),
        droppedRed: tr.children[4].classList.contains('text-danger')}))""", ROW)


def send_while(server, until, timeout):
    """
    statsd traffic every 0.2 s until C{until()} is true, at most C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        server.send_udp(b"shop.orders:1|c\nshop.latency:%d|ms" % (10 + n % 7,))
        n += 1
        if until():
            return
        time.sleep(0.2)
    raise AssertionError("not within %g s" % (timeout,))


def test_forward_destination_down_then_up(make_server, context, artifacts):
    """A destination that is down: amber row, queue growing; a listener on its port: green row, queue drained."""
    port = closed_port()
    address = "carbon://127.0.0.1:%d" % (port,)
    server = make_server("--forward", address, *FLAGS).start()
    watch = Watch()
    page = watch.attach(context.new_page())
    page.goto(server.base_url + "/?range=5m&refresh=1")
    page.wait_for_selector(ROW, timeout=WAIT_MS)
    assert page.is_visible("#forward-panel")
    [row] = row_state(page)
    assert row["cells"][0] == address
    # The server's own series stay in their own table, next to the forwarding rows (its gauges among them).
    page.wait_for_selector("#server-metrics .server-series tr[data-key^='simplestats.forward.']", timeout=WAIT_MS)
    assert row["connected"] == "false" and row["state"] == "wait", row
    # The state in words (not the colour alone), the failure as the tooltip.
    assert row["cells"][1].startswith(("not connected", "connecting")), row
    assert "Connection refused" in row["title"] or "refused" in row["title"].lower(), row

    # Traffic and a closed 5 s bucket: lines queue up; the next bucket adds more.
    send_while(server, lambda: row_state(page)[0]["queued"] > 0, 15)
    first = row_state(page)[0]
    send_while(server, lambda: row_state(page)[0]["queued"] > first["queued"], 15)
    down = row_state(page)[0]
    assert down["connected"] == "false" and down["state"] == "wait", down
    assert down["cells"][2] == format(down["queued"], ","), down
    assert down["cells"][3].endswith(" s") and not down["ageRed"], down
    assert down["cells"][4] == "0" and not down["droppedRed"], down
    health = server.get_json("/api/health")["forward"]["destinations"][0]
    assert health["destination"] == address and health["connected"] is False
    assert health["queued_lines"] >= down["queued"]
    artifacts.note("down: %r; /api/health queued_lines %d" % (down, health["queued_lines"]))
    artifacts.shoot(page, "forward-down")
    check_axe(page, artifacts, "forwarding down")

    # The destination comes up: connected, the queue drained into it.
    sink = Sink(port)
    try:
        page.wait_for_function(
            """sel => { const tr = document.querySelector(sel);
                return tr && tr.getAttribute('data-connected') === 'true'
                    && tr.getAttribute('data-queued') === '0'; }""", arg=ROW, timeout=WAIT_MS)
        up = row_state(page)[0]
        assert up["state"] == "ok" and up["cells"][1] == "connected", up
        assert up["cells"][2] == "0" and up["cells"][3] == "\u2014" and up["cells"][4] == "0", up
        assert up["title"].startswith("connected for "), up
        # The traffic's lines, wherever they are among the server's own series.
        assert sink.received > 0 and b"shop.orders" in sink.data, sink.data[:200]
        artifacts.note("up: %r; the listener got %d bytes" % (up, sink.received))
        artifacts.shoot(page, "forward-up")
    finally:
        sink.close()
    watch.check(page)


def test_no_forward_section_without_forwarding(make_server, context):
    """Without --forward the server panel has no forwarding rows and the section stays hidden."""
    server = make_server().start()
    assert server.get_json("/api/health").get("forward") is None
    watch = Watch()
    page = watch.attach(context.new_page())
    page.goto(server.base_url + "/?refresh=1")
    page.wait_for_function("document.querySelector('#health').textContent.includes('series')", timeout=WAIT_MS)
    assert page.evaluate("document.querySelectorAll('%s').length" % (ROW,)) == 0
    assert not page.is_visible("#forward-panel")
    watch.check(page)
