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


# --- a server people leave running ---------------------------------------------------------------

import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from conftest import ROOT  # noqa: E402

from segmetro.emulator import Limits  # noqa: E402


def raw(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def request(body: bytes, token: str = "t0k", extra: str = "") -> bytes:
    return (f"POST /v1/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body


def read_answers(sock: socket.socket, count: int) -> list[int]:
    data, statuses = b"", []
    deadline = time.monotonic() + 20
    while len(statuses) < count and time.monotonic() < deadline:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        data += chunk
        while b"\r\n\r\n" in data:
            head, data = data.split(b"\r\n\r\n", 1)
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            while len(data) < length:
                data += sock.recv(1 << 16)
            statuses.append(int(head.split(b" ")[1]))
            data = data[length:]
    return statuses


def test_half_open_connections_do_not_delay_a_real_client_and_are_closed():
    state = EmulatorState("t0k", Faults(), now_ms=NOW_MS)
    limits = Limits(header_timeout=1.0, max_connections=100)
    with BackgroundEmulator(state, limits=limits) as server:
        idle = [raw(server.port) for _ in range(400)]
        for sock in idle:
            sock.sendall(b"POST /v1/ingest HTTP/1.1\r\nHost")  # and never the rest
        started = time.monotonic()
        response = httpx.post(f"{server.base_url}/v1/ingest", headers=AUTH, timeout=5,
                              content=orjson.dumps([event(1)]))
        assert response.status_code == 200 and time.monotonic() - started < 2
        time.sleep(1.5)
        closed = 0
        for sock in idle:
            try:
                closed += sock.recv(1) == b""
            except OSError:
                closed += 1
            sock.close()
        assert closed == 400  # past the cap at once, the rest by the header timeout


def test_the_token_is_checked_before_a_body_is_read(emulator):
    server, _client = emulator
    with raw(server.port) as sock:
        sock.sendall(request(b"", token="wrong").replace(b"Content-Length: 0",
                                                         b"Content-Length: 61865984"))
        assert read_answers(sock, 1) == [401]  # answered with none of the 59 MiB sent


def test_a_gzip_bomb_is_refused_without_being_inflated(emulator):
    server, client = emulator
    bomb = gzip.compress(b"0" * (250 << 20), compresslevel=9)
    assert len(bomb) < 300_000
    response = client.post("/v1/ingest", content=bomb,
                           headers={**AUTH, "Content-Encoding": "gzip"})
    assert response.status_code == 413 and server.state.accepted == 0


def test_600_pipelined_requests_are_answered_in_order(emulator):
    server, _client = emulator
    with raw(server.port) as sock:
        sock.sendall(b"".join(request(orjson.dumps([event(n)])) for n in range(600)))
        assert read_answers(sock, 600) == [200] * 600
    assert server.state.accepted == 600


def test_a_port_in_use_is_one_line_and_exit_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "segmetro", "emulator", "--port", str(port)],
                              capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use (another program "
        "uses it; --port 0 picks a free one)"]


@pytest.mark.parametrize("store", [False, True], ids=["ids-only", "store"])
def test_repeats_are_counted_the_same_with_or_without_a_store(tmp_path, store):
    """Metronome keeps the first event of an id: a repeat, in the same batch or a later one, is
    a duplicate, whether the emulator keeps only ids or also stores the events."""
    handle = open(tmp_path / "store.jsonl", "ab") if store else None
    state = EmulatorState("t0k", Faults(), now_ms=NOW_MS, store=handle)
    state.ingest([{"transaction_id": t} for t in ("a", "a", "b")])
    state.ingest([{"transaction_id": t} for t in ("b", "c")])
    assert (state.accepted, state.duplicates, sorted(state.seen)) == (3, 2, ["a", "b", "c"])
