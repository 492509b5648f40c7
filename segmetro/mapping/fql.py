"""Segment's trigger language (FQL, as Segment's Actions destinations read it), compiled to predicates.

Every trigger is either evaluated exactly as ``@segment/destination-subscriptions`` evaluates it,
or refused with its column and the rewrite to use; there is no third case. To make that true by
construction, a trigger is read twice:

1. ``_SegmentReader``: a port of Segment's own code (``@segment/fql-ts``'s lexer, then
   destination-subscriptions' ``normalize``/``parse``), quirks included. Its AST is what the live
   destination evaluates, and what segmetro evaluates (``_compile``, a port of ``validate``).
2. ``_StrictReader``: the grammar a person means (a field, an operator, a value; lowercase
   ``and``/``or``; one level of parentheses; ``contains``/``match``), building its AST with the
   very same node rules.

A trigger is accepted only when the strict reading succeeds and both readings have the same
meaning; otherwise the message says what Segment would do instead. Refused besides, though Segment
accepts them, because its reading is surely not what the author meant: single-quoted strings
(the quotes become part of the value), ``match`` patterns other than ``X*`` and ``*X``,
prototype members and ``.length`` in paths, functions on fields Segment drops silently.
``tests/segment/golden.json`` (``tools/segment-oracle``) holds Segment's own answers.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable

from segmetro.jsvalues import as_double, is_number, js_member, js_number, js_string, js_truthy
from segmetro.mapping.paths import MISSING

Predicate = Callable[[dict], bool]
Requires = dict  # top-level field -> frozenset of the strings it must equal for a match

TOP_LEVEL_FIELDS = ("type", "event", "name", "userId")
PATH_ROOTS = ("properties", "traits", "context")
FUNCTIONS = ("contains", "match")
_CONDITION_TYPES = {"type": "event-type", "event": "event", "name": "name", "userId": "userId",
                    "context": "event-context", "properties": "event-property",
                    "traits": "event-trait"}
_PATH_TYPES = {"event-property": "properties", "event-trait": "traits",
               "event-context": "context"}

# Members every JavaScript object has: a path through them reads the prototype, not the data.
_OBJECT_PROTO = frozenset((
    "__defineGetter__", "__defineSetter__", "__lookupGetter__", "__lookupSetter__", "__proto__",
    "constructor", "hasOwnProperty", "isPrototypeOf", "propertyIsEnumerable", "toLocaleString",
    "toString", "valueOf"))
_REFUSED_SEGMENTS = _OBJECT_PROTO | {"length", "prototype", "caller", "arguments", "callee"}
class TriggerError(ValueError):
    """A trigger Segment would misread or not accept; ``column`` is 1-based within the trigger."""

    def __init__(self, message: str, column: int):
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class Trigger:
    """A compiled trigger: its predicate, and what a record must hold for it to match at all
    (``requires``), which lets a file of many mappings skip the ones that cannot match."""

    predicate: Predicate
    requires: Requires


# --- Segment's lexer (@segment/fql-ts), ported as it is -------------------------------------------

_EOS = "-1"  # fql-ts's end-of-string flag, a two-character string


@dataclass(slots=True)
class _Token:
    type: str  # ident dot operator conditional string number null brackleft brackright
    #            parenleft parenright comma eos
    value: str
    column: int = 0  # 1-based start, for messages
    glued: bool = False  # a string whose closing quote was followed by text (see _lex_string)


class _LexError(Exception):
    def __init__(self, message: str, column: int):
        super().__init__(message)
        self.column = column


def _is_alpha(c: str) -> bool:
    return len(c) == 1 and ("a" <= c <= "z" or "A" <= c <= "Z")


def _is_digit(c: str) -> bool:
    return len(c) == 1 and "0" <= c <= "9"


def _is_whitespace(c: str) -> bool:
    return c in (" ", "\t", "\n")


def _is_terminator(c: str) -> bool:
    return c == _EOS or _is_whitespace(c) or c in (",", "]", ")")


def _is_ident(c: str) -> bool:
    return c != _EOS and (_is_alpha(c) or _is_digit(c) or c in ("_", "-", "\\"))


class _Lexer:
    def __init__(self, code: str):
        self.code = code
        self.position = 0

    def next(self) -> tuple[str, bool]:
        if self.position == len(self.code):
            return _EOS, True
        char = self.code[self.position]
        self.position += 1
        return char, False

    def peek(self) -> str:
        char, eos = self.next()
        if not eos:
            self.position -= 1
        return char

    def backup(self, count: int) -> None:
        self.position = max(0, self.position - count)

    def accept(self, text: str) -> bool:
        """fql-ts's accept: consume ``text`` if a terminator follows it. At the end of input it
        gives up without backing up what it read (a quirk kept as it is)."""
        chars = ""
        for _ in text:
            char, eos = self.next()
            chars += char
            if eos:
                return False
            if _is_terminator(char):
                break
        if text == chars and _is_terminator(self.peek()):
            return True
        self.backup(len(chars))
        return False

    def lex(self) -> list[_Token]:
        tokens: list[_Token] = []
        while True:
            start = self.position + 1
            char, eos = self.next()
            if eos:
                tokens.append(_Token("eos", "eos", start))
                return tokens
            if _is_whitespace(char):
                continue
            if char == "!":
                following = self.peek()
                if _is_alpha(following) or following == "(":
                    tokens.append(_Token("operator", "!", start))
                    continue
            if _is_alpha(char) or char in ("!", "=", ">", "<", "\\", "_"):
                token = self._operator_or_conditional(char)
            elif _is_digit(char) or char in ("-", "+"):
                token = self._number(char)
            elif char in ('"', "'"):
                token = self._string(char)
            elif char in (".", "[", "]", ",", "(", ")"):
                token = _Token({".": "dot", "[": "brackleft", "]": "brackright", ",": "comma",
                                "(": "parenleft", ")": "parenright"}[char], char)
            else:
                raise _LexError(f"invalid character {char!r}", start)
            token.column = start
            tokens.append(token)

    def _string(self, quote: str) -> _Token:
        text = ""
        while self.peek() != quote:
            char, eos = self.next()
            text += char
            if eos:
                raise _LexError("unterminated string", self.position + 1)
        # The closing quote is eaten only when a terminator follows it; otherwise it is left to
        # open a new string, and what follows is read as that string's text.
        closed = self.accept(quote)
        return _Token("string", f"{quote}{text}{quote}", glued=not closed)

    def _number(self, previous: str) -> _Token:
        text = ""
        coming = self.peek()
        decimal = False
        while _is_digit(coming) or coming == ".":
            char, _ = self.next()
            text += char
            if coming == ".":
                if _is_terminator(self.peek()):
                    raise _LexError("unexpected terminator after decimal point",
                                    self.position + 1)
                if decimal:
                    raise _LexError("multiple decimal points in one number", self.position)
                decimal = True
            coming = self.peek()
        return _Token("number", previous + text)

    def _operator_or_conditional(self, previous: str) -> _Token:
        if previous == "=":
            return _Token("operator", "=")
        if previous == "!":
            if self.accept("="):
                return _Token("operator", "!=")
            raise _LexError(f"expected '=' after '!', found {self.peek()!r}", self.position + 1)
        if previous == "a":
            return _Token("conditional", "and") if self.accept("nd") else self._ident(previous)
        if previous == "o":
            return _Token("conditional", "or") if self.accept("r") else self._ident(previous)
        if previous == "n":
            return _Token("null", "null") if self.accept("ull") else self._ident(previous)
        if previous in ("<", ">"):
            if self.accept("="):
                return _Token("operator", previous + "=")
            return _Token("operator", previous)
        return self._ident(previous)

    def _ident(self, previous: str) -> _Token:
        text = ""
        char = previous
        while True:
            if char == "\\":
                if self.peek() == _EOS:
                    raise _LexError("expected a character after the escape '\\'",
                                    self.position + 1)
                char, _ = self.next()
            text += char
            if not _is_ident(self.peek()):
                break
            char, _ = self.next()
        coming = self.peek()
        if not (coming == _EOS or _is_terminator(coming) or coming in (".", "(", "=", "!")):
            raise _LexError(f"expected a space or an operator after {text!r}, found {coming!r}",
                            self.position + 1)
        return _Token("ident", text)


def _normalize(tokens: list[_Token]) -> list[_Token]:
    """destination-subscriptions' normalize: ``ident . ident`` becomes one dotted ident."""
    out: list[_Token] = []
    index = 0
    while index < len(tokens):
        current = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if out and out[-1].type == "ident" and current.type == "dot" and following is not None \
                and following.type == "ident":
            previous = out.pop()
            out.append(_Token("ident", previous.value + "." + following.value, previous.column))
            index += 2
        else:
            out.append(current)
            index += 1
    return out


