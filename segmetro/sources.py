"""Inputs -> Segment records, each knowing its file and line.

Paths, directories (recursive, sorted), shell-style globs and ``-`` for stdin. Gzip is recognised by
its magic bytes whatever the file is called. One JSON object per line; a Segment batch envelope
(``{"batch": [...]}``) yields its items. A line that cannot be read becomes a record with ``error``
set (stage ``parse``) and reading goes on. Everything streams: memory does not grow with the input.
"""

from __future__ import annotations

import glob
import itertools
import os
import sys
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

import orjson

GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"
EVENT_SUFFIXES = (".json", ".jsonl", ".ndjson", ".gz")
ENVELOPE_KEYS = ("context", "integrations", "sentAt")
STDIN = "-"
_CHUNK = 1 << 20


class InputError(Exception):
    """An input named on the command line that cannot be used (missing, unreadable)."""


@dataclass(slots=True)
class SegmentRecord:
    """One Segment event, or the text of a line that could not be read as one."""

    file: str
    line: int
    seq: int  # position of the record in its file, counting every record; stable across runs
    data: dict | None
    error: str | None = None
    error_code: str | None = None
    raw: str | None = None
    line_seq: int = -1  # seq of the first record on this line, when the line holds several

    def resume_after(self) -> "Position":
        """Where a reader restarts to get every record after this one."""
        return Position(self.line, self.line_seq if self.line_seq >= 0 else self.seq,
                        self.seq + 1)

    def resume_at(self) -> "Position":
        """Where a reader restarts to get this record and every one after it."""
        return Position(self.line, self.line_seq if self.line_seq >= 0 else self.seq, self.seq)


@dataclass(frozen=True)
class Position:
    """A place to resume reading: skip lines before ``line`` unread, count records from
    ``line_seq`` at that line, and drop records before ``seq``."""

    line: int = 1
    line_seq: int = 0
    seq: int = 0


@dataclass(slots=True)
class InputFile:
    path: str  # STDIN for standard input
    size: int | None  # bytes on disk, None when unknown (stdin)
    start: Position | None = None  # resume here (checkpoints); None reads from the top

    @property
    def name(self) -> str:
        return "<stdin>" if self.path == STDIN else self.path


