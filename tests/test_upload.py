"""The HTTP layer, each status path, against pytest-httpx (nothing leaves the process)."""

import gzip
import time
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import httpx
import orjson
import pytest
from conftest import jsonl, read_jsonl, track

from segmetro.upload import AdaptiveLimit, Verdict, retry_after, verdict

URL = "http://127.0.0.1:9/v1/ingest"
TOKEN = "sk-test-SECRET-1234"
NOW = ["--now", "2026-11-25T00:00:00Z"]


@pytest.fixture
def send(run, write):
    def send(records, *extra):
        path = write("in.jsonl", jsonl(*records))
        return run("send", path, *NOW, "--api-token", TOKEN, "--base-url", "http://127.0.0.1:9",
                   "--max-backoff", "0.01", "--rate-limit", "0", "--json", "--rejects",
                   "rejects.jsonl", *extra)

    return send


def bodies(httpx_mock) -> list[list[dict]]:
    return [orjson.loads(r.read()) for r in httpx_mock.get_requests()]


def test_batches_in_input_order_with_bearer_token(send, httpx_mock):
    httpx_mock.add_response(url=URL, status_code=200, is_reusable=True)
    result = send([track(n) for n in range(250)], "--concurrency", "1")
    summary = orjson.loads(result.stdout)
    assert result.exit_code == 0 and summary["sent"] == 250 and summary["requests"] == 3
    sent = bodies(httpx_mock)
    assert [len(b) for b in sent] == [100, 100, 50]
    assert [e["transaction_id"] for b in sent for e in b] == [f"msg-{n}" for n in range(250)]
    request = httpx_mock.get_requests()[0]
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert "idempotency-key" not in request.headers


def test_batch_size_option(send, httpx_mock):
    httpx_mock.add_response(url=URL, status_code=200, is_reusable=True)
    send([track(n) for n in range(7)], "--batch-size", "3")
    assert sorted(len(b) for b in bodies(httpx_mock)) == [1, 3, 3]


def test_400_bisects_until_the_bad_event_stands_alone(send, httpx_mock, tmp_path):
    def answer(request):
        events = orjson.loads(request.read())
        if any(e["transaction_id"] == "msg-37" for e in events):
            return httpx.Response(400, json={"message": "event rejected"})
        return httpx.Response(200)

    httpx_mock.add_callback(answer, url=URL, is_reusable=True)
    result = send([track(n) for n in range(100)])
    summary = orjson.loads(result.stdout)
    assert result.exit_code == 1
    assert summary["sent"] == 99 and summary["rejected_by_stage"] == {"api": 1}
    assert summary["bisected"] == 6  # 100 -> 50 -> 25 -> 13 -> 6 -> 3 -> 1
    [reject] = read_jsonl(tmp_path / "rejects.jsonl")
    assert reject["stage"] == "api" and reject["event"]["transaction_id"] == "msg-37"
    assert "HTTP 400" in reject["reason"] and "event rejected" in reject["reason"]


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token_stops_at_once_with_exit_3_and_never_prints_it(send, httpx_mock, status,
                                                                      tmp_path):
    httpx_mock.add_response(url=URL, status_code=status, json={"message": "nope"},
                            is_reusable=True)
    result = send([track(n) for n in range(500)], "--concurrency", "1")
    assert result.exit_code == 3
    summary = orjson.loads(result.stdout)
    assert "refused the API token" in summary["aborted"]
    assert summary["sent"] == 0 and summary["not_attempted"] >= 100
    assert len(httpx_mock.get_requests()) == 1
    assert TOKEN not in result.output and TOKEN not in result.stderr
    assert not (tmp_path / "rejects.jsonl").exists()


def test_429_pauses_and_retries_honouring_retry_after_ms(send, httpx_mock):
    httpx_mock.add_response(url=URL, status_code=429, headers={
        "retry-after-ms": "200", "X-Metronome-Rate-Limit-Type": "customer"})
    httpx_mock.add_response(url=URL, status_code=200)
    started = time.monotonic()
    result = send([track(1)])
    summary = orjson.loads(result.stdout)
    assert result.exit_code == 0 and summary["sent"] == 1
    assert summary["throttled"] == 1 and summary["retries"] == 1
    assert time.monotonic() - started >= 0.2
    assert "limit type customer" in result.stderr


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
def test_retryable_statuses_are_retried(send, httpx_mock, status):
    httpx_mock.add_response(url=URL, status_code=status)
    httpx_mock.add_response(url=URL, status_code=200)
    summary = orjson.loads(send([track(1)]).stdout)
    assert summary["sent"] == 1 and summary["retries"] == 1
    assert bodies(httpx_mock)[0] == bodies(httpx_mock)[1]  # same events, same transaction ids


