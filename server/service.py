"""
Assembly: L{makeService} wires the whole server together.  Start reading here.

    transports (TCP tuples, statsd UDP, HTTP import)
        -> IngestCore (checks, journal, counts)
            -> Store (open buckets, rollup tiers)
    timers: rollup tick, journal flush and fsync, snapshot
    start-up: recovery (snapshot + journal replay) before anything listens
    shut-down: stop listening, write the journal, write a final snapshot
"""

import dataclasses
import ipaddress
import os
import secrets
import time

from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web.server import Site

from server.ingest import IngestCore
from server.journal import Journal
from server.lag import LagMonitor
from server.protocols.statsd import StatsdProtocol
from server.protocols.tcp import TupleFactory
from server.recovery import StartupError, recover
from server.rollup import RollupTimer
from server.snapshot import Snapshotter
from server.store import Store
from server.web.api import WebAPI
from server.web.site import LimitedSite

log = Logger()


class ListeningService(Service):
    """
    Listens on a port while running; C{port} is the listening port (its
    real number is C{port.getHost().port} when 0 was asked for).
    """

    def __init__(self, name, listen):
        self.setName(name)
        self.listen = listen
        self.port = None

    def startService(self):
        Service.startService(self)
        self.port = self.listen()

    def stopService(self):
        Service.stopService(self)
        if self.port is not None:
            port, self.port = self.port, None
            return defer.maybeDeferred(port.stopListening)


class LagService(Service):
    """
    Runs the reactor lag monitor while the server runs.
    """

    def __init__(self, monitor):
        self.setName("lag")
        self.monitor = monitor

    def startService(self):
        Service.startService(self)
        self.monitor.start()

    def stopService(self):
        Service.stopService(self)
        self.monitor.stop()


class ImportsService(Service):
    """
    Tells the importer the server is shutting down.
    """

    def __init__(self, importer):
        self.setName("imports")
        self.importer = importer

    def stopService(self):
        Service.stopService(self)
        self.importer.stop()


class PersistenceService(Service):
    """
    Stops last: writes the journal and a final snapshot on shut-down.
    """

    def __init__(self, core, snapshotter):
        self.setName("persistence")
        self.core = core
        self.snapshotter = snapshotter

    def stopService(self):
        Service.stopService(self)
        try:
            self.core.durable()
        except OSError as e:
            log.error("could not write the journal at shut-down: {error}", error=e)
        d = self.snapshotter.take()

        def closed(result):
            self.core.journal.close()
            log.info("final snapshot written: {status}", status=self.snapshotter.status)
            return None

        def failed(failure):
            log.error("final snapshot failed ({error}); the journal keeps every point",
                      error=failure.getErrorMessage())
            self.core.journal.close()

        return d.addCallbacks(closed, failed)


def guarded(name, step, core):
    """
    Wrap a periodic step so that an exception is logged and counted and the
    loop goes on (a LoopingCall stops for good when its function raises).
    """

    # A failure that repeats every turn (a full disk under the 100 ms journal
    # flush) is logged once with its traceback, then only counted until the
    # step works again.
    failures = [0]

    def run():
        try:
            result = step()
        except Exception:
            core.counters["simplestats.errors.%s" % (name,)] += 1
            if not failures[0]:
                log.failure("periodic step {name} failed; it will run again (repeats are"
                            " counted in simplestats.errors.{name}, not logged)", name=name)
            failures[0] += 1
            return None
        if failures[0]:
            log.info("periodic step {name} works again after {count} failures",
                     name=name, count=failures[0])
            failures[0] = 0
        if isinstance(result, defer.Deferred):
            result.addErrback(lambda failure: core.counters.update(
                {"simplestats.errors.%s" % (name,): 1}))
        return None

    return run


def _is_loopback(address):
    return ipaddress.ip_address(address).is_loopback