@dataclass
class InputSet:
    files: list[InputFile]
    skipped: list[str] = field(default_factory=list)  # files in directories that are not event data

    @property
    def total_bytes(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(sizes)


def _looks_like_events(name: str) -> bool:
    lowered = name.lower()
    return not os.path.basename(lowered).startswith(".") and lowered.endswith(EVENT_SUFFIXES)


def _input_file(path: str) -> InputFile:
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: not readable (permission denied)")
    return InputFile(path, os.path.getsize(path))


def _walk(directory: str, found: list[InputFile], skipped: list[str]) -> None:
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            if _looks_like_events(name) and os.path.isfile(path):
                found.append(_input_file(path))
            else:
                skipped.append(path)


def expand_inputs(specs: tuple[str, ...] | list[str]) -> InputSet:
    """Resolve the command line's INPUT arguments; raise InputError for one that names nothing."""
    found: list[InputFile] = []
    skipped: list[str] = []
    for spec in specs:
        if spec == STDIN:
            found.append(InputFile(STDIN, None))
        elif os.path.isdir(spec):
            _walk(spec, found, skipped)
        elif os.path.isfile(spec):
            found.append(_input_file(spec))
        elif glob.has_magic(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                raise InputError(f"{spec}: the pattern matches no file")
            for path in matches:
                if os.path.isdir(path):
                    _walk(path, found, skipped)
                elif _looks_like_events(path):
                    found.append(_input_file(path))
                else:
                    skipped.append(path)
        elif os.path.exists(spec):
            raise InputError(f"{spec}: not a regular file or directory")
        else:
            raise InputError(f"{spec}: no such file or directory")
    return InputSet(found, skipped)


class ByteCounter:
    """Bytes read so far from one input as it is on disk (progress by bytes)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class TruncatedGzip(Exception):
    """The gzip stream ended early or holds something that is not gzip."""


def _raw_chunks(stream: BinaryIO, counter: ByteCounter) -> Iterator[bytes]:
    read = getattr(stream, "read1", stream.read)  # read1: a pipe's bytes as they come
    while chunk := read(_CHUNK):
        counter.count += len(chunk)
        yield chunk


def _gunzip(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Decompress gzip chunk by chunk, member after member (concatenated files), so that a
    truncated stream still gives every byte before the cut."""
    inflater = zlib.decompressobj(wbits=31)
    in_member = False
    for chunk in chunks:
        while chunk:
            try:
                out = inflater.decompress(chunk)
            except zlib.error as error:
                raise TruncatedGzip(f"corrupt gzip data: {error}") from None
            in_member = True
            if out:
                yield out
            if inflater.eof:
                chunk = inflater.unused_data
                inflater = zlib.decompressobj(wbits=31)
                in_member = False
            else:
                chunk = b""
    if in_member:
        raise TruncatedGzip("the gzip stream is truncated (it ends before its end marker)")


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Lines without their line end (a trailing \\r is left to the JSON parser)."""
    pending = b""
    for chunk in chunks:
        pieces = (pending + chunk).split(b"\n") if pending else chunk.split(b"\n")
        pending = pieces.pop()
        yield from pieces
    if pending:
        yield pending


def open_lines(source: InputFile, counter: ByteCounter) -> tuple[Iterator[bytes], BinaryIO]:
    """The decompressed lines of one input, and the stream to close afterwards."""
    stream = sys.stdin.buffer if source.path == STDIN else open(source.path, "rb")
    chunks = _raw_chunks(stream, counter)
    first = next(chunks, b"")
    if first[:1] == GZIP_MAGIC[:1] and len(first) == 1:  # a one-byte read: get the magic whole
        first += next(chunks, b"")
    rest = itertools.chain((first,), chunks) if first else chunks
    if first[:2] == GZIP_MAGIC:
        return _lines(_gunzip(rest)), stream
    return _lines(rest), stream


def _parse_error(error: orjson.JSONDecodeError) -> tuple[str, str]:
    """(code, reason) for a line orjson refused."""
    if "utf-8" in error.msg.lower():
        return "invalid-utf8", "line is not valid UTF-8"
    return "invalid-json", f"invalid JSON at character {error.pos + 1}: {error.msg}"


def _envelope_items(envelope: dict, name: str, line: int, seq: int) -> Iterator[SegmentRecord]:
    defaults = {k: envelope[k] for k in ENVELOPE_KEYS if k in envelope}
    for index, item in enumerate(envelope["batch"]):
        if not isinstance(item, dict):
            yield SegmentRecord(
                name, line, seq + index, None,
                f"batch item {index} is not a JSON object", "not-object",
                orjson.dumps(item).decode(), seq,
            )
            continue
        merged = {**defaults, **item}
        item_context, envelope_context = item.get("context"), defaults.get("context")
        if isinstance(item_context, dict) and isinstance(envelope_context, dict):
            merged["context"] = {**envelope_context, **item_context}
        yield SegmentRecord(name, line, seq + index, merged, line_seq=seq)


def read_file(source: InputFile, counter_sink: list | None = None) -> Iterator[SegmentRecord]:
    """Records of one input, in order. ``counter_sink`` receives the file's ByteCounter."""
    name = source.name
    counter = ByteCounter()
    if counter_sink is not None:
        counter_sink.append(counter)
    lines, stream = open_lines(source, counter)
    loads = orjson.loads
    start = source.start or Position()
    line_no = 0
    seq = start.line_seq
    try:
        for _ in range(start.line - 1):  # settled in an earlier run: skip unparsed
            if next(lines, None) is None:
                return
            line_no += 1
        while True:
            try:
                line = next(lines)
            except StopIteration:
                break
            except TruncatedGzip as error:
                yield SegmentRecord(name, line_no + 1, seq, None, f"{error} (after line {line_no})",
                                    "bad-gzip", "")
                return
            except OSError as error:  # a disk or network file system failing mid-file
                yield SegmentRecord(name, line_no + 1, seq, None,
                                    f"reading stopped after line {line_no}: {error}",
                                    "read-error", "")
                return
            line_no += 1
            if line[:3] == BOM:
                line = line[3:]
            try:
                data = loads(line)
            except orjson.JSONDecodeError as error:
                if not line.strip():
                    continue
                code, reason = _parse_error(error)
                text = line.rstrip(b"\r").decode("utf-8", "backslashreplace")
                yield SegmentRecord(name, line_no, seq, None, reason, code, text)
                seq += 1
                continue
            if data.__class__ is dict:
                batch = data.get("batch")
                if batch.__class__ is list:
                    for record in _envelope_items(data, name, line_no, seq):
                        if record.seq >= start.seq:
                            yield record
                    seq += len(batch)
                else:
                    yield SegmentRecord(name, line_no, seq, data)
                    seq += 1
            else:
                yield SegmentRecord(
                    name, line_no, seq, None,
                    f"line is JSON but not an object (found {type(data).__name__})",
                    "not-object", line.rstrip(b"\r").decode("utf-8", "backslashreplace"),
                )
                seq += 1
    finally:
        if source.path != STDIN:
            stream.close()


def read_records(inputs: InputSet, counters: list | None = None,
                 on_file_done: Callable[[str], None] | None = None) -> Iterator[SegmentRecord]:
    for source in inputs.files:
        yield from read_file(source, counters)
        if on_file_done is not None:
            on_file_done(source.name)
