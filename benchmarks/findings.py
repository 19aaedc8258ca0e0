"""The README's results, from a finished run: the sections of its results document (``nnxai report results``,
:mod:`nnxai.report.results`), every number with its 95% bootstrap interval over the explained inputs.

Writes one README block per section (``<profile>-accuracy``, ``-attribution``, ``-structured``, ``-active``,
``-rules``, ``-hidden-examples``, ``-concepts``, ``-seeds``, ``-findings``) and keeps the run's whole document as
``paper/results-<profile>.md``: ``tests/test_readme_results.py`` fails if a README block differs from the
section of that file, so no result in the README is typed by hand.

    .venv/bin/python benchmarks/budget.py                          # a default run (keeps its folder), then
    .venv/bin/python benchmarks/findings.py --root RUN             # its results into the README
    .venv/bin/python benchmarks/findings.py --root RUN --print     # print only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _readme import write_block  # noqa: E402

from nnxai.io import atomic_write_text  # noqa: E402
from nnxai.report.results import SECTIONS, markdown, sections  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def snapshot_path(profile: str) -> Path:
    """The committed copy of a profile's results document, which the README's blocks must match."""
    return ROOT / "paper" / f"results-{profile}.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="a finished run's folder")
    parser.add_argument("--profile", default="default", help="the run's profile: names the README blocks")
    parser.add_argument("--print", action="store_true", help="print only, leave the README alone")
    args = parser.parse_args(argv)
    parts = sections(args.root)
    for key, _, _ in SECTIONS:
        print(f"--- {args.profile}-{key}\n{parts[key]}\n")
        if not args.print:
            write_block(f"{args.profile}-{key}", parts[key])
    if not args.print:
        atomic_write_text(snapshot_path(args.profile), markdown(args.root, parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
