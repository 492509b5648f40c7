"""Records -> outcomes: map and validate, the one stream every command shares.

Each record becomes one outcome per matching mapping (an event to send, or a rejection with its
stage and reason), or one ``skipped`` outcome when no trigger matched, or one ``parse`` rejection.
An event whose transaction_id the run already produced is a ``duplicate`` (the same event again:
counted, not sent) or a ``validate`` rejection (another event under the same id).
Nothing raises out of the stream for one bad record; nothing is dropped without a count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Iterable, Iterator

import orjson

from segmetro.dedupe import MAX_LOAD, PRESIZE_LIMIT, SeenIds
from segmetro.events import Window, check_mapped, mapped_valid
from segmetro.mapping import MappingSet
from segmetro.sources import UNREAD, PlainTaker, SegmentRecord

UNREAD_TYPE = "(unread: no trigger can match)"


class Kind(Enum):
    EVENT = 0  # a valid event, to be sent
    SKIPPED = 1  # no trigger matched (``code`` holds the record's Segment type)
    REJECTED = 2  # with ``stage``, ``code`` and ``reason``
    DUPLICATE = 3  # the same event again under a transaction_id the run already produced
    OUTSIDE = 4  # a mapping's event whose timestamp is outside --since/--until: not taken


EVENT, SKIPPED, REJECTED, DUPLICATE, OUTSIDE = Kind
SETTLED_AT_ONCE = frozenset((SKIPPED, REJECTED, DUPLICATE, OUTSIDE))  # nothing left to wait for


@dataclass(frozen=True)
class Span:
    """The run's own time window (``--since``, ``--until``): events outside it are not taken."""

    since_ms: int | None = None
    until_ms: int | None = None

    def __bool__(self) -> bool:
        return self.since_ms is not None or self.until_ms is not None

    def holds(self, epoch_ms: int) -> bool:
        return (self.since_ms is None or epoch_ms >= self.since_ms) and \
            (self.until_ms is None or epoch_ms < self.until_ms)

    def covers(self, other: "Span") -> bool:
        """Whether every time ``other`` takes is inside this span."""
        return (self.since_ms is None or
                (other.since_ms is not None and other.since_ms >= self.since_ms)) and \
            (self.until_ms is None or
             (other.until_ms is not None and other.until_ms <= self.until_ms))


@dataclass(slots=True)
class Outcome:
    kind: Kind
    record: SegmentRecord
    event: dict | None = None
    stage: str | None = None
    code: str | None = None  # why rejected; for a skipped record, its Segment type
    reason: str | None = None
    mapping: str | None = None
    final: bool = True  # the last outcome of its record
    # The event's JSON (made once, for the repeat check), its event_type and timestamp: what a
    # reader process sends instead of the event itself; ``event`` is then an orjson.Fragment.
    event_json: bytes | None = None
    event_type: str | None = None
    timestamp: str | None = None
    repeat: int = 1  # a run of unread lines, each skipped: ``record`` is the last of them


def segment_type(data: dict) -> str:
    kind = data.get("type")
    return kind if kind.__class__ is str else "(no type)"


class RepeatCheck:
    """The run-wide repeat check by transaction_id: a valid event whose id the run already
    produced is a ``DUPLICATE`` (the same bytes) or a ``validate`` rejection (another event)."""

    def __init__(self, expected: int = 0) -> None:
        # sized for the ids expected (``sources.expected_events``): growing moves every id
        self.seen = SeenIds(max(1021, min(int(expected / MAX_LOAD), PRESIZE_LIMIT)))
        self._file: str | None = None
        self._base = 0  # the file's run-wide number for file:line

    def outcome(self, record: SegmentRecord, event, body: bytes, transaction_id: str,
                mapping: str | None, final: bool, event_type: str, timestamp: str) -> Outcome:
        if record.file != self._file:
            self._file = record.file
            self._base = self.seen.place(record.file, 0)
        first = self.seen.check(transaction_id, body, self._base + record.line)
        if first == SeenIds.NEW:
            return Outcome(EVENT, record, event, None, None, None, mapping, final, body,
                           event_type, timestamp)
        return self.verdict(first, record, event, body, transaction_id, mapping, final,
                            event_type, timestamp)

    def check_run(self, file: str, lines: list[int], transaction_ids: list[str],
                  bodies: list[bytes]) -> dict[int, int | str]:
        """The check of events at ``lines`` of ``file``, in turn: what ``SeenIds.check`` said
        of those that are not new, by index."""
        if file != self._file:
            self._file = file
            self._base = self.seen.place(file, 0)
        return self.seen.check_many(transaction_ids, bodies, self._base, lines)

    @staticmethod
    def verdict(first: int | str, record: SegmentRecord, event, body: bytes,
                transaction_id: str, mapping: str | None, final: bool, event_type: str,
                timestamp: str) -> Outcome:
        """The outcome of an event whose id the run already produced: the check answered
        ``first``, SAME (a repeat) or where the id was first given (a conflict)."""
        if first == SeenIds.SAME:
            return Outcome(DUPLICATE, record, event, mapping=mapping, final=final)
        return Outcome(REJECTED, record, event, "validate", "conflicting-transaction-id",
                       f"transaction_id {transaction_id!r} was already given to a different "
                       f"event at {first}; Metronome keeps only the first event of an id, so "
                       "this one would never be billed", mapping, final, body, event_type,
                       timestamp)


