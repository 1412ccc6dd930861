"""
File descriptors: each connection holds one, and so do the journal, a
snapshot being written, the listening ports and the reactor.  At start-up
the soft limit is raised to the hard one, and the connection caps are
lowered when they and a reserve for the server's own files do not fit in it,
so the journal and the snapshot never fail for lack of a descriptor.
"""

import dataclasses
import resource

from twisted.logger import Logger

from server.core.model import StartupError

# Past its cap a listener still accepts and answers a refusal (a 503 or an
# --ERROR line) before closing; this many such sockets may be open at once,
# beyond that a new one is closed unanswered.
REFUSAL_SLACK = 16

log = Logger()


def raise_soft_limit(getrlimit=resource.getrlimit, setrlimit=resource.setrlimit):
    """
    Raise the soft limit of open files to the hard one if allowed; return
    the limit in force (L{None}: unlimited).
    """
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warn("could not raise the open files limit from {soft} to {target}: {error}",
                     soft=soft, target=target, error=e)
    return None if soft == resource.RLIM_INFINITY else soft


def fit_connection_caps(settings, limit):
    """
    C{settings} with C{max_connections} and C{max_http_connections} lowered
    (in proportion) so that both, their refusal slack and C{fd_reserve} fit
    in C{limit} open files.

    @raise StartupError: when the limit leaves no room for a connection.
    """
    if limit is None:
        return settings
    tcp, http, reserve = (settings.max_connections, settings.max_http_connections,
                          settings.fd_reserve)
    room = limit - reserve - 2 * REFUSAL_SLACK
    if tcp + http <= room:
        return settings
    if room < 2:
        raise StartupError(
            "the open files limit (ulimit -n) is %d: no room for connections after --fd-reserve %d;"
            " raise the limit or lower --fd-reserve" % (limit, reserve))
    new_tcp = max(1, room * tcp // (tcp + http))
    new_http = max(1, room - new_tcp)
    log.warn("the open files limit (ulimit -n) is {limit}: --max-connections {tcp} and"
             " --max-http-connections {http} plus --fd-reserve {reserve} do not fit; lowered to"
             " --max-connections {new_tcp} and --max-http-connections {new_http}",
             limit=limit, tcp=tcp, http=http, reserve=reserve, new_tcp=new_tcp, new_http=new_http)
    return dataclasses.replace(settings, max_connections=new_tcp, max_http_connections=new_http)
