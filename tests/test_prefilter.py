"""Records no trigger can match are skipped without a JSON parse: the byte test is exact (a line
it skips never matches under the full evaluation), escaped and unicode spellings included; the
chunk search finds what the per-line test finds; and two reader lanes read what one reader
reads."""

import gzip
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from segmetro.events import Window
from segmetro.mapping import parse_mapping
from segmetro.pipeline import SKIPPED, UNREAD_TYPE, RepeatCheck, process
import segmetro.sources as sources
from segmetro.sources import ByteCounter, InputFile, InputSet, Position, open_lines, read_records
from segmetro.timestamps import parse_rfc3339

WINDOW = Window(parse_rfc3339("2026-11-25T00:00:00Z"))
MAPPINGS = parse_mapping("""\
mappings:
  - name: tokens
    trigger: type = "track" and (event = "Tokens Used" or event = "Ünïcode Évent")
    fields: &fields
      transaction_id: $.messageId
      customer_id: $.context.groupId
      timestamp: $.timestamp
      event_type: $.event
  - name: pages
    trigger: type = "page" and name = "Pricing"
    fields:
      transaction_id: {template: "{{messageId}}-page"}
      customer_id: $.context.groupId
      timestamp: $.timestamp
      event_type: page
""", "m.yaml")


def spellings(text: str):
    """The ways a JSON line can hold ``text``: as it is, with \\u escapes, ensure_ascii."""
    yield json.dumps(text, ensure_ascii=False)
    yield json.dumps(text)  # non-ASCII as \\u escapes
    yield '"' + "".join(f"\\u{ord(c):04x}" for c in text) + '"'
    yield '"' + text[0] + "\\" + "/" + text[1:] + '"' if len(text) > 1 else json.dumps(text)


def line(kind: str, event: str, name: str, spelled: int, n: int = 0) -> str:
    event_json = list(spellings(event))[spelled % 4]
    return ('{"type":' + json.dumps(kind) + ',"event":' + event_json + ',"name":' +
            json.dumps(name) + f',"messageId":"m{n}","timestamp":"2026-11-20T10:00:00Z",' +
            '"context":{"groupId":"g"}}')


EVENTS = ["Tokens Used", "Tokens used", "Ünïcode Évent", "Unicode Event", "Signed Up", "", "T"]


def outcomes(tmp_path, text, needles):
    path = tmp_path / "in.jsonl"
    path.write_text(text, encoding="utf-8")
    records = read_records(InputSet([InputFile(str(path), None)]), needles=needles)
    return list(process(records, MAPPINGS, WINDOW, repeats=RepeatCheck()))


def check(tmp_path, text):
    fast = outcomes(tmp_path, text, MAPPINGS.needles)
    full = outcomes(tmp_path, text, None)
    full_by_record = {}
    for outcome in full:
        full_by_record.setdefault(outcome.record.seq, []).append(outcome)
    for outcome in fast:
        if outcome.kind is SKIPPED and outcome.code == UNREAD_TYPE:
            last = outcome.record.seq  # a run of unread lines: the seqs it stands for
            for seq in range(last - outcome.repeat + 1, last + 1):
                for other in full_by_record.get(seq, []):
                    # never an event, never a mapping's rejection: at most a broken line
                    assert other.kind is SKIPPED or other.stage == "parse", (text, other)
        else:
            [same] = [o for o in full if o.record.seq == outcome.record.seq
                      and o.mapping == outcome.mapping]
            assert (same.kind, same.code) == (outcome.kind, outcome.code)
    return fast


def test_the_needles_are_the_strings_every_trigger_needs():
    assert MAPPINGS.needles == tuple(sorted(
        [b'"page"', b'"Tokens Used"', '"Ünïcode Évent"'.encode()]))


