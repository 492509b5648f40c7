"""A local Metronome-compatible ingest server, for rehearsals and tests (``segmetro emulator``).

It behaves as ``/v1/ingest`` is documented to: Bearer auth (401), a JSON array of 1 to 100 events
(else 400 with ``{"message": ...}``), each event checked against the ``Event`` schema and the
timestamp window with the very rules segmetro validates by, one invalid event failing the whole
batch, dedupe by ``transaction_id`` (a duplicate gets 200 and is counted), gzip request bodies.
Accepted events are appended to a JSON Lines store; ``GET /stats`` gives the counters.

Faults, seeded so tests repeat: latency, a share of 500/503, a share of 429 with ``Retry-After``,
connections dropped after the batch was stored, and a hard events-per-second limit (429).

Built on asyncio's Protocol with httptools (llhttp, the parser of Node.js) rather than a web
framework: a request costs a few microseconds of parsing on top of JSON and validation, which lets
one core answer thousands of 100-event batches a second (measured in benchmarks/). It is a server
people leave running, so it defends itself: a header timeout and an idle timeout, a cap on
connections (the longest idle one makes room), the token checked before a body is read, bodies
and their gzip inflation capped, and pipelined requests answered in order by a loop.
"""

from __future__ import annotations

import asyncio
import random
import signal
import ssl
import time
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import IO

import httptools
import orjson

from segmetro.emulator_account import AccountService
from segmetro.events import DEFAULT_BACKDATE_DAYS, MAX_BATCH, Window, check_event
from segmetro.files import open_private
from segmetro.timestamps import now_ms

MAX_BODY = 8 << 20  # 100 events of 2,000 properties fit; Metronome's own limit is lower
MAX_DECOMPRESSED = 32 << 20  # a gzip body may inflate to this, no further
MAX_HEADER_BYTES = 16 << 10
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           405: "Method Not Allowed", 411: "Length Required", 413: "Payload Too Large",
           414: "URI Too Long", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class Faults:
    latency_ms: float = 0.0  # fixed latency before every answer
    latency_jitter_ms: float = 0.0  # plus a uniform random share up to this
    error_rate: float = 0.0  # share of ingest requests answered 500 or 503 (nothing stored)
    throttle_rate: float = 0.0  # share answered 429 with Retry-After (nothing stored)
    retry_after: float = 0.05  # seconds, for the 429s above
    drop_rate: float = 0.0  # share whose connection is closed after the batch was stored
    max_events_per_second: float = 0.0  # hard limit, 429 beyond it; 0 for none
    lose_rate: float = 0.0  # share of accepted events acknowledged but never counted in usage
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
    account: "AccountService | None" = None  # the read side, when given fixtures

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
        seen, store, account = self.seen, self.store, self.account
        if store is None and account is None:  # the usual case, and the benchmark's: ids only
            before = len(seen)
            seen.update([event["transaction_id"] for event in events])
            accepted = len(seen) - before
            self.accepted += accepted
            self.duplicates += len(events) - accepted
            return
        lines = []
        for event in events:
            txid = event["transaction_id"]
            if txid in seen:
                self.duplicates += 1
                if account is not None:
                    account.duplicate(txid)
                continue
            seen.add(txid)
            self.accepted += 1
            if account is not None and not (
                    self.faults.lose_rate and self.random.random() < self.faults.lose_rate):
                account.keep(event)
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


def authorized(state: EmulatorState, headers: dict) -> bool:
    return headers.get("authorization") == f"Bearer {state.token}"


