"""Segment's trigger language (FQL, as Segment's Actions destinations use it), compiled to predicates.

Semantics follow Segment: ``=``/``!=`` compare strings strictly (``!=`` is true when the field is
missing), ``= null``/``!= null`` test existence, ordering compares numbers only, ``contains`` and
``match`` work on strings. Input that Segment's own parser misreads is refused with the column:
``and``/``or`` mixed without parentheses, uppercase ``AND``/``OR``, single-quoted strings, nested
parentheses, unknown fields or functions.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable

from segmetro.mapping.paths import MISSING, dotted_getter

Predicate = Callable[[dict], bool]
Requires = dict  # top-level field -> frozenset of the strings it must equal for a match


@dataclass(frozen=True)
class Trigger:
    """A compiled trigger: its predicate, and what a record must hold for it to match at all
    (``requires``), which lets a file of many mappings skip the ones that cannot match."""

    predicate: Predicate
    requires: Requires

TOP_LEVEL_FIELDS = ("type", "event", "name", "userId")
PATH_ROOTS = ("properties", "traits", "context")
FUNCTIONS = ("contains", "match")

_TOKEN = re.compile(
    r"""(?P<space>\s+)"""
    r"""|(?P<string>"(?:[^"\\]|\\.)*")"""
    r"""|(?P<badstring>'[^']*'?)"""
    r"""|(?P<number>-?\d+(?:\.\d+)?(?![\w.]))"""
    r"""|(?P<op>!=|<=|>=|=|<|>)"""
    r"""|(?P<punct>[(),!])"""
    r"""|(?P<word>[A-Za-z_$][\w$]*(?:\.[\w$][\w$-]*)*)"""
)


class TriggerError(ValueError):
    """A trigger Segment would misread or not accept; ``column`` is 1-based within the trigger."""

    def __init__(self, message: str, column: int):
        super().__init__(message)
        self.column = column


@dataclass(slots=True)
class _Token:
    kind: str
    text: str
    column: int


def _tokenize(source: str) -> list[_Token]:
    tokens = []
    position = 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None:
            raise TriggerError(f"unexpected character {source[position]!r}", position + 1)
        kind = match.lastgroup
        text = match.group()
        if kind == "badstring":
            raise TriggerError(
                f"single-quoted string {text}: FQL strings take double quotes, "
                f'e.g. "{text.strip(chr(39))}"',
                position + 1,
            )
        if kind == "op" and source.startswith("==", position):
            raise TriggerError("'==': FQL compares with a single '='", position + 1)
        if kind != "space":
            tokens.append(_Token(kind, text, position + 1))
        position = match.end()
    tokens.append(_Token("end", "", len(source) + 1))
    return tokens


