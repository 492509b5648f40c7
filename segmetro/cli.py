"""Click commands only: options -> objects -> call the core -> render. No logic lives here."""

from __future__ import annotations

import errno
import gc
import io
import os
import stat
import sys
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Callable, NoReturn

import click
import orjson
from rich.markup import escape

from segmetro import __version__
from segmetro.events import DAY_MS, DEFAULT_BACKDATE_DAYS, DEFAULT_BASE_URL, MAX_BATCH, Window
from segmetro.explore import survey, survey_json
from segmetro.files import check_new_or_own, check_not_input, open_private, write_all
from segmetro.mapping import MappingError, MappingSet, load_mapping
from segmetro.pipeline import Span
from segmetro.rejects import RejectsFile, default_path
from segmetro.summary import RunReport
from segmetro.ui import Terminal
from segmetro.run import Flow, run_local
from segmetro.sources import (DEFAULT_MAX_LINE_BYTES, DEFAULT_PRUNE_SLACK_DAYS, STDIN,
                              DayFolders, InputError, InputSet, expand_inputs, read_records)
from segmetro.stores import configure as configure_stores
from segmetro.status import EXIT_CODES_HELP, ConfigError, ExitStatus, InternalError, failure
from segmetro.timestamps import now_ms as current_ms
from segmetro.timestamps import coerce as coerce_timestamp
from segmetro.timestamps import parse_now


@dataclass
class Session:
    """What the error boundary needs to know of the command that is running."""

    as_json: bool = False  # --json was asked for: every exit prints one JSON object
    json_to_stderr: bool = False  # map: stdout holds the events
    flow: Flow | None = None  # the run, once it started: a failure reports what it confirmed
    printed: bool = False  # the summary was printed
    reading: Reading = dataclass_field(default_factory=lambda: Reading())


@dataclass
class Reading:
    """What every reading command takes besides its inputs: the time window, day-folder
    pruning and anonymous access to stores (options that set this rather than each command's
    parameters)."""

    since_ms: int | None = None
    until_ms: int | None = None
    prune: bool = True
    prune_slack_days: int = DEFAULT_PRUNE_SLACK_DAYS
    anonymous: bool = False

    @property
    def span(self) -> Span:
        return Span(self.since_ms, self.until_ms)

    def days(self) -> DayFolders | None:
        if not self.prune or self.since_ms is None:
            return None
        return DayFolders(self.since_ms, self.prune_slack_days * DAY_MS)


def session() -> Session:
    return click.get_current_context().find_root().obj


def _now_option(ctx, param, value: str | None) -> int | None:
    if value is None:
        return None
    parsed = parse_now(value)
    if parsed is None:
        raise click.BadParameter(f"{value!r} is not a timestamp (e.g. 2026-11-20T00:00:00Z)")
    return parsed


def _reading(attribute: str, convert: Callable | None = None) -> Callable:
    """A callback storing an option's value in the session's ``Reading``."""

    def store(ctx, param, value):
        if convert is not None:
            value = convert(ctx, param, value)
        if value is not None:
            setattr(session().reading, attribute, value)
        return value

    return store


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
    click.option("--max-line-bytes", default=DEFAULT_MAX_LINE_BYTES, show_default=True,
                 type=click.IntRange(1024), metavar="BYTES",
                 help="Longer lines are rejected (parse: line-too-long) without being held "
                      "in memory."),
    click.option("--limit", type=click.IntRange(1), metavar="N",
                 help="Read only the first N records (to try a mapping on a slice)."),
)

anonymous_option = click.option(
    "--anonymous", is_flag=True, expose_value=False, callback=_reading("anonymous"),
    help="Read s3:// and gs:// inputs without credentials (public buckets).")

reading_options = option_group(
    anonymous_option,
    click.option("--since", metavar="TIME", expose_value=False,
                 callback=_reading("since_ms", _now_option),
                 help="Take only events at or after this time (a date or RFC 3339; UTC when "
                      "no zone is given); the others are counted as outside the window."),
    click.option("--until", metavar="TIME", expose_value=False,
                 callback=_reading("until_ms", _now_option),
                 help="Take only events before this time."),
    click.option("--no-prune", is_flag=True, expose_value=False,
                 callback=_reading("prune", lambda ctx, param, value: not value),
                 help="Read every Segment day folder, even those --since proves hold nothing."),
    click.option("--prune-slack", type=click.IntRange(0, 3650), metavar="DAYS",
                 expose_value=False, callback=_reading("prune_slack_days"),
                 help="Days an event's timestamp may run ahead of the day Segment received it "
                      f"(default {DEFAULT_PRUNE_SLACK_DAYS}); see pruning in the README."),
)


def inputs_argument(required: bool = True) -> Callable:
    return click.argument("inputs", nargs=-1, required=required,
                          metavar="INPUT..." if required else "[INPUT]...")


