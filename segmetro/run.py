"""Running the one flow: read, map, validate, then report (dry-run, map, validate).

The upload stage (``send.py``) consumes the same ``Flow``. SIGINT or SIGTERM stop reading; the
summary is printed and the exit status is 130 or 143.
"""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import orjson

from segmetro.checkpoint import Ledger
from segmetro.events import DAY_MS, Window
from segmetro.mapping import MappingSet
from segmetro.pipeline import EVENT, REJECTED, Outcome, RepeatCheck, Span, Tally, process
from segmetro.rejects import RejectsFile
from segmetro.summary import RunReport
from segmetro.reader import (EVENT_RUN, Events, ReaderProcess, decode, run_outcomes,
                             use_reader_process)
from segmetro.sources import ByteCounter, InputSet, expected_events, read_records
from segmetro.status import failure
from segmetro.timestamps import format_ms

Tick = Callable[[Tally, int], None]
TICK_EVERY = 1024  # outcomes between progress checks: keeps the clock off the hot path
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived while the flow was reading (synchronous runs)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class StopGate:
    """SIGINT and SIGTERM in a synchronous run (map, dry runs, validate, preflight). A stop
    that arrives while a step settles (outcomes counted, their events handed on and written)
    waits for the step's end: the summary then counts what was written, and no output line is
    torn. A second signal stops at once."""

    def __init__(self) -> None:
        self.settling = False
        self.pending: int | None = None

    def signalled(self, signum: int, frame) -> None:
        if self.settling and self.pending is None:
            self.pending = signum
            return
        raise Interrupted(signum)

    def settle(self, step: Callable[..., None], *args) -> None:
        """``step(*args)``, then the stop that waited for it."""
        self.settling = True
        try:
            step(*args)
        finally:
            self.settling = False
        if self.pending is not None:
            raise Interrupted(self.pending)


@contextmanager
def stop_signals_raise() -> Iterator[StopGate]:
    """During a synchronous run, turn SIGINT/SIGTERM into Interrupted, between steps."""
    gate = StopGate()
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        for signum in STOP_SIGNALS:
            signal.signal(signum, gate.signalled)
    except ValueError:  # not the main thread (an embedding program): leave signals alone
        previous = {}
    try:
        yield gate
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


