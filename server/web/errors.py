"""
The web port's error answers for what no handler of ours refused: a path no
route takes (404), a method its path does not take (405, with C{Allow}), a
file the dashboard does not have, and a handler that failed (500).  Each is
JSON naming the problem, C{{"error": "..."}}, as the API's own errors are,
whichever of the site's Klein apps (the JSON API, HTTP ingest, Graphite)
answered: each registers these handlers with L{answer_errors_as_json}, after
its own.
"""

import orjson
from twisted.web.resource import Resource
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from server.core.query import QueryError

JSON = b"application/json; charset=utf-8"


class ApiError(Exception):
    """
    A request refused by a handler: its C{status}, what was wrong and, when
    one parameter is at fault, its name.
    """

    def __init__(self, status, message, parameter=None):
        Exception.__init__(self, message)
        self.status = status
        self.parameter = parameter


def json_error(request, status, message):
    """
    Set C{status} and the headers of a JSON error on C{request}; its body.
    """
    return _json_answer(request, status, {"error": message})


def _json_answer(request, status, body):
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", JSON)
    request.setHeader(b"Cache-Control", b"no-store")
    return orjson.dumps(body)


def _path(request):
    return request.path.decode("utf-8", "replace")


def no_such_path(request):
    """
    The message of a 404 for a path nothing on the web port answers.
    """
    return "no such path %s: see docs/API.md and docs/GRAPHITE.md for the paths this server" \
           " answers" % (_path(request),)


def _http_error(owner, request, failure):
    """
    A werkzeug L{HTTPException} Klein's router raised: C{NotFound} (no route
    takes the path), C{MethodNotAllowed} (routes take the path, not with
    this method), or a redirect (as Klein answers it).
    """
    e = failure.value
    if e.code < 400:
        # A redirect (a path without its trailing slash): Klein's answer.
        response = e.get_response({})
        request.setResponseCode(e.code)
        for name, value in response.headers:
            request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
        return b"".join(response.iter_encoded())
    owner.core.counters["simplestats.http.errors"] += 1
    method = request.method.decode("ascii", "replace")
    if isinstance(e, MethodNotAllowed):
        allowed = sorted(e.valid_methods or ())
        request.setHeader(b"Allow", ", ".join(allowed).encode("ascii"))
        return json_error(request, 405, "method %s is not allowed on %s; it takes %s"
                          % (method, _path(request), ", ".join(allowed)))
    if isinstance(e, NotFound):
        return json_error(request, 404, no_such_path(request))
    return json_error(request, e.code, "%s %s: %s" % (method, _path(request), e.description))


def _internal_error(owner, request, failure):
    """
    A handler that raised what none of the app's own handlers takes.
    """
    owner.core.counters["simplestats.http.errors"] += 1
    owner.core.counters["simplestats.http.internal_errors"] += 1
    method = request.method.decode("ascii", "replace")
    owner.log.failure("{method} {path} failed", failure, method=method, path=_path(request))
    return json_error(request, 500, "internal error answering %s %s: %s: %s"
                      % (method, _path(request), failure.type.__name__,
                         failure.getErrorMessage()))


def _api_error(owner, request, failure):
    """
    An L{ApiError} a handler raised: its status, C{{"error", "parameter"}}.
    """
    e = failure.value
    body = {"error": str(e)}
    if e.parameter:
        body["parameter"] = e.parameter
    owner.core.counters["simplestats.http.errors"] += 1
    return _json_answer(request, e.status, body)


def _query_error(owner, request, failure):
    """
    A L{QueryError} of the query layer: a 400 naming the parameter (and the
    resolutions that can answer, when it was the resolution).
    """
    e = failure.value
    owner.core.counters["simplestats.http.errors"] += 1
    body = {"error": str(e), "parameter": e.parameter}
    if getattr(e, "usable", None) is not None:
        body["usable"] = e.usable
    return _json_answer(request, 400, body)


def answer_api_errors(app):
    """
    Register on the Klein C{app} (of a class whose instances have C{core})
    the JSON answers of L{ApiError} and L{QueryError}, before
    L{answer_errors_as_json}'s.
    """
    app.handle_errors(ApiError)(_api_error)
    app.handle_errors(QueryError)(_query_error)


def answer_errors_as_json(app):
    """
    Register on the Klein C{app} (of a class whose instances have C{core}
    and C{log}) the JSON answers of L{_http_error} and L{_internal_error}.
    Call it at the end of the class body: Klein tries error handlers in the
    order they were registered, and the last one takes every exception.
    """
    app.handle_errors(HTTPException)(_http_error)
    app.handle_errors(Exception)(_internal_error)


class JsonErrorPage(Resource):
    """
    A resource answering every request with one JSON error: the static
    files' 404 and 403 pages.  C{message} is a string or a function of the
    request.
    """

    isLeaf = True

    def __init__(self, status, message):
        Resource.__init__(self)
        self.status = status
        self.message = message

    def render(self, request):
        message = self.message(request) if callable(self.message) else self.message
        return json_error(request, self.status, message)
