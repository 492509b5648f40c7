"""Exit statuses, and the errors that carry one (as httpie's ``status.py``).

Every way a run can end maps to one status here; ``cli.main`` is the one boundary that turns an
error into its status, a line on stderr and (with ``--json``) one JSON object on stdout.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0  # finished; every record fine (skipped by triggers counts as fine)
    REJECTED = 1  # finished; some records rejected (see the rejects file)
    CONFIG = 2  # usage or configuration error: nothing was read or sent
    ABORTED = 3  # token refused, Metronome misrouted or unreachable after retries
    LOCKED = 4  # another run holds the state's lock (cron overlap): nothing was done
    INTERNAL = 70  # something unexpected (BSD's EX_SOFTWARE): the summary says what was confirmed
    INTERRUPTED = 130  # Ctrl-C
    TERMINATED = 143  # SIGTERM


EXIT_CODES_HELP = (
    "Exit codes: 0 finished, every record fine (records no trigger matched count as fine); "
    "1 finished, some records rejected (see the rejects file); 2 usage or configuration error, "
    "nothing done; 3 aborted (token refused, wrong URL, Metronome unreachable after retries, "
    "TLS certificate not trusted, store credentials refused or store unreachable); "
    "4 another run holds the --state lock, nothing done; 70 internal error (the summary says "
    "what was confirmed); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM)."
)


class SegmetroError(Exception):
    """An error a person can act on; ``status`` is the exit status it ends the run with."""

    status = ExitStatus.INTERNAL

    def __init__(self, message: str, status: ExitStatus | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


class ConfigError(SegmetroError):
    """A usage or configuration error, found before anything was read or sent (exit 2)."""

    status = ExitStatus.CONFIG


class InternalError(SegmetroError):
    """Something that should not happen mid-run: a reader process died, an input vanished, an
    output could not be written (exit 70)."""

    status = ExitStatus.INTERNAL


def failure(error: BaseException) -> tuple[ExitStatus, str]:
    """The exit status and the one line a person sees for an error that ended a run."""
    if isinstance(error, SegmetroError):
        return error.status, str(error)
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return ExitStatus.INTERNAL, f"{where}{error.strerror or error}"
    return ExitStatus.INTERNAL, f"internal error: {type(error).__name__}: {error}"
