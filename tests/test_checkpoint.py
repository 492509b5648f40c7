"""Cron safety end to end: kill -9, SIGTERM, overlapping runs, changed inputs and mappings.

The client runs as a real subprocess (so it can be killed) against the emulator on loopback.
"""

import os
import signal
import subprocess
import sys
import time

import orjson
import pytest
from conftest import ROOT, jsonl, read_jsonl, track

from segmetro.checkpoint import RunLock
from harness import BackgroundEmulator

from segmetro.emulator import EmulatorState, Faults
from segmetro.timestamps import parse_rfc3339

NOW = "2026-11-25T00:00:00Z"
TOKEN = "cron-token"
CONCURRENCY = 4
BATCH = 100


def valid(n):
    return track(n, timestamp=f"2026-11-{10 + n % 14:02d}T{n % 24:02d}:00:00.000Z")


def export(count, reject_every=0):
    """``count`` records; every ``reject_every``-th one is missing its customer (a map reject)."""
    return [track(n, context={}) if reject_every and n % reject_every == 0 else valid(n)
            for n in range(count)]


@pytest.fixture
def emulator(tmp_path):
    store = open(tmp_path / "store.jsonl", "ab")
    state = EmulatorState(TOKEN, Faults(latency_ms=5), now_ms=parse_rfc3339(NOW), store=store)
    with BackgroundEmulator(state) as server:
        yield server
    store.close()


def command(server, path, state_dir, *extra):
    return [sys.executable, "-m", "segmetro", "send", str(path), "--now", NOW,
            "--api-token", TOKEN, "--base-url", server.base_url, "--state", str(state_dir),
            "--concurrency", str(CONCURRENCY), "--batch-size", str(BATCH), "--json", "-q",
            *extra]


def run_to_end(server, path, state_dir, *extra):
    done = subprocess.run(command(server, path, state_dir, *extra), capture_output=True,
                          cwd=ROOT, timeout=120)
    return done.returncode, orjson.loads(done.stdout) if done.stdout.strip() else None, \
        done.stderr.decode()


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


def assert_gone(pids: list[int], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{pid}") and
                   open(f"/proc/{pid}/stat").read().split()[2] != "Z" for pid in pids):
            return
        time.sleep(0.05)
    raise AssertionError(f"processes {pids} outlived their parent")


def stored(tmp_path):
    return [e["transaction_id"] for e in read_jsonl(tmp_path / "store.jsonl")]


