"""JavaScript's view of JSON values, where Segment's code (which runs on Node.js) is the reference.

- ``js_string(n)``: ``String(n)`` for a number (ECMAScript Number::toString): shortest digits,
  ``3`` for 3.0, ``10000000000000000`` for 1e16, ``1e+21``, ``1e-7``.
- ``js_number(value)``: ``Number(value)`` (strings: trimmed, ``""`` is 0, hex/octal/binary).
- ``js_truthy(value)``: JavaScript's truthiness (``[]`` and ``{}`` are truthy, ``0`` and ``""``
  are not).
- ``js_json(value)``: the value as ``JSON.stringify`` writes it, ready for orjson: integral
  floats become ints, numbers orjson would spell otherwise become ``orjson.Fragment``\\ s of
  JavaScript's spelling, and objects with array-index keys get JavaScript's key order.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

import orjson

_SAFE = 2 ** 53
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
_JS_SPACE = " \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008" \
            "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


def as_double(value: int | float) -> float:
    """A JSON number as JavaScript holds it: a double (huge integers become Infinity)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def js_string(value: int | float) -> str:
    """``String(n)``."""
    number = as_double(value)
    if number != number:
        return "NaN"
    if number == 0:
        return "0"
    if number in (math.inf, -math.inf):
        return "Infinity" if number > 0 else "-Infinity"
    if number < 0:
        return "-" + js_string(-number)
    if number.is_integer() and number < _SAFE:
        return str(int(number))
    sign, digits, exponent = Decimal(repr(number)).normalize().as_tuple()
    text = "".join(map(str, digits))
    k = len(text)
    n = k + exponent  # the value is 0.<text> x 10^n
    if k <= n <= 21:
        return text + "0" * (n - k)
    if 0 < n <= 21:
        return text[:n] + "." + text[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + text
    mark = "+" if n - 1 >= 0 else "-"
    mantissa = text if k == 1 else text[0] + "." + text[1:]
    return f"{mantissa}e{mark}{abs(n - 1)}"


def js_number(value: Any) -> float:
    """``Number(value)`` for the values a trigger or mapping compares: numbers, booleans,
    strings, null."""
    if value is None:
        return 0.0
    if value is True or value is False:
        return 1.0 if value else 0.0
    if value.__class__ in (int, float):
        return as_double(value)
    if not isinstance(value, str):
        return math.nan
    text = value.strip(_JS_SPACE)
    if not text:
        return 0.0
    if text in ("Infinity", "+Infinity"):
        return math.inf
    if text == "-Infinity":
        return -math.inf
    if "_" in text:
        return math.nan
    prefix = text[:2].lower()
    if prefix in ("0x", "0o", "0b"):
        try:
            return float(int(text[2:], {"0x": 16, "0o": 8, "0b": 2}[prefix]))
        except ValueError:
            return math.nan
    if _DECIMAL.fullmatch(text):
        return float(text)
    return math.nan


def js_truthy(value: Any) -> bool:
    if value is None or value is False:
        return False
    if value.__class__ in (int, float):
        return value != 0
    if value.__class__ is str:
        return value != ""
    return True  # objects and arrays, even empty ones


def is_index_key(key: str) -> bool:
    """A key JavaScript objects keep first, in numeric order (an array index: 0 to 2^32-2)."""
    return key.isdigit() and key.isascii() and (key == "0" or key[0] != "0") and \
        int(key) < 4294967295


def js_order(obj: dict) -> dict:
    """``obj`` with its keys in JavaScript's order: array-index keys first, ascending, then the
    others in insertion order (how a JSON object comes out of ``JSON.parse``)."""
    indexes = [key for key in obj if key.__class__ is str and is_index_key(key)]
    if not indexes:
        return obj
    ordered = {key: obj[key] for key in sorted(indexes, key=int)}
    ordered.update((key, value) for key, value in obj.items() if key not in ordered)
    return ordered


def is_number(value: Any) -> bool:
    """``typeof value === 'number'`` for a JSON value."""
    return value.__class__ is int or value.__class__ is float


def _number(value: int | float) -> Any:
    if value.__class__ is int:
        if -_SAFE < value < _SAFE:
            return value
        return orjson.Fragment(js_string(value).encode())
    if value.is_integer() and -_SAFE < value < _SAFE:
        return int(value)  # 3.0 -> 3, -0.0 -> 0
    text = js_string(value)
    if text in ("NaN", "Infinity", "-Infinity"):
        return None
    return value if orjson.dumps(value) == text.encode() else orjson.Fragment(text.encode())


def js_json(value: Any) -> Any:
    """``value`` as ``JSON.stringify`` writes it (see the module doc). A value that needs no
    change (no float, no unsafe integer, no array-index key) comes back as it is: the common
    flat object of strings and small integers costs one pass over its items."""
    if value.__class__ is dict:
        # keys: one pass in C (the least key is past "9" in most objects), then each value
        if value and min(value) < ":" and any("0" <= key[:1] <= "9" for key in value):
            return _js_json(value)
        for item in value.values():
            kind = item.__class__
            if kind is str or kind is bool or item is None or \
                    (kind is int and -_SAFE < item < _SAFE):
                continue
            return _js_json(value)
        return value
    return _js_json(value)


def _js_json(value: Any) -> Any:
    kind = value.__class__
    if kind is dict:
        changed = None
        for key, item in value.items():
            fixed = _js_json(item)
            if fixed is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = fixed
            if key[:1].isdigit() and changed is None:
                changed = dict(value)
        if changed is None:
            return value
        return js_order(changed)
    if kind is list:
        fixed_items = [_js_json(item) for item in value]
        return value if all(a is b for a, b in zip(fixed_items, value)) else fixed_items
    if kind is float or (kind is int and not -_SAFE < value < _SAFE):
        return _number(value)
    return value


class JSFunction:
    """A method of a string, array or number, as a JavaScript member lookup gives it."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


# Methods of arrays, strings and numbers (Node.js 20): reading one gives a function.
_METHODS = {
    list: frozenset((
        "at", "concat", "copyWithin", "entries", "every", "fill", "filter", "find", "findIndex",
        "findLast", "findLastIndex", "flat", "flatMap", "forEach", "includes", "indexOf", "join",
        "keys", "lastIndexOf", "map", "pop", "push", "reduce", "reduceRight", "reverse", "shift",
        "slice", "some", "sort", "splice", "toReversed", "toSorted", "toSpliced", "unshift",
        "values", "with")),
    str: frozenset((
        "anchor", "at", "big", "blink", "bold", "charAt", "charCodeAt", "codePointAt", "concat",
        "endsWith", "fixed", "fontcolor", "fontsize", "includes", "indexOf", "isWellFormed",
        "italics", "lastIndexOf", "link", "localeCompare", "match", "matchAll", "normalize",
        "padEnd", "padStart", "repeat", "replace", "replaceAll", "search", "slice", "small",
        "split", "startsWith", "strike", "sub", "substr", "substring", "sup",
        "toLocaleLowerCase", "toLocaleUpperCase", "toLowerCase", "toUpperCase", "toWellFormed",
        "trim", "trimEnd", "trimLeft", "trimRight", "trimStart")),
    int: frozenset(("toExponential", "toFixed", "toPrecision")),
    float: frozenset(("toExponential", "toFixed", "toPrecision")),
}


def js_member(value: Any, key: str, missing: Any) -> Any:
    """``value[key]`` in JavaScript, for JSON values: own keys of objects, indexes and length of
    arrays and strings (strings count UTF-16 code units), methods as ``JSFunction``. Members
    every object has (``constructor``, ``toString``, ...) are refused where paths are read."""
    kind = value.__class__
    if kind is dict:
        return value.get(key, missing)
    if kind is list or kind is str:
        if key == "length":
            return len(value) if kind is list else \
                len(value.encode("utf-16-le", "surrogatepass")) // 2
        if key.isdigit() and key.isascii() and (key == "0" or key[0] != "0"):
            index = int(key)
            if kind is list:
                return value[index] if index < len(value) else missing
            units = value.encode("utf-16-le", "surrogatepass")
            if 2 * index < len(units):
                return units[2 * index:2 * index + 2].decode("utf-16-le", "surrogatepass")
            return missing
    if kind is JSFunction:
        if key == "name":
            return value.name
        return JSFunction(key) if key in ("apply", "bind", "call") else missing
    methods = _METHODS.get(kind)
    if methods is not None and key in methods:
        return JSFunction(key)
    return missing
