"""
Probes ("stopped responding"): the server checks a target every
C{interval} -- an HTTP GET that must answer the expected status, or a TCP
connect -- and writes C{probe.<name>.up} (1 or 0) and
C{probe.<name>.latency_ms} as ordinary series through the ingest core, then
tells the engine, which alerts after C{failures} failures in a row.
"""

from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from server.core.model import GAUGE, Sample


class _Hangup(Protocol):
    def connectionMade(self):
        self.transport.loseConnection()


class Prober:
    """
    Runs the probes of the engine's probe rules.

    @param http: a treq C{HTTPClient}.
    @param connect: C{connect(host, port, timeout) -> Deferred} (default: a
        real TCP connection on C{reactor}).
    """

    log = Logger()

    def __init__(self, core, engine, reactor, http, connect=None):
        self.core = core
        self.engine = engine
        self.reactor = reactor
        self.http = http
        self.connect = connect or self._connect
        # rule id -> (probe spec, the delayed call of its next run)
        self.running = {}
        self.busy = set()

    def sync(self):
        """
        Start the probes of new probe rules, stop those of rules gone or
        changed.  Called every second or so.
        """
        wanted = {rid: rule.spec["probe"] for rid, rule in self.engine.rules.items()
                  if rule.kind == "probe"}
        for rid in list(self.running):
            spec, call = self.running[rid]
            if wanted.get(rid) != spec:
                if call.active():
                    call.cancel()
                del self.running[rid]
        for rid, spec in wanted.items():
            if rid not in self.running:
                self.running[rid] = (spec, self.reactor.callLater(0, self._run, rid, spec))

    def stop(self):
        for spec, call in self.running.values():
            if call.active():
                call.cancel()
        self.running.clear()

    def _run(self, rid, spec):
        if self.running.get(rid, (None,))[0] is not spec:
            return
        self.running[rid] = (spec, self.reactor.callLater(spec["interval"], self._run, rid, spec))
        if rid in self.busy:
            return  # the last check has not ended yet (it has its timeout)
        self.busy.add(rid)
        began = self.reactor.seconds()
        d = self.check(spec)

        def ended(up):
            self.busy.discard(rid)
            latency = (self.reactor.seconds() - began) * 1000.0
            self.record(rid, spec, bool(up), latency)

        def failed(failure):
            self.core.counters["simplestats.alerts.probe_failures"] += 1
            self.log.debug("probe {name} failed: {error}", name=spec["name"],
                           error=failure.getErrorMessage())
            ended(False)

        d.addCallbacks(ended, failed)
        d.addErrback(lambda failure: self.log.failure("probe bookkeeping failed", failure))

    def check(self, spec):
        """
        A Deferred firing with whether the target answered as expected.
        """
        timeout = spec["timeout"]
        if spec.get("http"):
            d = self.http.get(spec["http"], timeout=timeout)

            def answered(response):
                # The body is not needed: read and dropped.
                response.deliverBody(_Discard())
                return response.code == spec["status"]
            return d.addCallback(answered)
        host, _, port = spec["tcp"].rpartition(":")
        return self.connect(host.strip("[]"), int(port), timeout).addCallback(lambda _: True)

    def _connect(self, host, port, timeout):
        endpoint = HostnameEndpoint(self.reactor, host, port, timeout=timeout)
        return endpoint.connect(Factory.forProtocol(_Hangup))

    def record(self, rid, spec, up, latency):
        """
        Write the probe's series and tell the engine.
        """
        name = spec["name"]
        items = [Sample("probe.%s.up" % (name,), (), GAUGE, 1.0 if up else 0.0)]
        if up:
            items.append(Sample("probe.%s.latency_ms" % (name,), (), GAUGE, round(latency, 3)))
        self.core.submit(items, "probe")
        self.engine.probe_result(rid, up, latency if up else None)


class _Discard(Protocol):
    def dataReceived(self, data):
        pass

    def connectionLost(self, reason):
        pass
