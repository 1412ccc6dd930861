"""
Lets the server run under twist: C{twist simplestats --tcp-port 8007 ...}
(from the repository root, so that C{server} is importable).
"""

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


def _parameters():
    from server.settings import Settings, _flag

    import dataclasses

    return [[_flag(f.name)[2:], None, None, f.metadata["help"]]
            for f in dataclasses.fields(Settings)]


class Options(usage.Options):
    optParameters = _parameters()


@implementer(IServiceMaker, IPlugin)
class SimpleStatsServiceMaker:
    tapname = "simplestats"
    description = "SimpleStats: TCP tuples, statsd UDP and a web dashboard in one process."
    options = Options

    def makeService(self, options):
        import os

        from twisted.internet import reactor

        from server.service import makeService
        from server.settings import load

        argv = []
        for name, value in options.items():
            if value is not None:
                argv += ["--" + name, value]
        return makeService(load(argv, os.environ), reactor)


serviceMaker = SimpleStatsServiceMaker()
