"""Hostile inputs, files and neighbours: nothing damaged, nothing counted twice, nothing followed."""

import gzip
import os
import stat
import subprocess
import sys
import time

import orjson
import pytest
from conftest import ROOT, jsonl, read_jsonl, rejects_in, track

from segmetro.sources import expand_inputs, read_records

NOW = ["--now", "2026-11-25T00:00:00Z"]


# --- outputs never touch inputs ----------------------------------------------------------------

def test_map_onto_its_own_input_is_refused_and_the_input_kept(run, write):
    path = write("x.jsonl", jsonl(track(1), track(2)))
    before = open(path, "rb").read()
    result = run("map", path, *NOW, "-o", path)
    assert result.exit_code == 2 and "is the input" in result.stderr
    assert open(path, "rb").read() == before


def test_rejects_onto_an_input_is_refused_also_through_another_name(run, write, tmp_path):
    path = write("in.jsonl", jsonl(track(1, context={})))
    os.link(path, tmp_path / "hard.jsonl")
    for name in (path, "hard.jsonl", "./in.jsonl"):
        result = run("send", path, "--dry-run", *NOW, "--rejects", name)
        assert result.exit_code == 2 and "is the input" in result.stderr
    assert os.path.getsize(path) == len(jsonl(track(1, context={})))


def test_a_state_directory_holding_an_input_is_refused(run, write, tmp_path):
    (tmp_path / "state").mkdir(mode=0o700)
    path = write("state/in.jsonl", jsonl(track(1)))
    result = run("send", path, *NOW, "--api-token", "tok1", "--base-url", "http://127.0.0.1:9",
                 "--state", tmp_path / "state")
    assert result.exit_code == 2 and "holds the input" in result.stderr


def test_a_run_never_reads_its_own_rejects_back(run, write, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write("data/day.jsonl", jsonl(*[track(n, context={}) if n % 3 else track(n)
                                    for n in range(30)]))
    os.chdir(data)
    lines = []
    for _ in range(3):
        summary = orjson.loads(run("send", ".", "--dry-run", *NOW, "--json").stdout)
        lines.append(summary["lines"])
        time.sleep(1.01)  # a new default name each run
    assert lines == [30, 30, 30]
    assert len(rejects_in(data)) == 3
    assert sum("a segmetro rejects file" in why for why in summary["inputs_left_out"]) == 2


# --- walking directories and globs --------------------------------------------------------------

def test_symlink_loops_are_not_followed_and_each_file_is_read_once(write, tmp_path):
    write("s3/src/1/a.gz", gzip.compress(jsonl(track(1), track(2))))
    write("s3/src/2/b.gz", gzip.compress(jsonl(track(3))))
    os.symlink("..", tmp_path / "s3" / "src" / "loop")
    os.symlink(tmp_path / "s3" / "src" / "1", tmp_path / "s3" / "linked")  # followed once
    os.symlink(tmp_path / "nowhere", tmp_path / "s3" / "dangling.gz")
    for spec in (str(tmp_path / "s3" / "**" / "*.gz"), str(tmp_path / "s3")):
        inputs = expand_inputs([spec])
        assert sorted(os.path.basename(f.path) for f in inputs.files) == ["a.gz", "b.gz"]
        assert len(list(read_records(inputs))) == 3
        assert any("dangling symlink" in why for why in inputs.left_out)
        assert any("a directory already read" in why or "a.gz: the same file as" in why
                   for why in inputs.left_out)


def test_the_same_file_twice_is_read_once(run, write):
    path = write("x.jsonl", jsonl(track(1)))
    summary = orjson.loads(run("send", path, path, "--dry-run", *NOW, "--json").stdout)
    assert summary["events"] == 1 and summary["files"] == 1
    assert summary["inputs_left_out"] == [f"{path}: the same file as {path}, read once"]


def test_a_glob_matches_as_the_shell_would(write, tmp_path):
    write("d/x1.jsonl", jsonl(track(1)))
    write("d/sub/x2.jsonl", jsonl(track(2)))
    write("d/.x3.jsonl", jsonl(track(3)))
    names = lambda spec: sorted(os.path.relpath(f.path, tmp_path)  # noqa: E731
                                for f in expand_inputs([str(tmp_path / spec)]).files)
    assert names("d/*.jsonl") == ["d/x1.jsonl"]
    assert names("d/**/*.jsonl") == ["d/sub/x2.jsonl", "d/x1.jsonl"]
    assert names("d/*/x?.jsonl") == ["d/sub/x2.jsonl"]
    assert names("d/x[0-9].jsonl") == ["d/x1.jsonl"]


# --- private files ---------------------------------------------------------------------------------

def test_a_planted_symlink_at_the_default_rejects_name_is_never_written(run, write, tmp_path):
    path = write("in.jsonl", jsonl(track(1, context={})))
    victim = tmp_path / "victim"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for offset in range(3):  # whichever second the run starts in
        name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() + offset))
        os.symlink(victim, tmp_path / f"segmetro-rejects-{name}.jsonl")
    result = run("send", path, "--dry-run", *NOW, "--json")
    assert result.exit_code == 1 and not victim.exists()
    written = orjson.loads(result.stdout)["rejects_path"]
    assert not os.path.islink(written) and stamp[:8] in written
    assert stat.S_IMODE(os.stat(written).st_mode) == 0o600


