"""
The append-only journal of what was accepted since the last snapshot.

The journal is an input log: a statsd packet or a TCP line is journaled as
the bytes that arrived plus the server time it arrived at, and replayed at
start-up through the same parser and the same checks, with that time, which
reaches the same state (every decision depends only on the state before it
and on that time).  Points that come from elsewhere (imports, the server's
own series) and deletions are journaled as JSON entries.

A file starts with the magic C{SSJ2\\n} (the format version); each record is
a 4-byte sync marker, the 4-byte payload length, a 1-byte kind, the CRC-32
of the payload, the CRC-32 of the 13 header bytes before it, and the payload:

    j   JSON list of entries (see L{server.core.ingest})
    u   8-byte big-endian arrival time, then a statsd packet
    t   8-byte big-endian arrival time, then a TCP line

The header's own checksum tells a damaged length from a record cut short: a
record whose sound header says it runs past the end of the file is the torn
last record of a crash (only that is dropped quietly); anything else is
damage.  The marker lets a reader find the next record after damage, so
moving a damaged file aside keeps every intact record before and after it.
Files of the first format (C{SSJ1\\n}: length, CRC, kind, payload) are still
read.

Records are queued in memory and written by one writer thread, in order:
L{Journal.flush} returns a Deferred that fires once everything queued so far
is written, and a TCP C{--OK} goes out only then, so a killed process (even
C{kill -9}) loses nothing that was acknowledged; C{fsync} runs on an interval
(or with every write) against power loss.  The reactor never waits for the
disk.

Files are numbered (C{journal.000042.log}).  A snapshot rotates to a new
number first and records it; once the snapshot is on disk the older files
are removed.  At start-up the files from the snapshot's number on are
replayed in order.
"""

import collections
import errno
import json
import os
import re
import struct
import zlib

from twisted.internet import defer
from twisted.python.failure import Failure

from server.durability.datadir import PRIVATE, fsync_directory, new_private_file
from server.core.model import STATSD_PARSER_VERSION

# The magic names the framing and the statsd parser version that read the
# file's packets (server.core.model.STATSD_PARSER_VERSION): SSJ3 is SSJ2's
# framing, read by parser 2 (Telegraf-style tags); SSJ2 and SSJ1 files were
# read by parser 1, and are replayed as it read them.
MAGIC = b"SSJ3\n"
MAGIC_V2 = b"SSJ2\n"
MAGIC_V1 = b"SSJ1\n"
PARSER_BY_MAGIC = {MAGIC: 2, MAGIC_V2: 1, MAGIC_V1: 1}
MARKER = b"\xa7SJ\x8e"
_PREFIX = struct.Struct(">4sIcI")
_HEADER_CRC = struct.Struct(">I")
_HEADER = struct.Struct(">4sIcII")
_HEADER_V1 = struct.Struct(">IIc")
_TIME = struct.Struct(">d")
_NAME = re.compile(r"^journal\.(\d{6,})\.log$")
RAW_KINDS = {b"u": "udp", b"t": "tcp"}
_KINDS = frozenset([b"j", b"u", b"t"])
_KIND_BYTES = re.compile(b"[jut]")
_crc32 = zlib.crc32

# parser: the statsd parser version that read the file's packets.
JournalScan = collections.namedtuple("JournalScan", "records torn damage parser",
                                     defaults=(STATSD_PARSER_VERSION,))


class JournalCorrupt(Exception):
    """
    A journal file holds a record that is neither valid nor the torn last
    record of a crash.
    """

    def __init__(self, path, record, problem):
        Exception.__init__(self, "%s record %d %s" % (path, record, problem))
        self.path = path
        self.record = record


def journal_path(directory, seq):
    return os.path.join(directory, "journal.%06d.log" % (seq,))


def journal_files(directory):
    """
    C{(seq, path)} of every journal file in C{directory}, oldest first.
    """
    found = []
    for name in os.listdir(directory):
        match = _NAME.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name)))
    return sorted(found)


