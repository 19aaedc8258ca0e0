"""Which reported numbers leave their stated intervals when the run is repeated (issue 14, point 1).

Every number the README and ``paper/results.md`` report as a mean over inputs carries a 95% bootstrap
interval over those inputs (``ci_low``, ``ci_high`` in ``data/metrics/all.csv``).  That interval covers the
sampling of the inputs, not the run's other sources of variation (CPU kernels that differ across machines,
thread counts, library versions).  This compares a reference run with a rerun of the same profile --
another machine, another day -- and reports, per metric, how many of the rerun's values fall outside the
reference's interval, how many pairs of intervals do not even overlap, and how many values without an
interval (counts, p-values) changed at all.

    .venv/bin/python benchmarks/reproducibility.py --reference RUN_A              # reruns the profile from nothing
    .venv/bin/python benchmarks/reproducibility.py --reference RUN_A --rerun RUN_B
    .venv/bin/python benchmarks/reproducibility.py ... --csv benchmarks/results/reproducibility.csv
    .venv/bin/python benchmarks/reproducibility.py ... --readme "how the rerun differs"   # the README's block

``RUN_A``/``RUN_B`` are run folders (``benchmarks/budget.py`` keeps them).  The exit status is 0 whatever is
found: a number that moves is a result to report, not a failure.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: Values without an interval count as changed beyond this relative difference (float rounding is not a change).
RELATIVE_TOLERANCE = 1e-9


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def read(run: Path) -> dict[tuple[str, str, str, str], dict]:
    """``all.csv`` of a run folder by (dataset, model, method, metric)."""
    path = Path(run) / "data" / "metrics" / "all.csv"
    if not path.is_file():
        raise SystemExit(f"no {path}: pass a finished run's folder (benchmarks/budget.py keeps them)")
    with path.open() as fh:
        return {(r["dataset"], r["model"], r["method"], r["metric"]): r for r in csv.DictReader(fh)}


def compare(reference: dict, rerun: dict) -> list[dict]:
    """One row per key both runs report: the two values, the reference's interval and what happened.

    ``status``: ``inside`` (the rerun's value lies in the reference's interval), ``outside`` (it does not,
    but the two intervals overlap), ``disjoint`` (the intervals do not overlap), ``same`` / ``changed``
    (a value without an interval, equal to rounding or not), ``undefined`` (NaN in either run).
    """
    rows = []
    for key in sorted(set(reference) & set(rerun)):
        a, b = reference[key], rerun[key]
        va, vb = _number(a["value"]), _number(b["value"])
        la, ha = _number(a.get("ci_low")), _number(a.get("ci_high"))
        lb, hb = _number(b.get("ci_low")), _number(b.get("ci_high"))
        if math.isnan(va) or math.isnan(vb):
            status = "undefined"
        elif math.isnan(la) or math.isnan(ha):
            status = "same" if abs(va - vb) <= RELATIVE_TOLERANCE * max(1.0, abs(va), abs(vb)) else "changed"
        elif la <= vb <= ha:
            status = "inside"
        elif not (math.isnan(lb) or math.isnan(hb)) and (hb < la or lb > ha):
            status = "disjoint"
        else:
            status = "outside"
        rows.append({"dataset": key[0], "model": key[1], "method": key[2], "metric": key[3], "reference": va,
                     "rerun": vb, "ci_low": la, "ci_high": ha, "status": status})
    return rows


def summary(rows: list[dict]) -> dict[str, dict[str, int]]:
    """Counts of each status per metric family (the part of the key before the first dot)."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        out[row["metric"].split(".")[0]][row["status"]] += 1
    return {family: dict(counts) for family, counts in sorted(out.items())}


def report(rows: list[dict]) -> str:
    statuses = ("inside", "outside", "disjoint", "same", "changed", "undefined")
    with_interval = [r for r in rows if r["status"] in ("inside", "outside", "disjoint")]
    left = [r for r in with_interval if r["status"] != "inside"]
    lines = [f"{len(rows)} values in both runs; {len(with_interval)} with a 95% interval in the reference, "
             f"{len(left)} of them outside it in the rerun "
             f"({sum(r['status'] == 'disjoint' for r in rows)} with disjoint intervals); "
             f"{sum(r['status'] == 'changed' for r in rows)} of the values without an interval changed.", "",
             "| metric | " + " | ".join(statuses) + " |", "|---|" + "---|" * len(statuses)]
    for family, counts in summary(rows).items():
        lines.append(f"| {family} | " + " | ".join(str(counts.get(s, 0)) for s in statuses) + " |")
    worst = sorted(left, key=lambda r: -abs(r["rerun"] - r["reference"]) / max(r["ci_high"] - r["ci_low"], 1e-12))
    if worst:
        lines += ["", "Furthest outside their interval (in interval widths):", ""]
        lines += [f"- {r['dataset']}/{r['model']}/{r['method']} `{r['metric']}`: {r['reference']:.4g} "
                  f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}] → {r['rerun']:.4g}" for r in worst[:15]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, required=True, help="a finished run's folder")
    parser.add_argument("--rerun", type=Path, help="a second run of the same profile (default: run it now)")
    parser.add_argument("--profile", default="default", help="the profile to rerun when --rerun is not given")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--csv", type=Path, help="write every compared value and its status here")
    parser.add_argument("--readme", metavar="NOTE", help="also write the report to the README's block "
                        "'reproducibility', headed by the two runs' provenance and NOTE (how the rerun differs)")
    args = parser.parse_args(argv)
    reference = read(args.reference)
    if args.rerun is None:
        from budget import run

        args.rerun, _ = run(args.profile, args.cores)
        print(f"rerun folder: {args.rerun}")
    rows = compare(reference, read(args.rerun))
    text = report(rows)
    print(text)
    if args.readme is not None:
        from _readme import write_block

        from nnxai.report.results import provenance

        head = (f"Reference run: {provenance(args.reference)}.  Rerun: {provenance(args.rerun)}.  "
                f"{args.readme.strip()}")
        write_block("reproducibility", head + "\n\n" + text)
    if args.csv is not None:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["status"], lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