def test_escaped_and_unicode_spellings_are_never_skipped_when_they_match(tmp_path):
    cases = [(kind, event, name, spelled) for kind in ("track", "page", "identify")
             for event in EVENTS for name in ("Pricing", "Home") for spelled in range(4)]
    lines = [line(*case, n) for n, case in enumerate(cases)]
    fast = check(tmp_path, "\n".join(lines) + "\n")
    unread = sum(o.repeat for o in fast if o.code == UNREAD_TYPE)
    events = sum(1 for o in fast if o.kind.name == "EVENT")
    assert unread > 50 and events >= 12  # it skips, and what matches still matches


@settings(max_examples=200, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["track", "page", "identify", "Track"]),
                          st.sampled_from(EVENTS) | st.text(max_size=8),
                          st.sampled_from(["Pricing", "Home"]) | st.text(max_size=5),
                          st.integers(0, 3)), min_size=1, max_size=12),
       st.sampled_from(["", "\ufeff", "{broken", '{"batch":[{"type":"track"}]}']))
def test_any_line_the_byte_test_skips_has_no_match(tmp_path, rows, extra):
    text = "\n".join([line(*row, n) for n, row in enumerate(rows)] + [extra]) + "\n"
    check(tmp_path, text)


def test_the_reader_process_counts_runs_of_unread_lines_as_one_process_does(run, write,
                                                                             monkeypatch):
    import orjson

    rows = [line("identify", "Signed Up", "Home", 0, n) if n % 7 else
            line("track", "Tokens Used", "Home", 0, n) for n in range(3000)]
    rows[1500] = '{"batch": [{"type": "page"}, {"type": "page"}]}'
    path = write("in.jsonl", "\n\n".join(rows) + "\n")
    write("m.yaml", "mappings:\n  - name: t\n    trigger: type = \"track\" and event = "
          "\"Tokens Used\"\n    fields: {transaction_id: $.messageId, customer_id: "
          "$.context.groupId, timestamp: $.timestamp, event_type: tokens}\n")
    summaries = []
    for setting in ("1", "0"):
        monkeypatch.setenv("SEGMETRO_READER_PROCESS", setting)
        result = run("send", path, "--dry-run", "--now", "2026-11-25T00:00:00Z", "-m", "m.yaml",
                     "--json")
        summary = orjson.loads(result.stdout)
        summaries.append({key: summary[key] for key in
                          ("lines", "records", "events", "skipped_by_type", "rejected")})
    assert summaries[0] == summaries[1]
    assert summaries[0]["skipped_by_type"][UNREAD_TYPE] > 2000


