import textwrap

import orjson
import pytest
from conftest import ROOT, SEGMENT_METRONOME_TESTS, track

from segmetro.mapping import MappingError, load_mapping, parse_mapping
from segmetro.mapping.load import default_mapping_text


def mapping(fields: str, trigger: str | None = 'type = "track"', extra: str = ""):
    trigger_line = f"    trigger: {trigger}\n" if trigger else ""
    text = "mappings:\n  - name: M\n" + trigger_line + "    fields:\n" + \
        textwrap.indent(textwrap.dedent(fields), "      ") + extra
    return parse_mapping(text, "m.yaml")


DEFAULT_FIELDS = """\
transaction_id: $.messageId
customer_id: $.context.groupId
timestamp: $.timestamp
event_type: $.event
"""


def one(mappings, record):
    results = mappings.apply(record)
    assert len(results) == 1
    return results[0]


def test_bundled_default_is_mappings_default_yaml():
    assert default_mapping_text() == (ROOT / "mappings" / "default.yaml").read_text()


def test_segments_own_metronome_test_cases():
    """The three events of Segment's Metronome destination tests, through the default preset."""
    lines = SEGMENT_METRONOME_TESTS.read_bytes().splitlines()
    results = [load_mapping(None).apply(orjson.loads(line))[0] for line in lines]
    # The first has no context.groupId: Segment's required-field check fails it, as we do.
    assert results[0].code == "missing-customer-id"
    assert results[1].event == {"transaction_id": "00000000-0000-4000-8000-000000000002",
                                "customer_id": "mock-group-id", "event_type": "Test Event",
                                "timestamp": "2021-01-01T00:00:00.000Z", "properties": {}}
    assert results[2].event["properties"] == {"epoch_timestamp": 1625895431000}
    assert results[2].event["timestamp"] == "2021-07-10T05:37:11.000Z"


def test_field_forms_path_literal_coalesce_template_default():
    m = mapping("""\
        transaction_id: {template: "{{messageId}}-tokens-{{properties.tokens}}"}
        customer_id: [$.context.groupId, $.userId, $.anonymousId]
        timestamp: {path: $.properties.when, default: "2026-11-20"}
        event_type: tokens
        properties:
          count: $.properties.tokens
          source: {literal: $.not.a.path}
          first_item: $.properties.items[0].sku
          nothing: $.properties.absent
          quoted: $.context['page']['url']
          nulls: $.properties.nullish
        """)
    record = track(7, context={"groupId": "", "page": {"url": "u"}},
                   properties={"tokens": 5, "items": [{"sku": "A1"}], "nullish": None})
    event = one(m, record).event
    assert event == {
        "transaction_id": "msg-7-tokens-5", "customer_id": "user-7",
        "event_type": "tokens", "timestamp": "2026-11-20T00:00:00.000Z",
        "properties": {"count": 5, "source": "$.not.a.path", "first_item": "A1",
                       "quoted": "u", "nulls": None},
    }


