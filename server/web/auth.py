"""
Who may write: the one rule the site applies on a request's headers (before
its body is read) and the API applies again in its handlers.
"""

import hmac
import ipaddress

TOKEN_HEADER = b"X-SimpleStats-Token"
# Methods that only read; every other one is a write and needs the rule.
READ_METHODS = (b"GET", b"HEAD", b"OPTIONS")


def is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def write_refusal(token, given, host):
    """
    Why a write is refused, or L{None} when it may go on.

    With a token set, the header must carry it; without one, writes are only
    taken from loopback clients.

    @param token: the server's API token (C{""}: none set).
    @param given: the C{X-SimpleStats-Token} header's bytes, or L{None}.
    @param host: the client's address (text).
    @return: C{(status, message)} or L{None}.
    """
    if token:
        if not given:
            return 401, "this call needs the API token in the X-SimpleStats-Token header"
        if not hmac.compare_digest(given, token.encode()):
            return 403, "wrong API token"
        return None
    if not is_loopback(host):
        return 403, "writes from %s need an API token (set --api-token)" % (host,)
    return None
