"""
Where the dashboard's static files are: found from the package, never from
the working directory.

An installed wheel holds them in C{server/web/static}; a checkout (and its
editable install) in C{web/static} beside the C{server} package.
"""

import os

from twisted.web.static import File

from server.web.errors import JsonErrorPage, no_such_path

_HERE = os.path.dirname(os.path.abspath(__file__))
CANDIDATES = (
    os.path.join(_HERE, "static"),
    os.path.join(os.path.dirname(os.path.dirname(_HERE)), "web", "static"),
)


def find_web_root(configured="", candidates=CANDIDATES):
    """
    The directory to serve the dashboard from: C{configured} (C{--web-root})
    when given, else the first of C{candidates} that holds an C{index.html};
    L{None} when none does.
    """
    if configured:
        return os.path.abspath(configured)
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, "index.html")):
            return candidate
    return None


class StaticFiles(File):
    """
    The dashboard's files, whose 404 and 403 answers are JSON naming the
    path, as every error of the web port.
    """

    childNotFound = JsonErrorPage(404, no_such_path)
    forbidden = JsonErrorPage(403, lambda request: "%s may not be read"
                              % (request.path.decode("utf-8", "replace"),))
