"""
The HTTP site: refuses an upload over the size limit as soon as its headers
say so (or, for a chunked body, as soon as it grows past the limit), before
the body is read whole.
"""

import json

from twisted.web.server import Request, Site


class LimitedRequest(Request):
    max_bytes = None
    core = None
    refused = False

    def requestReceived(self, command, path, version):
        if not self.refused:
            Request.requestReceived(self, command, path, version)

    def gotLength(self, length):
        self._received = 0
        if length is not None and length > self.max_bytes:
            self._refuse(length)
            return
        Request.gotLength(self, length)

    def handleContentChunk(self, data):
        if self.content is None:
            return
        self._received += len(data)
        if self._received > self.max_bytes:
            self._refuse(self._received)
            return
        Request.handleContentChunk(self, data)

    def _refuse(self, size):
        if self.refused:
            return
        self.refused = True
        self.core.counters["simplestats.http.too_large"] += 1
        body = json.dumps({"error": "upload of %d bytes is larger than the limit of %d bytes"
                                    % (size, self.max_bytes)}).encode()
        self.content = None
        transport = self.channel.transport
        transport.write(b"HTTP/1.1 413 Payload Too Large\r\n"
                        b"Content-Type: application/json\r\n"
                        b"Connection: close\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        transport.pauseProducing()
        transport.loseConnection()


class LimitedSite(Site):
    def __init__(self, resource, max_bytes, core):
        Site.__init__(self, resource)
        self.requestFactory = type("Request", (LimitedRequest,),
                                   {"max_bytes": max_bytes, "core": core})
        self.noisy = False

    def log(self, request):
        # No access log line per request: the dashboard polls every few
        # seconds; requests are counted in the server's own series instead.
        self.requestFactory.core.counters["simplestats.http.requests"] += 1