# --- Segment's parser (destination-subscriptions' parse-fql), ported as it is ---------------------

class _ParseError(Exception):
    pass


def _token_value(token: _Token) -> Any:
    """getTokenValue: a string without its double quotes, a number, true/false, else the text."""
    if token.type == "string":
        value = token.value
        value = value[1:] if value.startswith('"') else value
        return value[:-1] if value.endswith('"') else value
    if token.type == "number":
        return js_number(token.value)
    if token.type == "ident" and token.value in ("true", "false"):
        return token.value == "true"
    return token.value


def _as_string(value: Any) -> str:
    """JavaScript's String(value) for a token value."""
    if value is True or value is False:
        return "true" if value else "false"
    if value.__class__ is float:
        return js_string(value)
    return value


def _condition(field: _Token, operator: _Token, value: _Token) -> dict | None:
    """One comparison's node, built as Segment builds it; None when Segment pushes nothing."""
    start = field.value.split(".")[0]
    if start in _OBJECT_PROTO:  # a lookup in a JavaScript object finds the prototype's member
        return None
    kind = _CONDITION_TYPES.get(start)
    if kind is None:
        return None
    op, text = operator.value, value.value
    is_true = op == "=" and text == "true"
    is_false = op == "=" and text == "false"
    exists = op == "!=" and text == "null"
    not_exists = op == "=" and text == "null"
    number_equals = op == "=" and value.type == "number"
    number_not_equals = op == "!=" and value.type == "number"
    if kind in ("event", "event-type"):
        return {"type": kind, "operator": op, "value": _as_string(_token_value(value))}
    special = None
    if exists:
        special = "exists"
    elif not_exists:
        special = "not_exists"
    elif kind != "name" and is_true:
        special = "is_true"
    elif kind != "name" and is_false:
        special = "is_false"
    if kind in ("name", "userId"):
        if special is not None:
            return {"type": kind, "operator": special}
        return {"type": kind, "operator": op, "value": _as_string(_token_value(value))}
    name = field.value
    root = _PATH_TYPES[kind] + "."
    name = name[len(root):] if name.startswith(root) else name
    if special is not None:
        return {"type": kind, "name": name, "operator": special}
    if number_equals:
        return {"type": kind, "name": name, "operator": "number_equals",
                "value": _token_value(value)}
    if number_not_equals:
        return {"type": kind, "name": name, "operator": "number_not_equals",
                "value": _token_value(value)}
    return {"type": kind, "name": name, "operator": op, "value": _token_value(value)}


