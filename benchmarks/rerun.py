"""Reruns against their targets (issue 10): a no-op rerun, planning a 10,000-job DAG and an incremental
evaluation, each timed and written to the README (blocks ``rerun-noop``, ``rerun-plan``, ``rerun-incremental``).

    .venv/bin/python benchmarks/rerun.py                          # default profile: a full run first (budget.py's)
    .venv/bin/python benchmarks/rerun.py --profile smoke          # toy sizes: a smoke run first (minutes)
    .venv/bin/python benchmarks/rerun.py --root RUN --profile smoke   # on a finished run of that profile
    .venv/bin/python benchmarks/rerun.py --only noop plan         # some of the three checks
    .venv/bin/python benchmarks/rerun.py --change lime.alpha=2.0  # the hyperparameter the incremental check changes
    .venv/bin/python benchmarks/rerun.py --print                  # print only, leave the README alone

The checks, each with its target:

noop         ``snakemake --cores 2`` in RUN, where everything is up to date: <= 5 s (min and median of --repeat).
plan         ``snakemake -n`` of a generated config of >= 10,000 jobs (the profile's data sets with model variants
             ``baseline_seed1..k`` added to both kinds, k the fewest that reach --jobs), planned in an empty
             folder: <= 30 s (min and median of --repeat).  The job count is Snakemake's ("total" of its Job
             stats table), checked against the count that nnxai.workflow's targets give.
incremental  change one method's hyperparameter (--change) in RUN and rerun: only that method's explain jobs,
             their evaluate jobs and aggregate/tables/figures may run; then put it back and rerun: the
             explanations come out with the same arrays, and the metric values should come from the content
             cache (``RUN/.nnxai-cache/metrics``).  Both reruns are timed, their jobs counted per rule.

Which jobs ran is read from the files, not from Snakemake's log: every job rewrites its outputs (atomically),
so the outputs under data/ and paper/ whose mtime changed, mapped to their rule by path, are the jobs that
ran; Snakemake's own Job stats table (what it planned) is printed beside them and any difference is flagged.
Which metric values were computed and which came from the cache is read from the evaluate jobs' logs.

RUN must have been made with this Snakefile and --profile (code is an input: another checkout's sources, or
sources edited since, rerun jobs, and the no-op check refuses a RUN with jobs pending).  RUN ends up to date with
its config again; the changed method's outputs are rewritten.  Edits to src/ made while this runs change what
it measures; to keep them out, run a snapshot's copy (``git archive HEAD | tar -x -C SNAP``, ``SNAP/.venv`` a link
to the same environment) as ``SNAP/.venv/bin/python SNAP/benchmarks/rerun.py``: the environment puts the sources
next to the interpreter's ``.venv`` first on the path of every job.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import math
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _readme import read_block, write_block  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
TARGETS = {"noop": 5.0, "plan": 30.0}           #: seconds
BLOCKS = {"noop": "rerun-noop", "plan": "rerun-plan", "incremental": "rerun-incremental"}
NOTHING = "Nothing to be done"

#: output path -> rule, one pattern per job (the other outputs of a multi-output job are not listed)
OUTPUT_RULES = [
    (re.compile(r"data/prepared/[^/]+/meta\.json"), "prepare_data"),
    (re.compile(r"data/checkpoints/[^/]+/[^/]+\.pt"), "train_model"),
    (re.compile(r"data/explanations/[^/]+/[^/]+/[^/]+\.npz"), "explain_attribution"),
    (re.compile(r"data/explanations/[^/]+/[^/]+/[^/]+\.json"), "explain_structured"),
    (re.compile(r"data/metrics/(all\.csv|summary\.json)"), None),
    (re.compile(r"data/metrics/[^/]+/[^/]+/model\.json"), "evaluate_model"),
    (re.compile(r"data/metrics/[^/]+/[^/]+/[^/]+\.json"), "evaluate_explanation"),
    (re.compile(r"paper/tables/[^/]+\.md"), "make_table"),
    (re.compile(r"paper/figures/[^/]+\.png"), "make_figure"),
]
RULE_ORDER = ["prepare_data", "train_model", "explain_attribution", "explain_structured", "evaluate_explanation",
              "evaluate_model", "aggregate_metrics", "make_table", "make_figure", "all"]
#: one line of an evaluate job's log: "... INFO shapes/baseline occlusion pixel_flipping: 0.12 s" (or ": cached")
METRIC_LINE = re.compile(r" INFO (\S+)/(\S+) (\S+) (\S+): (cached|[0-9.]+ s)\s*$")


# --- running Snakemake ----------------------------------------------------------------------------------

class Snakemake:
    """``python -m snakemake`` on one Snakefile, timed; output captured (stderr into stdout)."""

    def __init__(self, snakefile: Path, profile: str, cores: int):
        self.snakefile, self.profile, self.cores = snakefile, profile, cores

    def command(self, workdir: Path, *flags: str, configfile: Path | None = None,
                overrides: tuple[str, ...] = ()) -> list[str]:
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(self.snakefile), "--directory", str(workdir),
               "--cores", str(self.cores), "--nocolor", *flags]
        if configfile:
            cmd += ["--configfile", str(configfile)]
        return cmd + ["--config", f"profile={self.profile}", *overrides]    # last: --config takes what follows

    def run(self, workdir: Path, *flags: str, check: bool = True, **kw) -> tuple[float, str]:
        cmd = self.command(workdir, *flags, **kw)
        start = time.perf_counter()
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        seconds = time.perf_counter() - start
        if check and done.returncode != 0:
            raise SystemExit(f"failed (exit {done.returncode}): {shown(cmd)}\n{done.stdout[-4000:]}")
        return seconds, done.stdout


def shown(cmd: list[str]) -> str:
    """A command as one would paste it into a shell."""
    return " ".join(shlex.quote(c) for c in cmd)


def job_stats(output: str) -> dict[str, int] | None:
    """Snakemake's first Job stats table (rule -> jobs, with ``total``), or None when it had nothing to do.

    Printed by ``-n`` and at the start of a run unless ``--quiet progress``/``--quiet``; the table is
    ``job  count`` rows under a dashed line, ended by a blank line.
    """
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "Job stats:":
            stats = {}
            for row in lines[i + 3:]:
                parts = row.split()
                if len(parts) != 2 or not parts[1].isdigit():
                    break
                stats[parts[0]] = int(parts[1])
            return stats
    if NOTHING in output:
        return None
    raise SystemExit(f"no Job stats table and no '{NOTHING}' in Snakemake's output:\n{output[-3000:]}")


# --- what ran ---------------------------------------------------------------------------------------------

def output_times(workdir: Path) -> dict[str, int]:
    """mtime (ns) of every file under data/ and paper/ of ``workdir``, by path relative to it."""
    out = {}
    for top in ("data", "paper"):
        for path in (workdir / top).rglob("*"):
            if path.is_file() and not path.name.endswith(".tmp"):
                out[path.relative_to(workdir).as_posix()] = path.stat().st_mtime_ns
    return out


def rule_of(path: str) -> str | None:
    for pattern, rule in OUTPUT_RULES:
        if pattern.fullmatch(path):
            return rule or ("aggregate_metrics" if path.endswith("all.csv") else None)
    return None


def jobs_that_ran(before: dict[str, int], after: dict[str, int]) -> dict[str, list[str]]:
    """Rule -> the outputs (one per job) written between the two snapshots."""
    ran: dict[str, list[str]] = {}
    for path, mtime in sorted(after.items()):
        rule = rule_of(path)
        if rule and before.get(path) != mtime:
            ran.setdefault(rule, []).append(path)
    return ran


def metric_cells(workdir: Path, metric_outputs: list[str]) -> Counter:
    """``computed`` and ``cached`` metric values in the logs of these evaluate jobs (their latest run);
    ``timed``: values of metrics that report the explain job's wall-clock time (``reads_timing``: runtime),
    which a rerun measures afresh by design."""
    from nnxai.metrics.base import metrics

    timing = {m for m, cls in metrics().items() if cls.reads_timing}
    counts: Counter = Counter()
    for out in metric_outputs:
        log = workdir / "logs/evaluate" / Path(out).relative_to("data/metrics").with_suffix(".log")
        for line in log.read_text().splitlines() if log.is_file() else []:
            match = METRIC_LINE.search(line)
            if match:
                counts["timed" if match.group(4) in timing else
                       "cached" if match.group(5) == "cached" else "computed"] += 1
    return counts


def file_digests(workdir: Path, paths: list[str]) -> dict[str, str]:
    return {p: hashlib.sha256((workdir / p).read_bytes()).hexdigest() for p in paths}


def payload_digests(workdir: Path, paths: list[str]) -> dict[str, str | None]:
    """The digest of each explanation's arrays (its ``meta["sha256"]``): equal when the explanation is."""
    from nnxai.explanations.records import load_explanation
    return {p: load_explanation(workdir / p).meta.get("sha256") for p in paths}