@pytest.mark.parametrize("gzipped", [False, True])
def test_map_through_reader_lanes_writes_and_counts_what_one_process_does(
        run, write, monkeypatch, tmp_path, gzipped):
    """Runs of plain events travel and are taken in bulk (``reader._Entries``); around them are
    unread lines, blank lines, batch lines, bad JSON, rejected and repeated events. Through one
    reader, two lanes cutting the file, or no reader process, ``map`` writes the same events,
    rejects the same records and prints the same summary."""
    import random

    import orjson

    rng = random.Random(5)
    rows, tracks = [], [0]
    for n in range(4000):
        roll = rng.random()
        if roll < 0.55:
            rows.append(line("track", "Tokens Used", "Home", 0, n))
            tracks.append(n)
        elif roll < 0.85:
            rows.append(line("identify", "Signed Up", "Home", 0, n))
        elif roll < 0.88:
            rows.append("")
        elif roll < 0.9:
            rows.append('{"batch": [' + line("track", "Tokens Used", "B", 0, n) + ', ' +
                        line("page", "x", "P", 0, n) + ']}')
        elif roll < 0.92:
            rows.append("{broken")
        elif roll < 0.94:  # an id again: the same event (a duplicate) or another (a conflict)
            again = line("track", "Tokens Used", "Home", 0, rng.choice(tracks))
            rows.append(again if roll < 0.93 else again.replace("10:00:00Z", "11:00:00Z"))
        elif roll < 0.96:  # too old for Metronome: a validate rejection
            rows.append(line("track", "Tokens Used", "Home", 0, n).replace("2026-11-20",
                                                                          "2026-01-20"))
        else:
            rows.append(line("page", "x", "Pricing", 0, n))
    text = ("\n".join(rows) + "\n").encode()
    path = write("in.jsonl.gz" if gzipped else "in.jsonl", gzip.compress(text) if gzipped
                 else text)
    write("m.yaml", MAPPINGS.text)
    monkeypatch.setattr(sources, "LANE_SEGMENT", 4096)
    results = []
    for process, lanes in (("0", "1"), ("1", "1"), ("1", "2")):
        monkeypatch.setenv("SEGMETRO_READER_PROCESS", process)
        monkeypatch.setenv("SEGMETRO_READER_LANES", lanes)
        result = run("map", path, "-m", "m.yaml", "--now", "2026-11-25T00:00:00Z", "-o",
                     "out.jsonl", "--rejects", "r.jsonl", "--json")
        summary = orjson.loads(result.stderr)
        del summary["elapsed_seconds"]
        rejects = list(map(orjson.loads, (tmp_path / "r.jsonl").read_bytes().splitlines()))
        results.append(((tmp_path / "out.jsonl").read_bytes(), rejects, summary))
        (tmp_path / "r.jsonl").unlink()
    assert results[0] == results[1] == results[2]
    summary = results[0][2]
    assert summary["duplicates"] > 10 and summary["rejected_by_reason"]
    assert {r["code"] for r in summary["rejected_by_reason"]} == {
        "invalid-json", "conflicting-transaction-id", "timestamp-too-old"}
    assert summary["skipped_by_type"][UNREAD_TYPE] > 1000 and summary["events"] > 2000


POOL = [line("identify", "Signed Up", "Home", 0), line("track", "Tokens Used", "Home", 0),
        line("track", "Tokens Used", "Home", 1), line("page", "x", "Pricing", 0),
        line("track", "Search", "Home", 0) + "\r", line("track", "Search", "Home", 0) + "  ",
        "", "   ", "[1, 2]", '"text"', "{broken", '{"batch": [{"type": "page"}]}',
        '{"type": "identify", "traits": {"tags": ["a", "b"]}}',
        '{"batch": [{"type": "identify"}, {"type": "identify"}]}', "\ufeff" + line("page", "", "", 0),
        '{"type": "identify", "name": "back\\\\slash"}', "x" * 300]


@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from([0] * 3 * len(POOL) + list(range(len(POOL)))), min_size=1,
                max_size=60),
       st.integers(16, 600), st.sampled_from([200, 1 << 20]), st.integers(1, 8),
       st.booleans())
@example(picks=[0] * 10 + [1, 0], chunk=4096, max_line_bytes=1 << 20, resume_line=5,
         gzipped=False)  # a resume inside a run of unread lines
@example(picks=[0, 0, 0, POOL.index('{"batch": [{"type": "identify"}, {"type": "identify"}]}'),
                0, 0], chunk=4096, max_line_bytes=1 << 20, resume_line=1, gzipped=True)
def test_searching_whole_chunks_reads_what_the_per_line_test_reads(
        tmp_path, monkeypatch, picks, chunk, max_line_bytes, resume_line, gzipped):
    """Runs of lines found by searching a chunk whole give the same records, in the same
    places, as testing each line: across chunk ends, over-long lines, CRLF, blank lines,
    envelopes, backslashes, lines that are not objects, and a resume inside a run."""
    text = ("\n".join(POOL[p] for p in picks) + "\n").encode()
    path = tmp_path / ("in.jsonl.gz" if gzipped else "in.jsonl")
    path.write_bytes(gzip.compress(text) if gzipped else text)
    start = Position(resume_line, 0, 0)

    def records(lines):
        source = InputFile(str(path), None, start=start)
        with monkeypatch.context() as patch:  # hypothesis runs many examples in one test
            patch.setattr(sources, "_CHUNK", chunk)
            patch.setattr(sources, "_lines", lines)
            return [(r.line, r.seq, r.data is sources.UNREAD, r.repeat, r.data, r.error_code,
                     r.raw) for r in sources.read_file(source, None, max_line_bytes,
                                                       MAPPINGS.needles)]

    searched = sources._lines

    def line_by_line(chunks, max_bytes, needles=None):  # the reference: each line tested
        return searched(chunks, max_bytes)

    assert records(searched) == records(line_by_line)


