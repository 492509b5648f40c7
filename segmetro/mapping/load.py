"""Reading and checking a mapping file: every problem found in one pass, each at FILE:LINE:COL."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
import yaml

from segmetro.events import REQUIRED_FIELDS
from segmetro.mapping import directives, segment_import
from segmetro.mapping import fields as fv
from segmetro.mapping.fql import TriggerError, compile_trigger
from segmetro.mapping.model import Mapping, MappingSet
from segmetro.mapping.paths import PathError

try:  # libyaml's composer is faster; the pure-Python one gives the same nodes and marks
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader

DEFAULT_MAPPING = "<default>"
TOP_KEYS = ("mappings",)
MAPPING_KEYS = ("name", "trigger", "fields", "enabled", "description")
FIELD_KEYS = REQUIRED_FIELDS + ("properties",)
DIRECTIVES = ("literal", "template", "path", "default")
# Top-level fields of a Segment event: a bare word naming one is a path the author meant.
SEGMENT_FIELDS = ("messageId", "anonymousId", "userId", "event", "type", "timestamp",
                  "receivedAt", "sentAt", "originalTimestamp", "name", "groupId", "previousId",
                  "properties", "traits", "context")


@dataclass(frozen=True)
class Problem:
    line: int
    column: int
    message: str


class MappingError(Exception):
    """A mapping file that cannot be used; ``problems`` holds every problem found."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = sorted(problems, key=lambda p: (p.line, p.column))
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(f"{self.source}:{p.line}:{p.column}: {p.message}" for p in self.problems)


class _Yaml12Loader(_Loader):
    """YAML 1.2's core schema, narrowed to what a person reading the file sees: ``on``, ``yes``,
    ``no``, ``010``, ``1_000``, ``0x1F``, ``.inf`` and unquoted dates are strings; only
    ``true``/``false``, ``null``/``~``/empty and plain decimal numbers are not."""

    yaml_implicit_resolvers: dict = {}


for _tag, _pattern, _first in (
        ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
        ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
        ("tag:yaml.org,2002:int", r"^[-+]?(?:0|[1-9][0-9]*)$", list("-+0123456789")),
        ("tag:yaml.org,2002:float",
         r"^[-+]?(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+)$",
         list("-+0123456789"))):
    _Yaml12Loader.add_implicit_resolver(_tag, re.compile(_pattern), _first)


class _JSONConstructor(yaml.constructor.SafeConstructor):
    """Values a mapping can hold are JSON's: an explicit ``!!timestamp``, ``!!binary`` or
    ``!!set`` is an error at its line and column, never a Python object in a message."""

    def refuse(self, node: yaml.Node) -> None:
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.tag} is not a JSON value: quote it to have the text",
            node.start_mark)


for _tag in ("timestamp", "binary", "set", "omap", "pairs"):
    _JSONConstructor.add_constructor(f"tag:yaml.org,2002:{_tag}", _JSONConstructor.refuse)
_constructor = _JSONConstructor()


def _value(node: yaml.Node) -> Any:
    return _constructor.construct_object(node, deep=True)


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    """The value node under ``key`` of a YAML mapping node, or None."""
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if getattr(k, "value", None) == key), None)


