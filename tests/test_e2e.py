"""The real CLI against the emulator over real sockets on 127.0.0.1 (ephemeral ports)."""

import time

import orjson
import pytest
from conftest import SAMPLE, jsonl, read_jsonl, track

from harness import BackgroundEmulator

from segmetro.emulator import EmulatorState, Faults
from segmetro.timestamps import parse_rfc3339

NOW = "2026-11-25T00:00:00Z"
TOKEN = "e2e-token"


def events(count, start=0):
    return [track(n, timestamp=f"2026-11-{10 + n % 14:02d}T{n % 24:02d}:00:00.000Z",
                  context={"groupId": f"acct_{n % 7}"}) for n in range(start, start + count)]


@pytest.fixture
def emulate(tmp_path):
    servers = []

    def emulate(**faults):
        store = open(tmp_path / "store.jsonl", "ab")
        state = EmulatorState(TOKEN, Faults(**faults), now_ms=parse_rfc3339(NOW), store=store)
        server = BackgroundEmulator(state).__enter__()
        servers.append((server, store))
        return server

    yield emulate
    for server, store in servers:
        server.__exit__(None, None, None)
        store.close()


def stored_ids(tmp_path) -> list[str]:
    return [e["transaction_id"] for e in read_jsonl(tmp_path / "store.jsonl")]


def send(run, server, path, *extra, token=TOKEN):
    return run("send", path, "--now", NOW, "--api-token", token, "--base-url", server.base_url,
               "--max-backoff", "0.05", "--json", "--rejects", "rejects.jsonl", *extra)


def test_clean_send_stores_exactly_the_expected_transaction_ids(run, emulate, tmp_path):
    server = emulate()
    result = send(run, server, SAMPLE)
    summary = orjson.loads(result.stdout)
    dry = orjson.loads(run("map", SAMPLE, "--now", NOW, "-q", "--rejects", "r2.jsonl").stdout
                       .replace("\n", ",").strip(",").join("[]"))
    expected = list(dict.fromkeys(e["transaction_id"] for e in dry))
    assert sorted(stored_ids(tmp_path)) == sorted(expected)
    assert summary["sent"] == summary["events"] == len(dry)
    assert server.state.duplicates == len(dry) - len(expected)  # the sample repeats one event
    assert result.exit_code == 1  # the sample has rejected records by design


@pytest.mark.parametrize("reader_process", [True, False], ids=["reader-process", "in-process"])
def test_faults_every_valid_event_stored_exactly_once_nothing_invalid_sent(
        run, write, emulate, tmp_path, monkeypatch, reader_process):
    monkeypatch.setenv("SEGMETRO_READER_PROCESS", "1" if reader_process else "0")
    server = emulate(error_rate=0.2, throttle_rate=0.1, drop_rate=0.05, retry_after=0.01,
                     latency_ms=2, latency_jitter_ms=5, seed=42)
    valid = events(2000)
    invalid = [track(5000 + n, timestamp="2026-01-01T00:00:00Z") for n in range(20)]
    mixed = valid[:1000] + invalid + valid[1000:]
    # 25-event batches: enough requests (over 100) that every kind of fault surely happens.
    result = send(run, server, write("in.jsonl", jsonl(*mixed)), "--rate-limit", "0",
                  "--max-retries", "20", "--batch-size", "25")
    summary = orjson.loads(result.stdout)
    assert summary["sent"] == 2000 and summary["rejected"] == 20
    ids = stored_ids(tmp_path)
    assert len(ids) == len(set(ids)) == 2000
    assert set(ids) == {e["messageId"] for e in valid}
    assert server.state.rejected_batches == 0  # nothing invalid reached the server
    assert summary["retries"] > 0 and summary["throttled"] > 0
    assert server.state.dropped > 0 and server.state.duplicates > 0  # drops resent, deduped


def test_one_bad_event_in_a_batch_of_100(run, write, emulate, tmp_path):
    """The client validates with a wider window than the server: the server's 400 splits it."""
    server = emulate()
    batch = events(100)
    batch[63] = track(63, timestamp="2026-10-01T00:00:00.000Z", context={"groupId": "a"})
    result = send(run, server, write("in.jsonl", jsonl(*batch)), "--backdate-days", "365")
    summary = orjson.loads(result.stdout)
    assert result.exit_code == 1
    assert len(stored_ids(tmp_path)) == 99 and "msg-63" not in stored_ids(tmp_path)
    [reject] = read_jsonl(tmp_path / "rejects.jsonl")
    assert reject["stage"] == "api" and reject["event"]["transaction_id"] == "msg-63"
    assert "older than the 34-day" in reject["reason"]
    assert summary["bisected"] > 0


def test_wrong_token_exits_3_and_stores_nothing(run, write, emulate, tmp_path):
    server = emulate()
    result = send(run, server, write("in.jsonl", jsonl(*events(300))), token="wrong")
    assert result.exit_code == 3
    assert "refused the API token" in orjson.loads(result.stdout)["aborted"]
    assert server.state.accepted == 0 and "wrong" not in result.output


