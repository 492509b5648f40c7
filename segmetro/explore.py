"""``segmetro inspect``: the paths present in Segment events, as JSONPath, to write mappings by.

The command-line counterpart of Segment's event variables picker: per (type, event) group, each
path with how often it appears, its JSON types and a few example values.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from segmetro.mapping.fields import json_type
from segmetro.sources import SegmentRecord

MAX_EXAMPLES = 3
MAX_EXAMPLE_LENGTH = 60
_PLAIN_KEY = re.compile(r"[A-Za-z_$][\w$]*")


def _segment(key: str) -> str:
    return f".{key}" if _PLAIN_KEY.fullmatch(key) else "['" + key.replace("'", "\\'") + "']"


@dataclass
class PathStats:
    count: int = 0
    types: Counter = field(default_factory=Counter)
    examples: list = field(default_factory=list)


@dataclass
class Group:
    type: str
    event: str | None
    records: int = 0
    paths: dict[str, PathStats] = field(default_factory=dict)


def _visit(value: Any, path: str, group: Group, seen: set) -> None:
    if path not in seen:  # count each path once per record, even inside arrays
        seen.add(path)
        stats = group.paths.setdefault(path, PathStats())
        stats.count += 1
    else:
        stats = group.paths[path]
    stats.types[json_type(value).replace("an ", "").replace("a ", "")] += 1
    if value.__class__ is dict:
        for key, inner in value.items():
            _visit(inner, path + _segment(str(key)), group, seen)
    elif value.__class__ is list:
        for inner in value:
            _visit(inner, path + "[*]", group, seen)
    elif len(stats.examples) < MAX_EXAMPLES:
        shown = value if not isinstance(value, str) or len(value) <= MAX_EXAMPLE_LENGTH \
            else value[:MAX_EXAMPLE_LENGTH] + "…"
        if shown not in stats.examples:
            stats.examples.append(shown)


@dataclass
class Survey:
    groups: list[Group]
    unreadable: Counter = field(default_factory=Counter)  # parse code -> lines
    first_unreadable: dict = field(default_factory=dict)  # parse code -> "file:line: reason"


def survey(records: Iterable[SegmentRecord], type_filter: str | None = None,
           event_filter: str | None = None, limit: int | None = None) -> Survey:
    groups: dict[tuple, Group] = {}
    unreadable: Counter = Counter()
    first: dict = {}
    taken = 0
    for record in records:
        data = record.data
        if data is None:  # a line that could not be read: counted, never silently passed over
            unreadable[record.error_code] += 1
            first.setdefault(record.error_code, f"{record.place}: {record.error}")
            continue
        kind = data.get("type") if isinstance(data.get("type"), str) else "(no type)"
        event = data.get("event") if isinstance(data.get("event"), str) else None
        if type_filter is not None and kind != type_filter:
            continue
        if event_filter is not None and event != event_filter:
            continue
        group = groups.setdefault((kind, event), Group(kind, event))
        group.records += 1
        seen: set = set()
        for key, value in data.items():
            _visit(value, "$" + _segment(str(key)), group, seen)
        taken += 1
        if limit is not None and taken >= limit:
            break
    ordered = sorted(groups.values(), key=lambda g: (-g.records, g.type, g.event or ""))
    return Survey(ordered, unreadable, first)


def survey_json(found: Survey) -> dict:
    groups = found.groups
    return {"groups": [
        {
            "type": group.type,
            "event": group.event,
            "records": group.records,
            "paths": [
                {"path": path, "count": stats.count, "types": dict(stats.types),
                 "examples": stats.examples}
                for path, stats in group.paths.items()
            ],
        }
        for group in groups
    ], "unreadable": dict(found.unreadable), "first_unreadable": found.first_unreadable}
