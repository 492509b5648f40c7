"""The upload stage: batches of events to Metronome's /v1/ingest, concurrently and safely.

- Batches are JSON arrays of 1 to ``batch_size`` events in input order; never ``[]``.
- Requests go out over one pool of ``concurrency`` connections (httpx's interface over
  aiohttp's connections, ``transport.py``); how many are in flight adapts to the server within
  ``concurrency``: TCP's slow start, then additive increase while latency holds, multiplicative
  decrease on 429, 5xx, timeouts and latency spikes (as Vector's adaptive request concurrency).
- One token bucket (GCRA) in events per second spans every request.
- Retries on connection errors, timeouts, 408, 429 and 5xx except 501, with jittered exponential
  backoff; ``retry-after-ms`` and ``Retry-After`` are honoured, and a 429 pauses every request.
  A retry resends the same events, so Metronome's transaction-id dedupe absorbs partial ingests.
- What each answer means is decided in one place, ``POLICY`` (see ``verdict``): 400 and 413
  split the batch in halves until each event is accepted or stands alone (a lone event's is a
  rejection, stage ``api``); 401/403 stop the run (token refused); a redirect, 404, 405 or 415
  means the URL is wrong and stops the run without settling anything; other 4xx and 501 reject
  the batch's events.
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import gzip
import ipaddress
import random
import time
import unicodedata
from collections import deque
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

import httpx

from segmetro import __version__
from segmetro.events import DEFAULT_BASE_URL, MAX_BATCH
from segmetro.network import certificate_message, httpx_options, untrusted_certificate
from segmetro.reader import Events
from segmetro.ratelimit import TokenBucket
from segmetro.redact import register, scrub
from segmetro.summary import UploadStats
from segmetro.transport import Transport
from segmetro.status import ConfigError

INGEST_PATH = "/v1/ingest"
MAX_RETRY_AFTER = 60.0  # like Metronome's SDKs: a longer Retry-After is capped, not obeyed


class Verdict(enum.Enum):
    ACKNOWLEDGED = "acknowledged"
    SPLIT = "split the batch; a lone event is rejected"
    REFUSED = "token refused: abort"
    MISROUTED = "wrong URL: abort, nothing settled"
    RETRY = "retry with backoff"
    REJECTED = "the batch's events are rejected"


def verdict(status: int) -> Verdict:
    """What an answer from /v1/ingest means: the one policy table (a test covers every row)."""
    if status == 200:
        return Verdict.ACKNOWLEDGED
    if status in (400, 413):
        return Verdict.SPLIT
    if status in (401, 403):
        return Verdict.REFUSED
    if 300 <= status < 400 or status in (404, 405, 415):
        return Verdict.MISROUTED
    if status in (408, 429) or (500 <= status < 600 and status != 501):
        return Verdict.RETRY
    return Verdict.REJECTED  # other 4xx, 501, and anything stranger


class SettingsError(ConfigError):
    """An upload setting that cannot be used (message names the option; exit 2)."""


def check_token(token: str) -> None:
    """A token is visible ASCII. A pasted no-break space or smart quote would otherwise fail
    deep in the HTTP layer (and be retried as 'unreachable'); say where it is, never what."""
    for position, char in enumerate(token, 1):
        if not 0x21 <= ord(char) <= 0x7E:
            name = unicodedata.name(char, "a control character")
            raise SettingsError(
                f"the API token has {name} (U+{ord(char):04X}) at position {position} of "
                f"{len(token)}; a token is visible ASCII only: copy it again, without spaces, "
                "quotes or line breaks")


@dataclass
class UploadSettings:
    token: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    batch_size: int = MAX_BATCH
    rate_limit: float = 5000.0  # events per second; 0 for none
    concurrency: int = 64  # most requests in flight
    timeout: float = 60.0
    connect_timeout: float = 5.0
    max_retries: int = 8
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    gzip: bool = False

    def __post_init__(self) -> None:
        if not self.token:
            raise SettingsError("no API token: set METRONOME_BEARER_TOKEN, or pass "
                                "--api-token-file (or --api-token)")
        register(self.token)
        check_token(self.token)
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise SettingsError(f"--batch-size must be 1 to {MAX_BATCH}")
        self.base_url = self.base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme == "http":
            if not is_loopback(parts.hostname or ""):
                raise SettingsError(f"--base-url {self.base_url}: plain http:// is allowed only "
                                    "to loopback addresses (127.0.0.1, ::1, localhost); "
                                    "use https://")
        elif parts.scheme != "https" or not parts.hostname:
            raise SettingsError(f"--base-url {self.base_url!r} is not an https:// URL")

    @property
    def url(self) -> str:
        return self.base_url + INGEST_PATH


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AdaptiveLimit:
    """How many requests may be in flight: AIMD on latency and back-pressure, within a ceiling.
    It starts as TCP does (slow start): +1 a success, so the limit doubles each round trip,
    until the first sign of congestion (a cut); from then on +1 a round trip."""

    def __init__(self, ceiling: int, initial: int = 8):
        self.ceiling = ceiling
        self.limit = float(min(initial, ceiling))
        self.in_flight = 0
        self.slow_start = True
        self._rtt_mean: float | None = None
        self._last_cut = 0.0
        self._waiters: deque[asyncio.Future] = deque()

    async def acquire(self) -> None:
        while self.in_flight >= int(self.limit):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        free = int(self.limit) - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def success(self, rtt: float) -> None:
        mean = self._rtt_mean
        self._rtt_mean = rtt if mean is None else mean * 0.9 + rtt * 0.1
        if mean is not None and rtt > mean * 2 + 0.05:
            self._cut(0.9, rtt)
        elif self.limit < self.ceiling:
            self.limit = min(self.ceiling, self.limit + (1 if self.slow_start else 1 / self.limit))
            self._wake()

    def back_pressure(self) -> None:
        self._cut(0.5, self._rtt_mean or 0.1)

    def _cut(self, ratio: float, window: float) -> None:
        now = time.monotonic()
        if now - self._last_cut >= window:  # at most one cut per round trip
            self._last_cut = now
            self.limit = max(1.0, self.limit * ratio)
            self.slow_start = False


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``Retry-After``), or None."""
    value = response.headers.get("retry-after-ms")
    if value is not None:
        try:
            seconds = float(value) / 1000
        except ValueError:
            seconds = None
        if seconds is not None and seconds >= 0:
            return min(seconds, MAX_RETRY_AFTER)
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def server_message(response: httpx.Response) -> str:
    """Metronome's message, short, and never carrying the token (a server may echo it)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return scrub(body["message"])[:500]
    try:
        text = response.text
    except Exception:  # noqa: BLE001 - an undecodable body: say nothing of it
        text = ""
    return scrub(text or response.reason_phrase or "")[:500]


@dataclass(slots=True)
class Batch:
    events: Events
    attempts: int = 0


class SendWindow:
    """Batches may be sent at most ``size`` ahead of the oldest one not yet finished.

    The in-flight limit alone would let one batch stuck in retries hold back the checkpoint while
    hundreds after it are acknowledged; after a crash all of those would be sent again. With the
    window, what a crash can resend is bounded by ``size`` batches.
    """

    def __init__(self, size: int):
        self.size = size
        self._next = 0
        self._open: deque[int] = deque()
        self._finished: set[int] = set()
        self._moved = asyncio.Event()

    async def enter(self) -> int:
        while self._open and self._next - self._open[0] >= self.size:
            self._moved.clear()
            await self._moved.wait()
        number = self._next
        self._next += 1
        self._open.append(number)
        return number

    def leave(self, number: int) -> None:
        self._finished.add(number)
        while self._open and self._open[0] in self._finished:
            self._finished.discard(self._open.popleft())
            self._moved.set()


class Aborted(Exception):
    """The run cannot go on: token refused, wrong URL, or Metronome unreachable."""


class Uploader:
    """Sends batches; reports each event's fate through ``on_sent`` and ``on_rejected``."""

    def __init__(self, settings: UploadSettings, stats: UploadStats,
                 on_sent: Callable[[Events], None],
                 on_rejected: Callable[[Events, str, str], None],
                 log: Callable[[str], None] = lambda message: None, bucket=None):
        self.settings = settings
        self.stats = stats
        self.on_sent = on_sent
        self.on_rejected = on_rejected
        self.log = log
        self.bucket = bucket if bucket is not None else TokenBucket(settings.rate_limit)
        self.limit = AdaptiveLimit(settings.concurrency)
        self.window = SendWindow(settings.concurrency)
        self.paused_until = 0.0
        self._quiet_until = 0.0
        self.aborted: str | None = None
        self.failure: BaseException | None = None  # a bug or the unexpected, in a request task
        self._transport: Transport | None = None
        self._tasks: set[asyncio.Task] = set()
        headers = {
            "Authorization": f"Bearer {settings.token}",
            "Content-Type": "application/json",
            "User-Agent": f"segmetro/{__version__}",
        }
        if settings.gzip:
            headers["Content-Encoding"] = "gzip"
        # parsed once: from a string and a dict, httpx parses them again for every request
        # (35 µs of a request's CPU)
        self._url, self._headers = httpx.URL(settings.url), httpx.Headers(headers)

    async def __aenter__(self) -> "Uploader":
        connections = self.settings.concurrency
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        # httpx's transport, without the Client layer: one fixed POST needs no cookies,
        # redirects, auth flows or URL merging. Proxy and CA bundle come from the environment
        # (network.py).
        self._transport = Transport(limits=limits, **httpx_options(self.settings.url))
        timeout = httpx.Timeout(self.settings.timeout, connect=self.settings.connect_timeout)
        self._extensions = {"timeout": timeout.as_dict()}
        return self

    async def __aexit__(self, *exc) -> None:
        await self.drain()
        if self._transport is not None:
            await self._transport.aclose()
        await self.bucket.close()

    async def submit(self, events: Events) -> None:
        """Queue one batch; waits while the in-flight limit is reached."""
        if self.aborted:
            return
        number = await self.window.enter()
        await self.limit.acquire()
        task = asyncio.create_task(self._run(Batch(events), number))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float | None = None,
                    interrupt: asyncio.Event | None = None) -> None:
        """Wait for the requests in flight; past ``timeout`` seconds, or once ``interrupt`` is
        set, abandon them (their events stay unconfirmed and are sent again by the next run)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = asyncio.create_task(interrupt.wait()) if interrupt is not None else None
        try:
            while self._tasks:
                remaining = None if deadline is None else deadline - time.monotonic()
                if (remaining is not None and remaining <= 0) or \
                        (interrupt is not None and interrupt.is_set()):
                    for task in list(self._tasks):
                        task.cancel()
                    await asyncio.gather(*list(self._tasks), return_exceptions=True)
                    return
                pending = list(self._tasks) + ([waiter] if waiter is not None else [])
                await asyncio.wait(pending, timeout=remaining,
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            if waiter is not None:
                waiter.cancel()
                await asyncio.gather(waiter, return_exceptions=True)

    async def _run(self, batch: Batch, number: int) -> None:
        try:
            await self._deliver(batch)
        except (Aborted, asyncio.CancelledError):
            pass  # the batch's events stay unconfirmed
        except Exception as error:  # noqa: BLE001 - never "Task exception was never retrieved"
            if self.failure is None:
                self.failure = error
            self._abort(f"internal error while sending: {type(error).__name__}: "
                        f"{scrub(str(error))[:300]}")
        finally:
            self.limit.release()
            self.window.leave(number)

    async def _deliver(self, batch: Batch) -> None:
        """Send until acknowledged, split, rejected or given up."""
        events = batch.events
        body = events.body()
        if self.settings.gzip:
            body = gzip.compress(body, compresslevel=5)
        await self.bucket.take(len(events))
        while True:
            if self.aborted:
                raise Aborted(self.aborted)
            pause = self.paused_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            status, response, error = await self._post(body)
            untrusted = untrusted_certificate(error)
            if untrusted is not None:  # no retry will change it
                self._abort(certificate_message(self.settings.base_url, untrusted))
                raise Aborted(self.aborted)
            meaning = Verdict.RETRY if status is None else verdict(status)
            if meaning is Verdict.ACKNOWLEDGED:
                self.stats.sent += len(events)
                self.on_sent(events)
                return
            if meaning is Verdict.SPLIT:
                await self._split(batch, status, response)
                return
            if meaning is Verdict.REFUSED:
                self._abort(f"Metronome refused the API token (HTTP {status}): check "
                            "METRONOME_BEARER_TOKEN / --api-token-file and that it belongs to "
                            "the intended environment")
                raise Aborted(self.aborted)
            if meaning is Verdict.MISROUTED:
                self._abort(misrouted_message(self.settings, status, response))
                raise Aborted(self.aborted)
            if meaning is Verdict.REJECTED:
                self.on_rejected(events, f"http-{status}", f"Metronome answered HTTP "
                                 f"{status}: {server_message(response)}")
                return
            await self._back_off(batch, status, response, error)

    async def _post(self, body: bytes):
        self.stats.requests += 1
        started = time.monotonic()
        request = httpx.Request("POST", self._url, content=body, headers=self._headers,
                                extensions=self._extensions)
        try:
            response = await self._transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.TransportError as error:  # connect, read, write, timeouts, protocol
            self.limit.back_pressure()
            return None, None, error
        status = response.status_code
        if status == 200:
            self.limit.success(time.monotonic() - started)
        elif verdict(status) is Verdict.RETRY:
            self.limit.back_pressure()
        return status, response, None

    async def _split(self, batch: Batch, status: int, response: httpx.Response) -> None:
        events = batch.events
        if len(events) == 1:
            self.on_rejected(events, f"http-{status}",
                             f"Metronome rejected the event (HTTP {status}): "
                             f"{server_message(response)}")
            return
        self.stats.bisected += 1
        for half in events.halves():
            await self._deliver(Batch(half))

    async def _back_off(self, batch: Batch, status: int | None, response, error) -> None:
        batch.attempts += 1
        what = f"HTTP {status}" if status is not None else type(error).__name__
        if batch.attempts > self.settings.max_retries:
            self._abort(f"Metronome unreachable: {what} after {self.settings.max_retries} "
                        f"retries ({self.settings.base_url}); the next run sends what is left "
                        "(--max-retries, --max-backoff set the patience)")
            raise Aborted(self.aborted)
        self.stats.retries += 1
        cap = self.settings.backoff_cap
        delay = min(cap, min(self.settings.backoff_base, cap) * 2 ** (batch.attempts - 1))
        delay *= 1 - 0.25 * random.random()
        asked = retry_after(response) if response is not None else None
        if status == 429:
            self.stats.throttled += 1
            kind = response.headers.get("x-metronome-rate-limit-type", "unspecified")
            wait = asked if asked is not None else delay
            now = time.monotonic()
            self.paused_until = max(self.paused_until, now + wait)
            await self.bucket.pause(wait)  # shared: every shard drawing from it waits too
            if now >= self._quiet_until:  # one line per few seconds, however many 429s
                self._quiet_until = now + 5.0
                self.log(f"rate limited by Metronome (HTTP 429, limit type {kind}): "
                         f"pausing all requests {wait:.2f}s ({self.stats.throttled:,} so far)")
            return
        if asked is not None:
            delay = asked
        await asyncio.sleep(delay)

    def _abort(self, reason: str) -> None:
        if self.aborted is None:
            self.aborted = reason
            self.log(reason)


def misrouted_message(settings: UploadSettings, status: int | None,
                      response: httpx.Response | None) -> str:
    """A redirect, 404, 405 or 415: the events never reached an ingest endpoint."""
    where = ""
    if response is not None and response.headers.get("location"):
        where = f" (redirected to {scrub(response.headers['location'])[:200]})"
    hint = "--base-url is the API's root, such as https://api.metronome.com"
    if settings.base_url.rstrip("/").endswith(("/v1/ingest", "/v1")):
        hint = f"--base-url ends in {urlsplit(settings.base_url).path}: give only the root " \
               "(segmetro adds /v1/ingest), such as https://api.metronome.com"
    return (f"{settings.url} answered HTTP {status}{where}: that is not Metronome's ingest "
            f"endpoint, and nothing sent there was recorded as sent or rejected; {hint}")


async def check_auth(settings: UploadSettings) -> tuple[bool, str]:
    """POST [] to /v1/ingest: 400 means the token was accepted, 401/403 refused. Over the
    uploader's own transport, so what it finds holds for a send."""
    timeout = httpx.Timeout(settings.timeout, connect=settings.connect_timeout)
    transport = Transport(limits=httpx.Limits(max_connections=1), **httpx_options(settings.url))
    async with httpx.AsyncClient(timeout=timeout, transport=transport, trust_env=False) as client:
        try:
            response = await client.post(settings.url, content=b"[]", headers={
                "Authorization": f"Bearer {settings.token}", "Content-Type": "application/json"})
        except httpx.TransportError as error:
            untrusted = untrusted_certificate(error)
            if untrusted is not None:
                return False, certificate_message(settings.base_url, untrusted)
            return False, f"Metronome unreachable at {settings.base_url}: {type(error).__name__}"
    status = response.status_code
    if verdict(status) is Verdict.REFUSED:
        return False, f"the token was refused (HTTP {status})"
    if status in (200, 400):
        return True, f"the token was accepted by {settings.base_url}"
    if verdict(status) is Verdict.MISROUTED:
        return False, misrouted_message(settings, status, response)
    return False, f"unexpected answer HTTP {status}: {server_message(response)}"