def _field_check(token: _Token) -> Callable[[dict], Any]:
    name = token.text
    root = name.split(".", 1)[0]
    if "." in name and root in PATH_ROOTS:
        return dotted_getter(name)
    if name in TOP_LEVEL_FIELDS:
        return dotted_getter(name)
    known = TOP_LEVEL_FIELDS + tuple(f"{r}.…" for r in PATH_ROOTS)
    hint = difflib.get_close_matches(root, TOP_LEVEL_FIELDS + PATH_ROOTS, n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise TriggerError(
        f"unknown field {name!r}{suggestion}; triggers can test {', '.join(known)}", token.column
    )


def _is_number(value: Any) -> bool:
    return (value.__class__ is int or value.__class__ is float) and value.__class__ is not bool


def _comparison(get: Callable, op: str, literal: Any, token: _Token) -> Predicate:
    if literal is None:
        if op == "=":
            return lambda record: get(record) in (MISSING, None)
        if op == "!=":
            return lambda record: get(record) not in (MISSING, None)
        raise TriggerError(f"{op} null makes no sense: use = null or != null", token.column)
    if op in ("<", "<=", ">", ">="):
        if not _is_number(literal):
            raise TriggerError(f"{op} compares numbers only; {token.text} is not a number",
                               token.column)
        compare = {
            "<": lambda a: a < literal, "<=": lambda a: a <= literal,
            ">": lambda a: a > literal, ">=": lambda a: a >= literal,
        }[op]

        def ordered(record: dict) -> bool:
            value = get(record)
            return _is_number(value) and compare(value)

        return ordered
    def equals(record: dict) -> bool:
        value = get(record)
        if literal.__class__ is bool:
            return value is literal
        if literal.__class__ is str:
            return value.__class__ is str and value == literal
        return _is_number(value) and value == literal

    if op == "=":
        return equals
    return lambda record: not equals(record)


def _glob(pattern: str) -> re.Pattern:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


class _Parser:
    def __init__(self, source: str):
        self.source = source
        self.tokens = _tokenize(source)
        self.position = 0

    def peek(self) -> _Token:
        return self.tokens[self.position]

    def take(self) -> _Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def expect(self, kind: str, text: str | None, what: str) -> _Token:
        token = self.take()
        if token.kind != kind or (text is not None and token.text != text):
            found = repr(token.text) if token.text else "the end of the trigger"
            raise TriggerError(f"expected {what}, found {found}", token.column)
        return token

    def parse(self) -> Trigger:
        predicate, requires = self.group_list(nested=False)
        end = self.peek()
        if end.kind != "end":
            raise TriggerError(f"unexpected {end.text!r}", end.column)
        return Trigger(predicate, requires)

    def connective(self, token: _Token) -> str | None:
        if token.kind == "word" and token.text in ("and", "or"):
            return token.text
        if token.kind == "word" and token.text.lower() in ("and", "or"):
            raise TriggerError(
                f"{token.text!r}: write {token.text.lower()!r} in lowercase "
                "(Segment silently ignores uppercase operators)", token.column)
        return None

    def group_list(self, nested: bool) -> tuple[Predicate, Requires]:
        parts = [self.term(nested)]
        operator = None
        while (word := self.connective(self.peek())) is not None:
            token = self.take()
            if operator is not None and word != operator:
                raise TriggerError(
                    f"{word!r} mixed with {operator!r} without parentheses: Segment reads the "
                    "whole group with the last operator; add parentheses, "
                    'e.g. a and (b or c)', token.column)
            operator = word
            parts.append(self.term(nested))
        if len(parts) == 1:
            return parts[0]
        predicates = tuple(predicate for predicate, _ in parts)
        if operator == "and":
            return _all(predicates), _requires_all([r for _, r in parts])
        return _any(predicates), _requires_any([r for _, r in parts])

    def term(self, nested: bool) -> tuple[Predicate, Requires]:
        token = self.peek()
        if token.kind == "punct" and token.text == "(":
            if nested:
                raise TriggerError(
                    "nested parentheses: Segment supports one level only", token.column)
            self.take()
            inner = self.group_list(nested=True)
            self.expect("punct", ")", "')'")
            return inner
        if token.kind == "punct" and token.text == "!":
            self.take()
            function = self.peek()
            if function.kind != "word" or function.text not in FUNCTIONS:
                raise TriggerError("'!' goes only before contains(...) or match(...)",
                                   function.column)
            inner = self.function()
            return (lambda record: not inner(record)), {}
        if token.kind == "word" and self.tokens[self.position + 1].text == "(":
            return self.function(), {}
        return self.condition()

    def function(self) -> Predicate:
        name = self.take()
        if name.text not in FUNCTIONS:
            hint = difflib.get_close_matches(name.text, FUNCTIONS, n=1)
            suggestion = f" (did you mean {hint[0]}?)" if hint else ""
            raise TriggerError(f"unknown function {name.text!r}{suggestion}; "
                               "triggers know contains(field, \"text\") and "
                               "match(field, \"pattern*\")", name.column)
        self.expect("punct", "(", "'('")
        get = _field_check(self.expect("word", None, "a field"))
        self.expect("punct", ",", "','")
        argument = self.expect("string", None, "a double-quoted string")
        text = _unquote(argument.text)
        self.expect("punct", ")", "')'")
        if name.text == "contains":
            return lambda record: (v := get(record)).__class__ is str and text in v
        pattern = _glob(text)
        return lambda record: (v := get(record)).__class__ is str and \
            pattern.fullmatch(v) is not None

    def condition(self) -> tuple[Predicate, Requires]:
        field_token = self.expect("word", None, "a field, contains(...), match(...) or '('")
        if self.connective(field_token) or field_token.text in ("null", "true", "false"):
            raise TriggerError(f"expected a field, found {field_token.text!r}",
                               field_token.column)
        get = _field_check(field_token)
        operator = self.expect("op", None, "an operator (=, !=, <, <=, >, >=)")
        value_token = self.take()
        if value_token.kind == "string":
            literal: Any = _unquote(value_token.text)
        elif value_token.kind == "number":
            text = value_token.text
            literal = float(text) if "." in text else int(text)
        elif value_token.kind == "word" and value_token.text in ("null", "true", "false"):
            literal = {"null": None, "true": True, "false": False}[value_token.text]
        else:
            found = repr(value_token.text) if value_token.text else "the end of the trigger"
            raise TriggerError(
                f"expected a value (\"string\", number, true, false or null), found {found}",
                value_token.column)
        predicate = _comparison(get, operator.text, literal, value_token)
        if operator.text == "=" and literal.__class__ is str and field_token.text in \
                TOP_LEVEL_FIELDS:
            return predicate, {field_token.text: frozenset((literal,))}
        return predicate, {}


def _all(predicates: tuple) -> Predicate:
    if len(predicates) == 2:
        first, second = predicates
        return lambda record: first(record) and second(record)
    return lambda record: all(predicate(record) for predicate in predicates)


def _any(predicates: tuple) -> Predicate:
    if len(predicates) == 2:
        first, second = predicates
        return lambda record: first(record) or second(record)
    return lambda record: any(predicate(record) for predicate in predicates)


def _requires_all(parts: list[Requires]) -> Requires:
    """Every part must match: each part's requirement holds (intersected per field)."""
    merged: dict = {}
    for requires in parts:
        for name, values in requires.items():
            merged[name] = merged[name] & values if name in merged else values
    return merged


def _requires_any(parts: list[Requires]) -> Requires:
    """One part must match: a field is required only if every part requires it (united)."""
    common = set.intersection(*(set(r) for r in parts)) if parts else set()
    return {name: frozenset().union(*(r[name] for r in parts)) for name in common}


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def compile_trigger(source: str) -> Trigger:
    """Compile an FQL trigger; raises TriggerError (with a 1-based column) when it is not valid."""
    if not source.strip():
        raise TriggerError("the trigger is empty: leave it out to match every record", 1)
    return _Parser(source).parse()
