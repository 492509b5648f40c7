"""Segment's mapping-kit directives (``@segment/actions-core``), evaluated as mapping-kit evaluates
them: ``@path``, ``@template``, ``@literal``, ``@if``, ``@arrayPath``, ``@case``, ``@replace``,
``@json``, ``@flatten``, ``@merge``, ``@excludeWhenNull`` and ``@transform``; ``_metadata`` (the
UI's) is ignored. ``@liquid`` is refused by name. ``tests/segment/golden.json`` holds mapping-kit's
own answers on a corpus of records.

The rules that surprise (all mapping-kit's): a path's first ``$.`` is dropped, so the prefix is
optional; numeric segments index arrays (``items.0.sku``); a walk stops at a falsy value and
returns it (``a.b`` with ``a: 0`` is 0); a raw string is a literal, never a path; an object key
whose value is missing is removed while ``null`` is kept; ``{{x}}`` renders numbers as JavaScript
does, arrays comma-joined and objects as ``[object Object]``.

``compile_directive`` checks a mapping once (as mapping-kit's ``validate`` does) and returns a
function of the record; ``MISSING`` stands for JavaScript's ``undefined``.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import orjson

from segmetro.jsvalues import JSFunction, js_json, js_member, js_order, js_string, js_truthy
from segmetro.mapping.paths import MISSING

Resolver = Callable[[Any], Any]
DIRECTIVES = ("@path", "@template", "@literal", "@if", "@arrayPath", "@case", "@replace",
              "@json", "@flatten", "@merge", "@excludeWhenNull", "@transform")
REFUSED = {"@liquid": "Liquid templates are not run by segmetro (their result depends on "
                      "LiquidJS's filters); rewrite the field with @template, @if or @case"}
_OBJECT_PROTO = frozenset(("__proto__", "constructor", "hasOwnProperty", "isPrototypeOf",
                           "propertyIsEnumerable", "toLocaleString", "toString", "valueOf",
                           "__defineGetter__", "__defineSetter__", "__lookupGetter__",
                           "__lookupSetter__"))


class DirectiveError(ValueError):
    """A mapping mapping-kit would refuse; ``where`` is the list of keys leading to it."""

    def __init__(self, message: str, where: list):
        super().__init__(message)
        self.where = where

    def __str__(self) -> str:
        place = "/" + "/".join(map(str, self.where)) if self.where else "the value"
        return f"{place}: {self.args[0]}"


def is_directive(value: Any) -> bool:
    """An object with an @-key and no other keys but ``_metadata`` (mapping-kit's isDirective)."""
    if value.__class__ is not dict:
        return False
    keys = list(value)
    if not any(isinstance(k, str) and k.startswith("@") for k in keys):
        return False
    return all(isinstance(k, str) and (k.startswith("@") or k == "_metadata") for k in keys)


def has_directive_key(value: Any) -> bool:
    return value.__class__ is dict and any(isinstance(k, str) and k.startswith("@")
                                           for k in value)


# --- paths and values, as JavaScript reads them ---------------------------------------------------

_SPLIT = re.compile(r"""\[(?=["'\d])|\.|(?<=["'\d])\]+""")


def path_keys(path: str) -> list[str] | None:
    """mapping-kit's get: ``''`` or ``'.'`` is the whole payload (None); otherwise the keys."""
    if path in ("", "."):
        return None
    return [part.replace("'", "").replace('"', "") for part in _SPLIT.split(path) if part]


def walk(payload: Any, keys: list[str] | None) -> Any:
    """``keys.reduce((prev, key) => prev && prev[key], payload)``."""
    if keys is None:
        return payload
    value = payload
    for key in keys:
        if value is MISSING or not js_truthy(value):
            return value
        value = js_member(value, key, MISSING)
    return MISSING if value.__class__ is JSFunction else value  # JSON has no functions


def getter(path: str) -> Resolver:
    """A walk compiled for one path: plain dictionary lookups while the values are objects (the
    common case), JavaScript's rules (falsy values, arrays, strings) from where they are not."""
    keys = path_keys(path.replace("$.", "", 1))
    if keys is None:
        return lambda payload: payload
    if len(keys) == 1:
        (first,) = keys

        def get1(payload: Any) -> Any:
            if payload.__class__ is dict:
                return payload.get(first, MISSING)
            return walk(payload, keys)

        return get1
    if len(keys) == 2:
        first, second = keys

        def get2(payload: Any) -> Any:
            if payload.__class__ is dict:
                inner = payload.get(first, MISSING)
                if inner.__class__ is dict:
                    return inner.get(second, MISSING)
                return walk(inner, keys[1:])
            return walk(payload, keys)

        return get2
    return lambda payload: walk(payload, keys)


def to_string(value: Any) -> str:
    """JavaScript's ToString of a JSON value (how a template prints it)."""
    if value.__class__ is str:
        return value
    if value is True or value is False:
        return "true" if value else "false"
    if value is None:
        return "null"
    if value.__class__ in (int, float):
        return js_string(value)
    if value.__class__ is list:
        return ",".join("" if item is None or item is MISSING else to_string(item)
                        for item in value)
    return "[object Object]"


def render(template: str, payload: Any) -> str:
    """mapping-kit's placeholders.render: ``{{{x}}}`` then ``{{x}}``, missing and null as ""."""

    def replacer(width: int) -> Callable[[re.Match], str]:
        def replace(match: re.Match) -> str:
            value = walk(payload, path_keys(match.group(0)[width:-width].strip()))
            return "" if value is MISSING or value is None else to_string(value)

        return replace

    once = re.sub(r"\{\{\{([^}]+)\}\}\}", replacer(3), template)
    return re.sub(r"\{\{([^}]+)\}\}", replacer(2), once)


def remove_missing(value: Any) -> Any:
    """removeUndefined: object keys whose value is missing go; inside arrays, missing stays
    (and JSON.stringify writes it as null)."""
    if value.__class__ is list:
        return [None if item is MISSING else remove_missing(item) for item in value]
    if value.__class__ is dict:
        return {key: remove_missing(item) for key, item in value.items() if item is not MISSING}
    return value


def js_stringify(value: Any) -> Any:
    if value is MISSING:
        return MISSING
    return orjson.dumps(js_json(remove_missing(value))).decode()


def _loose_not_empty(value: Any) -> bool:
    """``value != ''`` with JavaScript's loose equality (for @if blank)."""
    if value.__class__ is str:
        return value != ""
    if value is True or value is False:
        return value is True
    if value.__class__ in (int, float):
        return value != 0
    if value.__class__ is list:
        return to_string(value) != ""
    return True


def _replace(value: str, pattern: str, replacement: str, global_: bool, ignorecase: bool) -> str:
    """String.prototype.replace with an escaped pattern, ``$&``, ``$$``, ``$```, ``$'`` included."""
    regex = re.compile(re.escape(pattern), re.IGNORECASE if ignorecase else 0)

    def substitute(match: re.Match) -> str:
        out, index = [], 0
        while index < len(replacement):
            char = replacement[index]
            following = replacement[index + 1:index + 2]
            if char == "$" and following in ("$", "&", "`", "'"):
                out.append({"$": "$", "&": match.group(0), "`": value[:match.start()],
                            "'": value[match.end():]}[following])
                index += 2
                continue
            out.append(char)
            index += 1
        return "".join(out)

    return regex.sub(substitute, value, count=0 if global_ else 1)


def _flatten(value: Any, prefix: str, separator: str, omit_arrays: bool, out: dict) -> None:
    if value.__class__ is dict or (not omit_arrays and value.__class__ is list):
        items = value.items() if value.__class__ is dict else \
            ((str(i), item) for i, item in enumerate(value))
        for key, item in items:
            _flatten(item, f"{prefix}{separator}{key}" if prefix else key, separator,
                     omit_arrays, out)
    else:
        out[prefix] = value


def _assign(target: dict, source: Any) -> None:
    """Object.assign's copy of one source: objects, arrays and strings have own keys."""
    if source.__class__ is dict:
        target.update(source)
    elif source.__class__ is list:
        target.update((str(i), item) for i, item in enumerate(source))
    elif source.__class__ is str:
        target.update((str(i), char) for i, char in enumerate(source))


def _clean_nulls(value: Any) -> Any:
    if value.__class__ is not dict:
        return value
    return {key: MISSING if item is None else _clean_nulls(item) for key, item in value.items()}


# --- checking and compiling -------------------------------------------------------------------------

class _Compiler:
    def __init__(self) -> None:
        self.where: list = []

    def fail(self, message: str) -> None:
        raise DirectiveError(message, list(self.where))

    def value(self, mapping: Any) -> Resolver:
        """mapping-kit's resolve, compiled: raw values as they are, directives run, arrays and
        objects resolved item by item."""
        if mapping.__class__ is dict:
            if has_directive_key(mapping):
                return self.directive(mapping)
            parts = []
            for key, item in mapping.items():
                self.where.append(key)
                parts.append((key, self.value(item)))
                self.where.pop()
            return lambda payload: {key: part(payload) for key, part in parts}
        if mapping.__class__ is list:
            items = [self.value(item) for item in mapping]
            return lambda payload: [item(payload) for item in items]
        if not (mapping is None or mapping.__class__ in (str, int, float, bool)):
            self.fail(f"{mapping!r} is not a JSON value")
        return lambda payload: mapping

    def directive(self, mapping: dict) -> Resolver:
        keys = [k for k in mapping if isinstance(k, str) and k.startswith("@")]
        others = [k for k in mapping if k not in keys and k != "_metadata"]
        if len(keys) > 1:
            self.fail(f"one @-directive per object, found {', '.join(keys)}")
        if others:
            self.fail(f"a directive object has no other keys (found {', '.join(map(str, others))}"
                      f" beside {keys[0]}); put the directive on a key of its own")
        name = keys[0]
        if name in REFUSED:
            self.fail(f"{name}: {REFUSED[name]}")
        if name not in DIRECTIVES:
            self.fail(f"{name} is not a mapping-kit directive; known: {', '.join(DIRECTIVES)}")
        self.where.append(name)
        try:
            return getattr(self, "d_" + name[1:])(mapping[name])
        finally:
            self.where.pop()

    def string_or_directive(self, value: Any, what: str) -> Resolver:
        if value.__class__ is str:
            return lambda payload: value
        if is_directive(value):
            return self.directive(value)
        self.fail(f"{what} is a string or a directive")

    def options(self, value: Any, name: str, known: tuple, required: tuple = ()) -> dict:
        if value.__class__ is not dict or has_directive_key(value):
            self.fail(f"{name} takes an object with {', '.join(known)}")
        for key in required:
            if key not in value:
                self.fail(f"{name} needs {key!r}")
        return value

    # Each directive as mapping-kit's index.js registers it.
    def d_path(self, value: Any) -> Resolver:
        if value.__class__ is str:
            keys = path_keys(value.replace("$.", "", 1)) or []
            refused = [key for key in keys if key in _OBJECT_PROTO]
            if refused:
                self.fail(f"{refused[0]!r} is a member of every JavaScript object, not data")
            return getter(value)
        inner = self.string_or_directive(value, "@path")

        def dynamic(payload: Any) -> Any:
            path = inner(payload)
            if path.__class__ is not str:
                raise DirectiveFailure("@path: expected a string")
            return getter(path)(payload)

        return dynamic

    def d_template(self, value: Any) -> Resolver:
        inner = self.string_or_directive(value, "@template")

        def template(payload: Any) -> Any:
            text = inner(payload)
            if text.__class__ is not str:
                raise DirectiveFailure("@template: expected a string")
            return render(text, payload)

        return template

    def d_literal(self, value: Any) -> Resolver:
        return self.value(value)

    def d_if(self, value: Any) -> Resolver:
        opts = self.options(value, "@if", ("exists", "blank", "then", "else"))
        if not js_truthy(opts.get("exists")) and not js_truthy(opts.get("blank")):
            self.fail('@if needs an "exists" or a "blank" key')
        mode = "exists" if "exists" in opts else "blank"
        test = self.value(opts[mode])
        then = self.value(opts["then"]) if "then" in opts else None
        otherwise = self.value(opts["else"]) if js_truthy(opts.get("else", False)) else None

        def choose(payload: Any) -> Any:
            found = test(payload)
            condition = found is not MISSING and found is not None
            if mode == "blank":
                condition = condition and _loose_not_empty(found)
            if condition and then is not None:
                return then(payload)
            if not condition and otherwise is not None:
                return otherwise(payload)
            return MISSING

        return choose

    def d_case(self, value: Any) -> Resolver:
        opts = self.options(value, "@case", ("operator", "value"))
        if not js_truthy(opts.get("operator")):
            self.fail('@case needs an "operator" key')
        operator = opts["operator"]
        if "value" in opts and not (opts["value"].__class__ is str or is_directive(opts["value"])):
            self.fail("@case value is a string or a directive")
        if not js_truthy(opts.get("value")):
            return lambda payload: MISSING
        inner = self.value(opts["value"])

        def case(payload: Any) -> Any:
            found = inner(payload)
            if found.__class__ is str:
                if operator == "lower":
                    return found.lower()
                if operator == "upper":
                    return found.upper()
                raise DirectiveFailure('@case: operator is "lower" or "upper"')
            return found

        return case

    def d_replace(self, value: Any) -> Resolver:
        opts = self.options(value, "@replace", ("pattern", "replacement", "value", "ignorecase",
                                                "global", "pattern2", "replacement2"),
                            required=("pattern", "value"))
        pattern = opts["pattern"]
        if pattern.__class__ is not str or not 1 <= len(pattern) <= 10:
            self.fail("@replace pattern is a string of 1 to 10 characters")
        replacement = opts.get("replacement")
        replacement = "" if replacement is None else replacement
        if replacement.__class__ is not str or len(replacement) > 10:
            self.fail("@replace replacement is a string of at most 10 characters")
        for flag in ("ignorecase", "global"):
            if flag in opts and opts[flag].__class__ is not bool:
                self.fail(f"@replace {flag} is true or false")
        ignorecase = opts.get("ignorecase", False) if opts.get("ignorecase") is not None \
            else False
        global_ = opts.get("global", True) if opts.get("global") is not None else True
        pattern2, replacement2 = opts.get("pattern2"), opts.get("replacement2")
        if js_truthy(pattern2) and replacement2 is None:
            replacement2 = ""
        if not (opts["value"].__class__ is str or is_directive(opts["value"])):
            self.fail("@replace value is a string or a directive")
        if not js_truthy(opts["value"]):
            return lambda payload: MISSING
        inner = self.value(opts["value"])

        def replace(payload: Any) -> Any:
            found = inner(payload)
            if found is True or found is False or found.__class__ in (int, float):
                found = to_string(found)
            if found.__class__ is not str:
                return ""
            out = _replace(found, pattern, replacement, global_, ignorecase)
            if js_truthy(pattern2) and pattern2.__class__ is str and \
                    replacement2.__class__ is str:
                out = _replace(out, pattern2, replacement2, global_, ignorecase)
            return out

        return replace

    def d_arrayPath(self, value: Any) -> Resolver:
        if value.__class__ is not list or not value:
            self.fail("@arrayPath takes [path, item shape]")
        path = value[0]
        if path.__class__ is str:
            root = getter(path)
        else:
            root = self.string_or_directive(path, "@arrayPath's path")
        shape = value[1] if len(value) > 1 else MISSING
        item = self.value(shape) if shape.__class__ is dict and shape else None

        def array_path(payload: Any) -> Any:
            found = root(payload)
            if item is not None and found.__class__ in (dict, list):
                return [item(element) for element in
                        (found if found.__class__ is list else [found])]
            return found

        return array_path

    def d_json(self, value: Any) -> Resolver:
        opts = self.options(value, "@json", ("mode", "value"), required=("value", "mode"))
        mode = opts["mode"]
        if mode.__class__ is not str or mode.lower() not in ("encode", "decode"):
            self.fail('@json mode is "encode" or "decode"')
        if not js_truthy(opts["value"]):
            self.fail('@json needs a "value" key')
        inner = self.value(opts["value"])
        if mode == "encode":
            return lambda payload: js_stringify(inner(payload))
        if mode != "decode":
            return lambda payload: MISSING

        def decode(payload: Any) -> Any:
            found = inner(payload)
            if found.__class__ is str:
                try:
                    return orjson.loads(found)
                except orjson.JSONDecodeError:
                    return found
            return found

        return decode

    def d_flatten(self, value: Any) -> Resolver:
        opts = self.options(value, "@flatten", ("separator", "value", "omitArrays"),
                            required=("value",))
        if not js_truthy(opts.get("separator")):
            self.fail('@flatten needs a "separator" key')
        if opts["separator"].__class__ is not str:
            self.fail("@flatten separator is a string")
        separator, omit_arrays = opts["separator"], js_truthy(opts.get("omitArrays", False))
        inner = self.value(opts["value"])

        def flatten(payload: Any) -> Any:
            out: dict = {}
            _flatten(inner(payload), "", separator, omit_arrays, out)
            return js_order(out)

        return flatten

    def d_merge(self, value: Any) -> Resolver:
        opts = self.options(value, "@merge", ("objects", "direction"), required=("objects",))
        direction = opts.get("direction")
        if not js_truthy(direction):
            self.fail('@merge needs a "direction" key')
        if direction.__class__ is not str or direction.lower() not in ("left", "right"):
            self.fail('@merge direction is "left" or "right"')
        if opts["objects"].__class__ is not list:
            self.fail("@merge objects is a list")
        objects = []
        for index, item in enumerate(opts["objects"]):
            if item.__class__ is not dict:
                self.fail(f"@merge objects[{index}] is an object or a directive")
            objects.append(self.value(item))

        def merge(payload: Any) -> Any:
            resolved = [resolve(payload) for resolve in objects]
            if direction == "left":
                resolved.reverse()
            out: dict = {}
            for item in resolved:
                _assign(out, item)
            return js_order(out)

        return merge

    def d_excludeWhenNull(self, value: Any) -> Resolver:
        inner = self.value(value)

        def exclude(payload: Any) -> Any:
            found = inner(payload)
            return MISSING if found is None else _clean_nulls(found)

        return exclude

    def d_transform(self, value: Any) -> Resolver:
        opts = self.options(value, "@transform", ("apply", "mapping"),
                            required=("apply", "mapping"))
        if opts["apply"].__class__ is not dict:
            self.fail("@transform apply is an object")
        apply, mapping = self.value(opts["apply"]), self.value(opts["mapping"])
        return lambda payload: mapping(remove_missing(apply(payload)))


class DirectiveFailure(Exception):
    """mapping-kit throws for this record (a dynamic @path that is not a string, ...)."""


def compile_directive(mapping: Any) -> Resolver:
    """A function of the record giving mapping-kit's value (MISSING for undefined, before
    removeUndefined); raises DirectiveError for a mapping mapping-kit would refuse."""
    return _Compiler().value(mapping)


def transform(mapping: dict, record: Any) -> Any:
    """mapping-kit's transform (for tests and ``import``): resolve, then drop missing keys."""
    return remove_missing(compile_directive(mapping)(record))


# --- as a segmetro field value -----------------------------------------------------------------------

PLACEHOLDERS = re.compile(r"\{\{\{([^}]+)\}\}\}|\{\{([^}]+)\}\}")


def _varies(mapping: Any) -> bool:
    """Whether a mapping reads the record at all (a transaction_id that does not is constant)."""
    if mapping.__class__ is dict:
        for key, value in mapping.items():
            if key in ("@path", "@arrayPath"):
                return True
            if key == "@template" and (not isinstance(value, str) or PLACEHOLDERS.search(value)):
                return True
            if _varies(value):
                return True
        return False
    if mapping.__class__ is list:
        return any(_varies(item) for item in mapping)
    return False


def field_value(mapping: Any, strict: bool = False):
    """A segmetro FieldValue for a directive. ``strict`` (transaction_id): a top-level
    ``@template`` with a variable that is missing, null or "" gives no value, since rendering it
    as "" would give all such records one id."""
    from segmetro.mapping.fields import FieldValue  # fields imports this module

    resolver = compile_directive(mapping)
    tried = f"the directive {orjson.dumps(mapping).decode()[:120]}"
    if mapping.__class__ is dict and set(mapping) - {"_metadata"} == {"@path"} and \
            isinstance(mapping["@path"], str):
        return FieldValue(resolver, tried)  # data from the record holds no missing value

    def get(record: Any) -> Any:
        try:
            return remove_missing(resolver(record))
        except DirectiveFailure:
            return MISSING

    template = mapping.get("@template") if mapping.__class__ is dict else None
    if not strict or not isinstance(template, str):
        return FieldValue(get, tried, constant=not _varies(mapping))
    from segmetro.mapping.fields import template as strict_template

    return strict_template(template, strict=True)
