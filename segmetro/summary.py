"""What a run knows: its counts, upload statistics and outcome, as data (no click, no rich).

``ui.py`` shows it to a person; ``as_json`` is the machine's view.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

from segmetro.pipeline import Tally
from segmetro.redact import scrub
from segmetro.status import ExitStatus


@dataclass
class UploadStats:
    sent: int = 0  # events Metronome acknowledged
    requests: int = 0
    retries: int = 0
    throttled: int = 0  # 429 answers
    bisected: int = 0  # batches split after a 400
    not_attempted: int = 0  # valid events never confirmed (aborted run)
    aborted: str | None = None  # why the upload stopped early


@dataclass
class RunReport:
    """Everything a summary shows about one run."""

    command: str
    tally: Tally
    files: int = 0
    files_skipped: list[str] = field(default_factory=list)
    rejects_path: str | None = None
    rejects_appended: bool = False
    rejects_private: bool = True  # a file segmetro created 0600 (not /dev/null or a pipe)
    elapsed: float = 0.0
    dry_run: bool = True
    upload: UploadStats | None = None
    examples: list[dict] = field(default_factory=list)
    mapping_source: str = ""
    warnings: list[str] = field(default_factory=list)
    resumed: dict[str, Any] = field(default_factory=dict)  # checkpoint: files skipped / resumed
    inputs_left_out: list[str] = field(default_factory=list)  # "path: why", see sources
    interrupted: int | None = None  # the signal that stopped the run early
    window: tuple | None = None  # Metronome's accepted timestamps: (earliest, latest)
    shard: dict | None = None  # {index, count, files, of_files, bytes} when sharded
    error: str | None = None  # what ended the run early, when it did not finish
    error_status: ExitStatus | None = None
    span: tuple | None = None  # --since/--until as given: (since, until), either None
    pruned: list[str] = field(default_factory=list)  # day folders --since proved empty
    hint: str | None = None  # said first: most events too old, and the --since to use
    written: int | None = None  # map: the events whose lines ``output`` took
    output: str | None = None

    def fail(self, status: ExitStatus, message: str) -> None:
        """The run ends early with ``status``; the first failure is the one reported."""
        if self.error_status is None:
            self.error_status, self.error = status, scrub(message)

    def exit_status(self) -> ExitStatus:
        """0 and 1 mean finished: a send that did not settle every valid event it read never
        gets them."""
        if self.error_status is not None:
            return self.error_status
        if self.interrupted is not None:
            return ExitStatus.TERMINATED if self.interrupted == signal.SIGTERM \
                else ExitStatus.INTERRUPTED
        if self.upload is not None and self.upload.aborted:
            return ExitStatus.ABORTED
        if self.upload is not None and self.upload.not_attempted:
            return ExitStatus.INTERNAL
        if self.tally.rejected:
            return ExitStatus.REJECTED
        return ExitStatus.OK

    def by_day(self) -> dict:
        """Per UTC day: valid events, and those too old or in the future for Metronome."""
        days: dict = {}
        for day, count in self.tally.by_day.items():
            days.setdefault(day, {"events": 0, "too_old": 0, "future": 0})["events"] = count
        for (day, code), count in self.tally.outside_by_day.items():
            key = "too_old" if code == "timestamp-too-old" else "future"
            days.setdefault(day, {"events": 0, "too_old": 0, "future": 0})[key] = count
        return dict(sorted(days.items()))

    def as_json(self) -> dict:
        tally = self.tally
        result: dict[str, Any] = {
            "command": self.command,
            "dry_run": self.dry_run,
            "mapping": self.mapping_source,
            "files": self.files,
            "files_skipped": self.files_skipped,
            "inputs_left_out": self.inputs_left_out,
            "lines": tally.lines,
            "records": tally.records,
            "events": tally.events,
            "duplicates": tally.duplicates,
            "skipped": tally.skipped,
            "rejected": tally.rejected,
            "sent": self.upload.sent if self.upload else 0,
            "by_event_type": dict(tally.by_event_type.most_common()),
            "skipped_by_type": dict(tally.skipped_by_type.most_common()),
            "rejected_by_stage": dict(tally.rejected_by_stage),
            "rejected_by_reason": [
                {"stage": stage, "code": code, "count": count,
                 "first_at": tally.reason_examples[(stage, code)][0],
                 "example": tally.reason_examples[(stage, code)][1]}
                for (stage, code), count in tally.rejected_by_reason.most_common()
            ],
            "rejects_path": self.rejects_path,
            "elapsed_seconds": round(self.elapsed, 3),
            "exit_status": int(self.exit_status()),
            "error": self.error,
            "by_day": self.by_day(),
            "shard": self.shard,
            "since": self.span[0] if self.span else None,
            "until": self.span[1] if self.span else None,
            "outside_window": sum(tally.outside_window.values()),
            "outside_window_by_mapping": dict(tally.outside_window.most_common()),
            "pruned_folders": len(self.pruned),
            "hint": self.hint,
            "window": {"earliest": self.window[0], "latest": self.window[1]}
            if self.window else None,
            "interrupted": signal.Signals(self.interrupted).name if self.interrupted else None,
            "warnings": self.warnings,
        }
        if self.upload is not None:
            upload = self.upload
            result.update(requests=upload.requests, retries=upload.retries,
                          throttled=upload.throttled, bisected=upload.bisected,
                          not_attempted=upload.not_attempted, aborted=upload.aborted,
                          events_per_second=round(upload.sent / self.elapsed, 1)
                          if self.elapsed else None)
        if self.written is not None:
            result["written"] = self.written
        if self.resumed:
            result["checkpoint"] = self.resumed
        if self.examples:
            result["examples"] = self.examples
        return result
