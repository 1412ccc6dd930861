"""
Graphite's time grammar (graphite-web C{render/attime.py}): C{now}, C{-6h},
C{-5min}, C{-1mon}, epoch seconds, C{HH:MM_YYYYMMDD}, C{YYYYMMDD},
C{noon yesterday}, C{monday}, ...  Pure: every function is given C{now}.

Offsets add seconds to the instant (as pytz's normalize does), so that
C{-1d} is always 86400 s before, across a DST change too.
"""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


class TimeError(ValueError):
    """
    A time or interval string Graphite's grammar does not take.
    """


def zone(name):
    """
    The time zone called C{name} (C{UTC} when blank).
    """
    if not name:
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeError("unknown time zone %r" % (name,))


def unit_seconds(unit):
    """
    Seconds in one C{unit}, read as graphite-web's C{getUnitString} reads it
    (C{s...}, C{min...}, C{h...}, C{d...}, C{w...}, C{mon...} = 30 days,
    C{y...} = 365 days); a bare C{m} is refused, as there.
    """
    if unit.startswith("s"):
        return 1
    if unit.startswith("min"):
        return 60
    if unit.startswith("h"):
        return 3600
    if unit.startswith("d"):
        return 86400
    if unit.startswith("w"):
        return 7 * 86400
    if unit.startswith("mon"):
        return 30 * 86400
    if unit.startswith("y"):
        return 365 * 86400
    raise TimeError("invalid offset unit %r" % (unit,))


def parse_offset(text):
    """
    Seconds in an offset such as C{-1h}, C{+30min}, C{1d2h} (no sign: +).
    """
    offset = text
    if not offset:
        return 0
    sign = 1
    if not offset[0].isdigit():
        if offset[0] not in "+-":
            raise TimeError("invalid offset %r" % (text,))
        sign = -1 if offset[0] == "-" else 1
        offset = offset[1:]
    total = 0
    if not offset:
        raise TimeError("invalid offset %r" % (text,))
    while offset:
        i = 0
        while i < len(offset) and offset[i].isdigit():
            i += 1
        if i == 0:
            raise TimeError("invalid offset %r: a number must come before %r" % (text, offset))
        num = int(offset[:i])
        offset = offset[i:]
        j = 0
        while j < len(offset) and offset[j].isalpha():
            j += 1
        unit = offset[:j]
        offset = offset[j:]
        total += num * unit_seconds(unit)
    return sign * total


def parse_at_time(text, now, tz=timezone.utc):
    """
    Seconds since the epoch (an int, as graphite-web's C{timebounds})
    for C{text} said at C{now} (seconds) in time zone C{tz}.
    """
    s = text.strip().lower().replace("_", "").replace(",", "").replace(" ", "")
    if not s:
        raise TimeError("empty time")
    if s.isdigit():
        if not (len(s) == 8 and int(s[:4]) > 1900 and int(s[4:6]) < 13 and int(s[6:]) < 32):
            return int(s)
    if "+" in s:
        ref, offset = s.split("+", 1)
        offset = "+" + offset
    elif "-" in s:
        ref, offset = s.split("-", 1)
        offset = "-" + offset
    else:
        ref, offset = s, ""
    try:
        return int(_reference(ref, now, tz) + parse_offset(offset))
    except (OverflowError, ValueError) as e:
        if isinstance(e, TimeError):
            raise
        raise TimeError("invalid time %r: %s" % (text, e))


def _reference(ref, now, tz):
    if not ref or ref == "now":
        return now
    raw = ref
    local = datetime.fromtimestamp(now, tz)
    hour = minute = 0
    i = ref.find(":")
    if 0 < i < 3:
        hour = int(ref[:i])
        minute = int(ref[i + 1:i + 3])
        ref = ref[i + 3:]
        if ref[:2] == "am":
            ref = ref[2:]
        elif ref[:2] == "pm":
            hour = (hour + 12) % 24
            ref = ref[2:]
    i = ref.find("am")
    if 0 < i < 3:
        hour = int(ref[:i])
        ref = ref[i + 2:]
    i = ref.find("pm")
    if 0 < i < 3:
        hour = (int(ref[:i]) + 12) % 24
        ref = ref[i + 2:]
    if ref.startswith("noon"):
        hour, minute = 12, 0
        ref = ref[4:]
    elif ref.startswith("midnight"):
        hour, minute = 0, 0
        ref = ref[8:]
    elif ref.startswith("teatime"):
        hour, minute = 16, 0
        ref = ref[7:]
    day = local.replace(hour=hour, minute=minute, second=0, microsecond=0, tzinfo=None)
    if ref in ("yesterday", "today", "tomorrow"):
        day += timedelta(days={"yesterday": -1, "today": 0, "tomorrow": 1}[ref])
    elif ref.count("/") == 2:
        m, d, y = map(int, ref.split("/"))
        if y < 1900:
            y += 1900
        if y < 1970:
            y += 100
        day = datetime(y, m, d, hour, minute)
    elif len(ref) == 8 and ref.isdigit():
        day = datetime(int(ref[:4]), int(ref[4:6]), int(ref[6:8]), hour, minute)
    elif ref[:3] in MONTHS:
        if ref[-2:].isdigit():
            d = int(ref[-2:])
        elif ref[-1:].isdigit():
            d = int(ref[-1:])
        else:
            raise TimeError("day of month required after month name in %r" % (raw,))
        day = datetime(day.year, MONTHS.index(ref[:3]) + 1, d, hour, minute)
    elif ref[:3] in WEEKDAYS:
        today = WEEKDAYS.index(day.strftime("%a").lower()[:3])
        back = today - (WEEKDAYS * 2).index(ref[:3])
        if back < 0:
            back += 7
        day -= timedelta(days=back)
    elif ref:
        raise TimeError("unknown day reference %r" % (raw,))
    return day.replace(tzinfo=tz).timestamp()
