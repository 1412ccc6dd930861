"""
Carbon's consistent-hashing ring (carbon 1.1.10 C{carbon.hashing}, hash type
C{carbon_ch}), as its C{ConsistentHashingRouter} uses it with a replication
factor of 1, so that a path goes to the carbon-cache a carbon-relay (or
carbon-c-relay's C{carbon_ch} cluster) would send it to.

Each destination is the node C{(server, instance)}, placed at
C{replica_count} positions: the first 4 hex digits of the md5 of
C{"%s:%d" % ((server, instance), i)} -- Python's C{str} of the tuple, e.g.
C{"('10.0.0.1', 'a'):7"} or C{"('10.0.0.1', None):7"} -- moved up by one
while taken.  A path goes to the first node at or after the position of its
own md5, wrapping around.
"""

from bisect import bisect_left, insort
from hashlib import md5


def position(key):
    """
    The ring position of C{key}: its md5's first 16 bits.
    """
    return int(md5(key.encode("utf-8")).hexdigest()[:4], 16)


class ConsistentHashRing:
    """
    @ivar ring: sorted C{(position, node)} entries.
    """

    def __init__(self, nodes, replica_count=100):
        self.replica_count = replica_count
        self.ring = []
        self.nodes = []
        for node in nodes:
            self.add_node(node)

    def add_node(self, node):
        """
        Add C{node}, a C{(server, instance)} tuple (C{instance} may be None).
        """
        self.nodes.append(node)
        taken = {p for p, _ in self.ring}
        for i in range(self.replica_count):
            where = position("%s:%d" % (node, i))
            while where in taken:
                where += 1
            taken.add(where)
            insort(self.ring, (where, node))
        # Searched by position alone (a node never compares with an int).
        self._positions = [p for p, _ in self.ring]

    def get_node(self, key):
        """
        The node that C{key} (a metric path) goes to.
        """
        index = bisect_left(self._positions, position(key)) % len(self.ring)
        return self.ring[index][1]
