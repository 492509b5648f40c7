"""Shards: N segmetro processes, each taking a disjoint part of the inputs, together all of them.

The batch engines backfills already run on give each process its index: a Kubernetes Indexed Job
(``JOB_COMPLETION_INDEX``) or an AWS Batch array job (``AWS_BATCH_JOB_ARRAY_INDEX``); the count
comes from ``--shards N`` or ``SEGMETRO_SHARDS``. ``--shard K/N`` names both.

The partition is deterministic (the same listing gives the same parts on every machine and run)
and balanced by size: files in order of size, largest first (ties by path), each to the shard
with the fewest bytes so far (ties to the lowest index), the classic LPT schedule.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from segmetro.sources import STDIN, InputFile
from segmetro.status import ConfigError

INDEX_VARIABLES = ("JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX")


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based, as Kubernetes and AWS Batch count
    count: int

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def directory(self) -> str:
        """This shard's subdirectory of a --state directory."""
        return f"shard-{self.index}-of-{self.count}"


def resolve(shard: str | None, shards: int | None, environ=os.environ) -> Shard | None:
    """``--shard K/N``; else K from the batch engine's variable when N is given."""
    if shard is not None:
        try:
            index_text, count_text = shard.split("/")
            index, count = int(index_text), int(count_text)
        except ValueError:
            raise ConfigError(f"--shard {shard}: write K/N, e.g. 0/4 (K counts from 0)") from None
        return _checked(index, count, "--shard")
    if shards is None:
        text = environ.get("SEGMETRO_SHARDS")
        if not text:
            return None
        try:
            shards = int(text)
        except ValueError:
            raise ConfigError(f"SEGMETRO_SHARDS={text!r} is not a number") from None
    for name in INDEX_VARIABLES:
        if environ.get(name, "") != "":
            try:
                return _checked(int(environ[name]), shards, name)
            except ValueError:
                raise ConfigError(f"{name}={environ[name]!r} is not a number") from None
    raise ConfigError(f"{shards} shards, but which is this one? Pass --shard K/{shards}, or run "
                      f"where {' or '.join(INDEX_VARIABLES)} is set")


def _checked(index: int, count: int, where: str) -> Shard:
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"{where}: shard {index} of {count} does not exist (K is 0 to N-1)")
    return Shard(index, count)


def partition(files: list[InputFile], shard: Shard) -> list[InputFile]:
    """This shard's files, in their listing order."""
    if any(f.path == STDIN for f in files):
        raise ConfigError("stdin cannot be split into shards: give files or directories")
    loads = [0] * shard.count
    owner: dict[str, int] = {}
    for source in sorted(files, key=lambda f: (-(f.size or 0), f.path)):
        target = min(range(shard.count), key=lambda i: (loads[i], i))
        owner[source.path] = target
        loads[target] += source.size or 0
    return [f for f in files if owner[f.path] == shard.index]
