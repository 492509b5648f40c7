"""Secrets never printed: every text a person or a file sees passes through ``scrub``.

The API token is registered once it is known; a server that echoes it back, an exception that
quotes a header, a log line: all of them lose it here.
"""

from __future__ import annotations

import orjson

MASK = "[token]"
_MARKUP_MASK = "\\[token]"  # rich prints it as MASK (a bare "[token]" would be taken for a tag)
_forms: list[str] = []  # each secret as it is, and as it appears inside JSON text


def register(secret: str) -> None:
    if not secret or len(secret) < 4:
        return
    for form in (secret, orjson.dumps(secret).decode()[1:-1]):
        if form not in _forms:
            _forms.append(form)


def scrub(text: str, markup: bool = False) -> str:
    """``text`` without any secret. With ``markup``, ``text`` is rich markup (``ui.py``): the
    secret is also found as rich's ``escape`` wrote it, and the mask is escaped in its turn."""
    forms, mask = _forms, MASK
    if markup:
        from rich.markup import escape

        forms, mask = _forms + [escape(form) for form in _forms], _MARKUP_MASK
    for form in forms:
        if form in text:
            text = text.replace(form, mask)
    return text


def scrub_bytes(data: bytes) -> bytes:
    for form in _forms:
        encoded = form.encode()
        if encoded in data:
            data = data.replace(encoded, MASK.encode())
    return data
