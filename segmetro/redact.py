"""Secrets never printed: every text a person or a file sees passes through ``scrub``.

The API token is registered once it is known; a server that echoes it back, an exception that
quotes a header, a log line: all of them lose it here.
"""

from __future__ import annotations

import orjson

MASK = "[token]"
_secrets: list[str] = []


def register(secret: str) -> None:
    if secret and len(secret) >= 4 and secret not in _secrets:
        _secrets.append(secret)


def scrub(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
        escaped = orjson.dumps(secret).decode()[1:-1]  # as it appears inside JSON text
        if escaped != secret and escaped in text:
            text = text.replace(escaped, MASK)
    return text


def scrub_bytes(data: bytes) -> bytes:
    if not _secrets:
        return data
    for secret in _secrets:
        for form in {secret.encode(), orjson.dumps(secret)[1:-1]}:
            if form in data:
                data = data.replace(form, MASK.encode())
    return data
