"""How segmetro reaches servers from inside a company network: proxies and CA bundles.

As curl and the SDKs do: ``HTTPS_PROXY`` / ``HTTP_PROXY`` (or their lower-case spellings) name the
proxy for https:// and http:// URLs, ``NO_PROXY`` lists hosts reached directly, and a CA bundle in
``REQUESTS_CA_BUNDLE`` or ``SSL_CERT_FILE`` (``SSL_CERT_DIR`` for a directory) replaces the
system's trust store. Metronome's clients (upload, account) and the object stores (``stores.py``)
all take their settings from here, so one environment configures every connection the same way.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


def proxy_for(url: str) -> str | None:
    """The proxy URL to reach ``url`` through, or None to connect directly."""
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()  # lower case wins, as in curl
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    if urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def ca_bundle() -> str | None:
    """The CA bundle file named by the environment, or None for the system's own."""
    for name in CA_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


@functools.lru_cache(maxsize=4)
def _context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    import ssl  # here, not at start-up: runs over local files never need it

    if cafile is None and capath is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    except (OSError, ssl.SSLError) as error:
        from segmetro.status import ConfigError

        named = " / ".join(f"{v}={os.environ[v]}" for v in (*CA_VARIABLES, "SSL_CERT_DIR")
                           if os.environ.get(v))
        raise ConfigError(f"the CA bundle ({named}) cannot be loaded: "
                          f"{getattr(error, 'strerror', None) or error}") from None


def ssl_context() -> ssl.SSLContext:
    """One TLS context for every connection (loading a bundle costs ~18 ms)."""
    capath = os.environ.get("SSL_CERT_DIR", "").strip() or None
    cafile = ca_bundle()
    return _context(cafile, capath if cafile is None else None)


def httpx_options(url: str) -> dict:
    """Keyword arguments for an httpx transport or client that reaches ``url``: the proxy and
    the TLS context from the environment, applied explicitly (``trust_env`` stays off, so httpx
    does not read the environment again for every client)."""
    import httpx

    proxy = proxy_for(url)
    secure = url.startswith("https:") or (proxy or "").startswith("https:")
    options: dict = {"verify": ssl_context() if secure else False, "trust_env": False}
    if proxy is not None:
        _register_credentials(proxy)
        options["proxy"] = httpx.Proxy(proxy)
    return options


def _register_credentials(proxy: str) -> None:
    """A proxy URL's password is a secret like the token: never printed."""
    import urllib.parse

    password = urllib.parse.urlsplit(proxy).password
    if password:
        from segmetro.redact import register

        register(password)
        register(urllib.parse.unquote(password))


def untrusted_certificate(error: BaseException | None) -> str | None:
    """Why the server's TLS certificate was refused, when that is what ``error`` is (or was
    raised from): a TLS-inspecting proxy's certificate, a private CA."""
    import ssl

    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ssl.SSLCertVerificationError):
            inner = getattr(error, "certificate_error", error)  # aiohttp wraps ssl's own
            return getattr(inner, "verify_message", None) or str(inner)
        error = error.__cause__ or error.__context__
    return None


def certificate_message(where: str, reason: str) -> str:
    return (f"{where}: the server's TLS certificate is not trusted ({reason}); behind a "
            "TLS-inspecting proxy, point REQUESTS_CA_BUNDLE or SSL_CERT_FILE at your company's "
            "CA bundle")
