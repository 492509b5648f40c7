"""How a person sees a run: progress while it goes, and its summary (text or JSON).

On a terminal a rich progress bar; otherwise (cron) a plain line of totals every few seconds at
most. The core (summary.py and below) never prints and imports neither rich nor click.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape

from segmetro.pipeline import Tally
from segmetro.redact import scrub, scrub_bytes
from segmetro.summary import RunReport, UploadStats


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else plural or word + 's'}"


def summary_lines(report: RunReport) -> list[str]:
    """The human summary, as rich-markup lines."""
    tally = report.tally
    title = {"send": "send --dry-run" if report.dry_run else "send"}.get(report.command,
                                                                         report.command)
    lines = [f"[bold]segmetro {title}[/]: {_plural(tally.lines, 'line')} read "
             f"({_plural(tally.records, 'record')}) from {_plural(report.files, 'file')} "
             f"in {report.elapsed:.1f}s, mapping {escape(report.mapping_source)}"]
    if report.hint:
        lines.append(f"  [bold yellow]note:[/] {escape(report.hint)}")
    if report.span:
        since, until = report.span
        bounds = " and ".join(part for part in (since and f"at or after {since}",
                                                until and f"before {until}") if part)
        lines.append(f"  window: events {bounds} (--since/--until)")
    if report.pruned:
        lines.append(f"  day folders pruned: {len(report.pruned):,} (received too long before "
                     "--since to hold an event inside it; not listed or read)")
    if report.files_skipped:
        shown = ", ".join(escape(p) for p in report.files_skipped[:3])
        more = f" and {len(report.files_skipped) - 3:,} more" if len(report.files_skipped) > 3 \
            else ""
        lines.append(f"  files skipped (not event data): {len(report.files_skipped):,}: "
                     f"{shown}{more}")
    if report.shard:
        shard = report.shard
        lines.append(f"  shard {shard['index']}/{shard['count']}: {_plural(shard['files'], 'file')}"
                     f" ({shard['bytes']:,} bytes) of the {shard['of_files']:,} listed")
    if report.inputs_left_out:
        shown = "; ".join(escape(p) for p in report.inputs_left_out[:3])
        more = f"; and {len(report.inputs_left_out) - 3:,} more (see --json)" \
            if len(report.inputs_left_out) > 3 else ""
        lines.append(f"  inputs left out: {len(report.inputs_left_out):,}: {shown}{more}")
    for key, value in report.resumed.items():
        lines.append(f"  checkpoint: {key}: {escape(str(value))}")
    verb = "valid, would be sent" if report.dry_run else "valid"
    lines.append(f"  events    {tally.events:>10,}  {verb}")
    for event_type, count in tally.by_event_type.most_common(15):
        lines.append(f"    {count:>18,}  {escape(event_type)}")
    if len(tally.by_event_type) > 15:
        lines.append(f"    … {len(tally.by_event_type) - 15:,} more event types (see --json)")
    if report.written is not None:
        style = "bold red" if report.written != tally.events else ""
        open_tag, close_tag = (f"[{style}]", "[/]") if style else ("", "")
        lines.append(f"  {open_tag}written   {report.written:>10,}{close_tag}  to "
                     f"{escape(report.output or '')}")
    if report.upload is not None:
        upload = report.upload
        rate = upload.sent / report.elapsed if report.elapsed else 0.0
        lines.append(f"  sent      {upload.sent:>10,}  acknowledged by Metronome "
                     f"({rate:,.0f} events/s)")
        lines.append(f"            {'':>10}  {_plural(upload.requests, 'request')}, "
                     f"{_plural(upload.retries, 'retry', 'retries')}, "
                     f"{upload.throttled:,} × 429, "
                     f"{_plural(upload.bisected, 'batch', 'batches')} bisected")
        if upload.not_attempted:
            lines.append(f"  [bold red]not sent  {upload.not_attempted:>10,}[/]  "
                         "never confirmed by Metronome: run again to send them")
    if tally.duplicates:
        lines.append(f"  repeats   {tally.duplicates:>10,}  the same event as earlier in the "
                     "run (same transaction_id and content): not sent again")
    if tally.outside_window:
        lines.append(f"  outside   {sum(tally.outside_window.values()):>10,}  events outside the "
                     "window (--since/--until): not taken")
        if len(tally.outside_window) > 1:
            for mapping, count in tally.outside_window.most_common():
                lines.append(f"    {count:>18,}  {escape(str(mapping))}")
    lines.append(f"  skipped   {tally.skipped:>10,}  no trigger matched")
    for kind, count in tally.skipped_by_type.most_common():
        lines.append(f"    {count:>18,}  {escape(kind)}")
    style = "bold red" if tally.rejected else ""
    open_tag, close_tag = (f"[{style}]", "[/]") if style else ("", "")
    lines.append(f"  {open_tag}rejected  {tally.rejected:>10,}{close_tag}")
    for (stage, code), count in tally.rejected_by_reason.most_common():
        place, example = tally.reason_examples[(stage, code)]
        lines.append(f"    {count:>18,}  {stage}: {code} (first at {escape(place)}): "
                     f"{escape(str(example))}")
    if report.rejects_path:
        how = "appended to" if report.rejects_appended else "written to"
        mode = " (mode 0600)" if report.rejects_private else ""
        lines.append(f"  rejects {how} {escape(report.rejects_path)}{mode}")
    if report.upload is not None and report.upload.aborted and \
            report.upload.aborted != report.error:
        lines.append(f"  [bold red]aborted:[/] {escape(report.upload.aborted)}")
    if report.error is not None:
        lines.append(f"  [bold red]stopped (exit {int(report.exit_status())}):[/] "
                     f"{escape(report.error)}")
    if report.interrupted is not None:
        lines.append(f"  [bold red]stopped by {signal.Signals(report.interrupted).name}[/]: "
                     "input not read to the end")
    for warning in report.warnings:
        lines.append(f"  [yellow]warning:[/] {escape(warning)}")
    if report.dry_run and report.command in ("send", "validate") and report.window and \
            report.tally.records:
        lines += by_day_lines(report.by_day(), report.window)
    return lines


def by_day_lines(days: dict, window: tuple, width: int = 30, most_rows: int = 40) -> list[str]:
    """Events per day as bars, with Metronome's window edges marked: what will be accepted."""
    if not days:
        return []
    earliest, latest = window[0][:10], window[1][:10]
    items = sorted(days.items())
    if len(items) > most_rows:  # months of history: group the days
        size = -(-len(items) // most_rows)
        grouped = []
        for start in range(0, len(items), size):
            chunk = items[start:start + size]
            total = {key: sum(day[key] for _, day in chunk) for key in chunk[0][1]}
            grouped.append((f"{chunk[0][0]}…", total))
        items = grouped
    top = max(max(day["events"], day["too_old"], day["future"]) for _, day in items) or 1
    lines = [f"  events by day (UTC); Metronome accepts {earliest} to {latest}:"]
    marked_start = marked_end = False
    for day, counts in items:
        if not marked_start and day[:10] >= earliest:
            lines.append(f"    [dim]──── {earliest}: the 34-day window starts ────[/]")
            marked_start = True
        if not marked_end and day[:10] > latest:
            lines.append(f"    [dim]──── {latest}: the 24-hour future limit ────[/]")
            marked_end = True
        parts = []
        if counts["events"]:
            bar = "█" * max(1, round(width * counts["events"] / top))
            parts.append(f"[green]{bar}[/] {counts['events']:,}")
        for key, label in (("too_old", "too old"), ("future", "in the future")):
            if counts[key]:
                bar = "░" * max(1, round(width * counts[key] / top))
                parts.append(f"[red]{bar}[/] {counts[key]:,} {label}")
        lines.append(f"    {day:<11} " + "  ".join(parts))
    if not marked_end:
        lines.append(f"    [dim]──── {latest}: the 24-hour future limit ────[/]")
    return lines


REASON_WORDS = {
    "no-metric-for-event-type": "no billable metric takes the event_type",
    "sql-metric-only": "only SQL metrics name the event_type (not checked here)",
    "property-filter-not-met": "a metric's property filter is not met",
    "aggregation-key-missing": "the aggregated property is missing",
    "aggregation-key-not-number": "the aggregated property is not a number",
    "unknown-customer": "customer_id is neither a customer id nor an ingest alias",
    "archived-customer": "the customer is archived",
}


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.6g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def status_lines(found: dict) -> list[str]:
    if "message" in found:
        return [escape(found["message"])]
    lines = [f"[bold]{escape(found['state'])}[/]: "
             + (f"[yellow]a run is in progress (PID {found['holder_pid']})[/]"
                if found["running"] else "no run in progress")]
    counts: dict = {}
    for entry in found["files"]:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    lines.append("  inputs: " + (", ".join(f"{n:,} {what}" for what, n in counts.items())
                                 or "none yet"))
    for entry in found["files"]:
        where = (f" (next: line {entry['next_line']:,}, record {entry['next_record']:,})"
                 if entry["status"] == "partly done" else "")
        lines.append(f"    {entry['status']:<12} {escape(entry['path'])}{where}")
    if found["rejects_by_reason"]:
        lines.append(f"  rejects in {escape(found['rejects_path'])}:")
        for reason, count in found["rejects_by_reason"].items():
            lines.append(f"    {count:>10,}  {escape(reason)}")
    last = found.get("last_run")
    if last:
        lines.append(f"  last run ended {last.get('ended')}: exit {last.get('exit_status')}, "
                     f"{last.get('sent', 0):,} sent, {last.get('events', 0):,} events, "
                     f"{last.get('rejected', 0):,} rejected"
                     + (f"; error: {escape(last['error'])}" if last.get("error") else ""))
        if last.get("by_day") and last.get("window"):
            lines += by_day_lines(last["by_day"], (last["window"]["earliest"],
                                                   last["window"]["latest"]))
    return lines


def preflight_lines(assessment) -> list[str]:
    style = "bold red" if assessment.unbillable else "bold green"
    lines = [f"[bold]will it bill[/] ({len(assessment.account.metrics)} billable metrics, "
             f"{len(assessment.account.customers.by_key):,} customer ids and aliases):",
             f"  [{style}]billable  {assessment.billable:>10,}[/]  of {assessment.events:,} "
             "valid events"]
    if assessment.uncertain:
        lines.append(f"  [yellow]uncertain {assessment.uncertain:>10,}[/]  only a number "
                     "property compared with string values takes them (undocumented)")
    lines.append(f"  [{style}]unbillable{assessment.unbillable:>10,}[/]")
    for reason, count in assessment.unbillable_by_reason.most_common():
        lines.append(f"    {count:>18,}  {reason}: {REASON_WORDS.get(reason, reason)}; e.g. "
                     f"{escape(assessment.reason_examples[reason])}")
    lines.append("  per event_type:")
    names = {m.id: m.name for m in assessment.account.metrics}
    for event_type, counts in sorted(assessment.by_event_type.items()):
        matched = [f"{names[key[7:]]} ({counts[key]:,})" for key in counts
                   if key.startswith("metric:")]
        lines.append(f"    {escape(event_type)}: {counts['events']:,} events, "
                     f"{counts['unbillable']:,} unbillable; metrics: "
                     f"{escape(', '.join(matched)) or 'none'}")
    if assessment.unknown_customer_ids:
        top = ", ".join(f"{escape(k)} ({v:,})" for k, v in
                        assessment.unknown_customer_ids.most_common(5))
        lines.append(f"  unknown customers: {sum(assessment.unknown_customer_ids.values()):,} "
                     f"events: {top}")
    if assessment.archived_customer_ids:
        top = ", ".join(f"{escape(k)} ({v:,})" for k, v in
                        assessment.archived_customer_ids.most_common(5))
        lines.append(f"  archived customers: {sum(assessment.archived_customer_ids.values()):,} "
                     f"events: {top}")
    for metric in assessment.sql_metrics:
        lines.append(f"  SQL metric {escape(metric.name)}: its rule cannot be checked here")
    lines.append("  usage this backfill adds, by metric:")
    for row in assessment.by_metric():
        if row["sql"]:
            lines.append(f"    {escape(row['name'])}: a SQL metric, not evaluated here")
            continue
        value = "" if row["value"] is None else f" = {_value(row['value'])}"
        open_rules = f", {row['uncertain']:,} uncertain (not counted)" if row["uncertain"] else ""
        lines.append(f"    {escape(row['name'])} ({row['aggregation']}): {row['events']:,} "
                     f"events{value}{open_rules}")
    if assessment.by_day or len(assessment.usage) <= 20:
        lines.append("  by metric, customer" + (" and day:" if assessment.by_day else ":"))
        for row in assessment.usage_rows()[:200]:
            day = f" {row['day']}" if "day" in row else ""
            lines.append(f"    {escape(row['metric'])} · {escape(row['customer_id'])}{day}: "
                         f"{_value(row['value'])} ({row['events']:,} events)")
    return lines


def reconciliation_lines(result) -> list[str]:
    style = "bold red" if result.failed() else "bold green"
    lines = [f"[bold]reconcile[/]: {result.checked:,} customer × metric × day cells checked, "
             f"[{style}]{len(result.short):,} short[/]"]
    for row in result.short[:20]:
        lines.append(f"    {escape(row['metric'])} · {escape(row['customer_id'])} {row['day']}: "
                     f"Metronome has {_value(row['actual'])}, this backfill alone adds "
                     f"{_value(row['expected'])}")
    if result.not_compared:
        lines.append(f"  {result.not_compared:,} cells of LATEST metrics not compared (no lower "
                     "bound)")
    lines.append(f"  sampled {result.sampled:,} transaction ids: {len(result.not_found):,} not "
                 f"found, {len(result.duplicates):,} duplicates, "
                 f"{len(result.unmatched_customer):,} with no matched customer, "
                 f"{len(result.unmatched_metric):,} with no matched metric")
    for label, ids in (("not found", result.not_found),
                       ("no matched customer", result.unmatched_customer),
                       ("no matched metric", result.unmatched_metric)):
        if ids:
            lines.append(f"    {label}: {escape(', '.join(ids[:5]))}"
                         + (f" and {len(ids) - 5:,} more" if len(ids) > 5 else ""))
    return lines


class Terminal:
    """The one place that writes to a person: stdout for results, stderr for the rest."""

    def __init__(self, quiet: bool = False):
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.quiet = quiet

    def json(self, payload: Any, to_stderr: bool = False) -> None:
        stream = sys.stderr if to_stderr else sys.stdout
        stream.write(scrub_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2)).decode()
                     + "\n")
        stream.flush()

    def summary(self, report: RunReport, to_stderr: bool = False) -> None:
        console = self.err if to_stderr else self.out
        for line in summary_lines(report):
            console.print(scrub(line, markup=True))
        if report.examples:
            console.print(f"  example events ({len(report.examples)}):")
            for event in report.examples:
                console.print("    " + escape(scrub(orjson.dumps(event).decode())))

    def status(self, found: dict) -> None:
        for line in status_lines(found):
            self.out.print(scrub(line, markup=True))

    def preflight(self, assessment) -> None:
        """The will-it-bill findings under a run's summary (see preflight.py)."""
        for line in preflight_lines(assessment):
            self.out.print(scrub(line, markup=True))

    def reconciliation(self, result) -> None:
        for line in reconciliation_lines(result):
            self.out.print(scrub(line, markup=True))

    def warning(self, message: str) -> None:
        self.err.print(f"[yellow]warning:[/] {escape(scrub(message))}")

    def error(self, message: str) -> None:
        self.err.print(f"[bold red]error:[/] {escape(scrub(message))}")

    def progress(self, total_bytes: int | None, interval: float = 5.0,
                 shown: bool = True) -> "RunProgress":
        return RunProgress(self.err, total_bytes, interval, enabled=shown and not self.quiet)


