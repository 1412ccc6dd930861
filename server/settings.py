"""
Every setting of the server: its default, its meaning and how it is checked.

One immutable L{Settings} object is built once at start-up from these
defaults, overridden by C{SIMPLESTATS_*} environment variables, overridden in
turn by command-line flags, and passed down to whatever needs it.
"""

import argparse
import dataclasses
import ipaddress
import math
import re
from typing import NamedTuple, Optional, Tuple

from server.core.cardinality import EXACT_LIMIT, MIN_EXACT_LIMIT
from server.core.model import Limits


class SettingsError(ValueError):
    """
    A setting has a value the server cannot run with; the message names it.
    """


class Tier(NamedTuple):
    """
    One resolution of stored data: buckets of C{step} seconds kept for
    C{retention} seconds (L{None}: forever).
    """

    step: int
    retention: Optional[int]


_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_DURATION = re.compile(r"^(\d+)(s|min|m|h|d|w|y)?$")


def parse_duration(text):
    """
    C{"5s"}, C{"1m"}, C{"8d"}, C{"2y"} or a plain number of seconds.
    """
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError("%r is not a duration such as 5s, 1m, 6h, 8d, 1y" % (text,))
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_retentions(text):
    """
    Graphite's C{retentions} syntax: C{"5s:6h,1m:8d,1h:forever"}.  Each step
    must divide the next and each tier must keep at least as long as the one
    before it, so every point rolls up into every coarser tier.
    """
    tiers = []
    for part in text.split(","):
        step_text, sep, keep_text = part.strip().partition(":")
        if not sep:
            raise ValueError("%r is not step:retention (e.g. 5s:6h)" % (part,))
        step = parse_duration(step_text)
        keep = None if keep_text.strip() == "forever" else parse_duration(keep_text)
        if step <= 0:
            raise ValueError("step of %r must be positive" % (part,))
        if keep is not None and keep < step:
            raise ValueError("retention of %r is shorter than its step" % (part,))
        tiers.append(Tier(step, keep))
    for finer, coarser in zip(tiers, tiers[1:]):
        if finer.retention is None:
            raise ValueError("only the last tier may be kept forever")
        if coarser.step <= finer.step or coarser.step % finer.step:
            raise ValueError(
                "step %ds must be a multiple of the previous step %ds"
                % (coarser.step, finer.step)
            )
        if coarser.retention is not None and coarser.retention < finer.retention:
            raise ValueError("each tier must be kept at least as long as the finer one")
    if 86400 % tiers[0].step:
        raise ValueError("the finest step must divide a day")
    return tuple(tiers)


def _whole(text, expected):
    """
    C{text} as an int, else a ValueError saying C{expected} (what the
    setting takes, in plain words): never Python's own message.
    """
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(expected) from None


def _number(text, expected):
    """
    C{text} as a finite float, else a ValueError saying C{expected}.
    """
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(expected) from None
    if not math.isfinite(value):
        raise ValueError(expected)
    return value


def _port(text):
    expected = "must be a whole number from 0 to 65535"
    port = _whole(text, expected)
    if not 0 <= port <= 65535:
        raise ValueError(expected)
    return port


def _address(text):
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError("must be an IP address such as 127.0.0.1, 0.0.0.0 or ::1") from None
    return text


def _positive_float(text):
    expected = "must be a number greater than 0"
    value = _number(text, expected)
    if value <= 0:
        raise ValueError(expected)
    return value


def _non_negative_float(text):
    expected = "must be a number of 0 or more"
    value = _number(text, expected)
    if value < 0:
        raise ValueError(expected)
    return value


def _positive_int(text):
    expected = "must be a whole number greater than 0"
    value = _whole(text, expected)
    if value <= 0:
        raise ValueError(expected)
    return value


def _set_limit(text):
    expected = "must be a whole number of at least %d" % (MIN_EXACT_LIMIT,)
    value = _whole(text, expected)
    if value < MIN_EXACT_LIMIT:
        raise ValueError(expected)
    return value


def _non_negative_int(text):
    expected = "must be a whole number of 0 or more"
    value = _whole(text, expected)
    if value < 0:
        raise ValueError(expected)
    return value


def _accuracy(text):
    expected = "must be a fraction between 0 and 0.5, e.g. 0.01"
    value = _number(text, expected)
    if not 0 < value < 0.5:
        raise ValueError(expected)
    return value


def _bool(text):
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _token(text):
    if text and len(text) < 16:
        raise ValueError("must be at least 16 characters (or empty to disable writes off loopback)")
    return text


