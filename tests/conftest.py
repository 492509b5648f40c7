import os
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from segmetro.cli import cli

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "segment-export.jsonl"
SAMPLE_NOW = "2026-11-25T00:00:00Z"
# The three events of Segment's own Metronome (Actions) destination tests (lines 27-29 of the
# shared segment-doc-samples.jsonl), kept here so the tests need nothing outside the repository.
SEGMENT_METRONOME_TESTS = ROOT / "tests" / "data" / "segment-metronome-tests.jsonl"


def track(n: int = 1, **overrides) -> dict:
    event = {
        "type": "track",
        "event": "API Call",
        "messageId": f"msg-{n}",
        "userId": f"user-{n}",
        "timestamp": "2026-11-20T10:00:00.000Z",
        "context": {"groupId": "acct_1"},
        "properties": {"tokens": n},
    }
    event.update(overrides)
    return event


def jsonl(*records) -> bytes:
    return b"".join(
        (r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in records
    )


@pytest.fixture
def write(tmp_path):
    def write(name: str, content: bytes | str) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return str(path)

    return write


@pytest.fixture
def run(tmp_path, monkeypatch):
    """Invoke the CLI in tmp_path; rejects default to a file there."""
    monkeypatch.chdir(tmp_path)

    def run(*args, input=None):
        runner = CliRunner()
        return runner.invoke(cli, [str(a) for a in args], input=input,
                             catch_exceptions=False)

    return run


def read_jsonl(path) -> list:
    with open(path, "rb") as handle:
        return [orjson.loads(line) for line in handle if line.strip()]


def rejects_in(directory) -> list[str]:
    return sorted(p for p in os.listdir(directory) if p.startswith("segmetro-rejects-"))


@pytest.fixture(autouse=True)
def fresh_secrets(monkeypatch):
    """Tokens registered for scrubbing belong to one process run: one test's must not mask
    another's text."""
    from segmetro import redact

    monkeypatch.setattr(redact, "_forms", [])