# --- the configs ------------------------------------------------------------------------------------------

def use_sources(snakefile: Path) -> None:
    """Import ``nnxai`` from the Snakefile's checkout (the code the workflow runs)."""
    sys.path.insert(0, str(snakefile.parent / "src"))
    os.environ.setdefault("NNXAI_CONFIG_DIR", str(snakefile.parent / "configs"))


def planned_jobs(cfg: dict) -> Counter:
    """Jobs per rule that ``snakemake`` runs from nothing for ``cfg``, from nnxai.workflow's targets and each
    job's inputs (a DeepConsensus member or a shuffled-label explanation outside the targets is a job too);
    ``all`` counts as one, as in Snakemake's table."""
    from nnxai import workflow as wf
    prepared, checkpoints, explanations, metrics = set(), set(), set(), set()
    for dataset, model in wf.model_cells(cfg):
        prepared.add(dataset)
        checkpoints.add(wf.checkpoint_path(dataset, model))
        metrics.add(wf.metrics_path(dataset, model, wf.MODEL_ROW))
    for dataset, model, method in wf.experiment_cells(cfg):
        explanations.add(wf.explanation_path(dataset, model, method))
        metrics.add(wf.metrics_path(dataset, model, method))
        for path in wf.explain_inputs(cfg, dataset, model, method) + wf.evaluate_inputs(cfg, dataset, model, method):
            if path.startswith("data/checkpoints/") and path.endswith(".pt"):
                checkpoints.add(path)
            elif path.startswith("data/explanations/"):
                explanations.add(path)
    counts = Counter({"prepare_data": len(prepared), "train_model": len(checkpoints),
                      "explain_attribution": sum(p.endswith(".npz") for p in explanations),
                      "explain_structured": sum(p.endswith(".json") for p in explanations),
                      "evaluate_explanation": sum(not p.endswith(f"/{wf.MODEL_ROW}.json") for p in metrics),
                      "evaluate_model": sum(p.endswith(f"/{wf.MODEL_ROW}.json") for p in metrics),
                      "aggregate_metrics": 1, "make_table": len(wf.TABLES), "make_figure": len(wf.FIGURES),
                      "all": 1})
    return +counts


