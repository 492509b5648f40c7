"""Running the one flow: read, map, validate, then either report (dry-run, map, validate) or upload.

Signals: SIGINT or SIGTERM stop reading; an upload finishes or abandons its requests in flight
within a grace period; the checkpoint is written, the summary printed, and the exit status is 130
or 143.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from contextlib import contextmanager
from typing import Callable, Iterator

from segmetro.checkpoint import Ledger, RunLock, State, plan
from segmetro.events import Window
from segmetro.mapping import MappingSet
from segmetro.pipeline import EVENT, REJECTED, Outcome, Tally, process
from segmetro.rejects import RejectsFile
from segmetro.report import RunReport, UploadStats
from segmetro.sources import ByteCounter, InputSet, read_records
from segmetro.upload import Uploader, UploadSettings, batches

Tick = Callable[[Tally, int], None]
TICK_EVERY = 1024  # outcomes between progress checks: keeps the clock off the hot path
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived while the flow was reading (synchronous runs)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """During a synchronous run, turn SIGINT/SIGTERM into Interrupted."""

    def handler(signum, frame):
        raise Interrupted(signum)

    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        for signum in STOP_SIGNALS:
            signal.signal(signum, handler)
    except ValueError:  # not the main thread (an embedding program): leave signals alone
        previous = {}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


class Flow:
    """Inputs, mapping, clock and rejects file of one run, and the report it fills in."""

    def __init__(self, command: str, inputs: InputSet, mappings: MappingSet, window: Window,
                 rejects: RejectsFile):
        self.inputs = inputs
        self.mappings = mappings
        self.window = window
        self.rejects = rejects
        self.ledger: Ledger | None = None
        self.counters: list[ByteCounter] = []
        self.started = time.monotonic()
        self.report = RunReport(command, Tally(), files=len(inputs.files),
                                files_skipped=list(inputs.skipped),
                                mapping_source=mappings.source, warnings=list(mappings.warnings))

    def bytes_read(self) -> int:
        return sum(counter.count for counter in self.counters)

    def outcomes(self, tick: Tick | None = None) -> Iterator[Outcome]:
        """Every outcome, counted; rejections written to the rejects file; events yielded."""
        tally, rejects, ledger = self.report.tally, self.rejects, self.ledger
        records = read_records(self.inputs, self.counters,
                               ledger.file_read if ledger is not None else None)
        for index, outcome in enumerate(process(records, self.mappings, self.window)):
            tally.count(outcome)
            if outcome.kind is REJECTED:
                rejects.write(outcome)
            if ledger is not None:
                ledger.add(outcome)
            if outcome.kind is EVENT:
                yield outcome
            if tick is not None and not index % TICK_EVERY:
                tick(tally, self.bytes_read())

    def finish(self) -> RunReport:
        if self.ledger is not None:
            self.ledger.snapshot()
        self.rejects.close()
        report = self.report
        report.elapsed = time.monotonic() - self.started
        if self.rejects.used:
            report.rejects_path = self.rejects.path
            report.rejects_appended = self.rejects.appended
        return report


def run_local(flow: Flow, show: int = 0, tick: Tick | None = None,
              on_event: Callable[[dict], None] | None = None,
              track_duplicates: bool = False) -> RunReport:
    """Read, map and validate everything; ``on_event`` receives each valid event."""
    examples = flow.report.examples
    seen: Counter | None = Counter() if track_duplicates else None
    with stop_signals_raise():
        try:
            for outcome in flow.outcomes(tick):
                event = outcome.event
                if len(examples) < show:
                    examples.append(event)
                if on_event is not None:
                    on_event(event)
                if seen is not None:
                    seen[event["transaction_id"]] += 1
        except Interrupted as stop:
            flow.report.interrupted = stop.signum
    if seen is not None:
        flow.report.duplicate_transaction_ids = {
            txid: count for txid, count in seen.most_common() if count > 1
        }
    return flow.finish()


class _Sender:
    """The async side of an upload: the producer loop, progress, checkpoints and signals."""

    def __init__(self, flow: Flow, uploader: Uploader, batch_size: int, tick: Tick | None,
                 grace: float, interval: float):
        self.flow = flow
        self.uploader = uploader
        self.batch_size = batch_size
        self.tick = tick
        self.grace = grace
        self.interval = interval
        self.stop = asyncio.Event()

    def _signalled(self, signum: int) -> None:
        if self.flow.report.interrupted is None:
            self.flow.report.interrupted = signum
        self.stop.set()

    async def _housekeeping(self, done: asyncio.Event) -> None:
        """Progress and periodic checkpoints, also while requests drain after the last read."""
        flow = self.flow
        while not done.is_set():
            if self.tick is not None:
                self.tick(flow.report.tally, flow.bytes_read())
            if flow.ledger is not None:
                flow.ledger.maybe_snapshot()
            try:
                await asyncio.wait_for(done.wait(), self.interval)
            except asyncio.TimeoutError:
                pass

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            try:
                loop.add_signal_handler(signum, self._signalled, signum)
            except (ValueError, RuntimeError, NotImplementedError):
                pass  # not the main thread: the embedding program handles signals
        done = asyncio.Event()
        housekeeping = asyncio.create_task(self._housekeeping(done))
        uploader = self.uploader
        try:
            async with uploader:
                for batch in batches(self.flow.outcomes(self.tick), self.batch_size):
                    if uploader.aborted or self.stop.is_set():
                        break
                    await uploader.submit(batch)
                    await asyncio.sleep(0)  # let responses in between batches
                if self.stop.is_set():
                    await uploader.drain(timeout=self.grace)
        finally:
            done.set()
            await housekeeping
            for signum in STOP_SIGNALS:
                try:
                    loop.remove_signal_handler(signum)
                except (ValueError, RuntimeError, NotImplementedError):
                    pass


def run_upload(flow: Flow, settings: UploadSettings, tick: Tick | None = None,
               log: Callable[[str], None] = lambda message: None, grace: float = 10.0,
               interval: float = 1.0) -> RunReport:
    """Read, map, validate and send every valid event; the report says what became of each."""
    report = flow.report
    stats = report.upload = UploadStats()
    report.dry_run = False
    tally, ledger = report.tally, flow.ledger

    def on_sent(outcomes: list[Outcome]) -> None:
        if ledger is not None:
            for outcome in outcomes:
                ledger.settle(outcome)

    def on_rejected(outcome: Outcome, code: str, reason: str) -> None:
        tally.reject("api", code, reason)
        flow.rejects.write(outcome, "api", code, reason)
        if ledger is not None:
            ledger.settle(outcome)

    uploader = Uploader(settings, stats, on_sent=on_sent, on_rejected=on_rejected, log=log)
    sender = _Sender(flow, uploader, settings.batch_size, tick, grace, interval)
    asyncio.run(sender.run())
    stats.aborted = uploader.aborted
    stats.not_attempted = tally.events - stats.sent - tally.rejected_by_stage["api"]
    return flow.finish()


@contextmanager
def checkpointed(flow: Flow, directory: str, destination: str, restart: bool = False,
                 snapshot_every: float = 5.0, rejects_named: bool = False) -> Iterator[State]:
    """Run ``flow`` with durable progress in ``directory``: lock it, resume after each file's
    settled prefix, skip finished files. Raises LockHeld or StateError before anything is read."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    lock = RunLock(directory)
    lock.acquire()
    state = State(directory, flow.mappings.digest, destination)
    try:
        state.load(restart)
        to_read, found = plan(state, flow.inputs.files)
        if not rejects_named:
            flow.rejects = RejectsFile(state.rejects_path)
        flow.rejects.fingerprints = {
            path: fp for path, fp in found.fingerprints.items()
        }
        flow.rejects.load_written({
            found.fingerprints[source.path]: source.start.seq
            for source in to_read if source.start is not None
        })
        flow.inputs.files = to_read
        flow.report.resumed = found.summary()
        if lock.took_over:
            flow.report.resumed["took over the lock of a process no longer running"] = \
                f"PID {lock.took_over}"
        flow.ledger = Ledger(state, found.fingerprints, snapshot_every, flow.rejects.flush,
                             flow.mappings.source)
        yield state
    finally:
        state.close()
        lock.release()
