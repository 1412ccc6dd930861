"""
The HTTP site, and what one connection or request may cost the server before
a handler sees it:

- a write (any method but GET, HEAD and OPTIONS), and a read of data when
  reads need the token (server.web.auth), is authorized on its headers:
  without the token it is answered 401/403 before a byte of its body is
  read;
- an upload over the size limit is refused as soon as its headers say so
  (or, for a chunked body, as soon as it grows past the limit); a read takes
  no body larger than L{READ_BODY_LIMIT};
- deadlines: a request's line and headers must all arrive within
  C{--http-header-timeout} of its first byte (Twisted's own idle timeout
  restarts with every byte, so a client sending one byte a minute would hold
  the connection for ever), an upload must keep up C{--http-body-min-rate},
  and an answer the client reads none of is dropped after
  C{--http-write-timeout};
- at most C{--max-http-connections}: at the cap the connection idle the
  longest makes room for a new one, and when none is idle the new one gets
  503; past the cap plus L{REFUSAL_SLACK} a new one is closed at once, so
  connections never take the descriptors kept for the server's own files;
- a path the static files or the router cannot take (a NUL byte, bytes that
  are not UTF-8), an unknown method and an over-long header line are 4xx
  answers, never a 500 or a traceback.

Every refusal is counted in the server's own C{simplestats.http.*} series.
"""

import json
from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.resource import EncodingResourceWrapper
from twisted.web.server import GzipEncoderFactory, Request, Site

from server.receivers.fdlimit import REFUSAL_SLACK
from server.core.logutil import BoundedLog
from server.web.auth import READ_METHODS, READ_POSTS, refusal
from server.web.ingest import INGEST_PATHS

# A read (GET, HEAD, OPTIONS) has no use for a body; this much is tolerated.
READ_BODY_LIMIT = 65536
METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH")

# Where a connection is in its current request.
IDLE = "idle"          # waiting for the first byte of a request
HEADERS = "headers"    # reading a request line and headers
BODY = "body"          # reading a request body
HANDLING = "handling"  # a handler is answering
CLOSING = "closing"    # answered for good; nothing more is read

REASONS = {
    400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden",
    405: b"Method Not Allowed", 408: b"Request Timeout", 413: b"Payload Too Large",
    431: b"Request Header Fields Too Large", 503: b"Service Unavailable",
}


