"""Inputs -> Segment records, each knowing its file and line.

Paths, directories (recursive, sorted), shell-style globs and ``-`` for stdin. Gzip is recognised by
its magic bytes whatever the file is called. One JSON object per line; a Segment batch envelope
(``{"batch": [...]}``) yields its items. A line that cannot be read becomes a record with ``error``
set (stage ``parse``) and reading goes on. Everything streams: memory does not grow with the input.
"""

from __future__ import annotations

import glob
import itertools
import operator
import os
import re
import stat
import sys
import zlib
from dataclasses import dataclass, field
from io import BytesIO
from typing import BinaryIO, Callable, Generator, Iterator, NamedTuple

import orjson

from segmetro import stores
from segmetro.status import InternalError
from segmetro.stores import Prefetcher, is_remote

try:  # ISA-L's inflate is about twice zlib's speed, with zlib's interface
    from isal import isal_zlib as _inflate

    _INFLATE_ERRORS: tuple = (zlib.error, _inflate.error)
except ImportError:  # pragma: no cover - a platform without its wheels: the standard library
    _inflate = zlib
    _INFLATE_ERRORS = (zlib.error,)

GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"
EVENT_SUFFIXES = (".json", ".jsonl", ".ndjson", ".gz")
ENVELOPE_KEYS = ("context", "integrations", "sentAt")
STDIN = "-"
_CHUNK = 1 << 20
_HEAD = 1024  # bytes of an over-long line kept for the rejects file
DEFAULT_MAX_LINE_BYTES = 4 << 20  # Segment caps a message at 32 KB; this is generous
REJECTS_PREFIX = "segmetro-rejects-"
ALREADY_READ = "a directory already read (a symlink loop, or a second link to it), not read again"
# (file, record, line text, line number, seq) -> taken: see ``read_file``
PlainTaker = Callable[[str, dict, bytes, int, int], bool]


class InputError(Exception):
    """An input named on the command line that cannot be used (missing, unreadable)."""


def _special_kind(mode: int) -> str:
    """What a file that is not a regular one is, for a message."""
    if stat.S_ISFIFO(mode):
        return "a pipe (as <(…) makes)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "a special file"


class InputVanished(InternalError):
    """An input that was there when the run started cannot be read any more (exit 70)."""


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
    last_on_line: bool = True  # False for a batch line's items but its last
    origin: tuple | None = None  # (file, line) it first came from, when replayed from rejects
    text: bytes | None = None  # the line it was parsed from, when the line is this one record
    repeat: int = 1  # UNREAD: the run of consecutive unread lines this record ends

    @property
    def place(self) -> str:
        """Where a person finds the record: its original file:line when replayed."""
        if self.origin is not None:
            return f"{self.origin[0]}:{self.origin[1]}"
        return f"{self.file}:{self.line}"

    def resume_after(self) -> "Position":
        """Where a reader restarts to get every record after this one: the next line, unless
        more records of this (batch) line follow."""
        if self.last_on_line:
            return Position(self.line + 1, self.seq + 1, self.seq + 1)
        return Position(self.line, self.line_seq, self.seq + 1)

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
    path: str  # STDIN for standard input; an object's URL for s3:// and gs://
    size: int | None  # bytes on disk, None when unknown (stdin)
    start: Position | None = None  # resume here (checkpoints); None reads from the top
    identity: tuple[int, int] | None = None  # (device, inode); None for stdin and objects
    version: str | None = None  # an object's ETag (S3) or generation (GCS)

    @property
    def name(self) -> str:
        return "<stdin>" if self.path == STDIN else self.path


