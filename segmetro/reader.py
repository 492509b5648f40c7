"""Reading, mapping and validating in a second process, so that a send uses two cores.

An upload is CPU-bound in one Python process: about 9 µs of every event's 25 went to parsing and
mapping, the rest to HTTP. Here a child process runs ``read_records`` and ``process`` and streams
compact outcomes to the parent over a pipe; the parent keeps everything that must be exact and
durable (the tally, the rejects file, the checkpoint ledger, the upload) and only decodes.

Events travel as the JSON the child made of them (for the repeat check), so the parent writes
those bytes as they are, or joins them into a request body (``Events``), and never rebuilds the
dict. The repeat check runs in whichever process has room (see ``ReaderProcess.repeats``).

Wire format: frames of a 4-byte length and a pickled message, one of
``("outcomes", [tuple, ...], bytes_read)``, ``("file_done", name)``, ``("end", bytes_read)`` and
``("error", exit_status, message, file_number)`` (the input it was reading). An outcome is a
flat tuple (``_encode``/``decode``): pickling a dataclass a record would cost more than the rest
of the parent's work on it. The usual line, one record making one valid event, travels in a run
of such events as columns (``_Entries``), which the parent counts in bulk, and a checkpoint
ledger follows as one entry (``run.Flow.take_entries``). A record's JSON travels as bytes and
reaches the rejects file as an ``orjson.Fragment``, never parsed twice.

Map, dry runs and validate fork two readers (lanes, ``sources.Lane``), each reading every other
segment of the input, or every other file whole (objects, files lanes cannot cut; each lane then
has its own feed); ``ReaderProcess._merged`` puts their outcomes back in input order, so the
parent sees what one reader would have sent.

The child is a bare ``os.fork`` that closes every descriptor but the pipe's write end: it must not
keep the run lock, sockets or the pipe's read end alive. So when the parent dies (even by
``kill -9``) the child's next write fails with EPIPE and it exits; when the parent stops early it
terminates the child.
"""

from __future__ import annotations

import bisect
import fcntl
import os
import pickle
import signal
import struct
import traceback
from contextlib import aclosing
from itertools import repeat
from typing import AsyncIterator, Callable, Iterator

import orjson

from segmetro.events import Window
from segmetro.mapping import MappingSet, parse_mapping
from segmetro.pipeline import (DUPLICATE, EVENT, OUTSIDE, REJECTED, SKIPPED, UNREAD_TYPE, Outcome,
                               RepeatCheck, Span, plain_taker, process)
from segmetro.sources import (UNREAD, ByteCounter, InputSet, Lane, SegmentRecord, is_object,
                              expected_events, lanes_for, read_records)
from segmetro.stores import FedObjects, feed_objects
from segmetro.status import ExitStatus, InternalError, SegmetroError, failure

CHUNK = 512  # outcomes a frame
LANES = 2  # reader processes sharing a map, dry run or validate (see ``sources.Lane``)
_AFTER_LINES = float("inf")
_HEADER = struct.Struct("<I")
_KINDS = (EVENT, SKIPPED, REJECTED, DUPLICATE, OUTSIDE)
_UNREAD_RUN = 9  # an entry standing for a run of unread lines
EVENT_RUN = 10  # an entry standing for events of consecutive one-record lines (``_Entries``)
_KIND_NUMBER = {kind: number for number, kind in enumerate(_KINDS)}  # EVENT is 0 (see _encode)


def _encode(outcome: Outcome, child_checks: bool = True) -> tuple:
    record = outcome.record
    data = record.data
    kind = outcome.kind
    body = None
    if data is not None and (kind is EVENT or kind is REJECTED):
        # kept for the rejects file (an upload, or the parent's repeat check, may still reject
        # an event): the line as read when it is this record's own, so the record is not
        # serialised a second time
        body = record.text if record.text is not None else orjson.dumps(data)
    event_json = outcome.event_json
    if event_json is None and outcome.event is not None and kind is REJECTED:
        event_json = orjson.dumps(outcome.event)
    transaction_id = None
    if not child_checks and kind is EVENT:  # for the parent's repeat check
        transaction_id = outcome.event["transaction_id"]
    return (0 if kind is EVENT else _KIND_NUMBER[kind], record.file, record.line, record.seq,
            record.line_seq, record.last_on_line, outcome.final, event_json, outcome.event_type,
            outcome.timestamp, outcome.stage, outcome.code, outcome.reason, outcome.mapping,
            body, record.raw, record.origin, transaction_id)


