"""
While start-up recovers the store, the API answers 503 "recovering" (with
the progress) rather than half the data, and takes no imports or deletions;
C{/api/health} and the dashboard's static files are served all the same.
"""

import json

from twisted.web.resource import Resource

# Always answered: how a client learns that recovery is under way.
OPEN_PATHS = (b"/api/health",)
# Gated too, outside /api/: a scrape of a store loaded in part would show
# Prometheus counters going back (a reset) and then jumping.
GATED_PATHS = (b"/metrics",)


class RecoveringGate(Resource):
    """
    Wraps the API's resource (a leaf, as Klein's is).
    """

    isLeaf = True

    def __init__(self, wrapped, recovery):
        Resource.__init__(self)
        self.wrapped = wrapped
        self.recovery = recovery

    def render(self, request):
        recovery = self.recovery
        if (recovery.holding and request.path not in OPEN_PATHS
                and (request.path.startswith(b"/api/") or request.path in GATED_PATHS)):
            request.setResponseCode(503)
            request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
            request.setHeader(b"Cache-Control", b"no-store")
            request.setHeader(b"Retry-After", b"1")
            return json.dumps({
                "error": "recovering: the server is loading its data directory; try again"
                         " when /api/health says ok",
                "recovery": recovery.status(),
            }).encode()
        return self.wrapped.render(request)
