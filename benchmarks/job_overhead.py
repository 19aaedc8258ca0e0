"""Per-job overhead: what a Snakemake job spends outside its own work, with and without the worker.

Every rule of the Snakefile is one shell call ``python -m nnxai <stage> --settings '<json>' > log 2>&1``.
For the smallest real job of each stage (the ``iris`` table, one MLP, the ``gradient`` method, smoke
sizes), this runs that call the way Snakemake does (``bash -c``, the thread variables Snakemake sets,
output to a log file):

- *fresh*: ``NNXAI_NO_WORKER=1``, a new interpreter per job (imports torch, captum, the registries);
- *worker*: through a persistent worker (:mod:`nnxai.worker`), started once as the Snakefile does;

and measures the job's own work in a warm interpreter (the same ``nnxai.cli.main`` call made repeatedly
in one process; the first call is discarded).  Overhead = wall time - own work; the target (issue 10) is
at most 0.5 s per job.  Prints a Markdown table.

    .venv/bin/python benchmarks/job_overhead.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nnxai import worker                                             # noqa: E402  (light: no torch)
from nnxai.workflow import prepare_job_environment                   # noqa: E402

TARGET = 0.5     # seconds of overhead per job (issue 10)
THREAD_VARS = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def jobs(dataset: str, model: str, method: str, profile: str) -> dict[str, tuple[list[str], int]]:
    """Each stage's argv (as the Snakefile writes it) and the threads its rule gets."""
    from nnxai.config import load_config
    from nnxai.workflow import settings_json

    cfg = load_config({"profile": profile})
    threads = cfg["threads"]
    return {
        "prepare": (["prepare", "--dataset", dataset, "--settings", settings_json(cfg, "prepare", dataset=dataset)],
                    1),
        "train": (["train", "--dataset", dataset, "--model", model, "--settings",
                   settings_json(cfg, "train", dataset=dataset, model=model), "--threads", str(threads)], threads),
        "explain": (["explain", "-d", dataset, "-m", model, "-x", method, "--settings",
                     settings_json(cfg, "explain", dataset=dataset, model=model, method=method)], threads),
        "evaluate": (["--verbose", "evaluate", "-d", dataset, "-m", model, "-x", method, "--quiet", "--settings",
                      settings_json(cfg, "evaluate", dataset=dataset, model=model, method=method)], threads),
    }


def job_env(threads: int, **extra: str) -> dict:
    """The environment Snakemake's ``shell()`` gives a job with ``threads`` threads."""
    env = {**os.environ, **{var: str(threads) for var in THREAD_VARS}, **extra}
    return {k: v for k, v in env.items() if v is not None}


def run_job(argv: list[str], threads: int, workdir: Path, log: Path, **extra: str) -> float:
    """Wall seconds of ``bash -c 'python -m nnxai ARGV > LOG 2>&1'`` in ``workdir``."""
    cmd = f"python -m nnxai {shlex.join(argv)} > {shlex.quote(str(log))} 2>&1"
    start = time.perf_counter()
    proc = subprocess.run(["bash", "-c", cmd], cwd=workdir, env=job_env(threads, **extra))
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"job failed ({proc.returncode}): {cmd}\n{log.read_text()[-3000:]}")
    return seconds


def own_work(stage_jobs: dict, workdir: Path, repeat: int) -> dict[str, list[float]]:
    """Seconds of each stage's ``nnxai.cli.main`` call in one warm interpreter (calls 2..repeat+1)."""
    threads = max(t for _, t in stage_jobs.values())
    code = ("import contextlib, io, json, sys, time\n"
            "from nnxai.cli import main\n"
            "jobs, repeat, out = json.loads(sys.argv[1]), int(sys.argv[2]), {}\n"
            "for stage, argv in jobs.items():\n"
            "    out[stage] = []\n"
            "    for k in range(repeat + 1):\n"
            "        sink = io.StringIO()\n"
            "        start = time.perf_counter()\n"
            "        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):\n"
            "            assert main(list(argv)) == 0, sink.getvalue()\n"
            "        if k:\n"
            "            out[stage].append(time.perf_counter() - start)\n"
            "print(json.dumps(out))\n")
    argv = {stage: a for stage, (a, _) in stage_jobs.items()}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(argv), str(repeat)], cwd=workdir,
                          env=job_env(threads, NNXAI_NO_WORKER="1"), capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per stage and mode (median reported)")
    parser.add_argument("--dataset", default="iris")
    parser.add_argument("--model", default="baseline")
    parser.add_argument("--method", default="gradient")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--workdir", type=Path, help="where the jobs write (default: a temporary folder)")
    args = parser.parse_args(argv)

    prepare_job_environment(ROOT)              # PATH, PYTHONPATH, NNXAI_CONFIG_DIR as the Snakefile sets them
    os.environ.pop(worker.ENV, None)
    os.environ.pop(worker.DISABLE_ENV, None)
    stage_jobs = jobs(args.dataset, args.model, args.method, args.profile)
    with tempfile.TemporaryDirectory(prefix="nnxai-overhead-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        log = workdir / "job.log"
        walls: dict[str, dict[str, list[float]]] = {"fresh": {}, "worker": {}}
        for stage, (job_argv, threads) in stage_jobs.items():     # fresh first: it writes each stage's inputs
            walls["fresh"][stage] = [run_job(job_argv, threads, workdir, log, NNXAI_NO_WORKER="1")
                                     for _ in range(args.repeat)]
        start = time.perf_counter()
        handle = worker.start(str(workdir / ".snakemake" / "nnxai-worker"), parent_pid=os.getpid())
        if handle is None:
            raise SystemExit("the worker did not start")
        startup = time.perf_counter() - start
        try:
            for stage, (job_argv, threads) in stage_jobs.items():
                walls["worker"][stage] = [run_job(job_argv, threads, workdir, log, NNXAI_WORKER=handle.path)
                                          for _ in range(args.repeat)]
            served = Path(handle.log_path).read_text()
        finally:
            worker.stop(handle)
        if "declined" in served:
            print(f"warning: the worker declined some jobs:\n{served}", file=sys.stderr)
        own = own_work(stage_jobs, workdir, args.repeat)

    med = statistics.median
    print(f"Per-job overhead, {args.dataset}/{args.model}/{args.method}, profile {args.profile}, median of "
          f"{args.repeat} (os.cpu_count() = {os.cpu_count()}); worker start-up {startup:.1f} s once per run.\n")
    print("| stage | own work (warm) | fresh: wall | fresh: overhead | worker: wall | worker: overhead "
          f"| overhead ≤ {TARGET} s |")
    print("|---|---:|---:|---:|---:|---:|:---:|")
    for stage in stage_jobs:
        work, fresh, served = med(own[stage]), med(walls["fresh"][stage]), med(walls["worker"][stage])
        print(f"| {stage} | {work:.2f} s | {fresh:.2f} s | {fresh - work:.2f} s | {served:.2f} s "
              f"| {served - work:.2f} s | {'yes' if served - work <= TARGET else 'no'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
