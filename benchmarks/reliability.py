"""The README's reliability figures, from the probe tests themselves: what bad input was tried, what came
of it.

Runs the probe tests (malformed configs, CLI probes, damaged files, kills) with ``NNXAI_PROBE_LOG`` set, so
that each test records what it tried (``tests/conftest.py``: ``probes.record``), and writes the counts into
the README's ``reliability`` block.  Fails (exit 1) if any probe test fails: the figures are only written
from a passing run.

    .venv/bin/python benchmarks/reliability.py            # ~1-2 min; rewrites the README block
    .venv/bin/python benchmarks/reliability.py --print    # print the table only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _readme import write_block  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_config_malformed.py", "tests/test_cli_errors.py", "tests/test_integrity.py",
         "tests/test_interrupts.py"]
COMMAND = "python benchmarks/reliability.py"


def run_probes() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "probes.json"
        env = {**os.environ, "NNXAI_PROBE_LOG": str(log)}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS], cwd=ROOT,
                              env=env)
        if done.returncode != 0 or not log.is_file():
            raise SystemExit(f"probe tests failed (exit {done.returncode}); no figures written")
        return json.loads(log.read_text())["probes"]


def table(rows: list[dict]) -> str:
    by_kind: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for row in rows:
        by_kind[row["kind"]].append((row["outcome"], row["count"]))
    lines = ["| bad input tried | count | what happened |", "|---|---|---|"]
    for kind, outcomes in by_kind.items():
        total = sum(n for _, n in outcomes)
        lines.append(f"| {kind} | {total} | " + "; ".join(f"{n} {o}" for o, n in outcomes) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--print", action="store_true", help="print the table, leave the README alone")
    args = parser.parse_args(argv)
    text = table(run_probes())
    print(text)
    if not args.print:
        write_block("reliability", text + f"\n\nRerun: `{COMMAND}` (runs {', '.join(TESTS)}).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
