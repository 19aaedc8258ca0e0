"""Snakemake's scheduling rounds for many short jobs, as Snakemake ships and as the Snakefile runs it.

Runs a one-rule workflow of ``--jobs`` jobs (each ``sleep --sleep`` seconds) on ``--cores`` cores twice,
both with the greedy job selector:

- *snakemake*: ``--scheduler greedy``, Snakemake's job scheduler as shipped;
- *nnxai*: the Snakefile's ``onstart`` (:func:`nnxai.scheduling.prefer_greedy`), which also sizes each
  job's inputs once and keeps one re-evaluation timer pending at most.

For each it counts the scheduling rounds (job selections), the re-evaluation timers started, the threads
alive at the end and the Snakemake process's CPU seconds.  The jobs are the same, so every extra round
and CPU second is the scheduler's.  Prints a Markdown table.

    .venv/bin/python benchmarks/scheduler_rounds.py [--jobs 1000 --sleep 0.3 --cores 2] [--readme]

``--readme`` writes the table into the README's block ``scheduler-rounds`` (about 5 min at the defaults).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SNAKEFILE = """
import json, resource, threading
from nnxai.scheduling import prefer_greedy

counts = {{"rounds": 0, "timers": 0}}

onstart:
    scheduler = workflow.scheduler
    start_timer, select = scheduler._schedule_reevalutation, scheduler.job_selector

    def counted_timer(delay):
        counts["timers"] += 1
        start_timer(delay)

    def counted_select(jobs):
        counts["rounds"] += 1
        return select(jobs)

    scheduler._schedule_reevalutation, scheduler.job_selector = counted_timer, counted_select
    if {patched}:
        prefer_greedy(workflow, argv=["snakemake"])

onsuccess:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    counts.update(threads=threading.active_count(), cpu_s=usage.ru_utime + usage.ru_stime)
    open("counts.json", "w").write(json.dumps(counts))

rule all:
    input: expand("out/{{i}}.txt", i=range({jobs}))

rule one:
    output: "out/{{i}}.txt"
    shell: "sleep {sleep}; touch {{output}}"
"""


def run(patched: bool, jobs: int, sleep: float, cores: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="nnxai-rounds-") as tmp:
        work = Path(tmp)
        (work / "Snakefile").write_text(SNAKEFILE.format(patched=patched, jobs=jobs, sleep=sleep))
        cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--quiet", "all"]
        if not patched:
            cmd += ["--scheduler", "greedy"]
        env = {"PYTHONPATH": str(ROOT / "src"), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
        start = time.perf_counter()
        subprocess.run(cmd, cwd=work, env=env, check=True, capture_output=True)
        counts = json.loads((work / "counts.json").read_text())
        counts["wall_s"] = time.perf_counter() - start
        return counts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs in the workflow (default 1000)")
    parser.add_argument("--sleep", type=float, default=0.3, help="seconds each job sleeps (default 0.3)")
    parser.add_argument("--cores", type=int, default=2, help="--cores for Snakemake (default 2)")
    parser.add_argument("--readme", action="store_true", help="write the table into the README's block")
    args = parser.parse_args(argv)
    lines = [f"{args.jobs} jobs of `sleep {args.sleep}` on {args.cores} cores, greedy selector in both rows "
             f"(`benchmarks/scheduler_rounds.py`, {platform.machine()}, {date.today().isoformat()}):", "",
             "| scheduler | scheduling rounds | timers started | threads at the end | Snakemake CPU s | wall s |",
             "|---|---:|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    for name, patched in (("Snakemake as shipped (`--scheduler greedy`)", False), ("the Snakefile's `onstart`", True)):
        c = run(patched, args.jobs, args.sleep, args.cores)
        lines.append(f"| {name} | {c['rounds']:,} | {c['timers']:,} | {c['threads']} | {c['cpu_s']:.1f} "
                     f"| {c['wall_s']:.1f} |")
        print(lines[-1], flush=True)
    if args.readme:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _readme import write_block

        write_block("scheduler-rounds", "\n".join(lines))


if __name__ == "__main__":
    main()
