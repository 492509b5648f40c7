"""Field values of a mapping, compiled once into getters over a Segment record.

Forms: ``$...`` a JSONPath; any other scalar a literal; a list coalesces (first value present, not
null, not ""); ``{literal: V}``; ``{template: "{{a.b}}-x"}``; ``{path: $..., default: V}``.
``properties`` also takes a YAML mapping that builds an object, and an options form (``from``,
``set``, ``pick``, ``omit``, ``flatten``, ``stringify``): see PropertiesSpec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import orjson

from segmetro.jsvalues import js_string
from segmetro.mapping import directives
from segmetro.mapping.paths import MISSING, Getter, compile_path


@dataclass(slots=True)
class FieldValue:
    """A compiled field value and, for error messages, what it tries."""

    get: Getter
    tried: str
    constant: bool = False  # the same value for every record (a literal)
    missing: Callable[[Any], str] | None = None  # why a strict template gave no value


def literal(value: Any) -> FieldValue:
    return FieldValue(lambda record: value, f"the literal {value!r}", constant=True)


def path(expression: str) -> FieldValue:
    return FieldValue(compile_path(expression), expression)


def with_default(inner: FieldValue, default: Any) -> FieldValue:
    get = inner.get

    def get_or_default(record: Any) -> Any:
        value = get(record)
        return default if value is MISSING or value is None else value

    return FieldValue(get_or_default, f"{inner.tried} (default {default!r})")


def coalesce(options: list[FieldValue]) -> FieldValue:
    getters = tuple(option.get for option in options)

    def first_present(record: Any) -> Any:
        for get in getters:
            value = get(record)
            if value is not MISSING and value is not None and value != "":
                return value
        return MISSING

    return FieldValue(first_present, ", ".join(option.tried for option in options),
                      constant=all(option.constant for option in options))


def render_scalar(value: Any) -> str:
    """How a JSON value prints inside a template or as a stringified property: numbers as
    JavaScript's String(n) prints them (3.0 is "3", 1e16 is "10000000000000000")."""
    if value.__class__ is str:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value.__class__ in (int, float):
        return js_string(value)
    return orjson.dumps(value).decode()


def template_problem(text: str) -> str | None:
    """Why a template cannot be what its author meant: braces left over once every
    ``{{name}}`` is taken out (``{{messageId}-x`` renders the braces as text)."""
    rest = directives.PLACEHOLDERS.sub("", text)
    if "{{" in rest or "}}" in rest:
        return (f"the template {text!r} has unbalanced braces: each variable is written "
                "{{name}}, with two braces on each side")
    return None


def template_variables(text: str) -> list[str]:
    return [(a or b).strip() for a, b in directives.PLACEHOLDERS.findall(text)]


def template(text: str, strict: bool = False) -> FieldValue:
    """Segment's ``{{path}}`` interpolation, rendered exactly as mapping-kit's ``@template``
    (``{{{x}}}`` too, ``items.0.sku``, numbers as JavaScript prints them, arrays comma-joined),
    except that a leading ``$.`` inside the braces is allowed; missing or null renders as "".

    ``strict`` (transaction_id): a variable that is missing, null or "" makes the whole value
    missing, since ``-song`` for every record without a messageId would collapse them."""
    names = template_variables(text)
    if any(name.startswith("$.") for name in names):
        text = directives.PLACEHOLDERS.sub(
            lambda m: m.group(0).replace("$.", "", 1), text)
        names = [name[2:] if name.startswith("$.") else name for name in names]
    keys = [directives.path_keys(name) for name in names]
    render, walk = directives.render, directives.walk
    tried = f"the template {text!r}"
    if not strict:
        return FieldValue(lambda record: render(text, record), tried, not names)

    def absent(record: Any) -> list[str]:
        return [name for name, path in zip(names, keys)
                if walk(record, path) in (MISSING, None, "")]

    def render_strict(record: Any) -> Any:
        return MISSING if absent(record) else render(text, record)

    def missing(record: Any) -> str:
        return f"the template {text!r} has no value for {', '.join(absent(record))} in this record"

    return FieldValue(render_strict, tried, not names, missing)


PROPERTY_OPTIONS = ("from", "set", "pick", "omit", "flatten", "stringify")


def _flatten(obj: dict, separator: str, prefix: str = "", out: dict | None = None) -> dict:
    out = {} if out is None else out
    for key, value in obj.items():
        name = f"{prefix}{separator}{key}" if prefix else key
        if value.__class__ is dict and value:
            _flatten(value, separator, name, out)
        else:
            out[name] = value
    return out


def _stringify(obj: dict) -> dict:
    return {
        key: value if value is None or value.__class__ in (str, dict, list) else render_scalar(value)
        for key, value in obj.items()
    }


@dataclass
class PropertiesSpec:
    """How ``properties`` is built: a source object, entries set on top, then the options.

    Order: ``from`` (an object), then ``set`` entries (missing ones left out), then ``flatten``
    (nested objects to ``a.b`` keys, or another separator), then ``pick``/``omit`` (on the final,
    possibly dotted, keys), then ``stringify`` (numbers and booleans to strings; Metronome uses
    arbitrary-precision decimals and recommends strings).
    """

    source: FieldValue | None = None
    entries: tuple[tuple[str, FieldValue], ...] = ()
    flatten: str | None = None
    pick: frozenset | None = None
    omit: frozenset | None = None
    stringify: bool = False

    def compile(self) -> Callable[[Any], Any]:
        """record -> dict, MISSING (leave properties out) or a (code, reason) failure tuple."""
        source, entries = self.source, self.entries
        flatten, pick, omit, stringify = self.flatten, self.pick, self.omit, self.stringify
        if source is not None and not entries and not (flatten or pick or omit or stringify):
            get, tried = source.get, source.tried

            def passthrough(record: Any) -> Any:
                value = get(record)
                if value.__class__ is dict or value is MISSING:
                    return value
                if value is None:
                    return MISSING
                return ("bad-properties",
                        f"properties must be an object; {tried} holds {json_type(value)}")

            return passthrough

        def build(record: Any) -> Any:
            result: dict = {}
            if source is not None:
                value = source.get(record)
                if value.__class__ is dict:
                    result.update(value)
                elif value is not MISSING and value is not None:
                    return ("bad-properties", f"properties 'from' must be an object; "
                            f"{source.tried} holds {json_type(value)}")
            for key, field in entries:
                value = field.get(record)
                if value is not MISSING:
                    result[key] = value
            if flatten is not None:
                result = _flatten(result, flatten)
            if pick is not None:
                result = {k: v for k, v in result.items() if k in pick}
            if omit is not None:
                result = {k: v for k, v in result.items() if k not in omit}
            if stringify:
                result = _stringify(result)
            return result

        return build


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        value.__class__, "a number")


def as_string(value: Any) -> str | None:
    """Segment's schema coercion for string fields: numbers and booleans become strings, and a
    one-element array its element's string."""
    if value.__class__ is str:
        return value
    if value.__class__ in (int, float, bool):
        return render_scalar(value)
    if value.__class__ is list and len(value) == 1 and value[0].__class__ is not list:
        return as_string(value[0])
    return None
