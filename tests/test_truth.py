"""Every exit status, summary line and checkpoint is true (the reproductions of issue 10)."""

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from conftest import ROOT, jsonl, read_jsonl, track
from test_checkpoint import (TOKEN, assert_gone, children_of, command, emulator,  # noqa: F401
                             export, run_to_end, stored)

from segmetro.checkpoint import FileProgress, Ledger, State
from segmetro.pipeline import EVENT, SKIPPED, Outcome
from segmetro.reader import EVENT_RUN, run_outcomes
from segmetro.sources import Position, SegmentRecord

NOW = ["--now", "2026-11-25T00:00:00Z"]
URL = "http://127.0.0.1:9/v1/ingest"


# --- exit 70: the unexpected ends the run with what was confirmed ------------------------------

def test_kill_9_of_the_reader_process_exits_70_with_json_and_a_checkpoint(emulator, tmp_path):
    records = export(30_000)
    path = tmp_path / "export.jsonl"
    path.write_bytes(jsonl(*records))
    state_dir = tmp_path / "state"
    process = subprocess.Popen(command(emulator, path, state_dir, "--rate-limit", "4000"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    deadline = time.monotonic() + 20
    while emulator.state.accepted < 1000 and time.monotonic() < deadline:
        time.sleep(0.02)
    [reader] = children_of(process.pid)
    os.kill(reader, signal.SIGKILL)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 70, err
    summary = orjson.loads(out)  # exactly one JSON object
    assert summary["exit_status"] == 70 and "reader process" in summary["error"]
    assert "SIGKILL" in summary["error"] and "Traceback" not in err.decode()
    assert 0 < summary["sent"] < 30_000
    assert (state_dir / "state.json").exists()
    code, summary, _ = run_to_end(emulator, path, state_dir, "--rate-limit", "0")
    assert code == 0 and "files resumed" in summary["checkpoint"]
    ids = stored(tmp_path)
    assert len(ids) == len(set(ids)) == 30_000


def test_kill_9_of_a_reader_lane_in_map_exits_70_and_ends_the_other(tmp_path):
    """``map`` reads a local file in two lanes: one killed ends the run (exit 70, saying so),
    and the other is not left running."""
    path = tmp_path / "export.jsonl"
    path.write_bytes(jsonl(*[track(n) for n in range(200_000)]))
    process = subprocess.Popen([sys.executable, "-m", "segmetro", "map", str(path), "--now",
                                "2026-11-25T00:00:00Z", "-o", str(tmp_path / "events.jsonl"),
                                "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    deadline = time.monotonic() + 20
    while len(children_of(process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    lanes = children_of(process.pid)
    assert len(lanes) == 2
    os.kill(lanes[1], signal.SIGKILL)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 70, err
    summary = orjson.loads(err)  # map's summary goes to stderr: stdout may be the events
    assert "SIGKILL" in summary["error"] and "the summary counts what was read" in \
        summary["error"] and "Traceback" not in err.decode()
    assert_gone(lanes)

def test_an_input_that_vanishes_mid_run_exits_70(run, write, monkeypatch):
    first = write("a.jsonl", jsonl(track(1), track(2)))
    second = write("b.jsonl", jsonl(track(3)))
    import segmetro.sources as sources

    real = sources.read_file

    def read_then_remove(source, *args):
        yield from real(source, *args)
        if source.path == first:
            with contextlib.suppress(FileNotFoundError):  # each reader lane gets here
                os.remove(second)

    monkeypatch.setattr(sources, "read_file", read_then_remove)
    result = run("send", first, second, "--dry-run", *NOW, "--json")
    assert result.exit_code == 70
    summary = orjson.loads(result.stdout)
    assert summary["exit_status"] == 70 and summary["events"] == 2
    assert f"{second}: No such file or directory (it was there when the run started)" == \
        summary["error"]
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_map_to_a_full_disk_exits_70_and_says_nothing_was_written(run, write):
    path = write("in.jsonl", jsonl(*[track(n) for n in range(3000)]))
    result = run("map", path, *NOW, "-o", "/dev/full")
    assert result.exit_code == 70
    assert "writing -o /dev/full: No space left on device" in result.stderr
    assert "written            0  to -o /dev/full" in result.stderr


def test_map_whose_output_fills_counts_the_lines_it_took_and_leaves_no_torn_line(tmp_path):
    """The output file may grow to 100 KB (RLIMIT_FSIZE, as a disk filling up): the write that
    crosses it is cut short, the next fails. The summary counts the events whose line the file
    holds, and the file ends with whole lines."""
    import resource

    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(*[track(n) for n in range(3000)]))
    out = tmp_path / "events.jsonl"
    limit = 100_000
    process = subprocess.run(
        [sys.executable, "-m", "segmetro", "map", str(path), *NOW, "-o", str(out), "--json"],
        capture_output=True, cwd=ROOT,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert process.returncode == 70
    summary = orjson.loads(process.stderr[process.stderr.index(b"{"):])
    assert summary["error"] == f"writing -o {out}: File too large"
    held = out.read_bytes()
    assert held.endswith(b"\n") and limit - 2_000 < len(held) <= limit
    lines = held.splitlines()
    assert summary["written"] == len(lines) < summary["events"]
    assert [orjson.loads(line)["transaction_id"] for line in lines] == \
        [track(n)["messageId"] for n in range(len(lines))]


def test_map_says_how_many_events_it_wrote(run, write, tmp_path):
    path = write("in.jsonl", jsonl(*[track(n) for n in range(700)]))
    result = run("map", path, *NOW, "-o", tmp_path / "out.jsonl", "--json")
    assert result.exit_code == 0
    summary = orjson.loads(result.stderr[result.stderr.index("{"):])
    assert summary["written"] == summary["events"] == 700
    assert len((tmp_path / "out.jsonl").read_bytes().splitlines()) == 700


def test_a_bug_in_a_request_task_is_exit_70_never_an_unretrieved_task(run, write, monkeypatch,
                                                                      capfd):
    path = write("in.jsonl", jsonl(*[track(n) for n in range(250)]))

    async def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("segmetro.upload.Uploader._post", broken)
    result = run("send", path, *NOW, "--api-token", TOKEN, "--base-url", "http://127.0.0.1:9",
                 "--json")
    assert result.exit_code == 70
    summary = orjson.loads(result.stdout)
    assert "ZeroDivisionError: a bug" in summary["error"] and summary["sent"] == 0
    assert "never retrieved" not in capfd.readouterr().err


# --- --json: one object on every exit path -----------------------------------------------------

@pytest.mark.parametrize("args, status, words", [
    (["send", "x.jsonl", "--dry-run", "--bogus"], 2, "No such option"),
    (["send", "x.jsonl", "--dry-run", "-m", "bad.yaml"], 2, "problem(s) in the mapping file"),
    (["send", "missing.jsonl", "--dry-run"], 2, "no such file"),
    (["validate", "-m", "bad.yaml"], 2, "bad.yaml:1:1"),
    (["send", "x.jsonl", "--api-token", "tok\u00a0en", "--base-url", "http://127.0.0.1:9"], 2,
     "NO-BREAK SPACE"),
])
def test_json_on_every_error_path(run, write, args, status, words):
    write("x.jsonl", jsonl(track(1)))
    write("bad.yaml", "nothing: here\n")
    result = run(*args, "--json")
    assert result.exit_code == status
    summary = orjson.loads(result.stdout)
    assert summary["exit_status"] == status and words in summary["error"]
    assert result.stderr.startswith(("error:", "Usage:"))


def test_json_when_the_lock_is_held_and_when_the_token_is_refused(run, write, tmp_path,
                                                                  httpx_mock):
    from segmetro.checkpoint import RunLock

    path = write("x.jsonl", jsonl(track(1)))
    (tmp_path / "state").mkdir(mode=0o700)
    holder = RunLock(str(tmp_path / "state"))
    holder.acquire()
    try:
        result = run("send", path, *NOW, "--api-token", TOKEN, "--base-url",
                     "http://127.0.0.1:9", "--state", tmp_path / "state", "--json")
    finally:
        holder.release()
    assert result.exit_code == 4 and orjson.loads(result.stdout)["exit_status"] == 4
    httpx_mock.add_response(url=URL, status_code=401)
    result = run("send", path, *NOW, "--api-token", TOKEN, "--base-url", "http://127.0.0.1:9",
                 "--json")
    summary = orjson.loads(result.stdout)
    assert result.exit_code == 3 and summary["exit_status"] == 3 and summary["aborted"]


# --- the token -----------------------------------------------------------------------------------

@pytest.mark.parametrize("token, name, position", [
    ("tok\u00a0", "NO-BREAK SPACE", 4), ("\u201ctok", "LEFT DOUBLE QUOTATION MARK", 1),
    ("tok\nen", "a control character", 4), ("to ken", "SPACE", 3),
])
@pytest.mark.parametrize("command_name", ["send", "check-auth"])
def test_a_token_that_cannot_be_one_is_exit_2_before_any_request(run, write, httpx_mock, token,
                                                                 name, position, command_name):
    path = write("x.jsonl", jsonl(*[track(n) for n in range(2000)]))
    args = [path, *NOW] if command_name == "send" else []
    result = run(command_name, *args, "--api-token", token, "--base-url", "http://127.0.0.1:9")
    assert result.exit_code == 2
    assert f"{name} (U+{ord(token[position - 1]):04X}) at position {position}" in result.stderr
    assert token not in result.output and "Traceback" not in result.output
    assert httpx_mock.get_requests() == []


def test_token_from_a_file(run, write, httpx_mock, tmp_path):
    path = write("x.jsonl", jsonl(track(1)))
    write("token.txt", f"  {TOKEN}  \nsecond line ignored\n")
    httpx_mock.add_response(url=URL, status_code=200)
    result = run("send", path, *NOW, "--api-token-file", "token.txt", "--base-url",
                 "http://127.0.0.1:9", "--json")
    assert result.exit_code == 0
    assert httpx_mock.get_requests()[0].headers["authorization"] == f"Bearer {TOKEN}"
    result = run("send", path, *NOW, "--api-token-file", "nope.txt", "--base-url",
                 "http://127.0.0.1:9")
    assert result.exit_code == 2 and "--api-token-file nope.txt" in result.stderr


def test_a_server_echoing_the_token_never_puts_it_in_rejects_or_summary(run, write, httpx_mock,
                                                                        tmp_path):
    path = write("x.jsonl", jsonl(track(1)))
    httpx_mock.add_response(url=URL, status_code=422,
                            json={"message": f"bad request from Bearer {TOKEN}"})
    result = run("send", path, *NOW, "--api-token", TOKEN, "--base-url", "http://127.0.0.1:9",
                 "--rejects", "r.jsonl")
    assert result.exit_code == 1
    assert TOKEN not in result.output and TOKEN not in result.stderr
    assert TOKEN.encode() not in (tmp_path / "r.jsonl").read_bytes()
    assert "Bearer [token]" in read_jsonl(tmp_path / "r.jsonl")[0]["reason"]


def test_a_secret_in_a_summary_line_is_masked_and_the_mask_is_shown(capsys, monkeypatch):
    """Summary lines are rich markup: a secret is found there as written and as rich's escape
    wrote it (a bracketed part), and the mask is printed as it is, not taken for a tag (a bucket
    named like the secret used to print as "s3:///")."""
    from segmetro import redact
    from segmetro.pipeline import Tally
    from segmetro.summary import RunReport
    from segmetro.ui import Terminal

    monkeypatch.setattr(redact, "_forms", [])
    for secret in ("bench", "pa[ss]word"):
        redact.register(secret)
    report = RunReport("send", Tally(), files_skipped=["s3://bench/logs/dummy.txt",
                                                      "logs/pa[ss]word.txt"])
    Terminal().summary(report)
    out = capsys.readouterr().out
    assert "s3://[token]/logs/dummy.txt" in out and "logs/[token].txt" in out
    assert "bench" not in out and "pa[ss]word" not in out and "ss]word" not in out


# --- what was settled ----------------------------------------------------------------------------

def sparse(count):
    """Mostly skipped and rejected records with an event now and then."""
    records = []
    for n in range(count):
        if n % 500 == 0:
            records.append(track(n))
        elif n % 3 == 0:
            records.append(track(n, context={}))  # rejected: no customer
        else:
            records.append({"type": "identify", "userId": f"u{n}", "messageId": f"i{n}"})
    return records


def test_sigterm_and_rerun_of_a_sparse_file_writes_each_reject_once(emulator, tmp_path):
    records = sparse(60_000)
    path = tmp_path / "export.jsonl"
    path.write_bytes(jsonl(*records))
    state_dir = tmp_path / "state"
    for delay in (0.8, 0.5):
        process = subprocess.Popen(command(emulator, path, state_dir, "--rate-limit", "20"),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   cwd=ROOT)
        time.sleep(delay)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) in (143, 0, 1, -signal.SIGTERM)  # before it began
    code, summary, _ = run_to_end(emulator, path, state_dir, "--rate-limit", "0")
    assert code in (0, 1) and summary["exit_status"] == code
    rejected = sorted(n for n, r in enumerate(records) if r.get("context") == {})
    seqs = [r["seq"] for r in read_jsonl(state_dir / "rejects.jsonl")]
    assert sorted(seqs) == rejected  # each rejected record exactly once
    ids = stored(tmp_path)
    assert len(ids) == len(set(ids)) == 120


def test_a_resume_never_reads_a_settled_line_again():
    record = SegmentRecord("f", 7, 6, {})
    assert record.resume_after().line == 8
    item = SegmentRecord("f", 7, 6, {}, line_seq=5, last_on_line=False)
    assert (item.resume_after().line, item.resume_after().seq) == (7, 7)


def test_the_ledger_remembers_events_in_flight_not_records_read(tmp_path):
    state = State(str(tmp_path), "h", "d")
    state.files["fp"] = FileProgress("f")
    ledger = Ledger(state, {"f": "fp"}, 5.0, lambda: None, "m")
    event = Outcome(EVENT, SegmentRecord("f", 1, 0, {}), {})
    ledger.add(event)
    for n in range(1, 600_001):
        ledger.add(Outcome(SKIPPED, SegmentRecord("f", n + 1, n, {}), code="identify"))
    assert len(ledger._entries) == 1 and len(ledger._pending["f"]) == 1
    ledger.settle([event])
    assert state.files["fp"].position.line == 600_002 and not ledger._entries


def test_a_journal_line_cut_short_by_the_kernel_is_written_whole(tmp_path, monkeypatch):
    """write() may take part of a line (a signal, a disk filling up) and say so only in its
    count: the rest is written, so no later line is glued to a torn one and lost on resume."""
    state = State(str(tmp_path), "h", "d")
    real_write = os.write

    def short_write(fd, data):
        return real_write(fd, bytes(data[:7]))

    monkeypatch.setattr(os, "write", short_write)
    for line in (10, 20):
        state.record("fp", FileProgress("f", Position(line, line - 1, line - 1)))
    monkeypatch.undo()
    state.close()
    again = State(str(tmp_path), "h", "d")
    again.load(restart=False)
    assert again.files["fp"].position.line == 20


def _run_entry(file: str, lines: list[int], first: int) -> tuple:
    """An event run as a reader process sends it: events at ``lines``, from line ``first``
    (seq = line - 1), the lines between them unread."""
    count = len(lines)
    return (EVENT_RUN, file, first, first - 1, count, None, True,
            [b'{"n":%d}' % line for line in lines], ["t"] * count,
            ["2026-11-20T00:00:00.000Z"] * count, ["m"] * count,
            [b'{"line":%d}' % line for line in lines], list(lines), None, None)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_ledger_following_event_runs_whole_keeps_the_positions_of_one_following_each_record(
        data):
    """The ledger takes a reader's event run as one entry (``add_run``) and settles it by
    ``(run, index)``. Whatever the mix of runs, unread lines, other records and batches settled
    out of order or one rejected event at a time, every position it keeps (and journals) is the
    one a ledger following each record's outcome keeps."""
    kinds = data.draw(st.lists(st.sampled_from(["run", "skip", "event"]), min_size=1,
                               max_size=12))
    items, line = [], 1
    for kind in kinds:
        if kind == "run":
            first = line + data.draw(st.integers(0, 2))  # unread lines inside, before the first
            gaps = data.draw(st.lists(st.integers(0, 2), min_size=1, max_size=8))
            lines, at = [], first
            for gap in gaps:
                at += gap
                lines.append(at)
                at += 1
            items.append(("run", _run_entry("f", lines, line)))
            line = at
        else:
            record = SegmentRecord("f", line, line - 1, {})
            items.append((kind, Outcome(EVENT, record, {}, final=True) if kind == "event" else
                          Outcome(SKIPPED, record, code="identify")))
            line += 1
    with tempfile.TemporaryDirectory() as directory:
        ledgers, sources = [], ([], [])
        for name in ("runs", "records"):
            state = State(os.path.join(directory, name), "h", "d")
            os.mkdir(state.directory)
            state.files["fp"] = FileProgress("f")
            ledgers.append(Ledger(state, {"f": "fp"}, 5.0, lambda: None, "m"))
        whole, each = ledgers

        def same() -> None:
            assert whole.state.files["fp"] == each.state.files["fp"]

        def settle_some() -> None:
            """Settle a random stretch of the events read and not yet settled, as one batch
            or one event at a time (rejections), in any order."""
            open_ = [n for n, flag in enumerate(settled) if not flag]
            if not open_:
                return
            start = data.draw(st.sampled_from(open_))
            stop = start
            while stop < len(settled) and not settled[stop] and stop - start < 5:
                stop += 1
            stop = data.draw(st.integers(start + 1, stop))
            chunks = [range(start, stop)] if data.draw(st.booleans()) else \
                [range(n, n + 1) for n in range(start, stop)]
            for chunk in chunks:
                whole.settle([sources[0][n] for n in chunk])
                each.settle([sources[1][n] for n in chunk])
                for n in chunk:
                    settled[n] = True
                same()

        settled: list[bool] = []
        for kind, item in items:
            if kind == "run":
                whole.add_run(item)
                sources[0].extend((item, index) for index in range(item[4]))
                for outcome in run_outcomes(item):
                    each.add(outcome)
                    if outcome.kind is EVENT:
                        sources[1].append(outcome)
                settled += [False] * item[4]
            else:
                whole.add(item)
                each.add(item)
                if item.kind is EVENT:
                    sources[0].append(item)
                    sources[1].append(item)
                    settled.append(False)
            same()
            for _ in range(data.draw(st.integers(0, 2))):
                settle_some()
        whole.file_read("f")
        each.file_read("f")
        same()
        while not all(settled):
            settle_some()
        assert whole.state.files["fp"].done and not whole._entries
        journals = [open(ledger.state.journal_path, "rb").read() for ledger in ledgers]
        assert journals[0] == journals[1]


def test_another_transaction_id_rule_is_refused_even_with_restart(emulator, tmp_path):
    path = tmp_path / "day.jsonl"
    path.write_bytes(jsonl(*export(204)))
    state_dir = tmp_path / "state"
    assert run_to_end(emulator, path, state_dir)[0] == 0
    changed = tmp_path / "v2.yaml"
    changed.write_text((ROOT / "mappings" / "default.yaml").read_text().replace(
        'transaction_id: {"@path": "$.messageId"}',
        'transaction_id: {"@template": "{{messageId}}-v2"}'))
    for extra in ([], ["--restart"]):
        code, summary, err = run_to_end(emulator, path, state_dir, "-m", str(changed), *extra)
        assert code == 2 and "Metronome would bill each of them twice" in err
        assert summary["exit_status"] == 2
    assert emulator.state.accepted == 204
    code, _, _ = run_to_end(emulator, path, state_dir, "-m", str(changed), "--restart",
                            "--allow-new-transaction-ids")
    assert code == 0 and emulator.state.accepted == 408  # what the flag's help warns of


# --- transaction ids that collapse ---------------------------------------------------------------

MAPPING = """\
mappings:
  - name: tokens
    fields:
      transaction_id: {txid}
      customer_id: $.context.groupId
      timestamp: $.timestamp
      event_type: tokens
"""


@pytest.mark.parametrize("txid, words", [
    ("messageId", "did you mean $.messageId?"),
    ("abc", "the same for every record"),
    ("{literal: $.messageId}", "the same for every record"),
    ('{template: "tokens"}', "the same for every record"),
    ('{template: "{{messageId}-x"}', "unbalanced braces"),
    ("[$.messageId, fallback]", "a literal among the choices"),
    ("{path: $.messageId, default: x}", "a default gives every record"),
])
def test_a_transaction_id_that_cannot_vary_is_a_mapping_error(run, write, txid, words):
    write("m.yaml", MAPPING.format(txid=txid))
    result = run("validate", "-m", "m.yaml")
    assert result.exit_code == 2
    assert "m.yaml:4:" in result.stderr and words in result.stderr


def test_a_template_variable_missing_rejects_the_record(run, write, tmp_path):
    write("m.yaml", MAPPING.format(txid='{template: "{{messageId}}-{{properties.song}}"}'))
    path = write("in.jsonl", jsonl(track(1, properties={"song": "a"}), track(2)))
    result = run("send", path, "--dry-run", *NOW, "-m", "m.yaml", "--json", "--rejects", "r.jsonl")
    summary = orjson.loads(result.stdout)
    assert summary["events"] == 1 and summary["rejected"] == 1
    [reject] = read_jsonl(tmp_path / "r.jsonl")
    assert (reject["stage"], reject["code"], reject["mapping"]) == ("map", "missing-field",
                                                                   "tokens")
    assert "no value for properties.song" in reject["reason"]


@pytest.mark.parametrize("properties, words", [
    ("{from: $.properties, flaten: true}", "did you mean 'flatten'?"),
    ("{from: $.properties, pick: tokens}", "pick: [tokens]"),
    ("{pick: [tokens]}", "needs 'from' or 'set' beside it"),
])
def test_properties_options_are_checked(run, write, properties, words):
    write("m.yaml", MAPPING.format(txid="$.messageId") + f"      properties: {properties}\n")
    result = run("validate", "-m", "m.yaml")
    assert result.exit_code == 2 and words in result.stderr


def test_rejects_name_the_mapping_at_every_stage(run, write, tmp_path):
    path = write("in.jsonl", jsonl(track(1, timestamp="2020-01-01T00:00:00Z"), track(2)))
    httpx_mock_free = run("send", path, "--dry-run", *NOW, "--rejects", "r.jsonl")
    assert httpx_mock_free.exit_code == 1
    [reject] = read_jsonl(tmp_path / "r.jsonl")
    assert reject["stage"] == "validate"
    assert reject["mapping"] == "Send track events to Metronome"


# --- a stop settles the frame in hand: the summary counts what was written, no line torn ------

@pytest.mark.parametrize("reader", ["1", "0"], ids=["reader-process", "one-process"])
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_map_stopped_while_its_output_pipe_is_full_counts_what_it_wrote(tmp_path, signum,
                                                                         status, reader):
    """``map ... | slow consumer``: the stop arrives while a write waits for room in the pipe.
    The step in hand (a reader's frame, or one record without a reader process) is written
    whole before the run stops, so the summary's events are the lines written, every one of
    them whole."""
    path = tmp_path / "export.jsonl"
    path.write_bytes(jsonl(*[track(n) for n in range(60_000)]))
    process = subprocess.Popen([sys.executable, "-m", "segmetro", "map", str(path), *NOW,
                                "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=ROOT, env=dict(os.environ, SEGMETRO_READER_PROCESS=reader))
    time.sleep(1.5)  # nothing reads the pipe yet: the map waits in a write
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == status, err
    summary = orjson.loads(err[err.index(b"{\n"):])
    assert summary["interrupted"] == signum.name
    lines = out.split(b"\n")
    assert lines.pop() == b""  # the output ends with a whole line
    assert all(orjson.loads(line)["customer_id"] for line in lines)
    assert summary["events"] == len(lines) < 60_000


def test_a_second_stop_ends_a_map_whose_output_pipe_stays_full(tmp_path):
    """The first stop waits for the frame in hand to be written; when nothing ever reads the
    pipe, a second one ends the run at once."""
    path = tmp_path / "export.jsonl"
    path.write_bytes(jsonl(*[track(n) for n in range(60_000)]))
    process = subprocess.Popen([sys.executable, "-m", "segmetro", "map", str(path), *NOW,
                                "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=ROOT)
    time.sleep(1.5)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert process.poll() is None  # still writing the frame in hand
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 143  # without anything reading its output
    process.communicate(timeout=20)


def test_write_all_finishes_writes_a_signal_cut_short():
    """What map's output and the object feed to the reader use: a write that returns short
    (as a pipe's does when a signal lands) is carried on from where it stopped."""
    from segmetro.files import write_all

    out = bytearray()

    def short(view):
        out.extend(view[:7])
        return min(7, len(view))

    write_all(short, b"0123456789" * 5)
    assert bytes(out) == b"0123456789" * 5


def test_a_reader_that_dies_inside_a_frame_is_reported_as_ended():
    """A lane killed while writing a frame leaves a frame cut short: the run says the reader
    ended (exit 70 with what was read), not that a pickle was truncated."""
    from segmetro.mapping import load_mapping
    from segmetro.reader import ReaderProcess
    from segmetro.sources import expand_inputs
    from segmetro.status import InternalError

    reader = ReaderProcess(expand_inputs([]), load_mapping(None), None, uploading=False)
    read_fd, write_fd = os.pipe()
    os.write(write_fd, (100).to_bytes(4, "little") + b"\x80\x05only ten")
    os.close(write_fd)
    with pytest.raises(InternalError, match="reader process .* ended before reading every"):
        next(reader._frames(read_fd, 999_999))
