"""
The site's root: each request goes to the first app whose paths claim it,
every other one to the JSON API.  The apps are Klein resources (leaves), so
the request reaches a whole app, with its own error answers.
"""

from twisted.web.resource import Resource


class Routes(Resource):
    """
    @param default: the resource of every path no app claims.
    @param apps: C{(claims, resource)} pairs, tried in order; C{claims(path)}
        says whether C{path} (bytes, before C{?}) is the app's.
    """

    isLeaf = True

    def __init__(self, default, *apps):
        Resource.__init__(self)
        self.default = default
        self.apps = apps

    def render(self, request):
        path = request.path
        for claims, resource in self.apps:
            if claims(path):
                return resource.render(request)
        return self.default.render(request)