def _decompress(body: bytes) -> bytes | None:
    """A gzip body, inflated no further than MAX_DECOMPRESSED (a bomb is refused, not held)."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, MAX_DECOMPRESSED + 1)
    except zlib.error:
        return None
    if len(out) > MAX_DECOMPRESSED:
        raise OverflowError
    return out if inflater.eof else None


def handle_ingest(state: EmulatorState, headers: dict, body: bytes) -> Answer:
    faults, rng = state.faults, state.random
    if not authorized(state, headers):
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
            inflated = _decompress(body)
        except OverflowError:
            return _message(413, f"the body inflates past {MAX_DECOMPRESSED:,} bytes")
        if inflated is None:
            return _message(400, "body is not valid gzip")
        body = inflated
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


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    headers: dict
    body: bytes = b""
    keep_alive: bool = True
    query: str = ""


class _Refused(Exception):
    """Stop parsing this connection: the answer is sent, the connection closed."""


class _Connections:
    """Open connections, least recently active first: at the cap, the longest idle one makes
    room for a new one (an idle or half-open connection never locks out a real client)."""

    def __init__(self, cap: int):
        self.cap = cap
        self.open: dict[_HTTPProtocol, None] = {}

    def admit(self, connection: "_HTTPProtocol") -> bool:
        if len(self.open) >= self.cap:
            idle = next((c for c in self.open if not c.busy), None)
            if idle is None:
                return False
            idle.close()  # and forgotten at once, so the next admit picks another
        self.open[connection] = None
        return True

    def touch(self, connection: "_HTTPProtocol") -> None:
        if connection in self.open:  # most recently active last
            del self.open[connection]
            self.open[connection] = None

    def forget(self, connection: "_HTTPProtocol") -> None:
        self.open.pop(connection, None)


class _HTTPProtocol(asyncio.Protocol):
    """HTTP/1.1 parsed by httptools (llhttp, as Node.js): keep-alive, pipelining answered in
    order by a loop, a header timeout, an idle timeout, the token checked before a body is read,
    and every size capped."""

    def __init__(self, state: EmulatorState, connections: _Connections, limits: "Limits"):
        self.state = state
        self.connections = connections
        self.limits = limits
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[_Request] = deque()  # complete requests not yet answered
        self.busy = False  # a request is being answered (latency)
        self.reading = False  # a request has begun and is not complete
        self._url = bytearray()
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._timer: asyncio.TimerHandle | None = None

    # -- connection --------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        if not self.connections.admit(self):
            transport.close()
            return
        self._arm(self.limits.header_timeout)

    def connection_lost(self, exc) -> None:
        self.connections.forget(self)
        if self._timer is not None:
            self._timer.cancel()
        self.transport = None

    def close(self) -> None:
        self.connections.forget(self)
        if self.transport is not None:
            self.transport.close()

    def _arm(self, seconds: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._timed_out)

    def _timed_out(self) -> None:
        if not self.busy and not self.queue:
            self.close()

    def data_received(self, data: bytes) -> None:
        self.connections.touch(self)
        try:
            self.parser.feed_data(data)
        except _Refused:
            return
        except httptools.HttpParserCallbackError as error:
            if isinstance(error.__context__, _Refused):
                return
            self._respond(_message(400, "bad request"), close=True)
            return
        except httptools.HttpParserUpgrade:
            self._respond(_message(400, "upgrades are not served"), close=True)
            return
        except httptools.HttpParserError:
            self._respond(_message(400, "malformed HTTP request"), close=True)
            return
        if len(self.queue) > self.limits.max_pipelined and self.transport is not None:
            self.transport.pause_reading()  # answered in order; read more once they are
        self._next()

    # -- parser callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url.clear()
        self._headers = {}
        self._header_bytes = 0
        self._body = []
        self._body_size = 0
        self.reading = True
        self._arm(self.limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_HEADER_BYTES:
            self._refuse(_message(414, "URL too long"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(_message(431, "headers too large"))
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1").strip()

    def on_headers_complete(self) -> None:
        path = self._url.decode("latin-1").split("?", 1)[0]
        headers = self._headers
        if path == "/v1/ingest" and not authorized(self.state, headers):
            self._refuse(_message(401, "Unauthorized"))  # before a byte of the body is read
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= self.limits.max_body:
            self._refuse(_message(413, f"a body holds at most {self.limits.max_body:,} bytes"))
        self._arm(self.limits.body_timeout)

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.limits.max_body:  # chunked bodies have no length up front
            self._refuse(_message(413, f"a body holds at most {self.limits.max_body:,} bytes"))
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.reading = False
        method = self.parser.get_method().decode("latin-1")
        path, _, query = self._url.decode("latin-1").partition("?")
        self.queue.append(_Request(method, path, self._headers, b"".join(self._body),
                                   self.parser.should_keep_alive(), query))

    def _refuse(self, answer: Answer) -> None:
        self.state.requests_by_status[answer.status] += 1
        self._respond(answer, close=True)
        raise _Refused

    # -- answering, in order, one at a time ---------------------------------------------------
    def _next(self) -> None:
        """Answer queued requests in order: a loop, not recursion, however many are pipelined."""
        while self.queue and not self.busy and self.transport is not None:
            request = self.queue.popleft()
            answer = self._route(request)
            delay = self.state.faults.latency_ms
            if self.state.faults.latency_jitter_ms:
                delay += self.state.random.uniform(0, self.state.faults.latency_jitter_ms)
            if delay > 0:
                self.busy = True
                asyncio.get_running_loop().call_later(delay / 1000, self._finish, answer,
                                                      not request.keep_alive)
                return
            self._send(answer, not request.keep_alive)
        if not self.queue and self.transport is not None and not self.busy:
            self.transport.resume_reading()
            if not self.reading:  # a request under way keeps its header or body timer
                self._arm(self.limits.idle_timeout)

    def _finish(self, answer: Answer, close: bool) -> None:
        self.busy = False
        self._send(answer, close)
        self._next()

    def _send(self, answer: Answer, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if answer.drop:
            self.state.dropped += 1
            self.transport.abort()
            return
        self.state.requests_by_status[answer.status] += 1
        self._respond(answer, close)

    def _route(self, request: _Request) -> Answer:
        method, path = request.method, request.path
        if path == "/v1/ingest":
            if method != "POST":
                return _message(405, "use POST")
            return handle_ingest(self.state, request.headers, request.body)
        if path == "/stats" and method == "GET":
            if self.state.store is not None:
                self.state.store.flush()
            return Answer(200, orjson.dumps(self.state.stats()))
        account = self.state.account
        if account is not None and path in account.ROUTES:
            if not authorized(self.state, request.headers):
                return _message(401, "Unauthorized")
            if method != account.ROUTES[path]:
                return _message(405, f"use {account.ROUTES[path]}")
            status, payload = account.handle(path, request.query, request.body)
            return Answer(status, orjson.dumps(payload))
        return _message(404, f"no route {method} {path}")

    def _respond(self, answer: Answer, close: bool = False) -> None:
        if self.transport is None:
            return
        lines = [f"HTTP/1.1 {answer.status} {REASONS.get(answer.status, 'Status')}",
                 f"Content-Length: {len(answer.body)}"]
        if answer.body:
            lines.append("Content-Type: application/json")
        lines.extend(f"{name}: {value}" for name, value in answer.headers)
        if close:
            lines.append("Connection: close")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + answer.body)
        if close:
            self.queue.clear()
            self.transport.close()


@dataclass(frozen=True)
class Limits:
    """What one client may hold of the emulator."""

    header_timeout: float = 10.0  # seconds to send a request's headers
    body_timeout: float = 60.0  # seconds to send its body after them
    idle_timeout: float = 60.0  # seconds a keep-alive connection may sit idle
    max_connections: int = 512  # at the cap, the longest idle connection is closed
    max_body: int = MAX_BODY
    max_pipelined: int = 64  # requests queued on one connection before it stops being read


def _connection_cap(wanted: int) -> int:
    """No more connections than the process may open descriptors (less some for files)."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, ValueError, OSError):
        return wanted
    return max(8, min(wanted, soft - 64)) if soft > 0 else wanted


