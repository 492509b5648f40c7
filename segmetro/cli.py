"""Click commands only: options -> objects -> call the core -> render. No logic lives here."""

from __future__ import annotations

import functools
import gc
import os
import sys
from contextlib import ExitStack, contextmanager
from typing import Callable, NoReturn

import click
import orjson
from rich.markup import escape

from segmetro import __version__
from segmetro.events import DEFAULT_BACKDATE_DAYS, DEFAULT_BASE_URL, MAX_BATCH, Window
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


def option_group(*options: Callable) -> Callable:
    """One decorator applying several click options, in the order they are listed."""

    def apply(function: Callable) -> Callable:
        for option in reversed(options):
            function = option(function)
        return function

    return apply


def mapping_option(function: Callable) -> Callable:
    return click.option(
        "-m", "--mapping", "mapping_path", type=click.Path(dir_okay=False),
        help="Mapping file (YAML). Default: the bundled Segment preset, mappings/default.yaml.",
    )(function)


validation_options = option_group(
    click.option("--now", "now_ms", callback=_now_option, metavar="TIMESTAMP",
                 help="Validate as if it were this time (reproducible runs). Default: now."),
    click.option("--backdate-days", default=DEFAULT_BACKDATE_DAYS, show_default=True,
                 type=click.IntRange(0, 3650),
                 help="Oldest event Metronome accepts, in days before now."),
    click.option("--rejects", "rejects_path", type=click.Path(dir_okay=False),
                 help="Rejects file (JSON Lines, mode 0600); appended to if it exists. "
                      "Default: ./segmetro-rejects-<UTC time>.jsonl, a new file each run."),
    click.option("-q", "--quiet", is_flag=True, help="No progress display."),
)


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


def opened_or_exit(option: str, path: str, opener: Callable = lambda p: open(p, "wb")):
    """Open an output file named on the command line; a path that cannot be written is a
    configuration error naming the option, found before any input is read."""
    try:
        return opener(path)
    except OSError as error:
        raise ConfigError(f"{option} {path}: {error.strerror or error}") from None


def check_writable_dir(option: str, path: str | None) -> None:
    directory = os.path.dirname(path or "") or "."
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise ConfigError(f"{option} {path}: the directory {directory} does not exist or "
                          "cannot be written")


def make_flow(command: str, terminal: Terminal, inputs: tuple[str, ...],
              mapping_path: str | None, now_ms: int | None, backdate_days: int,
              rejects_path: str | None) -> Flow:
    check_writable_dir("--rejects", rejects_path)
    mappings = load_or_exit(terminal, mapping_path)
    input_set = expand_or_exit(inputs)
    window = Window(now_ms if now_ms is not None else current_ms(), backdate_days)
    return Flow(command, input_set, mappings, window, RejectsFile(rejects_path or default_path()))


def finish(terminal: Terminal, report: RunReport, as_json: bool,
           to_stderr: bool = False) -> NoReturn:
    """Print the summary and exit with the run's status."""
    if as_json:
        terminal.json(report.as_json(), to_stderr=to_stderr)
    else:
        terminal.summary(report, to_stderr=to_stderr)
    sys.exit(int(report.exit_status()))


@contextmanager
def progress_display(terminal: Terminal, flow: Flow, shown: bool = True):
    """The run's progress display (bar or plain lines); yields the tick the core calls."""
    progress = terminal.progress(flow.inputs.total_bytes, shown=shown)
    try:
        yield lambda tally, done: progress.update(tally, done, flow.report.upload)
    finally:
        progress.close()


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


connection_options = option_group(
    click.option("--api-token", envvar=["METRONOME_BEARER_TOKEN", "METRONOME_API_TOKEN"],
                 show_envvar=True, metavar="TOKEN",
                 help="Metronome API token (Bearer). Never printed."),
    click.option("--base-url", envvar="METRONOME_BASE_URL", show_envvar=True,
                 default=DEFAULT_BASE_URL, show_default=True,
                 help="Metronome API base URL; plain http:// only to loopback addresses."),
    click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(0.1),
                 help="Seconds to wait for one request."),
)


upload_options = option_group(
    click.option("--batch-size", default=MAX_BATCH, show_default=True,
                 type=click.IntRange(1, MAX_BATCH), help="Events per request."),
    click.option("--rate-limit", default=5000.0, show_default=True,
                 type=click.FloatRange(0),
                 help="Events per second across all requests (Metronome's default account "
                      "limit is 5000); 0 for none."),
    click.option("--concurrency", default=64, show_default=True, type=click.IntRange(1, 512),
                 help="Most requests in flight; the actual number adapts to the server."),
    click.option("--max-retries", default=8, show_default=True, type=click.IntRange(0),
                 help="Retries of one batch (connection errors, timeouts, 408, 429, 5xx) "
                      "before the run gives up with exit 3."),
    click.option("--max-backoff", default=8.0, show_default=True,
                 type=click.FloatRange(0.01),
                 help="Longest wait between retries, in seconds (backoff doubles from 0.5 s)."),
    click.option("--gzip", "use_gzip", is_flag=True,
                 help="Compress request bodies (opt-in: Metronome no longer documents it)."),
)


