"""Property-based tests: whatever the input, only segmetro's own errors come out.

Bounded for CI: a fixed number of examples each, no deadline (the machine is shared), and under
CI derandomized so a run can be repeated. ``SEGMETRO_FUZZ_EXAMPLES`` asks for more.
"""

import gzip
import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmetro.mapping import MappingError, parse_mapping
from segmetro.mapping.fql import TriggerError, compile_trigger
from segmetro.sources import InputFile, InputSet, read_records

BOUNDED = settings(max_examples=int(os.environ.get("SEGMETRO_FUZZ_EXAMPLES", 300)),
                   deadline=None, derandomize=bool(os.environ.get("CI")),
                   database=None if os.environ.get("CI") else settings.default.database,
                   suppress_health_check=[HealthCheck.too_slow,
                                          HealthCheck.function_scoped_fixture])

json_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | \
    st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=10), children, max_size=4),
                           max_leaves=20)
field_names = st.sampled_from(["type", "event", "name", "userId", "properties.n",
                               "properties.a.b", "traits.plan", "context.groupId", "bogus",
                               "properties", "AND", "and", "null"])
records = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["track", "page", "identify"]) | json_scalars,
    "event": st.text(max_size=12) | json_scalars,
    "userId": json_scalars,
    "properties": st.dictionaries(st.sampled_from(["n", "a", "x"]), json_values, max_size=3),
    "traits": st.dictionaries(st.sampled_from(["plan"]), json_values, max_size=1),
    "context": st.dictionaries(st.sampled_from(["groupId"]), json_values, max_size=1),
})
trigger_tokens = st.lists(
    field_names | st.sampled_from(["=", "!=", "<", ">=", "==", "(", ")", "!", ",", "and", "or",
                                   "contains(", "match(", '"x"', '"a*b"', "'q'", "3", "-1.5",
                                   "true", "null", "1e3", '"\\\\"']) | st.text(max_size=3),
    max_size=12)


@BOUNDED
@given(trigger_tokens, st.lists(records, max_size=5))
def test_a_trigger_compiles_or_raises_a_trigger_error_and_never_crashes_on_a_record(tokens,
                                                                                   sample):
    text = " ".join(tokens)
    try:
        trigger = compile_trigger(text)
    except TriggerError as error:
        assert 1 <= error.column <= len(text) + 1
        return
    for record in sample:
        assert trigger.predicate(record) in (True, False)


field_values = st.recursive(
    st.sampled_from(["$.messageId", "$.context.groupId", "$.timestamp", "$.properties",
                     "$.properties.n", "$[", "$..x", "api_call", "{{x}}"]) | json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["literal", "template", "path", "default", "from", "set", "pick",
                         "flatten", "flaten", "stringify", "omit", "x"]), children, max_size=3),
    max_leaves=8)
mapping_documents = st.fixed_dictionaries({"mappings": st.lists(st.fixed_dictionaries(
    {"name": st.text(max_size=6) | json_scalars,
     "fields": st.dictionaries(st.sampled_from(["transaction_id", "customer_id", "timestamp",
                                                "event_type", "properties", "extra"]),
                               field_values, max_size=6)},
    optional={"trigger": trigger_tokens.map(" ".join) | json_scalars,
              "enabled": json_scalars}), max_size=3)})


@BOUNDED
@given(mapping_documents | json_values, st.lists(records, max_size=4))
def test_a_mapping_file_loads_or_raises_a_mapping_error_and_never_crashes_on_a_record(document,
                                                                                     sample):
    text = yaml.safe_dump(document, allow_unicode=True)
    try:
        mappings = parse_mapping(text, "m.yaml")
    except MappingError as error:
        assert error.problems and all(p.line >= 1 and p.column >= 1 for p in error.problems)
        return
    for record in sample:
        for result in mappings.apply(record):
            assert (result.event is None) == (result.code is not None) or result.code


@BOUNDED
@given(st.text(max_size=300))
def test_arbitrary_text_as_a_mapping_file(text):
    try:
        parse_mapping(text, "m.yaml")
    except MappingError:
        pass


lines = st.lists(st.binary(max_size=60) | st.sampled_from([
    b'{"type": "track"}', b'{"batch": [{"a": 1}, 2]}', b'{"batch": []}', b"\xef\xbb\xbf{}",
    b"[1]", b'"x"', b"\r", b"", b"{", b'{"x": "\xff"}']), max_size=20)


@BOUNDED
@given(lines, st.booleans(), st.integers(0, 50))
def test_the_line_reader_accounts_for_every_line_and_never_raises(tmp_path_factory, chunks,
                                                                 zipped, cut):
    data = b"\n".join(chunks)
    if zipped:
        data = gzip.compress(data)
        data = data[:max(2, len(data) - cut)]  # often truncated
    path = tmp_path_factory.mktemp("r") / "in.jsonl"
    path.write_bytes(data)
    found = list(read_records(InputSet([InputFile(str(path), len(data))], max_line_bytes=32)))
    assert [r.seq for r in found] == list(range(len(found)))
    for record in found:
        assert (record.data is None) == (record.error_code is not None)


edge_keys = st.sampled_from(["", "0", "1", "10", "01", "9x", "$id", "-1", " 2", "!", ":", "a",
                             "z", "\u0663", "\U0001d7d9"]) | st.text(max_size=4)
edge_values = st.sampled_from([2**53 - 1, 2**53, 2**70, -10**21, -2**53 + 1, -2**53, 0, 3.0,
                               -0.0, 1e21, 0.1, True, False, None, "", "9"]) | json_values


@BOUNDED
@given(st.dictionaries(edge_keys, edge_values, max_size=6))
def test_js_json_shortcut_gives_what_the_full_walk_gives(obj):
    """``js_json`` returns an object unchanged only when JavaScript would write it as orjson
    does: the same bytes, and the same key order, as its full walk (``_js_json``)."""
    import orjson

    from segmetro.jsvalues import _js_json, js_json

    fast, full = js_json(obj), _js_json(obj)
    assert orjson.dumps(fast) == orjson.dumps(full)
    assert list(fast) == list(full)


@BOUNDED
@given(st.binary(max_size=200) | st.lists(st.sampled_from([b"{}", b"", b"\r", b" ", b"x" * 70]),
                                          max_size=12).map(b"\n".join))
def test_lines_split_as_bytes_split_does(chunk):
    """The reader's line splitter (memchr through BytesIO) cuts exactly where ``split`` does."""
    from segmetro.sources import _split_lines

    assert _split_lines(chunk) == chunk.split(b"\n")


@BOUNDED
@given(st.text(alphabet="0123456789-T:.Z+ ", min_size=22, max_size=26) | st.integers() |
       st.sampled_from(["2026-11-02T11:58:12.279Z", "2026-11-02 11:58:12.279Z",
                        "2026-11-02T11:58:12,279Z", "2026-11-02T11-58:12.279Z",
                        "2026/11-02T11:58:12.279Z", "2026-11-02T11:58:12.279+"]))
def test_canonical_timestamp_shape_is_tested_at_every_separator(value):
    """The strided slice that finds Segment's own timestamp spelling tests the same eight
    places the index tests did."""
    from segmetro.timestamps import _is_canonical_shape

    old = value.__class__ is str and len(value) == 24 and value[23] == "Z" and \
        value[10] == "T" and value[19] == "." and value[4] == "-" and value[7] == "-" and \
        value[13] == ":" and value[16] == ":"
    assert _is_canonical_shape(value) == old