def seed_variants(k: int) -> list[str]:
    return [f"baseline_seed{i}" for i in range(1, k + 1)]


def many_jobs_config(profile: str, min_jobs: int) -> tuple[dict, int, Counter]:
    """The overrides of a config of at least ``min_jobs`` jobs: the profile with ``baseline_seed1..k`` added to
    the model variants of both kinds, k the fewest that reach it.  Returns (overrides, k, jobs per rule)."""
    from nnxai.config import load_config
    base = load_config({"profile": profile})

    def overrides(k: int) -> dict:
        return {"profile": profile, "models": {kind: list(dict.fromkeys(models + seed_variants(k)))
                                               for kind, models in base["models"].items()}}

    def jobs(k: int) -> Counter:
        return planned_jobs(load_config(overrides(k)))

    one, two = sum(jobs(1).values()), sum(jobs(2).values())
    k = max(1, 1 + math.ceil((min_jobs - one) / max(two - one, 1)))     # jobs grow by the same step per seed
    while k > 1 and sum(jobs(k - 1).values()) >= min_jobs:
        k -= 1
    counts = jobs(k)
    while sum(counts.values()) < min_jobs:
        k += 1
        counts = jobs(k)
    return overrides(k), k, counts


def parse_change(spec: str, cfg: dict) -> tuple[str, str, object, object]:
    """``METHOD.PARAM[=VALUE]`` -> (method, param, old value, new value); without a value an integer grows by 2
    and a float by half."""
    key, _, value = spec.partition("=")
    method, _, param = key.partition(".")
    block = cfg["method_params"].get(method)
    if block is None or param not in block:
        raise SystemExit(f"--change {spec}: no method_params.{method}.{param} in the {cfg['profile']} config")
    old = block[param]
    if value:
        new = yaml.safe_load(value)
    elif isinstance(old, bool) or not isinstance(old, (int, float)):
        raise SystemExit(f"--change {spec}: {old!r} is not a number; give the new value (--change {key}=VALUE)")
    else:
        new = old + 2 if isinstance(old, int) else old * 1.5
    if new == old:
        raise SystemExit(f"--change {spec}: method_params.{method}.{param} is {old!r} already")
    return method, param, old, new


