"""How far `segmetro map` is from the jq target: `map` with parts of its per-record work made free.

    python benchmarks/ceiling.py              # five rounds, about a minute on 2 cores
    python benchmarks/ceiling.py --rounds 3

Each round runs, one after another on the 200k export of ``bench.py``: jq -c doing only the
field mapping, the hand-written loop of ``bench.py``, and ``segmetro map`` three ways:

  as is      the code as it is
  helpers    timestamps (``timestamps.coerce``), ``js_json`` and the parent's repeat check return
             constants: about the most that compiled helpers for those steps could give
  mapping    the mapping itself too: every line maps to the event of the first line that made
             one, so what is left is reading, cutting lines, orjson's parse and dump, the run
             columns and the pipe between the processes

It prints jq's time over each ``map``'s, round by round (each ratio compares runs seconds
apart: this machine's speed moves up to 2x within minutes). An experiment, not a product path:
the parts are replaced in this script's own process (``--free``) before segmetro's command line
runs, and the reader processes it forks inherit them.
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench  # noqa: E402 - the export, the hand-written loop, jq's filter and the timer

WAYS = ("as is", "helpers", "mapping")


def make_free(level: str) -> None:
    """Replace the parts ``level`` names with constants (see the module doc)."""
    from segmetro.mapping import model
    from segmetro.pipeline import RepeatCheck
    from segmetro.timestamps import parse_rfc3339

    inside = parse_rfc3339("2026-11-05T00:00:00.000Z")  # inside the window of bench.NOW
    model.coerce_timestamp = lambda value: (value, inside)
    model.js_json = lambda value: value
    RepeatCheck.check_run = lambda self, file, lines, ids, bodies: {}
    if level == "mapping":
        compile_mappings = model.MappingSet._compile

        def compile_constant(self):
            apply = compile_mappings(self)
            first: list = []

            def constant(record: dict) -> list:
                if first:
                    return first[0]
                results = apply(record)
                if results:
                    first.append(results)
                return results

            return constant

        model.MappingSet._compile = compile_constant


def map_argv(data: Path, way: str) -> list[str]:
    args = ["map", str(data), "--now", bench.NOW, "-q", "-o", "/dev/null",
            "--rejects", str(bench.OUT / "ceiling-rejects.jsonl")]
    if way == "as is":
        return bench.segmetro(*args)
    return [bench.PYTHON, str(Path(__file__).resolve()), "--free", way, *args]


def main() -> None:
    if sys.argv[1:2] == ["--free"]:  # one `segmetro map` with those parts free
        make_free(sys.argv[2])
        from segmetro.cli import main as segmetro_main

        sys.argv = ["segmetro", *sys.argv[3:]]
        segmetro_main()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not shutil.which("jq"):
        sys.exit("ceiling.py measures map against jq -c: install jq first (Debian: apt install jq)")
    bench.OUT.mkdir(exist_ok=True)
    compileall.compile_dir(str(HERE.parent / "segmetro"), quiet=1)  # as bench.py does
    data = bench.generate(bench.OUT / "export-200000.jsonl", 200_000)
    script = bench.OUT / "hand_written.py"
    script.write_text(bench.HAND_WRITTEN)
    commands = {"jq": ["jq", "-c", bench.JQ_FILTER, str(data)],
                "hand-written": [bench.PYTHON, str(script), str(data)],
                **{way: map_argv(data, way) for way in WAYS}}
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, argv in commands.items():
            walls[name].append(bench.timed(argv)["wall"])
    print(f"segmetro map of {data.name}, {args.rounds} rounds; seconds, each round:")
    for name, times in walls.items():
        print(f"  {name:<14} " + "  ".join(f"{t:5.2f}" for t in times))
    print("jq time / map time, each round (target >= 4x):")
    for way in WAYS:
        print(f"  {way:<14} " + "  ".join(
            f"{jq / ours:4.1f}x" for jq, ours in zip(walls["jq"], walls[way])))


if __name__ == "__main__":
    main()
