"""
Lets the server run under twist: C{twist simplestats --tcp-port 8007 ...}.

Installed with the package (C{pip install .} puts this file in Twisted's own
C{twisted/plugins}; the editable install puts the checkout on C{sys.path}),
so C{twist} finds it from any directory.
"""

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


def _fields():
    import dataclasses

    from server.settings import Settings

    return dataclasses.fields(Settings)


def _switch(field):
    # A true/false setting that is off by default is a flag alone, as for
    # python -m server.main ("--move-corrupt-aside").
    from server.settings import _bool

    return field.metadata["parse"] is _bool and field.default is False


def _name(field):
    from server.settings import _flag

    return _flag(field.name)[2:]


class Options(usage.Options):
    optFlags = [[_name(f), None, f.metadata["help"]] for f in _fields() if _switch(f)]
    optParameters = [[_name(f), None, None, f.metadata["help"]]
                     for f in _fields() if not _switch(f) and f.name != "forward"]

    def opt_forward(self, value):
        # Repeatable, as for python -m server.main: --forward A --forward B.
        self.setdefault("forward", []).append(value)
    opt_forward.__doc__ = next(f.metadata["help"] for f in _fields() if f.name == "forward")

    def postOptions(self):
        """
        Check the flags as the server's own parsing does: a bad value is a
        usage error naming it, not a traceback at start-up.
        """
        import os

        from server.settings import SettingsError, load

        argv = []
        for field in _fields():
            value = self.get(_name(field))
            if field.name == "forward" and value is not None:
                value = ",".join(value)
            if _switch(field):
                if value:
                    argv.append("--" + _name(field))
            elif value is not None:
                argv += ["--" + _name(field), value]
        try:
            self.settings = load(argv, os.environ)
        except SettingsError as e:
            raise usage.UsageError("bad setting: %s" % (e,))


@implementer(IServiceMaker, IPlugin)
class SimpleStatsServiceMaker:
    tapname = "simplestats"
    description = "SimpleStats: TCP tuples, statsd UDP and a web dashboard in one process."
    options = Options

    def makeService(self, options):
        from twisted.internet import reactor

        from server.durability.recovery import StartupError
        from server.service import makeService

        try:
            return makeService(options.settings, reactor)
        except StartupError as e:
            # As python -m server.main says it: one line and status 1.
            raise SystemExit("simplestats: cannot start: %s" % (e,))


serviceMaker = SimpleStatsServiceMaker()
