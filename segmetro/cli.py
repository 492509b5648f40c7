"""Click commands only: options -> objects -> call the core -> render. No logic lives here."""

from __future__ import annotations

import functools
import sys
from typing import Callable

import click
import orjson
from rich.markup import escape

from segmetro import __version__
from segmetro.events import DEFAULT_BACKDATE_DAYS, Window
from segmetro.explore import survey, survey_json
from segmetro.mapping import MappingError, MappingSet, load_mapping
from segmetro.rejects import RejectsFile, default_path
from segmetro.report import EXIT_CODES_HELP, ExitStatus, RunReport, Terminal
from segmetro.run import Flow, run_local
from segmetro.sources import InputError, InputSet, expand_inputs, read_records
from segmetro.timestamps import now_ms as current_ms
from segmetro.timestamps import parse_now


class ConfigError(click.ClickException):
    """A usage or configuration error: exit 2, message on stderr."""

    exit_code = ExitStatus.CONFIG


def _now_option(ctx, param, value: str | None) -> int | None:
    if value is None:
        return None
    parsed = parse_now(value)
    if parsed is None:
        raise click.BadParameter(f"{value!r} is not a timestamp (e.g. 2026-11-20T00:00:00Z)")
    return parsed


def mapping_option(function: Callable) -> Callable:
    return click.option(
        "-m", "--mapping", "mapping_path", type=click.Path(dir_okay=False),
        help="Mapping file (YAML). Default: the bundled Segment preset, mappings/default.yaml.",
    )(function)