def _read_token_mode(text):
    mode = text.strip().lower()
    if mode not in ("auto", "on", "off"):
        raise ValueError("must be auto, on or off")
    return mode


def _carbon_values(text):
    kind = text.strip().lower()
    if kind not in ("sample", "gauge"):
        raise ValueError("must be sample or gauge")
    return kind



class Destination(NamedTuple):
    """
    One C{--forward} destination: C{carbon://HOST:PORT} (TCP) or
    C{carbon+udp://HOST:PORT}, with carbon's instance name for the
    consistent-hash ring (C{?instance=a}; L{None} as in carbon's
    C{DESTINATIONS} without one).
    """

    scheme: str
    host: str
    port: int
    instance: Optional[str]

    @property
    def udp(self):
        return self.scheme == "carbon+udp"

    def __str__(self):
        text = "%s://%s:%d" % (self.scheme, _bracketed(self.host), self.port)
        return text if self.instance is None else text + "?instance=" + self.instance


def _bracketed(host):
    return "[%s]" % host if ":" in host else host


_DESTINATION = re.compile(r"^(carbon|carbon\+udp)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d+)"
                          r"(?:\?instance=([A-Za-z0-9_.-]+))?$")


def parse_destinations(text):
    """
    C{--forward} values, comma-separated: C{carbon://HOST:PORT},
    C{carbon+udp://HOST:PORT}, each optionally C{?instance=NAME}.
    """
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        match = _DESTINATION.match(part)
        if not match:
            raise ValueError("%r is not carbon://HOST:PORT or carbon+udp://HOST:PORT (optionally"
                             " followed by ?instance=NAME)" % (part,))
        scheme, host, port, instance = match.groups()
        port = int(port)
        if not 1 <= port <= 65535:
            raise ValueError("port of %r must be from 1 to 65535" % (part,))
        destination = Destination(scheme, host.strip("[]"), port, instance)
        if any((d.host, d.port, d.udp) == (destination.host, destination.port, destination.udp)
               for d in out):
            raise ValueError("%s is given twice" % (destination,))
        out.append(destination)
    return tuple(out)


_PREFIX = re.compile(r"^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$")


def _forward_prefix(text):
    text = text.strip()
    if text and not _PREFIX.match(text):
        raise ValueError("must be dot-separated Graphite nodes of letters, digits, _ - and :"
                         " (e.g. dc1.simplestats), without a leading or trailing dot")
    return text


def _forward_tier(text):
    step = parse_duration(text)
    if step <= 0:
        raise ValueError("must be the step of one of --retentions' tiers, e.g. 5s or 1m")
    return step


def _choice(*choices):
    def parse(text):
        value = text.strip().lower()
        if value not in choices:
            raise ValueError("must be one of %s" % (", ".join(choices),))
        return value
    return parse


def _replicas(text):
    value = int(text)
    if not 1 <= value <= 10000:
        raise ValueError("must be a whole number from 1 to 10000 (carbon's default: 100)")
    return value

def _setting(default, parse, help):
    return dataclasses.field(default=default, metadata={"parse": parse, "help": help})


