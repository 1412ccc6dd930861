"""
The entry point: C{python -m server.main [flags]} (or C{python server/main.py}).

The only module that imports the global reactor and starts logging.
"""

import gc
import os
import sys

# The store is millions of long-lived objects (series, aggregates, sketches)
# and every bucket adds and drops a few per series.  With CPython's default
# thresholds (700, 10, 10) a young collection runs every 700 allocations and
# a full one (hundreds of ms at 100k series, the reactor stopped) whenever
# the survivors reach a quarter of the heap.  Fewer young collections, and a
# full one only after many of them; what start-up loaded is frozen out of
# every collection.
GC_THRESHOLDS = (50_000, 20, 1000)

if __package__ in (None, ""):
    # Run as a script (python server/main.py): make the package importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None, environ=None):
    from twisted.internet.error import CannotListenError
    from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

    from server.recovery import StartupError
    from server.service import listening_ports, makeService
    from server.settings import SettingsError, load

    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    try:
        settings = load(argv, environ)
    except SettingsError as e:
        sys.stderr.write("simplestats: bad setting: %s\n" % (e,))
        return 2

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)],
                                     redirectStandardIO=False)
    log = Logger(namespace="simplestats")

    from twisted.internet import reactor

    gc.set_threshold(*GC_THRESHOLDS)
    try:
        top = makeService(settings, reactor)
    except StartupError as e:
        log.critical("cannot start: {error}", error=str(e))
        return 1
    gc.collect()
    gc.freeze()
    try:
        top.startService()
    except CannotListenError as e:
        log.critical("cannot start: {error}", error=str(e))
        return 1
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    ports = listening_ports(top)
    log.info("SimpleStats ready: tcp={bind}:{tcp} udp={bind}:{udp} http={bind}:{http} "
             "data_dir={data_dir} pid={pid}",
             bind=settings.bind, data_dir=os.path.abspath(settings.data_dir),
             pid=os.getpid(), **ports)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