class Flow:
    """Inputs, mapping, clock and rejects file of one run, and the report it fills in."""

    def __init__(self, command: str, inputs: InputSet, mappings: MappingSet,
                 window: Window | Callable[[], Window], rejects: RejectsFile,
                 span: Span = Span()):
        self.inputs = inputs
        self.mappings = mappings
        self.window = window
        self.span = span  # --since/--until
        self.rejects = rejects
        self.ledger: Ledger | None = None
        self.finishers: list[Callable[[RunReport], None]] = []  # after the report is closed
        self.counters: list[ByteCounter] = []
        self.remote_bytes_read: int | None = None  # when a reader process does the reading
        self.started = time.monotonic()
        self.report = RunReport(command, Tally(), files=len(inputs.files),
                                files_skipped=list(inputs.skipped),
                                inputs_left_out=list(inputs.left_out),
                                mapping_source=mappings.source, warnings=list(mappings.warnings),
                                pruned=list(inputs.pruned))
        if span:
            self.report.span = (format_ms(span.since_ms) if span.since_ms is not None else None,
                                format_ms(span.until_ms) if span.until_ms is not None else None)

    def bytes_read(self) -> int:
        if self.remote_bytes_read is not None:
            return self.remote_bytes_read
        return sum(counter.count for counter in self.counters)

    def take(self, outcome: Outcome) -> bool:
        """Account for one outcome: count it, write it to the rejects file if rejected, hand
        it to the checkpoint ledger. True for an event, which goes on to be sent."""
        self.report.tally.count(outcome)
        kind = outcome.kind
        if kind is REJECTED:
            self.rejects.write(outcome)
        if self.ledger is not None:
            self.ledger.add(outcome)
        return kind is EVENT

    def _processed(self) -> Iterator[Outcome]:
        """Every outcome of reading, mapping and validating in this process, in input order,
        not yet taken into account."""
        ledger = self.ledger
        records = read_records(self.inputs, self.counters,
                               ledger.file_read if ledger is not None else None,
                               self.mappings.needles)
        repeats = RepeatCheck(expected_events(self.inputs, self.mappings.needles))
        return process(records, self.mappings, self.window, self.span, repeats=repeats)

    def outcomes(self, tick: Tick | None = None) -> Iterator[Outcome]:
        """Read, map and validate in this process; every outcome taken into account here, in
        input order, events yielded (a reader process's frames go through ``take_entries``)."""
        take, tally = self.take, self.report.tally
        for index, outcome in enumerate(self._processed()):
            if take(outcome):
                yield outcome
            if tick is not None and not index % TICK_EVERY:
                tick(tally, self.bytes_read())

    def take_events(self, on_events: Callable[[list[bytes]], None], gate: StopGate,
                    tick: Tick | None = None) -> None:
        """Take every outcome into account, in input order, handing the JSON of the valid
        events to ``on_events``, a list at a time. Each step (a reader process's frame, or one
        outcome read here) is taken and handed on under ``gate``: a stop waits for its end.
        From a reader process, runs of plain events are taken in bulk: counted, checked for
        repeats, their JSON passed on as it came, with no outcome made for each."""
        tally = self.report.tally
        if not use_reader_process():
            def take_one(outcome: Outcome) -> None:
                if self.take(outcome):
                    on_events([outcome.event_json])

            for index, outcome in enumerate(self._processed()):
                gate.settle(take_one, outcome)
                if tick is not None and not index % TICK_EVERY:
                    tick(tally, self.bytes_read())
            return
        self.remote_bytes_read = 0
        reader = ReaderProcess(self.inputs, self.mappings, self.window, self.span,
                               uploading=False)

        def take_frame(entries: list) -> None:
            jsons = self.take_entries(entries, reader.repeats, Events.json_only()).jsons
            if jsons:
                on_events(jsons)

        for message in reader.messages_sync():
            if message[0] != "outcomes":
                continue
            self.remote_bytes_read = message[2]
            gate.settle(take_frame, message[1])
            if tick is not None:
                tick(tally, self.remote_bytes_read)

    def take_entries(self, entries: list, repeats: RepeatCheck | None,
                     events: Events | None = None) -> Events:
        """Account for a reader's frame (``reader._Entries``), in order, with ``repeats`` when
        the repeat check is this process's; the valid events, added to ``events`` (new ones by
        default). A run of plain events is counted in bulk and passed on as it came (a
        checkpoint ledger follows it as one), unless the repeat check finds a repeat among
        them."""
        take, tally, ledger = self.take, self.report.tally, self.ledger
        events = Events() if events is None else events
        pending: list = []  # entries decoded together (outcomes of a record share it)

        def take_each(taken: list[Outcome]) -> None:
            for outcome in taken:
                if take(outcome):
                    events.add(outcome)

        for entry in entries:
            if entry[0] != EVENT_RUN:
                pending.append(entry)
                continue
            if pending:
                take_each(decode(pending, repeats))
                pending = []
            (_, file, first, _, _, _, _, jsons, types, stamps, _, _, lines, ids, answers) = entry
            if answers is None and repeats is not None and ids is not None:
                answers = repeats.check_run(file, lines, ids, jsons)
            if answers:  # a repeat among them: each becomes an outcome
                take_each(run_outcomes(entry, repeats, answers))
                continue
            tally.count_run(file, first, lines[-1], types, stamps)
            if ledger is not None:
                ledger.add_run(entry)
            events.add_run(entry)
        if pending:
            take_each(decode(pending, repeats))
        return events

    def finish(self) -> RunReport:
        """Make what was settled durable (rejects, then the checkpoint) and close the report.
        Safe to call once more after a failure in an earlier call."""
        report = self.report
        try:
            if self.ledger is not None:
                self.ledger.snapshot()
        except Exception as error:  # noqa: BLE001 - a full disk: say so, exit 70
            report.fail(*failure(error))
        finally:
            try:
                self.rejects.close()
            except Exception as error:  # noqa: BLE001
                report.fail(*failure(error))
        report.elapsed = time.monotonic() - self.started
        window = self.window() if callable(self.window) else self.window
        report.window = (format_ms(window.earliest_ms), format_ms(window.latest_ms))
        if self.span.since_ms is None:
            report.hint = since_hint(report.tally, window)
        if self.rejects.used:
            report.rejects_path = self.rejects.path
            report.rejects_appended = self.rejects.appended
            report.rejects_private = self.rejects.regular
        for finisher in self.finishers:
            try:
                finisher(report)
            except Exception as error:  # noqa: BLE001
                report.fail(*failure(error))
        self.finishers = []
        return report


def since_hint(tally: Tally, window: Window) -> str | None:
    """When most events a run made are too old for Metronome, the --since that takes only
    what it accepts: the first UTC midnight inside its window."""
    too_old = tally.rejected_by_reason.get(("validate", "timestamp-too-old"), 0)
    made = tally.events + tally.duplicates + tally.rejected_by_stage.get("validate", 0)
    if not too_old or too_old * 2 <= made:
        return None
    since = -(-window.earliest_ms // DAY_MS) * DAY_MS
    return (f"{too_old:,} of the {made:,} events this run made are older than Metronome's "
            f"{window.backdate_days}-day window (earliest {format_ms(window.earliest_ms)}) and "
            f"were rejected; to take only what Metronome accepts, run with --since "
            f"{format_ms(since)[:10]}")


def run_local(flow: Flow, show: int = 0, tick: Tick | None = None,
              on_events: Callable[[list[bytes]], None] | None = None) -> RunReport:
    """Read, map and validate everything; ``on_events`` receives the valid events' JSON, a
    list at a time, in input order. SIGINT or SIGTERM stops the run once the step in hand is
    taken and handed on (``StopGate``). Anything unexpected (an input that vanished, an output
    that cannot be written, a bug) ends the run with its status in the report, after what was
    done so far is made durable."""
    examples = flow.report.examples

    def hand_on(jsons: list[bytes]) -> None:
        if len(examples) < show:
            examples.extend(map(orjson.loads, jsons[:show - len(examples)]))
        if on_events is not None:
            on_events(jsons)

    with stop_signals_raise() as gate:
        try:
            flow.take_events(hand_on, gate, tick)
        except Interrupted as stop:
            flow.report.interrupted = stop.signum
        except Exception as error:  # noqa: BLE001 - the run's one error boundary
            flow.report.fail(*failure(error))
    return flow.finish()
