"""The corpora segmetro is judged on: triggers × records, directives × records, and Segment
subscriptions × records -> request bodies. Prints corpus.json for oracle.js (see README).

Deterministic: the same file every time, so golden files only change when this file does.
"""

from __future__ import annotations

import itertools
import json

ACTION_DESTINATIONS = "3.497.0"

FIELDS = ["type", "event", "name", "userId", "properties.n", "properties.s", "properties.flag",
          "properties.price", "properties.a.b", "properties.tags", "traits.plan",
          "context.groupId", "context.page.url", "properties.missing"]
BAD_FIELDS = ["messageId", "anonymousId", "bogus", "properties", "Properties.n", "event.x",
              "timestamp"]
OPERATORS = ["=", "!=", "<", "<=", ">", ">="]
VALUES = ['"track"', '"3"', "3", "3.5", "-1", "0", "true", "false", "null", '""',
          '"Order Completed"', "track", '"héllo"', '"a\\b"', '"100"', '"true"', '"null"']
FUNCTION_FIELDS = ["event", "name", "userId", "type", "properties.s", "traits.plan",
                   "context.groupId", "properties.n", "properties.missing"]
PATTERNS = ['"Order"', '"Ord*"', '"*ted"', '"Ord*ted"', '"*"', '""', '"é"', '"a\\b"']

PRESETS_AND_BUILDER = [
    'type = "track"',
    'type = "track" and event = "Order Completed"',
    'type = "identify"',
    'type = "page"',
    'type = "group"',
    'event = "Order Completed" or event = "Signed Up"',
    'type = "track" and (event = "Order Completed" or event = "Signed Up")',
    '(type = "track" and event = "Order Completed") or type = "page"',
    '(type = "track" and event = "Order Completed") or (type = "identify")',
    'type = "track" and properties.price > 100',
    'type = "track" and properties.price >= 100',
    'type = "track" and properties.plan = "pro"',
    'type = "track" and context.groupId != null',
    'type = "track" and userId = null',
    'type = "track" and contains(event, "Order")',
    'type = "track" and match(event, "Order*")',
    'type = "track" and !contains(name, "x")',
    'type = "track" and traits.plan = "pro"',
    'type != "identify"',
    'event != "Order Completed"',
    'properties.n = 3 and properties.s = "3"',
    'properties.flag = true',
    'properties.flag = false',
    'properties.flag != true',
    'properties.flag != false',
    'name = true',
    'userId = true',
    'properties.price >= "100"',
    'properties.tags.length > 1',
    'properties.constructor != null',
    'properties.a != null',
    'properties.a.b = 1',
    'properties.items.0.sku = "A"',
    'properties.items[0].sku = "A"',
]

ODD = [
    'type = "track" AND event = "Order Completed"',
    'type = "track" OR event = "Signed Up"',
    'type = "track" and event = "A" or event = "Order Completed"',
    'type = "track" or event = "A" and event = "Order Completed"',
    "type = 'track'",
    'type == "track"',
    '((type = "track"))',
    '(type = "track" and (event = "A"))',
    'type ="track"and event="Order Completed"',
    'type = "track"or event = "x"',
    'properties.n >=3',
    'properties.n = 1e3',
    'properties.price > 1e2',
    'type = "track" or(event = "x")',
    'type = "track"\tand\tevent = "Order Completed"',
    'type = "track"\nand event = "Order Completed"',
    'type = "track"\r\nand event = "Order Completed"',
    'type = "track" and',
    'and type = "track"',
    '',
    ' ',
    'type',
    'type =',
    '= "track"',
    '"track" = type',
    'type = "track" event = "x"',
    '(type = "track"',
    'type = "track")',
    'contains(event)',
    'contains(event, "a", "b")',
    'contains("a", event)',
    'contains(event, 3)',
    'match(event, Order)',
    'starts_with(event, "O")',
    '!type = "track"',
    '!(type = "track")',
    '! contains(event, "Order")',
    'not contains(event, "Order")',
    'type = "track" and !match(event, "*ted")',
    'properties.a\\ b = 1',
    'properties.a-b = 1',
    'properties.a_b = 1',
    'properties.é = 1',
    'event = "Order \\"x\\""',
    'event = "it\'s"',
    "event = 'say \"hi\"'",
    'event = "ta\tb"',
    'properties.n = -3',
    'properties.n = +3',
    'properties.n = 3.',
    'properties.n = .5',
    'properties.n = 03',
    'properties.n = 1.2.3',
    'properties.n < -0.5',
    'properties.n = 9007199254740993',
    'event = null or event != null',
    'userId != null and userId != ""',
    'type = "track" and type = "track" and type = "track" and type = "track"',
    '(type = "track" or type = "page") and (event = "Order Completed" or event = "x")',
    '(contains(event, "Order") and type = "track")',
    '(type = "track" and contains(event, "Order"))',
    '(contains(event, "Order")) and type = "page"',
    'contains(type, "tra")',
    'match(type, "tra*")',
    'contains(properties.tags, "x")',
    'contains(properties, "x")',
    'event = Order',
    'event = true and type = track',
    'properties.s = three',
]