def _function(name: str, field: _Token, value: _Token, negate: bool) -> dict | None:
    """contains()/match() as Segment builds them; None for fields it drops silently."""
    if name == "contains":
        operator = "not_contains" if negate else "contains"
        text = _as_string(_token_value(value))
    elif value.value.endswith('*"'):
        operator = "not_starts_with" if negate else "starts_with"
        text = _as_string(_token_value(value))[:-1]
    else:
        operator = "not_ends_with" if negate else "ends_with"
        text = _as_string(_token_value(value))[1:]
    if field.value in ("event", "name", "userId"):
        return {"type": field.value, "operator": operator, "value": text}
    for root, kind in (("properties", "event-property"), ("traits", "event-trait"),
                       ("context", "event-context")):
        if field.value.startswith(root):
            name = field.value[len(root) + 1:] if field.value.startswith(root + ".") \
                else field.value
            return {"type": kind, "name": name, "operator": operator, "value": text}
    return None


def _segment_parse(tokens: list[_Token]) -> dict | None:
    """destination-subscriptions' parse, token for token; raises _ParseError where it throws."""
    nodes: list = []
    operator = "and"
    queue = list(tokens)

    def shift() -> _Token | None:
        return queue.pop(0) if queue else None

    def parse_function(name: str, negate: bool) -> None:
        shift()
        field = shift()
        if field is None:
            raise _ParseError(f"{name}() is missing a 1st argument")
        shift()
        value = shift()
        if value is None:
            raise _ParseError(f"{name}() is missing a 2nd argument")
        shift()
        node = _function(name, field, value, negate)
        if node is not None:
            nodes.append(node)

    token = shift()
    while token is not None and token.type != "eos":
        if token.type == "ident":
            start = token.value.split(".")[0]
            if start in _CONDITION_TYPES or start in _OBJECT_PROTO:
                operator_token, value_token = shift(), None
                if operator_token is None:
                    raise _ParseError("Operator token is missing")
                value_token = shift()
                if value_token is None:
                    raise _ParseError("Value token is missing")
                node = _condition(token, operator_token, value_token)
                if node is not None:
                    nodes.append(node)
            if token.value in FUNCTIONS:
                parse_function(token.value, negate=False)
        if token.type == "operator" and token.value == "!":
            if queue and queue[0].type == "ident" and queue[0].value in FUNCTIONS:
                name = shift().value
                parse_function(name, negate=True)
        if token.type == "parenleft":
            group: list[_Token] = []
            inner = shift()
            while inner is None or inner.type != "parenright":
                if inner is None:
                    raise _ParseError("unclosed parenthesis")
                group.append(inner)
                inner = shift()
            group.append(_Token("eos", "eos"))
            nodes.append(_segment_parse(group))
        if token.type == "conditional":
            operator = token.value
        token = shift()
    if len(nodes) > 1:
        return {"type": "group", "operator": operator, "children": nodes}
    return nodes[0] if nodes else None