def load_or_exit(terminal: Terminal, mapping_path: str | None) -> MappingSet:
    try:
        return load_mapping(mapping_path)
    except MappingError as error:
        raise ConfigError(f"{len(error.problems)} problem(s) in the mapping file "
                          f"{error.source}:\n{error}") from None


def expand_or_exit(inputs: tuple[str, ...], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
                   ) -> InputSet:
    reading = session().reading
    if reading.since_ms is not None and reading.until_ms is not None and \
            reading.since_ms >= reading.until_ms:
        raise ConfigError("--since must be before --until")
    configure_stores(anonymous=reading.anonymous)
    try:
        return expand_inputs(inputs, max_line_bytes, reading.days())
    except InputError as error:
        raise ConfigError(str(error)) from None


def open_output(option: str, path: str, inputs: InputSet):
    """An output file named on the command line, opened privately (see files.py) and never an
    input; a path that cannot be written is a configuration error found before reading."""
    check_not_input(option, path, inputs.files)
    try:
        fd, _regular = open_private(path, append=False, what=option)
    except OSError as error:
        raise ConfigError(f"{option} {path}: {error.strerror or error}") from None
    return open(fd, "wb")


def cut_torn_line(fd: int, torn: int) -> None:
    """Take the last ``torn`` bytes (a line a failed write cut short) off the end of the file
    ``fd`` writes to, so that it ends with whole lines; an output that is no regular file keeps
    them."""
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR) - torn)
    except OSError:
        pass


def live_window(backdate_days: int) -> Callable[[], Window]:
    """The clock's window, read again as the run goes (a run can last hours)."""
    return lambda: Window(current_ms(), backdate_days)


def make_flow(command: str, terminal: Terminal, inputs: tuple[str, ...],
              mapping_path: str | None, now_ms: int | None, backdate_days: int,
              rejects_path: str | None, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
              limit: int | None = None) -> Flow:
    mappings = load_or_exit(terminal, mapping_path)
    input_set = expand_or_exit(inputs, max_line_bytes)
    input_set.limit = limit
    if STDIN in inputs and sys.stdin.isatty():
        terminal.warning("reading standard input (a terminal): type or paste events, one JSON "
                         "object a line, then Ctrl-D")
    if rejects_path is not None:
        check_not_input("--rejects", rejects_path, input_set.files)
        check_new_or_own(rejects_path, "--rejects")
        rejects = RejectsFile(rejects_path)
    else:
        rejects = RejectsFile(default_path(), fresh=True)
    window = Window(now_ms, backdate_days) if now_ms is not None else live_window(backdate_days)
    flow = Flow(command, input_set, mappings, window, rejects, session().reading.span)
    session().flow = flow
    return flow


def finish(terminal: Terminal, report: RunReport, as_json: bool,
           to_stderr: bool = False) -> NoReturn:
    """Print the summary and exit with the run's status."""
    if report.error is not None and not as_json:
        terminal.error(report.error)
    if as_json:
        terminal.json(report.as_json(), to_stderr=to_stderr)
    else:
        terminal.summary(report, to_stderr=to_stderr)
    session().printed = True
    sys.exit(int(report.exit_status()))


@contextmanager
def progress_display(terminal: Terminal, flow: Flow, shown: bool = True):
    """The run's progress display (bar or plain lines); yields the tick the core calls."""
    progress = terminal.progress(flow.inputs.total_bytes, shown=shown)
    try:
        yield lambda tally, done: progress.update(tally, done, flow.report.upload)
    finally:
        progress.close()


def record_time(data: dict) -> int:
    """A Segment record's ``timestamp`` in epoch ms (-1, before any window, when it has none
    that can be read)."""
    parsed = coerce_timestamp(data.get("timestamp"))
    return parsed[1] if parsed is not None else -1


def wants_json(args: list[str]) -> bool:
    """--json on the command line, found even when click cannot parse the rest."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


class SegmetroGroup(click.Group):
    """The one error boundary: every way out is an exit status from ``status.py``, a line on
    stderr, and with ``--json`` exactly one JSON object (the summary when a run started)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        args = list(sys.argv[1:] if args is None else args)
        state = Session(as_json=wants_json(args),
                        json_to_stderr=bool(args) and args[0] == "map")
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False,
                                  obj=state, **extra)
            code = result if isinstance(result, int) else 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 0
        except click.exceptions.Exit as stop:
            code = stop.exit_code
        except click.ClickException as error:  # usage errors: bad flag, missing argument
            context = getattr(error, "ctx", None)
            if context is not None:
                click.echo(f"{context.get_usage()}\nTry '{context.command_path} --help' for "
                           "help.\n", err=True)
            code = self._failed(state, ExitStatus.CONFIG, error.format_message())
        except (KeyboardInterrupt, click.exceptions.Abort):
            code = self._failed(state, ExitStatus.INTERRUPTED, "interrupted")
        except Exception as error:  # noqa: BLE001 - every error ends here, never a traceback
            status, message = failure(error)
            if os.environ.get("SEGMETRO_DEBUG"):
                import traceback

                traceback.print_exc()
            code = self._failed(state, status, message)
        if standalone_mode:
            sys.exit(code)
        return code

    @staticmethod
    def _failed(state: Session, status: ExitStatus, message: str) -> int:
        terminal = Terminal(quiet=True)
        terminal.error(message)
        flow = state.flow
        nothing_done = status in (ExitStatus.CONFIG, ExitStatus.LOCKED)
        if flow is not None and not state.printed and not nothing_done:
            report = flow.report
            report.fail(status, message)
            report = flow.finish()
            state.printed = True
            if state.as_json:
                terminal.json(report.as_json(), to_stderr=state.json_to_stderr)
            else:
                terminal.summary(report, to_stderr=True)
            return int(report.exit_status())
        if state.as_json and not state.printed:
            terminal.json({"exit_status": int(status), "error": message},
                          to_stderr=state.json_to_stderr)
        return int(status)