def error_response(status, message):
    """
    A whole HTTP answer that closes the connection: C{{"error": message}}.
    """
    body = json.dumps({"error": message}).encode()
    # A 401 names its scheme (RFC 9110); Bearer opens no password dialog.
    challenge = b'WWW-Authenticate: Bearer realm="SimpleStats"\r\n' if status == 401 else b""
    return (b"HTTP/1.1 %d %s\r\n"
            b"Content-Type: application/json\r\n%s"
            b"Connection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (status, REASONS[status], challenge, len(body), body))


def path_problem(path):
    """
    Why the static files or the router cannot take C{path} (the part of the
    target before C{?}), or L{None}.
    """
    raw = unquote_to_bytes(path)
    if b"\x00" in raw:
        return "the path holds a NUL byte"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return "the path is not UTF-8 (byte %d of the decoded path)" % (e.start,)
    return None


class JsonGzipFactory(GzipEncoderFactory):
    """
    gzip for the API's JSON answers when the client accepts it; not for the
    export, streamed by a producer of its own (a compressor holds back what
    it is given, which would defeat the stream's pacing), nor for static
    files.
    """

    # Level 1: the reactor compresses.  A week of 1-minute points (10080
    # pairs, 190-310 KB of JSON) took 1.2-2.1 ms at level 1 to 28-42 % of its
    # size, 6.5-13 ms at level 6 (23-39 %), 22-25 ms at Twisted's default 9.
    compressLevel = 1

    def encoderForRequest(self, request):
        path = request.path
        if not path.startswith(b"/api/") or path.startswith(b"/api/export"):
            return None
        request.setHeader(b"Vary", b"Accept-Encoding")
        return GzipEncoderFactory.encoderForRequest(self, request)


def compressed(resource):
    """
    C{resource} (a leaf) answering with gzip where L{JsonGzipFactory} does.
    """
    return EncodingResourceWrapper(resource, [JsonGzipFactory()])


class LimitedRequest(Request):
    """
    A request checked on its headers (L{LimitedSite.refusal_on_headers})
    and counted while its body arrives.
    """

    refused = False
    body_limit = READ_BODY_LIMIT
    _received = 0

    def gotLength(self, length):
        refusal = self.channel.site.refusal_on_headers(self, length)
        if refusal is not None:
            self._refuse(*refusal)
            return
        Request.gotLength(self, length)

    def handleContentChunk(self, data):
        if self.content is None:
            return
        self._received += len(data)
        if self._received > self.body_limit:
            self.channel.site.core.counters["simplestats.http.too_large"] += 1
            self._refuse(413, "upload of more than %d bytes is larger than the limit of %d bytes"
                         % (self._received, self.body_limit))
            return
        Request.handleContentChunk(self, data)

    def requestReceived(self, command, path, version):
        if not self.refused:
            Request.requestReceived(self, command, path, version)

    def process(self):
        problem = path_problem(self.path)
        if problem is None:
            try:
                self.getRequestHostname().decode("utf-8")
            except UnicodeDecodeError:
                problem = "the Host header is not UTF-8"
        if problem is None:
            Request.process(self)
            return
        site = self.channel.site
        site.core.counters["simplestats.http.bad_requests"] += 1
        site.bad_log.warn("bad HTTP request from {peer}: {reason}",
                          peer=getattr(self.getClientAddress(), "host", "?"), reason=problem)
        body = json.dumps({"error": problem}).encode()
        self.setResponseCode(400)
        self.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        self.setHeader(b"Content-Length", b"%d" % (len(body),))
        self.write(body)
        self.finish()

    def _refuse(self, status, message):
        if self.refused:
            return
        self.refused = True
        self.content = None
        self.channel.refuse(status, message)


class LimitedChannel(HTTPChannel):
    """
    One HTTP connection: tracks which part of a request it is reading and
    holds the one deadline that applies to it.
    """

    phase = IDLE
    _timer = None
    _body_started = 0.0
    _body_received = 0

    # -- connection ------------------------------------------------------

    def connectionMade(self):
        HTTPChannel.connectionMade(self)
        if not self.site.admit(self):
            self.refuse(503, "the server has %d HTTP connections open, its limit"
                             " (--max-http-connections); try again later"
                        % (self.site.settings.max_http_connections,))

    def connectionLost(self, reason):
        self._cancel()
        self.phase = CLOSING
        self.site.release(self)
        HTTPChannel.connectionLost(self, reason)

    def make_room(self):
        """
        Close this connection for a new one (it is waiting for a request).
        """
        if self.phase == IDLE:
            self._cancel()
            self.phase = CLOSING
            self.loseConnection()
        else:
            self.refuse(503, "closed to make room for another connection: the server is at"
                             " its limit of HTTP connections")

    def refuse(self, status, message):
        """
        Answer C{status} with C{message} and close; nothing more is read.
        """
        if self.phase == CLOSING:
            return
        self._cancel()
        self.phase = CLOSING
        self.transport.write(error_response(status, message))
        self.loseConnection()

    # -- reading a request -----------------------------------------------

    def dataReceived(self, data):
        if self.phase == CLOSING:
            return
        if self.phase == IDLE:
            self._expect_headers()
        HTTPChannel.dataReceived(self, data)

    def allHeadersReceived(self):
        self._cancel()
        # A request learns its method and target with its body
        # (requestReceived); the checks on its headers need them now.
        request = self.requests[-1]
        request.method, request.uri = self._command, self._path
        self.phase = BODY
        HTTPChannel.allHeadersReceived(self)
        if self.phase == BODY and self.length != 0:
            self._body_started = self.site.reactor.seconds()
            self._body_received = 0
            self._timer = self.callLater(self.site.settings.http_body_timeout, self._check_body)

    def rawDataReceived(self, data):
        if not self._handlingRequest:
            # A body (or what follows it in the same read): what a refused
            # upload cost the server is read back from this counter.
            self._body_received += len(data)
            self.site.core.counters["simplestats.http.body_bytes"] += len(data)
        HTTPChannel.rawDataReceived(self, data)

    def allContentReceived(self):
        self._cancel()
        if self.phase != CLOSING:
            self.phase = HANDLING
        HTTPChannel.allContentReceived(self)

    def requestDone(self, request):
        self._cancel()
        if self.phase != CLOSING:
            if self.persistent and b"".join(self._dataBuffer).strip():
                self._expect_headers()  # a pipelined request, read next
            else:
                self.phase = IDLE
                self.site.went_idle(self)
        HTTPChannel.requestDone(self, request)

    def _send100Continue(self):
        # Never after a refusal: a client waiting for it sends no body.
        if self.phase != CLOSING:
            HTTPChannel._send100Continue(self)

    # -- writing an answer -----------------------------------------------

    def pauseProducing(self):
        HTTPChannel.pauseProducing(self)
        if self.phase == HANDLING and self._timer is None:
            self._timer = self.callLater(self.site.settings.http_write_timeout,
                                         self._write_stalled)

    def resumeProducing(self):
        if self.phase == HANDLING:
            self._cancel()
        HTTPChannel.resumeProducing(self)

    # -- refusals Twisted makes ------------------------------------------

    def lineLengthExceeded(self, line):
        self.site.core.counters["simplestats.http.bad_requests"] += 1
        self.refuse(431, "a request line or header line is longer than %d bytes"
                    % (self.MAX_LENGTH,))

    def _respondToBadRequestAndDisconnect(self):
        # Twisted's own 400 (a malformed request line or header, too many
        # headers, a bad Content-Length or chunk): counted, then as Twisted
        # answers it.
        self.site.core.counters["simplestats.http.bad_requests"] += 1
        self._cancel()
        self.phase = CLOSING
        HTTPChannel._respondToBadRequestAndDisconnect(self)

    def timeoutConnection(self):
        # Twisted's idle timeout (no byte for --http-idle-timeout), without
        # its log line per connection.
        self.site.core.counters["simplestats.http.idle_timeouts"] += 1
        self._cancel()
        self.phase = CLOSING
        if self.abortTimeout is not None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()

    # -- deadlines -------------------------------------------------------

    def _cancel(self):
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _expect_headers(self):
        self._cancel()
        self.phase = HEADERS
        self._timer = self.callLater(self.site.settings.http_header_timeout, self._headers_late)

    def _headers_late(self):
        self._timer = None
        site = self.site
        site.core.counters["simplestats.http.header_timeouts"] += 1
        site.bad_log.warn("HTTP client {peer}: headers not complete after {seconds} s; closed",
                          peer=self._peer(), seconds=site.settings.http_header_timeout)
        self.refuse(408, "the request line and headers did not arrive within %g s"
                    " (--http-header-timeout)" % (site.settings.http_header_timeout,))

    def _check_body(self):
        self._timer = None
        settings = self.site.settings
        allowed = settings.http_body_timeout + self._body_received / settings.http_body_min_rate
        elapsed = self.site.reactor.seconds() - self._body_started
        if elapsed < allowed:
            self._timer = self.callLater(allowed - elapsed, self._check_body)
            return
        self.site.core.counters["simplestats.http.body_timeouts"] += 1
        self.site.bad_log.warn("HTTP client {peer}: upload too slow ({bytes} bytes in {seconds:.0f} s);"
                               " closed", peer=self._peer(), bytes=self._body_received,
                               seconds=elapsed)
        self.refuse(408, "the upload sent %d bytes in %.0f s; after %g s it must keep up %d bytes"
                         " per second (--http-body-timeout, --http-body-min-rate)"
                    % (self._body_received, elapsed, settings.http_body_timeout,
                       settings.http_body_min_rate))

    def _write_stalled(self):
        self._timer = None
        site = self.site
        site.core.counters["simplestats.http.write_timeouts"] += 1
        site.bad_log.warn("HTTP client {peer} read none of its answer for {seconds} s; dropped",
                          peer=self._peer(), seconds=site.settings.http_write_timeout)
        self.phase = CLOSING
        self.transport.abortConnection()

    def _peer(self):
        peer = self.transport.getPeer()
        return "%s:%s" % (getattr(peer, "host", "?"), getattr(peer, "port", "?"))


class LimitedSite(Site):
    """
    The site of the web API and dashboard, with the limits above.

    @ivar channels: the admitted connections, the one idle longest first.
    @ivar live: every open connection, refused ones being closed included.
    """

    protocol = LimitedChannel
    requestFactory = LimitedRequest
    noisy = False
    logger = Logger()

    def __init__(self, resource, settings, core, reactor):
        # Form bodies are not parsed into request.args: an import reads its
        # body itself, and a parsed 256 MB form would sit in memory.
        Site.__init__(self, resource, reactor=reactor, timeout=settings.http_idle_timeout,
                      parsePOSTFormSubmission=False)
        self.settings = settings
        self.core = core
        self.channels = {}
        self.live = 0
        self.bad_log = BoundedLog(self.logger, reactor)

    def buildProtocol(self, addr):
        if self.live >= self.settings.max_http_connections + REFUSAL_SLACK:
            # Refusals still being answered hold descriptors too: past the
            # slack, the socket is closed at once, unanswered.
            self.core.counters["simplestats.http.refused_connections"] += 1
            return None
        return Site.buildProtocol(self, addr)

    def admit(self, channel):
        """
        Count C{channel} in, closing the idlest connection at the cap; False
        when every admitted connection is busy (the caller answers 503).
        """
        self.live += 1
        if len(self.channels) >= self.settings.max_http_connections:
            victim = self._idlest()
            if victim is None:
                self.core.counters["simplestats.http.refused_connections"] += 1
                return False
            self.core.counters["simplestats.http.evicted_connections"] += 1
            del self.channels[victim]
            victim.make_room()
        self.channels[channel] = None
        self.core.counters["simplestats.http.connections"] += 1
        self._gauge()
        return True

    def release(self, channel):
        self.live -= 1
        self.channels.pop(channel, None)
        self._gauge()

    def went_idle(self, channel):
        # Move to the end: the connection idle longest stays first.
        if self.channels.pop(channel, False) is None:
            self.channels[channel] = None

    def _idlest(self):
        waiting = None
        for channel in self.channels:
            if channel.phase == IDLE:
                return channel
            if waiting is None and channel.phase == HEADERS:
                waiting = channel
        return waiting

    def _gauge(self):
        self.core.gauges["simplestats.http.open_connections"] = float(len(self.channels))

    def refusal_on_headers(self, request, length):
        """
        C{(status, message)} when C{request} must be answered on its headers
        alone (its body, if any, is never read), else L{None}.  Sets the
        request's body limit.
        """
        counters = self.core.counters
        method = request.method
        if method not in METHODS:
            counters["simplestats.http.bad_requests"] += 1
            return 405, "method %s is not supported; the API takes %s" % (
                method[:20].decode("ascii", "replace"), ", ".join(m.decode() for m in METHODS))
        host = getattr(request.getClientAddress(), "host", "")
        path, _, query = request.uri.partition(b"?")
        refused = refusal(self.settings, method, path, request.getHeader, host, query)
        if refused is not None:
            counters["simplestats.http.unauthorized"] += 1
            return refused
        # A read by POST (a batch read, Graphite's read calls posted as a form)
        # is a read: its body is a query, not an upload.
        reading = method in READ_METHODS or (method == b"POST" and path in READ_POSTS)
        if reading:
            request.body_limit = READ_BODY_LIMIT
        elif path in INGEST_PATHS:
            request.body_limit = self.settings.max_ingest_bytes
        else:
            request.body_limit = self.settings.max_upload_bytes
        if length is not None and length > request.body_limit:
            counters["simplestats.http.too_large"] += 1
            if reading:
                return 413, "a %s takes no body larger than %d bytes; this one has %d" % (
                    method.decode(), request.body_limit, length)
            return 413, "upload of %d bytes is larger than the limit of %d bytes" % (
                length, request.body_limit)
        return None

    def log(self, request):
        # No access log line per request: the dashboard polls every few
        # seconds; requests are counted in the server's own series instead.
        self.core.counters["simplestats.http.requests"] += 1
