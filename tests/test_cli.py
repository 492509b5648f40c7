import gzip
import os
import stat

import click
import orjson
import pytest
from conftest import SAMPLE, jsonl, read_jsonl, rejects_in, track

from segmetro.cli import cli

NOW = ["--now", "2026-11-25T00:00:00Z"]


def test_version(run):
    result = run("--version")
    assert result.exit_code == 0 and "segmetro, version" in result.output


def test_every_command_and_option_has_help():
    for name, command in cli.commands.items():
        assert command.help, f"{name} has no help"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts} has no help"


@pytest.mark.parametrize("command", ["send", "map", "validate", "inspect"])
def test_help_runs(run, command):
    result = run(command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_send_help_lists_exit_codes(run):
    assert "70 internal error" in " ".join(run("send", "--help").output.split())


def test_dry_run_of_the_sample_shows_every_part_of_the_summary(run, tmp_path):
    result = run("send", SAMPLE, "--dry-run", *NOW, "--show", "2")
    assert result.exit_code == 1, result.output
    out = result.output
    assert "309 lines read (310 records) from 1 file" in out
    assert "valid, would be sent" in out and "Tokens Used" in out
    assert "no trigger matched" in out and "(unread: no trigger can match)" in out
    assert "map: missing-customer-id" in out
    assert "validate: timestamp-too-old" in out and "operations team" in out
    assert "parse: invalid-json" in out and "parse: not-object" in out
    assert "parse: not-object (first at " in out and "segment-export.jsonl:14)" in out
    assert "example events (2)" in out
    [rejects] = rejects_in(tmp_path)
    assert f"rejects written to {rejects}" in out


def test_json_summary_keys(run, tmp_path):
    result = run("send", SAMPLE, "--dry-run", *NOW, "--json")
    summary = orjson.loads(result.stdout)
    assert {"lines", "events", "skipped", "rejected", "sent", "by_event_type",
            "rejects_path"} <= set(summary)
    assert summary["lines"] == 309 and summary["sent"] == 0
    assert summary["events"] == sum(summary["by_event_type"].values())
    assert summary["events"] + summary["skipped"] + summary["rejected"] + \
        summary["duplicates"] == summary["records"]
    assert summary["duplicates"] == 1  # the sample's replayed event
    assert summary["rejected_by_stage"] == {"map": 19, "validate": 1, "parse": 2}
    assert summary["exit_status"] == 1
    assert os.path.basename(summary["rejects_path"]) in rejects_in(tmp_path)
    parse = [r for r in summary["rejected_by_reason"] if r["code"] == "invalid-json"]
    assert parse[0]["first_at"].endswith("segment-export.jsonl:13")


def test_rejects_file_format_and_permissions(run, write, tmp_path):
    path = write("in.jsonl", jsonl(track(1), b"{broken", track(2, context={}),
                                   track(3, timestamp="2020-01-01T00:00:00Z")))
    result = run("send", path, "--dry-run", *NOW, "--rejects", "rej.jsonl")
    assert result.exit_code == 1
    rejects = read_jsonl(tmp_path / "rej.jsonl")
    assert [(r["line"], r["stage"], r["code"]) for r in rejects] == [
        (2, "parse", "invalid-json"), (3, "map", "missing-customer-id"),
        (4, "validate", "timestamp-too-old")]
    assert rejects[0]["record"] == "{broken" and "event" not in rejects[0]
    assert rejects[1]["record"]["messageId"] == "msg-2" and "event" not in rejects[1]
    assert rejects[2]["event"]["transaction_id"] == "msg-3"
    assert all(r["file"] == path for r in rejects)
    assert stat.S_IMODE(os.stat(tmp_path / "rej.jsonl").st_mode) == 0o600


def test_no_rejects_file_when_nothing_is_rejected_and_exit_0(run, write, tmp_path):
    path = write("in.jsonl", jsonl(track(1), {"type": "identify", "userId": "u"}))
    result = run("send", path, "--dry-run", *NOW)
    assert result.exit_code == 0, result.output
    assert rejects_in(tmp_path) == [] and "rejects" not in result.output


def test_rejects_are_never_overwritten(run, write, tmp_path):
    path = write("in.jsonl", jsonl(b"{broken"))
    run("send", path, "--dry-run", *NOW, "--rejects", "r.jsonl")
    second = run("send", path, "--dry-run", *NOW, "--rejects", "r.jsonl")
    assert "rejects appended to r.jsonl" in second.output
    assert len(read_jsonl(tmp_path / "r.jsonl")) == 2
    run("send", path, "--dry-run", *NOW)
    run("send", path, "--dry-run", *NOW)
    assert len(rejects_in(tmp_path)) == 2  # default names are new each run


def test_stdin_and_gzip_inputs(run, write):
    zipped = write("day.gz", gzip.compress(jsonl(track(1))))
    result = run("send", "-", zipped, "--dry-run", *NOW, "--json",
                 input=jsonl(track(2), track(3)))
    summary = orjson.loads(result.stdout)
    assert summary["events"] == 3 and summary["files"] == 2


def test_skipped_files_are_counted(run, write, tmp_path):
    write("logs/src/1/a.gz", gzip.compress(jsonl(track(1))))
    write("logs/dummy-object.txt", "")
    result = run("send", tmp_path / "logs", "--dry-run", *NOW, "--json")
    summary = orjson.loads(result.stdout)
    assert summary["events"] == 1 and summary["files_skipped"][0].endswith("dummy-object.txt")


def test_a_named_pipe_given_as_an_input_is_refused_not_skipped(run, write, tmp_path):
    """``segmetro send <(zcat day.gz)`` from cron must not end in exit 0 having read nothing;
    in a directory, a pipe is skipped and counted, as any file that is not event data."""
    pipe = tmp_path / "logs" / "feed.jsonl"
    write("logs/a.jsonl", jsonl(track(1)))
    os.mkfifo(pipe)
    result = run("send", pipe, "--dry-run", *NOW)
    assert result.exit_code == 2
    assert f"{pipe}: a pipe (as <(…) makes), not a regular file" in result.stderr
    assert "the input `-`" in result.stderr
    result = run("send", tmp_path / "logs", "--dry-run", *NOW, "--json")
    summary = orjson.loads(result.stdout)
    assert summary["events"] == 1 and summary["files_skipped"] == [str(pipe)]


@pytest.mark.parametrize("args, message", [
    (["send", "missing.jsonl", "--dry-run"], "missing.jsonl: no such file or directory"),
    (["send", "nothing-*.jsonl", "--dry-run"], "matches no file"),
    (["send", "--dry-run"], "Missing argument"),
    (["send", "x", "--dry-run", "--now", "someday"], "is not a timestamp"),
    (["send", "x", "--dry-run", "--bogus"], "No such option"),
    (["send", "x", "--dry-run", "-m", "nope.yaml"], "nope.yaml:1:1: cannot read"),
])
def test_usage_and_configuration_errors_exit_2(run, write, args, message):
    write("x", jsonl(track(1)))
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.output


def test_bad_mapping_lists_every_problem_and_exits_2(run, write):
    write("bad.yaml", "mappings:\n  - name: A\n    trigger: type = 'track'\n    fields: {}\n")
    result = run("validate", "-m", "bad.yaml")
    assert result.exit_code == 2
    assert "bad.yaml:3:21: trigger: single-quoted string" in result.output
    assert "bad.yaml:4:5: 'fields' has no 'transaction_id'" in result.output


def test_interrupt_exits_130(run, write, monkeypatch):
    path = write("in.jsonl", jsonl(track(1)))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("segmetro.run.process", interrupted)
    monkeypatch.setenv("SEGMETRO_READER_PROCESS", "0")  # the patch lives in this process
    result = run("send", path, "--dry-run", *NOW)
    assert result.exit_code == 130


def test_map_writes_events_one_per_line(run, write, tmp_path):
    path = write("in.jsonl", jsonl(track(1, timestamp=1795154400000), track(2, context={})))
    result = run("map", path, *NOW, "-o", "events.jsonl")
    assert result.exit_code == 1
    assert read_jsonl(tmp_path / "events.jsonl") == [{
        "transaction_id": "msg-1", "customer_id": "acct_1", "event_type": "API Call",
        "timestamp": "2026-11-20T06:00:00.000Z", "properties": {"tokens": 1}}]
    to_stdout = run("map", path, *NOW, "-q")
    assert to_stdout.stdout.splitlines()[0].startswith('{"transaction_id":"msg-1"')
    assert "rejected" in to_stdout.stderr


def test_map_with_a_worked_example(run):
    result = run("map", SAMPLE, *NOW, "-m", SAMPLE.parent.parent / "mappings" /
                 "tokens-as-string.yaml")
    events = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert events and all(e["event_type"] == "tokens" for e in events)
    assert all(isinstance(e["properties"]["tokens"], str) for e in events)


def test_validate_mapping_only(run):
    result = run("validate", "-m", SAMPLE.parent.parent / "mappings" / "fan-out.yaml")
    assert result.exit_code == 0
    assert "OK, 2 mapping(s): Report generated, Report pages" in result.output


@pytest.mark.parametrize("reader_process", ["1", "0"])  # the parent checks, or the one process
@pytest.mark.parametrize("command", [["validate"], ["send", "--dry-run"], ["map", "-o", "e.jsonl"]])
def test_repeated_transaction_ids_counted_or_rejected(run, write, tmp_path, monkeypatch, command,
                                                      reader_process):
    monkeypatch.setenv("SEGMETRO_READER_PROCESS", reader_process)
    path = write("in.jsonl", jsonl(track(1), track(2), track(1),
                                   track(1, properties={"tokens": 99})))
    result = run(*command, path, *NOW, "--json", "--rejects", "r.jsonl")
    summary = orjson.loads(result.stdout if command[0] != "map" else result.stderr)
    assert summary["events"] == 2 and summary["duplicates"] == 1 and summary["rejected"] == 1
    [reject] = read_jsonl(tmp_path / "r.jsonl")
    assert (reject["line"], reject["stage"], reject["code"]) == (
        4, "validate", "conflicting-transaction-id")
    assert f"{path}:1" in reject["reason"]
    assert reject["record"]["properties"] == {"tokens": 99}  # the record, to replay after a fix
    if command[0] == "map":
        assert [e["transaction_id"] for e in read_jsonl(tmp_path / "e.jsonl")] == [
            "msg-1", "msg-2"]
    text = run(*command, path, *NOW).output
    assert "the same event as earlier in the run" in text


def test_validate_window_flags(run, write):
    path = write("in.jsonl", jsonl(track(1, timestamp="2026-11-20T00:00:00Z")))
    assert run("validate", path, *NOW).exit_code == 0
    assert run("validate", path, *NOW, "--backdate-days", "2").exit_code == 1
    assert run("validate", path, "--now", "2026-11-18T00:00:00Z").exit_code == 1


def test_inspect_lists_paths_counts_types_and_examples(run):
    result = run("inspect", SAMPLE, "--event", "Tokens Used", "--json")
    [group] = orjson.loads(result.stdout)["groups"]
    paths = {p["path"]: p for p in group["paths"]}
    assert group["type"] == "track" and group["event"] == "Tokens Used"
    assert paths["$.properties.tokens"]["types"] == {"number": group["records"]}
    assert paths["$.context.groupId"]["count"] < group["records"]
    text = run("inspect", SAMPLE, "--type", "page", "--limit", "5").output
    assert 'page: 5 record(s)' in text and "$.properties.path" in text


def test_unreadable_input_is_a_configuration_error(run, write, monkeypatch):
    path = write("secret.jsonl", jsonl(track(1)))
    real_access = os.access
    # CI runs as root, who reads any file: make this one unreadable to segmetro's check.
    monkeypatch.setattr("segmetro.sources.os.access",
                        lambda p, mode: p != path and real_access(p, mode))
    result = run("send", path, "--dry-run", *NOW)
    assert result.exit_code == 2 and f"{path}: not readable" in result.output


def mapped(run, name):
    result = run("map", SAMPLE, *NOW, "-q", "-m", SAMPLE.parent.parent / "mappings" / name)
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def test_worked_example_customer_from_userid_falls_back_to_the_user(run):
    events = mapped(run, "customer-from-userid.yaml")
    sample = [orjson.loads(line) for line in SAMPLE.read_bytes().lstrip(b"\xef\xbb\xbf")
              .splitlines() if line.startswith(b'{"type":"track"')]
    without_group = {r["messageId"]: r["userId"] for r in sample
                     if "groupId" not in r["context"]}
    assert without_group  # the sample has track events without context.groupId
    by_id = {e["transaction_id"]: e for e in events}
    assert all(by_id[txid]["customer_id"] == user for txid, user in without_group.items()
               if txid in by_id)
    assert len(events) > len(mapped(run, "default.yaml"))


def test_worked_example_customer_from_account_trait(run):
    events = mapped(run, "customer-from-account-trait.yaml")
    assert events and {e["event_type"] for e in events} == {"api_call"}
    assert all(e["customer_id"].startswith("acct_") for e in events)
    assert all(set(e["properties"]) <= {"endpoint", "status", "user"} for e in events)


def test_worked_example_page_views_as_usage(run):
    events = mapped(run, "page-views.yaml")
    assert events and {e["event_type"] for e in events} == {"page_view"}
    assert {"page", "url_path", "url_url", "url_title"} <= set(events[0]["properties"])


@pytest.mark.parametrize("args, message", [
    (["send", "in.jsonl", "--dry-run", "--rejects", "no/such/dir/r.jsonl"],
     "--rejects no/such/dir/r.jsonl: the directory no/such/dir does not exist"),
    (["map", "in.jsonl", "-o", "no/such/dir/events.jsonl"],
     "-o/--output no/such/dir/events.jsonl: No such file or directory"),
])
def test_unwritable_outputs_are_configuration_errors(run, write, args, message):
    write("in.jsonl", jsonl(track(1)))
    result = run(*args, *NOW)
    assert result.exit_code == 2 and message in result.output


def test_the_core_imports_neither_click_nor_rich():
    """The HTTP modules are left out: httpx imports its own command line (click and rich)."""
    import subprocess
    import sys

    code = ("import sys; import segmetro.run, segmetro.checkpoint, segmetro.summary, "
            "segmetro.billing, segmetro.emulator, segmetro.reader; "
            "print(sorted(m for m in ('click', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_inspect_reports_lines_it_could_not_read(run, write):
    import gzip as gz

    body = gz.compress(jsonl(*[track(n) for n in range(3000)]))
    path = write("cut.gz", body[: len(body) // 2])
    bad = write("bad.jsonl", jsonl(track(1), b"{oops"))
    found = orjson.loads(run("inspect", path, bad, "--json").stdout)
    assert found["unreadable"] == {"bad-gzip": 1, "invalid-json": 1}
    text = run("inspect", bad).output
    assert "1 line(s) could not be read (invalid-json), first at" in text and "bad.jsonl:2" in text
