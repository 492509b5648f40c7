"""The rejects file: one JSON line per rejected record, with its place, stage and reason.

Created only when something is rejected, private (it holds customer data: see ``files.py``). An
existing file is appended to, never overwritten, and the summary says so. The default name is new
each run and created exclusively, so nothing planted at a predictable name is ever written.
"""

from __future__ import annotations

import os
import stat
import time

import orjson

from segmetro.files import open_private
from segmetro.pipeline import Outcome
from segmetro.redact import scrub
from segmetro.sources import REJECTS_PREFIX


def default_path(directory: str = "") -> str:
    """A new name per run, so one run's rejects never overwrite another's."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return os.path.join(directory, f"{REJECTS_PREFIX}{stamp}.jsonl")


def _create_fresh(path: str) -> tuple[int, str]:
    """Create a new file at ``path`` or, if anything is there, at ``path`` with a suffix."""
    stem = path[:-len(".jsonl")]
    for attempt in range(100):
        candidate = path if attempt == 0 else f"{stem}-{os.getpid()}-{attempt}.jsonl"
        try:
            return os.open(candidate, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL |
                           getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0),
                           0o600), candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}: no free name for the rejects file")


class RejectsFile:
    def __init__(self, path: str, fresh: bool = False):
        """``fresh``: a default name, created new (another name if taken), never appended to."""
        self.path = path
        self.fresh = fresh
        self.appended = not fresh and os.path.exists(path)
        self.written = 0
        self.regular = True  # a regular file (fsync makes sense), not /dev/null or a pipe
        self._fd: int | None = None
        self.fingerprints: dict[str, str] = {}  # file -> content fingerprint, with --state
        self._already: set[tuple] = set()  # rejections an interrupted run already wrote

    def load_written(self, resume_from: dict[str, int]) -> None:
        """Remember what earlier runs wrote for records after each fingerprint's resume point,
        so a resumed run writes each rejected record once. ``resume_from``: fingerprint -> seq."""
        if not os.path.isfile(self.path) or not resume_from:
            return
        self._trim_partial_line()
        marker = b'"fingerprint":"'
        with open(self.path, "rb") as handle:
            for line in handle:
                # Months of a nightly job's rejects: look at the fingerprint before parsing.
                at = line.rfind(marker)
                if at < 0 or line[at + 15:at + 79].decode("ascii", "replace") not in resume_from:
                    continue
                try:
                    entry = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                fp = entry.get("fingerprint")
                if fp in resume_from and entry.get("seq", -1) >= resume_from[fp]:
                    self._already.add((fp, entry["seq"], entry.get("mapping"), entry["stage"]))

    def _trim_partial_line(self) -> None:
        """A line cut off by a crash would corrupt the next one appended: drop it."""
        try:
            fd = os.open(self.path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return  # a symlink or a special file: left alone (open_private judges it)
        if not stat.S_ISREG(os.fstat(fd).st_mode) or os.fstat(fd).st_uid != os.geteuid():
            os.close(fd)
            return
        with open(fd, "rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if not size:
                return
            handle.seek(max(0, size - 65536))
            tail = handle.read()
            if tail.endswith(b"\n"):
                return
            cut = tail.rfind(b"\n")
            handle.truncate(size - len(tail) + cut + 1 if cut >= 0 else
                            (0 if size <= 65536 else size))

    def write(self, outcome: Outcome, stage: str | None = None, code: str | None = None,
              reason: str | None = None) -> None:
        """Write a rejection; ``stage``/``code``/``reason`` override the outcome's (api stage)."""
        record = outcome.record
        stage = stage or outcome.stage
        fp = self.fingerprints.get(record.file)
        if fp is not None and self._already and \
                (fp, record.seq, outcome.mapping, stage) in self._already:
            return
        origin = record.origin
        entry = {
            "file": record.file if origin is None else origin[0],
            "line": record.line if origin is None else origin[1],
            "seq": record.seq,
            "stage": stage,
            "code": code or outcome.code,
            "reason": scrub(reason or outcome.reason or ""),
            "mapping": outcome.mapping,
            "record": record.data if record.data is not None else record.raw,
        }
        if outcome.event is not None:
            entry["event"] = outcome.event
        if origin is not None:
            entry["replayed_from"] = f"{record.file}:{record.line}"
        if fp is not None:
            entry["fingerprint"] = fp
        if self._fd is None:
            self._open()
        line = orjson.dumps(entry) + b"\n"
        written = os.write(self._fd, line)
        while written < len(line):  # a short write (a full pipe, a signal): write the rest
            written += os.write(self._fd, line[written:])
        self.written += 1

    def _open(self) -> None:
        if self.fresh:
            self._fd, self.path = _create_fresh(self.path)
        else:
            self._fd, self.regular = open_private(self.path, append=True, what="--rejects")
            self.appended = self.appended and self.regular

    def flush(self) -> None:
        """Make what was written durable (before a checkpoint says it was written)."""
        if self._fd is not None and self.regular:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                if self.regular:
                    os.fsync(fd)
            finally:
                os.close(fd)

    @property
    def used(self) -> bool:
        return self.written > 0
