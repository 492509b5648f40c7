"""segmetro against Segment's own packages: golden answers made by tools/segment-oracle (run
``bash tools/segment-oracle/regenerate.sh`` to make them again; pytest needs no node)."""

import json
from pathlib import Path

import pytest

from segmetro.mapping.fql import TriggerError, compile_trigger

GOLDEN = json.loads((Path(__file__).parent / "segment" / "golden.json").read_text())
RECORDS = GOLDEN["records"]


def test_the_golden_file_comes_from_the_pinned_packages():
    assert GOLDEN["packages"] == {"@segment/destination-subscriptions": "3.37.0",
                                  "@segment/actions-core": "3.170.0",
                                  "@segment/action-destinations": "3.497.0"}
    assert len(GOLDEN["triggers"]) > 1000 and len(RECORDS) > 50


def test_every_trigger_is_evaluated_as_segment_does_or_refused():
    accepted = refused = 0
    disagreements = []
    for case in GOLDEN["triggers"]:
        try:
            trigger = compile_trigger(case["fql"])
        except TriggerError:
            refused += 1
            continue
        accepted += 1
        if not case["parsed"]:
            disagreements.append((case["fql"], "Segment cannot parse it; segmetro accepted it"))
            continue
        for record, expected in zip(RECORDS, case["results"]):
            if trigger.predicate(record) is not expected:
                disagreements.append((case["fql"], record, expected))
                break
    assert disagreements == [], f"{len(disagreements)} triggers disagree: {disagreements[:5]}"
    assert accepted > 900 and refused > 100


@pytest.mark.parametrize("fql", [
    'type = "track"', 'type = "track" and event = "Order Completed"',
    'event = "Order Completed" or event = "Signed Up"',
    'type = "track" and (event = "Order Completed" or event = "Signed Up")',
    '(type = "track" and event = "Order Completed") or type = "page"',
    'type = "track" and properties.price > 100', 'type = "track" and context.groupId != null',
    'type = "track" and contains(event, "Order")', 'type = "track" and match(event, "Order*")',
])
def test_presets_and_builder_triggers_are_accepted(fql):
    compile_trigger(fql)


def _encode(value):
    from segmetro.mapping.paths import MISSING

    return {"$missing": True} if value is MISSING else value


def test_every_directive_agrees_with_mapping_kit_on_every_record():
    import orjson

    from segmetro.jsvalues import js_json
    from segmetro.mapping.directives import (DirectiveError, DirectiveFailure,
                                             compile_directive, remove_missing)

    disagreements = []
    for case in GOLDEN["directives"]:
        try:
            resolver = compile_directive(case["mapping"])
        except DirectiveError as error:
            disagreements.append((case["mapping"], f"refused: {error}"))
            continue
        for record, expected in zip(RECORDS, case["results"]):
            try:
                got = _encode(remove_missing(resolver(record)))
            except DirectiveFailure as error:
                got = {"$error": str(error)}
            if isinstance(expected, dict) and "$error" in expected:
                if not (isinstance(got, dict) and "$error" in got):
                    disagreements.append((case["mapping"], record, expected, got))
                continue
            if orjson.dumps(js_json(got)) != orjson.dumps(js_json(expected)):
                disagreements.append((case["mapping"], record, expected, got))
                break
    assert disagreements == [], f"{len(disagreements)}: {disagreements[:3]}"


def test_imported_subscriptions_give_segments_request_bodies_byte_for_byte():
    import orjson

    from segmetro.events import Window, check_mapped
    from segmetro.mapping import parse_mapping
    from segmetro.mapping.segment_import import to_yaml
    from segmetro.timestamps import parse_rfc3339

    window = Window(parse_rfc3339("2026-11-25T00:00:00Z"), 100_000)
    compared = 0
    disagreements = []
    for case in GOLDEN["bodies"]:
        subscription = case["subscription"]
        mappings = parse_mapping(to_yaml([{"id": "s", "actionSlug": "sendEvent",
                                           "name": subscription["name"],
                                           "trigger": subscription["trigger"],
                                           "settings": subscription["settings"]}], "test"), "t")
        for record, expected in zip(GOLDEN["body_records"], case["results"]):
            results = mappings.apply(record)
            if expected is None:  # the trigger did not match
                if results:
                    disagreements.append((subscription["name"], record, "matched"))
                continue
            [result] = results
            valid = result.event is not None and \
                check_mapped(result.event, result.epoch_ms, window) is None
            if isinstance(expected, dict):  # Segment refused the event
                if valid:
                    disagreements.append((subscription["name"], record, expected))
                continue
            if not record["segmetro_expect_segment_right"]:
                continue  # its timestamp: see the README's table of differences
            compared += 1
            got = orjson.dumps([result.event]).decode() if valid else result
            if got != expected:
                disagreements.append((subscription["name"], expected, got))
    assert disagreements == [], disagreements[:3]
    assert compared >= 30


def test_segmetros_own_template_form_renders_as_the_template_directive():
    from segmetro.mapping.fields import template

    cases = [case for case in GOLDEN["directives"]
             if set(case["mapping"]) == {"@template"} and "$." not in case["mapping"]["@template"]]
    assert len(cases) >= 10
    for case in cases:
        render = template(case["mapping"]["@template"]).get
        for record, expected in zip(RECORDS, case["results"]):
            assert render(record) == expected, (case["mapping"], record)