def encode_record(kind, payload):
    head = _PREFIX.pack(MARKER, len(payload), kind, _crc32(payload))
    return head + _HEADER_CRC.pack(_crc32(head)) + payload


def encode_entries(entries):
    return encode_record(b"j", json.dumps(entries, separators=(",", ":"), allow_nan=False).encode())


def encode_raw(kind, now, data):
    return encode_record(kind, _TIME.pack(now) + data)


def _here(f, *args):
    return defer.maybeDeferred(f, *args)


class Journal:
    """
    Queues records and has them written, in order, by one writer.

    Everything the writer does is an operation in one queue, run one at a
    time by C{run_in_thread} (a thread in the server, this thread in tests):
    a write (the records queued so far; later flushes join the write that
    has not started yet), a switch to the next file, an fsync, the close.

    @ivar pending: encoded records not yet handed to the writer.
    @ivar pending_bytes: their size.
    @ivar unwritten_bytes: bytes queued and not yet written (pending, handed
        to the writer, or being written).
    @ivar written: bytes written since the start.
    @ivar seq: the number of the file being written.
    """

    def __init__(self, directory, fsync_interval=1.0, run_in_thread=None):
        self.directory = directory
        self.fsync_interval = fsync_interval
        self.run_in_thread = run_in_thread or _here
        existing = journal_files(directory)
        self.seq = existing[-1][0] + 1 if existing else 1
        self.pending = []
        self.pending_bytes = 0
        self.unwritten_bytes = 0
        self.written = 0
        self.unsynced = False
        self._ops = collections.deque()
        self._current = None
        self._fd = self._open(self.seq)

    def append(self, entries):
        """
        Queue a list of JSON entries as one record; it reaches the file at
        the next L{flush}.
        """
        self._queue(encode_entries(entries))

    def append_raw(self, kind, now, data):
        """
        Queue input bytes as they arrived (C{kind} C{b"u"} or C{b"t"}).
        """
        self._queue(encode_raw(kind, now, data))

    def _queue(self, record):
        self.pending.append(record)
        self.pending_bytes += len(record)
        self.unwritten_bytes += len(record)

    def _hand_over(self):
        """
        Give the pending records to the write that has not started yet (a
        new one if there is none); returns that write.
        """
        op = self._ops[-1] if self._ops and self._ops[-1][0] == "write" else None
        if op is None:
            op = ["write", [], []]
            self._ops.append(op)
        op[1].extend(self.pending)
        self.pending = []
        self.pending_bytes = 0
        return op

    def flush(self):
        """
        Have every queued record written.  Returns a Deferred that fires
        when they are (and fsynced, with an fsync interval of 0), or fails
        with C{OSError} when the disk refuses: the records stay queued for
        the next flush.
        """
        if self.pending:
            op = self._hand_over()
        else:
            op = next((o for o in reversed(self._ops) if o[0] == "write"), None)
            if op is None:
                op = self._current if self._current is not None and \
                    self._current[0] == "write" else None
            if op is None:
                return defer.succeed(None)
        d = defer.Deferred()
        op[2].append(d)
        self._next()
        return d

    def sync(self):
        """
        fsync what was written.  Returns a Deferred.
        """
        if not self.unsynced:
            return defer.succeed(None)
        return self._enqueue("sync")

    def rotate(self):
        """
        Start the next file: every record queued before this call goes to
        the current one, every record after it to the next.  Returns a
        Deferred that fires with the new file's number once the current
        file is written, fsynced and closed (a snapshot taken now covers
        everything before that number), or fails and leaves the current
        file in use.
        """
        if self.pending:
            self._hand_over()
        return self._enqueue("switch")

    def close(self):
        """
        Write what is queued, fsync and close.  Returns a Deferred.
        """
        if self._fd is None:
            return defer.succeed(None)
        closing = next((o for o in [self._current, *self._ops] if o and o[0] == "close"), None)
        if closing is not None:
            return _follow(closing[1])
        if self.pending:
            self._hand_over()
        return self._enqueue("close")

    def _enqueue(self, kind):
        d = defer.Deferred()
        self._ops.append([kind, d])
        self._next()
        return d

    def _next(self):
        if self._current is not None or not self._ops:
            return
        op = self._current = self._ops.popleft()
        kind = op[0]
        if kind == "write":
            data = op[1] = b"".join(op[1])
            if self._fd is None:
                d = defer.succeed((0, OSError(errno.EBADF, "the journal is closed")))
            else:
                d = self.run_in_thread(_write_all, self._fd, data, self.fsync_interval == 0)
            d.addBoth(self._wrote, op)
        elif kind == "switch":
            d = self.run_in_thread(_switch, self._open, self._fd, self.seq + 1)
            d.addBoth(self._switched, op)
        elif kind == "sync":
            d = self.run_in_thread(os.fsync, self._fd)
            d.addBoth(self._synced, op)
        else:
            d = self.run_in_thread(_close, self._fd)
            d.addBoth(self._closed, op)

    def _wrote(self, result, op):
        self._current = None
        data = op[1]
        if isinstance(result, Failure):
            done, error = 0, result
        else:
            done, error = result
        self.written += done
        self.unwritten_bytes -= done
        if error is None:
            self.unsynced = self.fsync_interval != 0
            for d in op[2]:
                d.callback(None)
        else:
            if done:
                self.unsynced = True
            # A short write, then the error (a disk filling up): the rest
            # goes first, so the retry finishes the torn record rather than
            # writing the whole batch again after it.
            self._unwind([data[done:]] if done < len(data) else [], error)
            for d in op[2]:
                d.errback(error)
        self._next()

    def _unwind(self, returned, error):
        """
        A write failed: every operation queued after it fails too (a switch
        must not close a file whose records are not all in it), and their
        records go back in front of the pending ones.
        """
        failed = []
        while self._ops:
            op = self._ops.popleft()
            if op[0] == "write":
                returned.extend(op[1])
                failed.extend(op[2])
            else:
                failed.append(op[1])
        returned = [r for r in returned if r]
        self.pending[:0] = returned
        self.pending_bytes += sum(len(r) for r in returned)
        for d in failed:
            d.errback(error)

    def _switched(self, result, op):
        self._current = None
        if not isinstance(result, Failure):
            self._fd = result
            self.seq += 1
            self.unsynced = False
        _fire(op[1], result if isinstance(result, Failure) else self.seq)
        self._next()

    def _synced(self, result, op):
        self._current = None
        if not isinstance(result, Failure):
            self.unsynced = False
        _fire(op[1], result)
        self._next()

    def _closed(self, result, op):
        self._current = None
        if not isinstance(result, Failure):
            self._fd = None
            self.unsynced = False
        _fire(op[1], result)
        self._next()

    def _open(self, seq):
        """
        Open (create) file C{seq} for appending.  Runs in the writer thread
        but for the first file.
        """
        return _open(self.directory, seq)

    def skip_to(self, seq):
        """
        At start-up, before anything is written: go on at file C{seq} (a
        snapshot covers every file before it, so a file numbered lower
        would not be replayed).  The current file, empty, is removed.
        """
        if seq <= self.seq:
            return
        if self.written or self._ops or self._current is not None:
            # Queued records are fine (they go to the new file); written
            # ones would be left in a file no start replays.
            raise RuntimeError("skip_to after records were written")
        fd = self._open(seq)
        os.close(self._fd)
        os.remove(journal_path(self.directory, self.seq))
        self._fd = fd
        self.seq = seq

    def remove_before(self, seq):
        """
        Remove the files a snapshot covers: those numbered before C{seq},
        which must be a number this journal rotated to (never the current
        file or a later one).
        """
        if seq > self.seq:
            raise ValueError("journal file %d is not written yet (writing %d)" % (seq, self.seq))
        for number, path in journal_files(self.directory):
            if number < seq:
                os.remove(path)