def compact(count: int) -> str:
    """A count that fits a progress line: 9,876, 12.3k, 1.23M."""
    if count < 10_000:
        return f"{count:,}"
    if count < 1_000_000:
        return f"{count / 1000:.1f}k"
    return f"{count / 1_000_000:.2f}M"


class RunProgress:
    """Progress of a run: a rich bar on a terminal, labelled so that it reads at 80 columns; a
    plain line of totals every ``interval`` s otherwise (cron), each starting with its time.

    During a send the main measure is events acknowledged out of events read; bytes read (of
    the inputs' size, where known) is the secondary one."""

    def __init__(self, console: Console, total_bytes: int | None, interval: float,
                 enabled: bool = True):
        self.console = console
        self.total = total_bytes
        self.interval = interval
        self.enabled = enabled
        self.started = time.monotonic()
        self._next = self.started + interval
        self._bar = None
        if enabled and console.is_terminal:
            from rich.progress import (BarColumn, Progress, SpinnerColumn, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            columns = [SpinnerColumn(), TextColumn("{task.fields[main]}")]
            if total_bytes:
                columns += [BarColumn(bar_width=10), TextColumn("read {task.percentage:>3.0f}%"),
                            TextColumn("eta"), TimeRemainingColumn(compact=True)]
            columns += [TimeElapsedColumn(), TextColumn("elapsed")]
            self._bar = Progress(*columns, console=console, transient=True)
            self._task = self._bar.add_task("run", total=total_bytes or None,
                                            main="starting")
            self._bar.start()

    def update(self, tally: Tally, bytes_done: int, upload: UploadStats | None = None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self._bar is None and now < self._next:
            return
        if self._bar is not None:
            if upload is not None:
                main = f"{compact(upload.sent)}/{compact(tally.events)} events sent"
            else:
                main = f"{compact(tally.records)} records, {compact(tally.events)} valid"
            self._bar.update(self._task, completed=bytes_done, main=main)
            return
        self._next = now + self.interval
        elapsed = max(now - self.started, 1e-9)
        parts = [f"{tally.records:,} records ({tally.records / elapsed:,.0f}/s)",
                 f"{tally.events:,} valid events", f"{tally.rejected:,} rejected"]
        if upload is not None:
            parts[:0] = [f"{upload.sent:,} of {tally.events:,} events sent "
                         f"({upload.sent / elapsed:,.0f}/s)"]
            parts.append(f"{upload.retries:,} retries")
        if self.total:
            parts.append(f"{bytes_done / self.total:.0%} of the input read")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.console.print(f"{stamp} progress: {', '.join(parts)}, {elapsed:.0f}s elapsed")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