@click.group(cls=SegmetroGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EXIT_CODES_HELP)
@click.version_option(__version__, "--version", prog_name="segmetro")
def cli() -> None:
    """Move Segment event exports into Metronome usage events.

    Reads JSONL/NDJSON files (gzipped or not), directories, globs, s3:// and gs:// prefixes or
    '-' (stdin), applies a
    YAML mapping (Segment triggers and field mappings), validates the events against Metronome's
    rules and sends them to /v1/ingest in batches.
    """


connection_options = option_group(
    click.option("--api-token", envvar=["METRONOME_BEARER_TOKEN", "METRONOME_API_TOKEN"],
                 show_envvar=True, metavar="TOKEN",
                 help="Metronome API token (Bearer). Never printed. Prefer the environment "
                      "variable or --api-token-file: a command line is visible to other users."),
    click.option("--api-token-file", type=click.Path(dir_okay=False), metavar="PATH",
                 help="Read the API token from the first line of this file (whitespace "
                      "stripped); takes precedence over the environment variable."),
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
                      "limit is 5000), the account's total: each of N shards takes limit/N, or "
                      "draws from one budget with --rate-limit-redis; 0 for none."),
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
    click.option("--allow-new-transaction-ids", is_flag=True,
                 help="With --restart, accept a mapping that makes transaction ids "
                      "differently from the state's: every record sent before is sent again "
                      "under a new id and Metronome bills it twice."),
    click.option("--grace-period", default=10.0, show_default=True,
                 type=click.FloatRange(0),
                 help="Seconds to let requests in flight finish after Ctrl-C or SIGTERM."),
    click.option("--checkpoint-interval", default=5.0, show_default=True,
                 type=click.FloatRange(0.1),
                 help="Seconds between durable (fsynced) snapshots of the state."),
)


def read_token_file(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            first = handle.readline(4096)
    except OSError as error:
        raise ConfigError(f"--api-token-file {path}: {error.strerror or error}") from None
    try:
        return first.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"--api-token-file {path}: the first line is not UTF-8 text") from None


shard_options = option_group(
    click.option("--shard", metavar="K/N",
                 help="Take shard K of N (K from 0) of the inputs: N processes with K = 0..N-1 "
                      "take disjoint parts that together are all of them."),
    click.option("--shards", type=click.IntRange(1), envvar="SEGMETRO_SHARDS", metavar="N",
                 help="N shards, this one's K from JOB_COMPLETION_INDEX (Kubernetes Indexed "
                      "Jobs) or AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch arrays)."),
)


def apply_shard(flow: Flow, shard_text: str | None, shards: int | None):
    """Keep this shard's part of the inputs; the report names the shard and what it took."""
    from segmetro import shards as sharding

    shard = sharding.resolve(shard_text, shards)
    if shard is None:
        return None
    listed = flow.inputs.files
    flow.inputs.files = sharding.partition(listed, shard)
    flow.report.files = len(flow.inputs.files)
    flow.report.shard = {"index": shard.index, "count": shard.count,
                         "files": len(flow.inputs.files), "of_files": len(listed),
                         "bytes": sum(f.size or 0 for f in flow.inputs.files)}
    return shard


def shard_state(state_dir: str, shard, restart: bool) -> str:
    """A shard's own subdirectory of --state; a state made with another N is refused."""
    if shard is None:
        return state_dir
    if os.path.isdir(state_dir) and not restart:
        others = sorted(name for name in os.listdir(state_dir)
                        if name.startswith("shard-") and not name.endswith(f"-of-{shard.count}"))
        if others:
            raise ConfigError(f"--state {state_dir} holds the progress of another number of "
                              f"shards ({', '.join(others[:3])}); parts would be read twice or "
                              f"not at all. Use another --state, or --restart to start over "
                              f"with {shard.count}")
    from segmetro.files import private_dir

    private_dir(state_dir)
    return os.path.join(state_dir, shard.directory)


