"""Regenerate samples/segment-export.jsonl: python samples/make_sample.py > samples/segment-export.jsonl

A small, realistic Segment export (seeded, so the file is the same every time) recorded as if
exported on 2026-11-25. Its timestamps would age out of Metronome's 34-day window, so the README
demo pins the clock with --now 2026-11-25T00:00:00Z (SAMPLE_NOW below): the demo gives the same
result a year from now.
"""

import json
import random
from datetime import datetime, timedelta, timezone

SAMPLE_NOW = datetime(2026, 11, 25, tzinfo=timezone.utc)
rng = random.Random(20261125)
ACCOUNTS = ["acct_acme", "acct_globex", "acct_initech", "acct_umbrella", "acct_hooli"]
USERS = [f"user_{n:03d}" for n in range(40)]
TRACK = [
    ("API Call", lambda: {"endpoint": rng.choice(["/v1/search", "/v1/embed", "/v1/chat"]),
                          "latency_ms": rng.randint(20, 900), "status": 200}),
    ("Tokens Used", lambda: {"model": rng.choice(["small", "large"]),
                             "tokens": rng.randint(100, 50_000), "cached": rng.random() < 0.2}),
    ("Report Generated", lambda: {"format": rng.choice(["pdf", "csv"]), "pages": rng.randint(1, 40)}),
    ("Seat Added", lambda: {"seat_type": rng.choice(["editor", "viewer"]), "plan": {"name": "team", "tier": 2}}),
]


def stamp(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def base(kind, n):
    moment = SAMPLE_NOW - timedelta(days=rng.uniform(0.1, 30), seconds=rng.randint(0, 86400))
    user = rng.choice(USERS)
    account = ACCOUNTS[USERS.index(user) % len(ACCOUNTS)]
    event = {
        "type": kind,
        "messageId": f"ajs-next-{n:05d}-{rng.getrandbits(48):012x}",
        "userId": user,
        "anonymousId": f"anon-{rng.getrandbits(32):08x}",
        "timestamp": stamp(moment),
        "receivedAt": stamp(moment + timedelta(seconds=1)),
        "sentAt": stamp(moment),
        "context": {
            "library": {"name": "analytics.js", "version": "next-1.70.0"},
            "ip": f"203.0.113.{rng.randint(1, 254)}",
            "traits": {"account_id": account},
            "page": {"path": "/app", "url": "https://app.example.com/app", "title": "App"},
        },
        "integrations": {},
    }
    if rng.random() < 0.92:
        event["context"]["groupId"] = account
    return event


def records():
    n = 0
    for _ in range(300):
        n += 1
        roll = rng.random()
        if roll < 0.70:
            event = base("track", n)
            name, props = rng.choice(TRACK)
            event["event"], event["properties"] = name, props()
        elif roll < 0.82:
            event = base("page", n)
            event["name"] = rng.choice(["Dashboard", "Billing", "Settings"])
            event["properties"] = {"path": "/app/" + event["name"].lower()}
        elif roll < 0.92:
            event = base("identify", n)
            event["traits"] = {"email": f"{event['userId']}@example.com", "plan": "team"}
        elif roll < 0.97:
            event = base("group", n)
            event["groupId"] = event["context"]["traits"]["account_id"]
            event["traits"] = {"name": event["groupId"].removeprefix("acct_").title()}
        else:
            event = base("alias", n)
            event["previousId"] = event["anonymousId"]
        yield json.dumps(event, separators=(",", ":"))


def quirks():
    """Lines as hand-massaged and replayed exports have them."""
    old = base("track", 901)
    old.update(event="API Call", timestamp="2026-09-01T10:00:00.000Z",
               properties={"endpoint": "/v1/search"})
    nanos = base("track", 902)
    nanos.update(event="Tokens Used", timestamp="2026-11-20T08:15:42.862826855Z",
                 properties={"model": "large", "tokens": 1200})
    epoch = base("track", 903)
    epoch.update(event="Tokens Used", timestamp=1795154400000, properties={"tokens": 75})
    offset = base("track", 904)
    offset.update(event="API Call", timestamp="2026-11-21 09:30:00.123456+01:00",
                  properties={"endpoint": "/v1/chat"})
    garbage = base("track", 905)
    garbage.update(event="API Call", timestamp="last tuesday", properties={})
    envelope = {
        "batch": [
            {"type": "track", "event": "API Call", "messageId": "batch-item-1",
             "userId": "user_001", "timestamp": "2026-11-22T12:00:00.000Z",
             "properties": {"endpoint": "/v1/embed"}},
            {"type": "track", "event": "Tokens Used", "messageId": "batch-item-2",
             "userId": "user_001", "timestamp": "2026-11-22T12:00:01.000Z",
             "properties": {"tokens": 512}},
        ],
        "context": {"groupId": "acct_globex", "library": {"name": "analytics-python"}},
        "sentAt": "2026-11-22T12:00:02.000Z",
    }
    yield from (json.dumps(e) for e in (old, nanos, epoch, offset, garbage, envelope))
    yield ""  # a blank line
    yield '{"type": "track", "event": "API Call", "messageId": "cut-off-mid-write"'
    yield '["not", "an", "object"]'


def main():
    lines = list(records())
    # The same event twice, as replays and overlapping files give.
    replayed = next(line for line in lines[10:] if '"type":"track"' in line and "groupId" in line)
    lines.insert(200, replayed)
    lines[5:5] = list(quirks())
    print("\ufeff" + lines[0], end="\r\n")  # a UTF-8 BOM and a CRLF line end
    print("\n".join(lines[1:]), end="")  # and no final newline


if __name__ == "__main__":
    main()