state_options = option_group(
    click.option("--state", "state_dir", type=click.Path(file_okay=False), metavar="DIR",
                 help="Keep durable progress, the run lock and the rejects in DIR: a rerun "
                      "skips finished files and resumes partly sent ones."),
    click.option("--restart", is_flag=True,
                 help="Start over: set the state's progress and rejects aside "
                      "(*.before-restart) instead of resuming."),
    click.option("--grace-period", default=10.0, show_default=True,
                 type=click.FloatRange(0),
                 help="Seconds to let requests in flight finish after Ctrl-C or SIGTERM."),
    click.option("--checkpoint-interval", default=5.0, show_default=True,
                 type=click.FloatRange(0.1),
                 help="Seconds between durable (fsynced) snapshots of the state."),
)


def upload_settings(api_token, base_url, timeout, batch_size=MAX_BATCH, rate_limit=0.0,
                    concurrency=64, max_retries=8, max_backoff=8.0, use_gzip=False):
    from segmetro.upload import SettingsError, UploadSettings  # httpx: only when sending

    try:
        return UploadSettings(token=api_token or "", base_url=base_url, timeout=timeout,
                              batch_size=batch_size, rate_limit=rate_limit,
                              concurrency=concurrency, max_retries=max_retries,
                              backoff_cap=max_backoff, gzip=use_gzip)
    except SettingsError as error:
        raise ConfigError(str(error)) from None


