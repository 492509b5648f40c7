"""Segment's own mappings: directives in mapping files, import of subscriptions, YAML 1.2."""

import orjson
import pytest
from conftest import jsonl, track

from segmetro.mapping import MappingError, parse_mapping

NOW = ["--now", "2026-11-25T00:00:00Z"]
FIELDS = """\
mappings:
  - name: m
    trigger: type = "track"
    fields:
      transaction_id: {"@path": "$.messageId"}
      customer_id: {"@path": "$.context.groupId"}
      timestamp: {"@path": "$.timestamp"}
      event_type: {"@path": "$.event"}
"""


def test_a_path_directive_under_properties_is_a_directive_not_an_object():
    mappings = parse_mapping(FIELDS + '      properties: {"@path": "$.properties"}\n', "m.yaml")
    [result] = mappings.apply(track(1, properties={"tokens": 3.0, "2": "b", "1": "a"}))
    assert result.event["properties"] == {"1": "a", "2": "b", "tokens": 3}
    assert list(result.event) == ["transaction_id", "customer_id", "timestamp", "event_type",
                                  "properties"]  # Segment's order, byte for byte


def test_properties_are_required_in_segments_form():
    with pytest.raises(MappingError) as caught:
        parse_mapping(FIELDS, "m.yaml")
    assert "Send Event requires it" in str(caught.value)
    mappings = parse_mapping(FIELDS + '      properties: {"@path": "$.properties"}\n', "m.yaml")
    [result] = mappings.apply(track(1, properties=None))
    assert result.code == "missing-properties"


@pytest.mark.parametrize("directive, words", [
    ('{"@liquid": "{{ event }}"}', "Liquid templates are not run"),
    ('{"@nope": 1}', "not a mapping-kit directive"),
    ('{"@path": "$.x", "other": 1}', "no other keys"),
    ('{"@path": "$.x", "@template": "y"}', "one @-directive per object"),
    ('{"@if": {"then": 1}}', '"exists" or a "blank"'),
    ('{"@replace": {"pattern": "abcdefghijk", "value": "x"}}', "1 to 10 characters"),
])
def test_directives_mapping_kit_refuses_are_mapping_errors(directive, words):
    with pytest.raises(MappingError) as caught:
        parse_mapping(FIELDS + f"      properties: {directive}\n", "m.yaml")
    assert "m.yaml:9:19" in str(caught.value) and words in str(caught.value)


@pytest.mark.parametrize("literal, expected", [
    ("on", "on"), ("yes", "yes"), ("no", "no"), ("010", "010"), ("1_000", "1_000"),
    ("2026-11-20", "2026-11-20"), ("0x1F", "0x1F"), ("3", "3"),
])
def test_yaml_scalars_mean_what_they_look_like(literal, expected):
    text = FIELDS.replace('event_type: {"@path": "$.event"}', f"event_type: {literal}")
    text = text.replace('{"@path": "$.timestamp"}', "2026-11-20")  # an unquoted date
    text += '      properties: {"@path": "$.properties"}\n'
    [result] = parse_mapping(text, "m.yaml").apply(track(1))
    assert result.event["event_type"] == expected
    assert result.event["timestamp"] == "2026-11-20T00:00:00.000Z"


def test_explicit_yaml_tags_that_are_not_json_are_errors_with_a_place():
    with pytest.raises(MappingError) as caught:
        parse_mapping(FIELDS.replace('{"@path": "$.event"}', "!!timestamp 2026-11-20"), "m.yaml")
    assert "m.yaml:8:19" in str(caught.value) and "not a JSON value" in str(caught.value)


SUBSCRIPTION = {
    "id": "sub_1", "name": "Send track events to Metronome", "actionId": "a1",
    "actionSlug": "sendEvent", "destinationId": "dest_1", "enabled": True,
    "trigger": 'type = "track"',
    "settings": {"transaction_id": {"@path": "$.messageId"},
                 "customer_id": {"@path": "$.context.groupId"},
                 "timestamp": {"@path": "$.timestamp"}, "event_type": "tokens",
                 "properties": {"tokens": {"@path": "$.properties.tokens"}, "raw": "$.notapath"}},
}


@pytest.mark.parametrize("document", [
    SUBSCRIPTION, [SUBSCRIPTION], {"data": {"subscriptions": [SUBSCRIPTION]}},
])
def test_import_writes_an_equivalent_commented_mapping(run, write, tmp_path, document):
    write("subs.json", orjson.dumps(document))
    result = run("import", "subs.json", "-o", "from-segment.yaml")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "from-segment.yaml").read_text()
    assert "# Segment subscription sub_1, action sendEvent, destination dest_1" in text
    path = write("in.jsonl", jsonl(track(1, properties={"tokens": 4})))
    for mapping in ("from-segment.yaml", "subs.json"):  # -m takes Segment's JSON directly
        out = run("map", path, *NOW, "-q", "-m", mapping).stdout
        assert orjson.loads(out) == {
            "transaction_id": "msg-1", "customer_id": "acct_1",
            "timestamp": "2026-11-20T10:00:00.000Z", "event_type": "tokens",
            "properties": {"tokens": 4, "raw": "$.notapath"}}  # a raw string is a literal


def test_import_keeps_disabled_subscriptions_disabled(run, write):
    other = {**SUBSCRIPTION, "id": "sub_2", "enabled": False, "name": "Off"}
    write("subs.json", orjson.dumps([SUBSCRIPTION, other]))
    result = run("import", "subs.json")
    assert result.exit_code == 0
    assert '- name: "Off"\n    trigger: "type = \\"track\\""\n    enabled: false' in result.stdout


@pytest.mark.parametrize("document, words", [
    ({"hello": 1}, "not Segment subscriptions"),
    ({**SUBSCRIPTION, "actionSlug": "other"}, "not Metronome's sendEvent"),
    ({**SUBSCRIPTION, "settings": {"transaction_id": {"@path": "$.messageId"}}},
     "Segment fails every event"),
])
def test_import_refuses_what_is_not_send_event(run, write, document, words):
    write("subs.json", orjson.dumps(document))
    result = run("import", "subs.json")
    assert result.exit_code == 2 and words in result.stderr


def test_a_trigger_segment_misreads_in_an_import_is_reported(run, write):
    write("subs.json", orjson.dumps({**SUBSCRIPTION, "trigger": 'type = "track" AND event = "x"'}))
    result = run("import", "subs.json", "-o", "out.yaml")
    assert result.exit_code == 2 and "lowercase" in result.stderr


def test_the_schema_and_the_loader_agree_on_every_example_and_some_mistakes(run):
    import jsonschema
    import yaml

    from conftest import ROOT
    from segmetro.mapping.load import _constructor, _Yaml12Loader

    schema = orjson.loads(run("schema").stdout)
    examples = sorted((ROOT / "mappings").glob("*.yaml")) + [ROOT / "segmetro" / "default.yaml"]
    for path in examples:
        text = path.read_text()
        document = _constructor.construct_document(yaml.compose(text, Loader=_Yaml12Loader))
        jsonschema.validate(document, schema)
        parse_mapping(text, str(path))
    mistakes = [FIELDS + "      properties: {from: $.properties, flaten: true}\n",
                FIELDS.replace("fields:", "feilds:"),
                FIELDS.replace('      customer_id: {"@path": "$.context.groupId"}\n', "")]
    for text in mistakes:
        document = _constructor.construct_document(yaml.compose(text, Loader=_Yaml12Loader))
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(document, schema)
        with pytest.raises(MappingError):
            parse_mapping(text, "m.yaml")
