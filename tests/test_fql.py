import pytest

from segmetro.mapping.fql import TriggerError, compile_trigger

RECORD = {
    "type": "track", "event": "Order Completed", "userId": "u1", "name": None,
    "properties": {"total": 27.5, "count": 3, "coupon": "hasbros", "vip": True, "zero": 0,
                   "id": "5"},
    "context": {"page": {"url": "https://shop.example.com/checkout"}},
}


@pytest.mark.parametrize("trigger, expected", [
    ('type = "track"', True),
    ('type = "page"', False),
    ('type != "page"', True),
    ('event != "Order Completed"', False),
    ('properties.missing != "x"', True),  # != is true when the field is missing
    ('properties.missing = "x"', False),
    ('properties.count = "3"', False),  # strict: a number is not the string "3"
    ('properties.id = "5"', True),
    ('properties.id = 5', False),
    ('properties.count = 3', True),
    ('properties.total > 20', True),
    ('properties.total >= 27.5', True),
    ('properties.total < 27.5', False),
    ('properties.count <= 3', True),
    ('properties.coupon > 1', False),  # ordering compares numbers only
    ('properties.vip = true', True),
    ('properties.vip = false', False),
    ('properties.zero = false', False),
    ('properties.vip != true', False),
    ('properties.coupon = null', False),
    ('properties.missing = null', True),
    ('name = null', True),  # JSON null counts as not there
    ('properties.coupon != null', True),
    ('name != null', False),
    ('contains(event, "Complete")', True),
    ('contains(properties.count, "3")', False),
    ('!contains(event, "Complete")', False),
    ('match(context.page.url, "https://shop.*")', True),
    ('match(context.page.url, "*checkout")', True),
    ('match(context.page.url, "*cart")', False),
    ('!match(event, "Order*")', False),
    ('type = "track" and event = "Order Completed"', True),
    ('type = "identify" or type = "track"', True),
    ('type = "track" and (event = "A" or event = "Order Completed")', True),
    ('type = "track" and (event = "A" or event = "B")', False),
    ('(type = "page" or type = "track") and properties.total > 1', True),
    ('userId = "u1"', True),
    ('traits.plan = null', True),
    ('event = "Say \\"hi\\""', False),
])
def test_segment_semantics(trigger, expected):
    assert compile_trigger(trigger).predicate(RECORD) is expected


def test_escaped_quotes_in_strings():
    assert compile_trigger('event = "Say \\"hi\\""').predicate({"event": 'Say "hi"'})


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
    ("type = 'track'", 8, "double quotes"),
    ('type = "a" and (event = "b" or (event = "c"))', 32, "nested"),
    ('evnt = "A"', 1, "did you mean 'event'"),
    ('anonymousId = "A"', 1, "unknown field"),
    ('properties = "A"', 1, "unknown field"),
    ('startswith(event, "A")', 1, "unknown function"),
    ('type == "track"', 6, "single '='"),
    ('type = ', 8, "expected a value"),
    ('type = "track" and', 19, "expected a field"),
    ('(type = "track"', 16, "')'"),
    ('type > "a"', 8, "numbers only"),
    ('!type = "a"', 2, "'!' goes only before"),
    ('', 1, "empty"),
    ('type = "track" #', 16, "unexpected character"),
])
def test_misreadable_triggers_are_errors_with_a_column(trigger, column, words):
    with pytest.raises(TriggerError) as caught:
        compile_trigger(trigger)
    assert caught.value.column == column
    assert words in str(caught.value)
