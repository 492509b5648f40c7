"""One rate budget: events per second across every request, and across every shard.

``TokenBucket`` paces one process (GCRA: a reservation clock, FIFO). ``SharedBudget`` holds the
same clock in Redis, drawn from by every shard with one atomic script per batch (so Redis sees a
few hundred calls a second at most), with Redis's own clock so machines need not agree on the
time. A 429 seen by any shard pauses all of them (a shared pause key). If Redis becomes
unreachable mid-run, the shard falls back to its share (limit / N) and says so once.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Callable


class TokenBucket:
    """Events-per-second pacing across all requests (GCRA: a reservation clock, FIFO)."""

    def __init__(self, rate: float, burst_seconds: float = 0.1):
        self.rate = rate
        self.burst = burst_seconds
        self._next = time.monotonic()

    async def pause(self, seconds: float) -> None:
        """The uploader pauses its own requests; a local bucket has nothing to share."""

    async def close(self) -> None:
        pass

    async def take(self, events: int) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        start = max(self._next, now - self.burst)
        self._next = start + events / self.rate
        if start > now:
            await asyncio.sleep(start - now)


_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
local start = math.max(tat, now - tonumber(ARGV[2]), pause)
redis.call('SET', KEYS[1], string.format('%d', start + tonumber(ARGV[1])), 'PX', 3600000)
return start - now
"""
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_us = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_us > current then
  redis.call('SET', KEYS[1], string.format('%d', until_us), 'PX', 3600000)
end
return 0
"""


class SharedBudget:
    """GCRA in Redis: ``rate`` events a second for all shards together."""

    def __init__(self, url: str, rate: float, shards: int, scope: str,
                 log: Callable[[str], None] = lambda message: None,
                 burst_seconds: float = 0.1):
        import redis.asyncio as aioredis  # only with --rate-limit-redis

        from redis.exceptions import RedisError

        self.errors = (RedisError, OSError, asyncio.TimeoutError)
        self.client = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.rate = rate
        self.burst_us = int(burst_seconds * 1_000_000)
        name = hashlib.sha256(scope.encode()).hexdigest()[:16]
        self.keys = [f"segmetro:budget:{name}:tat", f"segmetro:budget:{name}:pause"]
        self.fallback = TokenBucket(rate / shards, burst_seconds)
        self.shards = shards
        self.log = log
        self.failed: str | None = None
        self._take = self.client.register_script(_TAKE)
        self._pause = self.client.register_script(_PAUSE)

    def _fail(self, error: BaseException) -> None:
        if self.failed is None:
            self.failed = f"{type(error).__name__}: {error}"
            self.log(f"the shared rate budget in Redis is unreachable ({self.failed}); this "
                     f"shard goes on alone at its share, {self.rate / self.shards:,.0f} events/s")

    async def take(self, events: int) -> None:
        if self.rate <= 0:
            return
        if self.failed is None:
            try:
                wait_us = await self._take(keys=self.keys, args=[
                    int(events * 1_000_000 / self.rate), self.burst_us])
            except self.errors as error:
                self._fail(error)
            else:
                if wait_us > 0:
                    await asyncio.sleep(wait_us / 1_000_000)
                return
        await self.fallback.take(events)

    async def pause(self, seconds: float) -> None:
        if self.failed is None:
            try:
                await self._pause(keys=self.keys[1:], args=[int(seconds * 1_000_000)])
            except self.errors as error:
                self._fail(error)

    async def close(self) -> None:
        try:
            await self.client.aclose()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass
