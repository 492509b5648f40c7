"""The uploader's HTTP transport: httpx's interface, aiohttp's connections.

A send makes hundreds of POSTs a second, and httpx's own connection layer (httpcore and h11, in
Python) took about 1 ms of CPU for each: with the reader and the upload sharing two cores, that
was a quarter of the parent process. Through aiohttp, which parses HTTP in C, a request takes
about 0.4 ms.

``Transport`` is an ``httpx.AsyncHTTPTransport`` whose connection pool is an aiohttp session
(``AiohttpPool`` speaks httpcore's pool interface). Everything above the pool is httpx's own:
requests and responses are httpx's, errors are mapped to httpx's ``TransportError`` family by
httpx itself, and a test's ``httpx_mock`` intercepts it as any httpx transport. The proxy and TLS
context come from ``network.py``, as for every other connection.
"""

from __future__ import annotations

import asyncio
import base64
import ssl

import aiohttp
import httpcore
import httpx
from yarl import URL

# aiohttp's failures as httpcore's, which httpx maps to its own (first match wins)
_ERRORS: tuple[tuple[type[BaseException], type[Exception]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpcore.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpcore.ReadTimeout),
    (asyncio.TimeoutError, httpcore.ReadTimeout),
    (aiohttp.ClientProxyConnectionError, httpcore.ProxyError),
    (aiohttp.ClientHttpProxyError, httpcore.ProxyError),
    (aiohttp.ClientConnectorError, httpcore.ConnectError),
    (aiohttp.ServerDisconnectedError, httpcore.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpcore.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpcore.RemoteProtocolError),  # a malformed answer
    (aiohttp.ClientOSError, httpcore.ReadError),
    (aiohttp.ClientError, httpcore.NetworkError),
)
_OWN_HEADERS = {b"host", b"content-length", b"transfer-encoding", b"connection"}


class AiohttpPool:
    """httpcore's connection-pool interface over one aiohttp session (made in the running
    event loop, on the first request): at most ``limit`` connections, no cookies, no
    redirects followed, bodies passed on as they came (httpx decodes them)."""

    def __init__(self, limit: int, verify: ssl.SSLContext | bool, proxy: httpx.Proxy | None):
        self._limit = limit
        self._ssl = verify if isinstance(verify, ssl.SSLContext) else False
        self._proxy = self._proxy_headers = None
        if proxy is not None:  # httpx.Proxy holds the URL and its credentials apart
            self._proxy = str(proxy.url)
            self._proxy_headers = dict(proxy.headers)
            if proxy.raw_auth is not None:
                self._proxy_headers["Proxy-Authorization"] = \
                    "Basic " + base64.b64encode(b":".join(proxy.raw_auth)).decode("ascii")
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[tuple, URL] = {}
        self._timeouts: dict[tuple, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl)
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            trust_env=False)
        return self._session

    def _url(self, url: httpcore.URL) -> URL:
        key = (url.scheme, url.host, url.port, url.target)
        found = self._urls.get(key)
        if found is None:
            port = f":{url.port}" if url.port is not None else ""
            text = (url.scheme + b"://" + url.host).decode("ascii") + port \
                + url.target.decode("ascii")
            found = self._urls[key] = URL(text, encoded=True)
        return found

    def _timeout(self, seconds: dict) -> aiohttp.ClientTimeout:
        """httpx's four timeouts as aiohttp's. aiohttp has no write timeout, so a request that
        outlasts all four together ends too (a server that stops reading)."""
        key = tuple(seconds.get(name) for name in ("pool", "connect", "write", "read"))
        found = self._timeouts.get(key)
        if found is None:
            pool, connect, _, read = key
            found = self._timeouts[key] = aiohttp.ClientTimeout(
                total=_sum(*key), connect=_sum(pool, connect), sock_connect=connect,
                sock_read=read)
        return found

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        session = self._session or self._open()
        body = b"".join([part async for part in request.stream])
        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in request.headers if name.lower() not in _OWN_HEADERS}
        timeout = self._timeout(request.extensions.get("timeout", {}))
        try:
            async with session.request(request.method.decode("ascii"), self._url(request.url),
                                       data=body, headers=headers, timeout=timeout,
                                       allow_redirects=False, proxy=self._proxy,
                                       proxy_headers=self._proxy_headers) as response:
                content = await response.read()
                return httpcore.Response(response.status, headers=response.raw_headers,
                                         content=content,
                                         extensions={"http_version": b"HTTP/1.1",
                                                     "reason_phrase": (response.reason or "")
                                                     .encode("latin-1", "replace")})
        except Exception as error:
            for kind, ours in _ERRORS:
                if isinstance(error, kind):
                    raise ours(str(error) or type(error).__name__) from error
            raise

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "AiohttpPool":  # as httpx's client enters its transport
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


def _sum(*seconds: float | None) -> float | None:
    """Their sum; None (no limit) when any of them is."""
    return None if None in seconds else sum(seconds)


class Transport(httpx.AsyncHTTPTransport):
    """An ``httpx.AsyncHTTPTransport`` (``verify``, ``proxy`` and ``limits`` as httpx takes
    them) whose connections are aiohttp's."""

    def __init__(self, *, limits: httpx.Limits, verify: ssl.SSLContext | bool,
                 proxy: httpx.Proxy | None = None, trust_env: bool = False) -> None:
        super().__init__(limits=limits, verify=verify, trust_env=trust_env)
        self._pool = AiohttpPool(limits.max_connections or 100, verify, proxy)  # type: ignore
