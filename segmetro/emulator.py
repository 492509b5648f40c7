"""A local Metronome-compatible ingest server, for rehearsals and tests (``segmetro emulator``).

It behaves as ``/v1/ingest`` is documented to: Bearer auth (401), a JSON array of 1 to 100 events
(else 400 with ``{"message": ...}``), each event checked against the ``Event`` schema and the
timestamp window with the very rules segmetro validates by, one invalid event failing the whole
batch, dedupe by ``transaction_id`` (a duplicate gets 200 and is counted), gzip request bodies.
Accepted events are appended to a JSON Lines store; ``GET /stats`` gives the counters.

Faults, seeded so tests repeat: latency, a share of 500/503, a share of 429 with ``Retry-After``,
connections dropped after the batch was stored, and a hard events-per-second limit (429).

Built on asyncio's Protocol with a small HTTP/1.1 parser rather than a web framework: a request
here costs a few tens of microseconds of parsing on top of JSON and validation, which is what lets
one core answer thousands of 100-event batches a second (measured in benchmarks/).
"""

from __future__ import annotations

import asyncio
import gzip
import os
import random
import signal
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import IO

import orjson

from segmetro.events import DEFAULT_BACKDATE_DAYS, MAX_BATCH, Window, check_event
from segmetro.files import open_private
from segmetro.timestamps import now_ms

MAX_BODY = 64 << 20
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           405: "Method Not Allowed", 411: "Length Required", 413: "Payload Too Large",
           429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class Faults:
    latency_ms: float = 0.0  # fixed latency before every answer
    latency_jitter_ms: float = 0.0  # plus a uniform random share up to this
    error_rate: float = 0.0  # share of ingest requests answered 500 or 503 (nothing stored)
    throttle_rate: float = 0.0  # share answered 429 with Retry-After (nothing stored)
    retry_after: float = 0.05  # seconds, for the 429s above
    drop_rate: float = 0.0  # share whose connection is closed after the batch was stored
    max_events_per_second: float = 0.0  # hard limit, 429 beyond it; 0 for none
    seed: int = 0


@dataclass
class EmulatorState:
    token: str
    faults: Faults = field(default_factory=Faults)
    now_ms: int | None = None  # a fixed clock for the timestamp window; None for real time
    backdate_days: int = DEFAULT_BACKDATE_DAYS
    store: IO[bytes] | None = None
    accepted: int = 0
    duplicates: int = 0
    rejected_batches: int = 0
    dropped: int = 0
    requests_by_status: Counter = field(default_factory=Counter)
    seen: set = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)
    first_accept: float | None = None  # when the first and last batches were stored
    last_accept: float | None = None

    def __post_init__(self) -> None:
        self.random = random.Random(self.faults.seed)
        self._window_start = time.monotonic()
        self._window_events = 0.0

    def window(self) -> Window:
        return Window(self.now_ms if self.now_ms is not None else now_ms(), self.backdate_days)

    def over_rate(self, events: int) -> float | None:
        """Seconds until ``events`` more fit under the hard limit, or None if they fit now."""
        limit = self.faults.max_events_per_second
        if limit <= 0:
            return None
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start, self._window_events = now, 0.0
        if self._window_events + events > limit:
            return max(0.001, 1.0 - (now - self._window_start))
        self._window_events += events
        return None

    def stats(self) -> dict:
        elapsed = time.monotonic() - self.started
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected_batches": self.rejected_batches,
            "dropped_connections": self.dropped,
            "requests_by_status": {str(k): v for k, v in sorted(self.requests_by_status.items())},
            "requests": sum(self.requests_by_status.values()) + self.dropped,
            "ingest_seconds": round((self.last_accept or 0) - (self.first_accept or 0), 3),
            "elapsed_seconds": round(elapsed, 3),
        }

    def ingest(self, events: list) -> None:
        self.last_accept = time.monotonic()
        if self.first_accept is None:
            self.first_accept = self.last_accept
        seen, store = self.seen, self.store
        lines = []
        for event in events:
            txid = event["transaction_id"]
            if txid in seen:
                self.duplicates += 1
                continue
            seen.add(txid)
            self.accepted += 1
            if store is not None:
                lines.append(orjson.dumps(event))
        if lines:
            store.write(b"\n".join(lines) + b"\n")
            store.flush()  # checkable while the emulator runs


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: tuple = ()
    drop: bool = False  # close the connection instead of answering


def _message(status: int, text: str, headers: tuple = ()) -> Answer:
    return Answer(status, orjson.dumps({"message": text}), headers)


