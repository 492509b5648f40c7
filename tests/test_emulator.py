"""The emulator answers as Metronome's /v1/ingest is documented to (real sockets on loopback)."""

import gzip

import httpx
import orjson
import pytest

from harness import BackgroundEmulator

from segmetro.emulator import EmulatorState, Faults
from segmetro.timestamps import parse_rfc3339

NOW_MS = parse_rfc3339("2026-11-25T00:00:00Z")
AUTH = {"Authorization": "Bearer t0k"}


def event(n, **overrides):
    e = {"transaction_id": f"t{n}", "customer_id": "c", "event_type": "api_call",
         "timestamp": "2026-11-20T00:00:00.000Z", "properties": {"n": str(n)}}
    e.update(overrides)
    return e


@pytest.fixture
def emulator(tmp_path):
    store = open(tmp_path / "store.jsonl", "ab")
    state = EmulatorState("t0k", Faults(), now_ms=NOW_MS, store=store)
    with BackgroundEmulator(state) as server:
        with httpx.Client(base_url=server.base_url) as client:
            yield server, client
    store.close()


def post(client, body, headers=AUTH):
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post("/v1/ingest", content=content, headers=headers)


def test_accepts_a_valid_batch_with_an_empty_200(emulator):
    server, client = emulator
    response = post(client, [event(1), event(2)])
    assert response.status_code == 200 and response.content == b""
    assert server.state.accepted == 2


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "t0k"}])
def test_missing_or_wrong_token_is_401(emulator, headers):
    assert post(emulator[1], [event(1)], headers).status_code == 401


@pytest.mark.parametrize("body, words", [
    ([], "1 to 100"),
    ([event(n) for n in range(101)], "1 to 100"),
    (b"{not json", "not valid JSON"),
    ({"events": []}, "JSON array"),
])
def test_bad_bodies_are_400_with_a_message(emulator, body, words):
    response = post(emulator[1], body)
    assert response.status_code == 400 and words in response.json()["message"]


@pytest.mark.parametrize("bad", [
    {"transaction_id": ""}, {"transaction_id": "x" * 129}, {"customer_id": ""},
    {"event_type": 3}, {"timestamp": "2026-11-20"}, {"timestamp": "2026-09-01T00:00:00Z"},
    {"timestamp": "2026-11-27T00:00:00Z"}, {"properties": [1]},
])
def test_one_invalid_event_fails_the_whole_batch(emulator, bad):
    server, client = emulator
    response = post(client, [event(1), event(2, **bad), event(3)])
    assert response.status_code == 400 and "index 1" in response.json()["message"]
    assert server.state.accepted == 0 and server.state.rejected_batches == 1


def test_duplicates_get_200_and_are_stored_once(emulator, tmp_path):
    server, client = emulator
    assert post(client, [event(1), event(2)]).status_code == 200
    assert post(client, [event(2), event(3)]).status_code == 200
    stats = client.get("/stats").json()
    assert stats["accepted"] == 3 and stats["duplicates"] == 1
    stored = [orjson.loads(l) for l in (tmp_path / "store.jsonl").read_bytes().splitlines()]
    assert [e["transaction_id"] for e in stored] == ["t1", "t2", "t3"]
    assert stats["requests_by_status"] == {"200": 2}


def test_gzip_bodies(emulator):
    server, client = emulator
    response = post(client, gzip.compress(orjson.dumps([event(1)])),
                    {**AUTH, "Content-Encoding": "gzip"})
    assert response.status_code == 200 and server.state.accepted == 1


def test_injected_faults_are_seeded(tmp_path):
    def statuses(seed):
        state = EmulatorState("t0k", Faults(error_rate=0.3, throttle_rate=0.2, seed=seed),
                              now_ms=NOW_MS)
        with BackgroundEmulator(state) as server, httpx.Client(base_url=server.base_url) as c:
            return [post(c, [event(n)]).status_code for n in range(40)]

    first = statuses(7)
    assert first == statuses(7)
    assert {500, 503, 429, 200} <= set(first)


def test_throttled_answers_carry_retry_after_and_limit_type():
    state = EmulatorState("t0k", Faults(throttle_rate=1.0, retry_after=0.25), now_ms=NOW_MS)
    with BackgroundEmulator(state) as server, httpx.Client(base_url=server.base_url) as client:
        response = post(client, [event(1)])
    assert response.status_code == 429
    assert response.headers["retry-after"] == "0.25"
    assert response.headers["x-metronome-rate-limit-type"] == "client"


def test_hard_rate_limit_answers_429():
    state = EmulatorState("t0k", Faults(max_events_per_second=150), now_ms=NOW_MS)
    with BackgroundEmulator(state) as server, httpx.Client(base_url=server.base_url) as client:
        codes = [post(client, [event(n * 100 + i) for i in range(100)]).status_code
                 for n in range(2)]
    assert codes == [200, 429] and state.accepted == 100


def test_dropped_connection_after_storing():
    state = EmulatorState("t0k", Faults(drop_rate=1.0), now_ms=NOW_MS)
    with BackgroundEmulator(state) as server, httpx.Client(base_url=server.base_url) as client:
        with pytest.raises(httpx.TransportError):
            post(client, [event(1)])
    assert state.accepted == 1 and state.dropped == 1


def test_the_emulator_command_serves_until_sigterm_and_prints_its_counters(tmp_path):
    import os
    import signal
    import stat
    import subprocess
    import sys

    store = tmp_path / "accepted.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "segmetro", "emulator", "--port", "0", "--token", "t0k",
         "--store", str(store), "--now", "2026-11-25T00:00:00Z"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = process.stdout.readline().decode().split("listening on ", 1)[1].split()[0]
        with httpx.Client(base_url=url) as client:
            assert post(client, [event(1), event(2)]).status_code == 200
            assert post(client, [event(2)]).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=10)
    stats = orjson.loads(out)
    assert process.returncode == 0
    assert (stats["accepted"], stats["duplicates"]) == (2, 1)
    assert len(store.read_bytes().splitlines()) == 2
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