class _Entries:
    """A frame's entries, as the child makes them from its outcomes, in order.

    Most outcomes become one flat tuple each (``add``, ``_encode``). A run of unread lines is
    one entry (``skip``). And the usual export line, one record that maps to one valid event,
    joins an event run (``add_plain``, which ``pipeline.plain_taker`` calls as the line is read,
    with no record or outcome made for it):
    the events of a stretch of consecutive one-record lines, the lines between them unread,
    sent as columns, ``(EVENT_RUN, file, first line, first seq, events, None, True, event
    JSONs, event types, timestamps, mappings, record lines, line numbers, transaction ids or
    None, answers or None)``; a line's seq is the first seq plus its distance from the first
    line. A run ends with its frame, at most ``CHUNK`` events. The parent takes a run in bulk
    (``run.Flow.take_entries``) or as outcomes (``run_outcomes``).

    With ``repeats`` (a send: the child checks), events meet the repeat check here, in input
    order: a run's in bulk when it closes (``RepeatCheck.check_run``; its answers, by index,
    travel with it, and its ids only when there are answers), any other event as it comes,
    after the run before it. Without, the parent checks (it needs every event's id)."""

    def __init__(self, repeats: RepeatCheck | None, full: Callable[[], None]):
        self.entries: list = []
        self.weight = 0  # outcomes in the entries, a run's events each counted
        self.repeats = repeats
        self.full = full  # called when a plain event fills the frame (it sends the frame)
        self.unread = 0  # pending unread lines (not yet an entry), and the last one's record
        self.unread_last: SegmentRecord | None = None
        self.columns: tuple | None = None  # the open run's
        self.file: str | None = None
        self.first = self.seq = self.next = 0  # the run's first line and seq; its next line

    def skip(self, outcome: Outcome) -> None:
        """A run of unread lines (``outcome.repeat`` of them)."""
        if self.unread and outcome.record.file is not self.unread_last.file:
            self.flush_unread()
        self.unread += outcome.repeat
        self.unread_last = outcome.record

    def add(self, outcome: Outcome) -> None:
        """Any outcome but an unread run's and a plain event's."""
        self.flush_unread()
        self.close()
        if outcome.kind is EVENT and self.repeats is not None:
            outcome = self.repeats.outcome(outcome.record, outcome.event, outcome.event_json,
                                           outcome.event["transaction_id"], outcome.mapping,
                                           outcome.final, outcome.event_type, outcome.timestamp)
        self.entries.append(_encode(outcome, self.repeats is not None))
        self.weight += 1

    def add_plain(self, file: str, line: int, seq: int, text: bytes, event_json: bytes,
                  event_type: str, timestamp: str, mapping: str, transaction_id: str) -> None:
        """A line that is one record, making one valid event (``pipeline.plain_taker``'s
        ``add``): ``line`` and record ``seq`` of ``file``, its ``text``."""
        if self.columns is None or file != self.file or \
                line != self.next + self.unread or seq - line != self.seq - self.first:
            # not the next line of the open run, counting any unread lines between
            self.close()
            self.flush_unread()
            self.columns = ([], [], [], [], [], [], [])
            self.file, self.first, self.seq = file, line, seq
        self.unread = 0  # those lines are inside the run
        self.next = line + 1
        jsons, types, stamps, mappings, texts, lines, ids = self.columns
        jsons.append(event_json)
        types.append(event_type)
        stamps.append(timestamp)
        mappings.append(mapping)
        texts.append(text)
        lines.append(line)
        ids.append(transaction_id)
        self.weight += 1
        if self.weight >= CHUNK:
            self.full()

    def close(self) -> None:
        """Close the open run (pending unread lines after it stay pending), checked for
        repeats here when the child checks."""
        columns = self.columns
        if columns is not None:
            jsons, types, stamps, mappings, texts, lines, ids = columns
            answers = None
            if self.repeats is not None:
                answers = self.repeats.check_run(self.file, lines, ids, jsons) or None
                if answers is None:
                    ids = None  # the parent needs them only to word a verdict
            self.entries.append((EVENT_RUN, self.file, self.first, self.seq, len(jsons), None,
                                 True, jsons, types, stamps, mappings, texts, lines, ids,
                                 answers))
            self.columns = None

    def flush_unread(self) -> None:
        if self.unread:
            self.close()
            record = self.unread_last
            self.entries.append((_UNREAD_RUN, self.unread, record.file, record.line, record.seq,
                                 record.line_seq, record.last_on_line))
            self.unread = 0

    def take(self) -> list:
        """Every entry so far; the next frame starts empty."""
        self.close()
        self.flush_unread()
        entries, self.entries, self.weight = self.entries, [], 0
        return entries