def triggers() -> list[str]:
    out: list[str] = []
    for field, operator, value in itertools.product(FIELDS, OPERATORS, VALUES):
        out.append(f"{field} {operator} {value}")
    for field in BAD_FIELDS:
        out.append(f'{field} = "x"')
    for name, field, pattern in itertools.product(["contains", "match", "!contains", "!match"],
                                                  FUNCTION_FIELDS, PATTERNS):
        out.append(f"{name}({field}, {pattern})")
    out += PRESETS_AND_BUILDER + ODD
    seen: set[str] = set()
    return [t for t in out if not (t in seen or seen.add(t))]


def records() -> list[dict]:
    base = {"type": "track", "event": "Order Completed", "name": "Home", "userId": "u1",
            "messageId": "m1", "timestamp": "2026-11-20T10:00:00.000Z",
            "properties": {"n": 3, "s": "3", "flag": True, "price": 150, "a": {"b": 1},
                           "tags": ["x", "y"], "items": [{"sku": "A"}], "plan": "pro",
                           "a b": 1, "a-b": 1, "a_b": 1, "é": 1},
            "traits": {"plan": "pro"},
            "context": {"groupId": "acct_1", "page": {"url": "https://x/é"}}}

    def variant(**changes) -> dict:
        record = json.loads(json.dumps(base))
        for key, value in changes.items():
            target = record
            parts = key.split("__")
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            if value is Ellipsis:
                target.pop(parts[-1], None)
            else:
                target[parts[-1]] = value
        return record

    return [
        base,
        variant(type="identify", event=Ellipsis),
        variant(type="page", event=Ellipsis, name="Pricing"),
        variant(type=Ellipsis),
        variant(type=None),
        variant(type="Track"),
        variant(event="Signed Up"),
        variant(event=Ellipsis),
        variant(event=None),
        variant(event="3"),
        variant(event=3),
        variant(event="true"),
        variant(event=True),
        variant(event="null"),
        variant(event=""),
        variant(event="héllo"),
        variant(event="a\\b"),
        variant(event='Order "x"'),
        variant(event="Ordered"),
        variant(event="Ord*ted"),
        variant(name=True, userId="true"),
        variant(name="true", userId=True),
        variant(userId=None),
        variant(userId=Ellipsis),
        variant(userId=""),
        variant(userId=123),
        variant(properties__n=Ellipsis, properties__s=Ellipsis),
        variant(properties__n=None),
        variant(properties__n="3"),
        variant(properties__n=3.0),
        variant(properties__n=2),
        variant(properties__n=4),
        variant(properties__n=3.5, properties__price="100"),
        variant(properties__n=True, properties__price="abc"),
        variant(properties__n=-1, properties__price=100),
        variant(properties__n=0, properties__price=99.5),
        variant(properties__n=1000, properties__price=None),
        variant(properties__n=9007199254740993),
        variant(properties__flag="true"),
        variant(properties__flag=False),
        variant(properties__flag=Ellipsis),
        variant(properties__flag="false"),
        variant(properties__a=None),
        variant(properties__a=0),
        variant(properties__a={"b": "1"}),
        variant(properties__tags=["x"]),
        variant(properties__tags="xy"),
        variant(properties=None),
        variant(properties=["x"]),
        variant(properties=Ellipsis),
        variant(traits=Ellipsis),
        variant(traits__plan=None),
        variant(context__groupId=None),
        variant(context__groupId=Ellipsis),
        variant(context=Ellipsis),
        variant(properties__s="Order"),
        variant(properties__s=""),
    ]


