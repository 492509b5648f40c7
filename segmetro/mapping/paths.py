"""JSONPath field getters, compiled once when the mapping loads.

Plain paths (``$.a.b``, ``$.a['b c']``, ``$.items[0]``) become dictionary walks: jsonpath-ng costs
about 15 µs a field, a walk well under one. Anything richer (wildcards, filters, slices, ``..``)
goes through jsonpath-ng's extended parser and takes its first match.
"""

from __future__ import annotations

import re
from typing import Any, Callable


class _Missing:
    """A value that is not there (distinct from JSON null)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()
Getter = Callable[[Any], Any]

_SEGMENT = re.compile(
    r"""\.(?P<name>[A-Za-z_$@][\w$@-]*)"""
    r"""|\[(?:'(?P<single>(?:[^'\\]|\\.)*)'|"(?P<double>(?:[^"\\]|\\.)*)"|(?P<index>-?\d+))\]"""
)


class PathError(ValueError):
    """A JSONPath that does not parse; the message says why."""


def plain_keys(path: str) -> tuple | None:
    """The keys of a plain path (strings for members, ints for indexes), or None if not plain."""
    if not path.startswith("$"):
        return None
    keys: list = []
    position = 1
    while position < len(path):
        match = _SEGMENT.match(path, position)
        if match is None:
            return None
        if match["name"] is not None:
            keys.append(match["name"])
        elif match["index"] is not None:
            keys.append(int(match["index"]))
        else:
            quoted = match["single"] if match["single"] is not None else match["double"]
            keys.append(re.sub(r"\\(.)", r"\1", quoted))
        position = match.end()
    return tuple(keys)


def _walk(keys: tuple) -> Getter:
    def get(value: Any) -> Any:
        for key in keys:
            if key.__class__ is int:
                if value.__class__ is not list or not -len(value) <= key < len(value):
                    return MISSING
                value = value[key]
            elif value.__class__ is dict:
                value = value.get(key, MISSING)
                if value is MISSING:
                    return MISSING
            else:
                return MISSING
        return value

    return get


def keys_getter(keys: tuple) -> Getter:
    """A getter for a key path; the common short member-only paths get unrolled closures."""
    if any(key.__class__ is not str for key in keys) or len(keys) > 3:
        return _walk(keys)
    if len(keys) == 0:
        return lambda value: value
    if len(keys) == 1:
        (k1,) = keys

        def get1(value: Any) -> Any:
            return value.get(k1, MISSING) if value.__class__ is dict else MISSING

        return get1
    if len(keys) == 2:
        k1, k2 = keys

        def get2(value: Any) -> Any:
            inner = value.get(k1) if value.__class__ is dict else None
            return inner.get(k2, MISSING) if inner.__class__ is dict else MISSING

        return get2
    k1, k2, k3 = keys

    def get3(value: Any) -> Any:
        inner = value.get(k1) if value.__class__ is dict else None
        inner = inner.get(k2) if inner.__class__ is dict else None
        return inner.get(k3, MISSING) if inner.__class__ is dict else MISSING

    return get3


def compile_path(path: str) -> Getter:
    """A getter for ``path``: the first match, or MISSING. Raises PathError for a bad path."""
    keys = plain_keys(path)
    if keys is not None:
        return keys_getter(keys)
    from jsonpath_ng.ext import parse as jsonpath_parse  # costly to import; rarely needed

    try:
        expression = jsonpath_parse(path)
    except Exception as error:  # jsonpath-ng raises bare Exception subclasses of several kinds
        raise PathError(f"invalid JSONPath {path!r}: {error}") from None

    def get_first(value: Any) -> Any:
        try:
            matches = expression.find(value)
        except Exception:  # a filter comparing incomparable values: treat as no match
            return MISSING
        return matches[0].value if matches else MISSING

    return get_first


def dotted_getter(dotted: str) -> Getter:
    """A getter for Segment's template/FQL style ``a.b.c`` path (no ``$``)."""
    return keys_getter(tuple(dotted.split(".")))
