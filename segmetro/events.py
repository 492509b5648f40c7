"""Metronome's usage event and its validation rules (schema ``Event`` of ``/v1/ingest``).

Pure functions: the clock comes in as a ``Window``, so a run can be reproduced with ``--now``.
The emulator uses the same rules, so the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from segmetro.timestamps import format_ms, parse_rfc3339

DEFAULT_BASE_URL = "https://api.metronome.com"
MAX_BATCH = 100  # events in one /v1/ingest request
REQUIRED_FIELDS = ("transaction_id", "customer_id", "event_type", "timestamp")
MAX_TRANSACTION_ID = 128
MAX_PROPERTIES = 2000
DEFAULT_BACKDATE_DAYS = 34
FUTURE_MS = 24 * 3600 * 1000
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Window:
    """The timestamps Metronome accepts at ``now_ms``: 24 h ahead, ``backdate_days`` back."""

    now_ms: int
    backdate_days: int = DEFAULT_BACKDATE_DAYS

    def __post_init__(self) -> None:
        object.__setattr__(self, "earliest_ms", self.now_ms - self.backdate_days * DAY_MS)
        object.__setattr__(self, "latest_ms", self.now_ms + FUTURE_MS)


def check_timestamp(epoch_ms: int, window: Window) -> tuple[str, str] | None:
    if epoch_ms > window.latest_ms:
        return "timestamp-in-future", (
            f"timestamp is more than 24 hours after now ({format_ms(window.now_ms)}): "
            "Metronome rejects events from the future"
        )
    if epoch_ms < window.earliest_ms:
        return "timestamp-too-old", (
            f"timestamp is older than the {window.backdate_days}-day backdating window "
            f"(earliest {format_ms(window.earliest_ms)}): Metronome rejects it; "
            "older history needs Metronome's operations team"
        )
    return None


def mapped_valid(event: dict, epoch_ms: int, window: Window) -> bool:
    """Whether ``check_mapped`` finds nothing, known without wording a reason (the usual
    event: lengths, the window and the properties count are all it has left to check)."""
    if epoch_ms < window.earliest_ms or epoch_ms > window.latest_ms or \
            not 0 < len(event["transaction_id"]) <= MAX_TRANSACTION_ID or \
            not event["customer_id"] or not event["event_type"]:
        return False
    properties = event.get("properties")
    return properties is None or len(properties) <= MAX_PROPERTIES


def check_mapped(event: dict, epoch_ms: int, window: Window) -> tuple[str, str] | None:
    """``check_event`` for an event a mapping built: its fields are strings and its timestamp
    canonical already."""
    if mapped_valid(event, epoch_ms, window):
        return None
    return check_timestamp(epoch_ms, window) or check_event(event, window, epoch_ms)


def check_event(
    event: object, window: Window, epoch_ms: int | None = None
) -> tuple[str, str] | None:
    """``(code, reason)`` for why Metronome would reject ``event``, or None when it is valid.

    ``epoch_ms`` may be passed when the caller already parsed the timestamp.
    """
    if not isinstance(event, dict):
        return "not-object", "event is not a JSON object"
    transaction_id = event.get("transaction_id")
    if not isinstance(transaction_id, str) or not transaction_id:
        return "bad-transaction-id", "transaction_id must be a non-empty string"
    if len(transaction_id) > MAX_TRANSACTION_ID:
        return "bad-transaction-id", (
            f"transaction_id is {len(transaction_id)} characters; "
            f"Metronome allows at most {MAX_TRANSACTION_ID}"
        )
    for name in ("customer_id", "event_type"):
        value = event.get(name)
        if not isinstance(value, str) or not value:
            return f"bad-{name.replace('_', '-')}", f"{name} must be a non-empty string"
    if epoch_ms is None:
        timestamp = event.get("timestamp")
        epoch_ms = parse_rfc3339(timestamp)
        if epoch_ms is None:
            return "bad-timestamp", (
                f"timestamp {timestamp!r} is not RFC 3339 with a 4-digit year "
                "(e.g. 2025-01-23T01:23:45.000Z)"
            )
    problem = check_timestamp(epoch_ms, window)
    if problem is not None:
        return problem
    if "properties" in event:
        properties = event["properties"]
        if not isinstance(properties, dict):
            return "bad-properties", "properties must be a JSON object"
        if len(properties) > MAX_PROPERTIES:
            return "bad-properties", (
                f"properties has {len(properties)} keys; Metronome allows at most {MAX_PROPERTIES}"
            )
    return None
