"""
The entry point: C{python -m server.main [flags]} (or C{python server/main.py}).

The only module that imports the global reactor and starts logging.
"""

import gc
import os
import sys

if __package__ in (None, ""):
    # Run as a script (python server/main.py): make the package importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None, environ=None):
    from twisted.internet.error import CannotListenError
    from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

    from server.gcpolicy import GcPolicy
    from server.durability.recovery import StartupError
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

    # Full collections walk only what was made since the last freeze.
    policy = GcPolicy({})
    policy.install()
    failed = []

    def on_failure(error):
        failed.append(error)
        log.critical("cannot start: {error}", error=str(error))
        reactor.stop()

    try:
        top = makeService(settings, reactor, gc_policy=policy, on_failure=on_failure)
    except StartupError as e:
        log.critical("cannot start: {error}", error=str(e))
        return 1
    policy.gauges = top.core.gauges
    # Recovery makes millions of long-lived objects: a full collection
    # over them would hold the reactor for a second or more, so none runs
    # until they are loaded, and then they are frozen out of every one.
    gc.disable()
    try:
        top.startService()
    except CannotListenError as e:
        log.critical("cannot start: {error}", error=str(e))
        return 1
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    ports = listening_ports(top)
    where = dict(bind=settings.bind, data_dir=os.path.abspath(settings.data_dir),
                 pid=os.getpid(), **ports)
    log.info("SimpleStats listening: tcp={bind}:{tcp} udp={bind}:{udp} http={bind}:{http} "
             "data_dir={data_dir} pid={pid}; recovering the data directory", **where)

    def recovered(summary):
        if not top.recovery.finished:
            return None  # failed: on_failure said why
        policy.freeze()  # collection is off: freezes what recovery made, turns it on
        log.info("SimpleStats ready: tcp={bind}:{tcp} udp={bind}:{udp} http={bind}:{http} "
                 "data_dir={data_dir} pid={pid}", **where)
        return summary

    top.recovery.done.addBoth(recovered)
    reactor.run()
    # The interpreter's last collection at exit would walk every object a
    # stop during recovery left unfrozen: seconds at 100k series.
    gc.freeze()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
