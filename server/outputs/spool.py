"""
The queue of one forward destination: every line is appended to a file in
the data directory before it counts as queued (so it survives C{kill -9}),
and the newest part is also held in memory up to a bound; past it, lines are
read back from the file when their turn comes.

Three offsets into the stream of bytes ever queued (they survive restarts):

    delivered <= sent <= end

C{sent} is how far the sender has handed bytes to the transport;
C{delivered} how far they count as received (the sender says when:
L{confirm}); a connection loss sends again from C{delivered} (L{rewind}).
C{delivered} is written to the C{position} file (write, fsync, rename) by
L{commit}; after a restart sending resumes there, so what was sent after
the last commit is sent again: at-least-once.

The stream is cut into segment files C{seg.<offset of their first byte>};
one is appended to, and those wholly delivered are deleted.  The files
together are bounded (C{disk_bytes}): a batch that would go past it is
dropped whole, and counted by the caller.
"""

import json
import os
import re
import tempfile
from collections import deque

from twisted.logger import Logger

from server.durability.datadir import fsync_directory

FORMAT = "simplestats-forward-queue"
VERSION = 1
POSITION = "position"
_SEGMENT = re.compile(r"^seg\.(\d{20})$")
# What one read from the file brings back into memory, at most.
READ_BYTES = 1024 * 1024


def segment_name(offset):
    return "seg.%020d" % (offset,)


