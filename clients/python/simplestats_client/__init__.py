"""
SimpleStats' Python client.

    from simplestats_client import Client
    stats = Client("127.0.0.1", 8007, prefix="myapp.", tags={"host": "web1"})
    stats.agg("api.query", "153ms")         # DaTtSs' call: "1c", "23g", "+3g" too
    stats.incr("requests")
    stats.gauge("queue.depth", 12)
    stats.timing("db.query", 4.2, tags={"table": "users"})
    with stats.timer("render"):
        ...

Values are pre-aggregated into 5-second partials (count, sum, min, max,
last, sum of squares and a mergeable percentile sketch) and sent as
acknowledged TCP batches; C{mode="udp"} sends statsd lines instead.
"""

from simplestats_client.client import Client
from simplestats_client.sketch import Sketch

__all__ = ["Client", "Sketch"]
__version__ = "0.1.0"