def handle_ingest(state: EmulatorState, headers: dict, body: bytes) -> Answer:
    faults, rng = state.faults, state.random
    if headers.get("authorization") != f"Bearer {state.token}":
        return _message(401, "Unauthorized")
    roll = rng.random()
    if roll < faults.error_rate:
        return _message(rng.choice((500, 503)), "injected server error")
    if roll < faults.error_rate + faults.throttle_rate:
        return _message(429, "rate limited (injected)",
                        (("Retry-After", f"{faults.retry_after:g}"),
                         ("X-Metronome-Rate-Limit-Type", "client")))
    if headers.get("content-encoding", "").lower() == "gzip":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError, zlib.error):
            return _message(400, "body is not valid gzip")
    try:
        events = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _message(400, "body is not valid JSON")
    if not isinstance(events, list):
        return _message(400, "body must be a JSON array of events")
    if not 1 <= len(events) <= MAX_BATCH:
        return _message(400, f"a batch holds 1 to {MAX_BATCH} events, not {len(events)}")
    wait = state.over_rate(len(events))
    if wait is not None:
        return _message(429, "rate limit exceeded", (("Retry-After", f"{wait:.3f}"),
                                                     ("X-Metronome-Rate-Limit-Type", "client")))
    window = state.window()
    for index, event in enumerate(events):
        problem = check_event(event, window)
        if problem is not None:
            state.rejected_batches += 1
            return _message(400, f"invalid event at index {index}: {problem[1]}")
    state.ingest(events)
    if faults.drop_rate and rng.random() < faults.drop_rate:
        return Answer(200, drop=True)
    return Answer(200)


class _HTTPProtocol(asyncio.Protocol):
    """HTTP/1.1 with Content-Length bodies and keep-alive; one request at a time per connection."""

    def __init__(self, state: EmulatorState):
        self.state = state
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next_request()

    def _next_request(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > 65536:
                self._close()
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        try:
            method, target, _version = head[0].split(" ", 2)
        except ValueError:
            self._respond(Answer(400, b'{"message":"bad request line"}'), close=True)
            return
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._respond(_message(411, "send a Content-Length"), close=True)
            return
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._respond(_message(413, "body too large"), close=True)
            return
        if len(self.buffer) < end + 4 + length:
            return  # wait for the rest of the body
        body = bytes(self.buffer[end + 4:end + 4 + length])
        del self.buffer[:end + 4 + length]
        close = headers.get("connection", "").lower() == "close"
        self.busy = True
        answer = self._route(method, target.split("?", 1)[0], headers, body)
        delay = self.state.faults.latency_ms
        if self.state.faults.latency_jitter_ms:
            delay += self.state.random.uniform(0, self.state.faults.latency_jitter_ms)
        if delay > 0:
            asyncio.get_running_loop().call_later(delay / 1000, self._finish, answer, close)
        else:
            self._finish(answer, close)

    def _route(self, method: str, path: str, headers: dict, body: bytes) -> Answer:
        if path == "/v1/ingest":
            if method != "POST":
                return _message(405, "use POST")
            return handle_ingest(self.state, headers, body)
        if path == "/stats" and method == "GET":
            if self.state.store is not None:
                self.state.store.flush()
            return Answer(200, orjson.dumps(self.state.stats()))
        return _message(404, f"no route {method} {path}")

    def _finish(self, answer: Answer, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if answer.drop:
            self.state.dropped += 1
            self.transport.abort()
            return
        self.state.requests_by_status[answer.status] += 1
        self._respond(answer, close)
        self.busy = False
        if not close and self.buffer:
            self._next_request()

    def _respond(self, answer: Answer, close: bool = False) -> None:
        lines = [f"HTTP/1.1 {answer.status} {REASONS.get(answer.status, 'Status')}",
                 f"Content-Length: {len(answer.body)}"]
        if answer.body:
            lines.append("Content-Type: application/json")
        lines.extend(f"{name}: {value}" for name, value in answer.headers)
        if close:
            lines.append("Connection: close")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + answer.body)
        if close:
            self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.transport = None


async def serve(state: EmulatorState, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _HTTPProtocol(state), host, port, backlog=1024)


def bound_port(server: asyncio.Server) -> int:
    return server.sockets[0].getsockname()[1]


async def run_until_stopped(state: EmulatorState, host: str, port: int, on_ready,
                            stop: asyncio.Event) -> None:
    server = await serve(state, host, port)
    on_ready(bound_port(server))
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        if state.store is not None:
            state.store.flush()


def open_store(path: str) -> IO[bytes]:
    """The store of accepted events, appended to; private to its owner (it holds customer data,
    like the rejects file; see files.py)."""
    fd, _regular = open_private(path, append=True, what="--store")
    return open(fd, "ab")


def serve_until_signalled(state: EmulatorState, host: str, port: int, on_ready) -> None:
    """Serve until SIGINT or SIGTERM (``segmetro emulator``)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await run_until_stopped(state, host, port, on_ready, stop)

    asyncio.run(main())