@cli.command(epilog=EXIT_CODES_HELP)
@inputs_argument()
@mapping_option
@click.option("--dry-run", is_flag=True, help="Read, map and validate; send nothing.")
@click.option("--show", default=0, type=click.IntRange(0), metavar="N",
              help="With --dry-run: print N example events in the summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@validation_options
@connection_options
@upload_options
@state_options
@handle_interrupt
def send(inputs, mapping_path, dry_run, show, as_json, now_ms, backdate_days, rejects_path,
         quiet, api_token, base_url, timeout, state_dir, restart, grace_period,
         checkpoint_interval, **upload):
    """Map, validate and send events to Metronome's /v1/ingest.

    \b
    Examples:
      segmetro send export.jsonl --dry-run --show 3
      segmetro send 'segment-logs/**/*.gz' -m mappings/default.yaml
      zcat day.gz | segmetro send - --dry-run --json
    """
    terminal = Terminal(quiet=quiet or as_json)
    flow = make_flow("send", terminal, inputs, mapping_path, now_ms, backdate_days, rejects_path)
    if dry_run:
        if state_dir:
            raise ConfigError("--state keeps the progress of real sends; leave it out of a "
                              "--dry-run")
        with progress_display(terminal, flow) as tick:
            report = run_local(flow, show=show, tick=tick)
        finish(terminal, report, as_json)
    from segmetro.checkpoint import LockHeld, StateError
    from segmetro.send import checkpointed, run_upload

    settings = upload_settings(api_token, base_url, timeout, **upload)
    with ExitStack() as stack:
        if state_dir:
            try:
                stack.enter_context(checkpointed(flow, state_dir, settings.base_url, restart,
                                                 checkpoint_interval, bool(rejects_path)))
            except LockHeld as error:
                terminal.error(str(error))
                sys.exit(int(ExitStatus.LOCKED))
            except StateError as error:
                raise ConfigError(str(error)) from None
        tick = stack.enter_context(progress_display(terminal, flow))
        report = run_upload(flow, settings, tick=tick, log=terminal.warning, grace=grace_period)
    finish(terminal, report, as_json)


@cli.command("check-auth", epilog=EXIT_CODES_HELP)
@connection_options
def check_auth_command(api_token, base_url, timeout):
    """Check the API token with Metronome (POST [] to /v1/ingest; nothing is ingested).

    Metronome answers 400 to an empty batch with a good token, and 401 or 403 with a bad one.
    Exit 0 when accepted, 3 when refused or unreachable.
    """
    import asyncio

    from segmetro.upload import check_auth

    settings = upload_settings(api_token, base_url, timeout)
    accepted, message = asyncio.run(check_auth(settings))
    terminal = Terminal()
    if accepted:
        terminal.out.print(message)
        sys.exit(int(ExitStatus.OK))
    terminal.error(message)
    sys.exit(int(ExitStatus.ABORTED))


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
    terminal = Terminal(quiet=quiet or as_json)
    flow = make_flow("map", terminal, inputs, mapping_path, now_ms, backdate_days, rejects_path)
    stream = sys.stdout.buffer if output == "-" else opened_or_exit("-o/--output", output)
    dumps = orjson.dumps
    write = stream.write
    # No bar over events scrolling past on the same terminal.
    shown = output != "-" or not sys.stdout.isatty()
    try:
        with progress_display(terminal, flow, shown) as tick:
            report = run_local(flow, tick=tick,
                               on_event=lambda event: write(dumps(event) + b"\n"))
    finally:
        stream.flush()
        if stream is not sys.stdout.buffer:
            stream.close()
    finish(terminal, report, as_json, to_stderr=True)


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
    with progress_display(terminal, flow) as tick:
        report = run_local(flow, tick=tick, track_duplicates=True)
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


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on; 0 picks a free one (printed at start).")
@click.option("--token", default="emulator-token", show_default=True, envvar="EMULATOR_TOKEN",
              help="The Bearer token the emulator accepts; others get 401.")
@click.option("--store", type=click.Path(dir_okay=False),
              help="Append accepted events here, one JSON object a line.")
@click.option("--latency", default=0.0, type=click.FloatRange(0), metavar="MS",
              help="Milliseconds to wait before every answer.")
@click.option("--latency-jitter", default=0.0, type=click.FloatRange(0), metavar="MS",
              help="Up to this many more milliseconds, at random.")
@click.option("--error-rate", default=0.0, type=click.FloatRange(0, 1),
              help="Share of ingest requests answered 500 or 503 (nothing stored).")
@click.option("--throttle-rate", default=0.0, type=click.FloatRange(0, 1),
              help="Share of ingest requests answered 429 with Retry-After.")
@click.option("--retry-after", default=0.05, show_default=True, type=click.FloatRange(0),
              help="Seconds in the Retry-After of injected 429s.")
@click.option("--drop-rate", default=0.0, type=click.FloatRange(0, 1),
              help="Share of requests whose connection is dropped after the batch was stored.")
@click.option("--max-events-per-second", default=0.0, type=click.FloatRange(0),
              help="Hard ingest limit answered with 429; 0 for none.")
@click.option("--seed", default=0, show_default=True, help="Seed of the injected faults.")
@click.option("--now", "now_ms", callback=_now_option, metavar="TIMESTAMP",
              help="Judge event timestamps as if it were this time. Default: now.")
@click.option("--backdate-days", default=DEFAULT_BACKDATE_DAYS, show_default=True,
              type=click.IntRange(0), help="Oldest event accepted, in days before now.")
def emulator(host, port, token, store, latency, latency_jitter, error_rate, throttle_rate,
             retry_after, drop_rate, max_events_per_second, seed, now_ms, backdate_days):
    """Run a local Metronome-compatible /v1/ingest server to rehearse a backfill.

    It checks auth, batch size and every event as Metronome does, dedupes by transaction_id,
    can inject latency, 5xx, 429 and dropped connections, and prints its counters on exit
    (Ctrl-C). GET /stats gives them while it runs.

    \b
    Examples:
      segmetro emulator --store accepted.jsonl
      segmetro emulator --port 0 --error-rate 0.2 --throttle-rate 0.1 --latency 50
    """
    from segmetro.emulator import EmulatorState, Faults, open_store, serve_until_signalled
    from segmetro.upload import is_loopback

    if not is_loopback(host):
        raise ConfigError(f"--host {host}: the emulator listens on loopback addresses only")
    faults = Faults(latency, latency_jitter, error_rate, throttle_rate, retry_after, drop_rate,
                    max_events_per_second, seed)
    store_file = opened_or_exit("--store", store, open_store) if store else None
    state = EmulatorState(token, faults, now_ms, backdate_days, store_file)
    terminal = Terminal()

    def ready(bound: int) -> None:
        terminal.out.print(f"segmetro emulator listening on http://{host}:{bound} "
                           "(Ctrl-C to stop)")
        sys.stdout.flush()

    try:
        serve_until_signalled(state, host, port, ready)
    finally:
        if store_file is not None:
            store_file.close()
    terminal.json(state.stats())


def main() -> None:
    # Segment records are trees of dicts and lists without reference cycles, yet every few
    # hundred allocations CPython's cyclic collector walks them, and with thousands of records
    # in flight its full collections cost a quarter of an upload's CPU (see benchmarks/).
    # Collect far less often; freeze what importing left behind.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    cli(prog_name="segmetro")

