"""
The API token on disk: read from C{--api-token-file}, or generated once into
C{<data-dir>/api-token} (mode 0600) and reused by every later start, so that
clients keep working across restarts and the token never has to sit on a
command line, where every user of the machine reads it in
C{/proc/PID/cmdline}.

A generated token file that others may read is refused, as ssh refuses a
private key anyone else can read: the token in it must be taken as known.
"""

import dataclasses
import os
import secrets
import stat
import sys

from twisted.logger import Logger

from server.durability.datadir import fsync_directory
from server.web.auth import is_loopback, reads_need_token

log = Logger()

TOKEN_NAME = "api-token"
MIN_LENGTH = 16
PRIVATE = 0o600


class TokenError(Exception):
    """
    A token file cannot be used; the message names the file and the fix.
    """


def parse_token(text, path):
    """
    The token in C{text} (a file's contents), one trailing newline taken off.

    @raise TokenError: empty, too short, or holding spaces or control
        characters (a header could not carry it as written).
    """
    token = text[:-1] if text.endswith("\n") else text
    token = token[:-1] if token.endswith("\r") else token
    if not token:
        raise TokenError("API token file %s is empty" % (path,))
    if any(c.isspace() or not c.isprintable() for c in token):
        raise TokenError("API token file %s holds spaces, several lines or control characters;"
                         " it must hold the token alone on one line" % (path,))
    if len(token) < MIN_LENGTH:
        raise TokenError("the token in %s is %d characters; it must be at least %d"
                         % (path, len(token), MIN_LENGTH))
    return token


def _read(fd, path):
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
        if sum(map(len, chunks)) > 65536:
            raise TokenError("API token file %s is larger than 64 KiB; it must hold the token"
                             " alone" % (path,))
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise TokenError("API token file %s is not UTF-8 text" % (path,))


def read_token_file(path):
    """
    The token in the file at C{path} (C{--api-token-file}), and whether
    users other than its owner may read it (a warning for the caller: a
    mounted secret is often 0644 inside a container).

    @raise TokenError: naming the file when it cannot be read or its token
        is not usable.
    """
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise TokenError("API token file %s is not a regular file" % (path,))
            text = _read(f.fileno(), path)
    except OSError as e:
        raise TokenError("cannot read the API token file %s: %s" % (path, e.strerror or e))
    return parse_token(text, path), bool(info.st_mode & 0o077)


def generated_token(directory):
    """
    The token kept in C{directory}: the one in its C{api-token} file, or a
    new one written there first.

    @return: C{(token, path, created)}.
    @raise TokenError: when the file is not a regular file of ours that
        only its owner may read, or cannot be read or written.
    """
    path = os.path.join(directory, TOKEN_NAME)
    try:
        os.makedirs(directory, exist_ok=True)
        try:
            return _existing(path), path, False
        except FileNotFoundError:
            pass
        token = secrets.token_urlsafe(24)
        if _create(path, token):
            return token, path, True
        # Another process made it first: theirs holds.
        return _existing(path), path, False
    except OSError as e:
        raise TokenError("cannot keep the API token in %s: %s" % (path, e.strerror or e))


def _existing(path):
    """
    @raise FileNotFoundError: when there is no file yet.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        if os.path.islink(path):
            raise TokenError("API token file %s is a symbolic link; it must be a regular file"
                             " (remove it and a new token is generated)" % (path,))
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TokenError("API token file %s is not a regular file (remove it and a new"
                             " token is generated)" % (path,))
        if info.st_uid != os.geteuid():
            raise TokenError("API token file %s belongs to uid %d, not to this server's uid %d;"
                             " chown it or remove it" % (path, info.st_uid, os.geteuid()))
        if info.st_mode & 0o077:
            raise TokenError("API token file %s may be read by other users (mode %04o); run"
                             " chmod 600 %s, or remove it to have a new token generated, since"
                             " the old one may be known" % (path, stat.S_IMODE(info.st_mode), path))
        text = _read(fd, path)
    finally:
        os.close(fd)
    return parse_token(text, path)


def _create(path, token):
    """
    Write C{token} as C{path}, whole or not at all: a temporary file (mode
    0600 from its creation on), fsynced, then linked into place, which
    fails if the name exists.  False when another process got there first.
    """
    directory = os.path.dirname(path)
    temp = "%s.%d.tmp" % (path, os.getpid())
    try:
        os.unlink(temp)
    except FileNotFoundError:
        pass
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE)
    try:
        os.fchmod(fd, PRIVATE)  # exactly 0600, whatever the umask
        os.write(fd, token.encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(temp)
    fsync_directory(directory)
    return True


def visible_on_command_line(token, cmdline="/proc/self/cmdline", argv=()):
    """
    Whether C{token} is in this process's command line, which every user of
    the machine may read (C{ps}, C{/proc/PID/cmdline}).  Where there is no
    C{/proc}, C{argv} is looked at instead.
    """
    try:
        with open(cmdline, "rb") as f:
            text = f.read()
    except OSError:
        text = "\0".join(argv).encode("utf-8", "replace")
    return bool(token) and token.encode("utf-8", "replace") in text


def resolve_token(settings, cmdline="/proc/self/cmdline"):
    """
    C{settings} with the API token the server runs with: the one given (a
    warning when it is on the command line), the one in C{--api-token-file},
    or, when one is needed (a bind beyond loopback, or reads needing it),
    the one kept in the data directory.

    @raise TokenError: naming a token file that cannot be used.
    """
    beyond_loopback = not is_loopback(settings.bind)
    reads = reads_need_token(settings)
    if settings.api_token_file:
        token, shared = read_token_file(settings.api_token_file)
        settings = dataclasses.replace(settings, api_token=token)
        log.info("API token read from {path}", path=settings.api_token_file)
        if shared:
            log.warn("API token file {path} may be read by other users; chmod 600 it",
                     path=settings.api_token_file)
    elif settings.api_token:
        if visible_on_command_line(settings.api_token, cmdline, sys.argv):
            log.warn("the API token is on the command line, where every user of this machine"
                     " reads it (ps, /proc/PID/cmdline); use --api-token-file or the"
                     " SIMPLESTATS_API_TOKEN environment variable instead")
    elif beyond_loopback or reads:
        token, path, created = generated_token(os.path.abspath(settings.data_dir))
        settings = dataclasses.replace(settings, api_token=token)
        if created:
            # Shown this once, so the operator sees it; later starts name the file.
            log.warn("binding to {bind}: generated the API token {token}, kept in {path} (mode"
                     " 0600) for later starts; {what} need it in the X-SimpleStats-Token header"
                     " or as Authorization: Bearer", bind=settings.bind, token=token, path=path,
                     what="reads, imports and admin calls" if reads else "imports and admin calls")
        else:
            log.info("binding to {bind}: the API token is the one kept in {path}",
                     bind=settings.bind, path=path)
    if beyond_loopback and not reads:
        log.warn("binding to {bind} with --read-token off: whoever reaches the HTTP port reads"
                 " every series and may export them all", bind=settings.bind)
    return settings
