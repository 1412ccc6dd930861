"""
What a closed bucket becomes in Graphite: plaintext lines
C{path value timestamp\\n}, with the paths SimpleStats' own C{/render}
answers to (L{server.core.graphite_names}), so that what Grafana reads from
the cluster is what it reads from SimpleStats.  Pure: no store, no clock.

The shape of the lines (which paths, which field each reads) depends only on
a series' type and whether it is tagged: it is worked out once per kind
(L{plan}) and filled in with each series' name at every bucket it closes,
so that nothing is kept per series.
"""

from server.core.aggregate import PUBLIC_FIELDS, derive
from server.core.graphite_names import DEFAULT_FIELD, Field, fields_of, templates

NAMES = ("paths", "statsd", "both")


class Plan:
    """
    The lines of one kind of series: C{entries} is a list of C{(head,
    tail, index of the public field, per second)}, the path being C{head +
    name + tail} (then the tags, for a tagged series); C{fields} the public
    fields to derive.
    """

    __slots__ = ("family", "fields", "entries", "tagged")

    def __init__(self, family, fields, entries, tagged):
        self.family = family
        self.fields = fields
        self.entries = entries
        self.tagged = tagged

    def paths(self, series):
        """
        The path of each entry, for C{series} (of this plan's kind).
        """
        tags = _tag_suffix(series)
        return [head + series.name + tail + tags for head, tail, _, _ in self.entries]


def _tag_suffix(series):
    # A series' key is its name then its tags as Graphite 1.1 writes them
    # (server.core.model.series_key).
    return series.key[len(series.name):]


def shapes(series, names):
    """
    C{[(head, tail, Field)]}: the Graphite paths C{series} is forwarded
    under, each C{head + name + tail} (then the tags, for a tagged series).

    @param names: C{"paths"} (C{name.field} and the bare C{name}, the
        type's default field), C{"statsd"} (statsd's C{stats.*} names) or
        C{"both"}.  A tagged series has Graphite 1.1 tagged paths only
        (C{name.field;k=v} and C{name;k=v}), as C{seriesByTag} finds it.
    """
    if series.tags:
        out = [("", "", Field(DEFAULT_FIELD[series.family]))]
        out += [("", "." + node, field) for node, field in fields_of(series).items()]
        return out
    found = templates(series)
    if names == "paths":
        found = found[:1]
    elif names == "statsd":
        found = found[1:]
    depth = series.name.count(".") + 1
    out = []
    for nodes, bare, suffixes in found:
        prefix = nodes[:len(nodes) - depth]
        head = ".".join(prefix) + "." if prefix else ""
        if bare is not None:
            out.append((head, "", bare))
        out.extend((head, "." + node, field) for node, field in suffixes.items())
    return out


def series_paths(series, names):
    """
    C{[(path, Field)]}: every Graphite path C{series} is forwarded under.
    """
    tags = _tag_suffix(series)
    return [(head + series.name + tail + tags, field)
            for head, tail, field in shapes(series, names)]


def plan(series, names, prefix=""):
    """
    The L{Plan} of the lines of series of C{series}' kind (its type, tagged
    or not), every path behind C{prefix} (if any).
    """
    fam = series.family
    fields = PUBLIC_FIELDS[fam]
    lead = prefix + "." if prefix else ""
    entries = [(lead + head, tail, fields.index(field.name), field.per_second)
               for head, tail, field in shapes(series, names)]
    return Plan(fam, fields, entries, bool(series.tags))


def kind(series):
    """
    What a L{Plan} depends on: the series' type, and whether it is tagged.
    """
    return series.type, bool(series.tags)


def bucket_lines(plan, series, row, start, step):
    """
    The lines of one closed bucket of C{series}: C{[(entry number, line)]}
    (the entry of the plan each comes from), the fields without a value (a
    mean of nothing) left out.
    """
    values = derive(plan.family, plan.fields, [[v] for v in row], step)
    name = series.name
    stamp = "%s %%s %d\n" % (_tag_suffix(series), int(start))
    out = []
    for number, (head, tail, index, per_second) in enumerate(plan.entries):
        value = values[index][0]
        if value is None:
            continue
        if per_second:
            value = value / step
        # repr: the shortest text that reads back to the same float.
        out.append((number, head + name + tail + stamp % (repr(value),)))
    return out