class Spool:
    """
    @ivar queued_lines: lines between C{delivered} and C{end}.
    """

    log = Logger()

    def __init__(self, directory, memory_bytes, disk_bytes, clock, segment_bytes=None):
        self.directory = directory
        self.memory_limit = memory_bytes
        self.disk_limit = disk_bytes
        self.clock = clock
        self.segment_bytes = segment_bytes or min(16 << 20, max(64 << 10, disk_bytes // 8))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        # [start offset, size] of each segment file, oldest first.
        self.segments = []
        # Held in memory: [offset, bytes] chunks covering [delivered, held_end).
        self.chunks = deque()
        self.held = 0
        # (end offset, time) of each append: the age of the oldest line.
        self.ages = deque()
        self.committed = None
        self._fd = None
        self._load()

    # -- start-up -------------------------------------------------------------

    def _load(self):
        found = []
        for name in os.listdir(self.directory):
            match = _SEGMENT.match(name)
            if match:
                path = os.path.join(self.directory, name)
                found.append([int(match.group(1)), os.path.getsize(path),
                              os.path.getmtime(path)])
            elif name.endswith(".tmp"):
                os.unlink(os.path.join(self.directory, name))
        found.sort()
        # Keep the run of segments that follow one another from the last one
        # back; an older one that does not join is left over from a crash
        # between two deletions (everything in it was delivered).
        run = []
        for start, size, mtime in reversed(found):
            if run and start + size != run[-1][0]:
                os.unlink(self._path(start))
                continue
            run.append([start, size, mtime])
        run.reverse()
        if run:
            self._trim_torn(run[-1])
        self.segments = [[start, size] for start, size, _ in run]
        start = self.segments[0][0] if self.segments else 0
        self.end = self.segments[-1][0] + self.segments[-1][1] if self.segments else 0
        delivered = self._read_position()
        if delivered is None or delivered < start:
            delivered = start
        self.delivered = self.sent = self.held_end = min(delivered, self.end)
        self.committed = self.delivered
        self.queued_lines = self._count_lines(self.delivered, self.end)
        for (seg_start, size, mtime) in run:
            if seg_start + size > self.delivered:
                self.ages.append((seg_start + size, mtime))
        if not self.segments:
            self._open_segment(self.end)
        else:
            self._fd = os.open(self._path(self.segments[-1][0]), os.O_WRONLY | os.O_APPEND)

    def _trim_torn(self, last):
        """
        Cut a last line the process was killed in the middle of writing.
        """
        start, size, _ = last
        if not size:
            return
        path = self._path(start)
        with open(path, "rb") as f:
            f.seek(max(0, size - READ_BYTES))
            tail = f.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        keep = size - len(tail) + cut + 1 if cut >= 0 else max(0, size - len(tail))
        self.log.warn("forward queue {path}: dropped a torn last line ({bytes} bytes): the"
                      " process stopped while writing it", path=path, bytes=size - keep)
        os.truncate(path, keep)
        last[1] = keep

    def _read_position(self):
        path = os.path.join(self.directory, POSITION)
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            self.log.warn("forward queue position {path} unreadable ({error}): sending the whole"
                          " queue file again", path=path, error=e)
            return None
        if (not isinstance(data, dict) or data.get("format") != FORMAT
                or data.get("version") != VERSION or not isinstance(data.get("delivered"), int)):
            self.log.warn("forward queue position {path} is not a version {version} position:"
                          " sending the whole queue file again", path=path, version=VERSION)
            return None
        return data["delivered"]

    def _count_lines(self, first, last):
        count = 0
        position = first
        while position < last:
            data = self._read(position, min(READ_BYTES, last - position))
            if not data:
                break
            count += data.count(b"\n")
            position += len(data)
        return count

    # -- files ----------------------------------------------------------------

    def _path(self, start):
        return os.path.join(self.directory, segment_name(start))

    def _open_segment(self, start):
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self._path(start), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.segments.append([start, 0])

    def _read(self, position, size):
        """
        Up to C{size} bytes of the stream from C{position} (within one
        segment).
        """
        for start, length in self.segments:
            if start <= position < start + length:
                fd = os.open(self._path(start), os.O_RDONLY)
                try:
                    return os.pread(fd, min(size, start + length - position), position - start)
                finally:
                    os.close(fd)
        return b""

    @property
    def disk_bytes(self):
        return self.end - self.segments[0][0] if self.segments else 0

    # -- the producer's side ---------------------------------------------------

    def append(self, data, lines):
        """
        Queue C{data} (C{lines} whole lines).  Returns False when it does
        not fit under the disk bound (nothing is queued).

        @raise OSError: the file could not be written (nothing is queued).
        """
        if self.disk_bytes + len(data) > self.disk_limit:
            return False
        if self.segments[-1][1] >= self.segment_bytes:
            self._open_segment(self.end)
        view = memoryview(data)
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, view[written:])
        except OSError:
            if written:
                # A part went in: cut it off again, so the file holds whole batches.
                os.ftruncate(self._fd, self.segments[-1][1])
            raise
        offset = self.end
        self.segments[-1][1] += len(data)
        self.end += len(data)
        self.queued_lines += lines
        if self.held_end == offset and self.held + len(data) <= self.memory_limit:
            self.chunks.append([offset, bytes(data)])
            self.held += len(data)
            self.held_end = self.end
        now = self.clock.seconds()
        if self.ages and self.ages[-1][1] == now:
            self.ages[-1] = (self.end, now)
        else:
            self.ages.append((self.end, now))
        return True

    # -- the sender's side ----------------------------------------------------

    def peek(self, size, whole_lines=False):
        """
        Up to C{size} bytes from C{sent} (read back from the file into
        memory when they are not held); with C{whole_lines} cut after the
        last newline.  Empty when everything was sent.
        """
        if self.sent >= self.end:
            return b""
        if self.sent >= self.held_end:
            self._refill()
        # Successive chunks (one per queue write) make one write, up to size.
        parts = []
        position = self.sent
        need = size
        for offset, data in self.chunks:
            if offset + len(data) <= position:
                continue
            part = data[position - offset:position - offset + need]
            parts.append(part)
            position += len(part)
            need -= len(part)
            if need <= 0:
                break
        out = parts[0] if len(parts) == 1 else b"".join(parts)
        if whole_lines and out and not out.endswith(b"\n"):
            cut = out.rfind(b"\n")
            out = out[:cut + 1] if cut >= 0 else b""
        return out

    def _refill(self):
        room = max(self.memory_limit - self.held, 0)
        # Never stall: one read is allowed past the memory bound.
        size = min(READ_BYTES, max(room, 64 << 10), self.end - self.held_end)
        data = self._read(self.held_end, size)
        if not data:
            return
        if self.held_end + len(data) < self.end:
            cut = data.rfind(b"\n")
            if cut >= 0:
                data = data[:cut + 1]
        self.chunks.append([self.held_end, data])
        self.held += len(data)
        self.held_end += len(data)

    def mark_sent(self, size):
        self.sent += size

    def confirm(self, offset):
        """
        What was sent up to C{offset} was received.
        """
        offset = min(offset, self.sent)
        if offset <= self.delivered:
            return
        chunks = self.chunks
        lines = 0
        position = self.delivered
        while chunks and position < offset:
            start, data = chunks[0]
            stop = min(offset, start + len(data))
            lines += data.count(b"\n", position - start, stop - start)
            position = stop
            if stop == start + len(data):
                chunks.popleft()
                self.held -= len(data)
        self.queued_lines -= lines
        self.delivered = offset
        ages = self.ages
        while ages and ages[0][0] <= offset:
            ages.popleft()

    def rewind(self):
        """
        Send again from C{delivered} (the connection was lost).
        """
        self.sent = self.delivered

    def oldest_age(self, now):
        """
        Seconds since the oldest line not yet delivered was queued, or None.
        """
        if self.delivered >= self.end or not self.ages:
            return None
        return max(0.0, now - self.ages[0][1])

    # -- bookkeeping ----------------------------------------------------------

    def commit_job(self):
        """
        A function to run off the reactor thread that makes the files and
        C{delivered} durable (fsync, then the position file written, synced
        and renamed into place); L{None} when nothing changed.  Call
        L{committed_to} with its result on the reactor thread after.
        """
        if self.delivered == self.committed:
            return None
        delivered = self.delivered
        directory = self.directory
        segment = self._path(self.segments[-1][0])

        def job():
            fd = os.open(segment, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            write_position(directory, delivered)
            return delivered

        return job

    def committed_to(self, delivered):
        """
        C{delivered} is on disk: delete the segments wholly before it.
        """
        self.committed = delivered
        while len(self.segments) > 1 and sum(self.segments[0]) <= delivered:
            start, _ = self.segments.pop(0)
            try:
                os.unlink(self._path(start))
            except FileNotFoundError:
                pass
        if (len(self.segments) == 1 and self.end == delivered
                and self.segments[0][1] >= self.segment_bytes):
            # All of it delivered: start a fresh file so this one can go.
            self._open_segment(self.end)
            start, _ = self.segments.pop(0)
            os.unlink(self._path(start))

    def commit(self):
        """
        L{commit_job} and L{committed_to} on this thread (at shut-down).
        """
        job = self.commit_job()
        if job is not None:
            self.committed_to(job())

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def write_position(directory, delivered):
    path = os.path.join(directory, POSITION)
    # A name of its own: the shut-down's commit may meet one in a thread.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=POSITION + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump({"format": FORMAT, "version": VERSION, "delivered": delivered}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_directory(directory)
