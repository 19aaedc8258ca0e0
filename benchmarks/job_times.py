"""Where a workflow run spent its time: sums the per-job records Snakemake writes under `logs/benchmarks/`.

Every train, explain and evaluate job of the Snakefile has a ``benchmark:`` file (seconds, peak memory).
After a run (any profile), this prints the job seconds per stage, per explanation type of the survey
(attribution, hidden semantics, rules, examples), per method summed over models, and the costliest jobs.
Job seconds add up over jobs that ran side by side, so their total exceeds the run's wall time on >1 core.

    .venv/bin/python benchmarks/job_times.py                 # in the directory the workflow ran in
    .venv/bin/python benchmarks/job_times.py --root RUN_DIR --top 20
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

from nnxai import registry


def read_jobs(root: Path) -> list[dict]:
    """One row per benchmark file: stage, dataset, model, method ("" for train/evaluate), seconds, MiB."""
    base = root / "logs" / "benchmarks"
    if not base.is_dir():
        raise SystemExit(f"no {base}: run the workflow there first (snakemake --cores 2), or pass --root")
    jobs = []
    for path in sorted(base.rglob("*.tsv")):
        parts = path.relative_to(base).with_suffix("").parts
        stage, dataset = parts[0], parts[1]
        model = parts[2] if len(parts) > 2 else ""           # prepare jobs: one per data set
        method = parts[3] if len(parts) > 3 else ""        # explain and evaluate jobs: one per method
        with path.open() as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        rss = row.get("max_rss", "NA")
        jobs.append({"stage": stage, "dataset": dataset, "model": model, "method": method,
                     "seconds": float(row["s"]), "mib": float(rss) if rss not in ("NA", "-") else float("nan")})
    return jobs


def explanation_type(method_id: str) -> str:
    try:
        return registry.spec(method_id).explanation_type.value
    except KeyError:
        return "unregistered"


def print_sums(title: str, sums: dict[str, float], counts: dict[str, int], limit: int | None = None) -> None:
    print(f"\n{title}")
    rows = sorted(sums.items(), key=lambda kv: -kv[1])[:limit]
    width = max((len(k) for k, _ in rows), default=5)
    for key, seconds in rows:
        print(f"  {key:<{width}}  {seconds:9.1f} s  ({counts[key]} jobs)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."), help="directory the workflow ran in (default: .)")
    parser.add_argument("--top", type=int, default=10, help="how many of the costliest jobs to list (default 10)")
    args = parser.parse_args(argv)
    jobs = read_jobs(args.root)
    if not jobs:
        raise SystemExit(f"{args.root / 'logs/benchmarks'} holds no job records yet")

    groups = {"stage": lambda j: j["stage"],
              "explanation type (explain jobs)": lambda j: explanation_type(j["method"]) if j["stage"] == "explain" else None,
              "method, summed over models (explain jobs)": lambda j: j["method"] if j["stage"] == "explain" else None,
              "method, summed over models (evaluate jobs)": lambda j: (j["method"] if j["stage"] == "evaluate"
                                                                      and j["method"] != "model" else None),
              "dataset (all jobs)": lambda j: j["dataset"]}
    total = sum(j["seconds"] for j in jobs)
    print(f"{len(jobs)} jobs, {total:.1f} s of job time ({total / 60:.1f} min) under {args.root / 'logs/benchmarks'}")
    for title, key_of in groups.items():
        sums, counts = defaultdict(float), defaultdict(int)
        for job in jobs:
            key = key_of(job)
            if key is not None:
                sums[key] += job["seconds"]
                counts[key] += 1
        print_sums(f"by {title}:", sums, counts)
    print(f"\ncostliest {args.top} jobs:")
    for job in sorted(jobs, key=lambda j: -j["seconds"])[:args.top]:
        name = "/".join(p for p in (job["stage"], job["dataset"], job["model"], job["method"]) if p)
        print(f"  {name:<60}  {job['seconds']:8.1f} s  {job['mib']:7.0f} MiB")


if __name__ == "__main__":
    main()