def _pipe() -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    try:  # Linux: a 1 MiB pipe lets the writer run further ahead of the reader
        fcntl.fcntl(write_fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except OSError:
        pass
    return read_fd, write_fd


def use_reader_process() -> bool:
    """Read and map in a second process when there is a second core to run it on
    (``SEGMETRO_READER_PROCESS=0`` keeps everything in one process)."""
    if os.environ.get("SEGMETRO_READER_PROCESS", "1") == "0":
        return False
    return hasattr(os, "fork") and (os.cpu_count() or 1) > 1


def _child(fd: int, job: "ReaderProcess", feed_fd: int | None, lane: Lane | None) -> None:
    """The reader process: every outcome of ``job`` (of ``lane``'s part), in order, to the pipe.
    Never returns. Objects in stores come from the parent over ``feed_fd`` (see
    ``stores.feed_objects``)."""
    signal.set_wakeup_fd(-1)  # the parent's event loop is not ours
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    low = 3
    for kept in sorted(k for k in (fd, feed_fd) if k is not None):
        os.closerange(low, kept)
        low = kept + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))
    out = os.fdopen(fd, "wb", buffering=1 << 16)

    def send(message: tuple) -> None:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(_HEADER.pack(len(payload)) + payload)

    counters: list[ByteCounter] = []

    def send_chunk() -> None:
        send(("outcomes", entries.take(), sum(c.count for c in counters)))

    files_done = [0]  # so the input being read is number files_done[0]

    def file_done(name: str) -> None:
        send_chunk()
        send(("file_done", name))
        files_done[0] += 1

    try:
        mappings = parse_mapping(job.mappings.text, job.mappings.source)
        fetcher = FedObjects(feed_fd) if feed_fd is not None else None
        # the repeat check, here (in bulk, see ``_Entries``) or in the parent
        entries = _Entries(RepeatCheck(expected_events(job.inputs, mappings.needles))
                           if job.repeats is None else None, send_chunk)
        # the usual line joins its run as it is read; process has the rest
        take, apply = plain_taker(mappings, job.window, job.span, entries.add_plain)
        records = read_records(job.inputs, counters, file_done, mappings.needles, fetcher, lane,
                               take)
        skip, add = entries.skip, entries.add
        for outcome in process(records, mappings, job.window, job.span, repeats=None,
                               apply=apply):
            if outcome.record.data is UNREAD:  # sent as one entry per run, not one per line
                skip(outcome)
                if entries.unread >= 65536:
                    send_chunk()
                continue
            add(outcome)
            if entries.weight >= CHUNK and outcome.final:  # a record's outcomes stay together
                send_chunk()
        send_chunk()
        send(("end", sum(c.count for c in counters)))
        out.flush()
    except BrokenPipeError:
        os._exit(0)  # the parent is gone
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which fails the run
        status, message = failure(error)
        if os.environ.get("SEGMETRO_DEBUG"):
            message += "\n" + traceback.format_exc()
        try:
            send(("error", int(status), message, files_done[0]))
            out.flush()
        except OSError:
            pass
        os._exit(1)
    os._exit(0)


