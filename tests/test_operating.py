"""Operating a backfill day to day: status, replaying rejects, trying a slice, the display."""

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import orjson
import pytest
from conftest import ROOT, jsonl, read_jsonl, track
from rich.console import Console
from test_checkpoint import TOKEN, command, emulator, export, run_to_end  # noqa: F401

from segmetro.checkpoint import RunLock
from segmetro.pipeline import Tally
from segmetro.summary import UploadStats
from segmetro.ui import RunProgress

NOW = ["--now", "2026-11-25T00:00:00Z"]


def test_limit_reads_only_the_first_records(run, write):
    path = write("in.jsonl", jsonl(*[track(n) for n in range(50)]))
    summary = orjson.loads(run("send", path, "--dry-run", *NOW, "--json", "--limit", "7")
                           .stdout)
    assert summary["records"] == 7 and summary["events"] == 7
    out = run("map", path, *NOW, "-q", "--limit", "3").stdout
    assert len(out.splitlines()) == 3


def test_a_rejects_file_replays_its_records_after_the_mapping_is_fixed(run, write, tmp_path):
    path = write("day.jsonl", jsonl(track(1), track(2, context={}), track(3, context={})))
    run("send", path, "--dry-run", *NOW, "--rejects", "first.jsonl")
    assert len(read_jsonl(tmp_path / "first.jsonl")) == 2
    write("fixed.yaml", (ROOT / "mappings" / "customer-from-userid.yaml").read_text())
    result = run("send", "first.jsonl", "--dry-run", *NOW, "-m", "fixed.yaml", "--json",
                 "--show", "2")
    summary = orjson.loads(result.stdout)
    assert summary["events"] == 2 and summary["rejected"] == 0
    assert [e["transaction_id"] for e in summary["examples"]] == ["msg-2", "msg-3"]
    # still failing: the new reject names where the record first came from
    result = run("send", "first.jsonl", "--dry-run", *NOW, "--rejects", "second.jsonl")
    [again, _] = read_jsonl(tmp_path / "second.jsonl")
    assert (again["file"], again["line"]) == (path, 2)
    assert again["replayed_from"].endswith("first.jsonl:1")
    assert f"{path}:2" in result.output


def test_api_rejects_are_replayable_too(run, write):
    entry = {"file": "day.jsonl", "line": 9, "seq": 8, "stage": "api", "code": "http-400",
             "reason": "Metronome rejected the event", "mapping": "m", "record": track(9)}
    path = write("api-rejects.jsonl", jsonl(entry))
    summary = orjson.loads(run("send", path, "--dry-run", *NOW, "--json").stdout)
    assert summary["events"] == 1


def test_a_dry_run_with_state_shows_what_a_resume_would_do_and_writes_nothing(
        emulator, run, tmp_path):
    path = tmp_path / "day.jsonl"
    path.write_bytes(jsonl(*export(150)))
    state_dir = tmp_path / "state"
    assert run_to_end(emulator, path, state_dir)[0] == 0
    before = {name: os.stat(state_dir / name).st_mtime_ns for name in os.listdir(state_dir)}
    holder = RunLock(str(state_dir))
    holder.acquire()  # a run in progress does not stop a preview
    try:
        result = run("send", path, "--dry-run", *NOW, "--state", state_dir, "--json")
    finally:
        holder.release()
    summary = orjson.loads(result.stdout)
    assert result.exit_code == 0 and summary["records"] == 0
    assert summary["checkpoint"]["files finished earlier, skipped"] == 1
    after = {name: os.stat(state_dir / name).st_mtime_ns for name in os.listdir(state_dir)
             if name != "lock"}
    assert after == {k: v for k, v in before.items() if k != "lock"}


def test_status_says_where_a_backfill_stands(emulator, run, tmp_path):
    state_dir = tmp_path / "state"
    result = run("status", "--state", state_dir)
    assert result.exit_code == 0 and "no run has used" in result.stdout
    done = tmp_path / "a.jsonl"
    done.write_bytes(jsonl(*export(50, reject_every=10)))
    waiting = tmp_path / "b.jsonl"
    waiting.write_bytes(jsonl(*export(5)))
    assert run_to_end(emulator, done, state_dir)[0] == 1
    found = orjson.loads(run("status", "--state", state_dir, waiting, "--json").stdout)
    assert [f["status"] for f in found["files"]] == ["done", "not started"]
    assert found["rejects_by_reason"] == {"map: missing-customer-id": 5}
    assert found["last_run"]["sent"] == 45 and found["last_run"]["exit_status"] == 1
    assert found["running"] is False
    holder = RunLock(str(state_dir))
    holder.acquire()
    try:
        text = run("status", "--state", state_dir).stdout
    finally:
        holder.release()
    assert f"a run is in progress (PID {os.getpid()})" in text
    assert "events by day" in text and "1 done" in text


