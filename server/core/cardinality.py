"""
Unique counts of sets too large to keep exactly: a HyperLogLog sketch (Apache
DataSketches' C{hll_sketch}) with 2**12 registers.

A set's members are kept exactly up to a limit (the C{set_exact_limit}
setting); past it they are folded into a sketch of a few kilobytes and the
members are dropped, so a set costs bounded memory, snapshot bytes and
encoding time however many members it sees.  The estimate of a sketch, alone
or merged with others, has a relative standard error of L{RELATIVE_ERROR}
(1.6 %; 99.7 % of estimates fall within three times that).

A sketch's registers do not depend on the order its members came in, but
DataSketches' default estimator (HIP) does.  Every sketch made here goes
through L{merged}, which leaves it "out of order": its estimate (the
composite estimator) is a function of its registers alone, so a set folded
in runs cut one way or another, or rebuilt from the journal, counts to the
same bits; L{encode} writes such a sketch, so equal registers give equal
text.
"""

import base64
import binascii
from collections import deque

from datasketches import hll_sketch, hll_union, tgt_hll_type

LG_K = 12
# One standard error of an out-of-order estimate at LG_K: 1.04 / sqrt(2**12).
RELATIVE_ERROR = 0.01625
# The default number of members a set keeps exactly.
EXACT_LIMIT = 1000
# A sketch made of more members than this is past DataSketches' coupon
# lists (which hold up to 384 hashes at LG_K 12) and in HLL mode, where
# L{merged} makes its estimate and its bytes independent of the order.
MIN_EXACT_LIMIT = 500

_UPDATABLE = tgt_hll_type.HLL_8  # one byte per register: the fastest update
_STORED = tgt_hll_type.HLL_4  # half the bytes in snapshots


def sketch_of(members):
    """
    A sketch of C{members} (any iterable of strings).
    """
    sketch = hll_sketch(LG_K, _UPDATABLE)
    add_all(sketch, members)
    return merged(sketch)


def add_all(sketch, members):
    """
    Add C{members} to C{sketch} in place: one C call per member.
    """
    deque(map(sketch.update, members), maxlen=0)


def merged(*sketches):
    """
    The union of C{sketches} as a new updatable sketch whose estimate
    depends on its registers only (see the module docstring).
    """
    union = hll_union(LG_K)
    for sketch in sketches:
        union.update(sketch)
    # A second HLL-mode sketch in a union marks the result out of order
    # (and zeroes the order-dependent HIP sum); the first one again adds
    # no register.
    union.update(sketches[0])
    return union.get_result(_UPDATABLE)


def encode(sketch):
    """
    The sketch as base64 text (about 2.8 KB) of its compact image (about
    2.1 KB); in memory, with a byte per register, it takes about 4.1 KB.
    """
    union = hll_union(LG_K)
    union.update(sketch)
    union.update(sketch)
    return base64.b64encode(union.get_result(_STORED).serialize_compact()).decode("ascii")


def decode(text):
    """
    Invert L{encode} (for the server's own snapshots: DataSketches does not
    survive arbitrary bytes, so no client's image reaches this).

    @raise ValueError: naming what is wrong.
    """
    if not isinstance(text, str):
        raise ValueError("a set sketch must be base64 text, got %s" % (type(text).__name__,))
    try:
        image = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError("a set sketch is not base64: %s" % (e,))
    try:
        sketch = hll_sketch.deserialize(image)
    except (ValueError, IndexError, RuntimeError) as e:
        raise ValueError("not a set sketch image: %s" % (e,))
    if sketch.lg_config_k != LG_K:
        raise ValueError("a set sketch has lg_k %d, this server keeps %d"
                         % (sketch.lg_config_k, LG_K))
    return merged(sketch)