@dataclasses.dataclass(frozen=True)
class Settings:
    """
    The server's settings.  Build with L{load}; never mutate.
    """

    bind: str = _setting("127.0.0.1", _address, "address the tuple, statsd and web ports listen on")
    tcp_port: int = _setting(8007, _port, "TCP line protocol port (JSON tuples)")
    udp_port: int = _setting(8125, _port, "statsd UDP port")
    http_port: int = _setting(8080, _port, "web dashboard and JSON API port")
    carbon_port: int = _setting(2003, _port, "Graphite plaintext TCP port (0: off)")
    carbon_udp_port: int = _setting(2003, _port, "Graphite plaintext UDP port (0: off)")
    carbon_interface: str = _setting(
        "127.0.0.1", _address, "address the Graphite plaintext ports listen on (no token is"
        " asked there: keep it on loopback or a trusted network)"
    )
    carbon_values: str = _setting(
        "sample", _carbon_values,
        "what a Graphite plaintext value becomes: sample (a distribution: count, mean,"
        " percentiles per bucket) or gauge (the last value per bucket)"
    )
    carbon_max_line_length: int = _setting(
        8192, _positive_int,
        "longest Graphite plaintext line, in bytes; a longer one is dropped and counted, the"
        " connection goes on"
    )
    data_dir: str = _setting("data", str, "directory for the snapshot and the journal")
    retentions: Tuple[Tier, ...] = _setting(
        parse_retentions("5s:6h,1m:8d,1h:forever"),
        parse_retentions,
        "rollup tiers in Graphite's retentions syntax, finest first",
    )
    rollup_interval: float = _setting(1.0, _positive_float, "seconds between rollup ticks")
    late_grace: float = _setting(
        5.0, _non_negative_float, "seconds after its end that a 5 s bucket stays open for late points"
    )
    future_limit: float = _setting(
        600.0, _non_negative_float, "how many seconds ahead of the server clock a timestamp may be"
    )
    snapshot_interval: float = _setting(60.0, _positive_float, "seconds between snapshots")
    snapshot_journal_bytes: int = _setting(
        256 * 1024 * 1024, _non_negative_int,
        "journal bytes since the last snapshot that start the next one early, so that a restart"
        " replays at most about this much (0: only every --snapshot-interval)"
    )
    journal_flush_interval: float = _setting(
        0.1, _positive_float, "seconds UDP points may wait in memory before the journal write"
    )
    journal_fsync_interval: float = _setting(
        1.0, _non_negative_float, "seconds between journal fsyncs (0: fsync every write)"
    )
    sketch_accuracy: float = _setting(0.01, _accuracy, "relative error of percentiles")
    max_line_length: int = _setting(65536, _positive_int, "longest TCP line, in bytes")
    max_packet_size: int = _setting(65535, _positive_int, "largest UDP packet read, in bytes")
    max_name_length: int = _setting(200, _positive_int, "longest metric name")
    max_tags: int = _setting(20, _positive_int, "most tags on one point")
    max_tag_length: int = _setting(100, _positive_int, "longest tag key or value")
    max_batch: int = _setting(10000, _positive_int, "most tuples in one TCP batch line")
    max_set_members: int = _setting(
        10000, _positive_int,
        "most members in one set partial (what one line may ask to parse; see --set-exact-limit"
        " for what a set keeps)"
    )
    set_exact_limit: int = _setting(
        EXACT_LIMIT, _set_limit,
        "members a set keeps exactly in one bucket; past it the bucket keeps a HyperLogLog sketch"
        " (about 4 KB in memory, 3 KB of text in a snapshot; unique count within 1.6 % standard"
        " error) instead of its members"
    )
    max_series: int = _setting(500000, _positive_int, "most series; new ones beyond are refused")
    max_connections: int = _setting(1000, _positive_int, "most open TCP connections")
    tcp_idle_timeout: float = _setting(
        600.0, _non_negative_float,
        "seconds a TCP connection may go without a complete line before it is closed (0: never)"
    )
    max_http_connections: int = _setting(
        1000, _positive_int,
        "most open HTTP connections; at the cap an idle one is closed for a new one, or the new"
        " one gets 503"
    )
    http_idle_timeout: float = _setting(
        60.0, _positive_float, "seconds an HTTP connection may wait for its next request"
    )
    http_header_timeout: float = _setting(
        10.0, _positive_float,
        "seconds from the first byte of an HTTP request to the end of its headers (then 408)"
    )
    http_body_timeout: float = _setting(
        20.0, _positive_float,
        "seconds an upload may take, plus one second per --http-body-min-rate bytes received"
        " (then 408)"
    )
    http_body_min_rate: int = _setting(
        1024, _positive_int, "bytes per second an upload must keep up after --http-body-timeout"
    )
    http_write_timeout: float = _setting(
        60.0, _positive_float,
        "seconds an HTTP answer may wait for a client that reads none of it before the"
        " connection is dropped"
    )
    fd_reserve: int = _setting(
        64, _positive_int,
        "file descriptors kept free of connections for the journal, snapshots and the listeners;"
        " the connection caps are lowered at start-up to leave them"
    )
    max_upload_bytes: int = _setting(256 * 1024 * 1024, _positive_int, "largest import upload")
    max_ingest_bytes: int = _setting(
        256 * 1024, _positive_int,
        "largest body of an HTTP ingest call (/put, /mput, /pub, /mpub, /agg): it is parsed and"
        " applied in one reactor turn, about 25 ms for 256 KiB of NSQ messages"
    )
    max_points: int = _setting(20000, _positive_int, "most points per field in one /api/series answer")
    max_filter_terms: int = _setting(
        100, _positive_int, "most terms in one filter (metric list, export, delete); each costs time per series"
    )
    max_filter_length: int = _setting(4096, _positive_int, "longest filter, in characters")
    max_batch_series: int = _setting(
        100, _positive_int, "most series in one /api/series/batch answer (keys and filter matches)"
    )
    max_events: int = _setting(
        10000, _positive_int,
        "most events (deploy markers) held; past it the oldest are dropped and counted in"
        " simplestats.events.dropped"
    )
    max_dashboards: int = _setting(1000, _positive_int, "most saved dashboards")
    max_dashboard_bytes: int = _setting(
        65536, _positive_int, "largest saved dashboard, in bytes of its JSON"
    )
    graphite_max_series: int = _setting(
        5000, _positive_int,
        "most series (or tree nodes) one Graphite /render, /metrics/find or tags request may match;"
        " more is a 400 naming this setting"
    )
    graphite_max_points: int = _setting(
        5_000_000, _positive_int,
        "most points (series times buckets) one Graphite /render request may read; more is a 400"
        " naming this setting"
    )
    idle_expiry: float = _setting(
        0.0, _non_negative_float, "drop series idle this many seconds (0: keep forever)"
    )
    recovery_queue_bytes: int = _setting(
        64 * 1024 * 1024, _non_negative_int,
        "statsd bytes held in memory while start-up recovers the data directory, applied after"
        " it; packets beyond are dropped and counted in simplestats.udp.dropped_recovering"
    )
    api_token: str = _setting(
        "", _token,
        "token for import and admin calls (header X-SimpleStats-Token or Authorization: Bearer);"
        " a flag is visible to every user in /proc/PID/cmdline: prefer --api-token-file or the"
        " environment variable. Without one, binding beyond loopback (or --read-token on) keeps a"
        " generated token in DATA_DIR/api-token (mode 0600)"
    )
    api_token_file: str = _setting(
        "", str, "file holding the API token alone on one line (instead of --api-token)"
    )
    read_token: str = _setting(
        "auto", _read_token_mode,
        "whether reads of data (/api/* GETs, exports) need the API token too: on, off, or auto"
        " (on when binding beyond loopback)"
    )
    move_corrupt_aside: bool = _setting(
        False, _bool, "at start-up, rename a corrupt snapshot or journal and start without it"
    )
    accept_missing_data: bool = _setting(
        False, _bool, "start even when the data directory shows data that is not there (no"
        " snapshot but journal numbering past 1, or missing journal files): logged loudly"
    )
    drop_removed_tiers: bool = _setting(
        False, _bool, "allow a --retentions change that removes a tier of the snapshot: its rows"
        " are dropped (its open buckets roll up into the next tier)"
    )
    alerts_file: str = _setting(
        "", str, "TOML file of alert rules read at start ([[rules]] tables, an [email] table of"
        " SMTP defaults); its rules replace those it gave before and cannot be changed by the API"
    )
    alerts_base_url: str = _setting(
        "", str, "the dashboard's address as notifications link to it (default:"
        " http://BIND:HTTP_PORT)"
    )
    alerts_max_rules: int = _setting(10000, _positive_int, "most alert rules held")
    alerts_history: int = _setting(
        10000, _positive_int, "alert transitions kept for /api/alerts/history (oldest dropped)"
    )
    alerts_apprise_threads: int = _setting(
        2, _positive_int, "threads that send Apprise notifications (off the reactor's thread)"
    )
    alerts_check_interval: float = _setting(
        1.0, _positive_float, "seconds between checks of stopped rules and probe schedules"
    )
    forward: Tuple[Destination, ...] = _setting(
        (), parse_destinations,
        "forward each closed bucket to a Graphite cluster (carbon-c-relay, carbon-relay or"
        " carbon-cache) as plaintext lines: carbon://HOST:PORT (TCP, queued on disk while it"
        " is down) or carbon+udp://HOST:PORT, optionally ?instance=NAME (carbon's instance, for"
        " --forward-mode hash); repeat the flag or separate with commas"
    )
    forward_prefix: str = _setting(
        "", _forward_prefix, "Graphite nodes put before every forwarded path (e.g. dc1.agg1)"
    )
    forward_tier: int = _setting(
        5, _forward_tier, "which tier's closed buckets are forwarded, by its step (5s or 1m: one"
        " of --retentions' steps)"
    )
    forward_names: str = _setting(
        "paths", _choice("paths", "statsd", "both"),
        "names forwarded: paths (name.field and the bare name, as /render reads them), statsd"
        " (stats.counters.NAME.rate, stats.timers.NAME.upper_99, ...) or both; tagged series"
        " go as Graphite 1.1 tagged paths (name.field;k=v) in every case"
    )
    forward_mode: str = _setting(
        "all", _choice("all", "hash"),
        "with several --forward destinations: all (each gets every line) or hash (each path goes"
        " to one, placed by carbon's consistent-hashing ring, as carbon-relay places it)"
    )
    forward_replicas: int = _setting(
        100, _replicas, "replicas of each destination on the consistent-hashing ring (carbon: 100)"
    )
    forward_memory_bytes: int = _setting(
        64 * 1024 * 1024, _positive_int,
        "bytes of queued lines held in memory per destination; past it they are read back from"
        " the queue file in the data directory"
    )
    forward_disk_bytes: int = _setting(
        1024 * 1024 * 1024, _positive_int,
        "bytes of queue file per destination; past it new lines are dropped and counted in"
        " simplestats.forward.dropped_lines"
    )
    forward_reconnect_min: float = _setting(
        0.5, _positive_float, "seconds before the first reconnection to a forward destination;"
        " doubled after each failure"
    )
    forward_reconnect_max: float = _setting(
        30.0, _positive_float, "longest wait between reconnections to a forward destination"
    )
    forward_confirm_seconds: float = _setting(
        2.0, _non_negative_float,
        "seconds lines must have been in the kernel with the connection still up before they"
        " count as delivered; after a connection loss the lines of this window are sent again"
        " (Graphite keeps the last value of a timestamp, so a repeat changes nothing)"
    )
    web_root: str = _setting(
        "", str, "directory of the dashboard's static files (default: the ones installed with"
        " the server)"
    )

    @property
    def limits(self):
        return Limits(
            max_name_length=self.max_name_length,
            max_tags=self.max_tags,
            max_tag_length=self.max_tag_length,
            max_batch=self.max_batch,
            max_set_members=self.max_set_members,
        )

    @property
    def tiers(self):
        return self.retentions