def expected_jobs(old: dict, new: dict) -> dict[str, set[str]]:
    """The outputs (one per job, as :func:`rule_of` maps them) that going from config ``old`` to ``new`` must
    rewrite: explanations whose job settings change, evaluate jobs whose settings or explanation inputs change,
    and everything downstream of all.csv."""
    from nnxai import workflow as wf
    explain = {wf.explanation_path(d, m, x) for d, m, x in wf.experiment_cells(old)
               if wf.settings_json(old, "explain", dataset=d, model=m, method=x)
               != wf.settings_json(new, "explain", dataset=d, model=m, method=x)}
    evaluate = {wf.metrics_path(d, m, x) for d, m, x in wf.experiment_cells(old)
                if explain & set(wf.evaluate_inputs(old, d, m, x))
                or wf.settings_json(old, "evaluate", dataset=d, model=m, method=x)
                != wf.settings_json(new, "evaluate", dataset=d, model=m, method=x)}
    out: dict[str, set[str]] = {}
    for path in explain | evaluate | {"data/metrics/all.csv"}:
        out.setdefault(rule_of(path), set()).add(path)
    out["make_table"] = {f"paper/tables/{t}.md" for t in wf.TABLES}
    out["make_figure"] = {f"paper/figures/{f}.png" for f in wf.FIGURES}
    return out


# --- the three checks -------------------------------------------------------------------------------------

def seconds_text(values: list[float]) -> str:
    return f"min {min(values):.2f} s, median {statistics.median(values):.2f} s of {len(values)}"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores; {datetime.date.today().isoformat()}"


def verdict(seconds: float, target: float) -> str:
    return f"target <= {target:g} s: {'met' if seconds <= target else 'MISSED'}"


def check_noop(sm: Snakemake, run: Path, repeat: int) -> tuple[str, bool]:
    _, dry = sm.run(run, "-n", "--quiet", "rules")
    pending = job_stats(dry)
    if pending:
        raise SystemExit(f"{run} is not up to date, so a rerun is no no-op ({pending.get('total')} jobs pending: "
                         f"{pending}); was it made with {sm.snakefile} and --profile {sm.profile}, and has the "
                         f"code changed since? Bring it up to date with: {shown(sm.command(run))}")
    times = []
    for i in range(repeat):
        seconds, output = sm.run(run)
        if NOTHING not in output:
            raise SystemExit(f"rerun {i + 1} in {run} did something (no '{NOTHING}'):\n{output[-3000:]}")
        times.append(seconds)
        print(f"  no-op rerun {i + 1}: {seconds:.2f} s", flush=True)
    best = min(times)
    text = (f"A no-op rerun (`snakemake --cores {sm.cores}` in a finished `{sm.profile}` run, nothing to do) takes "
            f"**{best:.1f} s** ({seconds_text(times)}; {verdict(best, TARGETS['noop'])}) on this machine "
            f"({machine()}).")
    return text, best <= TARGETS["noop"]