def searched(path, rows: list[str]) -> list:
    """What ``open_lines`` hands on for ``rows`` written to ``path``: lines, and runs of lines
    as their number (every line counted once)."""
    path.write_text("\n".join(rows) + "\n")
    lines, stream = open_lines(InputFile(str(path), None), ByteCounter(),
                               needles=MAPPINGS.needles)
    items = list(lines)
    stream.close()
    runs = [item for item in items if isinstance(item, int)]
    assert sum(runs) + len(items) - len(runs) == len(rows)
    return items


def test_a_long_export_is_searched_in_runs(tmp_path):
    rows = [line("identify", "Signed Up", "Home", 0, n) if n % 50 else
            line("track", "Tokens Used", "Home", 0, n) for n in range(6000)]
    items = searched(tmp_path / "in.jsonl", rows)
    assert len(items) < 6000 // 10  # the lines between two needles come as one number


def test_lines_holding_arrays_are_searched_in_runs_unless_a_batch_is_near(tmp_path,
                                                                          monkeypatch):
    """An array ("[") in a line no trigger can match does not make the line be tested alone:
    only a chunk that also holds "batch" could hold an envelope."""
    monkeypatch.setattr(sources, "_CHUNK", 16384)  # about 110 lines a chunk
    rows = [line("identify", "Signed Up", "Home", 0, n).replace('"name"', '"tags":["a"],"name"')
            if n % 50 else line("track", "Tokens Used", "Home", 0, n) for n in range(6000)]
    rows[3000] = '{"batch": [' + rows[3001] + "]}"
    items = searched(tmp_path / "in.jsonl", rows)
    alone = [item for item in items if isinstance(item, bytes) and b"Tokens" not in item]
    # the chunk with the envelope, and the few after it that are split line by line
    assert any(b'"batch"' in item for item in alone) and len(alone) < 6000 // 4
    assert len(items) < 6000 // 4


def reader_entries(inputs, lanes, monkeypatch, sharing="segments"):
    """Every outcome a reader process (or two lanes of them, sharing the inputs as said) sends,
    in order."""
    from segmetro.reader import _UNREAD_RUN, EVENT_RUN, ReaderProcess

    monkeypatch.setenv("SEGMETRO_READER_LANES", str(lanes))
    reader = ReaderProcess(inputs, MAPPINGS, WINDOW, uploading=False)
    if sharing is not ...:  # ...: as the inputs' first lines decide
        assert reader.sharing == (sharing if lanes == 2 else None)
    entries, unread, done = [], {}, []
    for message in reader.messages_sync():
        if message[0] == "file_done":
            done.append(message[1])
        elif message[0] == "outcomes":
            for entry in message[1]:
                if entry[0] == _UNREAD_RUN:  # lanes may cut runs of unread lines elsewhere
                    unread[entry[2]] = unread.get(entry[2], 0) + entry[1]
                elif entry[0] == EVENT_RUN:  # and runs of events: each as its own entry
                    (_, file, first, seq, _, _, _, jsons, types, stamps, mappings, texts, lines,
                     ids, _) = entry
                    unread[file] = unread.get(file, 0) + lines[-1] - first + 1 - len(lines)
                    entries += [(0, file, line, seq + line - first, -1, True, True, jsons[n],
                                 types[n], stamps[n], None, None, None, mappings[n], texts[n],
                                 None, None, ids[n]) for n, line in enumerate(lines)]
                else:
                    entries.append(entry)
    return entries, unread, done


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.sampled_from([0, 0] + list(range(len(POOL)))), max_size=80),
                min_size=1, max_size=3),
       st.integers(64, 2048), st.booleans(), st.booleans(), st.sampled_from([0, 0, 8]))
