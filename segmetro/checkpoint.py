"""Durable progress for cron-driven backfills, and the run lock.

A state directory holds:
- ``state.json``: a snapshot of progress per input file, known by the SHA-256 of its content (a
  renamed or re-downloaded file is recognised, a changed one is noticed), plus the mapping's hash
  and the destination it was made for. Written atomically: temp file, fsync, rename, fsync dir.
- ``journal.jsonl``: each advance of a file's settled prefix since the snapshot, one small line
  appended as it happens. A killed process loses nothing the kernel has (write() survives
  ``kill -9``); the snapshot folds the journal in and is fsynced every few seconds and at exit.
- ``rejects.jsonl``: the rejects of every run with this state (appended).
- ``lock``: an flock held for the run, with the holder's PID. The kernel drops the lock when the
  holder dies, so a stale lock is simply taken over.

Progress advances only over the contiguous prefix of records that are settled: acknowledged by
Metronome, or rejected and written to the rejects file, or skipped (by the triggers, or as an
exact repeat of an event the run already produced).

The state also records how transaction ids are made. A mapping that makes them differently would
send every record again under new ids, and Metronome would bill each twice: such a run is refused,
``--restart`` included, unless ``--allow-new-transaction-ids`` says that is meant.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterable, Iterator

import orjson

from segmetro.files import open_private, private_dir, write_all, write_atomically
from segmetro.pipeline import EVENT, Outcome, Span
from segmetro.rejects import RejectsFile
from segmetro.sources import STDIN, InputFile, Position, SegmentRecord, is_object
from segmetro.status import ConfigError, ExitStatus, SegmetroError

if TYPE_CHECKING:
    from segmetro.run import Flow

STATE_VERSION = 2
_HASH_CHUNK = 1 << 20


class StateError(ConfigError):
    """A state directory that cannot be used as asked (message says what to do; exit 2)."""


class LockHeld(SegmetroError):
    """Another run holds the lock (exit 4: cron overlap, nothing was done)."""

    status = ExitStatus.LOCKED


def fingerprint(source: InputFile) -> str:
    """How the state knows an input: a file by the SHA-256 of its content, an object in a store
    by its URL, ETag or generation, and size (no second read; a new version is a new key)."""
    if is_object(source):
        identity = f"object\n{source.path}\n{source.version}\n{source.size}"
        return "object:" + hashlib.sha256(identity.encode()).hexdigest()
    digest = hashlib.sha256()
    with open(source.path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class RunLock:
    def __init__(self, directory: str):
        self.path = os.path.join(directory, "lock")
        self._fd: int | None = None
        self.took_over: str | None = None  # PID of a dead holder whose lock file was left

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) |
                         getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as error:
            raise StateError(f"{self.path}: {error.strerror} (a symlink planted there is "
                             "never followed)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockHeld(f"another segmetro run holds {self.path} (PID {holder.split()[0]}"
                               f"); not starting a second one. If no such process is running, "
                               "the lock frees itself.") from None
            raise
        previous = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if previous:
            self.took_over = previous.split()[0]
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
                  .encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None


@dataclass
class FileProgress:
    """One input file's settled prefix: resume at ``position``; ``done`` when all is settled.
    ``window`` is the --since/--until it was settled under (events outside it were settled
    without being sent), in epoch ms, None for no bound."""

    path: str
    position: Position = field(default_factory=Position)
    done: bool = False
    window: Span = field(default_factory=Span)

    def as_json(self) -> dict:
        return {"path": self.path, "line": self.position.line,
                "line_seq": self.position.line_seq, "seq": self.position.seq, "done": self.done,
                "since": self.window.since_ms, "until": self.window.until_ms}

    @classmethod
    def from_json(cls, data: dict) -> "FileProgress":
        return cls(data["path"], Position(data["line"], data["line_seq"], data["seq"]),
                   data["done"], Span(data.get("since"), data.get("until")))


class State:
    """Progress of every file this state has seen, with snapshot + journal persistence."""

    def __init__(self, directory: str, mapping_hash: str | None, destination: str | None,
                 transaction_id_rule: str = ""):
        self.directory = directory
        self.mapping_hash = mapping_hash
        self.destination = destination
        self.transaction_id_rule = transaction_id_rule
        self.files: dict[str, FileProgress] = {}  # fingerprint -> progress
        self.snapshot_path = os.path.join(directory, "state.json")
        self.journal_path = os.path.join(directory, "journal.jsonl")
        self._journal_fd: int | None = None

    @property
    def rejects_path(self) -> str:
        return os.path.join(self.directory, "rejects.jsonl")

    @property
    def last_run_path(self) -> str:
        return os.path.join(self.directory, "last-run.json")

    def save_last_run(self, summary: dict) -> None:
        """The summary of the run that just ended, for ``segmetro status``."""
        payload = {"ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **summary}
        write_atomically(self.last_run_path, orjson.dumps(payload, option=orjson.OPT_INDENT_2))

    def _read_snapshot(self) -> dict | None:
        try:
            fd = os.open(self.snapshot_path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StateError(f"{self.snapshot_path}: {error.strerror}") from None
        with open(fd, "rb") as handle:
            try:
                return orjson.loads(handle.read())
            except orjson.JSONDecodeError:
                return {}

    def load(self, restart: bool, allow_new_transaction_ids: bool = False) -> None:
        snapshot = self._read_snapshot()
        if snapshot and not allow_new_transaction_ids:
            self._check_transaction_ids(snapshot)
        if restart:
            for path in (self.snapshot_path, self.journal_path, self.rejects_path):
                if os.path.lexists(path):
                    os.replace(path, f"{path}.before-restart")
            return
        if snapshot is not None:
            if not snapshot:
                raise StateError(f"{self.snapshot_path} is not valid JSON; use --restart "
                                 "to start over")
            self._check(snapshot)
            self.files = {fp: FileProgress.from_json(data)
                          for fp, data in snapshot.get("files", {}).items()}
        if os.path.isfile(self.journal_path) and not os.path.islink(self.journal_path):
            with open(self.journal_path, "rb") as handle:
                for line in handle:
                    try:
                        entry = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        break  # a line cut off by a crash: everything before it counts
                    self._apply(entry["fp"], FileProgress.from_json(entry))

    def _check_transaction_ids(self, snapshot: dict) -> None:
        before = snapshot.get("transaction_id_rule")
        if before is None or before == self.transaction_id_rule:
            return
        raise StateError(
            f"the state in {self.directory} was made with transaction_id {before}, and this "
            f"mapping makes it as {self.transaction_id_rule}: every record sent before would be "
            "sent again under a new id, and Metronome would bill each of them twice. Keep the "
            "transaction_id of the mapping that made the state. Only if no event of that state "
            "reached Metronome (or billing twice is wanted), add --allow-new-transaction-ids "
            "with --restart")

    def _check(self, snapshot: dict) -> None:
        if snapshot.get("version") != STATE_VERSION:
            raise StateError(f"{self.snapshot_path} was written by another version of "
                             "segmetro; use --restart to start over")
        if self.mapping_hash is not None and snapshot.get("mapping_hash") != self.mapping_hash:
            raise StateError(f"the state in {self.directory} was made with another mapping "
                             f"({snapshot.get('mapping', '?')}); resuming would mix two "
                             "mappings. Use the same --mapping, another --state, or --restart "
                             "to start over")
        if self.destination is not None and snapshot.get("destination") != self.destination:
            raise StateError(f"the state in {self.directory} was made for "
                             f"{snapshot.get('destination')}, not {self.destination}; use "
                             "another --state, or --restart to start over")

    def _apply(self, fp: str, progress: FileProgress) -> None:
        known = self.files.get(fp)
        if known is None or known.done < progress.done or (
                not known.done and known.position.seq <= progress.position.seq):
            self.files[fp] = progress

    def record(self, fp: str, progress: FileProgress) -> None:
        """An advance: in memory, and one journal line that a crash of this process keeps."""
        self.files[fp] = progress
        if self._journal_fd is None:
            self._journal_fd, _ = open_private(self.journal_path, append=True, what="journal")
        fd = self._journal_fd
        write_all(lambda data: os.write(fd, data),
                  orjson.dumps({"fp": fp, **progress.as_json()}) + b"\n")

    def snapshot(self, mapping_source: str) -> None:
        """Fold everything into state.json durably, then empty the journal."""
        payload = {
            "version": STATE_VERSION,
            "mapping": mapping_source,
            "mapping_hash": self.mapping_hash,
            "transaction_id_rule": self.transaction_id_rule,
            "destination": self.destination,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": {fp: progress.as_json() for fp, progress in self.files.items()},
        }
        write_atomically(self.snapshot_path, orjson.dumps(payload, option=orjson.OPT_INDENT_2))
        if self._journal_fd is not None:
            os.ftruncate(self._journal_fd, 0)
        elif os.path.isfile(self.journal_path) and not os.path.islink(self.journal_path):
            os.truncate(self.journal_path, 0)

    def close(self) -> None:
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None


@dataclass
class Plan:
    """What a run with state reads: files to skip, to resume, and changed ones."""

    fingerprints: dict[str, str] = field(default_factory=dict)  # path -> fingerprint
    finished: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    widened: list[str] = field(default_factory=list)  # the window reaches beyond the settled one
    copies: list[str] = field(default_factory=list)  # same content as another input of the run

    def summary(self) -> dict:
        result = {}
        if self.finished:
            result["files finished earlier, skipped"] = len(self.finished)
        if self.resumed:
            result["files resumed"] = ", ".join(self.resumed)
        if self.changed:
            result["files changed since they were last read, read from the start"] = \
                ", ".join(self.changed)
        if self.widened:
            result["files read again: this run's --since/--until reaches times they were "
                   "settled without"] = ", ".join(self.widened)
        if self.copies:
            result["files with the same content as another input, skipped"] = \
                ", ".join(self.copies)
        return result


def plan(state: State, files: list[InputFile], span: Span = Span()
         ) -> tuple[list[InputFile], Plan]:
    """The files left to read, each starting after its settled prefix. A file settled under a
    narrower --since/--until than ``span`` is read again from the start: the events its window
    left out were settled without being sent."""
    result = Plan()
    known_paths = {progress.path: fp for fp, progress in state.files.items()}
    to_read = []
    for source in files:
        if source.path == STDIN:
            raise StateError("stdin cannot be resumed: with --state, write it to a file first")
        fp = fingerprint(source)
        if fp in result.fingerprints.values():
            result.copies.append(source.path)
            continue
        result.fingerprints[source.path] = fp
        progress = state.files.get(fp)
        if progress is not None and not progress.window.covers(span):
            result.widened.append(source.path)
            state.files[fp] = FileProgress(source.path, window=span)
            to_read.append(source)
        elif progress is None:
            if source.path in known_paths:
                result.changed.append(source.path)
            state.files[fp] = FileProgress(source.path, window=span)
            to_read.append(source)
        elif progress.done:
            result.finished.append(source.path)
            progress.path = source.path
        else:
            progress.path = source.path
            progress.window = span  # the rest is settled under this (narrower) window
            if progress.position.seq > 0:
                result.resumed.append(f"{source.path} from line {progress.position.line}")
            to_read.append(replace(source, start=progress.position))
    return to_read, result


@dataclass(slots=True)
class _Unsettled:
    """A record with events not yet acknowledged, and the settled records that follow it."""

    record: SegmentRecord
    unsettled: int = 0  # its events not yet acknowledged or rejected
    complete: bool = False  # all its outcomes seen
    through: SegmentRecord | None = None  # the last settled record after it, if any

    @property
    def key(self) -> int:
        return id(self.record)

    def resume_at(self) -> Position:
        return self.record.resume_at()

    def resume_after(self) -> Position:
        return (self.through or self.record).resume_after()


class _Run:
    """An event run (``reader._Entries``: consecutive lines that are one record each, each
    making one event, the lines between them unread) with events not yet settled. ``settled``
    marks each event acknowledged or rejected; the run's settled prefix ends at the first
    unmarked one, so a crash resends no more of a run than of records followed one by one."""

    __slots__ = ("entry", "settled", "unsettled", "through")
    complete = True  # every event of the run is its record's only outcome

    def __init__(self, entry: tuple):
        self.entry = entry
        self.settled = bytearray(entry[4])
        self.unsettled = entry[4]
        self.through: SegmentRecord | None = None  # as ``_Unsettled.through``

    @property
    def key(self) -> int:
        return id(self.entry)

    def _at(self, index: int, after: int) -> Position:
        """Where to resume at event ``index``'s line (``after`` 0), or after it (1): what
        ``SegmentRecord.resume_at``/``resume_after`` say of a line that is one record, without
        making the record."""
        entry = self.entry
        line = entry[12][index] + after
        seq = line + entry[3] - entry[2]
        return Position(line, seq, seq)

    def resume_at(self) -> Position:
        return self._at(self.settled.find(0), 0)

    def resume_after(self) -> Position:
        if self.through is not None:
            return self.through.resume_after()
        return self._at(-1, 1)


class Ledger:
    """Follows every outcome to its settlement and advances each file's settled prefix.

    Only records with events in flight are remembered; a run of settled records behind one is
    folded into it (``through``), so memory follows the events in flight, not the records read.
    An event run from a reader process is followed as one entry (``add_run``, ``_Run``).

    An advance caused by an acknowledgement is journaled at once, so that after ``kill -9`` no
    more than the requests in flight are sent again. Advances over skipped or rejected records
    (cheap to redo, and their rejects are not written twice) wait for the next journal line or
    snapshot, which keeps a file of a million skipped records from costing a million writes.
    """

    def __init__(self, state: State, fingerprints: dict[str, str], snapshot_every: float,
                 before_snapshot, mapping_source: str):
        self.state = state
        self.fingerprints = fingerprints  # file name -> fingerprint
        self.snapshot_every = snapshot_every
        self.before_snapshot = before_snapshot  # makes the rejects durable first
        self.mapping_source = mapping_source
        self._pending: dict[str, deque[_Unsettled | _Run]] = {}
        # id(record), or id(run entry) for a run, -> its entry, while unsettled
        self._entries: dict[int, _Unsettled | _Run] = {}
        self._read_done: set[str] = set()
        self._last_snapshot = time.monotonic()

    def _queue(self, name: str) -> deque:
        queue = self._pending.get(name)
        if queue is None:
            queue = self._pending[name] = deque()
        return queue

    def add(self, outcome: Outcome) -> None:
        """Every outcome, in reading order (but an event run's: ``add_run``); events stay
        unsettled until ``settle``."""
        record = outcome.record
        entry = self._entries.get(id(record))
        if entry is None:
            queue = self._pending.get(record.file)
            if outcome.kind is not EVENT and outcome.final:  # settled as it is read
                if queue:
                    queue[-1].through = record
                else:
                    self._move(record.file, record.resume_after(), journal=False)
                return
            entry = _Unsettled(record)
            self._entries[id(record)] = entry
            self._queue(record.file).append(entry)
        if outcome.kind is EVENT:
            entry.unsettled += 1
        if outcome.final:
            entry.complete = True
            if not entry.unsettled:
                self._advance(record.file, journal=False)

    def add_run(self, entry: tuple) -> None:
        """An event run (``reader._Entries``), in reading order among the other outcomes: its
        events stay unsettled until ``settle``; the unread lines inside it are settled."""
        run = _Run(entry)
        self._entries[id(entry)] = run
        queue = self._queue(entry[1])
        queue.append(run)
        if len(queue) == 1:
            self._move(entry[1], run.resume_at(), journal=False)

    def settle(self, sources: Iterable) -> None:
        """Events acknowledged by Metronome (a batch), or rejected and written to the rejects:
        each its outcome or, for an event run's, ``(run entry, index)`` (``reader.Events``).
        Each file they advance is journaled once, when the whole batch is counted."""
        advanced: dict[str, None] = {}
        entries = self._entries
        last = item = None
        for source in sources:
            if source.__class__ is tuple:
                run, index = source
                if run is not last:
                    last, item = run, entries[id(run)]
                    advanced[run[1]] = None
                item.settled[index] = 1
                item.unsettled -= 1
                continue
            entry = entries[id(source.record)]
            entry.unsettled -= 1
            if not entry.unsettled and entry.complete:
                advanced[source.record.file] = None
        for name in advanced:
            self._advance(name, journal=True)

    def file_read(self, name: str) -> None:
        """Reading reached the end of ``name``: it is done once its last record settles."""
        self._read_done.add(name)
        self._advance(name, journal=True)

    def _advance(self, name: str, journal: bool) -> None:
        queue = self._pending.get(name)
        position = None
        while queue:
            head = queue[0]
            if head.unsettled or not head.complete:
                position = head.resume_at()
                break
            queue.popleft()
            del self._entries[head.key]
            position = head.resume_after()
        self._move(name, position, journal)

    def _move(self, name: str, position: Position | None, journal: bool) -> None:
        fp = self.fingerprints[name]
        progress = self.state.files[fp]
        done = not self._pending.get(name) and name in self._read_done
        if position is None:
            if done == progress.done:
                return
            position = progress.position
        advanced = FileProgress(name, position, done, progress.window)
        if journal or done:
            self.state.record(fp, advanced)
        else:
            self.state.files[fp] = advanced

    def maybe_snapshot(self) -> None:
        if time.monotonic() - self._last_snapshot >= self.snapshot_every:
            self.snapshot()

    def snapshot(self) -> None:
        self.before_snapshot()
        self.state.snapshot(self.mapping_source)
        self._last_snapshot = time.monotonic()


def preview(flow: "Flow", directory: str, allow_new_transaction_ids: bool = False) -> None:
    """``--dry-run --state``: what a resume would read, skip and send. Reads the state; writes
    nothing and takes no lock (a run may hold it)."""
    if not os.path.isdir(directory):
        flow.report.resumed = {"state": f"{directory} does not exist yet: everything is read"}
        return
    mappings = flow.mappings
    state = State(directory, mappings.digest, None, mappings.transaction_id_rule)
    state.load(False, allow_new_transaction_ids)
    to_read, found = plan(state, flow.inputs.files, flow.span)
    flow.inputs.files = to_read
    flow.report.resumed = {"a resume would": "read what is listed here", **found.summary()}


@contextmanager
def checkpointed(flow: "Flow", directory: str, destination: str, restart: bool = False,
                 snapshot_every: float = 5.0, rejects_named: bool = False,
                 allow_new_transaction_ids: bool = False) -> Iterator[State]:
    """Run ``flow`` with durable progress in ``directory``: lock it, resume after each file's
    settled prefix, skip finished files. Raises LockHeld or StateError before anything is read."""
    private_dir(directory)
    lock = RunLock(directory)
    lock.acquire()
    mappings = flow.mappings
    state = State(directory, mappings.digest, destination, mappings.transaction_id_rule)
    try:
        state.load(restart, allow_new_transaction_ids)
        to_read, found = plan(state, flow.inputs.files, flow.span)
        if not rejects_named:
            flow.rejects = RejectsFile(state.rejects_path)
        flow.rejects.fingerprints = dict(found.fingerprints)
        # Also files the state has no progress for yet: a crash can come before their first
        # journal line, after some of their rejects were written.
        flow.rejects.load_written({
            found.fingerprints[source.path]: source.start.seq if source.start else 0
            for source in to_read
        })
        flow.inputs.files = to_read
        flow.report.resumed = found.summary()
        if lock.took_over:
            flow.report.resumed["took over the lock of a process no longer running"] = \
                f"PID {lock.took_over}"
        flow.ledger = Ledger(state, found.fingerprints, snapshot_every, flow.rejects.flush,
                             mappings.source)
        flow.finishers.append(lambda report: state.save_last_run(report.as_json()))
        yield state
    finally:
        state.close()
        lock.release()


def lock_holder(directory: str) -> str | None:
    """The PID holding the run lock of ``directory``, or None when no run holds it."""
    path = os.path.join(directory, "lock")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = os.pread(fd, 200, 0).decode(errors="replace").split()
            return text[0] if text else "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def status(directory: str, inputs: list[InputFile] = ()) -> dict:
    """Where a backfill stands (read-only; works while a run holds the lock)."""
    state = State(directory, None, None)
    known = os.path.isdir(directory) and any(
        os.path.exists(os.path.join(directory, name))
        for name in ("state.json", "journal.jsonl", "last-run.json"))
    if not known:
        return {"state": directory, "runs": 0,
                "message": f"no run has used {directory} yet: a send with --state {directory} "
                           "starts one"}
    state.load(False, allow_new_transaction_ids=True)  # read-only: no mapping to compare
    files = []
    for fp, progress in sorted(state.files.items(), key=lambda item: item[1].path):
        entry = {"path": progress.path, "fingerprint": fp}
        if progress.done:
            entry["status"] = "done"
        elif progress.position.seq > 0:
            entry.update(status="partly done", next_line=progress.position.line,
                         next_record=progress.position.seq)
        else:
            entry["status"] = "not started"
        files.append(entry)
    seen = {progress.path for progress in state.files.values()}
    fingerprints = {fp for fp in state.files}
    for source in inputs:
        if source.path not in seen and fingerprint(source) not in fingerprints:
            files.append({"path": source.path, "status": "not started"})
    rejects: dict = {}
    if os.path.isfile(state.rejects_path):
        with open(state.rejects_path, "rb") as handle:
            for line in handle:
                try:
                    entry = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                key = f"{entry.get('stage')}: {entry.get('code')}"
                rejects[key] = rejects.get(key, 0) + 1
    last_run = None
    if os.path.isfile(state.last_run_path):
        with open(state.last_run_path, "rb") as handle:
            last_run = orjson.loads(handle.read())
    holder = lock_holder(directory)
    return {"state": directory, "files": files,
            "rejects_by_reason": dict(sorted(rejects.items(), key=lambda kv: -kv[1])),
            "rejects_path": state.rejects_path if rejects else None,
            "last_run": last_run, "running": holder is not None, "holder_pid": holder}
