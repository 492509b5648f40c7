"""Triggers: the cases Segment's reading makes surprising, and refusals with their columns.
What Segment does with each is in tests/segment/golden.json (test_segment_fidelity.py)."""

import pytest

from segmetro.mapping.fql import TriggerError, compile_trigger

RECORD = {
    "type": "track", "event": "Order Completed", "userId": "u1", "name": None,
    "properties": {"total": 27.5, "count": 3, "coupon": "hasbros", "vip": True, "zero": 0,
                   "id": "5", "tags": ["a"]},
    "context": {"page": {"url": "https://shop.example.com/checkout"}},
}


@pytest.mark.parametrize("trigger, expected", [
    ('type = "track"', True),
    ('type != "page"', True),
    ('properties.missing != "x"', True),  # != "s" is true when the field is missing
    ('properties.missing != 3', False),  # != <number> needs a number: false when missing
    ('properties.count = "3"', False),  # strict: a number is not the string "3"
    ('properties.id = 5', False),
    ('properties.count = 3', True),
    ('properties.total >= "27.5"', True),  # the right side becomes a number
    ('properties.coupon > 1', False),  # ordering compares numbers only
    ('properties.vip = true', True),
    ('properties.vip != true', True),  # Segment compares with the STRING "true"
    ('name = null', True),  # JSON null counts as not there
    ('event = null', False),  # type/event compare with the string "null"
    ('!contains(properties.missing, "x")', False),  # not_ forms need a string
    ('match(context.page.url, "*checkout")', True),
    ('properties.zero.x = 0', True),  # a falsy value stops the walk and is the answer
    ('properties.tags.0 = "a"', False),  # Segment reads "tags.0" as tags then the number 0.
])
def test_segment_semantics(trigger, expected):
    try:
        predicate = compile_trigger(trigger).predicate
    except TriggerError:
        assert trigger == 'properties.tags.0 = "a"'
        return
    assert predicate(RECORD) is expected


@pytest.mark.parametrize("trigger, requires", [
    ('type = "track"', {"type": {"track"}}),
    ('type = "track" and event = "A"', {"type": {"track"}, "event": {"A"}}),
    ('type = "track" and (event = "A" or event = "B")', {"type": {"track"}, "event": {"A", "B"}}),
    ('event = "A" or type = "page"', {}),
    ('event = "A" and event = "B"', {"event": set()}),
    ('event != "A"', {}),
    ('properties.plan = "pro"', {}),
    ('contains(event, "A")', {}),
])
def test_what_a_trigger_requires_for_indexing(trigger, requires):
    assert compile_trigger(trigger).requires == requires


@pytest.mark.parametrize("trigger, column, words", [
    ('type = "track" and event = "A" or event = "B"', 32, "parentheses"),
    ('type = "track" AND event = "A"', 16, "lowercase"),
    ("type = 'track'", 8, 'write "track"'),
    ('type = "a" and (event = "b" or (event = "c"))', 32, "nested"),
    ('evnt = "A"', 1, "did you mean 'event'"),
    ('anonymousId = "A"', 1, "unknown field"),
    ('properties = "A"', 1, "properties.<name>"),
    ('startswith(event, "A")', 1, "unknown function"),
    ('type == "track"', 6, "single '='"),
    ('type = ', 8, "expected a value"),
    ('type = "track" and', 19, "ends where a condition"),
    ('(type = "track"', 16, "')'"),
    ('!type = "a"', 2, "'!' goes only before"),
    ('', 1, "empty"),
    ('type = "track" #', 16, "invalid character"),
    ('match(event, "Ord*ted")', 14, '"prefix*"'),
    ('properties.tags.length > 1', 1, "'length' is a member"),
    ('properties.constructor != null', 1, "'constructor' is a member"),
    ('properties.n >=3', 15, "apart"),
    ('properties.n = 1e3', 17, "exponent"),
    ('type ="track"and event="X"', 7, "text right after a string"),
    ('type = "track" or(event = "x")', 16, "put a space after it"),
    ('contains(type, "tra")', 10, "drops the condition"),
])
def test_misreadable_triggers_are_errors_with_a_column(trigger, column, words):
    with pytest.raises(TriggerError) as caught:
        compile_trigger(trigger)
    assert caught.value.column == column, str(caught.value)
    assert words in str(caught.value)
