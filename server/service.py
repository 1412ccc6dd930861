"""
Assembly: L{makeService} wires the whole server together.  Start reading here.

    transports (TCP tuples, statsd UDP, Graphite plaintext TCP/UDP, HTTP import,
    HTTP ingest: NSQ JSON, DaTtSs)
        -> IngestCore (checks, journal, counts)
            -> Store (open buckets, rollup tiers)
    timers: rollup tick, journal flush and fsync (done by the journal's writer
        thread), snapshot, garbage-collector freeze (server.gcpolicy)
    start-up: the ports listen at once; recovery (snapshot + journal replay)
        runs in slices meanwhile (/api/health says "recovering"), ingest waits
        for it, then the timers start
    shut-down: stop listening, write the journal, write a final snapshot
"""

import os
import time

from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from server.alerts.channels import Channels
from server.alerts.engine import AlertEngine
from server.alerts.probe import Prober
from server.alerts.rulesfile import RulesFileError, apply_file_rules, read_rules_file
from server.durability.datadir import DataDirInUse, DataDirLock
from server.receivers.fdlimit import fit_connection_caps, raise_soft_limit
from server.core.ingest import IngestCore
from server.durability.journal import Journal
from server.lag import LagMonitor
from server.outputs.service import ForwardService, make_forwarder
from server.receivers.carbon import CarbonDatagramProtocol, CarbonFactory
from server.receivers.statsd import StatsdProtocol
from server.receivers.tcp import TupleFactory
from server.durability.recovery import Recovery, StartupError
from server.core.rollup import RollupTimer
from server.durability.snapshot import Snapshotter
from server.core.store import Store
from server.web.tokenfile import TokenError, resolve_token
from server.web.alerts import AlertsAPI, is_alerts_path
from server.web.api import WebAPI
from server.web.ingest import HttpIngest, is_ingest_path
from server.web.recovering import RecoveringGate
from server.web.graphite.api import GraphiteAPI, is_graphite_path
from server.web.routing import Routes
from server.web.site import LimitedSite, compressed

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
    Starts first and stops last: runs the journal's writer thread; on
    shut-down writes the journal and a final snapshot, closes the journal,
    then lets the data directory's lock go.
    """

    def __init__(self, core, snapshotter, lock=None, writer=None, recovery=None,
                 final_slice_seconds=0.5):
        self.setName("persistence")
        self.core = core
        self.snapshotter = snapshotter
        self.lock = lock
        self.writer = writer
        self.recovery = recovery
        self.final_slice_seconds = final_slice_seconds

    def startService(self):
        Service.startService(self)
        if self.writer is not None:
            self.writer.start()

    def stopService(self):
        Service.stopService(self)
        d = self.core.durable()
        recovering = self.recovery is not None and not self.recovery.finished
        # Nothing else is served now: larger slices, fewer reactor turns.
        self.snapshotter.slice_seconds = max(self.snapshotter.slice_seconds,
                                             self.final_slice_seconds)

        def unwritten(failure):
            log.error("could not write the journal at shut-down: {error}",
                      error=failure.getErrorMessage())

        def snapshot(_):
            if recovering:
                # A store recovered in part must not become the snapshot (its
                # rotation would drop journal files it does not hold).
                return None
            return self.snapshotter.take()

        def snapshotted(result):
            if not recovering:
                log.info("final snapshot written: {status}", status=self.snapshotter.status)

        def failed(failure):
            log.error("final snapshot failed ({error}); the journal keeps every point",
                      error=failure.getErrorMessage())

        def close(_):
            return self.core.journal.close()

        def not_closed(failure):
            log.error("could not close the journal: {error}", error=failure.getErrorMessage())

        def done(_):
            if self.writer is not None:
                self.writer.stop()
            if self.lock is not None:
                self.lock.release()

        d.addCallbacks(snapshot, lambda failure: snapshot(unwritten(failure)))
        d.addCallbacks(snapshotted, failed)
        d.addCallback(close)
        d.addErrback(not_closed)
        return d.addCallback(done)


class AlertsService(Service):
    """
    Runs the alerts once recovery is over (it is one of the timers): the
    rules of the alerts file applied, the engine observing the store, the
    stopped check and the probes' schedule every C{interval} seconds.
    """

    def __init__(self, engine, prober, channels, file_rules, interval, clock, core,
                 base_url=None):
        self.setName("alerts")
        self.engine = engine
        self.prober = prober
        self.channels = channels
        self.file_rules = file_rules
        self.interval = interval
        self.clock = clock
        self.core = core
        self.base_url = base_url
        self.loop = None
        self.steps = 0

    def startService(self):
        Service.startService(self)
        if self.base_url is not None:
            self.engine.base_url = self.base_url()
        if self.file_rules is not None:
            saved, deleted = apply_file_rules(self.engine, self.file_rules, self.clock.seconds())
            log.info("alerts file: {count} rules ({saved} new or changed, {deleted} removed)",
                     count=len(self.file_rules), saved=saved, deleted=deleted)
        self.engine.start()
        step = guarded("alerts", self._step, self.core)
        self.loop = TimerService(self.interval, step)
        self.loop.clock = self.clock
        self.loop.startService()

    def _step(self):
        self.engine.check_stopped()
        self.prober.sync()
        # About once a minute: forget the instances of series deleted or expired.
        self.steps += 1
        if self.steps * self.interval >= 60:
            self.steps = 0
            self.engine.sweep_gone()

    def stopService(self):
        Service.stopService(self)
        if self.loop is not None:
            self.loop.stopService()
        self.prober.stop()
        self.engine.stop()
        self.channels.stop()


class RecoveryService(Service):
    """
    Runs recovery once the ports listen (it is started before them, and
    begins in the next reactor turn), then starts the timers, which must
    not run against a store loaded in part.  When recovery fails,
    C{on_failure} is called with the L{StartupError}.
    """

    def __init__(self, recovery, timers, on_failure):
        self.setName("recovery")
        self.recovery = recovery
        self.timers = timers
        self.on_failure = on_failure

    def startService(self):
        Service.startService(self)
        self.recovery.start()
        self.recovery.done.addCallbacks(self._recovered, self._failed)

    def _recovered(self, summary):
        if self.running:
            self.timers.startService()
        return summary

    def _failed(self, failure):
        failure.trap(StartupError)
        self.on_failure(failure.value)
        return None

    def stopService(self):
        Service.stopService(self)
        self.recovery.stop()
        if self.timers.running:
            return self.timers.stopService()
        return None


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


def makeService(settings, reactor, timer=time.perf_counter, run_in_thread=None,
                gc_policy=None, on_failure=None):
    """
    Build the whole server on C{reactor} (a real one, or a fake clock plus
    fake listeners in tests).  Recovery from the data directory runs once
    started, after the ports listen (C{top.recovery}).

    @param run_in_thread: runs snapshot file writes and journal reads off
        the reactor thread (default: the reactor's thread pool) and journal
        writes (default: one writer thread of their own); tests pass a
        synchronous one.
    @param on_failure: called with the L{StartupError} when recovery finds
        the data directory's files unusable (default: log it and stop the
        reactor).

    @raise StartupError: when the data directory is unusable.
    """
    try:
        settings = resolve_token(settings)  # given, from its file, or kept in the data directory
    except TokenError as e:
        raise StartupError(str(e))
    settings = fit_connection_caps(settings, raise_soft_limit())
    directory = os.path.abspath(settings.data_dir)
    writer = None
    journal_thread = run_in_thread
    if journal_thread is None:
        # One writer thread: journal writes and fsyncs never hold the reactor.
        writer = ThreadPool(1, 1, "journal-writer")

        def journal_thread(f, *args):
            return deferToThreadPool(reactor, writer, f, *args)
    try:
        os.makedirs(directory, exist_ok=True)
        lock = DataDirLock(directory)
    except DataDirInUse as e:
        raise StartupError(str(e))
    except OSError as e:
        raise StartupError("data directory %s is not usable: %s" % (directory, e))
    try:
        journal = Journal(directory, settings.journal_fsync_interval, journal_thread)
    except OSError as e:
        lock.release()
        raise StartupError("data directory %s is not usable: %s" % (directory, e))

    store = Store(settings.tiers, settings.sketch_accuracy, settings.late_grace,
                  now=reactor.seconds(), set_limit=settings.set_exact_limit)
    core = IngestCore(settings, reactor, store, journal)
    # Alerts: rules, states, silences and history journaled and snapshotted
    # with the data (IngestCore.extend), evaluated once recovery is over.
    file_rules = None
    if settings.alerts_file:
        try:
            file_rules = read_rules_file(settings.alerts_file, store.tiers,
                                         settings.max_filter_terms, settings.max_filter_length)
        except RulesFileError as e:
            journal.close()
            lock.release()
            raise StartupError(str(e))
    channels = Channels(reactor, settings.alerts_apprise_threads)
    alerts = AlertEngine(core, reactor, channels.deliver, history_limit=settings.alerts_history)
    core.extend("alerts", alerts)
    prober = Prober(core, alerts, reactor, channels.http)

    if run_in_thread is None:
        def run_in_thread(f, *args):
            return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)
    if on_failure is None:
        def on_failure(error):
            log.critical("cannot start: {error}", error=str(error))
            reactor.stop()
    snapshotter = Snapshotter(store, journal, directory, reactor, run_in_thread, timer=timer,
                              state=core.durable_state)
    # The journal file just opened is this run's: not replayed.
    recovery = Recovery(directory, store, core, settings.move_corrupt_aside, reactor,
                        run_in_thread, timer=timer, queue_bytes=settings.recovery_queue_bytes,
                        until_seq=journal.seq)

    top = MultiService()
    top.core = core
    top.store = store
    top.settings = settings
    top.snapshotter = snapshotter
    top.recovery = recovery
    # Started first, stopped last.
    PersistenceService(core, snapshotter, lock, writer, recovery).setServiceParent(top)
    lag = LagMonitor(reactor, timer, core.gauges)
    top.lag = lag
    LagService(lag).setServiceParent(top)
    top.forwarder = None
    if settings.forward:
        # Observes the store before recovery closes anything; stopped after
        # the rollup timers (it queues what they closed last).
        top.forwarder = make_forwarder(settings, store, core, reactor, directory, recovery)
        ForwardService(top.forwarder, reactor, run_in_thread).setServiceParent(top)

    tick = RollupTimer(store, core, snapshotter, reactor, timer,
                       emit_every=store.tiers[0].step)

    timers = [
        ("rollup", settings.rollup_interval, tick),
        ("journal-flush", settings.journal_flush_interval, core.durable),
        ("snapshot", settings.snapshot_interval, snapshotter.take),
    ]
    if settings.journal_fsync_interval > 0:
        timers.append(("journal-fsync", settings.journal_fsync_interval, journal.sync))
    if gc_policy is not None:
        # Keeps full collections from walking the whole store (server.gcpolicy).
        timers.append(("gc-freeze", 60.0, gc_policy.freeze))
    if settings.snapshot_journal_bytes:
        # A restart replays the journal since the last snapshot: bound it.
        timers.append(("snapshot-early", 1.0,
                       lambda: snapshotter.take_if_journal_over(settings.snapshot_journal_bytes)))
    # Started once recovery is over (RecoveryService), stopped before the
    # final snapshot.
    timer_services = MultiService()
    for name, interval, step in timers:
        service = TimerService(interval, guarded(name, step, core))
        service.clock = reactor
        service.setName(name)
        service.setServiceParent(timer_services)
    top.timers = timer_services
    top.alerts = alerts

    def base_url():
        if settings.alerts_base_url:
            return settings.alerts_base_url
        host = settings.bind if settings.bind not in ("0.0.0.0", "::") else "127.0.0.1"
        if ":" in host:
            host = "[%s]" % (host,)
        try:
            port = top.getServiceNamed("http").port.getHost().port
        except Exception:
            port = settings.http_port
        return "http://%s:%d" % (host, port)
    AlertsService(alerts, prober, channels, file_rules, settings.alerts_check_interval, reactor,
                  core, base_url).setServiceParent(timer_services)
    RecoveryService(recovery, timer_services, on_failure).setServiceParent(top)

    factory = TupleFactory(core, settings, reactor, recovery)
    statsd = StatsdProtocol(core, settings.limits, reactor, settings.max_packet_size, recovery)
    api = WebAPI(core, settings, reactor, snapshotter, lag, recovery)
    ingest = HttpIngest(core, settings, reactor, recovery)
    # Stopped before persistence: an import still being checked is abandoned.
    ImportsService(api.imports).setServiceParent(top)
    # Graphite's render API (Grafana's data source) beside the JSON API.
    graphite = GraphiteAPI(core, settings, reactor, recovery)
    alerts_api = AlertsAPI(core, alerts, settings, reactor,
                           email_defaults=file_rules.email if file_rules is not None else None)
    top.alerts_api = alerts_api
    site = LimitedSite(compressed(RecoveringGate(
        Routes(api.app.resource(),
               (is_ingest_path, ingest.app.resource()),
               (is_graphite_path, graphite.app.resource()),
               (is_alerts_path, alerts_api.app.resource())),
        recovery)), settings, core, reactor)
    top.api = api
    top.graphite = graphite
    top.site = site
    api.ports = lambda: listening_ports(top)
    if top.forwarder is not None:
        api.forward = top.forwarder.status
    for name, listen in (
        ("tcp", lambda: reactor.listenTCP(settings.tcp_port, factory, interface=settings.bind)),
        ("udp", lambda: reactor.listenUDP(settings.udp_port, statsd, interface=settings.bind,
                                          maxPacketSize=settings.max_packet_size + 1)),
        ("http", lambda: reactor.listenTCP(settings.http_port, site, interface=settings.bind)),
    ):
        ListeningService(name, listen).setServiceParent(top)
    # Graphite plaintext (port 2003, TCP and UDP; 0: off).
    carbon_listeners = []
    if settings.carbon_port:
        carbon = CarbonFactory(core, settings, reactor, recovery, others=factory.connections)
        factory.others = carbon.connections
        carbon_listeners.append(("carbon", lambda: reactor.listenTCP(
            settings.carbon_port, carbon, interface=settings.carbon_interface)))
    if settings.carbon_udp_port:
        carbon_udp = CarbonDatagramProtocol(core, settings, reactor, recovery)
        carbon_listeners.append(("carbon-udp", lambda: reactor.listenUDP(
            settings.carbon_udp_port, carbon_udp, interface=settings.carbon_interface,
            maxPacketSize=settings.max_packet_size + 1)))
    for name, listen in carbon_listeners:
        ListeningService(name, _logged(name, listen, settings.carbon_interface)).setServiceParent(
            top)
    return top


def _logged(name, listen, interface):
    """
    C{listen}, then say where it listens.
    """
    def run():
        port = listen()
        log.info("{name} listening on {interface}:{port}", name=name, interface=interface,
                 port=port.getHost().port)
        return port
    return run


def listening_ports(top):
    """
    C{{"tcp": port, "udp": port, "http": port}} of a started service.
    """
    return {name: top.getServiceNamed(name).port.getHost().port for name in ("tcp", "udp", "http")}