def test_rate_limit_is_respected(run, write, emulate, tmp_path):
    server = emulate(max_events_per_second=1500)
    path = write("in.jsonl", jsonl(*events(3000)))
    started = time.monotonic()
    result = send(run, server, path, "--rate-limit", "1000")
    elapsed = time.monotonic() - started
    summary = orjson.loads(result.stdout)
    assert summary["sent"] == 3000 and summary["throttled"] == 0
    assert server.state.requests_by_status.get(429, 0) == 0
    assert 2.6 < elapsed < 4.5  # 3000 events at 1000/s, 0.1 s burst allowed


def test_check_auth_against_the_emulator(run, emulate):
    server = emulate()
    ok = run("check-auth", "--api-token", TOKEN, "--base-url", server.base_url)
    bad = run("check-auth", "--api-token", "nope", "--base-url", server.base_url)
    assert (ok.exit_code, bad.exit_code) == (0, 3)


@pytest.mark.parametrize("state", [False, True], ids=["no-state", "state"])
def test_send_through_the_reader_process_does_what_one_process_does(
        run, write, emulate, tmp_path, monkeypatch, state):
    """Events travel from the reader process in runs, with the unread lines between them
    (``reader._Entries``): a send stores, counts and rejects what one process would, whether a
    checkpoint follows each outcome (--state) or the run is counted in bulk. Repeats (the same
    event again) and conflicts (another event under an id) come inside runs and across them,
    where the child checks them a run at a time."""
    identify = {"type": "identify", "userId": "u", "messageId": "i"}
    rows = []
    tracks = events(600)
    for n, event in enumerate(tracks):
        rows.append(event)
        rows += [dict(identify, messageId=f"i{n}-{k}") for k in range(n % 3)]
        if n % 50 == 7:  # right after it, in its run
            rows.append(event)
        if n % 70 == 33:  # a later run's: another event under the id of one 20 events back
            rows.append(dict(tracks[n - 20], properties={"other": True}))
        if n % 90 == 45:  # after it, a batch line's item (no run's) with another event its id
            rows.append({"batch": [dict(event, properties={"batch": True})]})
    path = write("in.jsonl", jsonl(*rows) + SAMPLE.read_bytes())
    results = []
    for setting in ("1", "0"):
        monkeypatch.setenv("SEGMETRO_READER_PROCESS", setting)
        (tmp_path / "store.jsonl").unlink(missing_ok=True)
        server = emulate()
        extra = ("--state", tmp_path / f"state-{setting}") if state else ()
        result = send(run, server, path, "--rate-limit", "0", *extra)
        summary = orjson.loads(result.stdout)
        for key in ("elapsed_seconds", "events_per_second", "rejects_path", "checkpoint"):
            summary.pop(key, None)
        results.append((sorted(stored_ids(tmp_path)), summary,
                        [(r["line"], r["code"]) for r in read_jsonl(tmp_path / "rejects.jsonl")]))
        (tmp_path / "rejects.jsonl").unlink(missing_ok=True)
    assert results[0] == results[1]
    assert results[0][1]["skipped_by_type"]["(unread: no trigger can match)"] > 600
    assert results[0][1]["sent"] > 600 and results[0][1]["rejected"] > 10
    assert results[0][1]["duplicates"] >= 12
    conflicts = [line for line, code in results[0][2] if code == "conflicting-transaction-id"]
    assert len(conflicts) >= 14


def test_events_metronome_rejects_reach_the_rejects_file_from_the_reader_process(
        run, write, tmp_path, monkeypatch):
    """A send's events travel from the reader process as runs, and become outcomes only when
    one is needed (``reader.Events``). When Metronome rejects some (here an emulator whose
    backdating window is shorter than the client's), the batch is split down to them, and each
    reaches the rejects file with its own line and record, as when one process does it all."""
    identify = {"type": "identify", "userId": "u", "messageId": "i"}
    rows = []
    for n, event in enumerate(events(400)):
        rows.append(event)
        rows += [dict(identify, messageId=f"i{n}-{k}") for k in range(n % 3)]
    path = write("in.jsonl", jsonl(*rows))
    ids_by_line = {number: row["messageId"] for number, row in enumerate(rows, 1)}
    results = []
    for setting in ("1", "0"):
        monkeypatch.setenv("SEGMETRO_READER_PROCESS", setting)
        (tmp_path / "store.jsonl").unlink(missing_ok=True)
        with open(tmp_path / "store.jsonl", "ab") as store:
            state = EmulatorState(TOKEN, now_ms=parse_rfc3339(NOW), store=store,
                                  backdate_days=10)
            with BackgroundEmulator(state) as server:
                result = send(run, server, path, "--rate-limit", "0")
        summary = orjson.loads(result.stdout)
        rejects = read_jsonl(tmp_path / "rejects.jsonl")
        (tmp_path / "rejects.jsonl").unlink()
        assert {r["stage"] for r in rejects} == {"api"}
        assert all(r["record"]["messageId"] == ids_by_line[r["line"]] for r in rejects)
        assert all(r["record"]["timestamp"] < "2026-11-15" for r in rejects)
        results.append((summary["sent"], summary["rejected"], summary["bisected"],
                        sorted(stored_ids(tmp_path)), sorted((r["line"], r["seq"]) for r in rejects)))
    assert results[0] == results[1]
    sent, rejected = results[0][:2]
    too_old = sum(1 for n in range(400) if n % 14 < 5)  # days 10 to 14
    assert (sent, rejected) == (400 - too_old, too_old) and sent == len(results[0][3])
