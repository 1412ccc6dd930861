"""
What a closed bucket becomes in Graphite: plaintext lines
C{path value timestamp\\n}, with the paths SimpleStats' own C{/render}
answers to (L{server.core.graphite_names}), so that what Grafana reads from
the cluster is what it reads from SimpleStats.  Pure: no store, no clock.

A series' paths and how each value is derived from a stored row are worked
out once per series (L{Plan}) and reused at every bucket it closes.
"""

from server.core.aggregate import PUBLIC_FIELDS, derive
from server.core.graphite_names import DEFAULT_FIELD, Field, fields_of, templates

NAMES = ("paths", "statsd", "both")


class Plan:
    """
    The lines of one series: C{entries} is a list of C{(path bytes, index of
    the public field, per second)}; C{fields} the public fields to derive.
    """

    __slots__ = ("family", "fields", "entries")

    def __init__(self, family, fields, entries):
        self.family = family
        self.fields = fields
        self.entries = entries


def series_paths(series, names):
    """
    C{[(path, Field)]}: every Graphite path C{series} is forwarded under.

    @param names: C{"paths"} (C{name.field} and the bare C{name}, the
        type's default field), C{"statsd"} (statsd's C{stats.*} names) or
        C{"both"}.  A tagged series has Graphite 1.1 tagged paths only
        (C{name.field;k=v} and C{name;k=v}), as C{seriesByTag} finds it.
    """
    if series.tags:
        suffix = "".join(";%s=%s" % kv for kv in series.tags)
        out = [(series.name + suffix, Field(DEFAULT_FIELD[series.family]))]
        out += [(series.name + "." + node + suffix, field)
                for node, field in fields_of(series).items()]
        return out
    shapes = templates(series)
    if names == "paths":
        shapes = shapes[:1]
    elif names == "statsd":
        shapes = shapes[1:]
    out = []
    for nodes, bare, suffixes in shapes:
        name = ".".join(nodes)
        if bare is not None:
            out.append((name, bare))
        out.extend((name + "." + node, field) for node, field in suffixes.items())
    return out


def plan(series, names, prefix=""):
    """
    The L{Plan} of C{series}' lines, every path behind C{prefix} (if any).
    """
    fam = series.family
    fields = PUBLIC_FIELDS[fam]
    lead = prefix + "." if prefix else ""
    entries = [(lead + path + " ", fields.index(field.name), field.per_second)
               for path, field in series_paths(series, names)]
    return Plan(fam, fields, entries)


def bucket_lines(plan, row, start, step):
    """
    The lines of one closed bucket: C{[(entry number, line)]} (the
    entry of the plan each comes from), the fields without a value (a mean
    of nothing) left out.
    """
    values = derive(plan.family, plan.fields, [[v] for v in row], step)
    stamp = " %d\n" % (int(start),)
    out = []
    for number, (path, index, per_second) in enumerate(plan.entries):
        value = values[index][0]
        if value is None:
            continue
        if per_second:
            value = value / step
        # repr: the shortest text that reads back to the same float.
        out.append((number, path + repr(value) + stamp))
    return out

