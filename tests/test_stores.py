"""Archives where they live, and time windows over them.

s3:// and gs:// inputs against real servers on loopback: moto (S3) and gcp-storage-emulator.
Nothing here reaches a cloud: the endpoints come from AWS_ENDPOINT_URL_S3 and
STORAGE_EMULATOR_HOST, and the instance-metadata lookups of the SDKs are switched off.
--since/--until, day-folder pruning and the too-old hint, on objects and on files.
"""

import gzip
import os
import sys
import uuid

import orjson
import pytest

from segmetro import stores
from segmetro.emulator import EmulatorState, Faults
from segmetro.timestamps import parse_rfc3339
from tests.conftest import jsonl, track
from tests.harness import BackgroundEmulator
from tests.servers import free_port, gcs_command, loopback_server, moto_command

pytest.importorskip("s3fs")
pytest.importorskip("gcsfs")
pytest.importorskip("moto")

NOW = "2026-11-25T00:00:00Z"
DAY = 86_400_000
TOKEN = "store-test-token"


def day(date: str) -> int:
    return parse_rfc3339(f"{date}T00:00:00Z")


def events(prefix: str, timestamp: str, count: int) -> list[dict]:
    return [track(0, messageId=f"{prefix}-{i}", timestamp=timestamp) for i in range(count)]


def segment_layout() -> dict[str, bytes]:
    """Segment's S3/GCS destination layout: day folders of gzipped JSON lines, a dummy object,
    an object handed back already decompressed, a bad line, an old day folder."""
    recent, later = day("2026-11-20"), day("2026-11-21")
    return {
        "segment-logs/dummy-object.txt": b"",
        f"segment-logs/src1/{recent}/part-0.gz": gzip.compress(jsonl(
            *events("a", "2026-11-20T10:00:00.000Z", 3), b'{"type": "track", "broken',
            track(0, messageId="a-late", timestamp="2026-11-01T09:00:00Z"))),
        # stored gzipped, handed back decompressed (transcoding): the bytes decide, not the name
        f"segment-logs/src1/{later}/part-1.gz": jsonl(*events("b", "2026-11-21T08:00:00Z", 2)),
        f"segment-logs/src1/{later}/part-2.gz": gzip.compress(jsonl(
            *events("c", "2026-11-21T09:30:00+00:00", 4))),
        f"segment-logs/src1/{day('2026-11-01')}/old.gz": gzip.compress(jsonl(
            *events("old", "2026-10-31T23:00:00Z", 5))),
        f"segment-logs/src1/{day('2026-11-10')}/skewed.gz": gzip.compress(jsonl(
            track(0, messageId="skew", timestamp="2026-11-16T00:00:00Z"),
            *events("mid", "2026-11-10T12:00:00Z", 2))),
    }


@pytest.fixture(autouse=True)
def no_cloud(monkeypatch, tmp_path):
    """The SDKs' own lookups stay on this machine: no instance metadata, no profile files."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "GOOGLE_APPLICATION_CREDENTIALS",
                 "HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    yield
    stores.configure()


@pytest.fixture(scope="module")
def moto_port():
    port = free_port()
    with loopback_server(moto_command(port), port):
        yield port


@pytest.fixture(scope="module")
def gcs_port():
    port = free_port()
    with loopback_server(gcs_command(port), port):
        yield port


@pytest.fixture
def s3(moto_port, monkeypatch):
    """A fresh bucket in the moto server, and the environment that points segmetro at it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{moto_port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": f"http://127.0.0.1:{moto_port}"},
                           skip_instance_cache=True, use_listings_cache=False)
    bucket = f"archive-{uuid.uuid4().hex[:16]}"
    fs.mkdir(bucket)
    return fs, bucket, "s3"