class ReaderProcess:
    """The parent's side: outcomes as if ``process(read_records(...))`` ran here."""

    def __init__(self, inputs: InputSet, mappings: MappingSet, window: Window,
                 span: Span = Span(), uploading: bool = True):
        self.inputs = inputs
        self.span = span
        self.mappings = mappings  # the child compiles its own copy from the text
        self.window = window
        # The repeat check runs in the process with room: in a send the parent is the busy one
        # (HTTP) and the child checks; otherwise (map, dry runs, validate) the children are the
        # busy ones and the parent checks (``decode``).
        self.repeats = None if uploading else RepeatCheck(
            expected_events(inputs, mappings.needles))
        # Map, dry runs and validate read in two lanes (``sources.Lane``), merged here in file
        # and line order: the reading and mapping is most of their work. A send keeps one
        # reader: its parent is the busy process.
        self.sharing = None if uploading or os.environ.get("SEGMETRO_READER_LANES") == "1" \
            else lanes_for(inputs, mappings.needles)
        self._pids: list[int] = []

    def start(self, lane: Lane | None = None) -> int:
        """Fork a reader (of ``lane``'s part); the read end of its pipe."""
        read_fd, write_fd = _pipe()
        objects = [source for number, source in enumerate(self.inputs.files)
                   if is_object(source) and (lane is None or lane.reads_file(number))]
        feed = _pipe() if objects else None
        pid = os.fork()
        if pid == 0:
            try:
                if feed is not None:
                    os.close(feed[1])
                _child(write_fd, self, feed[0] if feed is not None else None, lane)
            finally:
                os._exit(1)
        self._pids.append(pid)
        os.close(write_fd)
        if feed is not None:  # the parent fetches: the reader's core is busy parsing
            os.close(feed[0])
            feed_objects(objects, feed[1])
        return read_fd

    async def messages(self, queue_size: int = 8) -> AsyncIterator[tuple]:
        """Each message the child sends. A task of its own drains the pipe into a queue, so the
        child keeps reading while the parent waits for room to send."""
        import asyncio  # here, not at start-up: only a send reads this way

        queue: asyncio.Queue = asyncio.Queue(queue_size)

        async def pump() -> None:
            try:
                async with aclosing(self._read()) as messages:  # closing it ends the child
                    async for message in messages:
                        await queue.put(message)
            except Exception as error:  # noqa: BLE001 - handed to the consumer
                await queue.put(error)

        task = asyncio.create_task(pump())
        try:
            while True:
                message = await queue.get()
                if isinstance(message, BaseException):
                    raise message
                yield message
                if message[0] == "end":
                    return
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def messages_sync(self) -> Iterator[tuple]:
        """Each message the child sends (the lanes' merged), read by blocking (runs with no
        event loop: dry runs, ``map``, ``validate``); the children are ended when the consumer
        stops early."""
        try:
            if self.sharing is None:
                yield from map(_checked, self._frames(self.start(), self._pids[-1]))
            else:
                lanes = []
                for index in range(LANES):
                    read_fd = self.start(Lane(index, LANES, self.inputs.max_line_bytes,
                                              whole_files=self.sharing == "files"))
                    lanes.append(self._frames(read_fd, self._pids[-1]))
                yield from self._merged(lanes)
        finally:
            self.stop()

    def _frames(self, read_fd: int, pid: int) -> Iterator[tuple]:
        """The messages of the child ``pid`` that writes to ``read_fd``, up to its last (an
        ``end`` or an ``error``)."""
        with os.fdopen(read_fd, "rb", buffering=1 << 20) as pipe:
            while True:
                header = pipe.read(_HEADER.size)
                size = _HEADER.unpack(header)[0] if len(header) == _HEADER.size else -1
                body = pipe.read(size) if size > 0 else b""
                if size <= 0 or len(body) != size:  # the child ended, maybe inside a frame
                    raise InternalError(self._ended_early(pid))
                message = pickle.loads(body)
                yield message
                if message[0] in ("end", "error"):
                    return

    def _merged(self, lanes: list[Iterator[tuple]]) -> Iterator[tuple]:
        """The lanes' messages as one reader's: outcomes in file and line order (each lane
        numbers lines and records as the whole file does), a file done when every lane is. A
        lane's failure is raised in its place: after what the other lanes read before the
        input it failed in. A lane's outcomes come in runs (a segment's), so they are merged a
        run at a time (``bisect``), not one by one."""
        order = {source.name: number for number, source in enumerate(self.inputs.files)}
        read = [0] * len(lanes)  # bytes each lane has read
        # lanes cutting files each read every byte; lanes taking whole files, their own
        progress = max if self.sharing == "segments" else sum

        def keyed(index: int, messages: Iterator[tuple]) -> Iterator[tuple[list, list]]:
            """A lane's messages as (keys, items): a frame's outcomes, or one message."""
            key = (0, 0)
            for message in messages:
                if message[0] == "outcomes":
                    read[index] = message[2]
                    entries = message[1]
                    keys = [(order[e[2]], e[3]) if e[0] == _UNREAD_RUN else (order[e[1]], e[2])
                            for e in entries]
                    if keys:
                        key = keys[-1]
                        yield keys, entries
                elif message[0] == "file_done":
                    key = (order[message[1]], _AFTER_LINES)
                    yield [key], [message]
                elif message[0] == "error":
                    yield [max(key, (message[3], 0))], [message]
                else:  # "end"
                    yield [(len(order), 0)], [message]

        streams = [keyed(index, messages) for index, messages in enumerate(lanes)]
        heads = [next(stream, None) for stream in streams]  # (keys, items), None: ended
        at = [0] * len(streams)
        chunk: list = []
        weight = 0  # outcomes in chunk (an event run's each counted)
        lanes_done: dict[str, int] = {}
        while True:
            live = [(heads[index][0][at[index]], index) for index in range(len(streams))
                    if heads[index] is not None]
            if not live:
                break
            live.sort()
            index = live[0][1]
            keys, items = heads[index]
            stop = bisect.bisect_right(keys, live[1][0], at[index]) if len(live) > 1 \
                else len(keys)
            for item in items[at[index]:stop]:
                kind = item[0]
                if kind.__class__ is not str:
                    chunk.append(item)
                    weight += item[4] if kind == EVENT_RUN else 1
                elif kind == "error":
                    if chunk:
                        yield ("outcomes", chunk, progress(read))
                    _checked(item)
                elif kind == "file_done":
                    lanes_done[item[1]] = lanes_done.get(item[1], 0) + 1
                    if lanes_done[item[1]] == len(streams):
                        if chunk:
                            yield ("outcomes", chunk, progress(read))
                            chunk, weight = [], 0
                        yield item
                # "end": the merge ends after every lane's
            at[index] = stop
            if stop == len(keys):
                heads[index], at[index] = next(streams[index], None), 0
            if weight >= CHUNK and (chunk[-1][0] == _UNREAD_RUN or chunk[-1][6]):
                yield ("outcomes", chunk, progress(read))  # a record's outcomes stay together
                chunk, weight = [], 0
        if chunk:
            yield ("outcomes", chunk, progress(read))
        yield ("end", progress(read))

    async def _read(self) -> AsyncIterator[tuple]:
        """Each message the child sends, read without blocking the event loop."""
        import asyncio

        read_fd = self.start()
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20, loop=loop)  # pauses the pipe at 2 MiB
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(read_fd, "rb"))
        try:
            while True:
                try:
                    header = await reader.readexactly(_HEADER.size)
                    message = pickle.loads(await reader.readexactly(_HEADER.unpack(header)[0]))
                except asyncio.IncompleteReadError:
                    raise InternalError(self._ended_early(self._pids[-1])) from None
                yield _checked(message)
                if message[0] == "end":
                    return
        finally:
            transport.close()
            self.stop()

    def _ended_early(self, pid: int) -> str:
        """Why a child's stream ended before its last message, from its exit status."""
        how = "ended"
        if pid in self._pids:
            self._pids.remove(pid)
            _, status = os.waitpid(pid, 0)
            if os.WIFSIGNALED(status):
                how = f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
            elif os.WIFEXITED(status):
                how = f"exited with status {os.WEXITSTATUS(status)}"
        done = "what was acknowledged is in the checkpoint" if self.repeats is None else \
            "the summary counts what was read before"  # a send, or map, dry run, validate
        return f"the reader process (PID {pid}) {how} before reading every input; {done}"

    def stop(self) -> None:
        """End the children (they may still be reading when the parent stops early) and reap
        them."""
        for pid in self._pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        self._pids = []