def test_connection_errors_and_timeouts_are_retried(send, httpx_mock):
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=URL)
    httpx_mock.add_exception(httpx.ReadTimeout("slow"), url=URL)
    httpx_mock.add_response(url=URL, status_code=200)
    summary = orjson.loads(send([track(1)]).stdout)
    assert summary["sent"] == 1 and summary["retries"] == 2


@pytest.mark.parametrize("status", [409, 422, 501])
def test_other_client_errors_reject_the_batch_and_the_run_goes_on(send, httpx_mock, status,
                                                                   tmp_path):
    httpx_mock.add_response(url=URL, status_code=status, json={"message": "no such thing"})
    httpx_mock.add_response(url=URL, status_code=200)
    result = send([track(n) for n in range(150)], "--concurrency", "1")
    summary = orjson.loads(result.stdout)
    assert result.exit_code == 1
    assert summary["sent"] == 50 and summary["rejected_by_stage"] == {"api": 100}
    rejects = read_jsonl(tmp_path / "rejects.jsonl")
    assert len(rejects) == 100 and f"HTTP {status}: no such thing" in rejects[0]["reason"]


def test_unreachable_after_retries_aborts_with_exit_3(send, httpx_mock):
    httpx_mock.add_response(url=URL, status_code=503, is_reusable=True)
    result = send([track(n) for n in range(30)], "--max-retries", "2")
    summary = orjson.loads(result.stdout)
    assert result.exit_code == 3
    assert "unreachable" in summary["aborted"] and "after 2 retries" in summary["aborted"]
    assert summary["sent"] == 0 and summary["not_attempted"] == 30
    assert len(httpx_mock.get_requests()) == 3


def test_gzip_bodies_on_request(send, httpx_mock):
    httpx_mock.add_response(url=URL, status_code=200)
    send([track(1)], "--gzip")
    request = httpx_mock.get_requests()[0]
    assert request.headers["content-encoding"] == "gzip"
    assert orjson.loads(gzip.decompress(request.read()))[0]["transaction_id"] == "msg-1"


def test_nothing_valid_means_no_request(send, httpx_mock):
    result = send([track(1, context={})])
    assert result.exit_code == 1 and orjson.loads(result.stdout)["requests"] == 0


def test_plain_http_only_to_loopback_and_a_token_is_required(run, write, monkeypatch):
    monkeypatch.delenv("METRONOME_BEARER_TOKEN", raising=False)
    monkeypatch.delenv("METRONOME_API_TOKEN", raising=False)
    path = write("in.jsonl", jsonl(track(1)))
    result = run("send", path, "--api-token", "t", "--base-url", "http://api.example.com")
    assert result.exit_code == 2 and "only to loopback" in result.output
    result = run("send", path)
    assert result.exit_code == 2 and "METRONOME_BEARER_TOKEN" in result.output


def test_token_from_either_environment_variable(run, write, httpx_mock, monkeypatch):
    httpx_mock.add_response(url=URL, status_code=200, is_reusable=True)
    path = write("in.jsonl", jsonl(track(1)))
    monkeypatch.setenv("METRONOME_BASE_URL", "http://127.0.0.1:9")
    for name in ("METRONOME_BEARER_TOKEN", "METRONOME_API_TOKEN"):
        monkeypatch.delenv("METRONOME_BEARER_TOKEN", raising=False)
        monkeypatch.setenv(name, "env-token")
        assert run("send", path, *NOW, "-q").exit_code == 0
    assert all(r.headers["authorization"] == "Bearer env-token"
               for r in httpx_mock.get_requests())


@pytest.mark.parametrize("status, code, words", [
    (400, 0, "accepted"), (401, 3, "refused"), (403, 3, "refused"), (500, 3, "unexpected")])
def test_check_auth(run, httpx_mock, status, code, words):
    httpx_mock.add_response(url=URL, status_code=status)
    result = run("check-auth", "--api-token", TOKEN, "--base-url", "http://127.0.0.1:9")
    assert result.exit_code == code and words in result.output
    assert httpx_mock.get_requests()[0].read() == b"[]"
    assert TOKEN not in result.output