@dataclass
class InputSet:
    files: list[InputFile]
    skipped: list[str] = field(default_factory=list)  # in directories/globs, not event data
    left_out: list[str] = field(default_factory=list)  # "path: why" (own outputs, repeats, links)
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    limit: int | None = None  # read only the first N records (--limit)
    pruned: list[str] = field(default_factory=list)  # day folders --since proves hold nothing

    @property
    def total_bytes(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(sizes)


DAY_MS = 86_400_000
DEFAULT_PRUNE_SLACK_DAYS = 7
_FIRST_DAY, _LAST_DAY = 1_262_304_000_000, 4_102_444_800_000  # 2010-01-01, 2100-01-01


@dataclass
class DayFolders:
    """Segment's day folders (``<source-id>/<UTC midnight as epoch ms>/``) that ``--since`` proves
    hold no event inside the window, left unlisted and unread.

    The rule: a folder for day D holds what Segment *received* in [D, D + 1 day). An event's
    timestamp can be any amount older than its receipt (late and offline clients), so ``--until``
    prunes nothing; it is later than its receipt only by clock skew, taken to be at most
    ``slack_ms`` (``--prune-slack``, 7 days by default). So a folder is pruned when
    D + 1 day + slack <= since, and only then."""

    since_ms: int | None = None
    slack_ms: int = DEFAULT_PRUNE_SLACK_DAYS * DAY_MS
    pruned: list[str] = field(default_factory=list)

    def prunes(self, path: str, name: str) -> bool:
        if self.since_ms is None or not (name.isascii() and name.isdigit() and
                                         12 <= len(name) <= 13):
            return False
        day = int(name)
        if day % DAY_MS or not _FIRST_DAY <= day <= _LAST_DAY:
            return False
        if day + DAY_MS + self.slack_ms <= self.since_ms:
            self.pruned.append(path)
            return True
        return False


def is_object(source: InputFile) -> bool:
    """An object in S3 or GCS (see ``stores.py``), not a file."""
    return is_remote(source.path)


def _looks_like_events(name: str) -> bool:
    lowered = name.lower()
    return not os.path.basename(lowered).startswith(".") and lowered.endswith(EVENT_SUFFIXES)


def is_own_output(name: str) -> bool:
    """segmetro's default rejects files: never read back by a later run over the directory."""
    base = os.path.basename(name)
    return base.startswith(REJECTS_PREFIX) and base.endswith(".jsonl")


class _Expansion:
    """Walks directories and globs once: no symlink loops, each file (device, inode) once."""

    def __init__(self, days: DayFolders | None = None) -> None:
        self.found: list[InputFile] = []
        self.skipped: list[str] = []
        self.left_out: list[str] = []
        self.days = days or DayFolders()
        self._files: dict[tuple[int, int], str] = {}
        self._dirs: set[tuple[int, int]] = set()
        self._objects: set[str] = set()

    def add_file(self, path: str, info: os.stat_result) -> None:
        identity = (info.st_dev, info.st_ino)
        first = self._files.get(identity)
        if first is not None:
            self.left_out.append(f"{path}: the same file as {first}, read once")
            return
        if not os.access(path, os.R_OK):
            raise InputError(f"{path}: not readable (permission denied)")
        self._files[identity] = path
        self.found.append(InputFile(path, info.st_size, None, identity))

    def walk(self, directory: str, info: os.stat_result) -> None:
        identity = (info.st_dev, info.st_ino)
        if identity in self._dirs:
            self.left_out.append(f"{directory}: {ALREADY_READ}")
            return
        self._dirs.add(identity)
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as error:
            raise InputError(f"{directory}: cannot list it ({error.strerror})") from None
        for entry in entries:
            self.entry(entry.path, entry.name, in_walk=True)

    def entry(self, path: str, name: str, in_walk: bool) -> None:
        try:
            info = os.stat(path)  # follows a symlink to what it names
        except FileNotFoundError:
            if os.path.islink(path):
                self.left_out.append(f"{path}: a dangling symlink")
                return
            raise InputError(f"{path}: no such file or directory") from None
        except OSError as error:  # ELOOP: a link to itself
            self.left_out.append(f"{path}: {error.strerror}")
            return
        if stat.S_ISDIR(info.st_mode):
            if not self.days.prunes(path, name):
                self.walk(path, info)
        elif not stat.S_ISREG(info.st_mode):
            if not in_walk:  # named on the command line: skipping it would be a silent no-op
                raise InputError(
                    f"{path}: {_special_kind(info.st_mode)}, not a regular file; give a stream "
                    f"as stdin instead: the input `-`, with `< {path}` or a pipe")
            self.skipped.append(path)
        elif in_walk and is_own_output(name):
            self.left_out.append(f"{path}: a segmetro rejects file")
        elif in_walk and not _looks_like_events(name):
            self.skipped.append(path)
        else:
            self.add_file(path, info)

    def remote(self, spec: str) -> None:
        """An object, a prefix (walked one level at a time) or a glob, in S3 or GCS."""
        if glob.has_magic(spec.partition("://")[2]):
            self._remote_glob(spec)
            return
        found = stores.stat(spec)
        if found.is_dir:
            if not self.days.prunes(found.url, found.name):
                self._remote_walk(found.url)
        else:
            self._object(found, in_walk=False)

    def _remote_walk(self, url: str) -> None:
        for item in stores.list_dir(url):
            if item.is_dir:
                if not self.days.prunes(item.url, item.name):
                    self._remote_walk(item.url)
            else:
                self._object(item, in_walk=True)

    def _object(self, item, in_walk: bool) -> None:
        if item.url in self._objects:
            self.left_out.append(f"{item.url}: named twice, read once")
        elif in_walk and is_own_output(item.name):
            self.left_out.append(f"{item.url}: a segmetro rejects file")
        elif in_walk and not _looks_like_events(item.name):
            self.skipped.append(item.url)
        else:
            self._objects.add(item.url)
            self.found.append(InputFile(item.url, item.size, None, None, item.version))

    def _remote_glob(self, spec: str) -> None:
        scheme, _, rest = spec.partition("://")
        fixed = list(itertools.takewhile(lambda part: not glob.has_magic(part), rest.split("/")))
        pattern = _glob_regex(spec)
        recursive = "**" in spec
        depth = spec.count("/")
        matches: list = []

        def visit(url: str) -> None:
            for item in stores.list_dir(url):
                if pattern.fullmatch(item.url):
                    matches.append(item)
                elif item.is_dir and (recursive or item.url.count("/") < depth) and \
                        not self.days.prunes(item.url, item.name):
                    visit(item.url)

        visit(f"{scheme}://" + "/".join(fixed))
        if not matches and not self.days.pruned:
            raise InputError(f"{spec}: the pattern matches no object")
        for item in sorted(matches, key=lambda found: found.url):
            if not item.is_dir:
                self._object(item, in_walk=True)
            elif not self.days.prunes(item.url, item.name):
                self._remote_walk(item.url)


_GLOB_PART = re.compile(r"\*\*/|\*\*|\*|\?|\[[^/\]]*\]")
_NAME = r"(?!\.)[^/]*"  # a name that does not start with a dot (hidden files, as glob does)


def _glob_regex(pattern: str) -> re.Pattern:
    """``**/`` any directories (or none), ``*`` and ``?`` within one name, ``[...]`` a class;
    as Python's glob, a wildcard does not match a leading dot."""
    out, position = [], 0
    for match in _GLOB_PART.finditer(pattern):
        out.append(re.escape(pattern[position:match.start()]))
        token = match.group()
        name_start = match.start() == 0 or pattern[match.start() - 1] == "/"
        if token == "**/":
            out.append(f"(?:{_NAME}/)*")
        elif token == "**":
            out.append(f"(?:{_NAME}(?:/{_NAME})*)?")
        elif token == "*":
            out.append(_NAME if name_start else "[^/]*")
        elif token == "?":
            out.append("[^/.]" if name_start else "[^/]")
        else:
            body = token[1:-1]
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
        position = match.end()
    out.append(re.escape(pattern[position:]))
    return re.compile("".join(out), re.DOTALL)


def _expand_glob(spec: str, expansion: _Expansion) -> None:
    """A quoted glob, walked by segmetro itself: Python's glob follows symlink loops in ``**``."""
    fixed = list(itertools.takewhile(lambda part: not glob.has_magic(part), spec.split("/")))
    base = "/".join(fixed) or ("/" if spec.startswith("/") else "")
    pattern = _glob_regex(spec)
    recursive = "**" in spec
    depth = spec.count("/")
    matches: list[str] = []
    visited: set[tuple[int, int]] = set()

    def visit(directory: str) -> None:
        try:
            info = os.stat(directory or ".")
            entries = sorted(os.scandir(directory or "."), key=lambda entry: entry.name)
        except OSError:
            return
        if (info.st_dev, info.st_ino) in visited:
            expansion.left_out.append(f"{directory}: {ALREADY_READ}")
            return
        visited.add((info.st_dev, info.st_ino))
        prefix = directory if not directory or directory.endswith("/") else directory + "/"
        for entry in entries:
            path = prefix + entry.name
            if pattern.fullmatch(path):
                matches.append(path)
            elif (recursive or path.count("/") < depth) and entry.is_dir() and \
                    not expansion.days.prunes(path, entry.name):
                visit(path)

    visit(base)
    if not matches and not expansion.days.pruned:
        raise InputError(f"{spec}: the pattern matches no file")
    for path in sorted(matches):
        expansion.entry(path, os.path.basename(path), in_walk=True)


def expand_inputs(specs: tuple[str, ...] | list[str],
                  max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
                  days: DayFolders | None = None) -> InputSet:
    """Resolve the command line's INPUT arguments; raise InputError for one that names nothing.
    Directories and globs are walked without following a symlink loop; a file reached twice
    (named twice, through a link, or in two directories) is read once. ``s3://`` and ``gs://``
    name objects, prefixes and globs in the stores (``stores.py``). With ``days``, Segment's day
    folders it proves empty of the window are not walked."""
    expansion = _Expansion(days)
    for spec in specs:
        if spec == STDIN:
            expansion.found.append(InputFile(STDIN, None))
        elif is_remote(spec):
            expansion.remote(spec)
        elif os.path.lexists(spec):
            expansion.entry(spec, os.path.basename(spec), in_walk=False)
        elif glob.has_magic(spec):
            _expand_glob(spec, expansion)
        else:
            raise InputError(f"{spec}: no such file or directory")
    return InputSet(expansion.found, expansion.skipped, expansion.left_out, max_line_bytes,
                    pruned=expansion.days.pruned)


class ByteCounter:
    """Bytes read so far from one input as it is on disk (progress by bytes)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class TruncatedGzip(Exception):
    """The gzip stream ended early or holds something that is not gzip."""


def _raw_chunks(stream: BinaryIO, counter: ByteCounter, limit: int | None = None
                ) -> Iterator[bytes]:
    """The stream's bytes as they come; with ``limit``, no more than that many."""
    read = getattr(stream, "read1", stream.read)  # read1: a pipe's bytes as they come
    left = limit
    while chunk := read(_CHUNK if left is None else min(_CHUNK, left)):
        counter.count += len(chunk)
        yield chunk
        if left is not None:
            left -= len(chunk)
            if not left:
                return


def _gunzip(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Decompress gzip chunk by chunk, member after member (concatenated files), so that a
    truncated stream still gives every byte before the cut. Output comes at most ``_CHUNK``
    at a time, so a gzip bomb is never held whole."""
    inflater = _inflate.decompressobj(wbits=31)
    in_member = False
    for chunk in chunks:
        while chunk:
            try:
                out = inflater.decompress(chunk, _CHUNK)
            except _INFLATE_ERRORS as error:
                raise TruncatedGzip(f"corrupt gzip data: {error}") from None
            in_member = True
            if out:
                yield out
            if inflater.eof:
                chunk = inflater.unused_data
                inflater = _inflate.decompressobj(wbits=31)
                in_member = False
            else:
                chunk = inflater.unconsumed_tail
    if in_member:
        raise TruncatedGzip("the gzip stream is truncated (it ends before its end marker)")


@dataclass(slots=True)
class TooLong:
    """A line over the cap, not kept: its length and first bytes, for the rejects file."""

    length: int
    head: bytes


class _Pending:
    """The line that has no end yet, across chunks; an over-long one is not held whole."""

    __slots__ = ("pieces", "size", "head", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.pieces: list[bytes] = []
        self.size = 0
        self.head = b""  # the first bytes of an over-long line, once it is known to be one
        self.max_bytes = max_bytes

    def add(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.head:
            return
        if self.size > self.max_bytes:
            self.head = (b"".join(self.pieces) + piece)[:_HEAD]
            self.pieces = []
        else:
            self.pieces.append(piece)

    def end(self, piece: bytes) -> bytes | TooLong:
        """The whole line, ``piece`` its last part."""
        if not self.size:
            return piece
        size = self.size + len(piece)
        if self.head or size > self.max_bytes:
            line: bytes | TooLong = TooLong(size, self.head or b"".join(self.pieces)[:_HEAD])
        else:
            line = b"".join(self.pieces) + piece
        self.pieces, self.size, self.head = [], 0, b""
        return line


# A chunk whose lines are mostly found in runs the byte test skips is searched whole (``_scan``);
# after one that is not, the next few are split line by line, which is cheaper when most lines
# hold a needle.
_SPLIT_AFTER_DENSE = 8


def _split_lines(chunk: bytes) -> list[bytes]:
    """``chunk.split(b"\n")``, in a third less time: BytesIO finds each line end with memchr,
    where ``split`` tests every byte."""
    lines = BytesIO(chunk).readlines()
    tail = lines.pop() if lines and lines[-1][-1:] != b"\n" else b""
    pieces = [line[:-1] for line in lines]
    pieces.append(tail)
    return pieces


def _lines(chunks: Iterator[bytes], max_bytes: int, needles: tuple[bytes, ...] | None = None
           ) -> Iterator[bytes | TooLong | int]:
    """Lines without their line end (a trailing \\r is left to the JSON parser). A line longer
    than ``max_bytes`` becomes a TooLong, found in linear time without being held whole. With
    ``needles`` (see ``read_file``), a run of lines the byte test would skip may come as its
    number of lines instead."""
    pending = _Pending(max_bytes)
    split_for = 0  # chunks to split line by line before searching whole again
    for chunk in chunks:
        if chunk.__class__ is Foreign:  # another lane's whole lines: nothing is pending
            yield chunk
            continue
        if needles is not None and not split_for and len(chunk) <= max_bytes:
            first = chunk.find(b"\n")
            if first < 0:
                pending.add(chunk)
                continue
            yield pending.end(chunk[:first])
            stop = chunk.rfind(b"\n") + 1
            runs = yield from _scan(chunk, first + 1, stop, needles)
            if not runs:
                split_for = _SPLIT_AFTER_DENSE
            if stop < len(chunk):
                pending.add(chunk[stop:])
            continue
        split_for = max(0, split_for - 1)
        pieces = _split_lines(chunk)
        last = pieces.pop()
        if pieces:
            pieces[0] = pending.end(pieces[0])
            if len(chunk) > max_bytes:  # only then can a whole line in the chunk be too long
                pieces = [TooLong(len(p), p[:_HEAD]) if p.__class__ is bytes and
                          len(p) > max_bytes else p for p in pieces]
            yield from pieces
        if last:
            pending.add(last)
    if pending.size:
        yield pending.end(b"")


# Lines holding these are tested one by one: a backslash could spell a needle with escapes, and
# a batch envelope (``"batch": [...]``, needing a "[") holds several records. The "[" goes last.
_BYTE_TEST_STOPS = (b"\\", b"[")
_FIRST_BYTE, _BEFORE_END = operator.itemgetter(0), operator.itemgetter(-2)
_OPEN, _CLOSE = {0x7B}, {0x7D}


def _scan(chunk: bytes, pos: int, stop: int, needles: tuple[bytes, ...]
          ) -> Generator[bytes | int, None, bool]:
    """The lines of ``chunk[pos:stop]`` (``stop`` just after a line end), each run of lines the
    byte test would skip given as its length. The chunk is searched for the needles, a backslash
    and a "[" (fast searches; the byte test's ``"batch"`` is not); the lines between two finds
    hold none of them, and they are a run when each is ``{…}``. Lines given one by one still meet
    the whole byte test in ``read_file``. Returns whether most lines came in runs."""
    find, rfind = chunk.find, chunk.rfind
    stops = needles + _BYTE_TEST_STOPS
    found = [find(needle, pos, stop) for needle in stops]  # the next of each, -1: none left
    if found[-1] >= 0 and find(b'"batch"', pos, stop) < 0:
        # arrays, common in real events: with no "batch" they are no envelope, so a "[" is
        # no reason to test a line alone (one slow search for this chunk, not a line each)
        found[-1] = -1
    in_runs = one_by_one = 0
    while pos < stop:
        hit = stop
        for index, at in enumerate(found):
            if 0 <= at < pos:
                at = found[index] = find(stops[index], pos, stop)
            if 0 <= at < hit:
                hit = at
        begin = max(rfind(b"\n", pos, hit) + 1, pos) if hit < stop else stop
        if begin > pos:  # whole lines without a find, each with its line end (memchr finds
            lines = BytesIO(chunk[pos:begin]).readlines()  # them; bytes.split tests each byte)
            try:
                run = set(map(_FIRST_BYTE, lines)) == _OPEN and \
                    set(map(_BEFORE_END, lines)) == _CLOSE
            except IndexError:  # an empty line
                run = False
            if run:
                in_runs += len(lines)
                yield len(lines)
            else:
                one_by_one += len(lines)
                yield from [line[:-1] for line in lines]
        if hit < stop:
            end = find(b"\n", hit, stop)
            one_by_one += 1
            yield chunk[begin:end]
            pos = end + 1
        else:
            pos = stop
    return in_runs >= 4 * one_by_one


@dataclass(slots=True)
class Foreign:
    """Whole lines another lane reads (see ``Lane``): ``read_file`` only counts them."""

    lines: int
    records: int


def _records_in(line: bytes | TooLong, max_bytes: int) -> int:
    """How many records ``read_file`` makes of one line of a file that is no rejects file (a
    batch envelope makes one of each item), parsing only a line that could be an envelope."""
    if line.__class__ is TooLong or len(line) > max_bytes:
        return 1
    if line[:3] == BOM:
        line = line[3:]
    if line.find(b"[") >= 0 and (line.find(b'"batch"') >= 0 or line.find(b"\\") >= 0):
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            return 1 if line.strip() else 0
        if data.__class__ is dict:
            batch = data.get("batch")
            if batch.__class__ is list:
                return len(batch)
        return 1
    return 1 if line.strip() else 0


LANE_SEGMENT = 256 << 10  # bytes of decompressed input a lane reads before the other's turn


class Lane:
    """The part of the input one of ``count`` reader processes reads (``reader``: map, dry runs
    and validate). Each file's decompressed bytes are cut into segments of
    ``size`` bytes, numbered on across files; lane ``index`` reads the segments whose number
    modulo ``count`` is ``index``, a line belonging to the segment its first byte is in. Of the
    other segments it only counts lines and records, so its line numbers and record numbers
    (``seq``) are the file's own and the parent merges the lanes by file and line."""

    def __init__(self, index: int, count: int, max_bytes: int, size: int | None = None,
                 whole_files: bool = False):
        self.index, self.count, self.size = index, count, size or LANE_SEGMENT
        self.max_bytes = max_bytes
        self.base = 0  # segments in the files before this one
        # Objects in stores, and files lanes cannot cut (see ``lanes_for``), are shared whole:
        # lane ``index`` reads files number ``index``, ``index + count``, ... in full.
        self.whole_files = whole_files

    def reads_file(self, number: int) -> bool:
        return not self.whole_files or number % self.count == self.index

    def cut(self, chunks: Iterator[bytes]) -> Iterator[bytes | Foreign]:
        """This lane's bytes as they come, the other lanes' lines as ``Foreign`` counts. The
        cuts are at line starts, so no line is split between lanes."""
        size, count, index = self.size, self.count, self.index
        # A line of another lane's, across chunks. One left at the end without a line end is
        # not counted: nothing of this lane's follows it.
        other = _Pending(self.max_bytes)
        offset = segment = 0
        own = self.base % count == index
        cut_from = size - 1  # a line end at or after this offset ends the segment's lines
        try:
            for chunk in chunks:
                pos, end = 0, len(chunk)
                while offset + end > cut_from:
                    stop = chunk.find(b"\n", max(pos, cut_from - offset))
                    if stop < 0:
                        break
                    piece = chunk[pos:stop + 1]
                    if own:
                        yield piece
                    else:
                        yield self._counted(piece, other)
                    pos = stop + 1
                    segment = (offset + pos) // size
                    own = (self.base + segment) % count == index
                    cut_from = (segment + 1) * size - 1
                if pos < end:
                    piece = chunk[pos:] if pos else chunk
                    if own:
                        yield piece
                    else:
                        counted = self._counted(piece, other)
                        if counted.lines:
                            yield counted
                offset += end
        except TruncatedGzip:
            if own:  # the line cut short is this lane's: it reports the broken file
                raise
            return
        finally:
            self.base += segment + 1

    def _counted(self, piece: bytes, other: _Pending) -> Foreign:
        """The lines ``piece`` ends, and their records; a line it begins waits in ``other``."""
        max_bytes = self.max_bytes
        first = piece.find(b"\n")
        if first < 0:
            other.add(piece)
            return Foreign(0, 0)
        records = _records_in(other.end(piece[:first]), max_bytes)
        stop = piece.rfind(b"\n") + 1
        lines = 1
        if stop > first + 1:
            stream = BytesIO(piece)  # shares the bytes: the lines are the only copies made
            stream.seek(first + 1)
            whole = stream.readlines()  # each with its line end, the unended rest last
            if stop < len(piece):
                whole.pop()
            lines += len(whole)
            # an envelope needs "[" and "batch" (or an escape); a blank line starts with its end
            plain = (piece.find(b"[", first + 1, stop) < 0 or
                     (piece.find(b'"batch"', first + 1, stop) < 0 and
                      piece.find(b"\\", first + 1, stop) < 0)) and \
                set(map(_FIRST_BYTE, whole)) == _OPEN
            records += len(whole) if plain else \
                sum(_records_in(line[:-1], max_bytes) for line in whole)
        if stop < len(piece):
            other.add(piece[stop:])
        return Foreign(lines, records)


def open_lines(source: InputFile, counter: ByteCounter,
               max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, fetcher=None,
               needles: tuple[bytes, ...] | None = None, lane: Lane | None = None
               ) -> tuple[Iterator[bytes | TooLong | int | Foreign], BinaryIO]:
    """The decompressed lines of one input, and the stream to close afterwards. An object in a
    store comes from ``fetcher`` (a ``stores.Prefetcher``); with ``needles``, runs of lines the
    byte test skips may come as their number (see ``_lines``); with ``lane``, other lanes' lines
    come as ``Foreign`` counts."""
    try:
        if is_object(source):
            stream = (fetcher or Prefetcher(())).open(source)
        else:
            stream = sys.stdin.buffer if source.path == STDIN else open(source.path, "rb")
    except OSError as error:
        raise InputVanished(f"{source.path}: {error.strerror or error} (it was there when the "
                            "run started)") from None
    # Lanes read a file as it was listed: one that grows meanwhile must look the same to each
    chunks = _raw_chunks(stream, counter, source.size if lane is not None else None)
    first = next(chunks, b"")
    if first[:1] == GZIP_MAGIC[:1] and len(first) == 1:  # a one-byte read: get the magic whole
        first += next(chunks, b"")
    rest = itertools.chain((first,), chunks) if first else chunks
    if first[:2] == GZIP_MAGIC:
        rest = _gunzip(rest)
    if lane is not None:
        rest = lane.cut(rest)
    return _lines(rest, max_line_bytes, needles), stream


def _parse_error(error: orjson.JSONDecodeError) -> tuple[str, str]:
    """(code, reason) for a line orjson refused."""
    if "utf-8" in error.msg.lower():
        return "invalid-utf8", "line is not valid UTF-8"
    return "invalid-json", f"invalid JSON at character {error.pos + 1}: {error.msg}"


def _envelope_items(envelope: dict, name: str, line: int, seq: int) -> Iterator[SegmentRecord]:
    defaults = {k: envelope[k] for k in ENVELOPE_KEYS if k in envelope}
    last = len(envelope["batch"]) - 1
    for index, item in enumerate(envelope["batch"]):
        if not isinstance(item, dict):
            yield SegmentRecord(
                name, line, seq + index, None,
                f"batch item {index} is not a JSON object", "not-object",
                orjson.dumps(item).decode(), seq, index == last,
            )
            continue
        merged = {**defaults, **item}
        item_context, envelope_context = item.get("context"), defaults.get("context")
        if isinstance(item_context, dict) and isinstance(envelope_context, dict):
            merged["context"] = {**envelope_context, **item_context}
        yield SegmentRecord(name, line, seq + index, merged, line_seq=seq,
                            last_on_line=index == last)


REJECT_KEYS = frozenset(("file", "line", "stage", "code", "reason", "record"))


class _Unread(dict):
    """The data of a record left unread: its line holds none of the strings every trigger needs
    (see ``MappingSet.needles``), so no mapping can match it and it is not parsed."""


UNREAD: dict = _Unread()


def _replayed(entry: dict, name: str, line_no: int, seq: int, loads) -> SegmentRecord:
    """The original record of a line of a rejects file, with the place it first came from."""
    origin = (entry.get("file"), entry.get("line"))
    record = entry["record"]
    if record.__class__ is str:  # a line that was not a JSON object: read it again
        try:
            record = loads(record)
        except orjson.JSONDecodeError as error:
            code, reason = _parse_error(error)
            return SegmentRecord(name, line_no, seq, None, reason, code, entry["record"],
                                 origin=origin)
    if record.__class__ is not dict:
        return SegmentRecord(name, line_no, seq, None, "the replayed record is not a JSON object",
                             "not-object", orjson.dumps(record).decode(), origin=origin)
    return SegmentRecord(name, line_no, seq, record, origin=origin)


def read_file(source: InputFile, counter_sink: list | None = None,
              max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
              needles: tuple[bytes, ...] | None = None, fetcher=None,
              lane: Lane | None = None, plain: PlainTaker | None = None
              ) -> Iterator[SegmentRecord]:
    """Records of one input, in order. ``counter_sink`` receives the file's ByteCounter. With
    ``lane``, only that lane's records (the file is known to be no rejects file). A line that is
    one record is offered to ``plain`` first (``pipeline.plain_taker``); one it takes makes no
    record here."""
    name = source.name
    counter = ByteCounter()
    if counter_sink is not None:
        counter_sink.append(counter)
    lines, stream = open_lines(source, counter, max_line_bytes, fetcher, needles, lane)
    loads = orjson.loads
    start = source.start or Position()
    line_no = 0
    seq = start.line_seq
    # a rejects file is read for the original records it holds (its first object says so)
    replay = False if lane is not None else None
    try:
        while line_no < start.line - 1:  # settled in an earlier run: skip unparsed
            line = next(lines, None)
            if line is None:
                return
            line_no += line if line.__class__ is int else 1
        # consecutive lines no trigger can match, not yet handed on: those of a run that went on
        # past where this run resumes, at first
        unread = line_no - max(start.line - 1, 0)
        seq += unread
        while True:
            try:
                line = next(lines)
            except StopIteration:
                break
            except TruncatedGzip as error:
                if unread:
                    yield SegmentRecord(name, line_no, seq - 1, UNREAD, repeat=unread)
                yield SegmentRecord(name, line_no + 1, seq, None, f"{error} (after line {line_no})",
                                    "bad-gzip", "")
                return
            except OSError as error:  # a disk or network file system failing mid-file
                raise InputVanished(f"{name}: reading failed after line {line_no}: "
                                    f"{error.strerror or error}") from None
            if line.__class__ is int:  # a run of lines the byte test skips (see _scan)
                line_no += line
                unread += line
                seq += line
                continue
            if line.__class__ is Foreign:  # another lane's lines
                if unread:  # a run ends where another lane's lines start
                    yield SegmentRecord(name, line_no, seq - 1, UNREAD, repeat=unread)
                    unread = 0
                line_no += line.lines
                seq += line.records
                continue
            line_no += 1
            if needles is not None and line.__class__ is bytes:
                # find, not ``in``: bytes' ``in`` first tries its operand as an integer, and
                # the TypeError it makes and drops costs more than the search
                find = line.find
                for needle in needles:  # the usual decider first: most lines that bill hold one
                    if find(needle) >= 0:
                        break
                else:
                    if line[:1] == b"{" and find(b"\\") < 0 and \
                            (find(b"[") < 0 or find(b'"batch"') < 0) and \
                            (line[-1:] == b"}" or line.rstrip()[-1:] == b"}"):
                        unread += 1  # handed on as one record when the run ends
                        seq += 1
                        continue
            if unread:
                yield SegmentRecord(name, line_no - 1, seq - 1, UNREAD, repeat=unread)
                unread = 0
            if line.__class__ is TooLong:
                yield SegmentRecord(
                    name, line_no, seq, None,
                    f"line is {line.length:,} bytes, over the {max_line_bytes:,}-byte cap "
                    "(--max-line-bytes; Segment caps a message at 32 KB); its first "
                    f"{len(line.head):,} bytes are kept", "line-too-long",
                    line.head.decode("utf-8", "backslashreplace"))
                seq += 1
                continue
            if line[:1] != b"{" and line[:3] == BOM:
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
                if replay is None:  # the first object says whether this is a rejects file
                    replay = REJECT_KEYS <= data.keys()
                if replay and "record" in data:
                    yield _replayed(data, name, line_no, seq, loads)
                    seq += 1
                    continue
                batch = data.get("batch")
                if batch.__class__ is list:
                    for record in _envelope_items(data, name, line_no, seq):
                        if record.seq >= start.seq:
                            yield record
                    seq += len(batch)
                else:
                    if plain is None or not plain(name, data, line, line_no, seq):
                        # text=line, by position: a keyword call costs ~600 instructions more
                        yield SegmentRecord(name, line_no, seq, data, None, None, None, -1,
                                            True, None, line)
                    seq += 1
            else:
                yield SegmentRecord(
                    name, line_no, seq, None,
                    f"line is JSON but not an object (found {type(data).__name__})",
                    "not-object", line.rstrip(b"\r").decode("utf-8", "backslashreplace"),
                )
                seq += 1
        if unread:
            yield SegmentRecord(name, line_no, seq - 1, UNREAD, repeat=unread)
    finally:
        if source.path != STDIN:
            stream.close()


def lanes_for(inputs: InputSet, needles: tuple[bytes, ...] | None = None) -> str | None:
    """How reader lanes (``Lane``) can share these inputs, or None:
    - ``"segments"``: local files whose first line is a record (so none is a rejects file,
      which lanes cutting a file could not tell);
    - ``"files"`` (whole files each): objects in stores, other local files, and gzipped files,
      which a lane cutting them would have to inflate whole all the same;
    - a single gzipped file is cut only when reading it is mostly parsing: when no byte test
      (``needles``) skips lines, or a quarter or more of its first lines hold a needle;
    - never stdin, a resumed file or a ``--limit`` trial."""
    if inputs.limit is not None or len(inputs.files) > 10_000:
        return None
    names = set()
    for source in inputs.files:
        if source.path == STDIN or source.start is not None or source.name in names:
            return None
        names.add(source.name)
    several = "files" if len(inputs.files) > 1 else None
    if any(is_object(source) for source in inputs.files):
        return several
    first = None
    for source in inputs.files:  # the first head that decides ends the reading
        head = _head(source.path)
        if head is None or not _starts_with_a_record(head) or (several and head.gzipped):
            return several
        first = first or head
    if first is None or not first.gzipped:
        return "segments"
    lines = first.data.split(b"\n")[:-1]
    if 4 * _holding(lines, needles) >= len(lines):
        return "segments"
    return None


_PEEK = 1 << 16  # bytes of each file that decide how lanes share it


class Head(NamedTuple):
    data: bytes  # a file's first ``_PEEK`` bytes, inflated if it is gzipped
    gzipped: bool
    inflated: int  # about how many bytes the whole file holds, inflated


def _head(path: str) -> Head | None:
    """A file's first bytes (``Head``); None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_PEEK)
            size = os.fstat(handle.fileno()).st_size
            if head[:2] != GZIP_MAGIC:
                return Head(head, False, size)
            inflater = _inflate.decompressobj(wbits=31)
            data = inflater.decompress(head, _PEEK)
            stored = len(head) - len(inflater.unconsumed_tail)
            # The head's ratio undercounts (a stream starts with its tables and no history).
            # The trailer holds the last member's size modulo 2**32: taken at the multiple of
            # 2**32 nearest the ratio's guess, as concatenated members leave only their last's,
            # and believed up to 4 times the guess (a cut-off file ends in no trailer at all).
            guess = size * len(data) // max(stored, 1)
            handle.seek(max(size - 4, 0))
            trailer = int.from_bytes(handle.read(4), "little")
            trailer += max(0, (guess - trailer + (1 << 31)) >> 32) << 32
            return Head(data, True, max(guess, min(trailer, 4 * guess)))
    except (OSError, *_INFLATE_ERRORS):
        return None


def _holding(lines: list[bytes], needles: tuple[bytes, ...] | None) -> int:
    """How many of ``lines`` hold a needle (all of them without a byte test)."""
    if needles is None:
        return len(lines)
    return sum(1 for line in lines if any(needle in line for needle in needles))


def expected_events(inputs: InputSet, needles: tuple[bytes, ...] | None = None,
                    sample: int = 32) -> int:
    """About how many events the inputs hold, to size the run-wide repeat check before it
    starts (growing it moves every id again). From the heads of up to ``sample`` local files,
    evenly spread: each one's lines (its inflated size over its head's mean line) times the
    share of its head's lines holding a needle, per byte on disk, times the local files' bytes.
    An object, unread yet: its size over 256 bytes. No more than ``--limit``. A guess, never a
    limit itself."""
    local = [source for source in inputs.files
             if source.path != STDIN and not is_object(source) and source.size]
    total = sum((source.size or 0) // 256 for source in inputs.files if is_object(source))
    events = stored = 0
    for source in local[::-(-len(local) // sample) or 1]:  # at most ``sample`` of them
        head = _head(source.path)
        if head is None or not head.data:  # unreadable, or nothing in its first bytes
            continue
        lines = head.data.split(b"\n")
        if len(lines) > 1:
            lines.pop()  # the part of a line the head cuts off
        events += head.inflated / len(head.data) * _holding(lines, needles)
        stored += source.size
    if stored:
        total += int(events * sum(source.size for source in local) / stored)
    return total if inputs.limit is None else min(total, inputs.limit)


def _starts_with_a_record(head: Head) -> bool:
    """Whether a file's first line (in its ``head``) is a JSON object that is no segmetro
    reject; an empty file is one. A first line longer than the head, or anything else: no."""
    data = head.data
    if not data:
        return True
    end = data.find(b"\n")
    if end < 0 and len(data) >= _PEEK:
        return False  # a first line longer than the peek: one reader decides
    line = data[:end] if end >= 0 else data
    try:
        record = orjson.loads(line[3:] if line[:3] == BOM else line)
    except orjson.JSONDecodeError:
        return False
    return record.__class__ is dict and not REJECT_KEYS <= record.keys()


def read_records(inputs: InputSet, counters: list | None = None,
                 on_file_done: Callable[[str], None] | None = None,
                 needles: tuple[bytes, ...] | None = None, fetcher=None,
                 lane: Lane | None = None, plain: PlainTaker | None = None
                 ) -> Iterator[SegmentRecord]:
    """Every input's records in order; with ``inputs.limit``, only the first N of them (a file
    cut short is not reported done, so a checkpoint resumes it). With ``needles``, lines that
    hold none of them are not parsed (``UNREAD``). Objects in stores come from ``fetcher``
    (by default a ``stores.Prefetcher`` of this process). With ``lane``, only its records (see
    ``Lane``). With ``plain``, the usual lines are taken as they are read (see ``read_file``)."""
    remaining = inputs.limit
    if remaining is not None:
        needles = None  # a trial of N records counts each line: no runs of unread lines
        plain = None  # nor lines taken without a record
    if fetcher is None and any(is_object(source) for source in inputs.files):
        fetcher = Prefetcher(inputs.files)
    try:
        for number, source in enumerate(inputs.files):
            if lane is not None and not lane.reads_file(number):  # another lane's, whole
                if on_file_done is not None:
                    on_file_done(source.name)
                continue
            records = read_file(source, counters, inputs.max_line_bytes, needles, fetcher,
                                None if lane is None or lane.whole_files else lane, plain)
            if remaining is None:
                yield from records
            else:
                for record in records:
                    yield record
                    remaining -= 1
                    if remaining <= 0:
                        records.close()
                        return
            if on_file_done is not None:
                on_file_done(source.name)
    finally:
        if fetcher is not None:
            fetcher.close()