def segment_ast(text: str) -> dict | None:
    """The AST Segment's parseFql makes of ``text``, or None where it fails (the trigger then
    matches nothing)."""
    try:
        ast = _segment_parse(_normalize(_Lexer(text).lex()))
    except (_LexError, _ParseError):
        return None
    if ast is None or _has_hole(ast):
        return None
    return ast if ast["type"] == "group" else {"type": "group", "operator": "and",
                                                "children": [ast]}


def _has_hole(node: Any) -> bool:
    """A group with an empty child: Segment's validate throws on it."""
    if node is None:
        return True
    if node.get("type") == "group":
        return any(_has_hole(child) for child in node["children"])
    return False


# --- the strict reading: what a person means ------------------------------------------------------

_OPERATORS = ("=", "!=", "<", "<=", ">", ">=")


class _StrictReader:
    def __init__(self, source: str, tokens: list[_Token]):
        self.source = source
        self.tokens = tokens
        self.position = 0

    def peek(self) -> _Token:
        return self.tokens[self.position]

    def take(self) -> _Token:
        token = self.tokens[self.position]
        if token.type != "eos":
            self.position += 1
        return token

    def fail(self, message: str, token: _Token) -> None:
        raise TriggerError(message, token.column)

    def found(self, token: _Token) -> str:
        return "the end of the trigger" if token.type == "eos" else repr(self.text(token))

    def text(self, token: _Token) -> str:
        return token.value

    def expect(self, kind: str, value: str | None, what: str) -> _Token:
        token = self.take()
        if token.type != kind or (value is not None and token.value != value):
            self.fail(f"expected {what}, found {self.found(token)}", token)
        return token

    def parse(self) -> dict:
        node = self.group(nested=False)
        end = self.peek()
        if end.type != "eos":
            self.unexpected(end)
        return node if node["type"] == "group" else {"type": "group", "operator": "and",
                                                       "children": [node]}

    def unexpected(self, token: _Token) -> None:
        if token.type == "ident" and token.value in ("and", "or"):
            self.fail(f"{token.value!r} right before '(' or a quote: Segment reads it as a "
                      f"name, not as {token.value!r}; put a space after it", token)
        if token.type == "ident" and token.value.lower() in ("and", "or"):
            self.fail(f"{token.value!r}: write {token.value.lower()!r} in lowercase (Segment "
                      "silently ignores uppercase operators)", token)
        number = self.tokens[self.position - 1]
        if token.type == "ident" and token.value[:1] in ("e", "E") and number.type == "number":
            self.fail(f"a number with an exponent: Segment reads {number.value}{token.value} as "
                      f"{number.value}; write the number out in full", token)
        if token.type == "parenright":
            self.fail("')' without its '('", token)
        self.fail(f"expected 'and', 'or' or the end of the trigger, found {self.found(token)}"
                  " (Segment would silently AND it)", token)

    def connective(self) -> str | None:
        token = self.peek()
        if token.type == "conditional":
            return token.value
        if token.type == "ident" and token.value in ("AND", "OR", "And", "Or"):
            self.unexpected(token)
        return None

    def group(self, nested: bool) -> dict:
        children = [self.term(nested)]
        operator = None
        while (word := self.connective()) is not None:
            token = self.take()
            if operator is not None and word != operator:
                self.fail(f"{word!r} mixed with {operator!r} without parentheses: Segment reads "
                          "the whole group with the last operator; add parentheses, e.g. "
                          "a and (b or c)", token)
            operator = word
            children.append(self.term(nested))
        if len(children) == 1:
            return children[0]
        return {"type": "group", "operator": operator, "children": children}

    def term(self, nested: bool) -> dict:
        token = self.peek()
        if token.type == "parenleft":
            if nested:
                self.fail("nested parentheses: Segment supports one level only", token)
            self.take()
            inner = self.group(nested=True)
            self.expect("parenright", None, "')'")
            return inner
        if token.type == "operator" and token.value == "!":
            self.take()
            function = self.peek()
            if function.type != "ident" or function.value not in FUNCTIONS:
                self.fail("'!' goes only before contains(...) or match(...)", function)
            return self.function(negate=True)
        if token.type == "ident" and self.tokens[self.position + 1].type == "parenleft":
            return self.function(negate=False)
        return self.comparison()

    def field(self, token: _Token, functions: bool = False) -> None:
        name = token.value
        if token.type != "ident":
            self.fail(f"expected a field, found {self.found(token)}", token)
        parts = name.split(".")
        if name in TOP_LEVEL_FIELDS and (not functions or name != "type"):
            return
        if functions and name == "type":
            self.fail("contains() and match() on type: Segment drops the condition silently; "
                      'compare with type = "..." instead', token)
        if parts[0] in PATH_ROOTS and len(parts) > 1 and all(parts[1:]):
            for part in parts[1:]:
                if part in _REFUSED_SEGMENTS:
                    self.fail(f"{name!r}: {part!r} is a member of every JavaScript "
                              f"{'array and string' if part == 'length' else 'object'}, not "
                              "of the data, and Segment would read it as such; triggers cannot "
                              "test it", token)
            return
        known = TOP_LEVEL_FIELDS + tuple(f"{root}.…" for root in PATH_ROOTS)
        hint = difflib.get_close_matches(parts[0], TOP_LEVEL_FIELDS + PATH_ROOTS, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint and hint[0] != name else ""
        if parts[0] in PATH_ROOTS:
            suggestion = f" (name what is inside it: {parts[0]}.<name>)"
        self.fail(f"unknown field {name!r}{suggestion}; triggers can test {', '.join(known)}",
                  token)

    def string(self, token: _Token) -> None:
        if token.type != "string":
            return
        if token.value.startswith("'"):
            inner = token.value[1:-1]
            self.fail(f"single-quoted string {token.value}: Segment keeps the quotes as part "
                      f'of the value, so it never matches; write "{inner}"', token)
        if token.glued:
            self.fail("text right after a string: Segment loses what follows the closing "
                      "quote; put a space after it (FQL strings have no escape sequences, and "
                      "a carriage return is not a space to it)", token)

    def comparison(self) -> dict:
        field = self.take()
        if field.type == "eos":
            self.fail("the trigger ends where a condition should be", field)
        if field.type != "ident" or field.value in ("true", "false"):
            self.fail(f"expected a field, contains(...), match(...) or '(', found "
                      f"{self.found(field)}", field)
        self.field(field)
        operator = self.take()
        if operator.type != "operator" or operator.value not in _OPERATORS:
            self.fail(f"expected an operator (=, !=, <, <=, >, >=) after {field.value}, found "
                      f"{self.found(operator)}", operator)
        value = self.take()
        if value.type == "operator" and value.value == "=" and operator.value == "=":
            self.fail("'==': FQL compares with a single '='", operator)
        if value.type == "operator":
            self.fail(f"{operator.value}{value.value}: write the operator and the value apart "
                      f"(Segment reads it as {operator.value!r} then {value.value!r}), e.g. "
                      f"{field.value} {operator.value}{value.value} 3", value)
        if value.type not in ("string", "number", "null", "ident"):
            self.fail(f"expected a value (\"string\", number, true, false or null), found "
                      f"{self.found(value)}", value)
        self.string(value)
        if operator.value not in ("=", "!=") and value.type == "null":
            self.fail(f"{operator.value} null makes no sense: use = null or != null", value)
        node = _condition(field, operator, value)
        if node is None:
            self.fail(f"unknown field {field.value!r}", field)
        return node

    def function(self, negate: bool) -> dict:
        name = self.take()
        if name.value not in FUNCTIONS:
            hint = difflib.get_close_matches(name.value, FUNCTIONS, n=1)
            suggestion = f" (did you mean {hint[0]}?)" if hint else ""
            self.fail(f"unknown function {name.value!r}{suggestion}; triggers know "
                      'contains(field, "text") and match(field, "prefix*")', name)
        self.expect("parenleft", None, "'('")
        field = self.take()
        self.field(field, functions=True)
        self.expect("comma", None, "','")
        value = self.take()
        if value.type != "string":
            self.fail(f"expected a double-quoted string, found {self.found(value)}", value)
        self.string(value)
        if name.value == "match":
            pattern = value.value[1:-1]
            stars = pattern.count("*")
            if not pattern or stars != 1 or not (pattern.startswith("*") or
                                                 pattern.endswith("*")):
                if pattern != "*" or stars != 1:
                    self.fail(f'match(..., "{pattern}"): Segment understands only "prefix*" '
                              '(starts with) and "*suffix" (ends with); any other pattern is '
                              "read as ends-with of the pattern minus its first character",
                              value)
        self.expect("parenright", None, "')'")
        node = _function(name.value, field, value, negate)
        if node is None:  # pragma: no cover - field() refused such fields already
            self.fail(f"Segment drops {name.value}() on {field.value}", field)
        return node


def _canonical(node: dict) -> Any:
    """The meaning of an AST: groups with one child unwrapped, nested groups of the same
    operator flattened."""
    if node["type"] != "group":
        return tuple(sorted((key, repr(value)) for key, value in node.items()))
    children: list = []
    for child in node["children"]:
        canonical = _canonical(child)
        if isinstance(canonical, tuple) and canonical[:2] == ("group", node["operator"]):
            children.extend(canonical[2])
        else:
            children.append(canonical)
    if len(children) == 1:
        return children[0]
    return ("group", node["operator"], tuple(children))


# --- evaluation: destination-subscriptions' validate, ported ---------------------------------------

def _getter(name: str) -> Callable[[Any], Any]:
    """destination-subscriptions' get: split on '.', '[' and ']', then prev && prev[key]."""
    keys = [part for part in name.replace("[", ".").replace("]", ".").split(".") if part]
    if not keys:
        return lambda value: MISSING

    def get(value: Any) -> Any:
        for key in keys:
            if value is MISSING or not js_truthy(value):
                return value
            value = js_member(value, key, MISSING)
        return value

    return get


def _compile(node: dict) -> Predicate:
    kind = node["type"]
    if kind == "group":
        children = tuple(_compile(child) for child in node["children"])
        if node["operator"] not in ("and", "or"):
            return lambda record: False
        if len(children) == 1:
            return children[0]
        if len(children) == 2:
            first, second = children
            if node["operator"] == "and":
                return lambda record: first(record) and second(record)
            return lambda record: first(record) or second(record)
        if node["operator"] == "and":
            return lambda record: all(child(record) for child in children)
        return lambda record: any(child(record) for child in children)
    if kind in _PATH_TYPES:
        root, path = _PATH_TYPES[kind], _getter(node["name"])

        def actual(record: dict) -> Any:
            return path(record.get(root, MISSING))
    else:
        field = {"event-type": "type"}.get(kind, kind)

        def actual(record: dict) -> Any:
            return record.get(field, MISSING)

    test = _value_test(node["operator"], node.get("value"))
    return lambda record: test(actual(record))


def _value_test(operator: str, expected: Any) -> Callable[[Any], bool]:
    """destination-subscriptions' validateValue, operator by operator."""
    if operator in ("=", "!="):
        text = _as_string(expected) if not isinstance(expected, str) else expected
        if operator == "=":
            return lambda actual: actual.__class__ is str and actual == text
        return lambda actual: not (actual.__class__ is str and actual == text)
    if operator in ("number_equals", "number_not_equals", "<", "<=", ">", ">="):
        bound = js_number(expected)
        compare = {"number_equals": lambda a: a == bound,
                   "number_not_equals": lambda a: a != bound,
                   "<": lambda a: a < bound, "<=": lambda a: a <= bound,
                   ">": lambda a: a > bound, ">=": lambda a: a >= bound}[operator]
        return lambda actual: is_number(actual) and compare(as_double(actual))
    if operator in ("contains", "not_contains", "starts_with", "not_starts_with", "ends_with",
                    "not_ends_with"):
        text = _as_string(expected)
        check = {"contains": lambda a: text in a, "starts_with": lambda a: a.startswith(text),
                 "ends_with": lambda a: a.endswith(text)}[operator.replace("not_", "")]
        if operator.startswith("not_"):
            return lambda actual: actual.__class__ is str and not check(actual)
        return lambda actual: actual.__class__ is str and check(actual)
    if operator == "exists":
        return lambda actual: actual is not MISSING and actual is not None
    if operator == "not_exists":
        return lambda actual: actual is MISSING or actual is None
    if operator == "is_true":
        return lambda actual: actual is True
    if operator == "is_false":
        return lambda actual: actual is False
    return lambda actual: False


def _requires(node: dict) -> Requires:
    """Strings a record's top-level fields must equal for ``node`` to match (for indexing)."""
    kind = node["type"]
    if kind in ("event", "event-type") and node["operator"] == "=":
        return {"event" if kind == "event" else "type": frozenset((node["value"],))}
    if kind != "group":
        return {}
    parts = [_requires(child) for child in node["children"]]
    if node["operator"] == "and":
        merged: dict = {}
        for requires in parts:
            for name, values in requires.items():
                merged[name] = merged[name] & values if name in merged else values
        return merged
    if node["operator"] == "or":
        common = set.intersection(*(set(r) for r in parts)) if parts else set()
        return {name: frozenset().union(*(r[name] for r in parts)) for name in common}
    return {}


def compile_trigger(source: str) -> Trigger:
    """Compile an FQL trigger; raises TriggerError (with a 1-based column) when Segment would not
    evaluate it as written."""
    if not source.strip(" \t\n"):
        raise TriggerError("the trigger is empty: leave it out to match every record", 1)
    try:
        tokens = _normalize(_Lexer(source).lex())
    except _LexError as error:
        raise TriggerError(f"{error} (Segment cannot read this trigger, so it matches nothing)",
                           max(1, min(error.column, len(source) + 1))) from None
    intended = _StrictReader(source, tokens).parse()
    actual = segment_ast(source)
    if actual is None:
        raise TriggerError("Segment cannot parse this trigger (it would match nothing)", 1)
    if _canonical(actual) != _canonical(intended):
        raise TriggerError("Segment reads this trigger differently from how it is written "
                           "(it regroups or drops part of it); add parentheses or spaces",
                           1)
    return Trigger(_compile(actual), _requires(actual))
