"""The upload side of a run: the producer loop over the flow, progress, checkpoints, signals.

SIGINT or SIGTERM stop reading; requests in flight finish or are abandoned within a grace
period; the checkpoint is written, the summary printed, and the exit status is 130 or 143.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import AsyncIterator, Callable

from segmetro.summary import RunReport, UploadStats
from segmetro.status import ExitStatus, failure
from segmetro.run import STOP_SIGNALS, Flow, Tick
from segmetro.reader import Events, ReaderProcess, use_reader_process
from segmetro.upload import Uploader, UploadSettings


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
        self.hurry = asyncio.Event()  # a second signal: stop waiting for requests in flight
        self.log: Callable[[str], None] = uploader.log

    def _stopping(self) -> bool:
        return self.uploader.aborted is not None or self.stop.is_set()

    async def _event_lists(self) -> AsyncIterator[Events]:
        """The flow's events in order, some at a time, every other outcome accounted for."""
        flow = self.flow
        if not use_reader_process():
            events = Events()
            for outcome in flow.outcomes(self.tick):
                events.add(outcome)
                if len(events) >= self.batch_size:
                    yield events
                    events = Events()
            yield events
            return
        reader = ReaderProcess(flow.inputs, flow.mappings, flow.window, flow.span)
        ledger = flow.ledger
        flow.remote_bytes_read = 0
        async with aclosing(reader.messages()) as messages:
            async for message in messages:
                if message[0] == "outcomes":
                    flow.remote_bytes_read = message[2]
                    yield flow.take_entries(message[1], None)
                elif message[0] == "file_done" and ledger is not None:
                    ledger.file_read(message[1])

    def _signalled(self, signum: int) -> None:
        """The first Ctrl-C or SIGTERM stops reading and lets requests in flight finish within
        the grace period; a second one stops at once."""
        if self.stop.is_set():
            self.log("stopping now: requests in flight are abandoned (their events are sent "
                     "again by the next run)")
            self.hurry.set()
            return
        if self.flow.report.interrupted is None:
            self.flow.report.interrupted = signum
        self.stop.set()
        self.log(f"stopping: waiting up to {self.grace:g} s for "
                 f"{self.uploader.in_flight} requests in flight (again to stop now)")

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
        size = self.batch_size
        try:
            async with uploader, aclosing(self._event_lists()) as event_lists:
                pending = Events()
                async for events in event_lists:
                    pending.extend(events)
                    while len(pending) >= size and not self._stopping():
                        await uploader.submit(pending.take(size))
                        await asyncio.sleep(0)  # let responses in between batches
                    if self._stopping():
                        break
                if pending and not self._stopping():
                    await uploader.submit(pending)
                if self.stop.is_set():
                    await uploader.drain(timeout=self.grace, interrupt=self.hurry)
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
               interval: float = 1.0, budget: Callable[[], object] | None = None) -> RunReport:
    """Read, map, validate and send every valid event; the report says what became of each.
    ``budget`` makes the rate budget inside the run's event loop (a Redis-backed one shared by
    shards); by default a local token bucket at ``settings.rate_limit``."""
    report = flow.report
    stats = report.upload = UploadStats()
    report.dry_run = False
    tally, ledger = report.tally, flow.ledger

    def on_sent(events: Events) -> None:
        if ledger is not None:
            ledger.settle(events.sources)

    def on_rejected(events: Events, code: str, reason: str) -> None:
        for outcome in events.outcomes():
            tally.reject(outcome, "api", code, reason)
            flow.rejects.write(outcome, "api", code, reason)
        if ledger is not None:  # after the rejects are written, as ``Ledger.snapshot`` needs
            ledger.settle(events.sources)

    async def main() -> None:
        bucket = budget() if budget is not None else None
        uploader = Uploader(settings, stats, on_sent=on_sent, on_rejected=on_rejected, log=log,
                            bucket=bucket)
        outcome["uploader"] = uploader
        await _Sender(flow, uploader, settings.batch_size, tick, grace, interval).run()
        if getattr(uploader.bucket, "failed", None):
            report.warnings.append(f"the shared rate budget fell back to this shard's share: "
                                   f"{uploader.bucket.failed}")

    outcome: dict = {}
    try:
        asyncio.run(main())
    except Exception as error:  # noqa: BLE001 - the reader died, an input vanished, a bug
        report.fail(*failure(error))
    uploader = outcome.get("uploader")
    if uploader is not None and uploader.failure is not None:
        report.fail(ExitStatus.INTERNAL, uploader.aborted or "internal error while sending")
    stats.aborted = uploader.aborted if uploader is not None else None
    stats.not_attempted = tally.events - stats.sent - tally.rejected_by_stage["api"]
    return flow.finish()
