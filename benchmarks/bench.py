"""segmetro's benchmarks: one command, every measurement side by side.

    python benchmarks/bench.py                 # the full run (about 11 minutes on 2 cores)
    python benchmarks/bench.py --quick         # smaller inputs, for a smoke test
    python benchmarks/bench.py --only map,send # some parts only

Parts:
  map       segmetro map (default mapping) vs a minimal hand-written orjson loop doing the same
            mapping, timestamp normalisation and checks (the practical limit in Python) vs jq -c
  send      segmetro send against the emulator (separate process) at 0 ms and 50 ms latency, and
            at 50 ms with a fresh --state as cron runs it (the best of three each, taking turns)
            vs a sequential loop posting 100-event batches with httpx; client CPU per event, and
            the emulator's (it shares the two cores); and --rate-limit 5000 accuracy
  rss       peak RSS of `segmetro send --dry-run` at 100k and 1M events
  mappings  50 mappings with triggers vs the default single mapping
  emulator  requests/s the emulator answers for 100-event batches (raw-socket load generator)
  dedupe    bytes per distinct transaction id of the run-wide repeat check at 5 million ids, and
            its cost per event, against a Python set of the same ids
  s3        a dry run over the map export split into 200 gzipped objects in Segment's layout:
            from a local S3 server (moto, server mode, on loopback) vs the same files on disk
  shards    4 sends (two small, two large inputs) against the emulator at 50 ms sharing one
            --rate-limit-redis budget of 20,000 events/s: the combined rate while all run and
            after the two small ones finish (needs redis-server)

Output: a table on stdout and benchmarks/out/results.json. The synthetic export is seeded:
track/identify/page mix, ~840-byte events like analytics.js output with a full context.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import gzip
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
NOW = "2026-11-25T00:00:00Z"
NOW_DT = datetime(2026, 11, 25, tzinfo=timezone.utc)
TOKEN = "bench-token"
PYTHON = sys.executable


# --- the synthetic export -------------------------------------------------------------------

def spell(moment: int, roll: float) -> str:
    """A timestamp as real exports spell them: about half ``…mmmZ`` from analytics.js, the rest
    ``…ssZ`` and ``+00:00`` offsets from server libraries."""
    base = datetime.fromtimestamp(moment / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if roll < 0.5:
        return f"{base}.{moment % 1000:03d}Z"
    return base + ("Z" if roll < 0.75 else "+00:00")


def generate(path: Path, count: int, seed: int = 7, billable: float | None = None) -> Path:
    """A seeded export of ``count`` events (70 % track, 15 % identify, 15 % page). With
    ``billable``, that share of all records are "Tokens Used" tracks (the rest other events):
    an archive where few records bill. A ``.gz`` path is written gzipped."""
    if path.exists() and path.stat().st_size > 0:
        return path
    rng = random.Random(seed)
    events = ["API Call", "Tokens Used", "Report Generated", "Seat Added", "Search Performed"]
    others = [e for e in events if e != "Tokens Used"]
    base_ms = int(NOW_DT.timestamp() * 1000) - 30 * 86_400_000
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as out:
        for n in range(count):
            roll = rng.random()
            kind = "track" if roll < 0.7 else "identify" if roll < 0.85 else "page"
            moment = base_ms + rng.randrange(29 * 86_400_000)
            stamp = spell(moment, rng.random())
            account = f"acct_{rng.randrange(500):04d}"
            record = {
                "anonymousId": f"{rng.getrandbits(128):032x}",
                "context": {
                    "groupId": account,
                    "ip": f"203.0.113.{rng.randrange(1, 255)}",
                    "library": {"name": "analytics.js", "version": "next-1.70.0"},
                    "locale": "en-US",
                    "page": {"path": "/app/usage", "referrer": "https://app.example.com/",
                             "search": "", "title": "Usage", "url": "https://app.example.com/app/usage"},
                    "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
                                 "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                    "timezone": "Europe/Amsterdam",
                },
                "integrations": {},
                "messageId": f"ajs-next-{n:09d}-{rng.getrandbits(64):016x}",
                "originalTimestamp": stamp,
                "receivedAt": stamp,
                "sentAt": stamp,
                "timestamp": stamp,
                "type": kind,
                "userId": f"user_{rng.randrange(5000):05d}",
                "version": 2,
            }
            if kind == "track":
                if billable is None:
                    record["event"] = rng.choice(events)
                else:
                    record["event"] = "Tokens Used" if roll < billable else rng.choice(others)
                record["properties"] = {"tokens": rng.randrange(1, 50_000),
                                        "model": rng.choice(["small", "large"]),
                                        "region": rng.choice(["us-east-1", "eu-west-1"])}
            elif kind == "identify":
                record["traits"] = {"email": f"user{n}@example.com", "plan": "team"}
            else:
                record["name"] = "Usage"
                record["properties"] = {"path": "/app/usage", "title": "Usage"}
            out.write(orjson.dumps(record) + b"\n")
    return path


# --- helpers ----------------------------------------------------------------------------------

def timed(argv: list[str], stdout=subprocess.DEVNULL, env: dict | None = None) -> dict:
    """Run a command: wall seconds, and that process's own CPU seconds and peak RSS (MiB)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code
    if code not in (0, 1):
        raise RuntimeError(f"{' '.join(argv[:4])} exited {code}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "maxrss_mib": usage.ru_maxrss / 1024}


def peak_rss(argv: list[str]) -> float:
    """Peak RSS (MiB) of one process."""
    return timed(argv)["maxrss_mib"]


def segmetro(*args: str) -> list[str]:
    return [PYTHON, "-m", "segmetro", *args]


def best_alternating(runs: int, *argvs: list[str], envs: list[dict | None] | None = None
                     ) -> list[dict]:
    """The best run of each command (each with its environment in ``envs``), the commands
    taking turns: a ratio between them then compares runs taken minutes apart at most, not a
    slow spell of the machine's with a fast one (this machine's speed moves up to 2x within a
    benchmark run)."""
    results: list[list[dict]] = [[] for _ in argvs]
    for _ in range(runs):
        for index, argv in enumerate(argvs):
            results[index].append(timed(argv, env=envs[index] if envs else None))
    return [min(each, key=lambda r: r["wall"]) for each in results]


# --- part 1: map --------------------------------------------------------------------------------

HAND_WRITTEN = r'''
import sys, orjson
from datetime import datetime, timedelta, timezone
now = datetime(2026, 11, 25, tzinfo=timezone.utc)
earliest, latest = now - timedelta(days=34), now + timedelta(hours=24)
write = sys.stdout.buffer.write
for line in open(sys.argv[1], "rb"):
    r = orjson.loads(line)
    if r.get("type") != "track":
        continue
    context = r.get("context")
    customer = context.get("groupId") if isinstance(context, dict) else None
    txid, kind, ts = r.get("messageId"), r.get("event"), r.get("timestamp")
    if not (isinstance(txid, str) and 0 < len(txid) <= 128 and isinstance(customer, str)
            and customer and isinstance(kind, str) and kind and isinstance(ts, str)):
        continue
    moment = datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(timezone.utc)
    if not earliest <= moment <= latest:
        continue
    event = {"transaction_id": txid, "customer_id": customer, "event_type": kind,
             "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"}
    properties = r.get("properties")
    if isinstance(properties, dict):
        event["properties"] = properties
    write(orjson.dumps(event) + b"\n")
'''

# jq doing only the field mapping: no checks, no timestamp normalisation (jq cannot read the
# mixed spellings without a page of code), so it is a lower bound of jq's time.
JQ_FILTER = r"""
select(.type == "track")
| {transaction_id: .messageId, customer_id: .context.groupId, timestamp: .timestamp,
   event_type: .event, properties: .properties}
"""


def bench_map(data: Path, runs: int) -> dict:
    script = OUT / "hand_written.py"
    script.write_text(HAND_WRITTEN)
    events = sum(1 for _ in open(data, "rb"))
    ours_argv = segmetro("map", str(data), "--now", NOW, "-q", "-o", "/dev/null", "--rejects",
                         str(OUT / "map-rejects.jsonl"))
    ours, hand = best_alternating(runs, ours_argv, [PYTHON, str(script), str(data)])
    result = {"records": events, "segmetro_s": ours["wall"], "hand_written_s": hand["wall"],
              "segmetro_records_per_s": events / ours["wall"],
              "hand_written_records_per_s": events / hand["wall"],
              "ratio_to_hand_written": ours["wall"] / hand["wall"]}
    if shutil.which("jq"):  # one run of jq between two of segmetro's, the better one taken
        ours, jq, again = (timed(argv) for argv in
                           (ours_argv, ["jq", "-c", JQ_FILTER, str(data)], ours_argv))
        ours = min(ours, again, key=lambda r: r["wall"])
        result.update(jq_s=jq["wall"], jq_records_per_s=events / jq["wall"],
                      jq_over_segmetro=jq["wall"] / ours["wall"])
    return result


# --- part 2: send -------------------------------------------------------------------------------

class Emulator:
    """``segmetro emulator`` in its own process, so it does not share the client's GIL."""

    def __init__(self, *args: str):
        self.args = args

    def __enter__(self) -> "Emulator":
        self.process = subprocess.Popen(
            segmetro("emulator", "--port", "0", "--token", TOKEN, "--now", NOW, *self.args),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = self.process.stdout.readline().decode()
        self.url = line.split("listening on ", 1)[1].split()[0]
        return self

    def __exit__(self, *exc) -> None:
        cpu = _process_cpu(self.process.pid)
        self.process.terminate()
        out, _ = self.process.communicate(timeout=30)
        self.stats = json.loads(out) if out.strip() else {}
        self.stats["cpu_s"] = cpu


def _process_cpu(pid: int) -> float | None:
    """A running process's CPU seconds so far (Linux), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def valid_events(data: Path) -> int:
    return sum(1 for line in open(data, "rb") if b'"type":"track"' in line)


SEQUENTIAL = r'''
import sys, httpx, orjson
url, token, path = sys.argv[1:4]
batch, sent = [], 0
with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as client:
    def post(events):
        response = client.post(url + "/v1/ingest", content=orjson.dumps(events),
                               headers={"Content-Type": "application/json"})
        response.raise_for_status()
    for line in open(path, "rb"):
        r = orjson.loads(line)
        if r.get("type") != "track":
            continue
        batch.append({"transaction_id": r["messageId"], "customer_id": r["context"]["groupId"],
                      "event_type": r["event"], "timestamp": r["timestamp"],
                      "properties": r["properties"]})
        if len(batch) == 100:
            post(batch)
            sent += len(batch)
            batch = []
    if batch:
        post(batch)
'''


def send_once(data: Path, latency: float, *extra: str) -> dict:
    with Emulator("--latency", str(latency)) as emulator:
        run = timed(segmetro("send", str(data), "--now", NOW, "--api-token", TOKEN,
                             "--base-url", emulator.url, "-q", "--rejects",
                             str(OUT / "send-rejects.jsonl"), *extra))
    sent = emulator.stats.get("accepted", 0)
    window = emulator.stats.get("ingest_seconds") or run["wall"]
    return {"sent": sent, "wall_s": run["wall"], "events_per_s": sent / run["wall"],
            "events_per_s_while_sending": sent / window,
            "client_cpu_us_per_event": run["cpu"] / max(sent, 1) * 1e6,
            "server_cpu_us_per_event": (emulator.stats["cpu_s"] or 0) / max(sent, 1) * 1e6,
            "client_peak_rss_mib": run["maxrss_mib"]}


def bench_send(data: Path, sequential_data: Path, rate_data: Path, runs: int) -> dict:
    """segmetro's sends at 0 and 50 ms, and at 50 ms with a fresh ``--state`` (a cron job's
    send: fingerprint, checkpoint ledger, journal), take turns, ``runs`` times; the best of each
    is kept (as for ``map``: the machine's slow spells are not the code's), every run's rate
    with it."""
    result = {}
    state = OUT / "send-state"
    kinds = {"segmetro_0ms": (0, ()), "segmetro_50ms": (50, ()),
             "segmetro_50ms_state": (50, ("--state", str(state)))}
    tries: dict[str, list[dict]] = {key: [] for key in kinds}
    for _ in range(runs):
        for key, (latency, extra) in kinds.items():
            shutil.rmtree(state, ignore_errors=True)  # each run starts from nothing sent
            tries[key].append(send_once(data, latency, "--rate-limit", "0", *extra))
    shutil.rmtree(state, ignore_errors=True)
    for key, each in tries.items():
        best = max(each, key=lambda r: r["events_per_s_while_sending"])
        best["runs_events_per_s_while_sending"] = [r["events_per_s_while_sending"] for r in each]
        result[key] = best
    script = OUT / "sequential.py"
    script.write_text(SEQUENTIAL)
    with Emulator("--latency", "50") as emulator:
        run = timed([PYTHON, str(script), emulator.url, TOKEN, str(sequential_data)])
    sent = emulator.stats.get("accepted", 0)
    window = emulator.stats.get("ingest_seconds") or run["wall"]
    result["sequential_50ms"] = {"sent": sent, "wall_s": run["wall"],
                                 "events_per_s": sent / run["wall"],
                                 "events_per_s_while_sending": sent / window,
                                 "client_cpu_us_per_event": run["cpu"] / max(sent, 1) * 1e6,
                                 "server_cpu_us_per_event":
                                     (emulator.stats["cpu_s"] or 0) / max(sent, 1) * 1e6}
    result["speedup_at_50ms"] = (result["segmetro_50ms"]["events_per_s_while_sending"]
                                 / result["sequential_50ms"]["events_per_s_while_sending"])
    limited = send_once(rate_data, 50, "--rate-limit", "5000")
    result["rate_limit_5000"] = limited
    result["rate_limit_5000_error_pct"] = (limited["events_per_s_while_sending"] / 5000 - 1) * 100
    return result


# --- part 3: peak RSS -------------------------------------------------------------------------

def bench_rss(small: Path, large: Path) -> dict:
    def rss(path: Path) -> float:
        return peak_rss(segmetro("send", str(path), "--dry-run", "--now", NOW, "-q", "--rejects",
                                 str(OUT / "rss-rejects.jsonl")))

    def send_rss(path: Path) -> float:
        with Emulator() as emulator:
            return peak_rss(segmetro("send", str(path), "--now", NOW, "--api-token", TOKEN,
                                     "--base-url", emulator.url, "--rate-limit", "0", "-q",
                                     "--rejects", str(OUT / "rss-rejects.jsonl")))

    result = {"records_small": sum(1 for _ in open(small, "rb")),
              "records_large": sum(1 for _ in open(large, "rb")),
              "peak_rss_small_mib": rss(small), "peak_rss_large_mib": rss(large),
              "send_peak_rss_small_mib": send_rss(small),
              "send_peak_rss_large_mib": send_rss(large)}
    result["ratio"] = result["peak_rss_large_mib"] / result["peak_rss_small_mib"]
    result["send_ratio"] = result["send_peak_rss_large_mib"] / result["send_peak_rss_small_mib"]
    return result


# --- part 4: 50 mappings ----------------------------------------------------------------------

def fifty_mappings(path: Path) -> Path:
    names = ["API Call", "Tokens Used", "Report Generated", "Seat Added", "Search Performed"]
    items = []
    for i in range(50):
        event = names[i % len(names)] if i < 5 else f"Unused Event {i}"
        items.append(
            f"  - name: mapping {i}\n"
            f"    trigger: type = \"track\" and event = \"{event}\"\n"
            f"    fields:\n"
            f"      transaction_id: $.messageId\n"
            f"      customer_id: $.context.groupId\n"
            f"      timestamp: $.timestamp\n"
            f"      event_type: {event.lower().replace(' ', '_')}\n"
            f"      properties: $.properties\n")
    path.write_text("mappings:\n" + "".join(items))
    return path


def bench_mappings(data: Path, runs: int) -> dict:
    mapping = fifty_mappings(OUT / "fifty.yaml")
    common = ["--now", NOW, "-q", "-o", "/dev/null", "--rejects", str(OUT / "m-rejects.jsonl")]
    one, fifty = best_alternating(runs, segmetro("map", str(data), *common),
                                  segmetro("map", str(data), "-m", str(mapping), *common))
    return {"one_mapping_s": one["wall"], "fifty_mappings_s": fifty["wall"],
            "ratio": fifty["wall"] / one["wall"]}


# --- part 5: the emulator's own throughput ----------------------------------------------------

async def _load(url: str, seconds: float, connections: int) -> int:
    host, port = url.removeprefix("http://").split(":")
    done = 0
    deadline = time.monotonic() + seconds
    template = [{"transaction_id": "", "customer_id": "acct", "event_type": "api_call",
                 "timestamp": "2026-11-20T00:00:00.000Z", "properties": {"n": "1"}}] * 100

    async def worker(index: int) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection(host, int(port))
        sequence = 0
        while time.monotonic() < deadline:
            events = [dict(e, transaction_id=f"w{index}-{sequence}-{i}")
                      for i, e in enumerate(template)]
            body = orjson.dumps(events)
            writer.write(b"POST /v1/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                         + TOKEN.encode() + b"\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if length:
                await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head[:80])
            done += 1
            sequence += 1
        writer.close()

    await asyncio.gather(*(worker(i) for i in range(connections)))
    return done


def bench_emulator(seconds: float) -> dict:
    """Load from a second process so the generator's CPU is not counted against the server."""
    with Emulator() as emulator:
        code = ("import asyncio, sys; sys.path.insert(0, %r); from bench import _load; "
                "print(asyncio.run(_load(%r, %r, 16)))" % (str(HERE), emulator.url, seconds))
        started = time.perf_counter()
        out = subprocess.run([PYTHON, "-c", code], capture_output=True, check=True).stdout
        wall = time.perf_counter() - started
    requests = int(out)
    return {"requests": requests, "seconds": seconds, "wall_s": wall,
            "requests_per_s": requests / seconds,
            "events_per_s": requests * 100 / seconds,
            "server_accepted": emulator.stats.get("accepted")}


# --- part 6: the run-wide transaction id check ------------------------------------------------

def bench_dedupe(count: int) -> dict:
    """Memory per distinct id of segmetro's table and of a plain set, in fresh processes."""
    code = (
        "import resource, sys, time; sys.path.insert(0, %r)\n"
        "from segmetro.dedupe import SeenIds\n"
        "n = %d\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "kind = sys.argv[1]\n"
        "started = time.perf_counter()\n"
        "if kind == 'table':\n"
        "    seen = SeenIds()\n"
        "    for i in range(n):\n"
        "        seen.check(f'ajs-next-{i:012d}-0b3c7f1e', b'{\"event\":%%d}' %% i, i)\n"
        "    size = seen.bytes_used\n"
        "else:\n"
        "    seen = set()\n"
        "    for i in range(n):\n"
        "        seen.add(f'ajs-next-{i:012d}-0b3c7f1e')\n"
        "    size = 0\n"
        "elapsed = time.perf_counter() - started\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(size, (peak - base) * 1024, elapsed)\n" % (str(HERE.parent), count))
    out = {}
    for kind in ("table", "set"):
        size, grown, elapsed = subprocess.run([PYTHON, "-c", code, kind], capture_output=True,
                                              text=True, check=True).stdout.split()
        out[kind] = {"table_bytes": int(size), "rss_growth_bytes": int(grown),
                     "seconds": float(elapsed)}
    return {"ids": count,
            "table_bytes_per_id": out["table"]["table_bytes"] / count,
            "table_rss_bytes_per_id": out["table"]["rss_growth_bytes"] / count,
            "set_rss_bytes_per_id": out["set"]["rss_growth_bytes"] / count,
            "table_us_per_id": out["table"]["seconds"] / count * 1e6}


# --- part 8: scanning an archive where few records bill ------------------------------------------

SPARSE_MAPPING = """\
mappings:
  - name: tokens
    trigger: type = "track" and event = "Tokens Used"
    fields:
      transaction_id: $.messageId
      customer_id: $.context.groupId
      timestamp: $.timestamp
      event_type: tokens
      properties: {from: $.properties, pick: [tokens, model]}
"""


def bench_scan(data: Path, runs: int) -> dict:
    mapping = OUT / "sparse.yaml"
    mapping.write_text(SPARSE_MAPPING)
    ours, shell = best_alternating(runs, segmetro("send", str(data), "--dry-run", "--now", NOW,
                                                  "-q", "-m", str(mapping), "--rejects",
                                                  "/dev/null"),
                                   ["sh", "-c", f"zcat '{data}' | wc -l"])
    return {"segmetro_dry_run_s": ours["wall"], "zcat_wc_s": shell["wall"],
            "dry_run_over_zcat": ours["wall"] / shell["wall"]}


# --- part 7: shards sharing one rate budget in Redis ---------------------------------------------

def bench_shards(inputs: list[Path], budget: float = 20_000) -> dict:
    """``inputs``: two small exports, then two large ones, with distinct transaction ids (the
    emulator counts each id once)."""
    import socket

    import httpx

    if shutil.which("redis-server") is None:
        return {"skipped": "redis-server is not installed"}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    samples: list[tuple[float, int]] = []
    try:
        with Emulator("--latency", "50") as emulator, httpx.Client() as client:
            shards = [subprocess.Popen(segmetro(
                "send", str(path), "--now", NOW, "--api-token", TOKEN, "--base-url",
                emulator.url, "-q", "--rate-limit", str(budget), "--rate-limit-redis",
                f"redis://127.0.0.1:{port}/0", "--rejects", str(OUT / f"shard-{k}.jsonl")),
                stdout=subprocess.DEVNULL) for k, path in enumerate(inputs)]
            ended: dict[int, float] = {}
            while len(ended) < len(shards):
                now = time.monotonic()
                stats = client.get(emulator.url + "/stats").json()
                samples.append((now, stats["accepted"]))
                for k, shard in enumerate(shards):
                    if k not in ended and shard.poll() is not None:
                        ended[k] = now
                time.sleep(0.25)
    finally:
        redis.kill()
        redis.wait()

    def rate(start: float, end: float) -> float:
        inside = [(t, n) for t, n in samples if start <= t <= end]
        (t0, n0), (t1, n1) = inside[0], inside[-1]
        return (n1 - n0) / (t1 - t0)

    first_start = samples[0][0]
    small_done = max(ended[0], ended[1])
    large_done = min(ended[2], ended[3])
    all_running = rate(first_start + 2.0, min(ended[0], ended[1]) - 1.0)
    after = rate(small_done + 1.0, large_done - 1.0)
    return {"budget": budget, "all_running_events_per_s": all_running,
            "after_two_finished_events_per_s": after,
            "all_running_off_by": all_running / budget - 1,
            "after_two_finished_off_by": after / budget - 1}


# --- part 8: reading a bucket (local S3 server) -------------------------------------------------

def split_into_objects(data: Path, root: Path, objects: int = 200, days: int = 10) -> int:
    """``data``'s lines as ``objects`` gzipped files in Segment's layout under ``root``
    (segment-logs/<source>/<day epoch ms>/<n>.gz), in the export's order. Returns bytes."""
    if root.exists():
        shutil.rmtree(root)
    lines = data.read_bytes().splitlines(keepends=True)
    per_object = -(-len(lines) // objects)
    first_day = int(NOW_DT.timestamp() * 1000) - 30 * 86_400_000
    total = 0
    for n in range(objects):
        folder = root / "segment-logs" / "bench-source" / str(first_day + n * days // objects
                                                             * 86_400_000)
        folder.mkdir(parents=True, exist_ok=True)
        body = gzip.compress(b"".join(lines[n * per_object:(n + 1) * per_object]), 6)
        (folder / f"part-{n:04d}.gz").write_bytes(body)
        total += len(body)
    (root / "segment-logs" / "dummy-object.txt").write_bytes(b"")
    return total


def bench_s3(data: Path, runs: int) -> dict:
    """A dry run over an export split into 200 gzipped objects: from a local S3 server (moto in
    server mode, on loopback) and from the same objects on local disk."""
    import socket

    try:
        import s3fs
    except ImportError:
        return {"skipped": "s3fs and moto are not installed (pip install -e '.[test]')"}
    root = OUT / "bucket"
    size = split_into_objects(data, root)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": endpoint,
           "AWS_EC2_METADATA_DISABLED": "true"}
    server = subprocess.Popen([PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        fs = s3fs.S3FileSystem(key="bench", secret="bench",
                               client_kwargs={"endpoint_url": endpoint})
        fs.mkdir("bench")
        fs.put(str(root / "segment-logs"), "bench/", recursive=True)
        dry = ("send", "--dry-run", "--now", NOW, "-q", "--rejects", "/dev/null")
        local, remote = best_alternating(runs, segmetro(*dry, str(root / "segment-logs")),
                                         segmetro(*dry, "s3://bench/segment-logs"),
                                         envs=[None, env])
    finally:
        server.kill()
        server.wait()
    return {"objects": 200, "bytes": size, "local_s": local["wall"], "s3_s": remote["wall"],
            "s3_speed_of_local": local["wall"] / remote["wall"]}


# --- the run ------------------------------------------------------------------------------------

def table(results: dict) -> str:
    rows = []

    def row(name: str, value: str, target: str = "") -> None:
        rows.append(f"  {name:<52} {value:>18}  {target}")

    if "map" in results:
        m = results["map"]
        row("map: segmetro records/s", f"{m['segmetro_records_per_s']:,.0f}")
        row("map: hand-written orjson loop records/s", f"{m['hand_written_records_per_s']:,.0f}")
        row("map: segmetro time / hand-written time", f"{m['ratio_to_hand_written']:.2f}x",
            "target <= 1.3x")
        if "jq_records_per_s" in m:
            row("map: jq -c records/s", f"{m['jq_records_per_s']:,.0f}")
            row("map: jq -c (field mapping only) time / segmetro time",
                f"{m['jq_over_segmetro']:.1f}x", "target >= 4x")
    if "send" in results:
        s = results["send"]
        for key in ("segmetro_0ms", "segmetro_50ms", "segmetro_50ms_state",
                    "sequential_50ms"):
            rates = s[key].get("runs_events_per_s_while_sending", [])
            row(f"send: {key} events/s, sustained (first to last batch)"
                + (f", best of {len(rates)}" if len(rates) > 1 else ""),
                f"{s[key]['events_per_s_while_sending']:,.0f}",
                "target >= 50,000" if key.startswith("segmetro_50ms") else "")
            if len(rates) > 1:
                row(f"send: {key} every run's events/s", ", ".join(f"{r:,.0f}" for r in rates))
            row(f"send: {key} events/s, whole run with start-up",
                f"{s[key]['events_per_s']:,.0f}")
            row(f"send: {key} client CPU us/event", f"{s[key]['client_cpu_us_per_event']:.1f}")
            row(f"send: {key} emulator CPU us/event (same two cores)",
                f"{s[key]['server_cpu_us_per_event']:.1f}")
        row("send: segmetro / sequential at 50 ms", f"{s['speedup_at_50ms']:.1f}x")
        row("send: --rate-limit 5000 events/s (first to last batch)",
            f"{s['rate_limit_5000']['events_per_s_while_sending']:,.0f}", "target 5,000 +- 5 %")
        row("send: client peak RSS MiB (50 ms run)",
            f"{s['segmetro_50ms']['client_peak_rss_mib']:.0f}")
    if "rss" in results:
        r = results["rss"]
        row(f"rss: dry-run peak MiB at {r['records_small']:,} records",
            f"{r['peak_rss_small_mib']:.1f}")
        row(f"rss: dry-run peak MiB at {r['records_large']:,} records",
            f"{r['peak_rss_large_mib']:.1f}")
        row("rss: large / small", f"{r['ratio']:.2f}x",
            "the repeat check holds ~19 bytes per distinct id")
        row(f"rss: send peak MiB at {r['records_small']:,} records",
            f"{r['send_peak_rss_small_mib']:.1f}")
        row(f"rss: send peak MiB at {r['records_large']:,} records",
            f"{r['send_peak_rss_large_mib']:.1f}")
        row("rss: send large / small", f"{r['send_ratio']:.2f}x", "flat")
    if "mappings" in results:
        row("mappings: 50 mappings time / 1 mapping time", f"{results['mappings']['ratio']:.2f}x",
            "target <= 2x")
    if "emulator" in results:
        e = results["emulator"]
        row("emulator: 100-event requests/s answered", f"{e['requests_per_s']:,.0f}",
            "target >= 2,000")
    if "scan" in results:
        sc = results["scan"]
        row("scan: dry run of a gzipped 2 %-billable export, s", f"{sc['segmetro_dry_run_s']:.2f}")
        row("scan: zcat FILE | wc -l, s", f"{sc['zcat_wc_s']:.2f}")
        row("scan: dry run time / zcat | wc -l time", f"{sc['dry_run_over_zcat']:.2f}x",
            "target <= 1.0x")
    if "shards" in results and "budget" in results["shards"]:
        sh = results["shards"]
        row("shards: 4 sharing 20,000/s, combined events/s while all run",
            f"{sh['all_running_events_per_s']:,.0f}",
            f"{sh['all_running_off_by']:+.1%}, target within +-3 %")
        row("shards: combined events/s after two finished",
            f"{sh['after_two_finished_events_per_s']:,.0f}",
            f"{sh['after_two_finished_off_by']:+.1%}, target within +-3 %")
    if "s3" in results and "objects" in results["s3"]:
        b = results["s3"]
        row(f"s3: dry run over {b['objects']} gzipped objects, local disk, s",
            f"{b['local_s']:.2f}")
        row("s3: the same objects from a local S3 server, s", f"{b['s3_s']:.2f}")
        row("s3: speed from the S3 server / from disk", f"{b['s3_speed_of_local']:.0%}",
            "target >= 70 %")
    if "dedupe" in results:
        d = results["dedupe"]
        row(f"dedupe: table bytes per distinct id at {d['ids']:,}",
            f"{d['table_bytes_per_id']:.1f}", "target <= 24")
        row("dedupe: peak RSS growth per id, table / Python set of the ids",
            f"{d['table_rss_bytes_per_id'] / d['set_rss_bytes_per_id']:.2f}x")
        row("dedupe: cost per id (us, including growth)", f"{d['table_us_per_id']:.2f}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs (smoke test)")
    parser.add_argument("--only", default="map,scan,send,rss,mappings,emulator,dedupe,shards,s3",
                        help="comma-separated parts to run")
    parser.add_argument("--rss-large", type=int, default=1_000_000, metavar="N",
                        help="records in the larger RSS input (1,500,000 is about 1 GB)")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    OUT.mkdir(exist_ok=True)
    # An installed package has its bytecode; an editable checkout gets it on first import, unless
    # PYTHONDONTWRITEBYTECODE is set (as on the CI machine), when every run would compile segmetro
    # again (~0.1 s). Compile it once, as `pip install .` does.
    compileall.compile_dir(str(HERE.parent / "segmetro"), quiet=1)
    scale = 10 if args.quick else 1
    runs = 1 if args.quick else 3
    map_data = generate(OUT / f"export-{200_000 // scale}.jsonl", 200_000 // scale)
    results: dict = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                                 "cpus": os.cpu_count()},
                     "date": time.strftime("%Y-%m-%d"), "quick": args.quick}
    if "map" in parts:
        results["map"] = bench_map(map_data, runs)
    if "scan" in parts:
        results["scan"] = bench_scan(generate(OUT / f"sparse-{200_000 // scale}.jsonl.gz",
                                              200_000 // scale, seed=5, billable=0.02), runs)
    if "send" in parts:
        send_data = generate(OUT / f"export-{600_000 // scale}.jsonl", 600_000 // scale)
        seq_data = generate(OUT / f"export-{20_000 // scale}.jsonl", 20_000 // scale)
        rate_data = generate(OUT / f"export-{50_000 // scale}.jsonl", 50_000 // scale)
        results["send"] = bench_send(send_data, seq_data, rate_data, runs)
    if "rss" in parts:
        small = generate(OUT / f"export-{100_000 // scale}.jsonl", 100_000 // scale)
        count = args.rss_large // scale
        large = generate(OUT / f"export-{count}.jsonl", count)
        results["rss"] = bench_rss(small, large)
    if "mappings" in parts:
        results["mappings"] = bench_mappings(map_data, runs)
    if "emulator" in parts:
        results["emulator"] = bench_emulator(3.0 if args.quick else 10.0)
    if "dedupe" in parts:
        results["dedupe"] = bench_dedupe(5_000_000 // scale)
    if "shards" in parts:
        results["shards"] = bench_shards([
            generate(OUT / f"shard-{k}-{count // scale}.jsonl", count // scale, seed=11 + k)
            for k, count in enumerate((120_000, 120_000, 360_000, 360_000))])
    if "s3" in parts:
        results["s3"] = bench_s3(map_data, runs)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    print(f"segmetro benchmarks ({results['machine']['platform']}, Python "
          f"{results['machine']['python']}, {results['machine']['cpus']} CPUs)")
    print(table(results))
    print(f"results: {OUT / 'results.json'}")


if __name__ == "__main__":
    main()
