import gzip

from conftest import jsonl, track

from segmetro.sources import expand_inputs, read_records


def records_of(*paths):
    return list(read_records(expand_inputs(list(paths))))


def test_bom_crlf_blank_lines_and_missing_final_newline(write):
    path = write("a.jsonl", b"\xef\xbb\xbf" + jsonl(track(1))[:-1] + b"\r\n\r\n  \n"
                 + jsonl(track(2))[:-1])
    records = records_of(path)
    assert [(r.line, r.data["messageId"], r.error) for r in records] == [
        (1, "msg-1", None), (4, "msg-2", None)]


def test_bad_lines_become_parse_rejections_and_reading_goes_on(write):
    path = write("a.jsonl", jsonl(track(1), b'{"cut": ', b"[1, 2]", b'"text"',
                                  b'{"bad": "\xff"}', track(2)))
    records = records_of(path)
    assert [(r.line, r.error_code) for r in records] == [
        (1, None), (2, "invalid-json"), (3, "not-object"), (4, "not-object"),
        (5, "invalid-utf8"), (6, None)]
    assert records[1].raw == '{"cut": '
    assert records[4].raw == '{"bad": "\\xff"}'


def test_gzip_is_sniffed_by_magic_bytes_not_name(write):
    zipped = write("export.data", gzip.compress(jsonl(track(1), track(2))))
    plain_named_gz = write("plain.jsonl.gz", jsonl(track(3)))
    assert [r.data["messageId"] for r in records_of(zipped, plain_named_gz)] == [
        "msg-1", "msg-2", "msg-3"]


def test_concatenated_gzip_members_are_read_in_full(write):
    path = write("two.gz", gzip.compress(jsonl(track(1))) + gzip.compress(jsonl(track(2))))
    assert len(records_of(path)) == 2


