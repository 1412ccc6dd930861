"""
The append-only journal of accepted points since the last snapshot.

Each record is one line: the CRC-32 of the payload in 8 hex digits, a space,
the payload (compact JSON), a newline.  Records go to the file with a plain
C{write} before the TCP answer goes out, so a killed process (even C{kill
-9}) loses nothing that was acknowledged; C{fsync} runs on an interval (or
on every write) against power loss.

Journal files are numbered (C{journal.000042.log}).  A snapshot rotates to a
new number first and records it; once the snapshot is safely on disk the
older files are removed.  At start-up the files from the snapshot's number
on are replayed in order.
"""

import json
import os
import re
import zlib

from twisted.logger import Logger

_NAME = re.compile(r"^journal\.(\d{6,})\.log$")


class JournalCorrupt(Exception):
    """
    A journal file holds a record that is neither valid nor the torn last
    record of a crash.
    """

    def __init__(self, path, line, problem):
        Exception.__init__(self, "%s line %d: %s" % (path, line, problem))
        self.path = path
        self.line = line


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


def encode_record(payload):
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    return b"%08x %s\n" % (zlib.crc32(data), data)


class Journal:
    """
    Appends records to the current journal file.

    @ivar pending: encoded records not yet written.
    """

    log = Logger()

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
        fd = os.open(journal_path(self.directory, seq),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _fsync_directory(self.directory)
        return fd

    def append(self, payload):
        """
        Queue one record; it reaches the file at the next L{flush}.
        """
        record = encode_record(payload)
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
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
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
        os.close(self._fd)
        self.seq += 1
        self._fd = self._open(self.seq)
        return self.seq

    def remove_before(self, seq):
        for number, path in journal_files(self.directory):
            if number < seq:
                os.remove(path)

    def close(self):
        self.flush()
        self.sync()
        os.close(self._fd)


def read_journal(path):
    """
    Yield the payloads of one journal file in order.

    A damaged last line (no newline, bad checksum or bad JSON) is the torn
    record of a crash mid-write: it is dropped and reported through the
    C{torn} attribute of the returned reader.  Damage anywhere else raises
    L{JournalCorrupt}.
    """
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    # After the final newline split() leaves b"": a complete file.
    tail = lines.pop()
    records = []
    torn = None
    for number, line in enumerate(lines, 1):
        problem = _check(line)
        if problem is None:
            records.append(json.loads(line[9:]))
        elif number == len(lines) and not tail:
            torn = (number, problem)
        else:
            raise JournalCorrupt(path, number, problem)
    if tail:
        torn = (len(lines) + 1, "unterminated last record (%d bytes)" % (len(tail),))
    return records, torn


def _check(line):
    if len(line) < 10 or line[8:9] != b" ":
        return "not a journal record"
    try:
        crc = int(line[:8], 16)
    except ValueError:
        return "bad checksum field"
    if zlib.crc32(line[9:]) != crc:
        return "checksum mismatch"
    try:
        json.loads(line[9:])
    except ValueError:
        return "payload is not JSON"
    return None


def _fsync_directory(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