def validation_options(function: Callable) -> Callable:
    options = [
        click.option("--now", "now_ms", callback=_now_option, metavar="TIMESTAMP",
                     help="Validate as if it were this time (reproducible runs). Default: now."),
        click.option("--backdate-days", default=DEFAULT_BACKDATE_DAYS, show_default=True,
                     type=click.IntRange(0, 3650),
                     help="Oldest event Metronome accepts, in days before now."),
        click.option("--rejects", "rejects_path", type=click.Path(dir_okay=False),
                     help="Rejects file (JSON Lines, mode 0600); appended to if it exists. "
                          "Default: ./segmetro-rejects-<UTC time>.jsonl, a new file each run."),
        click.option("-q", "--quiet", is_flag=True, help="No progress display."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def inputs_argument(required: bool = True) -> Callable:
    return click.argument("inputs", nargs=-1, required=required, metavar="INPUT...")


def load_or_exit(terminal: Terminal, mapping_path: str | None) -> MappingSet:
    try:
        return load_mapping(mapping_path)
    except MappingError as error:
        for line in str(error).splitlines():
            terminal.error(line)
        raise ConfigError(f"{len(error.problems)} problem(s) in the mapping file "
                          f"{error.source}") from None


def expand_or_exit(inputs: tuple[str, ...]) -> InputSet:
    try:
        return expand_inputs(inputs)
    except InputError as error:
        raise ConfigError(str(error)) from None


def make_flow(command: str, terminal: Terminal, inputs: tuple[str, ...],
              mapping_path: str | None, now_ms: int | None, backdate_days: int,
              rejects_path: str | None) -> Flow:
    mappings = load_or_exit(terminal, mapping_path)
    input_set = expand_or_exit(inputs)
    window = Window(now_ms if now_ms is not None else current_ms(), backdate_days)
    return Flow(command, input_set, mappings, window, RejectsFile(rejects_path or default_path()))


def finish(terminal: Terminal, report: RunReport, as_json: bool, to_stderr: bool = False) -> None:
    if as_json:
        terminal.json(report.as_json())
    else:
        terminal.summary(report, to_stderr=to_stderr)
    sys.exit(int(report.exit_status()))


def progress_tick(terminal: Terminal, flow: Flow):
    progress = terminal.progress(flow.inputs.total_bytes)
    return progress, lambda tally, done: progress.update(tally, done)


def handle_interrupt(function: Callable) -> Callable:
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(int(ExitStatus.INTERRUPTED))

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EXIT_CODES_HELP)
@click.version_option(__version__, "--version", prog_name="segmetro")
def cli() -> None:
    """Move Segment event exports into Metronome usage events.

    Reads JSONL/NDJSON files, gzipped S3 archives, directories, globs or '-' (stdin), applies a
    YAML mapping (Segment triggers and field mappings), validates the events against Metronome's
    rules and sends them to /v1/ingest in batches.
    """


@cli.command(epilog=EXIT_CODES_HELP)
@inputs_argument()
@mapping_option
@click.option("--dry-run", is_flag=True, help="Read, map and validate; send nothing.")
@click.option("--show", default=0, type=click.IntRange(0), metavar="N",
              help="Print N example events in the summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@validation_options
@handle_interrupt
def send(inputs, mapping_path, dry_run, show, as_json, now_ms, backdate_days, rejects_path,
         quiet):
    """Map, validate and send events to Metronome's /v1/ingest.

    \b
    Examples:
      segmetro send export.jsonl --dry-run --show 3
      segmetro send 'segment-logs/**/*.gz' -m mappings/default.yaml
      zcat day.gz | segmetro send - --dry-run --json
    """
    terminal = Terminal(quiet=quiet or as_json)
    flow = make_flow("send", terminal, inputs, mapping_path, now_ms, backdate_days, rejects_path)
    if not dry_run:
        raise ConfigError("sending is not available yet: use --dry-run")
    progress, tick = progress_tick(terminal, flow)
    try:
        report = run_local(flow, show=show, tick=tick)
    finally:
        progress.close()
    finish(terminal, report, as_json)


@cli.command("map", epilog=EXIT_CODES_HELP)
@inputs_argument()
@mapping_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="-", show_default=True,
              help="Where the events go, one JSON object a line; '-' is stdout.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary as JSON on stderr instead of text.")
@validation_options
@handle_interrupt
def map_command(inputs, mapping_path, output, as_json, now_ms, backdate_days, rejects_path,
                quiet):
    """Write the Metronome events that would be sent, one JSON object per line.

    Invalid records go to the rejects file, not to the output; the summary goes to stderr.

    \b
    Examples:
      segmetro map export.jsonl > events.jsonl
      segmetro map 'archive/*.gz' -m mappings/tokens.yaml -o events.jsonl
    """
    terminal = Terminal(quiet=quiet)
    flow = make_flow("map", terminal, inputs, mapping_path, now_ms, backdate_days, rejects_path)
    stream = sys.stdout.buffer if output == "-" else open(output, "wb")
    dumps = orjson.dumps
    write = stream.write
    progress, tick = progress_tick(terminal, flow) if output != "-" else (None, None)
    try:
        report = run_local(flow, tick=tick, on_event=lambda event: write(dumps(event) + b"\n"))
    finally:
        if progress is not None:
            progress.close()
        stream.flush()
        if stream is not sys.stdout.buffer:
            stream.close()
    if as_json:
        sys.stderr.write(orjson.dumps(report.as_json()).decode() + "\n")
        sys.exit(int(report.exit_status()))
    finish(terminal, report, False, to_stderr=True)


@cli.command(epilog=EXIT_CODES_HELP)
@inputs_argument(required=False)
@mapping_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@validation_options
@handle_interrupt
def validate(inputs, mapping_path, as_json, now_ms, backdate_days, rejects_path, quiet):
    """Check the mapping file; with inputs, map and validate every record.

    With inputs it reports as `send --dry-run` does, and also lists transaction ids that repeat
    within the run (Metronome silently keeps only the first of each).

    \b
    Examples:
      segmetro validate -m mappings/tokens.yaml
      segmetro validate -m mappings/tokens.yaml export.jsonl --json
    """
    terminal = Terminal(quiet=quiet or as_json)
    if not inputs:
        mappings = load_or_exit(terminal, mapping_path)
        if as_json:
            terminal.json({"mapping": mappings.source, "valid": True,
                           "mappings": [m.name for m in mappings.mappings],
                           "warnings": mappings.warnings})
        else:
            terminal.out.print(f"{mappings.source}: OK, {len(mappings.mappings)} mapping(s): "
                               + ", ".join(m.name for m in mappings.mappings))
            for warning in mappings.warnings:
                terminal.warning(warning)
        sys.exit(int(ExitStatus.OK))
    flow = make_flow("validate", terminal, inputs, mapping_path, now_ms, backdate_days,
                     rejects_path)
    progress, tick = progress_tick(terminal, flow)
    try:
        report = run_local(flow, tick=tick, track_duplicates=True)
    finally:
        progress.close()
    finish(terminal, report, as_json)


@cli.command()
@inputs_argument()
@click.option("--type", "type_filter", metavar="T", help="Only records of this Segment type.")
@click.option("--event", "event_filter", metavar="NAME", help="Only track events of this name.")
@click.option("--limit", type=click.IntRange(1), metavar="N",
              help="Look at the first N matching records only.")
@click.option("--json", "as_json", is_flag=True, help="Print the paths as JSON.")
def inspect(inputs, type_filter, event_filter, limit, as_json):
    """List the paths present in the events (as JSONPath), to write a mapping by.

    For each (type, event) group: each path, how many records have it, its JSON types and a few
    example values.

    \b
    Examples:
      segmetro inspect export.jsonl --type track
      segmetro inspect export.jsonl --event "Order Completed" --limit 1000
    """
    terminal = Terminal()
    groups = survey(read_records(expand_or_exit(inputs)), type_filter, event_filter, limit)
    if as_json:
        terminal.json(survey_json(groups))
        return
    if not groups:
        terminal.out.print("no records matched")
    for group in groups:
        title = group.type + (f' "{group.event}"' if group.event is not None else "")
        terminal.out.print(f"[bold]{escape(title)}[/]: {group.records:,} record(s)")
        for path, stats in group.paths.items():
            types = "|".join(stats.types)
            examples = ", ".join(orjson.dumps(e).decode() for e in stats.examples)
            share = stats.count / group.records
            terminal.out.print(f"  {escape(path):<48} {share:>5.0%}  {types:<14} "
                               f"{escape(examples)}")


def main() -> None:
    cli(prog_name="segmetro")