@pytest.fixture
def gcs(gcs_port, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{gcs_port}")
    from gcsfs.core import GCSFileSystem

    fs = GCSFileSystem(token="anon", skip_instance_cache=True)
    bucket = f"archive-{uuid.uuid4().hex[:16]}"
    fs.mkdir(bucket)
    return fs, bucket, "gs"


def upload(store, files: dict[str, bytes]) -> str:
    fs, bucket, scheme = store
    for key, data in files.items():
        fs.pipe(f"{bucket}/{key}", data)
    return f"{scheme}://{bucket}"


def on_disk(tmp_path, files: dict[str, bytes]) -> str:
    root = tmp_path / "local"
    for key, data in files.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return str(root)


def summary(run, *args) -> tuple[int, dict]:
    result = run("send", "--dry-run", "--now", NOW, "--json", "-q", *args)
    return result.exit_code, orjson.loads(result.stdout)


COUNTS = ("files", "lines", "records", "events", "skipped", "rejected", "by_event_type",
          "by_day", "outside_window", "pruned_folders")


@pytest.mark.parametrize("store_name", ["s3", "gcs"])
def test_a_segment_bucket_reads_exactly_as_the_same_files_on_disk(store_name, request, run,
                                                                  tmp_path):
    store = request.getfixturevalue(store_name)
    files = segment_layout()
    url = upload(store, files)
    local = on_disk(tmp_path, files)

    code_local, from_disk = summary(run, f"{local}/segment-logs")
    code_remote, from_store = summary(run, f"{url}/segment-logs")

    assert code_local == code_remote == 1  # the broken line
    assert {k: from_store[k] for k in COUNTS} == {k: from_disk[k] for k in COUNTS}
    assert from_store["files"] == 5 and from_store["events"] == 18
    assert from_store["files_skipped"] == [f"{url}/segment-logs/dummy-object.txt"]
    reasons = {(r["code"], r["count"], r["first_at"]) for r in from_store["rejected_by_reason"]}
    assert reasons == {(code, count, place.replace(local, url)) for code, count, place in
                       ((r["code"], r["count"], r["first_at"])
                        for r in from_disk["rejected_by_reason"])}
    # file:line names the object's URL, so a person can go and look
    first_bad = next(r for r in from_store["rejected_by_reason"] if r["code"] == "invalid-json")
    assert first_bad["first_at"] == f"{url}/segment-logs/src1/{day('2026-11-20')}/part-0.gz:4"


@pytest.mark.parametrize("store_name", ["s3", "gcs"])
def test_quoted_globs_match_objects(store_name, request, run):
    store = request.getfixturevalue(store_name)
    url = upload(store, segment_layout())

    code, found = summary(run, f"{url}/segment-logs/*/*/part-*.gz")
    assert found["files"] == 3 and found["events"] == 4 + 2 + 4
    code, found = summary(run, f"{url}/**/old.gz")
    assert found["files"] == 1
    result = run("send", "--dry-run", "--now", NOW, f"{url}/segment-logs/*/nothing-*.gz")
    assert result.exit_code == 2 and "matches no object" in result.stderr


def test_since_prunes_day_folders_by_the_stated_rule_and_counts_the_rest_outside(s3, run,
                                                                                 tmp_path):
    files = segment_layout()
    url = upload(s3, files)
    local = on_disk(tmp_path, files)
    since = "2026-11-15"  # 2026-11-01's folder: 11-02 + 7 days of slack <= since: pruned
    for root in (f"{url}/segment-logs", f"{local}/segment-logs"):
        code, found = summary(run, root, "--since", since)
        assert found["pruned_folders"] == 1, root
        assert found["files"] == 4
        # 2026-11-10's folder is kept (11-11 + 7 > 11-15), and its event stamped after --since
        # (clock skew) is taken; everything else older than --since is outside, not rejected
        assert found["events"] == 3 + 2 + 4 + 1
        assert found["outside_window"] == 1 + 2  # a-late, and the two "mid" events
        assert found["outside_window_by_mapping"] == {"Send track events to Metronome": 3}
        assert found["since"] == "2026-11-15T00:00:00.000Z" and found["until"] is None
        assert {r["code"] for r in found["rejected_by_reason"]} == {"invalid-json"}
        assert found["hint"] is None

    # with less slack, the 2026-11-10 folder is provably empty of the window too
    code, found = summary(run, f"{url}/segment-logs", "--since", since, "--prune-slack", "2")
    assert found["pruned_folders"] == 2 and found["events"] == 9
    # --no-prune reads every folder; the events are the same, only the reading differs
    code, found = summary(run, f"{url}/segment-logs", "--since", since, "--no-prune")
    assert found["pruned_folders"] == 0 and found["files"] == 5 and found["events"] == 10
    # --until prunes nothing: a late folder can hold events of any age
    code, found = summary(run, f"{url}/segment-logs", "--until", "2026-11-02")
    assert found["pruned_folders"] == 0 and found["outside_window"] == 12


def test_a_run_mostly_too_old_says_so_first_with_the_since_to_use(s3, run):
    old = day("2026-09-01")
    url = upload(s3, {
        f"segment-logs/src1/{old}/a.gz": gzip.compress(jsonl(
            *events("x", "2026-09-01T10:00:00Z", 7), *events("x-late", "2026-08-01T10:00:00Z", 1))),
        f"segment-logs/src1/{day('2026-11-20')}/b.gz": gzip.compress(jsonl(
            *events("y", "2026-11-20T10:00:00Z", 2)))})
    code, found = summary(run, f"{url}/segment-logs")
    assert "--since 2026-10-22" in found["hint"] and "8 of the 10 events" in found["hint"]
    text = run("send", "--dry-run", "--now", NOW, f"{url}/segment-logs").stdout
    assert text.splitlines()[1].strip().startswith("note: 8 of the 10 events")
    assert text.count("--since 2026-10-22") == 1
    code, found = summary(run, f"{url}/segment-logs", "--since", "2026-10-22")
    assert found["hint"] is None and found["rejected"] == 0 and found["events"] == 2
    assert found["pruned_folders"] == 1  # the old day's folder is not even listed


def test_missing_bucket_or_key_is_exit_2_and_refused_credentials_exit_3(s3, run, monkeypatch):
    _fs, bucket, _ = s3
    result = run("send", "--dry-run", f"s3://{bucket}/no/such/prefix")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: s3://{bucket}/no/such/prefix: no such object or " \
                                    "prefix"
    result = run("send", "--dry-run", "s3://no-such-bucket-here/x.gz")
    assert result.exit_code == 2 and "no such bucket" in result.stderr

    port = free_port()  # a store that checks credentials, and knows none of ours
    with loopback_server(moto_command(port), port,
                         env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}):
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "a-secret-never-printed")
        result = run("send", "--dry-run", "--json", f"s3://{bucket}/segment-logs")
    assert result.exit_code == 3
    assert "access refused by the store" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert "a-secret-never-printed" not in result.output + result.stderr
    assert orjson.loads(result.stdout)["exit_status"] == 3