def _checked(message: tuple) -> tuple:
    """A message, or the child's failure raised with its exit status."""
    if message[0] == "error":
        raise SegmetroError(message[2], ExitStatus(message[1]))
    return message


def decode(chunk: list, repeats: RepeatCheck | None = None) -> list[Outcome]:
    """Outcomes from the wire; outcomes of one record share one record object (the ledger
    groups them by identity). A run of unread lines becomes one skipped outcome that counts for
    all of them, its record the last (where a checkpoint resumes). With ``repeats`` (the
    reader's, when it is not uploading), events meet the repeat check here."""
    outcomes = []
    record = None
    for entry in chunk:
        if entry[0] == EVENT_RUN:
            outcomes += run_outcomes(entry, repeats)
            continue
        if entry[0] == _UNREAD_RUN:
            _, count, file, line, seq, line_seq, last_on_line = entry
            last = SegmentRecord(file, line, seq, None, line_seq=line_seq,
                                 last_on_line=last_on_line)
            outcomes.append(Outcome(SKIPPED, last, code=UNREAD_TYPE, repeat=count))
            continue
        (kind, file, line, seq, line_seq, last_on_line, final, event_json, event_type, timestamp,
         stage, code, reason, mapping, body, raw, origin, transaction_id) = entry
        if record is None or record.seq != seq or record.file != file:
            data = orjson.Fragment(body) if body is not None else None
            record = SegmentRecord(file, line, seq, data, None, None, raw, line_seq,
                                   last_on_line, origin)
        event = orjson.Fragment(event_json) if event_json is not None else None
        if transaction_id is not None and repeats is not None:
            outcomes.append(repeats.outcome(record, event, event_json, transaction_id, mapping,
                                            final, event_type, timestamp))
            continue
        outcomes.append(Outcome(_KINDS[kind], record, event, stage, code, reason, mapping,
                                final, event_json, event_type, timestamp))
    return outcomes


