"""
One server per data directory: an exclusive lock on a file in it.

Two servers on one directory would each rotate and remove the other's
journal files.  The lock (C{flock}) belongs to the open file, so the kernel
lets it go when the process ends, C{kill -9} included: a stale lock file
never keeps a server from starting.  The file holds the PID of the server
that has the lock, to name it.
"""

import fcntl
import os

LOCK_NAME = "simplestats.lock"
# Every file the server writes in its data directory: its owner's alone.
PRIVATE = 0o600


def fsync_directory(directory):
    """
    Make a file's creation, rename or removal in C{directory} durable.
    """
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_private_file(path, flags):
    """
    An C{open()} opener: C{path} made anew (a leftover is removed, so no
    one holds it open already), mode 0600 from its first byte, whatever
    the umask.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, flags | os.O_EXCL, PRIVATE)
    try:
        os.fchmod(fd, PRIVATE)
    except OSError:
        os.close(fd)
        raise
    return fd


class DataDirInUse(Exception):
    """
    Another process holds the data directory's lock.
    """


class DataDirLock:
    """
    Holds the lock on C{directory} from construction until L{release}.

    @raise DataDirInUse: naming the PID of the server that holds it.
    @raise OSError: when the lock file cannot be opened.
    """

    def __init__(self, directory, pid=None):
        self.path = os.path.join(directory, LOCK_NAME)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE)
        try:
            os.fchmod(fd, PRIVATE)  # not 0644 from an older version
        except OSError:
            os.close(fd)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUse(
                "data directory %s is in use by another SimpleStats server (pid %s holds %s);"
                " stop it or choose another --data-dir" % (directory, holder, self.path))
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, b"%d\n" % (os.getpid() if pid is None else pid,), 0)
        self._fd = fd

    def release(self):
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
