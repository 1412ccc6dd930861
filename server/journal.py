"""
The append-only journal of what was accepted since the last snapshot.

The journal is an input log: a statsd packet or a TCP line is journaled as
the bytes that arrived plus the server time it arrived at, and replayed at
start-up through the same parser and the same checks, with that time, which
reaches the same state (every decision depends only on the state before it
and on that time).  Points that come from elsewhere (imports, the server's
own series) and deletions are journaled as JSON entries.

A file starts with the magic C{SSJ1\\n}; each record is a 4-byte payload
length, the CRC-32 of kind and payload, a 1-byte kind, and the payload:

    j   JSON list of entries (see L{server.ingest})
    u   8-byte big-endian arrival time, then a statsd packet
    t   8-byte big-endian arrival time, then a TCP line

Records reach the file with a plain C{write} before a TCP answer goes out,
so a killed process (even C{kill -9}) loses nothing that was acknowledged;
C{fsync} runs on an interval (or on every write) against power loss.

Files are numbered (C{journal.000042.log}).  A snapshot rotates to a new
number first and records it; once the snapshot is on disk the older files
are removed.  At start-up the files from the snapshot's number on are
replayed in order.
"""

import json
import os
import re
import struct
import zlib

MAGIC = b"SSJ1\n"
_HEADER = struct.Struct(">IIc")
_TIME = struct.Struct(">d")
_NAME = re.compile(r"^journal\.(\d{6,})\.log$")
RAW_KINDS = {b"u": "udp", b"t": "tcp"}
_crc32 = zlib.crc32
_KIND_CRC = {kind: zlib.crc32(kind) for kind in RAW_KINDS}


class JournalCorrupt(Exception):
    """
    A journal file holds a record that is neither valid nor the torn last
    record of a crash.
    """

    def __init__(self, path, record, problem):
        Exception.__init__(self, "%s record %d: %s" % (path, record, problem))
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
    return _HEADER.pack(len(payload), zlib.crc32(payload, zlib.crc32(kind)), kind) + payload


def encode_entries(entries):
    return encode_record(b"j", json.dumps(entries, separators=(",", ":"), allow_nan=False).encode())


def encode_raw(kind, now, data):
    # encode_record with the kind's CRC computed once: once per statsd packet.
    payload = _TIME.pack(now) + data
    return _HEADER.pack(len(payload), _crc32(payload, _KIND_CRC[kind]), kind) + payload


class Journal:
    """
    Appends records to the current journal file.

    @ivar pending: encoded records not yet written.
    """

    def __init__(self, directory, fsync_interval=1.0):
        self.directory = directory
        self.fsync_interval = fsync_interval
        existing = journal_files(directory)
        self.seq = existing[-1][0] + 1 if existing else 1
        self.pending = []
        self.pending_bytes = 0
        self.written = 0
        self.unsynced = False
        self._fd = self._open(self.seq)

    def _open(self, seq):
        path = journal_path(self.directory, seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if os.fstat(fd).st_size == 0:
            os.write(fd, MAGIC)
        _fsync_directory(self.directory)
        return fd

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

    def flush(self):
        """
        Write every queued record.  Raises C{OSError} if the disk refuses;
        the records stay queued.
        """
        if not self.pending:
            return
        data = b"".join(self.pending)
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError:
            if len(view) < len(data):
                # A short write, then the error (a disk filling up): keep
                # only the rest, so the retry finishes the torn record
                # rather than writing the whole batch again after it.
                rest = bytes(view)
                self.written += len(data) - len(rest)
                self.pending = [rest]
                self.pending_bytes = len(rest)
            raise
        self.pending = []
        self.pending_bytes = 0
        self.written += len(data)
        self.unsynced = True
        if self.fsync_interval == 0:
            self.sync()

    def sync(self):
        if self.unsynced:
            os.fsync(self._fd)
            self.unsynced = False

    def rotate(self):
        """
        Flush, close the current file and start the next one.  Returns the
        new file's number: a snapshot taken now covers everything before it.
        """
        self.flush()
        self.sync()
        # Open first: if that fails the current file stays in use, rather
        # than a closed descriptor the next open() elsewhere may reuse.
        fd = self._open(self.seq + 1)
        os.close(self._fd)
        self._fd = fd
        self.seq += 1
        return self.seq

    def remove_before(self, seq):
        for number, path in journal_files(self.directory):
            if number < seq:
                os.remove(path)

    def close(self):
        if self._fd is None:
            return
        self.flush()
        self.sync()
        os.close(self._fd)
        self._fd = None


def read_journal(path):
    """
    Read one journal file: C{(records, torn)}.  Each record is a list of
    JSON entries, or C{(kind, arrival time, bytes)} for raw input
    (C{kind} "udp" or "tcp").

    A damaged last record (cut short, or a bad checksum with nothing after
    it) is the torn record of a crash mid-write: it is left out and
    described in C{torn} as C{(record number, problem)}.  Damage anywhere
    else raises L{JournalCorrupt}.
    """
    with open(path, "rb") as f:
        data = f.read()
    records = []
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data):
            # Killed between creating the file and writing its magic.
            return records, (0, "empty file") if data else None
        raise JournalCorrupt(path, 0, "not a SimpleStats journal (bad magic)")
    offset = len(MAGIC)
    number = 0
    size = len(data)
    while offset < size:
        number += 1
        if offset + _HEADER.size > size:
            return records, (number, "record header cut short (%d bytes)" % (size - offset,))
        length, crc, kind = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        end = start + length
        if end > size:
            return records, (number, "record cut short (%d of %d bytes)" % (size - start, length))
        payload = data[start:end]
        if zlib.crc32(payload, zlib.crc32(kind)) != crc:
            if end == size:
                return records, (number, "checksum mismatch in the last record")
            raise JournalCorrupt(path, number, "checksum mismatch")
        try:
            records.append(_decode(kind, payload))
        except ValueError as e:
            raise JournalCorrupt(path, number, str(e))
        offset = end
    return records, None


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


def _fsync_directory(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