def test_truncated_gzip_yields_what_it_has_then_a_rejection(write):
    body = gzip.compress(jsonl(*[track(n) for n in range(2000)]))
    path = write("cut.gz", body[: len(body) // 2])
    records = records_of(path)
    assert records[-1].error_code == "bad-gzip"
    assert "truncated" in records[-1].error
    assert all(r.data is not None for r in records[:-1]) and len(records) > 10


def test_directories_recurse_sorted_and_skip_non_event_files(write, tmp_path):
    write("logs/src/1700000000000/b.gz", gzip.compress(jsonl(track(2))))
    write("logs/src/1700000000000/a.json", jsonl(track(1)))
    write("logs/src/1600000000000/c.ndjson", jsonl(track(0)))
    write("logs/dummy-object.txt", "")
    write("logs/.hidden.jsonl", jsonl(track(9)))
    inputs = expand_inputs([str(tmp_path / "logs")])
    assert [r.data["messageId"] for r in read_records(inputs)] == ["msg-0", "msg-1", "msg-2"]
    assert sorted(p.rsplit("/", 1)[-1] for p in inputs.skipped) == [
        ".hidden.jsonl", "dummy-object.txt"]


def test_globs_expand_sorted(write, tmp_path):
    write("d/x2.jsonl", jsonl(track(2)))
    write("d/x1.jsonl", jsonl(track(1)))
    inputs = expand_inputs([str(tmp_path / "d" / "x*.jsonl")])
    assert [f.path.rsplit("/", 1)[-1] for f in inputs.files] == ["x1.jsonl", "x2.jsonl"]


def test_batch_envelope_items_merge_envelope_fields_item_values_win(write):
    envelope = {"batch": [
        {"type": "track", "event": "A", "messageId": "m1", "context": {"groupId": "own"}},
        {"type": "track", "event": "B", "messageId": "m2", "sentAt": "item"},
        "oops",
    ], "context": {"groupId": "env", "ip": "1.2.3.4"}, "integrations": {"All": True},
        "sentAt": "envelope"}
    records = records_of(write("b.jsonl", jsonl(envelope, track(3))))
    first, second, bad, after = records
    assert first.data["context"] == {"groupId": "own", "ip": "1.2.3.4"}
    assert second.data["context"] == {"groupId": "env", "ip": "1.2.3.4"}
    assert second.data["sentAt"] == "item" and first.data["sentAt"] == "envelope"
    assert first.data["integrations"] == {"All": True}
    assert bad.error_code == "not-object" and bad.line == 1
    assert (after.line, after.seq) == (2, 3)


def test_the_repeat_check_is_sized_from_the_inputs_before_it_starts(write):
    """The run-wide repeat table is made once at about the events' number: growing it moves
    every id again (about a second a send of 400,000 events)."""
    from segmetro.mapping import load_mapping
    from segmetro.pipeline import RepeatCheck
    from segmetro.sources import expected_events

    needles = load_mapping(None).needles  # the default mapping reads tracks only
    lines = [track(n) if n % 4 else {"type": "page", "messageId": f"p{n}"} for n in range(40_000)]
    plain = write("plain.jsonl", jsonl(*lines))
    zipped = write("zipped.gz", gzip.compress(jsonl(*lines)))
    tracks = 30_000
    for path in (plain, zipped):
        estimate = expected_events(expand_inputs([path]), needles)
        assert tracks * 0.8 <= estimate <= tracks * 1.25, (path, estimate)
        check = RepeatCheck(estimate)
        seen = check.seen
        capacity = seen._capacity
        for n in range(tracks):
            seen.check(f"msg-{n}", b"{}", n)
        assert seen._capacity == capacity  # never grown
    assert expected_events(expand_inputs([plain]), None) > 38_000  # no byte test: every line
    many = [write(f"day/{n:03d}.jsonl", jsonl(*lines[n * 400:(n + 1) * 400])) for n in range(100)]
    estimate = expected_events(expand_inputs(many), needles)  # from the heads of 25 of them
    assert tracks * 0.8 <= estimate <= tracks * 1.25, estimate
    cut = write("cut.gz", gzip.compress(jsonl(*lines))[:-200])  # its trailer is gone
    assert expected_events(expand_inputs([cut]), needles) <= 4 * tracks
    trial = expand_inputs([plain])
    trial.limit = 10  # --limit 10: a trial run sizes for no more
    assert expected_events(trial, needles) == 10
    empty = write("empty.jsonl", b"")
    empty_gzip = write("empty.jsonl.gz", gzip.compress(b""))  # a header, no lines
    assert expected_events(expand_inputs([empty, empty_gzip]), needles) == 0


def test_an_empty_gzipped_input_is_read_as_no_records(write, run):
    from conftest import SAMPLE_NOW

    path = write("empty.jsonl.gz", gzip.compress(b""))
    for command in (("send", "--dry-run"), ("map", "-o", "/dev/null"), ("validate",)):
        result = run(*command, path, "--now", SAMPLE_NOW)
        assert result.exit_code == 0, (command, result.stderr)


def test_the_repeat_checks_bulk_pass_answers_as_one_check_at_a_time():
    """``SeenIds.check_many`` (a run of events at once, its common insert inline) answers what
    ``check`` answers id by id, and leaves the same table, through many growths of it."""
    import random

    from segmetro.dedupe import SeenIds

    for seed in range(10):
        rng = random.Random(seed)
        single, bulk = SeenIds(7), SeenIds(7)
        base = single.place("a.jsonl", 0)
        assert bulk.place("a.jsonl", 0) == base
        line = 1
        answers = 0
        for _ in range(200):
            count = rng.randint(1, 40)
            ids = [f"id-{rng.randrange(2500)}" for _ in range(count)]
            contents = [b"same" if rng.random() < 0.8 else b"other" for _ in range(count)]
            lines = sorted(rng.sample(range(line, line + 3 * count), count))
            line = lines[-1] + 1
            expected = {}
            for index, (txid, content) in enumerate(zip(ids, contents)):
                answer = single.check(txid, content, base + lines[index])
                if answer != SeenIds.NEW:
                    expected[index] = answer
            assert bulk.check_many(ids, contents, base, lines) == expected
            answers += len(expected)
        assert (bulk.count, bulk._capacity) == (single.count, single._capacity)
        assert bulk._keys == single._keys and bulk._values == single._values
        assert answers > 1000 and single._capacity > 2500  # repeats, conflicts, growths