def _follow(d):
    """
    A new Deferred with C{d}'s result (C{d} keeps it too).
    """
    follower = defer.Deferred()

    def fire(result):
        _fire(follower, result)
        return result

    d.addBoth(fire)
    return follower


def _fire(d, result):
    if isinstance(result, Failure):
        d.errback(result)
    else:
        d.callback(result)


def write_journal_file(path, records, parser=STATSD_PARSER_VERSION):
    """
    Write C{records} (as L{read_journal} returns them) as a new journal
    file at C{path}, atomically, marked as read by statsd parser version
    C{parser} (the version of the file they came from).
    """
    chunks = [MAGIC if parser == 2 else MAGIC_V2]
    for record in records:
        if isinstance(record, list):
            chunks.append(encode_entries(record))
        else:
            name, now, data = record
            kind = next(k for k, n in RAW_KINDS.items() if n == name)
            chunks.append(encode_raw(kind, now, data))
    temp = path + ".tmp"
    with open(temp, "wb", opener=new_private_file) as f:
        f.write(b"".join(chunks))
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    fsync_directory(os.path.dirname(path) or ".")


def _open(directory, seq):
    path = journal_path(directory, seq)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE)
    try:
        os.fchmod(fd, PRIVATE)  # only the server reads its data: whatever the umask or an older mode
        if os.fstat(fd).st_size == 0:
            os.write(fd, MAGIC)
        fsync_directory(directory)
    except OSError:
        os.close(fd)
        raise
    return fd