def run_outcomes(entry: tuple, repeats: RepeatCheck | None = None,
                 answers: dict[int, int | str] | None = None) -> list[Outcome]:
    """An event run's outcomes (see ``_Entries``), the unread lines between its events
    included. With ``repeats``, each event meets the repeat check, unless ``answers`` holds
    what it already said of those that are not new (or the child's check did: the run's own
    answers)."""
    _, file, first, seq, _, _, _, jsons, types, stamps, mappings, _, lines, ids, checked = entry
    if answers is None:
        answers = checked
        if answers is None and ids is not None and repeats is not None:
            answers = repeats.check_run(file, lines, ids, jsons)
    delta = seq - first
    outcomes = []
    after = first  # the line after the last outcome's
    for index, line in enumerate(lines):
        if line > after:
            outcomes.append(Outcome(SKIPPED, SegmentRecord(file, line - 1, line - 1 + delta, None),
                                    code=UNREAD_TYPE, repeat=line - after))
        after = line + 1
        outcome = run_event(entry, index)
        if answers and index in answers:
            outcome = RepeatCheck.verdict(answers[index], outcome.record, outcome.event,
                                          outcome.event_json, ids[index], mappings[index], True,
                                          types[index], stamps[index])
        outcomes.append(outcome)
    return outcomes


def run_event(entry: tuple, index: int) -> Outcome:
    """The outcome of event ``index`` of an event run (see ``_Entries``), new to the repeat
    check."""
    _, file, first, seq, _, _, _, jsons, types, stamps, mappings, texts, lines, _, _ = entry
    line = lines[index]
    event_json = jsons[index]
    return Outcome(EVENT, SegmentRecord(file, line, line + seq - first,
                                        orjson.Fragment(texts[index])),
                   orjson.Fragment(event_json), None, None, None, mappings[index], True,
                   event_json, types[index], stamps[index])


class Events:
    """Valid events in input order, as a send batches them: each one's JSON (``jsons``) and
    where it came from (``sources``): its outcome, or ``(run, index)`` for an event of an
    event run (``_Entries``), whose outcome is made only when asked for (``outcomes``). The
    usual send needs one only for an event Metronome rejects; a checkpoint ledger settles an
    event by its source (``checkpoint.Ledger.settle``). ``Events.json_only()`` keeps the JSON
    alone, for what only writes it (map, dry runs)."""

    __slots__ = ("jsons", "sources")

    def __init__(self, jsons: list[bytes] | None = None, sources: list | None = None):
        self.jsons = [] if jsons is None else jsons
        self.sources = [] if sources is None else sources

    @classmethod
    def json_only(cls) -> "Events":
        events = cls()
        events.sources = None
        return events

    def __len__(self) -> int:
        return len(self.jsons)

    def add(self, outcome: Outcome) -> None:
        self.jsons.append(outcome.event_json)
        if self.sources is not None:
            self.sources.append(outcome)

    def add_run(self, entry: tuple) -> None:
        """Every event of an event run that the repeat check found new."""
        jsons = entry[7]
        self.jsons += jsons
        if self.sources is not None:
            self.sources += zip(repeat(entry), range(len(jsons)))

    def extend(self, other: "Events") -> None:
        self.jsons += other.jsons
        self.sources += other.sources

    def take(self, count: int) -> "Events":
        """The first ``count`` events, removed from these."""
        taken = Events(self.jsons[:count], self.sources[:count])
        del self.jsons[:count], self.sources[:count]
        return taken

    def halves(self) -> tuple["Events", "Events"]:
        middle = len(self.jsons) // 2
        return (Events(self.jsons[:middle], self.sources[:middle]),
                Events(self.jsons[middle:], self.sources[middle:]))

    def body(self) -> bytes:
        """The JSON array of the events, as ``orjson.dumps`` would write it."""
        return b"[" + b",".join(self.jsons) + b"]"

    def outcomes(self) -> list[Outcome]:
        return [run_event(*source) if source.__class__ is tuple else source
                for source in self.sources]
