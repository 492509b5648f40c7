"""Running the one flow without the upload stage: dry-run, map and validate share this loop."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Callable, Iterator

from segmetro.events import Window
from segmetro.mapping import MappingSet
from segmetro.pipeline import EVENT, REJECTED, Outcome, Tally, process
from segmetro.rejects import RejectsFile
from segmetro.report import RunReport, UploadStats
from segmetro.sources import ByteCounter, InputSet, read_records
from segmetro.upload import Uploader, UploadSettings, batches

Tick = Callable[[Tally, int], None]
TICK_EVERY = 1024  # outcomes between progress checks: keeps the clock off the hot path


class Flow:
    """Inputs, mapping, clock and rejects file of one run, and the report it fills in."""

    def __init__(self, command: str, inputs: InputSet, mappings: MappingSet, window: Window,
                 rejects: RejectsFile):
        self.inputs = inputs
        self.mappings = mappings
        self.window = window
        self.rejects = rejects
        self.counters: list[ByteCounter] = []
        self.started = time.monotonic()
        self.report = RunReport(command, Tally(), files=len(inputs.files),
                                files_skipped=list(inputs.skipped),
                                mapping_source=mappings.source, warnings=list(mappings.warnings))

    def bytes_read(self) -> int:
        return sum(counter.count for counter in self.counters)

    def outcomes(self, tick: Tick | None = None) -> Iterator[Outcome]:
        """Every outcome, counted; rejections written to the rejects file; events yielded."""
        tally, rejects = self.report.tally, self.rejects
        records = read_records(self.inputs, self.counters)
        for index, outcome in enumerate(process(records, self.mappings, self.window)):
            tally.count(outcome)
            if outcome.kind is EVENT:
                yield outcome
            elif outcome.kind is REJECTED:
                rejects.write(outcome)
            if tick is not None and not index % TICK_EVERY:
                tick(tally, self.bytes_read())

    def finish(self) -> RunReport:
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
    for outcome in flow.outcomes(tick):
        event = outcome.event
        if len(examples) < show:
            examples.append(event)
        if on_event is not None:
            on_event(event)
        if seen is not None:
            seen[event["transaction_id"]] += 1
    if seen is not None:
        flow.report.duplicate_transaction_ids = {
            txid: count for txid, count in seen.most_common() if count > 1
        }
    return flow.finish()


async def _send(flow: Flow, uploader: Uploader, batch_size: int, tick: Tick | None,
                interval: float) -> None:
    stop_ticker = asyncio.Event()

    async def ticker() -> None:  # progress while requests drain after the last read
        while not stop_ticker.is_set():
            if tick is not None:
                tick(flow.report.tally, flow.bytes_read())
            try:
                await asyncio.wait_for(stop_ticker.wait(), interval)
            except asyncio.TimeoutError:
                pass

    ticker_task = asyncio.create_task(ticker())
    try:
        async with uploader:
            for batch in batches(flow.outcomes(tick), batch_size):
                if uploader.aborted:
                    break
                await uploader.submit(batch)
                await asyncio.sleep(0)  # let responses in between batches
    finally:
        stop_ticker.set()
        await ticker_task


def run_upload(flow: Flow, settings: UploadSettings, tick: Tick | None = None,
               log: Callable[[str], None] = lambda message: None,
               interval: float = 1.0) -> RunReport:
    """Read, map, validate and send every valid event; the report says what became of each."""
    report = flow.report
    stats = report.upload = UploadStats()
    report.dry_run = False
    tally = report.tally

    def on_rejected(outcome: Outcome, code: str, reason: str) -> None:
        tally.reject("api", code, reason)
        flow.rejects.write(outcome, "api", code, reason)

    uploader = Uploader(settings, stats, on_sent=lambda outcomes: None,
                        on_rejected=on_rejected, log=log)
    asyncio.run(_send(flow, uploader, settings.batch_size, tick, interval))
    stats.aborted = uploader.aborted
    if stats.aborted:
        stats.not_attempted = tally.events - stats.sent - tally.rejected_by_stage["api"]
    return flow.finish()
