"""
The forwarder as a service: its links connect when the server starts, a
timer confirms delivered lines and records the queues' positions (fsync off
the reactor thread), and at shut-down what closed is queued and the
positions written.
"""

import os

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger

from server.outputs.forwarder import Forwarder
from server.outputs.links import (Backoff, TcpLink, UdpLink, tcp_connector, udp_listener,
                                  udp_resolver)

CHECK_SECONDS = 0.5
COMMIT_SECONDS = 1.0


class ForwardService(Service):
    """
    Runs a L{Forwarder}: starts its links, commits its queues' positions.
    """

    log = Logger()

    def __init__(self, forwarder, clock, run_in_thread, commit_every=COMMIT_SECONDS):
        self.setName("forward")
        self.forwarder = forwarder
        self.clock = clock
        self.run_in_thread = run_in_thread
        self.commit_every = commit_every
        self.loop = None
        self.committing = None
        self.last_commit = clock.seconds()

    def startService(self):
        Service.startService(self)
        self.forwarder.start()
        self.loop = task.LoopingCall(self.tick)
        self.loop.clock = self.clock
        self.loop.start(CHECK_SECONDS, now=False)

    def tick(self):
        try:
            self.forwarder.check()
            now = self.clock.seconds()
            if not self.committing and now - self.last_commit >= self.commit_every:
                self.last_commit = now
                self.commit()
        except Exception:
            self.forwarder.counters["simplestats.errors.forward"] += 1
            self.log.failure("forward check failed; it will run again")

    def commit(self):
        jobs = self.forwarder.commit_jobs()
        if not jobs:
            return

        def run():
            return [(spool, job()) for spool, job in jobs]

        def done(results):
            self.committing = None
            for spool, delivered in results:
                spool.committed_to(delivered)

        def failed(failure):
            self.committing = None
            self.forwarder.counters["simplestats.forward.errors.disk"] += 1
            self.log.error("cannot record the forward queues' positions: {error}",
                           error=failure.getErrorMessage())

        d = self.committing = defer.Deferred()
        self.run_in_thread(run).addCallbacks(done, failed).addBoth(d.callback)

    def stopService(self):
        Service.stopService(self)
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        if self.committing is None:
            self.forwarder.stop()
            return None
        # The last position is written after the one under way.
        return self.committing.addBoth(lambda _: self.forwarder.stop())


def make_forwarder(settings, store, core, reactor, directory, recovery=None):
    """
    The L{Forwarder} of C{settings.forward}, observing C{store}, with real
    TCP and UDP links on C{reactor}.
    """
    counters = core.counters

    def make_link(spec, spool, name):
        if spec.udp:
            return UdpLink(name, spool, reactor, udp_listener(reactor), udp_resolver(reactor),
                           spec.host, spec.port, counters)
        return TcpLink(name, spool, reactor, tcp_connector(reactor, spec.host, spec.port),
                       Backoff(settings.forward_reconnect_min, settings.forward_reconnect_max),
                       settings.forward_confirm_seconds, counters)

    def recovering():
        return recovery is not None and not recovery.finished

    forwarder = Forwarder(settings, store, counters, core.gauges, reactor,
                          os.path.join(directory, "forward"), make_link, recovering)
    store.observe(forwarder)
    return forwarder