@example(files=[[0] * 40 + [6, 7, 13, 1, 0, 0] * 5], segment=512, gzipped=False, ended=True,
         first=0)
@example(files=[[0] * 12 + [13]], segment=256, gzipped=True, ended=False, first=0)
@example(files=[[0] * 30, [6, 7, 13], [1, 1]], segment=256, gzipped=False, ended=True, first=8)
def test_two_lanes_read_what_one_reader_reads(tmp_path, monkeypatch, files, segment, gzipped,
                                              ended, first):
    """Two reader lanes, merged, give the outcomes of one reader: the same records with the same
    file, line and record numbers, in the same order, whatever falls on a segment's edge. When a
    file does not start with a record, the lanes take whole files instead."""
    paths = []
    for number, picks in enumerate(files):
        head = [first if number == 0 else 0]
        text = ("\n".join(POOL[p] for p in head + picks) + ("\n" if ended else "")).encode()
        path = tmp_path / (f"{number}.jsonl" + (".gz" if gzipped else ""))
        path.write_bytes(gzip.compress(text) if gzipped else text)
        paths.append(InputFile(str(path), path.stat().st_size))
    monkeypatch.setattr(sources, "LANE_SEGMENT", segment)
    inputs = InputSet(paths, max_line_bytes=200)
    several = "files" if len(files) > 1 else None
    sharing = several if first != 0 else (several or ...) if gzipped else "segments"
    assert reader_entries(inputs, 2, monkeypatch, sharing) == \
        reader_entries(inputs, 1, monkeypatch, sharing)


def test_lanes_read_a_file_as_it_was_listed(tmp_path, monkeypatch):
    """A file that grows during a run must look the same to both lanes: each reads the size the
    file had when it was listed."""
    rows = [line("track", "Tokens Used", "Home", 0, n) for n in range(50)]
    path = tmp_path / "growing.jsonl"
    path.write_text("\n".join(rows) + "\n")
    listed = len(("\n".join(rows[:30]) + "\n").encode())  # what was there at the listing
    monkeypatch.setattr(sources, "LANE_SEGMENT", 512)
    inputs = InputSet([InputFile(str(path), listed)])
    entries, _, done = reader_entries(inputs, 2, monkeypatch)
    assert [entry[2] for entry in entries] == list(range(1, 31)) and done == [str(path)]


@pytest.mark.parametrize("content, shared", [
    (b'{"type": "track"}\n{"type": "page"}\n', True),
    (gzip.compress(b'{"type": "page"}\n'), True),  # a line the byte test would parse
    (b"", True),
    (b"\xef\xbb\xbf" + b'{"type": "track"}\r\n', True),
    (b'{"file": "a", "line": 1, "stage": "parse", "code": "c", "reason": "r", "record": {}}\n',
     False),  # a rejects file: its first object decides how it is read, lanes cannot tell
    (b"not json\n" + b'{"type": "track"}\n', False),
    (gzip.compress(b'{"type": "track"}\n')[:12], False),
    (b'{"type": "track", "pad": "' + b"x" * 70_000 + b'"}\n', False),
])
def test_lanes_are_used_only_where_they_read_what_one_reader_reads(tmp_path, monkeypatch,
                                                                   content, shared):
    from segmetro.reader import ReaderProcess

    path = tmp_path / "in.jsonl"
    path.write_bytes(content)
    monkeypatch.delenv("SEGMETRO_READER_LANES", raising=False)
    reader = ReaderProcess(InputSet([InputFile(str(path), len(content))]), MAPPINGS, WINDOW,
                           uploading=False)
    assert reader.sharing == ("segments" if shared else None)


