"""Files that hold customer data, opened in the one place that knows how.

segmetro runs as root under cron on shared hosts. What it writes (rejects, events, state, the
emulator's store) is created 0600 with ``O_EXCL``, never through a symlink someone else planted
(``O_NOFOLLOW``), and never over an input. An existing file is written only when it is a regular
file owned by the running user, and its mode is left alone. Special files (``/dev/null``, a
terminal, a pipe, ``/dev/stdout``) are written as they are: no fsync, no chmod. Atomic
replacements go through ``tempfile.mkstemp`` in the same directory.
"""

from __future__ import annotations

import os
import stat
import tempfile
from typing import Callable

from segmetro.status import ConfigError

_FLAGS = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class UnsafePath(ConfigError):
    """An output path segmetro will not write (exit 2): the message says why."""


def _special(mode: int) -> bool:
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def open_private(path: str, append: bool, what: str = "output") -> tuple[int, bool]:
    """A descriptor for writing ``path`` and whether it is a regular file (fsync makes sense).

    New files: created 0600, exclusively. Existing: a regular file of ours (appended to, or
    truncated when ``append`` is false) or a special file. A symlink is followed only to a
    special file or to this process's own descriptors (``/dev/stdout`` redirected by a shell)."""
    mode_flags = os.O_APPEND if append else os.O_TRUNC
    try:
        return os.open(path, _FLAGS | mode_flags | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600), True
    except FileExistsError:
        pass
    except OSError as error:
        raise UnsafePath(f"{what} {path}: {error.strerror}") from None
    if os.path.islink(path):
        target = os.path.realpath(path)
        try:
            info = os.stat(path)
        except OSError:
            raise UnsafePath(f"{what} {path} is a dangling symlink; segmetro does not write "
                             "through a symlink it did not make") from None
        own_descriptor = target.startswith("/proc/self/fd/") or os.readlink(path).startswith(
            "/proc/self/fd/")
        if not (_special(info.st_mode) or own_descriptor):
            raise UnsafePath(f"{what} {path} is a symlink (to {target}); segmetro does not "
                             "write customer data through a symlink it did not make: name the "
                             "file itself")
        fd = os.open(path, _FLAGS | (os.O_APPEND if append else 0))
        return fd, False
    try:
        fd = os.open(path, _FLAGS | mode_flags | _NOFOLLOW)
    except OSError as error:
        raise UnsafePath(f"{what} {path}: {error.strerror}") from None
    info = os.fstat(fd)
    if _special(info.st_mode):
        return fd, False
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafePath(f"{what} {path} is not a regular file")
    if info.st_uid != os.geteuid():
        os.close(fd)
        raise UnsafePath(f"{what} {path} belongs to another user (uid {info.st_uid}); "
                         "segmetro writes only files of its own user")
    return fd, True


def check_new_or_own(path: str, what: str) -> None:
    """Fail early (before reading anything) when ``open_private`` would refuse ``path``."""
    if not os.path.lexists(path):
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
            raise UnsafePath(f"{what} {path}: the directory {directory} does not exist or "
                             "cannot be written")
        return
    fd, _regular = open_private(path, append=True, what=what)
    os.close(fd)


def write_all(write: Callable[[memoryview], int], data: bytes) -> None:
    """Every byte of ``data`` through ``write`` (a file's or a pipe's): a signal can cut a write
    to a pipe short, and the write says so only in the count it returns. A failed write's
    OSError carries ``written``, how many bytes of ``data`` went out before it."""
    view = memoryview(data)
    written = 0
    try:
        while written < len(view):
            written += write(view[written:])
    except OSError as error:
        error.written = written
        raise


def write_atomically(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data``: a private temp file in the same directory, fsync, rename,
    fsync of the directory. A symlink at ``path`` is replaced, never followed."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".segmetro-", suffix=".tmp", dir=directory)
    try:
        with open(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    fsync_dir(directory)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path: str, what: str = "--state") -> None:
    """Create ``path`` 0700, or check an existing one is ours and closed to others."""
    try:
        os.mkdir(path, 0o700)
        return
    except FileExistsError:
        pass
    except OSError as error:
        raise UnsafePath(f"{what} {path}: {error.strerror}") from None
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        info = os.stat(path)
        if os.lstat(path).st_uid not in (0, os.geteuid()):
            raise UnsafePath(f"{what} {path} is a symlink made by another user")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(f"{what} {path} is not a directory")
    if info.st_uid != os.geteuid():
        raise UnsafePath(f"{what} {path} belongs to another user (uid {info.st_uid}): its "
                         "files could be replaced under segmetro; use a directory of your own")
    if info.st_mode & 0o022:
        raise UnsafePath(f"{what} {path} can be written by group or others (mode "
                         f"{stat.S_IMODE(info.st_mode):04o}): anyone could plant files there; "
                         f"chmod go-w {path}, or use a directory of your own")


def identity(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISREG(info.st_mode) else None


def check_not_input(option: str, path: str, inputs) -> None:
    """An output that names an input (same device and inode, or the same resolved path) would
    destroy it: a configuration error before anything is read."""
    output = identity(path)
    resolved = os.path.realpath(path)
    for source in inputs:
        if source.identity is None:
            continue
        if output == source.identity or resolved == os.path.realpath(source.path):
            raise ConfigError(f"{option} {path} is the input {source.path}: writing it would "
                              "destroy what is being read; name another file")
