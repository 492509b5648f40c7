"""Timestamp coercion: every spelling Segment data carries, to Metronome's canonical form.

Output is UTC with milliseconds, ``YYYY-MM-DDTHH:MM:SS.mmmZ``, byte for byte what Segment's
Metronome destination sends. Each function returns ``(text, epoch_ms)`` or ``None``: a miss is an
ordinary outcome on the per-event path, so no exceptions are raised for it.

Rules (documented in the README):
- ISO 8601 / RFC 3339 with ``Z``, ``z`` or an offset (``+01:00``, ``+0100``, ``+01``), ``T`` or a
  space between date and time, any fraction length (truncated to milliseconds), non-padded month,
  day or hour (``2015-2-02T...``), date only (midnight UTC), and Go's ``time.String()`` form
  (``2020-05-09 23:54:49.209808489 +0000 UTC m=+70366.29``). A time without a zone is UTC.
- Numbers and numeric strings are epoch times; the unit is told by magnitude: below 1e11 seconds
  (1e11 s is the year 5138), below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1)
_MS_PER_DAY = 86_400_000
# Representable 4-digit years: 0001-01-01 .. 9999-12-31.
_MIN_MS = -62_135_596_800_000
_MAX_MS = 253_402_300_799_999

_ISO = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[Tt ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r" ?(Z|z|[+-]\d{2}(?::?\d{2})?)?"
    r"(?: [A-Z]{3,5})?(?: m=[+-]\d+(?:\.\d+)?)?)?"
)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})"
)
_NUMERIC = re.compile(r"-?\d+(?:\.\d+)?")
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _valid_date(year: int, month: int, day: int) -> bool:
    if not 1 <= month <= 12 or not 1 <= day <= _DAYS_IN_MONTH[month]:
        return False
    if month == 2 and day == 29:
        return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return True


def format_ms(epoch_ms: int) -> str:
    """Canonical UTC text for an epoch-milliseconds instant."""
    moment = _EPOCH + timedelta(milliseconds=epoch_ms)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )


def _offset_ms(zone: str | None) -> int:
    if zone is None or zone in "Zz":
        return 0
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) >= 4 else 0)
    return sign * minutes * 60_000


def _from_match(match: re.Match, canonical_text: str | None) -> tuple[str, int] | None:
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    y, mo, d = int(year), int(month), int(day)
    h = int(hour) if hour else 0
    mi = int(minute) if minute else 0
    s = int(second) if second else 0
    if not _valid_date(y, mo, d) or h > 23 or mi > 59 or s > 59:
        return None
    if zone and _offset_ms(zone) and abs(_offset_ms(zone)) >= _MS_PER_DAY:
        return None
    ms = int((fraction or "0")[:3].ljust(3, "0"))
    epoch_ms = (
        _days_from_civil(y, mo, d) * _MS_PER_DAY + ((h * 60 + mi) * 60 + s) * 1000 + ms
    ) - _offset_ms(zone)
    if not _MIN_MS <= epoch_ms <= _MAX_MS:
        return None
    return (canonical_text or format_ms(epoch_ms)), epoch_ms


def from_epoch(number: float) -> tuple[str, int] | None:
    magnitude = abs(number)
    if magnitude < 1e11:
        epoch_ms = number * 1000
    elif magnitude < 1e14:
        epoch_ms = number
    elif magnitude < 1e17:
        epoch_ms = number / 1000
    else:
        epoch_ms = number / 1_000_000
    epoch_ms = int(epoch_ms // 1)
    if not _MIN_MS <= epoch_ms <= _MAX_MS:
        return None
    return format_ms(epoch_ms), epoch_ms


def _is_canonical(text: str) -> bool:
    return len(text) == 24 and text[23] == "Z" and text[10] == "T" and text[19] == "."


def _canonical_fast(text: str) -> tuple[str, int] | None:
    """The spelling Segment itself writes, ``2026-11-20T10:00:00.123Z``: datetime's C parser
    checks it (Python 3.11+ reads the Z)."""
    try:
        moment = _fromisoformat(text)
    except ValueError:
        return None
    return text, (moment - _EPOCH_UTC) // _MILLISECOND  # exact: timedelta's integer arithmetic


def _canonical_regex(text: str) -> tuple[str, int] | None:
    match = _ISO.fullmatch(text)
    return None if match is None else _from_match(match, text)


_fromisoformat = datetime.fromisoformat
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND = timedelta(milliseconds=1)
try:
    _fromisoformat("2020-01-01T00:00:00.000Z")
    _canonical = _canonical_fast
except ValueError:  # Python 3.10 does not read the Z
    _canonical = _canonical_regex


def _is_canonical_shape(value: object) -> bool:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` by its separators (every third character from the fifth:
    one slice costs less than six index tests)."""
    return value.__class__ is str and len(value) == 24 and value[23] == "Z" and \
        value[4:20:3] == "--T::."