def _write_all(fd, data, fsync):
    """
    Write C{data} (and fsync).  Runs in the writer thread.  Returns
    C{(bytes written, OSError or None)}.
    """
    view = memoryview(data)
    done = 0
    try:
        while done < len(data):
            done += os.write(fd, view[done:])
        if fsync:
            os.fsync(fd)
    except OSError as e:
        return done, e
    return done, None


def _switch(open_file, fd, seq):
    """
    fsync the current file, open the next one (first: if that fails the
    current file stays in use), close the current one.  Runs in the writer
    thread.  Returns the new descriptor.
    """
    os.fsync(fd)
    new = open_file(seq)
    os.close(fd)
    return new


def _close(fd):
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_journal(path):
    """
    Read one journal file: C{(records, torn)}.  Each record is a list of
    JSON entries, or C{(kind, arrival time, bytes)} for raw input
    (C{kind} "udp" or "tcp").

    A last record cut short is the torn record of a crash mid-write: it is
    left out and described in C{torn} as C{(record number, problem)}.  Any
    other damage raises L{JournalCorrupt} naming the first damaged record.
    """
    scan = scan_journal(path)
    if scan.damage:
        number, offset, problem = scan.damage[0]
        more = len(scan.damage) - 1
        raise JournalCorrupt(path, number, "at byte %d: %s%s" % (
            offset, problem, "; %d more damaged records after it" % (more,) if more else ""))
    return scan.records, scan.torn


def scan_journal(path):
    """
    Read one journal file past any damage: a L{JournalScan} of the intact
    records, the torn last record (or L{None}) and the damage, each damaged
    stretch as C{(record number, byte offset, problem)}; reading goes on
    at the next intact record.
    """
    with open(path, "rb") as f:
        data = f.read()
    records = []
    damage = []
    magic = data[:len(MAGIC)]
    parser = PARSER_BY_MAGIC.get(magic)
    if magic in (MAGIC, MAGIC_V2):
        parse, find = _parse_v2, _find_v2
    elif magic == MAGIC_V1:
        parse, find = _parse_v1, _find_v1
    elif any(m.startswith(data) for m in PARSER_BY_MAGIC):
        # Killed between creating the file and writing its magic.
        return JournalScan(records, (0, "empty file") if data else None, damage)
    else:
        return JournalScan(records, None, [(0, 0, "not a SimpleStats journal (bad magic)")])
    offset = len(MAGIC)
    number = 0
    size = len(data)
    torn = None
    while offset < size:
        number += 1
        record, end, problem, cut = parse(data, offset)
        if problem is None:
            try:
                records.append(_decode(record[0], record[1]))
            except ValueError as e:
                damage.append((number, offset, str(e)))
            offset = end
            continue
        following = find(data, offset + 1)
        if following is None:
            if cut or not data[offset:].strip(b"\0"):
                # Nothing intact after it: cut short by a crash, or the
                # zeros a power loss leaves past the last write.
                torn = (number, problem if cut else "zero bytes after the last record")
            else:
                damage.append((number, offset, problem))
            break
        damage.append((number, offset, "%s; %d bytes skipped" % (problem, following - offset)))
        offset = following
    return JournalScan(records, torn, damage, parser)