def _suggest(word: str, choices: tuple[str, ...]) -> str:
    hint = difflib.get_close_matches(str(word), choices, n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


class _Checker:
    def __init__(self, source: str):
        self.source = source
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def problem(self, node: yaml.Node, message: str, column_offset: int = 0) -> None:
        mark = node.start_mark
        self.problems.append(Problem(mark.line + 1, mark.column + 1 + column_offset, message))

    def items(self, node: yaml.MappingNode, allowed: tuple[str, ...], where: str) -> dict:
        """The mapping's entries by key, reporting unknown and repeated keys."""
        entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key not in allowed:
                self.problem(key_node, f"unknown key {key!r} in {where}{_suggest(key, allowed)}; "
                             f"allowed: {', '.join(allowed)}")
            elif key in entries:
                self.problem(key_node, f"{key!r} is given twice in {where}")
            else:
                entries[key] = (key_node, value_node)
        return entries

    def check_file(self, root: yaml.Node | None) -> list[Mapping]:
        if root is None:
            self.problems.append(Problem(1, 1, "the mapping file is empty; it needs 'mappings:'"))
            return []
        if not isinstance(root, yaml.MappingNode):
            self.problem(root, "the mapping file must be a YAML mapping with a 'mappings:' list")
            return []
        entries = self.items(root, TOP_KEYS, "the file")
        if "mappings" not in entries:
            self.problem(root, "'mappings:' is missing: list one or more mappings under it")
            return []
        key_node, list_node = entries["mappings"]
        if not isinstance(list_node, yaml.SequenceNode) or not list_node.value:
            self.problem(list_node if isinstance(list_node, yaml.SequenceNode) else key_node,
                         "'mappings' must be a list of mappings (each starting with '- name:')")
            return []
        mappings, names = [], {}
        for item in list_node.value:
            mapping = self.check_mapping(item)
            name_node = _child(item, "name")
            name = name_node.value if isinstance(name_node, yaml.ScalarNode) else None
            if name in names:
                self.problem(name_node, f"mapping name {name!r} is already used on line "
                             f"{names[name]}; names must be unique")
            elif name is not None:
                names[name] = name_node.start_mark.line + 1
            if mapping is not None and mapping.enabled:
                mappings.append(mapping)
        self._warn_shared_transaction_ids(list_node)
        return mappings

    def check_mapping(self, node: yaml.Node) -> Mapping | None:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, "each mapping must be a YAML mapping with name, trigger and fields")
            return None
        entries = self.items(node, MAPPING_KEYS, "a mapping")
        name = None
        if "name" not in entries:
            self.problem(node, "the mapping has no 'name'")
        else:
            name_node = entries["name"][1]
            name = _value(name_node) if isinstance(name_node, yaml.ScalarNode) else None
            if not isinstance(name, str) or not name.strip():
                self.problem(name_node, "'name' must be a non-empty string")
                name = None
        trigger = trigger_text = None
        enabled = True
        if "trigger" in entries:
            trigger_node = entries["trigger"][1]
            trigger_text = _value(trigger_node) if isinstance(trigger_node, yaml.ScalarNode) \
                else None
            if not isinstance(trigger_text, str):
                self.problem(trigger_node, "'trigger' must be a string such as: type = \"track\"")
            else:
                trigger = self.check_trigger(trigger_node, trigger_text)
                if trigger is None:
                    trigger_text = None
        if "enabled" in entries:
            enabled = _value(entries["enabled"][1])
            if not isinstance(enabled, bool):
                self.problem(entries["enabled"][1], "'enabled' must be true or false")
                enabled = True
        if "fields" not in entries:
            self.problem(node, "the mapping has no 'fields'")
            return None
        self.directives_used = False
        compiled = self.check_fields(*entries["fields"])
        if compiled is None or name is None:
            return None
        field_values, properties = compiled
        txid_node = _child(entries["fields"][1], "transaction_id")
        return Mapping(name, field_values, properties, trigger, trigger_text,
                       node.start_mark.line + 1, enabled, _spelling(_value(txid_node)),
                       properties_required=self.directives_used)

    def check_trigger(self, node: yaml.ScalarNode, text: str):
        try:
            return compile_trigger(text)
        except TriggerError as error:
            # Plain and quoted scalars on one line: the column inside the trigger maps directly.
            offset = error.column - 1
            if node.style in ('"', "'"):
                offset += 1
            if node.start_mark.line != node.end_mark.line:
                offset = 0
            self.problem(node, f"trigger: {error}", offset)
            return None

    def check_fields(self, key_node: yaml.Node, node: yaml.Node):
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, "'fields' must be a mapping of Metronome field names to values")
            return None
        entries = self.items(node, FIELD_KEYS, "fields")
        compiled: dict[str, fv.FieldValue] = {}
        ok = True
        for required in REQUIRED_FIELDS:
            if required not in entries:
                self.problem(key_node, f"'fields' has no {required!r}: Metronome requires it")
                ok = False
                continue
            value = self.field_value(entries[required][1], required,
                                     strict=required == "transaction_id")
            if value is not None and required == "transaction_id":
                value = self.check_transaction_id(entries[required][1], value)
            ok = ok and value is not None
            if value is not None:
                compiled[required] = value
        properties = None
        if "properties" in entries:
            spec = self.properties(entries["properties"][1])
            ok = ok and spec is not None
            properties = spec.compile() if spec is not None else None
        elif self.directives_used:
            self.problem(key_node, "'fields' has no 'properties': Segment's Send Event requires "
                         "it, and this mapping is written in Segment's form (with @-directives); "
                         "add properties: {\"@path\": \"$.properties\"}")
            ok = False
        return (compiled, properties) if ok else None

    def check_transaction_id(self, node: yaml.Node,
                             value: fv.FieldValue) -> fv.FieldValue | None:
        """A transaction_id must vary between records: Metronome keeps one event per id."""
        fix = "; write a path such as $.messageId, or a template such as " \
              "{template: \"{{messageId}}-tokens\"}"
        if value.constant:
            literal = _value(node)
            if isinstance(literal, str) and literal in SEGMENT_FIELDS:
                self.problem(node, f"transaction_id: {literal!r} is the literal text "
                             f"{literal!r}, the same for every event (Metronome would keep "
                             f"only the first); did you mean $.{literal}?")
            else:
                self.problem(node, "transaction_id is the same for every record (Metronome "
                             "would keep only the first event)" + fix)
            return None
        for item in _walk_values(node):
            if isinstance(item, yaml.ScalarNode) and not str(_value(item)).startswith("$"):
                self.problem(item, "transaction_id: a literal among the choices gives every "
                             "record that reaches it the same id" + fix)
                return None
            if isinstance(item, yaml.MappingNode) and _child(item, "default") is not None:
                self.problem(item, "transaction_id: a default gives every record without the "
                             "path the same id; leave the default out (such records are "
                             "rejected, stage map)")
                return None
            template_node = _child(item, "template")
            if isinstance(template_node, yaml.ScalarNode) and \
                    not fv.template_variables(str(_value(template_node))):
                self.problem(template_node, "transaction_id: the template has no {{variable}}, "
                             "so every record gets the same id" + fix)
                return None
        return value

    def directive(self, node: yaml.MappingNode, where: str,
                  strict: bool) -> fv.FieldValue | None:
        """A field written with Segment's mapping-kit directives, evaluated as mapping-kit does."""
        mapping = _value(node)
        try:
            value = directives.field_value(mapping, strict)
        except directives.DirectiveError as error:
            self.problem(node, f"{where}: {error}")
            return None
        self.directives_used = True
        return value

    def field_value(self, node: yaml.Node, where: str,
                    strict: bool = False) -> fv.FieldValue | None:
        if isinstance(node, yaml.MappingNode) and any(
                str(getattr(key, "value", "")).startswith("@") for key, _ in node.value):
            return self.directive(node, where, strict)
        if isinstance(node, yaml.ScalarNode):
            value = _value(node)
            if isinstance(value, str) and value.startswith("$"):
                try:
                    return fv.path(value)
                except PathError as error:
                    self.problem(node, f"{where}: {error}; write a JSONPath such as $.properties.x,"
                                 " or {literal: ...} for text starting with $")
                    return None
            return fv.literal(value)
        if isinstance(node, yaml.SequenceNode):
            if not node.value:
                self.problem(node, f"{where}: an empty list has nothing to coalesce")
                return None
            options = [self.field_value(item, where, strict) for item in node.value]
            return None if any(o is None for o in options) else fv.coalesce(options)
        entries = {k.value: (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
        keys = set(entries)
        if keys == {"literal"}:
            return fv.literal(_value(entries["literal"][1]))
        if keys == {"template"}:
            text = _value(entries["template"][1])
            if not isinstance(text, str):
                self.problem(entries["template"][1], f"{where}: a template must be a string")
                return None
            problem = fv.template_problem(text)
            if problem is not None:
                self.problem(entries["template"][1], f"{where}: {problem}")
                return None
            return fv.template(text, strict)
        if "path" in keys and keys <= {"path", "default"}:
            inner = self.field_value(entries["path"][1], where, strict)
            if inner is None:
                return None
            if "default" in keys:
                return fv.with_default(inner, _value(entries["default"][1]))
            return inner
        unknown = sorted(map(str, keys - set(DIRECTIVES))) or sorted(map(str, keys)) or [""]
        self.problem(node, f"{where}: {{{', '.join(unknown)}}} is not a field value"
                     f"{_suggest(unknown[0], DIRECTIVES)}; write a $.path, a literal, a list to "
                     "coalesce, {literal: ...}, {template: ...} or {path: ..., default: ...}")
        return None

    def properties(self, node: yaml.Node) -> fv.PropertiesSpec | None:
        if not isinstance(node, yaml.MappingNode) or any(
                str(getattr(key, "value", "")).startswith("@") for key, _ in node.value):
            value = self.field_value(node, "properties")
            return None if value is None else fv.PropertiesSpec(source=value)
        keys = {k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
        if keys & set(DIRECTIVES) and keys <= set(DIRECTIVES):
            value = self.field_value(node, "properties")
            return None if value is None else fv.PropertiesSpec(source=value)
        if keys & {"from", "set"}:
            return self.property_options(node)
        options = sorted(keys & set(fv.PROPERTY_OPTIONS))
        if options:
            key_node = next(k for k, _ in node.value if getattr(k, "value", None) == options[0])
            self.problem(key_node, f"properties: {options[0]!r} is an option of the "
                         "{from: ..., set: ...} form and needs 'from' or 'set' beside it; to "
                         f"build a property named {options[0]!r}, write set: "
                         f"{{{options[0]}: ...}}")
            return None
        entries = self.builder(node, "properties")
        return None if entries is None else fv.PropertiesSpec(entries=entries)

    def builder(self, node: yaml.MappingNode, where: str):
        entries, ok = [], True
        for key_node, value_node in node.value:
            key = _value(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, (str, int)):
                self.problem(key_node, f"{where}: property names must be strings")
                ok = False
                continue
            value = self.field_value(value_node, f"{where}.{key}")
            ok = ok and value is not None
            entries.append((str(key), value))
        return tuple(entries) if ok else None

    def property_options(self, node: yaml.MappingNode) -> fv.PropertiesSpec | None:
        entries = self.items(node, fv.PROPERTY_OPTIONS, "properties")
        spec, ok = fv.PropertiesSpec(), True
        if "from" in entries:
            spec.source = self.field_value(entries["from"][1], "properties.from")
            ok = spec.source is not None
        if "set" in entries:
            set_node = entries["set"][1]
            if not isinstance(set_node, yaml.MappingNode):
                self.problem(set_node, "properties.set must be a mapping of names to values")
                ok = False
            else:
                built = self.builder(set_node, "properties.set")
                ok = ok and built is not None
                spec.entries = built or ()
        for option in ("pick", "omit"):
            if option in entries:
                names = _value(entries[option][1])
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    example = f"[{names}]" if isinstance(names, str) else "[tokens, model]"
                    self.problem(entries[option][1], f"properties.{option} must be a list of "
                                 f"property names, e.g. {option}: {example}")
                    ok = False
                else:
                    setattr(spec, option, frozenset(names))
        if "flatten" in entries:
            flatten = _value(entries["flatten"][1])
            if flatten is True:
                spec.flatten = "."
            elif isinstance(flatten, str) and flatten:
                spec.flatten = flatten
            elif flatten is not False:
                self.problem(entries["flatten"][1], "properties.flatten must be true, false or "
                             "a separator string such as \"_\"")
                ok = False
        if "stringify" in entries:
            stringify = _value(entries["stringify"][1])
            if not isinstance(stringify, bool):
                self.problem(entries["stringify"][1], "properties.stringify must be true or false")
                ok = False
            else:
                spec.stringify = stringify
        return spec if ok else None

    def _warn_shared_transaction_ids(self, list_node: yaml.SequenceNode) -> None:
        """Mappings whose transaction_id is written the same way collide when both match."""
        seen: dict[str, int] = {}
        for item in list_node.value:
            txid_node = _child(_child(item, "fields"), "transaction_id")
            if txid_node is None:
                continue
            spelling = repr(_value(txid_node))
            line = txid_node.start_mark.line + 1
            if spelling in seen:
                self.warnings.append(
                    f"{self.source}:{line}:{txid_node.start_mark.column + 1}: this transaction_id "
                    f"is written as on line {seen[spelling]}: a record both mappings match gets "
                    "one transaction_id twice, and Metronome keeps only the first. Make them "
                    "distinct, e.g. {template: \"{{messageId}}-<suffix>\"}")
            else:
                seen[spelling] = line


def _spelling(value: Any) -> str:
    """How a transaction_id is made, written one way for the forms that make the same ids:
    ``$.messageId`` and ``{"@path": "messageId"}``; ``{template: t}`` and ``{"@template": t}``."""
    if isinstance(value, dict):
        value = {key: item for key, item in value.items() if key != "_metadata"}
        if set(value) == {"@path"} and isinstance(value["@path"], str):
            path = value["@path"]
            value = path if path.startswith("$") else "$." + path
        elif set(value) in ({"@template"}, {"template"}):
            value = {"template": next(iter(value.values()))}
    return orjson.dumps(value).decode()


def _walk_values(node: yaml.Node):
    """A field value node and, for a coalesce list or {path, default}, the nodes inside it."""
    yield node
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _walk_values(item)


def parse_mapping(text: str, source: str) -> MappingSet:
    """Check and compile mapping YAML; raise MappingError listing every problem."""
    checker = _Checker(source)
    try:
        root = yaml.compose(text, Loader=_Yaml12Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise MappingError(source, [Problem(mark.line + 1, mark.column + 1,
                                            f"YAML syntax: {error.problem or error.context}")])
    except yaml.YAMLError as error:
        raise MappingError(source, [Problem(1, 1, f"YAML: {error}")])
    try:
        mappings = checker.check_file(root)
    except yaml.constructor.ConstructorError as error:
        mark = error.problem_mark
        raise MappingError(source, [Problem(mark.line + 1, mark.column + 1, error.problem)])
    if checker.problems:
        raise MappingError(source, checker.problems)
    if not mappings:
        raise MappingError(source, [Problem(1, 1, "every mapping is disabled: nothing to send")])
    return MappingSet(mappings, source, checker.warnings, text)


def default_mapping_text() -> str:
    return resources.files("segmetro").joinpath("default.yaml").read_text(encoding="utf-8")


def load_mapping(path: str | None) -> MappingSet:
    """The mapping file at ``path``, or the bundled default (Segment's preset) when None."""
    if path is None:
        return parse_mapping(default_mapping_text(), DEFAULT_MAPPING)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise MappingError(path, [Problem(1, 1, f"cannot read the mapping file: "
                                                f"{error.strerror or error}")]) from None
    except UnicodeDecodeError:
        raise MappingError(path, [Problem(1, 1, "the mapping file is not UTF-8 text")]) from None
    if text.lstrip()[:1] in ("{", "["):  # JSON: perhaps Segment's own subscriptions
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError:
            document = None
        if segment_import.looks_like_subscriptions(document):
            try:
                text = segment_import.to_yaml(document, path)
            except segment_import.ImportError_ as error:
                raise MappingError(path, [Problem(1, 1, str(error))]) from None
            return parse_mapping(text, f"{path} (as Segment subscriptions)")
    return parse_mapping(text, path)