DIRECTIVES = [
    {"@path": "$.properties.n"},
    {"@path": "properties.n"},
    {"@path": "$.properties.items.0.sku"},
    {"@path": "$.properties.items[0].sku"},
    {"@path": "$.properties.items[1].sku"},
    {"@path": "$.properties.a.b"},
    {"@path": "$.properties.a b"},
    {"@path": "$.properties.missing.deeper"},
    {"@path": "$.userId"},
    {"@path": "$.event"},
    {"@path": "$.properties"},
    {"@path": "$.context.groupId"},
    {"@path": "$.properties.tags"},
    {"@path": "$.properties.tags.length"},
    {"@template": "{{messageId}}-tokens"},
    {"@template": "{{properties.n}}"},
    {"@template": "{{{properties.n}}}"},
    {"@template": "{{ properties.n }}"},
    {"@template": "{{properties.tags}}"},
    {"@template": "{{properties.items.0.sku}}"},
    {"@template": "{{properties.a}}"},
    {"@template": "{{properties.flag}}"},
    {"@template": "{{properties.price}}/{{properties.missing}}/{{userId}}"},
    {"@template": "{{$.event}}"},
    {"@template": "no variables"},
    {"@template": "{{event}"},
    {"@literal": "x"},
    {"@literal": 3},
    {"@literal": None},
    {"@literal": {"a": {"@path": "$.event"}}},
    {"@if": {"exists": {"@path": "$.context.groupId"}, "then": {"@path": "$.context.groupId"},
             "else": {"@path": "$.userId"}}},
    {"@if": {"exists": {"@path": "$.properties.n"}, "then": "yes", "else": "no"}},
    {"@if": {"blank": {"@path": "$.properties.s"}, "then": "blank", "else": "filled"}},
    {"@if": {"exists": {"@path": "$.properties.missing"}, "then": "yes", "else": 0}},
    {"@if": {"exists": {"@path": "$.properties.n"}, "then": {"@path": "$.properties.missing"},
             "else": "fallback"}},
    {"@case": {"operator": "lower", "value": {"@path": "$.event"}}},
    {"@case": {"operator": "upper", "value": {"@path": "$.event"}}},
    {"@replace": {"pattern": " ", "replacement": "_", "value": {"@path": "$.event"}}},
    {"@replace": {"pattern": "e", "replacement": "E", "global": True,
                  "value": {"@path": "$.event"}}},
    {"@replace": {"pattern": "e", "replacement": "E", "global": False,
                  "value": {"@path": "$.event"}}},
    {"@json": {"mode": "encode", "value": {"@path": "$.properties.a"}}},
    {"@json": {"mode": "decode", "value": {"@path": "$.properties.s"}}},
    {"@flatten": {"value": {"@path": "$.properties"}, "separator": "."}},
    {"@flatten": {"value": {"@path": "$.properties"}, "separator": "_", "omitArrays": True}},
    {"@merge": {"objects": [{"@path": "$.properties"}, {"@path": "$.traits"}],
                "direction": "right"}},
    {"@merge": {"objects": [{"@path": "$.properties"}, {"plan": "free"}], "direction": "left"}},
    {"@excludeWhenNull": {"@path": "$.properties.n"}},
    {"@arrayPath": ["$.properties.items", {"sku": {"@path": "$.sku"}}]},
    {"n": {"@path": "$.properties.n"}, "gone": {"@path": "$.properties.missing"},
     "kept": None, "user": {"@path": "$.userId"}},
    {"@path": "$.properties.n", "_metadata": {"label": "ui"}},
    {"@transform": {"apply": {"plan": {"@path": "$.traits.plan"}, "n": {"@path": "$.properties.n"}},
                    "mapping": {"both": {"@template": "{{plan}}-{{n}}"}}}},
    {"@excludeWhenNull": {"a": {"@path": "$.properties.a"}, "n": {"@path": "$.properties.n"}}},
    {"@json": {"mode": "encode", "value": {"@path": "$.properties"}}},
    {"@if": {"blank": {"@path": "$.properties.n"}, "then": "set", "else": "blank"}},
    {"@replace": {"pattern": "o", "replacement": "$&$&", "ignorecase": True,
                  "value": {"@path": "$.event"}}},
    {"@arrayPath": ["$.properties.tags", {"tag": {"@path": "$"}}]},
    {"@template": "{{properties.n}}/{{{properties.s}}}/{{properties.missing.deep}}"},
]