@pytest.mark.parametrize("args, words", [
    (["--show", "3"], "--show prints example events of a --dry-run"),
    (["--restart"], "--restart works with --state"),
    (["--checkpoint-interval", "2"], "--checkpoint-interval works with --state"),
])
def test_options_that_do_nothing_are_errors(run, write, args, words):
    path = write("in.jsonl", jsonl(track(1)))
    result = run("send", path, *NOW, "--api-token", "tok1", "--base-url", "http://127.0.0.1:9",
                 *args)
    assert result.exit_code == 2 and words in result.stderr


def test_help_shows_validates_inputs_as_optional_and_cites_real_files(run):
    assert "validate [OPTIONS] [INPUT]..." in run("validate", "--help").output
    for name in ("send", "map", "validate", "preflight", "reconcile", "import"):
        for cited in re.findall(r"(?:mappings|samples)/[\w./-]*\w", run(name, "--help").output):
            assert (ROOT / cited).exists(), f"{name} --help cites {cited}"


def test_the_dry_run_summary_charts_events_by_day_with_the_window(run, write):
    path = write("in.jsonl", jsonl(track(1, timestamp="2026-11-20T10:00:00Z"),
                                   track(2, timestamp="2026-09-01T00:00:00Z"),
                                   track(3, timestamp="2026-11-28T00:00:00Z")))
    text = run("send", path, "--dry-run", *NOW).output
    assert "events by day (UTC); Metronome accepts 2026-10-22 to 2026-11-26" in text
    assert "2026-09-01  ░" in text and "too old" in text and "in the future" in text
    assert text.index("the 34-day window starts") < text.index("2026-11-20")
    assert text.index("the 24-hour future limit") < text.index("2026-11-28")
    summary = orjson.loads(run("send", path, "--dry-run", *NOW, "--json").stdout)
    assert summary["by_day"]["2026-11-20"] == {"events": 1, "too_old": 0, "future": 0}


def test_plain_progress_lines_start_with_their_time():
    out = io.StringIO()
    progress = RunProgress(Console(file=out, force_terminal=False), 1000, interval=0)
    tally = Tally(records=10, events=8)
    progress.update(tally, 500, UploadStats(sent=5))
    line = out.getvalue()
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ progress: 5 of 8 events sent", line)
    assert "50% of the input read" in line


def test_ctrl_c_says_what_it_waits_for_and_a_second_stops_at_once(emulator, tmp_path):
    path = tmp_path / "day.jsonl"
    path.write_bytes(jsonl(*export(20_000)))
    emulator.state.faults.latency_ms = 400
    process = subprocess.Popen(command(emulator, path, tmp_path / "state", "--rate-limit", "0",
                                       "--grace-period", "60"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    time.sleep(1.5)
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130 and time.monotonic() - started < 10
    assert "stopping: waiting up to 60 s for" in err.decode()
    assert "stopping now" in err.decode()
    assert orjson.loads(out)["interrupted"] == "SIGINT"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run "
                    "installs it)")
def test_the_progress_display_reads_in_an_80_column_terminal(emulator, tmp_path):
    path = tmp_path / "day.jsonl"
    path.write_bytes(jsonl(*export(12_000)))
    session = f"segmetro-{os.getpid()}"
    argv = [sys.executable, "-m", "segmetro", "send", str(path), *NOW, "--api-token", TOKEN,
            "--base-url", emulator.base_url, "--rate-limit", "3000", "--rejects",
            str(tmp_path / "r.jsonl")]
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24",
                    "-c", str(ROOT), " ".join(argv) + "; sleep 30"], check=True)
    try:
        screen = ""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "events sent" not in screen:
            time.sleep(0.5)
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                    capture_output=True, text=True).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    line = next(line for line in screen.splitlines() if "events sent" in line)
    assert len(line) <= 80 and "…" not in line
    assert re.search(r"[\d.,]+k?/[\d.,]+k? events sent", line)
    assert re.search(r"read +\d+%", line) and "eta" in line and "elapsed" in line
