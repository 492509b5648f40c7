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
