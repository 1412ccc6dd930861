"""
Saved dashboards: a named, ordered list of panels, held by id.  The shape
is checked here (L{check_board}); the ingest core journals each change
(C{["b", board]}, C{["bd", id]}) and the snapshot's header keeps them all.
"""

import math
import secrets

KINDS = ("lines", "area", "bars", "number")
MAX_NAME = 200
MAX_PANELS = 100
MAX_SERIES = 100
MAX_UNIT = 20
MAX_TEXT = 4096
# A dashboard's poll interval: seconds.
MAX_REFRESH = 86400
# Members the server sets; a body's own are ignored.
SERVER_MEMBERS = ("id", "created", "updated")


class BoardError(ValueError):
    """
    A dashboard of the wrong shape; C{parameter} names the member at fault
    (C{panels[2].kind}).
    """

    def __init__(self, parameter, message):
        ValueError.__init__(self, message)
        self.parameter = parameter


def _string(value, where, limit, empty=True):
    if not isinstance(value, str):
        raise BoardError(where, "%s must be a string" % (where,))
    if not empty and not value.strip():
        raise BoardError(where, "%s must not be empty" % (where,))
    if len(value) > limit:
        raise BoardError(where, "%s has %d characters, at most %d" % (where, len(value), limit))
    return value


def _time(value, where):
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BoardError(where, "%s must be a time: seconds since the epoch, now or like -6h"
                         % (where,))
    if isinstance(value, str):
        _string(value, where, 64, empty=False)
    elif not math.isfinite(value):
        raise BoardError(where, "%s must be a finite number" % (where,))


def _panel(panel, where):
    if not isinstance(panel, dict):
        raise BoardError(where, "%s must be an object" % (where,))
    series = panel.get("series", [])
    if series is None:
        series = []
    if not isinstance(series, list) or not all(isinstance(k, str) and k for k in series):
        raise BoardError(where + ".series", "%s.series must be a list of series keys" % (where,))
    if len(series) > MAX_SERIES:
        raise BoardError(where + ".series", "%s.series has %d keys, at most %d"
                         % (where, len(series), MAX_SERIES))
    text = panel.get("filter", "")
    if text is None:
        text = ""
    _string(text, where + ".filter", MAX_TEXT)
    if not series and not text.strip():
        raise BoardError(where + ".series", "%s needs series (a list of keys) or a filter"
                         % (where,))
    fields = panel.get("fields")
    if fields is not None and (not isinstance(fields, list)
                               or not all(isinstance(f, str) and f for f in fields)):
        raise BoardError(where + ".fields", "%s.fields must be a list of field names" % (where,))
    span = panel.get("range")
    if span is not None and span != "follow":
        if not isinstance(span, dict) or "from" not in span:
            raise BoardError(where + ".range", "%s.range must be \"follow\" or {\"from\": ...,"
                             " \"until\": ...}" % (where,))
        _time(span["from"], where + ".range.from")
        if span.get("until") is not None:
            _time(span["until"], where + ".range.until")
    if panel.get("unit") is not None:
        _string(panel["unit"], where + ".unit", MAX_UNIT)
    units = panel.get("units")
    if units is not None:
        if not isinstance(units, dict) or len(units) > MAX_SERIES:
            raise BoardError(where + ".units", "%s.units must be an object of at most %d series"
                             " keys and their units" % (where, MAX_SERIES))
        for key, unit in units.items():
            _string(unit, where + ".units", MAX_UNIT)
    if panel.get("log") is not None and not isinstance(panel["log"], bool):
        raise BoardError(where + ".log", "%s.log must be true or false" % (where,))
    kind = panel.get("kind", "lines")
    if kind not in KINDS:
        raise BoardError(where + ".kind", "%s.kind must be one of %s, got %r"
                         % (where, ", ".join(KINDS), kind))
    if panel.get("title") is not None:
        _string(panel["title"], where + ".title", MAX_NAME)


def check_board(body):
    """
    The dashboard to store from C{body} (a parsed JSON value): a copy
    without the members the server sets.

    @raise BoardError: naming the member at fault.
    """
    if not isinstance(body, dict):
        raise BoardError("body", "a dashboard is a JSON object with name and panels")
    if "name" not in body:
        raise BoardError("name", "name is required")
    _string(body["name"], "name", MAX_NAME, empty=False)
    refresh = body.get("refresh")
    if refresh is not None and (isinstance(refresh, bool) or not isinstance(refresh, (int, float))
                                or not 0 < refresh <= MAX_REFRESH):
        raise BoardError("refresh", "refresh must be seconds between polls, more than 0 and at"
                         " most %d" % (MAX_REFRESH,))
    panels = body.get("panels")
    if not isinstance(panels, list):
        raise BoardError("panels", "panels must be a list of panels")
    if len(panels) > MAX_PANELS:
        raise BoardError("panels", "%d panels, at most %d" % (len(panels), MAX_PANELS))
    for n, panel in enumerate(panels):
        _panel(panel, "panels[%d]" % (n,))
    return {k: v for k, v in body.items() if k not in SERVER_MEMBERS}


class Boards:
    """
    The saved dashboards, by id.
    """

    def __init__(self, new_id=None):
        self.by_id = {}
        self.new_id = new_id or (lambda: secrets.token_hex(6))

    def __len__(self):
        return len(self.by_id)

    def fresh_id(self):
        while True:
            board_id = self.new_id()
            if board_id not in self.by_id:
                return board_id

    def put(self, board):
        """
        Hold C{board} (with its C{id}, C{created}, C{updated}).
        """
        self.by_id[board["id"]] = board

    def delete(self, board_id):
        return self.by_id.pop(board_id, None) is not None

    def listing(self):
        """
        C{[{"id", "name", "panels", "updated"}]} sorted by name then id.
        """
        rows = [{"id": b["id"], "name": b["name"], "panels": len(b["panels"]),
                 "updated": b["updated"]} for b in self.by_id.values()]
        rows.sort(key=lambda r: (r["name"].lower(), r["id"]))
        return rows

    def to_json(self):
        return list(self.by_id.values())

    def load(self, boards):
        self.by_id.clear()
        for board in boards or ():
            self.put(dict(board))
