"""
Who may read and who may write: the one rule the site applies on a
request's headers (before its body is read) and the API applies again in its
handlers.

- Writes (any method but GET, HEAD and OPTIONS) need the token when one is
  set; without one they are only taken from loopback clients.  A POST to
  one of Graphite's read calls (L{READ_POSTS}) is a read.
- Reads of data (every path under C{/api/}, and every path that is not one
  of the dashboard's static files) need the token too when C{--read-token}
  is on, or is C{auto} (the default) and the server binds beyond loopback.
  The dashboard's page, scripts and styles hold no data and stay open.

The token comes in the C{X-SimpleStats-Token} header or as
C{Authorization: Bearer <token>} (what Grafana and Prometheus send); to
C{/agg} also as its C{auth} parameter, where DaTtSs clients put their key.
"""

import hmac
import ipaddress
import posixpath
from urllib.parse import parse_qs, unquote_to_bytes

TOKEN_HEADER = b"X-SimpleStats-Token"
AUTHORIZATION = b"Authorization"
# Methods that only read; every other one is a write and needs the rule.
READ_METHODS = (b"GET", b"HEAD", b"OPTIONS")
# POSTs that only read (a query too long for a URL, Graphite's read calls,
# which Grafana POSTs as a form of targets): ruled as reads.
READ_POSTS = (b"/api/series/batch", b"/render", b"/metrics/find", b"/metrics/expand",
              b"/tags/findSeries", b"/tags/autoComplete/tags", b"/tags/autoComplete/values")
# What the dashboard's static files end with; a path ending otherwise (or
# under /api/) may answer with data.
STATIC_SUFFIXES = (".html", ".js", ".css", ".map", ".ico", ".png", ".svg", ".woff", ".woff2")
READ_TOKEN_MODES = ("auto", "on", "off")
# Reads open to all: they hold counts and the server's state, no metric
# names or values (/ping is nsqd's liveness probe, server.web.ingest).
OPEN_READS = (b"/api/health", b"/ping")
# Paths whose token may come as the query's auth parameter (DaTtSs clients:
# PUT /agg?auth=KEY).
QUERY_TOKEN_PATHS = (b"/agg",)


def is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def reads_need_token(settings):
    """
    Whether reads of data need the token: C{--read-token on}, or C{auto}
    with a bind beyond loopback.
    """
    if settings.read_token == "auto":
        return not is_loopback(settings.bind)
    return settings.read_token == "on"


def is_static(path):
    """
    Whether C{path} (bytes, the part of the target before C{?}) names one of
    the dashboard's static files, which hold no data.
    """
    # The router sees the path decoded: "/%61pi/x" is "/api/x", and
    # "/api/../x" or "//api/x" reach what they normalize to.
    text = unquote_to_bytes(path).decode("utf-8", "replace")
    if text.startswith("/api/") or text == "/api":
        return False
    normal = posixpath.normpath("/" + text.lstrip("/"))
    if normal.startswith("/api/") or normal == "/api":
        return False
    return normal == "/" or normal.endswith(STATIC_SUFFIXES)


def given_token(get_header):
    """
    The token a request carries (bytes), or L{None}: its
    C{X-SimpleStats-Token} header, else an C{Authorization: Bearer} one.

    @param get_header: C{request.getHeader}.
    """
    given = get_header(TOKEN_HEADER)
    if given is not None:
        return given
    authorization = get_header(AUTHORIZATION)
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(b" ")
        if scheme.lower() == b"bearer":
            return credentials.strip()
    return None


def query_token(path, query):
    """
    The token a request to one of L{QUERY_TOKEN_PATHS} carries as its
    C{auth} parameter (bytes), or L{None}.

    @param query: the target after C{?} (bytes).
    """
    if path not in QUERY_TOKEN_PATHS or not query:
        return None
    values = parse_qs(query).get(b"auth")
    return values[0] if values else None


def _token_refusal(token, given, path=b""):
    if not given:
        where = "the X-SimpleStats-Token header (or Authorization: Bearer)"
        if path in QUERY_TOKEN_PATHS:
            where = "its auth parameter (%s?auth=<token>, where a DaTtSs client puts its key)" \
                    " or in %s" % (path.decode("ascii"), where)
        return 401, "this call needs the API token in %s" % (where,)
    if not hmac.compare_digest(given, token.encode()):
        return 403, "wrong API token"
    return None


def write_refusal(token, given, host, path=b""):
    """
    Why a write is refused, or L{None} when it may go on.

    With a token set, the request must carry it; without one, writes are
    only taken from loopback clients.

    @param token: the server's API token (C{""}: none set).
    @param given: the token the request carries (L{given_token}), or L{None}.
    @param host: the client's address (text).
    @param path: the target before C{?} (bytes): a 401 names the C{auth}
        parameter of L{QUERY_TOKEN_PATHS}.
    @return: C{(status, message)} or L{None}.
    """
    if token:
        return _token_refusal(token, given, path)
    if not is_loopback(host):
        return 403, "writes from %s need an API token (set --api-token)" % (host,)
    return None


def refusal(settings, method, path, get_header, host, query=b""):
    """
    Why a request is refused, or L{None} when it may go on: the one rule
    the site checks on the headers and the API's handlers check again.

    @param path: the target before C{?} (bytes).
    @param get_header: C{request.getHeader}.
    @param host: the client's address (text).
    @param query: the target after C{?} (bytes).
    @return: C{(status, message)} or L{None}.
    """
    given = given_token(get_header)
    if given is None:
        given = query_token(path, query)
    if method not in READ_METHODS and not (method == b"POST" and path in READ_POSTS):
        return write_refusal(settings.api_token, given, host, path)
    # /api/health and /ping stay open for load balancers and probes.
    if is_static(path) or path in OPEN_READS or not reads_need_token(settings):
        return None
    if not settings.api_token:
        # The service makes a token whenever reads need one; this is a
        # server built without it.
        return 401, "reads need the API token, and this server has none set"
    return _token_refusal(settings.api_token, given)
