import pytest

from segmetro.timestamps import coerce, parse_rfc3339


@pytest.mark.parametrize("value, expected", [
    # Segment's own test cases for its Metronome destination.
    ("2021-01-01", "2021-01-01T00:00:00.000Z"),
    (1625895431000, "2021-07-10T05:37:11.000Z"),
    ("2021-07-10T05:37:11.000Z", "2021-07-10T05:37:11.000Z"),
    # Spellings seen in Segment data.
    ("2015-12-12T19:11:01.249Z", "2015-12-12T19:11:01.249Z"),
    ("2015-12-12T19:11:01.55Z", "2015-12-12T19:11:01.550Z"),
    ("2020-05-09T23:54:49.862826855Z", "2020-05-09T23:54:49.862Z"),
    ("2021-03-01T10:00:00+00:00", "2021-03-01T10:00:00.000Z"),
    ("2021-03-01T10:00:00.123456+01:00", "2021-03-01T09:00:00.123Z"),
    ("2021-03-01T10:00:00-0530", "2021-03-01T15:30:00.000Z"),
    ("2021-03-01 10:00:00", "2021-03-01T10:00:00.000Z"),
    ("2015-2-02T00:30:12.984Z", "2015-02-02T00:30:12.984Z"),
    ("2020-05-09 23:54:49.209808489 +0000 UTC m=+70366.298768264",
     "2020-05-09T23:54:49.209Z"),
    ("2020-05-09 23:54:49.209808489 +0000 UTC", "2020-05-09T23:54:49.209Z"),
    # Where Segment is wrong: seconds, numeric strings, a fraction without Z.
    (1625895431, "2021-07-10T05:37:11.000Z"),
    ("1625895431000", "2021-07-10T05:37:11.000Z"),
    ("1625895431", "2021-07-10T05:37:11.000Z"),
    (1625895431.5, "2021-07-10T05:37:11.500Z"),
    ("2021-07-10T05:37:48.55", "2021-07-10T05:37:48.550Z"),
    (1625895431000000, "2021-07-10T05:37:11.000Z"),  # microseconds
])
def test_coerces_to_segments_canonical_utc_milliseconds(value, expected):
    assert coerce(value)[0] == expected


@pytest.mark.parametrize("value", [
    "last tuesday", "", "2021-13-01", "2021-02-30T00:00:00Z", "2021-01-01T25:00:00Z",
    True, None, {"a": 1}, [1], "0001-01-01T00:00:00+01:00", float("nan"),
])
def test_unparseable_values_give_none(value):
    assert coerce(value) is None


def test_strict_rfc3339_wants_a_zone_and_four_digit_year():
    assert parse_rfc3339("2025-01-23T01:23:45Z") == 1737595425000
    assert parse_rfc3339("2025-01-23T01:23:45.5+00:00") == 1737595425500
    assert parse_rfc3339("2025-01-23 01:23:45Z") is None
    assert parse_rfc3339("2025-01-23T01:23:45") is None
    assert parse_rfc3339("25-01-23T01:23:45Z") is None
    assert parse_rfc3339(1737595425000) is None


def test_the_fast_path_reads_every_spelling_as_the_regex_does():
    import random

    from segmetro import timestamps

    rng = random.Random(5)
    spellings = []
    for _ in range(20_000):
        year = rng.choice([1970, 1999, 2000, 2024, 2026, 9999, 1])
        text = f"{year:04d}-{rng.randint(0, 13):02d}-{rng.randint(0, 32):02d}" \
               f"{rng.choice('T T ')}{rng.randint(0, 25):02d}:{rng.randint(0, 61):02d}:" \
               f"{rng.randint(0, 61):02d}"
        text += rng.choice(["", ".1", ".12", ".123", ".123456", ".123456789", ",5"])
        text += rng.choice(["Z", "z", "+00:00", "-00:00", "+05:30", "-23:59", "+24:00",
                            "+0100", "+01", " UTC", ""])
        spellings.append(text)
    for text in spellings:
        slow = timestamps._ISO.fullmatch(text)
        expected = timestamps._from_match(slow, None) if slow else None
        got = timestamps.coerce(text)
        if expected is None:
            assert got is None or timestamps._rfc3339_fast(text) is None, text
        else:
            assert got is not None and got[1] == expected[1], (text, got, expected)


def test_the_utc_fast_path_gives_what_the_regex_gives_or_steps_aside():
    """``timestamps._utc_fast`` (``…:SSZ`` and ``…+00:00`` through datetime's parser) against
    the regex, spelling by spelling, near misses included: the same text and epoch, or None."""
    import random

    from segmetro import timestamps

    rng = random.Random(11)

    def two(good: range) -> str:
        if rng.random() < 0.85:
            return f"{rng.choice(good):02d}"
        return rng.choice(["00", "13", "24", "29", "30", "31", "60", "6a", "+1", " 1", "1_", "٣1"])

    taken = 0
    for _ in range(20_000):
        day = f"{rng.choice([2024, 2026, 2100, 1, 9999])}-{two(range(1, 13))}-{two(range(1, 29))}"
        clock = f"{rng.choice('TT t')}{two(range(24))}{rng.choice('::.')}{two(range(60))}" \
                f"{rng.choice('::-')}{two(range(60))}"
        tail = rng.choice(["Z", "Z", "+00:00", "+00:00", "-00:00", "+05:30", "z", "+0000",
                           f".{rng.randint(0, 999):03d}Z", ".1Z", "Z ", "+00:00 "])
        text = f"{day}{clock}{tail}"
        if rng.random() < 0.05:  # spellings datetime's parser reads and the regex does not
            text = rng.choice(["2026-W44-1T11:58:12Z", "2026-W44-1 11:58:12+00:00",
                               "2026-11-02T115812.5Z", "2026-11-02X11:58:12Z",
                               "20261102T11:58:12.5Z", "2026-11-02_11:58:12+00:00"])
        fast = timestamps._utc_fast(text)
        if fast is None:
            continue
        taken += 1
        match = timestamps._ISO.fullmatch(text)
        assert match is not None, text
        assert fast == timestamps._from_match(match, None), text
    assert taken > 500  # the usual spellings do take it
