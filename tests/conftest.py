"""
Fixtures for the end-to-end tests: real server processes on free loopback
ports, each with its own data directory under the test's C{tmp_path}.

A failing test's report gets a section with the log of every server it
started; every child is SIGKILLed in teardown if the test left it running.
"""

import pytest

from serverproc import ServerProcess


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        # Servers of the test itself and of module-scoped fixtures.
        servers = [s for node in item.listchain()
                   for s in getattr(node, "_simplestats_servers", ())]
        for number, server in enumerate(servers, 1):
            report.sections.append(
                ("server %d log (%s)" % (number, server.log_path), server.full_log))


@pytest.fixture
def make_server(request, tmp_path):
    """
    C{make_server(*flags, data_dir=None)}: a L{ServerProcess}, not yet
    started, on C{tmp_path/"data"} unless told otherwise.
    """
    servers = []
    request.node._simplestats_servers = servers

    def make(*args, data_dir=None):
        directory = tmp_path / "data" if data_dir is None else data_dir
        directory.mkdir(parents=True, exist_ok=True)
        server = ServerProcess(directory, tmp_path / ("server-%d.log" % (len(servers) + 1,)),
                               args)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def server(make_server):
    """
    A started server with an empty data directory and default settings.
    """
    return make_server().start()


@pytest.fixture(scope="module")
def shared_server(request, tmp_path_factory):
    """
    One started server for every test of a module that only adds series of
    its own names (a server start costs about a second).
    """
    directory = tmp_path_factory.mktemp("shared")
    server = ServerProcess(directory / "data", directory / "server.log")
    (directory / "data").mkdir()
    request.node._simplestats_servers = [server]
    try:
        yield server.start()
        # After everything the module sent it, it still shuts down cleanly.
        server.stop()
    finally:
        server.close()
