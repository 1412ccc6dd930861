"""
Events: markers such as deploys, kept beside the series (Graphite's events:
C{what}, C{tags}, C{data}, C{when}), at most a set number of them, the
oldest dropped first.

The held events are journaled (an entry C{["e", event]}, C{["ed", id]} for a
deletion) and go into the snapshot's header (L{Events.to_json}); the ingest
core does both, this module only holds them and checks their shape.
"""

import math
from bisect import bisect_left, insort

MAX_WHAT = 200
MAX_DATA = 4096
MAX_TAGS = 20
MAX_TAG = 100
PRIORITIES = ("low", "normal")
ALERT_TYPES = ("info", "warning", "error", "success")
# Optional members of a DogStatsD event, kept when given.
EXTRA = ("host", "priority", "alert_type", "aggregation_key", "source_type")
MAX_EXTRA = 200


class EventError(ValueError):
    """
    An event that cannot be taken; C{parameter} names the member at fault.
    """

    def __init__(self, parameter, message):
        ValueError.__init__(self, message)
        self.parameter = parameter


def check_event(body, when, source):
    """
    The event to store from C{body} (Graphite's JSON: C{what}, C{tags} as a
    list or one space-separated string, C{data}; DogStatsD's members of
    L{EXTRA}), at time C{when} (seconds, already parsed).

    @raise EventError: naming the member at fault.
    """
    if not isinstance(body, dict):
        raise EventError("body", "an event is a JSON object with what, tags, data and when")
    what = body.get("what")
    if not isinstance(what, str) or not what.strip():
        raise EventError("what", "what must be a non-empty string")
    if len(what) > MAX_WHAT:
        raise EventError("what", "what has %d characters, at most %d" % (len(what), MAX_WHAT))
    tags = body.get("tags", [])
    if tags is None:
        tags = []
    if isinstance(tags, str):
        tags = tags.replace(",", " ").split()
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise EventError("tags", "tags must be a list of strings or one string of space-separated"
                                 " tags")
    tags = [t.strip() for t in tags if t.strip()]
    if len(tags) > MAX_TAGS:
        raise EventError("tags", "%d tags, at most %d" % (len(tags), MAX_TAGS))
    for tag in tags:
        if len(tag) > MAX_TAG:
            raise EventError("tags", "tag %r is longer than %d characters" % (tag[:40], MAX_TAG))
    data = body.get("data", "")
    if data is None:
        data = ""
    if not isinstance(data, str):
        raise EventError("data", "data must be a string")
    if len(data) > MAX_DATA:
        raise EventError("data", "data has %d characters, at most %d" % (len(data), MAX_DATA))
    if not math.isfinite(when) or when < 0:
        raise EventError("when", "when must be a time after 1970, got %r" % (when,))
    event = {"id": None, "when": float(when), "what": what, "tags": tags, "data": data,
             "source": source}
    for name in EXTRA:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > MAX_EXTRA:
            raise EventError(name, "%s must be a string of at most %d characters"
                             % (name, MAX_EXTRA))
        event[name] = value
    if event.get("priority", "normal") not in PRIORITIES:
        raise EventError("priority", "priority must be low or normal, got %r"
                         % (event["priority"],))
    if event.get("alert_type", "info") not in ALERT_TYPES:
        raise EventError("alert_type", "alert_type must be one of %s, got %r"
                         % (", ".join(ALERT_TYPES), event["alert_type"]))
    return event


class Events:
    """
    The events held, by id and in time order.

    @ivar dropped: events dropped since the start to stay within C{limit}.
    """

    def __init__(self, limit):
        self.limit = limit
        self.by_id = {}
        self.order = []  # (when, id), sorted
        self.next_id = 1
        self.dropped = 0

    def __len__(self):
        return len(self.by_id)

    def add(self, event):
        """
        Hold C{event} (a dict from L{check_event}); it gets the next id
        unless it has one (a replayed event keeps its own).  Returns how
        many of the oldest events were dropped to make room.
        """
        if event.get("id") is None:
            event["id"] = self.next_id
        self.next_id = max(self.next_id, event["id"] + 1)
        if event["id"] in self.by_id:
            self.delete(event["id"])
        self.by_id[event["id"]] = event
        insort(self.order, (event["when"], event["id"]))
        dropped = 0
        while len(self.order) > self.limit:
            _, oldest = self.order.pop(0)
            del self.by_id[oldest]
            dropped += 1
        self.dropped += dropped
        return dropped

    def delete(self, event_id):
        """
        Forget one event; whether it was held.
        """
        event = self.by_id.pop(event_id, None)
        if event is None:
            return False
        at = bisect_left(self.order, (event["when"], event_id))
        del self.order[at]
        return True

    def between(self, start, until, tags=()):
        """
        The events from C{start} to C{until} (inclusive) that carry every
        tag of C{tags}, in time order.
        """
        lo = bisect_left(self.order, (start, -math.inf))
        found = []
        wanted = set(tags)
        for when, event_id in self.order[lo:]:
            if when > until:
                break
            event = self.by_id[event_id]
            if wanted.issubset(event["tags"]):
                found.append(event)
        return found

    def to_json(self):
        """
        What a snapshot keeps: C{{"next_id", "events"}}.
        """
        return {"next_id": self.next_id,
                "events": [self.by_id[event_id] for _, event_id in self.order]}

    def load(self, obj):
        """
        Replace the events held by those of a snapshot (L{to_json}); an old
        snapshot without events gives none.
        """
        self.by_id.clear()
        del self.order[:]
        self.next_id = 1
        if not obj:
            return
        for event in obj.get("events", ()):
            self.add(dict(event))
        self.next_id = max(self.next_id, int(obj.get("next_id", 1)))