def upload_settings(api_token, base_url, timeout, api_token_file=None, batch_size=MAX_BATCH,
                    rate_limit=0.0, concurrency=64, max_retries=8, max_backoff=8.0,
                    use_gzip=False):
    from segmetro.upload import UploadSettings  # httpx: only when sending

    if api_token_file is not None:
        if click.get_current_context().get_parameter_source("api_token") is \
                click.core.ParameterSource.COMMANDLINE:
            raise ConfigError("give the token once: --api-token or --api-token-file")
        api_token = read_token_file(api_token_file)
    return UploadSettings(token=api_token or "", base_url=base_url, timeout=timeout,
                          batch_size=batch_size, rate_limit=rate_limit,
                          concurrency=concurrency, max_retries=max_retries,
                          backoff_cap=max_backoff, gzip=use_gzip)


@cli.command(epilog=EXIT_CODES_HELP)
@inputs_argument()
@mapping_option
@click.option("--dry-run", is_flag=True, help="Read, map and validate; send nothing.")
@click.option("--show", default=0, type=click.IntRange(0), metavar="N",
              help="With --dry-run: print N example events in the summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@validation_options
@reading_options
@connection_options
@upload_options
@state_options
@shard_options
@click.option("--rate-limit-redis", metavar="URL",
              help="redis://HOST:PORT/DB holding one rate budget for every shard (GCRA): "
                   "--rate-limit is then the total of all of them.")
def send(inputs, mapping_path, dry_run, show, as_json, now_ms, backdate_days, rejects_path,
         quiet, api_token, api_token_file, base_url, timeout, state_dir, restart,
         allow_new_transaction_ids, grace_period, checkpoint_interval, max_line_bytes, limit,
         shard, shards, rate_limit_redis, **upload):
    """Map, validate and send events to Metronome's /v1/ingest.

    \b
    Examples:
      segmetro send samples/segment-export.jsonl --dry-run --show 3
      segmetro send 'segment-logs/**/*.gz' -m mappings/default.yaml
      segmetro send s3://bucket/segment-logs/SRC --since 2026-11-01 --state /var/lib/segmetro
      zcat day.gz | segmetro send - --dry-run --json
    """
    terminal = Terminal(quiet=quiet)
    refuse_idle_options(dry_run=dry_run, state=bool(state_dir))
    if dry_run:
        flow = make_flow("send", terminal, inputs, mapping_path, now_ms, backdate_days,
                         rejects_path, max_line_bytes, limit)
        part = apply_shard(flow, shard, shards)
        if state_dir:  # what a resume would read, skip and send; nothing written, no lock
            from segmetro.checkpoint import preview

            check_state_apart(state_dir, flow.inputs)
            preview(flow, os.path.join(state_dir, part.directory) if part else state_dir,
                    allow_new_transaction_ids)
        with progress_display(terminal, flow) as tick:
            report = run_local(flow, show=show, tick=tick)
        finish(terminal, report, as_json)
    from segmetro.checkpoint import checkpointed
    from segmetro.send import run_upload
    from segmetro.upload import is_loopback, urlsplit

    settings = upload_settings(api_token, base_url, timeout, api_token_file, **upload)
    if now_ms is not None and not is_loopback(urlsplit(settings.base_url).hostname or ""):
        raise ConfigError("--now is for rehearsals against the emulator: with a --base-url "
                          "that is not loopback, Metronome judges timestamps by its own clock "
                          "and would reject what --now lets through; leave --now out")
    flow = make_flow("send", terminal, inputs, mapping_path, now_ms, backdate_days,
                     rejects_path, max_line_bytes, limit)
    part = apply_shard(flow, shard, shards)
    budget = rate_budget(settings, part, rate_limit_redis, terminal)
    with ExitStack() as stack:
        if state_dir:
            check_state_apart(state_dir, flow.inputs)
            stack.enter_context(checkpointed(flow, shard_state(state_dir, part, restart),
                                             settings.base_url, restart, checkpoint_interval,
                                             bool(rejects_path), allow_new_transaction_ids))
        tick = stack.enter_context(progress_display(terminal, flow))
        report = run_upload(flow, settings, tick=tick, log=terminal.warning, grace=grace_period,
                            budget=budget)
    finish(terminal, report, as_json)


def rate_budget(settings, part, redis_url: str | None, terminal: Terminal):
    """The rate budget's maker: shared in Redis, else this shard's share, else None (local)."""
    if redis_url:
        from segmetro.ratelimit import SharedBudget

        count = part.count if part else 1
        return lambda: SharedBudget(redis_url, settings.rate_limit, count, settings.base_url,
                                    terminal.warning)
    if part is not None:
        from segmetro.ratelimit import TokenBucket

        return lambda: TokenBucket(settings.rate_limit / part.count)
    return None


def refuse_idle_options(dry_run: bool, state: bool) -> None:
    """An option that does nothing in the mode chosen is an error, never silently ignored."""
    context = click.get_current_context()

    def given(name: str) -> bool:
        return context.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE

    idle = []
    if given("show") and not dry_run:
        idle.append("--show prints example events of a --dry-run")
    for name in ("restart", "checkpoint_interval", "allow_new_transaction_ids"):
        if given(name) and not state:
            idle.append(f"--{name.replace('_', '-')} works with --state")
    if dry_run and state:
        for name in ("restart", "checkpoint_interval"):
            if given(name):
                idle.append(f"--{name.replace('_', '-')} does nothing in a --dry-run (it "
                            "writes no state)")
    if idle:
        raise ConfigError("; ".join(idle))


def check_state_apart(state_dir: str, inputs: InputSet) -> None:
    """The state directory's files are outputs: none of them may be an input."""
    root = os.path.realpath(state_dir) + os.sep
    for source in inputs.files:
        if source.identity is not None and os.path.realpath(source.path).startswith(root):
            raise ConfigError(f"--state {state_dir} holds the input {source.path}: the state "
                              "directory is segmetro's own; keep inputs elsewhere")


def read_account(settings, search_rate: float = 1.0):
    from segmetro.account import AccountClient

    client = AccountClient(settings, search_rate)
    try:
        return client, client.account()
    except BaseException:
        client.close()
        raise


@cli.command(epilog="Exit codes: 0 every valid event would bill; 1 some would not (or records "
             "were rejected); 2 usage or configuration error; 3 token refused, wrong URL or "
             "Metronome unreachable; 70 internal error.")
@inputs_argument()
@mapping_option
@click.option("--by-day", is_flag=True, help="Break the usage down by day too.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as one JSON object.")
@validation_options
@reading_options
@connection_options
def preflight(inputs, mapping_path, by_day, as_json, now_ms, backdate_days, rejects_path, quiet,
              max_line_bytes, limit, api_token, api_token_file, base_url, timeout):
    """Will it bill? Check a backfill against the account's metrics and customers first.

    Maps and validates like a dry run (nothing is sent), reads the account's billable metrics
    and customers (read-only, every page), and reports per event_type the metrics each event
    matches, the events no metric takes and why, unknown and archived customers, and the usage
    the backfill adds per metric and customer.

    \b
    Examples:
      segmetro preflight samples/segment-export.jsonl --now 2026-11-25T00:00:00Z
      segmetro preflight 'archive/*.gz' -m mappings/tokens-as-string.yaml --by-day --json
    """
    from segmetro.preflight import assess, preflight_json, preflight_status

    terminal = Terminal(quiet=quiet)
    settings = upload_settings(api_token, base_url, timeout, api_token_file)
    flow = make_flow("preflight", terminal, inputs, mapping_path, now_ms, backdate_days,
                     rejects_path, max_line_bytes, limit)
    client, account = read_account(settings)
    client.close()
    report, assessment, _sample = assess(flow, account, by_day)
    session().printed = True
    if as_json:
        terminal.json(preflight_json(report, assessment))
    else:
        terminal.summary(report)
        terminal.preflight(assessment)
    sys.exit(int(preflight_status(report, assessment)))


@cli.command(epilog="Exit codes: 0 nothing short or missing; 1 usage below what the backfill "
             "adds, or sampled events missing or unmatched; 2 usage or configuration error; 3 "
             "token refused, wrong URL or Metronome unreachable; 70 internal error.")
@inputs_argument()
@mapping_option
@click.option("--sample", default=100, show_default=True, type=click.IntRange(0),
              help="Transaction ids to look up with /v1/events/search.")
@click.option("--search-rate", default=1.0, show_default=True, type=click.FloatRange(0.01),
              help="Event search requests a second (Metronome rate-limits it heavily).")
@click.option("--seed", default=0, show_default=True, help="Seed of the sample.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as one JSON object.")
@validation_options
@reading_options
@connection_options
def reconcile(inputs, mapping_path, sample, search_rate, seed, as_json, now_ms,
              backdate_days, rejects_path, quiet, max_line_bytes, limit, api_token,
              api_token_file, base_url, timeout):
    """After a send: did Metronome count what the backfill sent?

    Computes the usage the inputs should have added (as preflight does), asks Metronome for it
    (POST /v1/usage, by day) and lists every customer x metric x day below it; then looks up a
    sample of transaction ids (POST /v1/events/search, paced) and lists those not found or not
    matched to a customer or metric.

    \b
    Examples:
      segmetro reconcile samples/segment-export.jsonl --now 2026-11-25T00:00:00Z --json
    """
    from segmetro.preflight import Reconciliation, assess, check_sample, compare_usage

    terminal = Terminal(quiet=quiet)
    settings = upload_settings(api_token, base_url, timeout, api_token_file)
    flow = make_flow("reconcile", terminal, inputs, mapping_path, now_ms, backdate_days,
                     rejects_path, max_line_bytes, limit)
    client, account = read_account(settings, search_rate)
    with client:
        report, assessment, chosen = assess(flow, account, True, sample, seed)
        result = Reconciliation()
        compare_usage(client, assessment, result)
        check_sample(client, chosen, result)
    status = report.exit_status()
    if status in (ExitStatus.OK, ExitStatus.REJECTED):
        status = ExitStatus.REJECTED if result.failed() else ExitStatus.OK
    session().printed = True
    if as_json:
        terminal.json({**report.as_json(), **result.as_json(), "exit_status": int(status)})
    else:
        terminal.summary(report)
        terminal.reconciliation(result)
    sys.exit(int(status))


@cli.command(epilog="Exit codes: 0 the state was read (a directory no run used yet included); "
             "2 it cannot be read.")
@click.option("--state", "state_dir", required=True, type=click.Path(file_okay=False),
              metavar="DIR", help="The state directory of the backfill.")
@click.argument("inputs", nargs=-1, metavar="[INPUT]...")
@click.option("--json", "as_json", is_flag=True, help="Print it as one JSON object.")
@anonymous_option
def status(state_dir, inputs, as_json):
    """Where a backfill stands: per input done, partly done or not started; rejects by stage and
    reason; the last run's summary; the PID of a run in progress.

    Read-only: it works while a run holds the lock. Inputs named here that the state has not
    seen are listed as not started.

    \b
    Examples:
      segmetro status --state /var/lib/segmetro/nightly
      segmetro status --state /var/lib/segmetro/nightly 'archive/*.gz' --json
    """
    from segmetro.checkpoint import status as read_status

    files = expand_or_exit(inputs).files if inputs else []
    found = read_status(state_dir, [f for f in files if f.path != STDIN])
    terminal = Terminal()
    session().printed = True
    if as_json:
        terminal.json({**found, "exit_status": 0})
    else:
        terminal.status(found)
    sys.exit(int(ExitStatus.OK))


@cli.command("check-auth", epilog="Exit codes: 0 the token was accepted; 2 no token, or one "
             "that cannot be a token; 3 refused, wrong URL or unreachable.")
@connection_options
def check_auth_command(api_token, api_token_file, base_url, timeout):
    """Check the API token with Metronome (POST [] to /v1/ingest; nothing is ingested).

    Metronome answers 400 to an empty batch with a good token, and 401 or 403 with a bad one.
    """
    import asyncio

    from segmetro.upload import check_auth

    settings = upload_settings(api_token, base_url, timeout, api_token_file)
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
@reading_options
@shard_options
def map_command(inputs, mapping_path, output, as_json, now_ms, backdate_days, rejects_path,
                quiet, max_line_bytes, limit, shard, shards):
    """Write the Metronome events that would be sent, one JSON object per line.

    Invalid records go to the rejects file, not to the output; the summary goes to stderr and
    says how many events the output took ("written"; a failed write is exit 70).

    \b
    Examples:
      segmetro map samples/segment-export.jsonl > events.jsonl
      segmetro map 'archive/*.gz' -m mappings/tokens-as-string.yaml -o events.jsonl
    """
    terminal = Terminal(quiet=quiet)
    flow = make_flow("map", terminal, inputs, mapping_path, now_ms, backdate_days, rejects_path,
                     max_line_bytes, limit)
    apply_shard(flow, shard, shards)
    to_stdout = output == "-"
    stream = sys.stdout.buffer if to_stdout else open_output("-o/--output", output, flow.inputs)
    where = "standard output" if to_stdout else f"-o {output}"
    fd: int | None = None
    try:  # the output's own descriptor: a write's count is what the output took
        fd = stream.fileno()
        write: Callable[[memoryview], int] = lambda data: os.write(fd, data)
        stream.flush()
    except (AttributeError, io.UnsupportedOperation):  # a stream in memory (tests)
        write = stream.write
    flow.report.written, flow.report.output = 0, where

    def on_events(jsons: list[bytes]) -> None:
        data = b"\n".join(jsons) + b"\n"
        try:
            write_all(write, data)
        except OSError as error:  # the events whose whole line the output took are written
            done = getattr(error, "written", 0)
            whole = data.rfind(b"\n", 0, done) + 1
            flow.report.written += data.count(b"\n", 0, whole)
            if whole < done and fd is not None:
                cut_torn_line(fd, done - whole)
            raise InternalError(f"writing {where}: {error.strerror or error}") from None
        flow.report.written += len(jsons)

    # No bar over events scrolling past on the same terminal.
    shown = not to_stdout or not sys.stdout.isatty()
    with progress_display(terminal, flow, shown) as tick:
        report = run_local(flow, tick=tick, on_events=on_events)
    if not to_stdout:
        try:
            stream.close()
        except OSError as error:
            report.fail(ExitStatus.INTERNAL, f"writing {where}: {error.strerror or error}")
    finish(terminal, report, as_json, to_stderr=True)


@cli.command(epilog=EXIT_CODES_HELP)
@inputs_argument(required=False)
@mapping_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@validation_options
@reading_options
def validate(inputs, mapping_path, as_json, now_ms, backdate_days, rejects_path, quiet,
             max_line_bytes, limit):
    """Check the mapping file; with inputs, map and validate every record.

    With inputs it reports as `send --dry-run` does, including transaction ids the run
    produces twice (Metronome silently keeps only the first of each).

    \b
    Examples:
      segmetro validate -m mappings/fan-out.yaml
      segmetro validate -m mappings/fan-out.yaml samples/segment-export.jsonl --json
    """
    terminal = Terminal(quiet=quiet)
    if not inputs:
        mappings = load_or_exit(terminal, mapping_path)
        if as_json:
            terminal.json({"mapping": mappings.source, "valid": True,
                           "mappings": [m.name for m in mappings.mappings],
                           "warnings": mappings.warnings, "exit_status": 0})
        else:
            terminal.out.print(f"{mappings.source}: OK, {len(mappings.mappings)} mapping(s): "
                               + ", ".join(m.name for m in mappings.mappings))
            for warning in mappings.warnings:
                terminal.warning(warning)
        sys.exit(int(ExitStatus.OK))
    flow = make_flow("validate", terminal, inputs, mapping_path, now_ms, backdate_days,
                     rejects_path, max_line_bytes, limit)
    with progress_display(terminal, flow) as tick:
        report = run_local(flow, tick=tick)
    finish(terminal, report, as_json)


@cli.command()
def schema():
    """Print the JSON Schema of mapping files, for editors with a YAML language server.

    \b
    Examples:
      segmetro schema > mapping.schema.json
      # then, first line of a mapping file:
      # yaml-language-server: $schema=./mapping.schema.json
    """
    from importlib import resources

    sys.stdout.write(resources.files("segmetro").joinpath("mapping-schema.json")
                     .read_text(encoding="utf-8"))


@cli.command("import", epilog="Exit codes: 0 written and valid; 2 the file is not Segment "
             "subscriptions for Send Event, or the mapping written does not load (its problems "
             "are listed).")
@click.argument("segment_file", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("-o", "--output", default="-", show_default=True, type=click.Path(dir_okay=False),
              help="Where the mapping file goes; '-' is stdout.")
def import_command(segment_file, output):
    """Turn Segment's subscriptions for Metronome (Actions) into a segmetro mapping file.

    FILE is what Segment's Public API returns for the destination's subscriptions: one
    DestinationSubscription, a list of them, or the list response. Each becomes a mapping
    commented with its subscription; fields stay mapping-kit directives, evaluated as Segment
    evaluates them. Disabled subscriptions are kept as enabled: false. (-m also takes FILE
    directly.)

    \b
    Examples:
      segmetro import subscriptions.json -o from-segment.yaml
    """
    from segmetro.mapping import segment_import

    try:
        with open(segment_file, "rb") as handle:
            document = orjson.loads(handle.read())
    except OSError as error:
        raise ConfigError(f"{segment_file}: {error.strerror or error}") from None
    except orjson.JSONDecodeError as error:
        raise ConfigError(f"{segment_file}: not JSON ({error})") from None
    try:
        text = segment_import.to_yaml(document, os.path.basename(segment_file))
    except segment_import.ImportError_ as error:
        raise ConfigError(f"{segment_file}: {error}") from None
    if output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        check_new_or_own(output, "-o/--output")
        fd, _regular = open_private(output, append=False, what="-o/--output")
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    try:
        from segmetro.mapping import parse_mapping

        parse_mapping(text, output if output != "-" else "<imported>")
    except MappingError as error:
        raise ConfigError(f"the mapping written does not load as it is:\n{error}") from None


@cli.command()
@inputs_argument()
@click.option("--type", "type_filter", metavar="T", help="Only records of this Segment type.")
@click.option("--event", "event_filter", metavar="NAME", help="Only track events of this name.")
@click.option("--limit", type=click.IntRange(1), metavar="N",
              help="Look at the first N matching records only.")
@click.option("--json", "as_json", is_flag=True, help="Print the paths as JSON.")
@reading_options
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
    records = read_records(expand_or_exit(inputs))
    span = session().reading.span
    if span:  # by the records' own Segment timestamp: nothing is mapped here
        records = (record for record in records if record.data is None or
                   span.holds(record_time(record.data)))
    found = survey(records, type_filter, event_filter, limit)
    if as_json:
        terminal.json(survey_json(found))
        return
    if not found.groups:
        terminal.out.print("no records matched")
    for group in found.groups:
        title = group.type + (f' "{group.event}"' if group.event is not None else "")
        terminal.out.print(f"[bold]{escape(title)}[/]: {group.records:,} record(s)")
        for path, stats in group.paths.items():
            types = "|".join(stats.types)
            examples = ", ".join(orjson.dumps(e).decode() for e in stats.examples)
            share = stats.count / group.records
            terminal.out.print(f"  {escape(path):<48} {share:>5.0%}  {types:<14} "
                               f"{escape(examples)}")
    for code, count in found.unreadable.most_common():
        terminal.warning(f"{count:,} line(s) could not be read ({code}), first at "
                         f"{found.first_unreadable[code]}")


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
@click.option("--billable-metrics", "metrics_file", type=click.Path(dir_okay=False),
              help="Serve the account's billable metrics from this JSON file (Metronome's list "
                   "response, or a list); enables the read side (metrics, customers, event "
                   "search, usage).")
@click.option("--customers", "customers_file", type=click.Path(dir_okay=False),
              help="Serve the account's customers from this JSON file (list response or list).")
@click.option("--page-size", default=100, show_default=True, type=click.IntRange(1, 100),
              help="Most items a page of the read side holds.")
@click.option("--lose-rate", default=0.0, type=click.FloatRange(0, 1),
              help="Share of accepted events acknowledged but left out of usage (to rehearse a "
                   "reconcile that finds a shortfall).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), metavar="PEM",
              help="Serve HTTPS with this certificate chain (PEM), to rehearse a CA bundle "
                   "(SSL_CERT_FILE) or a proxy.")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), metavar="PEM",
              help="The certificate's private key, when not in --tls-cert's file.")