def test_jsonpath_beyond_plain_paths_uses_jsonpath_ng():
    m = mapping(DEFAULT_FIELDS + 'properties:\n  sku: $.properties.items[?(@.qty > 1)].sku\n')
    record = track(1, properties={"items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]})
    assert one(m, record).event["properties"] == {"sku": "b"}


def test_numbers_become_strings_for_string_fields_objects_are_errors():
    m = mapping("""\
        transaction_id: $.properties.n
        customer_id: $.properties.f
        timestamp: $.timestamp
        event_type: $.properties.obj
        """)
    result = one(m, track(1, properties={"n": 42, "f": 3.0, "obj": {"a": 1}}))
    assert result.code == "bad-event-type"
    assert "event_type must be a string; $.properties.obj holds an object" == result.reason
    result = one(m, track(1, properties={"n": 42, "f": 3.0, "obj": "x"}))
    assert (result.event["transaction_id"], result.event["customer_id"]) == ("42", "3")


def test_missing_required_field_names_field_and_paths_tried():
    m = mapping(DEFAULT_FIELDS.replace("$.context.groupId", "[$.context.groupId, $.userId]"))
    result = one(m, track(1, context={}, userId=None))
    assert result.code == "missing-customer-id"
    assert result.reason == "customer_id is missing: no value at $.context.groupId, $.userId"


def test_unparseable_timestamp_rejects_and_shows_value():
    result = one(mapping(DEFAULT_FIELDS), track(1, timestamp="yesterday-ish"))
    assert result.code == "bad-timestamp" and "'yesterday-ish'" in result.reason


def test_properties_options_flatten_pick_omit_stringify():
    m = mapping(DEFAULT_FIELDS + textwrap.dedent("""\
        properties:
          from: $.properties
          set:
            user: $.userId
          flatten: true
          omit: [plan.tier, secret]
          stringify: true
        """))
    record = track(1, properties={"tokens": 1200, "price": 0.25, "ok": True, "none": None,
                                  "plan": {"name": "team", "tier": 2}, "secret": "x",
                                  "tags": [1, 2]})
    assert one(m, record).event["properties"] == {
        "tokens": "1200", "price": "0.25", "ok": "true", "none": None,
        "plan.name": "team", "tags": [1, 2], "user": "user-1"}


def test_properties_that_are_not_an_object_reject_the_record():
    result = one(mapping(DEFAULT_FIELDS + "properties: $.properties\n"),
                 track(1, properties=[1, 2]))
    assert result.code == "bad-properties"
    no_properties = one(mapping(DEFAULT_FIELDS + "properties: $.properties\n"),
                        track(1, properties=None))
    assert no_properties.code is None and "properties" not in no_properties.event


def test_each_matching_mapping_emits_its_own_event_and_shared_ids_are_reported():
    text = (ROOT / "mappings" / "fan-out.yaml").read_text()
    fan_out = parse_mapping(text, "fan-out.yaml")
    record = track(1, event="Report Generated", properties={"format": "pdf", "pages": 3})
    events = [r.event for r in fan_out.apply(record)]
    assert [e["event_type"] for e in events] == ["report_generated", "report_pages"]
    assert [e["transaction_id"] for e in events] == ["msg-1-report", "msg-1-pages"]

    clash = parse_mapping(text.replace("{{messageId}}-pages", "{{messageId}}-report"), "f.yaml")
    assert clash.warnings and "f.yaml:" in clash.warnings[0]
    results = clash.apply(record)
    assert results[0].code is None
    assert results[1].code == "duplicate-transaction-id"
    assert "keep only the first" in results[1].reason


def test_fifty_mappings_each_with_its_trigger():
    items = "".join(
        f"  - name: M{i}\n    trigger: type = \"track\" and event = \"E{i}\"\n"
        f"    fields:\n      transaction_id: $.messageId\n      customer_id: $.userId\n"
        f"      timestamp: $.timestamp\n      event_type: e{i}\n"
        for i in range(50))
    m = parse_mapping("mappings:\n" + items, "fifty.yaml")
    assert len(m.mappings) == 50
    assert [r.event["event_type"] for r in m.apply(track(1, event="E37"))] == ["e37"]


def test_disabled_mappings_are_left_out():
    m = parse_mapping(textwrap.dedent("""\
        mappings:
          - name: A
            enabled: false
            fields: {transaction_id: $.messageId, customer_id: a, timestamp: $.timestamp, event_type: a}
          - name: B
            fields: {transaction_id: $.messageId, customer_id: b, timestamp: $.timestamp, event_type: b}
        """), "x.yaml")
    assert [x.name for x in m.mappings] == ["B"]


def problems(text: str) -> list[str]:
    with pytest.raises(MappingError) as caught:
        parse_mapping(textwrap.dedent(text), "bad.yaml")
    return str(caught.value).splitlines()


def test_every_problem_in_one_pass_with_file_line_column():
    found = problems("""\
        mappings:
          - name: A
            trigger: type = "track" AND event = "x"
            fields:
              transaction_id: $.messageId
              customer_id: $.context..[
              timestamp: $.timestamp
              evnt_type: $.event
          - name: A
            trigers: x
            fields:
              transaction_id: {tempalte: "x"}
              customer_id: c
              timestamp: $.timestamp
              event_type: e
        """)
    assert found[0].startswith("bad.yaml:3:29: trigger: 'AND'")
    assert found[1].startswith("bad.yaml:4:5: 'fields' has no 'event_type'")
    assert found[2].startswith("bad.yaml:6:20: customer_id: invalid JSONPath")
    assert found[3].startswith("bad.yaml:8:7: unknown key 'evnt_type' in fields "
                               "(did you mean 'event_type'?)")
    assert found[4].startswith("bad.yaml:9:11: mapping name 'A' is already used on line 2")
    assert found[5].startswith("bad.yaml:10:5: unknown key 'trigers' in a mapping "
                               "(did you mean 'trigger'?)")
    assert found[6].startswith("bad.yaml:12:23: transaction_id: {tempalte} is not a field "
                               "value (did you mean 'template'?)")
    assert len(found) == 7


def test_yaml_syntax_error_has_a_place():
    found = problems("mappings:\n  - name: [unclosed\n")
    assert found[0].startswith("bad.yaml:3:1: YAML syntax")


@pytest.mark.parametrize("text, expected", [
    ("", "bad.yaml:1:1: the mapping file is empty"),
    ("- a\n", "bad.yaml:1:1: the mapping file must be a YAML mapping"),
    ("mapings: []\n", "bad.yaml:1:1: unknown key 'mapings' in the file (did you mean 'mappings'?)"),
    ("mappings: []\n", "bad.yaml:1:11: 'mappings' must be a list"),
    ("mappings:\n  - name: A\n", "bad.yaml:2:5: the mapping has no 'fields'"),
])
def test_file_shape_problems(text, expected):
    assert problems(text)[0].startswith(expected)


def test_unreadable_mapping_file(tmp_path):
    with pytest.raises(MappingError) as caught:
        load_mapping(str(tmp_path / "nope.yaml"))
    assert "nope.yaml:1:1: cannot read the mapping file" in str(caught.value)


@pytest.mark.parametrize("name", ["customer-from-userid", "customer-from-account-trait",
                                  "tokens-as-string", "fan-out", "page-views", "default"])
def test_worked_examples_load(name):
    assert load_mapping(str(ROOT / "mappings" / f"{name}.yaml")).mappings


def test_indexed_mappings_keep_file_order_and_full_trigger_semantics():
    def item(name, trigger):
        return (f"  - name: {name}\n    trigger: {trigger}\n    fields:\n"
                f"      transaction_id: {{template: \"{{{{messageId}}}}-{name}\"}}\n"
                f"      customer_id: c\n      timestamp: $.timestamp\n      event_type: {name}\n")

    m = parse_mapping("mappings:\n" + item("u1", 'type = "track"')
                      + item("a", 'event = "A" and properties.tokens > 5')
                      + item("ab", 'type = "track" and (event = "A" or event = "B")')
                      + item("u2", 'contains(event, "A")'), "order.yaml")

    def names(record):
        return [r.event["event_type"] for r in m.apply(record)]

    assert names(track(9, event="A")) == ["u1", "a", "ab", "u2"]
    assert names(track(1, event="A")) == ["u1", "ab", "u2"]  # a's full trigger still decides
    assert names(track(1, event="B")) == ["u1", "ab"]
    assert names(track(1, event="XA")) == ["u1", "u2"]
    assert names(track(1, event=["A"])) == ["u1"]