def process(records: Iterable[SegmentRecord], mappings: MappingSet,
            window: Window | Callable[[], Window], span: Span = Span(),
            *, repeats: RepeatCheck | None, apply: Callable[[dict], list] | None = None
            ) -> Iterator[Outcome]:
    """``window`` is fixed (``--now``) or a callable giving the clock's window, read again every
    few thousand records so a run that lasts hours judges each record against its own time.
    A mapped event outside ``span`` is ``OUTSIDE`` (before Metronome's window is applied).
    Without ``repeats``, every valid event is an ``EVENT`` with its JSON made, for a
    ``RepeatCheck`` elsewhere (a reader process's parent). A run of unread lines is one
    ``SKIPPED`` outcome, given as it comes. ``apply`` stands for ``mappings.apply`` (see
    ``plain_taker``)."""
    holds = span.holds if span else None
    apply = apply or mappings.apply
    repeats = repeats.outcome if repeats is not None else None
    dumps = orjson.dumps
    clock = window if callable(window) else None
    if clock is not None:
        window = clock()
    for count, record in enumerate(records):
        data = record.data
        if data is UNREAD:
            yield Outcome(SKIPPED, record, code=UNREAD_TYPE, repeat=record.repeat)
            continue
        if clock is not None and not count & 4095:
            window = clock()
        if data is None:
            yield Outcome(REJECTED, record, None, "parse", record.error_code, record.error)
            continue
        results = apply(data)
        if not results:
            yield Outcome(SKIPPED, record, code=segment_type(data))
            continue
        last = len(results) - 1
        for index, result in enumerate(results):
            final = index == last
            event = result.event
            if result.code is not None:
                yield Outcome(REJECTED, record, event, "map", result.code, result.reason,
                              result.mapping, final)
                continue
            if holds is not None and not holds(result.epoch_ms):
                yield Outcome(OUTSIDE, record, mapping=result.mapping, final=final)
                continue
            event_type, timestamp = event["event_type"], event["timestamp"]
            problem = check_mapped(event, result.epoch_ms, window)
            if problem is not None:
                yield Outcome(REJECTED, record, event, "validate", problem[0], problem[1],
                              result.mapping, final, None, event_type, timestamp)
                continue
            body = dumps(event)
            if repeats is None:
                yield Outcome(EVENT, record, event, None, None, None, result.mapping, final,
                              body, event_type, timestamp)
            else:
                yield repeats(record, event, body, event["transaction_id"], result.mapping,
                              final, event_type, timestamp)