def _parse_v2(data, offset):
    """
    C{((kind, payload), end, problem, cut)}: the record at C{offset}, or
    what is wrong with it and whether it is a record cut short.
    """
    size = len(data)
    if offset + _HEADER.size > size:
        cut = MARKER.startswith(data[offset:offset + 4])
        return None, None, "record header cut short (%d bytes)" % (size - offset,), cut
    marker, length, kind, crc, header_crc = _HEADER.unpack_from(data, offset)
    if marker != MARKER:
        return None, None, "no record marker", False
    if _crc32(data[offset:offset + _PREFIX.size]) != header_crc:
        return None, None, "record header checksum mismatch (length or kind damaged)", False
    start = offset + _HEADER.size
    end = start + length
    if end > size:
        return None, None, "record cut short (%d of %d bytes)" % (size - start, length), True
    payload = data[start:end]
    if _crc32(payload) != crc:
        return None, None, "checksum mismatch", False
    return (kind, payload), end, None, False


def _find_v2(data, start):
    """
    Where the next record with a sound header starts after C{start}, or
    L{None}.
    """
    while True:
        at = data.find(MARKER, start)
        if at < 0:
            return None
        _, _, problem, cut = _parse_v2(data, at)
        if problem is None or (cut and at + _HEADER.size <= len(data)):
            return at
        start = at + 1


def _parse_v1(data, offset):
    size = len(data)
    if offset + _HEADER_V1.size > size:
        return None, None, "record header cut short (%d bytes)" % (size - offset,), True
    length, crc, kind = _HEADER_V1.unpack_from(data, offset)
    start = offset + _HEADER_V1.size
    end = start + length
    if end > size:
        # The first format cannot tell a damaged length from a cut: the
        # reader decides by whether an intact record follows.
        return None, None, "record cut short (%d of %d bytes)" % (size - start, length), True
    payload = data[start:end]
    if _crc32(payload, _crc32(kind)) != crc:
        return None, None, "checksum mismatch", False
    return (kind, payload), end, None, False


def _find_v1(data, start):
    """
    Where the next intact record of the first format starts after
    C{start} (a sound checksum and a valid body), or L{None}.
    """
    kind_at = _HEADER_V1.size - 1
    search = _KIND_BYTES.search
    match = search(data, start + kind_at)
    while match is not None:
        at = match.start() - kind_at
        record, _, problem, _ = _parse_v1(data, at)
        if problem is None:
            try:
                _decode(record[0], record[1])
                return at
            except ValueError:
                pass
        match = search(data, match.start() + 1)
    return None


def _decode(kind, payload):
    if kind == b"j":
        try:
            entries = json.loads(payload)
        except ValueError:
            raise ValueError("entries are not JSON")
        if not isinstance(entries, list):
            raise ValueError("entries are not a list")
        return entries
    name = RAW_KINDS.get(kind)
    if name is None or len(payload) < _TIME.size:
        raise ValueError("unknown record kind %r" % (kind,))
    return name, _TIME.unpack_from(payload)[0], payload[_TIME.size:]