@pytest.mark.parametrize("kill_after", [0.4, 1.0, 1.8])
def test_kill_9_then_rerun_stores_every_event_once_and_resends_at_most_in_flight(
        emulator, tmp_path, kill_after):
    records = export(6000, reject_every=97)
    path = tmp_path / "export.jsonl"
    path.write_bytes(jsonl(*records))
    state_dir = tmp_path / "state"
    process = subprocess.Popen(command(emulator, path, state_dir, "--rate-limit", "3000"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    time.sleep(kill_after)
    readers = children_of(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert_gone(readers)  # the reader process does not outlive its parent
    accepted_before = emulator.state.accepted
    code, summary, _ = run_to_end(emulator, path, state_dir, "--rate-limit", "0")
    assert code == 1, summary  # the records without a customer are rejected
    expected = {r["messageId"] for r in records if r["context"]}
    assert accepted_before < len(expected)  # killed mid-run
    ids = stored(tmp_path)
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert emulator.state.duplicates <= CONCURRENCY * BATCH
    if accepted_before > CONCURRENCY * BATCH:  # more than was in flight: progress was kept
        assert "files resumed" in summary["checkpoint"]
    rejects = read_jsonl(state_dir / "rejects.jsonl")
    assert sorted(r["record"]["messageId"] for r in rejects) == sorted(
        r["messageId"] for r in records if not r["context"])  # each written once


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_signal_drains_checkpoints_summarises_and_exits(emulator, tmp_path, signum, status):
    records = export(8000)
    path = tmp_path / "export.jsonl"
    path.write_bytes(jsonl(*records))
    state_dir = tmp_path / "state"
    process = subprocess.Popen(command(emulator, path, state_dir, "--rate-limit", "2000"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    time.sleep(1.2)
    process.send_signal(signum)
    out, _ = process.communicate(timeout=30)
    summary = orjson.loads(out)
    assert process.returncode == status and summary["interrupted"] == signum.name
    assert 0 < summary["sent"] < 8000
    assert summary["sent"] == emulator.state.accepted  # drained: nothing left unconfirmed
    code, summary, _ = run_to_end(emulator, path, state_dir, "--rate-limit", "0")
    assert code == 0 and "files resumed" in summary["checkpoint"]
    assert sorted(stored(tmp_path)) == sorted(r["messageId"] for r in records)
    assert emulator.state.duplicates == 0


def test_finished_and_renamed_files_are_skipped(emulator, tmp_path):
    path = tmp_path / "day1.jsonl"
    path.write_bytes(jsonl(*export(250)))
    state_dir = tmp_path / "state"
    assert run_to_end(emulator, path, state_dir)[0] == 0
    renamed = tmp_path / "day1-copy.jsonl"
    path.rename(renamed)
    code, summary, _ = run_to_end(emulator, renamed, state_dir)
    assert code == 0 and summary["checkpoint"] == {"files finished earlier, skipped": 1}
    assert summary["sent"] == 0 and emulator.state.accepted == 250


def test_a_changed_file_is_noticed_and_read_again(emulator, tmp_path):
    path = tmp_path / "day.jsonl"
    path.write_bytes(jsonl(*export(100)))
    state_dir = tmp_path / "state"
    run_to_end(emulator, path, state_dir)
    path.write_bytes(jsonl(*export(150)))
    code, summary, _ = run_to_end(emulator, path, state_dir)
    assert code == 0 and "day.jsonl" in summary["checkpoint"][
        "files changed since they were last read, read from the start"]
    assert emulator.state.accepted == 150 and emulator.state.duplicates == 100


def test_another_mapping_is_refused_unless_restart(emulator, tmp_path):
    path = tmp_path / "day.jsonl"
    path.write_bytes(jsonl(*export(10)))
    state_dir = tmp_path / "state"
    run_to_end(emulator, path, state_dir)
    other = str(ROOT / "mappings" / "customer-from-userid.yaml")
    code, _, err = run_to_end(emulator, path, state_dir, "-m", other)
    assert code == 2 and "made with another mapping" in err and "--restart" in err
    code, summary, _ = run_to_end(emulator, path, state_dir, "-m", other, "--restart")
    assert code == 0 and summary["sent"] == 10
    assert (state_dir / "state.json.before-restart").exists()


def test_another_destination_is_refused(emulator, tmp_path):
    path = tmp_path / "day.jsonl"
    path.write_bytes(jsonl(*export(10)))
    state_dir = tmp_path / "state"
    run_to_end(emulator, path, state_dir)
    argv = command(emulator, path, state_dir)
    argv[argv.index("--base-url") + 1] = "http://127.0.0.2:9"
    done = subprocess.run(argv, capture_output=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2 and b"was made for" in done.stderr


def test_overlapping_runs_are_stopped_and_a_stale_lock_taken_over(emulator, tmp_path):
    path = tmp_path / "day.jsonl"
    path.write_bytes(jsonl(*export(10)))
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    holder = RunLock(str(state_dir))
    holder.acquire()
    code, summary, err = run_to_end(emulator, path, state_dir)
    assert code == 4 and f"PID {os.getpid()}" in err and emulator.state.accepted == 0
    holder.release()
    (state_dir / "lock").write_text("999999 2026-11-25T00:00:00Z\n")  # a dead run's lock file
    code, summary, _ = run_to_end(emulator, path, state_dir)
    assert code == 0 and summary["checkpoint"][
        "took over the lock of a process no longer running"] == "PID 999999"


def test_state_refuses_stdin_and_dry_run(run, emulator, tmp_path):
    result = run("send", "-", "--state", tmp_path / "s", "--api-token", TOKEN, "--base-url",
                 emulator.base_url, input=b"")
    assert result.exit_code == 2 and "stdin cannot be resumed" in result.output
    result = run("send", "-", "--state", tmp_path / "s", "--dry-run", input=b"")
    assert result.exit_code == 2


def test_rejects_written_once_when_killed_before_any_progress_was_recorded(emulator, tmp_path):
    """Only rejects, no events: nothing is journaled until the file ends, so a kill comes before
    the state knows the file at all; the rerun must still not write a reject twice."""
    records = [track(n, context={}) for n in range(60_000)]
    path = tmp_path / "export.jsonl"
    path.write_bytes(jsonl(*records))
    state_dir = tmp_path / "state"
    process = subprocess.Popen(command(emulator, path, state_dir), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=ROOT)
    rejects = state_dir / "rejects.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not rejects.exists() or rejects.stat().st_size < 10**6):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written_before = len(rejects.read_bytes().splitlines())
    assert 0 < written_before < 60_000
    code, summary, _ = run_to_end(emulator, path, state_dir)
    assert code == 1 and summary["rejected"] == 60_000
    seqs = [r["seq"] for r in read_jsonl(rejects)]
    assert sorted(seqs) == list(range(60_000))


def test_a_copy_of_an_input_in_the_same_run_is_read_once(emulator, tmp_path):
    content = jsonl(*export(120))
    (tmp_path / "a.jsonl").write_bytes(content)
    (tmp_path / "a-copy.jsonl").write_bytes(content)
    code, summary, _ = run_to_end(emulator, tmp_path / "*.jsonl", tmp_path / "state")
    assert code == 0 and summary["sent"] == 120 and emulator.state.duplicates == 0
    assert "a.jsonl" in summary["checkpoint"][
        "files with the same content as another input, skipped"]


def test_fanned_out_records_finish_their_file(emulator, tmp_path):
    """Two events a record, and a skipped record first so that outcome counts are odd: the
    reader process must never split one record's outcomes, or its file would never finish."""
    mapping = tmp_path / "two.yaml"
    mapping.write_text("mappings:\n" + "".join(
        f"  - name: {name}\n    trigger: type = \"track\"\n    fields:\n"
        f"      transaction_id: {{template: \"{{{{messageId}}}}-{name}\"}}\n"
        f"      customer_id: $.context.groupId\n      timestamp: $.timestamp\n"
        f"      event_type: {name}\n" for name in ("a", "b")))
    path = tmp_path / "day.jsonl"
    path.write_bytes(jsonl({"type": "identify", "userId": "u"}, *export(1500)))
    state_dir = tmp_path / "state"
    code, summary, _ = run_to_end(emulator, path, state_dir, "-m", str(mapping))
    assert code == 0 and summary["sent"] == 3000
    state = orjson.loads((state_dir / "state.json").read_bytes())
    assert [f["done"] for f in state["files"].values()] == [True]