def test_no_credentials_at_all_is_a_configuration_error(s3, run, monkeypatch):
    _fs, bucket, _ = s3
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = run("send", "--dry-run", f"s3://{bucket}/x")
    assert result.exit_code == 2 and "no AWS credentials found" in result.stderr
    assert "--anonymous" in result.stderr


def test_anonymous_reads_a_public_bucket_without_credentials(s3, run, monkeypatch):
    fs, _private, _ = s3
    bucket = f"public-{uuid.uuid4().hex[:16]}"
    fs.mkdir(bucket, acl="public-read")
    fs.pipe(f"{bucket}/day/a.jsonl", jsonl(*events("p", "2026-11-20T10:00:00Z", 2)),
            ACL="public-read")
    url = f"s3://{bucket}"
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, found = summary(run, f"{url}/day", "--anonymous")
    assert code == 0 and found["events"] == 2


def test_a_cloud_input_without_its_extra_names_the_extra(run, monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)
    monkeypatch.setitem(sys.modules, "gcsfs.core", None)
    result = run("send", "--dry-run", "s3://bucket/prefix")
    assert result.exit_code == 2 and "pip install 'segmetro[s3]'" in result.stderr
    result = run("validate", "gs://bucket/prefix")
    assert result.exit_code == 2 and "pip install 'segmetro[gcs]'" in result.stderr


@pytest.fixture
def metronome(tmp_path):
    store = open(tmp_path / "store.jsonl", "ab")
    state = EmulatorState(TOKEN, Faults(), now_ms=parse_rfc3339(NOW), store=store)
    with BackgroundEmulator(state) as server:
        yield server
    store.close()


def stored_ids(tmp_path) -> list[str]:
    with open(tmp_path / "store.jsonl", "rb") as handle:
        return [orjson.loads(line)["transaction_id"] for line in handle]


def send(run, metronome, state, *inputs_and_options):
    result = run("send", "--now", NOW, "--api-token", TOKEN, "--base-url", metronome.base_url,
                 "--state", state, "--json", "-q", *inputs_and_options)
    return result.exit_code, orjson.loads(result.stdout)