def plain_taker(mappings: MappingSet, window: Window | Callable[[], Window], span: Span,
                add: Callable[..., None]) -> tuple[PlainTaker, Callable[[dict], list]]:
    """What ``process`` does for the usual line, done where the line is read (a reader
    process's ``read_file``), with no record or outcome made for it: a line that is one record
    (``data``, its text ``line``, at ``line_no``, record ``seq`` of ``file``) making one valid
    event inside ``span``. Such a line is handed to ``add(file, line_no, seq, line, event JSON,
    event_type, timestamp, mapping, transaction_id)`` and the taker answers True; for any other
    it answers False and the record goes through ``process``.

    Returns the taker and the ``apply`` for that ``process``: ``mappings.apply``, except that
    the record the taker just declined gets the results the taker made of it (a month of
    records outside ``span``, or too old for Metronome, is mapped once, not twice)."""
    holds = span.holds if span else None
    apply, dumps = mappings.apply, orjson.dumps
    clock = window if callable(window) else None
    now = [clock() if clock is not None else window, 0]  # the window, lines since it was read
    declined: list = [None, None]  # the last record declined, and what it was mapped to

    def take(file: str, data: dict, line: bytes, line_no: int, seq: int) -> bool:
        results = apply(data)
        if len(results) == 1:
            result = results[0]
            epoch_ms = result.epoch_ms
            if result.code is None and (holds is None or holds(epoch_ms)):
                if clock is not None:
                    now[1] += 1
                    if now[1] >= 4096:
                        now[0], now[1] = clock(), 0
                event = result.event
                if mapped_valid(event, epoch_ms, now[0]):
                    add(file, line_no, seq, line, dumps(event), event["event_type"],
                        event["timestamp"], result.mapping, event["transaction_id"])
                    return True
        declined[0], declined[1] = data, results
        return False

    def apply_again(data: dict) -> list:
        if data is declined[0]:
            results = declined[1]
            declined[0] = declined[1] = None
            return results
        return apply(data)

    return take, apply_again


@dataclass
class Tally:
    """Counts of what flowed through a run: the numbers of the summary."""

    lines: int = 0
    records: int = 0
    events: int = 0
    duplicates: int = 0  # events the run already produced, the same to the byte: not sent again
    outside_window: Counter = field(default_factory=Counter)  # mapping -> events outside span
    by_event_type: Counter = field(default_factory=Counter)
    skipped_by_type: Counter = field(default_factory=Counter)
    rejected_by_stage: Counter = field(default_factory=Counter)
    rejected_by_reason: Counter = field(default_factory=Counter)  # (stage, code) -> count
    reason_examples: dict = field(default_factory=dict)  # (stage, code) -> ("file:line", reason)
    by_day: Counter = field(default_factory=Counter)  # valid events per day (UTC)
    outside_by_day: Counter = field(default_factory=Counter)  # (day, code): too old, future
    _last_file: str = ""
    _last_line: int = 0

    @property
    def skipped(self) -> int:
        return sum(self.skipped_by_type.values())

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_stage.values())

    def count(self, outcome: Outcome) -> None:
        record = outcome.record
        if outcome.final:
            repeat = outcome.repeat
            self.records += repeat
            if repeat > 1 or record.line != self._last_line or record.file != self._last_file:
                self.lines += repeat
                self._last_line, self._last_file = record.line, record.file
        if outcome.kind is EVENT:
            self.events += 1
            self.by_event_type[outcome.event_type] += 1
            self.by_day[outcome.timestamp[:10]] += 1
        elif outcome.kind is SKIPPED:
            self.skipped_by_type[outcome.code] += outcome.repeat
        elif outcome.kind is DUPLICATE:
            self.duplicates += 1
        elif outcome.kind is OUTSIDE:
            self.outside_window[outcome.mapping] += 1
        else:
            self.reject(outcome, outcome.stage, outcome.code, outcome.reason)

    def count_run(self, file: str, first: int, last: int, event_types: list[str],
                  timestamps: list[str]) -> None:
        """Count a stretch of one-record lines of ``file``, ``first`` to ``last``: a valid event
        each of ``event_types``, the other lines unread (as ``count`` would, one at a time)."""
        count = last - first + 1
        self.records += count
        self.lines += count - (first == self._last_line and file == self._last_file)
        self._last_line, self._last_file = last, file
        if count > len(event_types):
            self.skipped_by_type[UNREAD_TYPE] += count - len(event_types)
        self.events += len(event_types)
        self.by_event_type.update(event_types)
        self.by_day.update([timestamp[:10] for timestamp in timestamps])

    def reject(self, outcome: Outcome, stage: str, code: str | None, reason: str | None) -> None:
        if code in ("timestamp-too-old", "timestamp-in-future"):
            self.outside_by_day[(outcome.timestamp[:10], code)] += 1
        self.rejected_by_stage[stage] += 1
        key = (stage, code or "rejected")
        self.rejected_by_reason[key] += 1
        if key not in self.reason_examples:  # the first place it happened, to go and look
            record = outcome.record
            self.reason_examples[key] = (record.place, reason)