def _flag(name):
    return "--" + name.replace("_", "-")


def _env(name):
    return "SIMPLESTATS_" + name.upper()


def _fields():
    return dataclasses.fields(Settings)


def _show(value):
    if isinstance(value, tuple) and value and isinstance(value[0], Tier):
        return ",".join(
            "%ds:%s" % (t.step, "forever" if t.retention is None else "%ds" % t.retention)
            for t in value
        )
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m server.main",
        description="SimpleStats: a realtime statistics aggregation server.",
        epilog="Every flag can also be set by the environment variable shown with it.",
    )
    for field in _fields():
        # A true/false flag alone means true: "--move-corrupt-aside", as the
        # start-up errors tell people to run it.
        switch = {"nargs": "?", "const": "true"} if field.metadata["parse"] is _bool else {}
        if field.metadata["parse"] is parse_destinations:
            switch = {"action": "append"}  # --forward A --forward B
        parser.add_argument(
            _flag(field.name),
            dest=field.name,
            default=None,
            metavar="VALUE",
            # argparse expands % in help; the texts (twist prints them as
            # they are) hold plain ones.
            help=("%s (default: %s; env %s)"
                  % (field.metadata["help"], _show(field.default) or "''", _env(field.name))
                  ).replace("%", "%%"),
            **switch,
        )
    return parser