def _rfc3339_fast(text: str) -> tuple[str, int] | None:
    """RFC 3339 as server libraries spell it (``…:00Z``, ``…:00+00:00``, any fraction): the
    shape is checked by position, so only what the regex reads the same way gets here; then
    datetime's C parser does the rest. None when it does not read it (the regex decides)."""
    if not (text[4] == "-" and text[7] == "-" and text[10] in "T " and text[13] == ":" and
            text[16] == ":" and (text[-1] == "Z" or (text[-6] in "+-" and text[-3] == ":"))):
        return None
    try:
        moment = _fromisoformat(text)
    except ValueError:
        return None
    offset = moment.utcoffset()
    if offset is None:
        return None
    epoch_ms = (moment - _EPOCH_UTC) // _MILLISECOND  # exact: timedelta's integer arithmetic
    if not _MIN_MS <= epoch_ms <= _MAX_MS:
        return None
    if not offset:  # already UTC: the canonical text is the input's minute and what follows
        return (f"{text[:10]}T{text[11:16]}:{moment.second:02d}."
                f"{moment.microsecond // 1000:03d}Z"), epoch_ms
    return format_ms(epoch_ms), epoch_ms


def _utc_fast(value: str) -> tuple[str, int] | None:
    """UTC to the second as server libraries spell it, ``…[T ]HH:MM:SSZ`` and ``…+00:00``: the
    shape checked by position (every third character from the fifth, as
    ``_is_canonical_shape``), then datetime's C parser reads the digits. None for any other
    spelling, or one it does not read (Python 3.10 does not read the Z): the full path decides."""
    size = len(value)
    if not ((size == 20 and value[19] == "Z") or (size == 25 and value[19:] == "+00:00")) or \
            value[4:17:3] not in _UTC_SHAPES:
        return None
    try:
        moment = _fromisoformat(value)
    except ValueError:
        return None
    return f"{value[:10]}T{value[11:19]}.000Z", (moment - _EPOCH_UTC) // _MILLISECOND


_UTC_SHAPES = ("--T::", "-- ::")


def coerce(value: object) -> tuple[str, int] | None:
    """Any timestamp spelling found in Segment data -> (canonical text, epoch ms), or None."""
    if _canonical is _canonical_fast and _is_canonical_shape(value):
        return _canonical_fast(value)
    if value.__class__ is str and 20 <= len(value) <= 25:
        parsed = _utc_fast(value)
        if parsed is not None:
            return parsed
    if _is_canonical_shape(value):
        return _canonical(value)
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 20:
            parsed = _rfc3339_fast(text)
            if parsed is not None:
                return parsed
        match = _ISO.fullmatch(text)
        if match is not None:
            return _from_match(match, text if _is_canonical(text) else None)
        if _NUMERIC.fullmatch(text):
            return from_epoch(float(text) if "." in text else int(text))
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return from_epoch(value)
    return None


def parse_rfc3339(text: object) -> int | None:
    """Strict RFC 3339 (what Metronome accepts) -> epoch ms, or None."""
    if _is_canonical_shape(text):  # what segmetro and Segment send: skip the regex
        parsed = _canonical(text)
        return None if parsed is None else parsed[1]
    if not isinstance(text, str):
        return None
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    parsed = _from_match(match, text)
    return None if parsed is None else parsed[1]


def parse_now(text: str) -> int | None:
    """The ``--now`` option: any spelling ``coerce`` accepts, or ``now`` itself."""
    if text.strip().lower() == "now":
        return now_ms()
    parsed = coerce(text)
    return None if parsed is None else parsed[1]


def now_ms() -> int:
    return int(datetime.now(timezone.utc).timestamp() * 1000)