def emulator(host, port, token, store, latency, latency_jitter, error_rate, throttle_rate,
             retry_after, drop_rate, max_events_per_second, seed, now_ms, backdate_days,
             metrics_file, customers_file, page_size, lose_rate, tls_cert, tls_key):
    """Run a local Metronome-compatible /v1/ingest server to rehearse a backfill.

    It checks auth, batch size and every event as Metronome does, dedupes by transaction_id,
    can inject latency, 5xx, 429 and dropped connections, and prints its counters on exit
    (Ctrl-C). GET /stats gives them while it runs.

    \b
    Examples:
      segmetro emulator --store accepted.jsonl
      segmetro emulator --port 0 --error-rate 0.2 --throttle-rate 0.1 --latency 50
    """
    from segmetro.emulator import (EmulatorState, Faults, open_store, serve_until_signalled,
                                   tls_context)
    from segmetro.upload import is_loopback

    if not is_loopback(host):
        raise ConfigError(f"--host {host}: the emulator listens on loopback addresses only")
    tls = None
    if tls_cert:
        try:
            tls = tls_context(tls_cert, tls_key)
        except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
            raise ConfigError(f"--tls-cert {tls_cert}: {error}") from None
    elif tls_key:
        raise ConfigError("--tls-key needs --tls-cert")
    faults = Faults(latency, latency_jitter, error_rate, throttle_rate, retry_after, drop_rate,
                    max_events_per_second, lose_rate, seed)
    account = None
    if metrics_file or customers_file:
        from segmetro.emulator_account import AccountService

        account = AccountService(read_list("--billable-metrics", metrics_file),
                                 read_list("--customers", customers_file), page_size)
    store_file = open_store(store) if store else None
    state = EmulatorState(token, faults, now_ms, backdate_days, store_file, account=account)
    terminal = Terminal()

    def ready(bound: int) -> None:
        terminal.out.print(f"segmetro emulator listening on {'https' if tls else 'http'}://"
                           f"{host}:{bound} "
                           "(Ctrl-C to stop)")
        sys.stdout.flush()

    try:
        serve_until_signalled(state, host, port, ready, tls)
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: "
                          f"{os.strerror(error.errno) if error.errno else error}"
                          + (" (another program uses it; --port 0 picks a free one)"
                             if error.errno == errno.EADDRINUSE else "")) from None
    finally:
        if store_file is not None:
            store_file.close()
    terminal.json(state.stats())


def read_list(option: str, path: str | None) -> list:
    """A fixture: Metronome's list response ({"data": [...]}) or a plain list."""
    if path is None:
        return []
    try:
        with open(path, "rb") as handle:
            document = orjson.loads(handle.read())
    except (OSError, orjson.JSONDecodeError) as error:
        raise ConfigError(f"{option} {path}: {getattr(error, 'strerror', None) or error}") \
            from None
    items = document.get("data") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise ConfigError(f"{option} {path}: expected {{\"data\": [...]}} or a list")
    return items


def main() -> None:
    # Segment records are trees of dicts and lists without reference cycles, yet every few
    # hundred allocations CPython's cyclic collector walks them, and with thousands of records
    # in flight its full collections cost a quarter of an upload's CPU (see benchmarks/).
    # Collect far less often; freeze what importing left behind.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    cli(prog_name="segmetro")

