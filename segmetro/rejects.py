"""The rejects file: one JSON line per rejected record, with its place, stage and reason.

Created only when something is rejected, with permissions 0600 (it holds customer data). An
existing file is appended to, never overwritten, and the summary says so.
"""

from __future__ import annotations

import os
import time

import orjson

from segmetro.pipeline import Outcome


def default_path(directory: str = "") -> str:
    """A new name per run, so one run's rejects never overwrite another's."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = os.path.join(directory, f"segmetro-rejects-{stamp}.jsonl")
    if os.path.exists(path):
        path = os.path.join(directory, f"segmetro-rejects-{stamp}-{os.getpid()}.jsonl")
    return path


class RejectsFile:
    def __init__(self, path: str):
        self.path = path
        self.appended = os.path.exists(path)
        self.written = 0
        self._fd: int | None = None
        self.fingerprints: dict[str, str] = {}  # file -> content fingerprint, with --state
        self._already: set[tuple] = set()  # rejections an interrupted run already wrote

    def load_written(self, resume_from: dict[str, int]) -> None:
        """Remember what earlier runs wrote for records after each fingerprint's resume point,
        so a resumed run writes each rejected record once. ``resume_from``: fingerprint -> seq."""
        if not os.path.exists(self.path) or not resume_from:
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
        with open(self.path, "rb+") as handle:
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
        entry = {
            "file": record.file,
            "line": record.line,
            "seq": record.seq,
            "stage": stage,
            "code": code or outcome.code,
            "reason": reason or outcome.reason,
            "mapping": outcome.mapping,
            "record": record.data if record.data is not None else record.raw,
        }
        if outcome.event is not None:
            entry["event"] = outcome.event
        if fp is not None:
            entry["fingerprint"] = fp
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.fchmod(self._fd, 0o600)
        os.write(self._fd, orjson.dumps(entry) + b"\n")
        self.written += 1

    def flush(self) -> None:
        """Make what was written durable (before a checkpoint says it was written)."""
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    @property
    def used(self) -> bool:
        return self.written > 0