def makeService(settings, reactor, timer=time.perf_counter, run_in_thread=None):
    """
    Build the whole server on C{reactor} (a real one, or a fake clock plus
    fake listeners in tests).  Recovery from the data directory happens here,
    before anything listens.

    @param run_in_thread: runs snapshot file writes off the reactor thread
        (default: the reactor's thread pool); tests pass a synchronous one.

    @raise StartupError: when the data directory or its files are unusable.
    """
    if not settings.api_token and not _is_loopback(settings.bind):
        token = secrets.token_urlsafe(24)
        settings = dataclasses.replace(settings, api_token=token)
        log.warn("binding to {bind}: import and admin calls need the API token {token} "
                 "(header X-SimpleStats-Token); set --api-token to choose one",
                 bind=settings.bind, token=token)
    directory = os.path.abspath(settings.data_dir)
    try:
        os.makedirs(directory, exist_ok=True)
        journal = Journal(directory, settings.journal_fsync_interval)
    except OSError as e:
        raise StartupError("data directory %s is not usable: %s" % (directory, e))

    store = Store(settings.tiers, settings.sketch_accuracy, settings.late_grace,
                  now=reactor.seconds())
    core = IngestCore(settings, reactor, store, journal)
    summary = recover(directory, store, core, settings.move_corrupt_aside, reactor.seconds())
    log.info("recovered {series} series from the snapshot and {records} points from the journal",
             series=summary["series_loaded"], records=summary["records_replayed"])
    store.tick(reactor.seconds())  # what came due while the server was down

    if run_in_thread is None:
        def run_in_thread(f, *args):
            return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)
    snapshotter = Snapshotter(store, journal, directory, reactor, run_in_thread, timer=timer)

    top = MultiService()
    top.core = core
    top.store = store
    top.settings = settings
    top.snapshotter = snapshotter
    top.recovery = summary
    # Started first, stopped last.
    PersistenceService(core, snapshotter).setServiceParent(top)
    lag = LagMonitor(reactor, timer, core.gauges)
    top.lag = lag
    LagService(lag).setServiceParent(top)

    tick = RollupTimer(store, core, snapshotter, reactor, timer,
                       emit_every=store.tiers[0].step)

    timers = [
        ("rollup", settings.rollup_interval, tick),
        ("journal-flush", settings.journal_flush_interval, core.durable),
        ("snapshot", settings.snapshot_interval, snapshotter.take),
    ]
    if settings.journal_fsync_interval > 0:
        timers.append(("journal-fsync", settings.journal_fsync_interval, journal.sync))
    if settings.snapshot_journal_bytes:
        # A restart replays the journal since the last snapshot: bound it.
        timers.append(("snapshot-early", 1.0,
                       lambda: snapshotter.take_if_journal_over(settings.snapshot_journal_bytes)))
    for name, interval, step in timers:
        service = TimerService(interval, guarded(name, step, core))
        service.clock = reactor
        service.setName(name)
        service.setServiceParent(top)

    factory = TupleFactory(core, settings, reactor)
    statsd = StatsdProtocol(core, settings.limits, reactor, settings.max_packet_size)
    api = WebAPI(core, settings, reactor, snapshotter, lag)
    # Stopped before persistence: an import still being checked is abandoned.
    ImportsService(api.imports).setServiceParent(top)
    site = LimitedSite(api.app.resource(), settings.max_upload_bytes, core)
    top.api = api
    for name, listen in (
        ("tcp", lambda: reactor.listenTCP(settings.tcp_port, factory, interface=settings.bind)),
        ("udp", lambda: reactor.listenUDP(settings.udp_port, statsd, interface=settings.bind,
                                          maxPacketSize=settings.max_packet_size + 1)),
        ("http", lambda: reactor.listenTCP(settings.http_port, site, interface=settings.bind)),
    ):
        ListeningService(name, listen).setServiceParent(top)
    return top


def listening_ports(top):
    """
    C{{"tcp": port, "udp": port, "http": port}} of a started service.
    """
    return {name: top.getServiceNamed(name).port.getHost().port for name in ("tcp", "udp", "http")}