def load(argv=(), environ=None):
    """
    Build the settings from defaults, then C{environ}, then C{argv}.

    @raise SettingsError: naming the flag or variable and what is wrong.
    """
    environ = {} if environ is None else environ
    args = build_parser().parse_args(list(argv))
    values = {}
    for field in _fields():
        parse = field.metadata["parse"]
        for source, raw in ((_env(field.name), environ.get(_env(field.name))),
                            (_flag(field.name), getattr(args, field.name))):
            if raw is None:
                continue
            if isinstance(raw, list):
                raw = ",".join(raw)
            try:
                values[field.name] = parse(raw)
            except ValueError as e:
                shown = "<hidden>" if field.name == "api_token" else repr(raw)
                raise SettingsError("%s: %s, got %s" % (source, e, shown))
    if values.get("api_token") and values.get("api_token_file"):
        raise SettingsError("both an API token and --api-token-file are given; choose one")
    settings = Settings(**values)
    _check_forward(settings)
    return settings


def _check_forward(settings):
    """
    The forwarding settings that depend on others.
    """
    steps = [tier.step for tier in settings.retentions]
    if settings.forward and settings.forward_tier not in steps:
        raise SettingsError("--forward-tier: %ds is not the step of a tier of --retentions (%s)"
                            % (settings.forward_tier, ", ".join("%ds" % s for s in steps)))
    if settings.forward_reconnect_max < settings.forward_reconnect_min:
        raise SettingsError("--forward-reconnect-max (%g) is shorter than --forward-reconnect-min"
                            " (%g)" % (settings.forward_reconnect_max,
                                       settings.forward_reconnect_min))
    if settings.forward_disk_bytes < 1024 * 1024:
        raise SettingsError("--forward-disk-bytes: at least 1048576 (1 MiB), got %d"
                            % (settings.forward_disk_bytes,))