def test_rejects_through_a_symlink_is_refused(run, write, tmp_path):
    path = write("in.jsonl", jsonl(track(1, context={})))
    target = write("target.txt", "mine\n")
    os.chmod(target, 0o644)
    os.symlink(target, tmp_path / "r.jsonl")
    result = run("send", path, "--dry-run", *NOW, "--rejects", "r.jsonl")
    assert result.exit_code == 2 and "is a symlink" in result.stderr
    assert open(target).read() == "mine\n" and stat.S_IMODE(os.stat(target).st_mode) == 0o644


def test_an_existing_rejects_file_keeps_its_mode(run, write, tmp_path):
    path = write("in.jsonl", jsonl(track(1, context={})))
    existing = write("r.jsonl", "")
    os.chmod(existing, 0o640)
    assert run("send", path, "--dry-run", *NOW, "--rejects", "r.jsonl").exit_code == 1
    assert stat.S_IMODE(os.stat(existing).st_mode) == 0o640 and read_jsonl(existing)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files as another user")
def test_files_of_another_user_are_not_written(run, write, tmp_path):
    path = write("in.jsonl", jsonl(track(1, context={})))
    theirs = write("theirs.jsonl", "")
    os.chown(theirs, 65534, 65534)
    result = run("send", path, "--dry-run", *NOW, "--rejects", "theirs.jsonl")
    assert result.exit_code == 2 and "belongs to another user" in result.stderr


def test_special_files_work_and_are_left_as_they_are(run, write):
    path = write("in.jsonl", jsonl(track(1), track(2, context={})))
    mode = os.stat("/dev/null").st_mode
    result = run("send", path, "--dry-run", *NOW, "--rejects", "/dev/null")
    assert result.exit_code == 1 and os.stat("/dev/null").st_mode == mode
    done = subprocess.run([sys.executable, "-m", "segmetro", "map", path, *NOW, "-q",
                           "-o", "/dev/stdout", "--rejects", "/dev/null"],
                          capture_output=True, cwd=ROOT, timeout=60)
    assert done.returncode == 1 and done.stdout.startswith(b'{"transaction_id":"msg-1"')


def test_an_open_state_directory_is_refused(run, write, tmp_path):
    path = write("in.jsonl", jsonl(track(1)))
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    result = run("send", path, *NOW, "--api-token", "tok1", "--base-url", "http://127.0.0.1:9",
                 "--state", shared)
    assert result.exit_code == 2 and "can be written by group or others" in result.stderr


def test_state_files_are_private_and_planted_links_are_not_followed(run, write, tmp_path,
                                                                   httpx_mock):
    path = write("in.jsonl", jsonl(track(1)))
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    victim = write("victim.txt", "keep me\n")
    os.symlink(victim, state / "state.json.tmp")  # a fixed temp name is never used
    httpx_mock.add_response(url="http://127.0.0.1:9/v1/ingest", status_code=200)
    result = run("send", path, *NOW, "--api-token", "tok1", "--base-url", "http://127.0.0.1:9",
                 "--state", state)
    assert result.exit_code == 0 and open(victim).read() == "keep me\n"
    for name in ("state.json", "lock"):
        info = os.lstat(state / name)
        assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    os.remove(state / "lock")
    os.symlink(victim, state / "lock")
    result = run("send", path, *NOW, "--api-token", "tok1", "--base-url", "http://127.0.0.1:9",
                 "--state", state)
    assert result.exit_code == 2 and open(victim).read() == "keep me\n"