async def serve(state: EmulatorState, host: str, port: int, limits: Limits,
                tls: ssl.SSLContext | None = None) -> tuple[asyncio.Server, _Connections]:
    """Listen; with ``tls``, HTTPS (to rehearse a CA bundle or a TLS-intercepting proxy)."""
    loop = asyncio.get_running_loop()
    connections = _Connections(_connection_cap(limits.max_connections))
    server = await loop.create_server(lambda: _HTTPProtocol(state, connections, limits), host,
                                      port, backlog=1024, ssl=tls)
    return server, connections


def bound_port(server: asyncio.Server) -> int:
    return server.sockets[0].getsockname()[1]


async def run_until_stopped(state: EmulatorState, host: str, port: int, on_ready,
                            stop: asyncio.Event, limits: Limits = Limits(),
                            tls: ssl.SSLContext | None = None) -> None:
    server, connections = await serve(state, host, port, limits, tls)
    on_ready(bound_port(server))
    try:
        await stop.wait()
    finally:
        server.close()
        for connection in list(connections.open):  # keep-alive ones would hold wait_closed
            connection.close()
        await server.wait_closed()
        if state.store is not None:
            state.store.flush()


def open_store(path: str) -> IO[bytes]:
    """The store of accepted events, appended to; private to its owner (it holds customer data,
    like the rejects file; see files.py)."""
    fd, _regular = open_private(path, append=True, what="--store")
    return open(fd, "ab")


def tls_context(cert_file: str, key_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


def serve_until_signalled(state: EmulatorState, host: str, port: int, on_ready,
                          tls: ssl.SSLContext | None = None) -> None:
    """Serve until SIGINT or SIGTERM (``segmetro emulator``)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await run_until_stopped(state, host, port, on_ready, stop, tls=tls)

    asyncio.run(main())