def test_a_gzipped_file_is_cut_only_when_reading_it_is_mostly_parsing(tmp_path, monkeypatch):
    """Each lane cutting a gzipped file inflates all of it: worth it when most lines are
    parsed, not when the byte test skips most of them (then one reader does as well)."""
    from segmetro.reader import ReaderProcess

    monkeypatch.delenv("SEGMETRO_READER_LANES", raising=False)
    for rows, sharing in ((["identify"] * 95 + ["track"] * 5, None),
                          (["identify"] * 50 + ["track"] * 50, "segments")):
        path = tmp_path / "in.jsonl.gz"
        path.write_bytes(gzip.compress("\n".join(
            line(kind, "Tokens Used" if kind == "track" else "Signed Up", "Home", 0, n)
            for n, kind in enumerate(rows)).encode()))
        inputs = InputSet([InputFile(str(path), path.stat().st_size)])
        assert ReaderProcess(inputs, MAPPINGS, WINDOW, uploading=False).sharing == sharing
        twice = InputSet([InputFile(str(path), 1), InputFile(str(tmp_path / "b.jsonl"), 1)])
        (tmp_path / "b.jsonl").write_text(line("track", "x", "Home", 0) + "\n")
        assert ReaderProcess(twice, MAPPINGS, WINDOW, uploading=False).sharing == "files"


def test_a_line_the_plain_taker_declines_is_mapped_once_and_ends_as_without_it(tmp_path):
    """``pipeline.plain_taker`` takes the usual line where it is read; any other line (too old
    for Metronome, outside --until, a map rejection, a fan-out, no trigger) goes on to
    ``process``, which reuses what the taker made of it: each record is mapped once, and the
    outcomes are those of ``process`` alone."""
    import orjson

    from segmetro.pipeline import Span, plain_taker

    fan_out = MAPPINGS.text + '  - name: again\n    trigger: type = "page"\n    fields: *fields\n'
    rows = [line("track", "Tokens Used", "Home", 0, 1),
            line("track", "Tokens Used", "Home", 0, 2).replace("2026-11-20", "2026-01-20"),
            line("track", "Tokens Used", "Home", 0, 3).replace("2026-11-20", "2026-11-22"),
            line("track", "Tokens Used", "Home", 0, 4).replace('"groupId"', '"other"'),
            line("page", "x", "Pricing", 0, 5),
            line("identify", "Tokens Used", "Home", 0, 6),
            line("track", "Tokens Used", "Home", 0, 7)]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(rows) + "\n")
    span = Span(until_ms=parse_rfc3339("2026-11-21T00:00:00Z"))

    def outcomes(taken: bool) -> tuple[list, list, int]:
        mappings = parse_mapping(fan_out, "m.yaml")
        calls, apply = [0], mappings.apply

        def counted(data):
            calls[0] += 1
            return apply(data)

        mappings.apply = counted
        added: list = []
        take, again = plain_taker(mappings, WINDOW, span, lambda *event: added.append(event)) \
            if taken else (None, None)
        files = InputSet([InputFile(str(path), size=path.stat().st_size)])
        found = [(o.kind, o.record.line, o.stage, o.code, o.event_json) for o in
                 process(read_records(files, plain=take), mappings, WINDOW, span, repeats=None,
                         apply=again)]
        return found, added, calls[0]

    alone, none_taken, mapped_alone = outcomes(False)
    found, taken, mapped = outcomes(True)
    assert none_taken == [] and mapped_alone == mapped == 7
    assert [(event[1], orjson.loads(event[4])["transaction_id"]) for event in taken] == \
        [(1, "m1"), (7, "m7")]
    assert found == [outcome for outcome in alone if outcome[1] not in (1, 7)]
    assert {(kind.name, code) for kind, _, _, code, _ in found} == {
        ("REJECTED", "timestamp-too-old"), ("OUTSIDE", None), ("REJECTED", "missing-customer-id"),
        ("EVENT", None), ("SKIPPED", "identify")}
