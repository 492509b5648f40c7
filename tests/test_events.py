import pytest

from segmetro.events import Window, check_event
from segmetro.timestamps import parse_rfc3339

NOW = Window(parse_rfc3339("2026-11-25T00:00:00Z"))


def event(**overrides):
    base = {"transaction_id": "t1", "customer_id": "c1", "event_type": "api_call",
            "timestamp": "2026-11-20T00:00:00.000Z", "properties": {"n": "1"}}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def code(e, window=NOW):
    problem = check_event(e, window)
    return None if problem is None else problem[0]


def test_a_valid_event_passes():
    assert check_event(event(), NOW) is None
    assert check_event(event(properties=...), NOW) is None


@pytest.mark.parametrize("overrides, expected", [
    ({"transaction_id": ""}, "bad-transaction-id"),
    ({"transaction_id": "x" * 129}, "bad-transaction-id"),
    ({"transaction_id": 5}, "bad-transaction-id"),
    ({"transaction_id": ...}, "bad-transaction-id"),
    ({"customer_id": ""}, "bad-customer-id"),
    ({"event_type": None}, "bad-event-type"),
    ({"timestamp": "2026-11-20"}, "bad-timestamp"),
    ({"timestamp": "26-11-20T00:00:00Z"}, "bad-timestamp"),
    ({"properties": [1]}, "bad-properties"),
    ({"properties": {str(i): i for i in range(2001)}}, "bad-properties"),
])
def test_each_field_rule(overrides, expected):
    assert code(event(**overrides)) == expected


def test_transaction_id_of_128_characters_and_2000_properties_are_fine():
    assert check_event(event(transaction_id="x" * 128,
                             properties={str(i): i for i in range(2000)}), NOW) is None


def test_timestamp_window_24_hours_ahead_and_34_days_back():
    assert code(event(timestamp="2026-11-25T23:59:59.000Z")) is None
    assert code(event(timestamp="2026-11-26T00:00:00.001Z")) == "timestamp-in-future"
    assert code(event(timestamp="2026-10-22T00:00:00.000Z")) is None
    assert code(event(timestamp="2026-10-21T23:59:59.999Z")) == "timestamp-too-old"


def test_backdate_window_is_configurable_and_old_reason_points_to_metronome_ops():
    window = Window(NOW.now_ms, backdate_days=3)
    code_, reason = check_event(event(timestamp="2026-11-20T00:00:00.000Z"), window)
    assert code_ == "timestamp-too-old"
    assert "3-day" in reason and "operations team" in reason