def check_plan(sm: Snakemake, min_jobs: int, repeat: int) -> tuple[str, bool]:
    overrides, k, counted = many_jobs_config(sm.profile, min_jobs)
    folder = Path(tempfile.mkdtemp(prefix="nnxai-plan-"))
    try:
        configfile = folder / "many-jobs.yaml"
        configfile.write_text(yaml.safe_dump(overrides, sort_keys=False))
        workdir = folder / "run"
        workdir.mkdir()
        print(f"  config: {sm.profile} profile + baseline_seed1..{k} on both kinds ({configfile}); "
              f"nnxai.workflow counts {sum(counted.values())} jobs", flush=True)
        times, totals = [], []
        for i in range(repeat):
            seconds, output = sm.run(workdir, "-n", "--quiet", "rules", configfile=configfile)
            stats = job_stats(output) or {}
            times.append(seconds)
            totals.append(stats.get("total", 0))
            print(f"  plan {i + 1}: {seconds:.2f} s, {totals[-1]} jobs", flush=True)
        print("  " + ", ".join(f"{rule} {n}" for rule, n in stats.items()))
        mismatch = {r: (stats.get(r, 0), counted.get(r, 0)) for r in set(stats) | set(counted)
                    if r != "total" and stats.get(r, 0) != counted.get(r, 0)}
        if mismatch:
            print(f"  NOTE: Snakemake's count differs from nnxai.workflow's (rule: snakemake, workflow): {mismatch}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    total, best = totals[-1], min(times)
    ok = best <= TARGETS["plan"] and total >= min_jobs
    text = (f"Planning **{total:,} jobs** (`snakemake -n` from nothing; the `{sm.profile}` profile with model "
            f"variants `baseline_seed1`..`baseline_seed{k}` added to both kinds) takes **{best:.1f} s** "
            f"({seconds_text(times)}; {verdict(best, TARGETS['plan'])}) on this machine ({machine()}).")
    return text, ok


def rerun_counted(sm: Snakemake, run: Path, overrides: tuple[str, ...]) -> dict:
    """Run once in ``run``: wall seconds, Snakemake's planned jobs, the jobs that ran (by outputs), metric cells."""
    before = output_times(run)
    seconds, output = sm.run(run, "--quiet", "rules", overrides=overrides)
    planned = job_stats(output) or {}
    ran = jobs_that_ran(before, output_times(run))
    return {"seconds": seconds, "planned": planned, "ran": ran,
            "cells": metric_cells(run, ran.get("evaluate_explanation", []))}


def check_incremental(sm: Snakemake, run: Path, change: str) -> tuple[str, bool, list[str]]:
    from nnxai.config import load_config
    cfg = load_config({"profile": sm.profile})
    method, param, old, new = parse_change(change, cfg)
    override = yaml.safe_dump({method: {param: new}}, default_flow_style=True, width=10_000).strip()
    changed_cfg = load_config({"profile": sm.profile, "method_params": {method: {param: new}}})
    expected = expected_jobs(cfg, changed_cfg)
    explanations = sorted(expected.get("explain_attribution", set()) | expected.get("explain_structured", set()))
    metric_files = sorted(expected.get("evaluate_explanation", set()))
    _, dry = sm.run(run, "-n", "--quiet", "rules")
    if job_stats(dry):
        raise SystemExit(f"{run} is not up to date; bring it up to date first: {shown(sm.command(run))}")
    first_bytes, first_arrays = file_digests(run, explanations), payload_digests(run, explanations)
    first_metrics = file_digests(run, metric_files)
    problems, wrong_jobs, results = [], [], []
    for label, overrides in ((f"`{method}.{param}` {old} → {new}", (f"method_params={override}",)),
                             (f"back to {old}", ())):
        print(f"  rerun: {label} ...", flush=True)
        try:
            result = rerun_counted(sm, run, overrides)
        except BaseException:
            if overrides:
                print(f"  the rerun failed; {run} holds {method}.{param} = {new} until this has run: "
                      f"{shown(sm.command(run))}", flush=True)
            raise
        results.append((label, result))
        ran = {rule: set(paths) for rule, paths in result["ran"].items()}
        print(f"    {result['seconds']:.1f} s; ran (outputs): "
              + ", ".join(f"{rule} {len(ran.get(rule, ()))}" for rule in RULE_ORDER if ran.get(rule))
              + f"; Snakemake's plan: {result['planned']}; metric values: {dict(result['cells'])}", flush=True)
        for rule in sorted(set(ran) | set(expected)):
            extra = ran.get(rule, set()) - expected.get(rule, set())
            missing = expected.get(rule, set()) - ran.get(rule, set())
            if extra:
                wrong_jobs.append(f"{label}: {rule} reran {len(extra)} job(s) that should not: {sorted(extra)[:5]}")
            if missing:
                wrong_jobs.append(f"{label}: {rule} did not rerun {len(missing)} job(s): {sorted(missing)[:5]}")
        planned = {r: n for r, n in result["planned"].items() if r not in ("total", "all")}
        written = {r: len(p) for r, p in ran.items()}
        if planned != written:
            problems.append(f"{label}: Snakemake planned {planned}, the outputs say {written}")
    _, dry = sm.run(run, "-n", "--quiet", "rules")
    if job_stats(dry):
        problems.append(f"after putting {method}.{param} back, {run} is not up to date: {job_stats(dry)}")
    same_bytes = sum(a == b for a, b in zip(first_bytes.values(), file_digests(run, explanations).values()))
    same_arrays = sum(a == b for a, b in zip(first_arrays.values(), payload_digests(run, explanations).values()))
    same_metrics = sum(a == b for a, b in zip(first_metrics.values(), file_digests(run, metric_files).values()))
    back = results[-1][1]["cells"]
    if same_arrays != len(explanations):
        problems.append(f"back to {old}: {len(explanations) - same_arrays} of {len(explanations)} explanations "
                        f"have other arrays than before the change")
    if back["computed"]:
        problems.append(f"back to {old}: {back['computed']} of {back['computed'] + back['cached']} metric values "
                        "(besides the wall-clock runtime) "
                        f"were computed again, not read from the cache ({same_bytes} of {len(explanations)} "
                        f"explanation files are byte-identical to the first run's, {same_arrays} have the same "
                        f"arrays)")
    rules = [r for r in RULE_ORDER if any(res["ran"].get(r) for _, res in results)]
    problems = wrong_jobs + problems
    scope = (f"only `{method}`'s explain jobs, the evaluate jobs that read them and what reads all.csv rerun"
             if not wrong_jobs else f"OTHER JOBS than `{method}`'s and their downstream ran, or some did not "
                                    f"({len(wrong_jobs)} problems)")
    short = {"explain_attribution": "explain", "explain_structured": "explain (structured)",
             "evaluate_explanation": "evaluate", "evaluate_model": "evaluate model",
             "aggregate_metrics": "aggregate", "make_table": "tables", "make_figure": "figures"}
    lines = [f"Incremental evaluation on a finished `{sm.profile}` run (`snakemake --cores {sm.cores}`; "
             f"{machine()}): {scope}. Put back, {same_arrays} of its {len(explanations)} explanations have the "
             f"same arrays as before ({same_bytes} byte-identical files), {same_metrics} of {len(metric_files)} "
             f"metric files are identical (each holds the explain job's measured runtime, which a rerun "
             f"measures afresh).", "",
             "| rerun | wall | " + " | ".join(short.get(r, r) for r in rules)
             + " | metric values computed / cached | runtime (re-measured) |",
             "|---|---|" + "---|" * len(rules) + "---|---|"]
    for label, res in results:
        lines.append(f"| {label} | {res['seconds']:.1f} s | "
                     + " | ".join(str(len(res["ran"].get(r, ()))) for r in rules)
                     + f" | {res['cells']['computed']} / {res['cells']['cached']} | {res['cells']['timed']} |")
    return "\n".join(lines), not problems, problems


# --- main -------------------------------------------------------------------------------------------------

def missing_blocks(names: list[str]) -> list[str]:
    missing = []
    for name in names:
        try:
            read_block(name)
        except SystemExit:
            missing.append(name)
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="default", choices=["smoke", "default", "paper"],
                        help="profile of the run (and of the planned config); default: default")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores (default 2)")
    parser.add_argument("--root", type=Path, metavar="RUN",
                        help="a finished run folder of --profile (budget.py prints one); without it a complete run "
                             "is made first with benchmarks/budget.py's run()")
    parser.add_argument("--only", nargs="+", choices=list(BLOCKS), default=list(BLOCKS), help="checks to run (all)")
    parser.add_argument("--repeat", type=int, default=3, help="timings of the no-op and plan checks (default 3)")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs of the planned config, at least (10000)")
    parser.add_argument("--change", default="occlusion.window", metavar="METHOD.PARAM[=VALUE]",
                        help="the hyperparameter the incremental check changes (default occlusion.window: an integer "
                             "grows by 2, a float by half, unless a value is given)")
    parser.add_argument("--print", action="store_true", help="print only, leave the README alone")
    args = parser.parse_args(argv)
    use_sources(SNAKEFILE)
    venv_src = Path(sys.prefix).parent / "src"          # what the environment's .pth puts first (envs/setup.sh)
    if (venv_src / "nnxai").is_dir() and venv_src.resolve() != (ROOT / "src").resolve():
        print(f"WARNING: {sys.executable} runs the nnxai of {venv_src}, not of {ROOT / 'src'}: run "
              f"{ROOT / '.venv/bin/python'}", flush=True)
    sm = Snakemake(SNAKEFILE, args.profile, args.cores)
    blocks = [BLOCKS[c] for c in args.only]
    if not args.print and (missing := missing_blocks(blocks)):
        raise SystemExit("README.md lacks the block(s) this writes; add the markers (or pass --print):\n" + "\n".join(
            f"<!-- generated:{b} (by: python benchmarks/rerun.py) -->\n<!-- /generated:{b} -->" for b in missing))
    run = args.root
    if "noop" in args.only or "incremental" in args.only:
        if run is None:
            from budget import run as full_run
            run, _ = full_run(args.profile, args.cores)
        run = run.resolve()
        if not (run / "data/metrics/all.csv").is_file():
            raise SystemExit(f"{run} is not a finished run (no data/metrics/all.csv)")
    texts, ok, problems = {}, True, []
    if "noop" in args.only:
        print(f"no-op rerun in {run}", flush=True)
        texts["noop"], passed = check_noop(sm, run, args.repeat)
        ok &= passed
    if "plan" in args.only:
        print(f"planning a config of >= {args.jobs} jobs", flush=True)
        texts["plan"], passed = check_plan(sm, args.jobs, args.repeat)
        ok &= passed
    if "incremental" in args.only:
        print(f"incremental evaluation in {run} (--change {args.change})", flush=True)
        texts["incremental"], passed, problems = check_incremental(sm, run, args.change)
        ok &= passed
    for check, text in texts.items():
        print(f"\n[{BLOCKS[check]}]\n{text}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    if run:
        print(f"\nrun folder: {run}")
    if not args.print:
        for check, text in texts.items():
            write_block(BLOCKS[check], text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