def test_map_output_is_private(run, write, tmp_path):
    path = write("in.jsonl", jsonl(track(1)))
    assert run("map", path, *NOW, "-o", "events.jsonl").exit_code == 0
    assert stat.S_IMODE(os.stat(tmp_path / "events.jsonl").st_mode) == 0o600


# --- long lines, bombs and clocks ----------------------------------------------------------------

def test_an_over_long_line_is_rejected_and_reading_goes_on(run, write, tmp_path):
    path = write("in.jsonl", jsonl(track(1)) + b'{"x": "' + b"a" * (3 << 20) + b'"}\n'
                 + jsonl(track(2)))
    result = run("send", path, "--dry-run", *NOW, "--json", "--rejects", "r.jsonl",
                 "--max-line-bytes", str(1 << 20))
    summary = orjson.loads(result.stdout)
    assert summary["events"] == 2 and summary["rejected_by_stage"] == {"parse": 1}
    [reject] = read_jsonl(tmp_path / "r.jsonl")
    assert reject["code"] == "line-too-long" and reject["line"] == 2
    assert len(reject["record"]) == 1024 and os.path.getsize(tmp_path / "r.jsonl") < 4096


def test_a_gzip_bomb_is_read_in_bounded_memory(write, tmp_path):
    bomb = tmp_path / "bomb.gz"
    zeros = b"0" * (1 << 20)
    with gzip.open(bomb, "wb") as handle:  # 400 MiB of zeros, about 400 KB on disk
        for _ in range(400):
            handle.write(zeros)
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from segmetro.sources import expand_inputs, read_records\n"
            "records = list(read_records(expand_inputs([%r])))\n"
            "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "print(len(records), records[0].error_code, peak.split()[1])" % (str(ROOT),
                                                                             str(bomb)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    assert out[:2] == ["1", "line-too-long"]
    assert int(out[2]) < 100 * 1024  # KiB: the 400 MiB line was never held


def test_long_lines_are_split_in_linear_time(write):
    """A single 64 MiB line: quadratic splitting took seconds; linear is a fraction of one."""
    from segmetro.sources import ByteCounter, InputFile, open_lines

    path = write("one.jsonl", b"x" * (64 << 20))
    started = time.process_time()
    lines, stream = open_lines(InputFile(path, None), ByteCounter(), 1 << 20)
    [line] = list(lines)
    stream.close()
    assert line.length == 64 << 20
    assert time.process_time() - started < 2.0


def test_now_is_refused_against_a_real_metronome(run, write):
    path = write("in.jsonl", jsonl(track(1)))
    result = run("send", path, *NOW, "--api-token", "tok1")
    assert result.exit_code == 2 and "--now is for rehearsals" in result.stderr


def test_the_window_follows_the_clock_on_long_runs(monkeypatch):
    from segmetro.cli import live_window
    from segmetro.events import DAY_MS
    from segmetro.pipeline import RepeatCheck, process
    from segmetro.mapping import load_mapping
    from segmetro.sources import SegmentRecord

    clock = [1_795_000_000_000]
    monkeypatch.setattr("segmetro.cli.current_ms", lambda: clock[0])
    ts = lambda ms: __import__("segmetro.timestamps").timestamps.format_ms(ms)  # noqa: E731

    def records():
        for n in range(10_000):
            if n == 5000:
                clock[0] += 40 * DAY_MS  # the run has gone on (a test's 40 days)
            yield SegmentRecord("f", n + 1, n, track(n, timestamp=ts(1_795_000_000_000)))

    outcomes = list(process(records(), load_mapping(None), live_window(34), repeats=RepeatCheck()))
    codes = {o.code for o in outcomes[-100:]}
    assert outcomes[0].kind.name == "EVENT" and codes == {"timestamp-too-old"}