def test_retry_after_forms():
    def response(**headers):
        return httpx.Response(429, headers=headers)

    assert retry_after(response(**{"retry-after-ms": "1500"})) == 1.5
    assert retry_after(response(**{"retry-after": "2"})) == 2.0
    assert retry_after(response(**{"retry-after": "600"})) == 60.0
    future = datetime.now(timezone.utc) + timedelta(seconds=30)
    assert 28 < retry_after(response(**{"retry-after": format_datetime(future, usegmt=True)})) <= 30
    assert retry_after(response(**{"retry-after": "soon"})) is None
    assert retry_after(response()) is None


@pytest.mark.parametrize("status, meaning", [
    (200, Verdict.ACKNOWLEDGED),
    (400, Verdict.SPLIT), (413, Verdict.SPLIT),
    (401, Verdict.REFUSED), (403, Verdict.REFUSED),
    (301, Verdict.MISROUTED), (302, Verdict.MISROUTED), (307, Verdict.MISROUTED),
    (308, Verdict.MISROUTED), (404, Verdict.MISROUTED), (405, Verdict.MISROUTED),
    (415, Verdict.MISROUTED),
    (408, Verdict.RETRY), (429, Verdict.RETRY), (500, Verdict.RETRY), (502, Verdict.RETRY),
    (503, Verdict.RETRY), (504, Verdict.RETRY), (599, Verdict.RETRY),
    (409, Verdict.REJECTED), (422, Verdict.REJECTED), (501, Verdict.REJECTED),
])
def test_the_one_policy_table(status, meaning):
    assert verdict(status) is meaning


@pytest.mark.parametrize("status", [301, 404, 405, 415])
def test_a_wrong_url_aborts_with_exit_3_and_settles_nothing(send, httpx_mock, status, tmp_path):
    headers = {"location": "https://elsewhere.example/v1/ingest"} if status == 301 else {}
    httpx_mock.add_response(url=URL, status_code=status, headers=headers, is_reusable=True)
    result = send([track(n) for n in range(204)], "--concurrency", "1")
    summary = orjson.loads(result.stdout)
    assert result.exit_code == 3 and summary["exit_status"] == 3
    assert f"HTTP {status}" in summary["aborted"] and "not Metronome's ingest" in \
        summary["aborted"]
    assert summary["rejected"] == 0 and summary["not_attempted"] == 204
    assert not (tmp_path / "rejects.jsonl").exists()


def test_a_base_url_ending_in_the_ingest_path_is_named_as_the_fix(run, write, httpx_mock):
    path = write("in.jsonl", jsonl(track(1)))
    httpx_mock.add_response(url="http://127.0.0.1:9/v1/ingest/v1/ingest", status_code=404,
                            is_reusable=True)
    result = run("send", path, *NOW, "--api-token", TOKEN, "--base-url",
                 "http://127.0.0.1:9/v1/ingest", "--json")
    assert result.exit_code == 3
    assert "ends in /v1/ingest: give only the root" in orjson.loads(result.stdout)["aborted"]


def test_413_splits_like_400(send, httpx_mock, tmp_path):
    def answer(request):
        events = orjson.loads(request.read())
        return httpx.Response(413 if len(events) > 25 else 200)

    httpx_mock.add_callback(answer, url=URL, is_reusable=True)
    summary = orjson.loads(send([track(n) for n in range(100)]).stdout)
    assert summary["sent"] == 100 and summary["rejected"] == 0 and summary["bisected"] == 3


def test_requests_in_flight_double_each_round_trip_until_congestion_then_grow_by_one():
    """Slow start, as TCP's: a send at 50 ms reaches 64 requests in flight after three round
    trips instead of fifty; after the first sign of congestion the limit grows by one a round
    trip, and a 429 halves it."""
    def round_trip(limit):  # every request in flight answers, latency steady
        for _ in range(int(limit.limit)):
            limit.success(0.05)

    limit = AdaptiveLimit(64)
    sizes = [limit.limit]
    for _ in range(3):
        round_trip(limit)
        sizes.append(limit.limit)
    assert sizes == [8, 16, 32, 64]

    limit = AdaptiveLimit(64)
    round_trip(limit)
    limit.back_pressure()  # a 429, 5xx or timeout
    assert limit.limit == 8 and not limit.slow_start
    round_trip(limit)
    assert 8.9 < limit.limit < 9.1