PRESET = {"transaction_id": {"@path": "$.messageId"},
          "customer_id": {"@path": "$.context.groupId"},
          "timestamp": {"@path": "$.timestamp"},
          "event_type": {"@path": "$.event"},
          "properties": {"@path": "$.properties"}}

SUBSCRIPTIONS = [
    {"name": "Send track events to Metronome", "trigger": 'type = "track"', "settings": PRESET},
    {"name": "Tokens by user", "trigger": 'type = "track" and event = "Tokens Used"',
     "settings": {**PRESET, "customer_id": {"@path": "$.userId"}, "event_type": "tokens",
                  "properties": {"tokens": {"@path": "$.properties.tokens"},
                                 "model": {"@path": "$.properties.model"}}}},
    {"name": "Reports", "trigger": 'type = "track"',
     "settings": {**PRESET, "transaction_id": {"@template": "{{messageId}}-report"},
                  "properties": {"@path": "$.properties"}}},
]


def body_records() -> list[dict]:
    """Records sent through the destination; ``segment_right`` is False where its timestamp
    handling is known wrong (README: where segmetro and Segment differ)."""
    base = {"type": "track", "event": "Tokens Used", "messageId": "m-1", "userId": "u1",
            "context": {"groupId": "acct_1"}, "timestamp": "2026-11-20T10:00:00.123Z",
            "properties": {"tokens": 3, "model": "m"}}
    out = []

    def add(right: bool = True, **changes) -> None:
        record = {**json.loads(json.dumps(base)), **changes}
        record["segmetro_expect_segment_right"] = right
        out.append(record)

    add()
    add(properties={"tokens": 3.0, "big": 1e16, "neg": -0.0, "small": 1e-7, "huge": 1e21,
                    "f": 0.1, "nested": {"x": [1.0, 2.5]}, "s": "é\u2028", "t": True, "z": None})
    add(timestamp="2026-11-20T10:00:00Z")
    add(timestamp="2026-11-20T11:00:00+01:00")
    add(timestamp="2026-11-20T10:00:00.123456789Z")
    add(timestamp=1795154400123)
    add(right=False, timestamp=1795154400)
    add(right=False, timestamp="1795154400123")
    add(right=False, timestamp="2026-11-20T10:00:00.55")
    add(messageId="m-2", properties={})
    add(messageId="m-3", properties=None)
    add(messageId=42)
    add(context={})
    add(event="Other", messageId="m-4")
    add(properties={"tokens": "7", "model": None})
    return out


def main() -> None:
    corpus = {"action_destinations_version": ACTION_DESTINATIONS, "triggers": triggers(),
              "records": records(), "directives": DIRECTIVES, "subscriptions": SUBSCRIPTIONS,
              "body_records": body_records()}
    print(json.dumps(corpus, ensure_ascii=False))


if __name__ == "__main__":
    main()