@pytest.mark.parametrize("store_name", ["s3", "gcs"])
def test_state_resumes_per_object_and_reads_a_changed_object_again(store_name, request, run,
                                                                   metronome, tmp_path):
    store = request.getfixturevalue(store_name)
    fs, bucket, _ = store
    url = upload(store, {f"logs/{n}.gz": gzip.compress(jsonl(
        *events(f"o{n}", "2026-11-20T10:00:00Z", 10))) for n in range(3)})
    state = str(tmp_path / "state")

    code, first = send(run, metronome, state, f"{url}/logs", "--limit", "15")  # cut mid-object
    assert code == 0 and first["sent"] == 15
    code, second = send(run, metronome, state, f"{url}/logs")
    assert code == 0 and second["sent"] == 15
    assert "files resumed" in second["checkpoint"]
    assert f"{url}/logs/1.gz from line 6" in second["checkpoint"]["files resumed"]
    assert sorted(stored_ids(tmp_path)) == sorted(f"o{n}-{i}" for n in range(3)
                                                  for i in range(10))

    # nothing changed: nothing read; then one object is rewritten (a new ETag/generation)
    code, third = send(run, metronome, state, f"{url}/logs")
    assert third["records"] == 0 and third["checkpoint"]["files finished earlier, skipped"] == 3
    fs.pipe(f"{bucket}/logs/2.gz", gzip.compress(jsonl(*events("o2", "2026-11-20T10:00:00Z", 10),
                                                       *events("new", "2026-11-20T11:00:00Z",
                                                               1))))
    code, fourth = send(run, metronome, state, f"{url}/logs")
    assert fourth["checkpoint"]["files changed since they were last read, read from the start"] \
        == f"{url}/logs/2.gz"
    assert fourth["records"] == 11 and fourth["sent"] == 11  # Metronome's dedupe takes the 10
    status = orjson.loads(run("status", "--state", state, "--json").stdout)
    assert {f["path"] for f in status["files"] if f["status"] == "done"} >= {
        f"{url}/logs/0.gz", f"{url}/logs/1.gz", f"{url}/logs/2.gz"}


def test_prefetching_keeps_order_within_its_budget_and_streams_large_objects(s3, monkeypatch,
                                                                             run):
    """Many small objects and two over the whole-object cap, read with a tiny budget: every
    record, in order."""
    fs, bucket, _ = s3
    objects = {f"many/{n:03}.jsonl": jsonl(*events(f"m{n}", "2026-11-20T10:00:00Z", 3))
               for n in range(40)}
    objects["many/020-big.jsonl"] = jsonl(*events("big", "2026-11-20T10:00:00Z", 4000))
    objects["many/039-big.jsonl.gz"] = gzip.compress(jsonl(
        *events("big-gz", "2026-11-20T10:00:00Z", 4000)))
    url = upload(s3, objects)
    monkeypatch.setattr(stores, "PREFETCH_BUDGET", 2048)
    monkeypatch.setattr(stores, "WHOLE_MAX", 100_000)
    monkeypatch.setattr(stores, "STREAM_BLOCK", 65536)
    result = run("map", f"{url}/many", "--now", NOW, "-q")
    assert result.exit_code == 0
    ids = [orjson.loads(line)["transaction_id"] for line in result.stdout.splitlines()]
    expected = []
    for key in sorted(objects):
        expected += [orjson.loads(line)["messageId"] for line in
                     (gzip.decompress(objects[key]) if key.endswith(".gz") else
                      objects[key]).splitlines()]
    assert ids == expected and len(ids) == 120 + 8000


@pytest.mark.parametrize("reader_process", ["1", "0"])
def test_an_object_gone_after_listing_ends_the_run_70_with_what_was_confirmed(
        reader_process, s3, run, monkeypatch):
    url = upload(s3, {f"day/{n}.jsonl": jsonl(*events(f"g{n}", "2026-11-20T10:00:00Z", 3))
                      for n in range(4)})
    monkeypatch.setenv("SEGMETRO_READER_PROCESS", reader_process)
    fetch = stores._fetch
    fs, bucket, _ = s3

    def gone_after_listing(object_url: str) -> bytes:
        if object_url.endswith("/2.jsonl"):  # deleted after it was listed
            fs.rm(f"{bucket}/day/2.jsonl")
        return fetch(object_url)

    monkeypatch.setattr(stores, "_fetch", gone_after_listing)
    result = run("send", "--dry-run", "--now", NOW, "--json", "-q", f"{url}/day")
    found = orjson.loads(result.stdout)
    assert result.exit_code == 70
    assert found["error"].startswith(f"{url}/day/2.jsonl") and "gone" in found["error"]
    assert found["records"] == 6  # the two objects before it, each record accounted for
    assert "Traceback" not in result.stderr


def test_the_prefetcher_holds_no_more_than_its_budget(monkeypatch):
    from segmetro.sources import InputFile

    held, peak = [0], [0]
    sizes = {f"s3://b/{n}": size for n, size in enumerate([300, 500, 200, 900, 100, 400] * 5)}

    def fetch(url: str) -> bytes:
        held[0] += sizes[url]
        peak[0] = max(peak[0], held[0])
        return b"x" * sizes[url]

    monkeypatch.setattr(stores, "_fetch", fetch)
    monkeypatch.setattr(stores, "PREFETCH_BUDGET", 1000)
    fetcher = stores.Prefetcher([InputFile(url, size, version="1") for url, size in sizes.items()])
    try:
        for url, size in sizes.items():
            data = fetcher.open(InputFile(url, size, version="1")).read()
            held[0] -= len(data)
            assert len(data) == size
    finally:
        fetcher.close()
    assert peak[0] <= 1000


