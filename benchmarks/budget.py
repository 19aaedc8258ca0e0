"""The whole run against its time budget (issue 10): run the DAG from nothing in a fresh folder with
``snakemake --cores 2``, time it, and write the README's figures of what the run produced and how long it
took (the README's block ``<profile>-run``).

    .venv/bin/python benchmarks/budget.py                        # default profile: budget 30 min
    .venv/bin/python benchmarks/budget.py --profile smoke        # smoke profile: budget 3 min
    .venv/bin/python benchmarks/budget.py --root RUN             # summarise a finished run again (its wall time
                                                                 # is kept in RUN/wall_seconds.txt)
    .venv/bin/python benchmarks/budget.py --print                # print only, leave the README alone

The run folder is kept (its path is printed) so that its results can be read and its jobs summed again
(``benchmarks/job_times.py --root RUN``).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _readme import write_block  # noqa: E402
from job_times import read_jobs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = {"default": 30 * 60, "smoke": 3 * 60}
WALL_FILE = "wall_seconds.txt"   #: the run's measured wall time, kept in its folder
PROFILE_FILE = "profile.txt"     #: the profile it ran, kept in its folder (``--root`` writes that profile's block)


def run(profile: str, cores: int) -> tuple[Path, float]:
    """A complete run of ``profile`` in a new folder: (folder, wall seconds)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"nnxai-{profile}-run-"))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--cores", str(cores), "--keep-going", "--config", f"profile={profile}", "--quiet", "progress"]
    print(f"running {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the run failed (exit {done.returncode}) after {wall:.0f} s; see {workdir}/logs")
    (workdir / WALL_FILE).write_text(f"{wall:.1f}\n")
    (workdir / PROFILE_FILE).write_text(f"{profile}\n")
    return workdir, wall


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(round(seconds % 60)):02d} s"


def summary(workdir: Path, wall: float, profile: str, cores: int) -> str:
    jobs = read_jobs(workdir)
    per_stage, count = defaultdict(float), defaultdict(int)
    for job in jobs:
        per_stage[job["stage"]] += job["seconds"]
        count[job["stage"]] += 1
    with (workdir / "data/metrics/all.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    cells = {(r["dataset"], r["model"], r["method"]) for r in rows if r["method"] != "model"}
    datasets = sorted({r["dataset"] for r in rows})
    models = list((workdir / "data/checkpoints").glob("*/*.pt"))
    tables = sorted(p.name for p in (workdir / "paper/tables").glob("*.md"))
    figures = sorted(p.name for p in (workdir / "paper/figures").glob("*.png"))
    budget = BUDGETS.get(profile)
    verdict = (f"budget {minutes(budget)}: {minutes(budget - wall)} left" if budget and wall <= budget
               else f"budget {minutes(budget)}: OVER by {minutes(wall - budget)}" if budget else "no budget set")
    when = datetime.date.today().isoformat()
    lines = [f"`snakemake --cores {cores} --config profile={profile}` from nothing took **{minutes(wall)}** "
             f"({verdict}) on this machine ({platform.machine()}, {os.cpu_count()} cores; {when}). It prepared "
             f"{len(datasets)} data sets ({', '.join(datasets)}), trained {len(models)} models, wrote "
             f"{len(cells)} explanations, {len(rows)} rows of `data/metrics/all.csv`, {len(tables)} tables and "
             f"{len(figures)} figures.", "",
             "| stage | jobs | job time |", "|---|---|---|"]
    lines += [f"| {stage} | {count[stage]} | {minutes(per_stage[stage])} |" for stage in sorted(per_stage)]
    lines += ["", "Job time adds up over jobs that ran side by side; `benchmarks/job_times.py --root RUN` "
                  "breaks it down by method and dataset."]
    return "\n".join(lines)


def run_profile(workdir: Path) -> str | None:
    """The profile a run folder was made with: its ``profile.txt``, else its folder name
    (``nnxai-<profile>-run-*``, as :func:`run` names it), else ``None``."""
    recorded = workdir / PROFILE_FILE
    if recorded.is_file():
        return recorded.read_text().strip()
    match = re.match(r"nnxai-(\w+?)-run-", workdir.resolve().name)
    return match.group(1) if match else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=["smoke", "default", "paper"],
                        help="the profile to run (default: default); with --root, the run's own (from its folder)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--root", type=Path, help="a finished run's folder (with --wall): no new run")
    parser.add_argument("--wall", type=float, help="that run's wall seconds")
    parser.add_argument("--print", action="store_true", help="print only, leave the README alone")
    args = parser.parse_args(argv)
    if args.root:
        ran = run_profile(args.root)
        if args.profile is not None and ran is not None and args.profile != ran:
            parser.error(f"--profile {args.profile}: {args.root} is a run of the {ran!r} profile")
        args.profile = args.profile or ran
        if args.profile is None:
            parser.error(f"--root {args.root}: its profile is not recorded ({PROFILE_FILE}); pass --profile")
        recorded = args.root / WALL_FILE
        if args.wall is None and not recorded.is_file():
            parser.error(f"--root needs --wall (the run's wall time in seconds): {recorded} is missing")
        workdir, wall = args.root, args.wall if args.wall is not None else float(recorded.read_text())
    else:
        args.profile = args.profile or "default"
        workdir, wall = run(args.profile, args.cores)
    text = summary(workdir, wall, args.profile, args.cores)
    print(f"\n{text}\n\nrun folder: {workdir}")
    if not args.print:
        write_block(f"{args.profile}-run", text)
    budget = BUDGETS.get(args.profile)
    return 0 if budget is None or wall <= budget else 1


if __name__ == "__main__":
    raise SystemExit(main())