def test_state_reads_a_file_again_when_the_window_grows_past_what_it_settled(
        run, metronome, tmp_path, write):
    export = write("export.jsonl", jsonl(*events("early", "2026-11-05T10:00:00Z", 3),
                                         *events("late", "2026-11-20T10:00:00Z", 2)))
    state = str(tmp_path / "state")
    code, first = send(run, metronome, state, export, "--since", "2026-11-15")
    assert first["sent"] == 2 and first["outside_window"] == 3
    # a later --since is inside what was settled: nothing to read
    code, second = send(run, metronome, state, export, "--since", "2026-11-16")
    assert second["records"] == 0
    assert second["checkpoint"]["files finished earlier, skipped"] == 1
    # an earlier one reaches events the first run settled without sending: read again
    code, third = send(run, metronome, state, export, "--since", "2026-11-01")
    assert third["sent"] == 5 and third["outside_window"] == 0
    assert any(key.startswith("files read again") for key in third["checkpoint"])
    assert sorted(set(stored_ids(tmp_path))) == sorted(
        [f"early-{i}" for i in range(3)] + [f"late-{i}" for i in range(2)])
    code, fourth = send(run, metronome, state, export)  # no window: wider still
    assert fourth["records"] == 5
    code, fifth = send(run, metronome, state, export, "--since", "2026-11-01")
    assert fifth["records"] == 0


@pytest.mark.parametrize("store_name", ["s3", "gcs"])
def test_inspect_and_map_read_objects_and_the_window(store_name, request, run):
    url = upload(request.getfixturevalue(store_name), segment_layout())
    result = run("inspect", f"{url}/segment-logs", "--json", "--since", "2026-11-20")
    found = orjson.loads(result.stdout)
    assert result.exit_code == 0
    assert [g["records"] for g in found["groups"]] == [3 + 2 + 4]  # by the Segment timestamp
    assert found["unreadable"] == {"invalid-json": 1}
    result = run("map", f"{url}/segment-logs", "--now", NOW, "--until", "2026-11-02", "-q")
    ids = sorted(orjson.loads(line)["transaction_id"] for line in result.stdout.splitlines())
    assert ids == sorted(["a-late"] + [f"old-{i}" for i in range(5)])


class _Refusing:
    """A loopback HTTP server answering every request as GCS does to a refused credential."""

    def __init__(self, status: int):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                body = orjson.dumps({"error": {"code": status, "message": "caller does not "
                                               "have storage.objects.list access"}})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status", [401, 403])
def test_gcs_refusing_the_credentials_is_exit_3(status, run, monkeypatch):
    refusing = _Refusing(status)
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{refusing.port}")
        result = run("send", "--dry-run", "--json", "gs://private-archive/segment-logs")
    finally:
        refusing.close()
    assert result.exit_code == 3, result.stderr
    assert "access refused by the store" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_store_is_exit_3(run, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    result = run("send", "--dry-run", "s3://archive/segment-logs")
    assert result.exit_code == 3 and "cannot be reached" in result.stderr


def test_outside_the_window_is_counted_per_mapping_when_a_record_fans_out(run, write):
    from tests.conftest import ROOT

    export = write("reports.jsonl", jsonl(*[
        track(n, event="Report Generated", timestamp=stamp, properties={"pages": pages})
        for n, (stamp, pages) in enumerate([("2026-11-02T10:00:00Z", 3),
                                            ("2026-11-03T10:00:00Z", 0),
                                            ("2026-11-20T10:00:00Z", 2)])]))
    code, found = summary(run, export, "-m", ROOT / "mappings" / "fan-out.yaml",
                          "--since", "2026-11-10")
    assert found["records"] == 3 and found["events"] == 2
    assert found["outside_window"] == 3
    assert found["outside_window_by_mapping"] == {"Report generated": 2, "Report pages": 1}
    text = run("send", "--dry-run", "--now", NOW, export, "-m",
               ROOT / "mappings" / "fan-out.yaml", "--since", "2026-11-10").stdout
    assert "outside            3  events outside the window" in text
    assert "2  Report generated" in text and "1  Report pages" in text
