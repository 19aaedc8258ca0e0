"""SLURM: jobs of the smoke DAG submitted through snakemake-executor-plugin-slurm with the profile
configs/slurm/ to a running SLURM cluster (`bash envs/slurm.sh` starts a one-node one here; .ci/run does so)
give bit for bit the results of the local run.

Every SLURM job costs two Snakemake start-ups (the job step and its `srun`) on top of the job itself, so on
the 2-core CI machine the whole smoke DAG (~200 jobs) through SLURM takes far longer than locally.  By
default the test therefore sends through SLURM a slice that runs every rule of the DAG at least once:
  * a fresh work directory: prepare_data + train_model for one model (prepared splits, checkpoint);
  * a copy of the session's local smoke run (conftest.py's `smoke_run`, shared with test_e2e_smoke.py) with
    one attribution record, one structured record and one model-metrics file removed: Snakemake regenerates
    them, their evaluate jobs, all.csv, one table and one figure as SLURM jobs;
and compares the results with the local run: bytes (prepared splits, checkpoint), metrics records (but
measured wall times) and the fingerprint (tests/smoke_fingerprint.py: all.csv, tables, prepared data,
explanation records), which must also equal the golden one, as in test_e2e_smoke.py.
NNXAI_SLURM_FULL=1 sends the complete smoke DAG through SLURM instead (compared the same way).

Skipped only when no SLURM cluster is up; with NNXAI_REQUIRE_SLURM=1 (set by .ci/run) that fails instead."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import time
import tomllib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from e2e_helpers import ROOT, snakemake

PROFILE = ROOT / "configs" / "slurm"
USABLE_STATES = {"idle", "mix", "alloc", "comp"}   # a node that takes (or will soon take) jobs
# The test cluster runs a job in seconds: poll its state every second (the profile's 20 s suit a real one);
# keep SLURM's log of every job to check that each job went through SLURM.
FAST = ("--profile", str(PROFILE), "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "1", "--slurm-keep-successful-logs")


def slurm_unavailable() -> str | None:
    """Why SLURM cannot run jobs here, or None when a controller answers and a node takes jobs."""
    start = "start a one-node test cluster with `bash envs/slurm.sh`"
    if shutil.which("sinfo") is None:
        return f"SLURM is not installed (no `sinfo` on PATH): {start}"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return f"SLURM is not up (`sinfo` got no answer in 30 s): {start}"
    if proc.returncode != 0:
        return f"SLURM is not up (`sinfo`: {proc.stderr.strip() or proc.returncode}): {start}"
    states = proc.stdout.split()
    if not USABLE_STATES & set(states):
        return f"no SLURM node takes jobs (node states: {', '.join(states) or 'none'}): {start}"
    return None


def require_slurm() -> None:
    reason = slurm_unavailable()
    if reason and os.environ.get("NNXAI_REQUIRE_SLURM") == "1":
        pytest.fail(f"NNXAI_REQUIRE_SLURM=1 but {reason}")
    if reason:
        pytest.skip(reason)
    assert importlib.util.find_spec("snakemake_executor_plugin_slurm"), \
        "SLURM is up but the executor plugin is not: `NNXAI_EXTRAS=test,slurm bash envs/setup.sh` installs the `slurm` extra"


def job_stats(output: str) -> Counter:
    """Jobs per rule from Snakemake's 'Job stats' table (rules that run no command left out)."""
    stats = re.findall(r"^(\w+)\s+(\d+)$", output, flags=re.M)
    return Counter({rule: int(n) for rule, n in dict(stats).items() if rule not in ("all", "total")})


def through_slurm(workdir: Path, *args: str) -> Counter:
    """Run the smoke DAG (or the targets in ``args``) in ``workdir`` through SLURM; check that every job was a
    SLURM job (one SLURM log each) and return the jobs per rule."""
    proc = snakemake(workdir, *FAST, *args, timeout=3000)
    planned = job_stats(proc.stdout + proc.stderr)
    logdir = workdir / ".snakemake" / "slurm_logs"
    ran = Counter(p.relative_to(logdir).parts[0].removeprefix("rule_") for p in logdir.rglob("*.log"))
    assert planned and ran == planned, f"jobs planned {dict(planned)}, SLURM logs {dict(ran)}"
    return planned


def compare_fingerprints(run: Path, local: Path) -> None:
    from smoke_fingerprint import GOLDEN, differences, fingerprint

    found = fingerprint(run)
    diff = differences(found, fingerprint(local))
    assert not diff, "results through SLURM differ from the local run:\n" + "\n".join(diff[:40])
    diff = differences(found, json.loads(GOLDEN.read_text()))
    assert not diff, "results through SLURM differ from tests/golden/smoke_fingerprint.json:\n" + "\n".join(diff[:40])


def metrics(path: Path) -> str:
    """A metrics record without its measured wall times, as sorted JSON (NaN == NaN there)."""
    record = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("runtime")}
    return json.dumps(record, sort_keys=True)


def copy_regular(src: str, dst: str) -> None:
    """copytree's copy function: regular files only (a finished run may leave a socket behind)."""
    if stat.S_ISREG(os.lstat(src).st_mode):
        shutil.copy2(src, dst)


def test_profile_and_extra_agree():
    """The profile names the executor the `slurm` extra pins and a status command that works without an
    accounting database; envs/slurm.sh is valid bash."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "squeue"
    assert {"slurm_partition", "runtime", "mem_mb", "cpus_per_task"} <= set(profile["default-resources"])
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(re.fullmatch(r"snakemake-executor-plugin-slurm==[\d.]+", d) for d in extras["slurm"])
    assert all("==" in d for d in extras["slurm"])
    subprocess.run(["bash", "-n", str(ROOT / "envs" / "slurm.sh")], check=True)


class _Resources(dict):
    """What the plugin reads of a job's resources: .get(name) and attribute access."""
    __getattr__ = dict.__getitem__


def test_train_rule_gpu_maps_to_sbatch_gpus(tmp_path):
    """With device=cuda the train rule asks for gpu=1, which the pinned plugin submits as `--gpus=1`
    (`--gpus=MODEL:1` with a gpu_model resource); CPU rules ask for none."""
    utils = pytest.importorskip("snakemake_executor_plugin_slurm.utils", reason="the `slurm` extra is not installed")
    dry = snakemake(tmp_path, "-n", "--profile", str(PROFILE), "data/checkpoints/shapes/baseline.pt",
                    "--set-resources=train_model:gpu_model=a100", "--config", "profile=smoke", "device=cuda")
    found = dict(re.findall(r"^rule (\w+):(?:\n    .*)*?\n    resources: (.*)$", dry.stdout + dry.stderr, flags=re.M))
    assert {"prepare_data", "train_model"} <= set(found), found

    def gres(rule: str) -> str:
        pairs = (item.split("=", 1) for item in found[rule].split(", "))
        resources = _Resources({k: int(v) if v.isdigit() else v for k, v in pairs})
        return utils.set_gres_string(SimpleNamespace(resources=resources)).strip()

    assert gres("train_model") == "--gpus=a100:1"
    assert gres("prepare_data") == ""


@pytest.mark.e2e
def test_jobs_through_slurm_match_the_local_run(request, tmp_path):
    require_slurm()
    local: Path = request.getfixturevalue("smoke_run")   # the session's local smoke run (conftest.py)
    start = time.perf_counter()

    if os.environ.get("NNXAI_SLURM_FULL") == "1":
        through_slurm(tmp_path / "full")
        compare_fingerprints(tmp_path / "full", local)
        print(f"\nthe whole smoke DAG through SLURM: {time.perf_counter() - start:.0f} s")
        return

    # (1) prepare_data + train_model in a fresh work directory.
    checkpoint = sorted((local / "data/checkpoints").glob("*/*.pt"))[0].relative_to(local)
    dataset = checkpoint.parts[2]
    fresh = tmp_path / "fresh"
    # (2) a copy of the local run less three outputs; timestamps kept, and only they decide what reruns
    #     (the set of code inputs is recorded as paths relative to the work directory, which moved).
    copy = tmp_path / "copy"
    shutil.copytree(local, copy, symlinks=True, copy_function=copy_regular)
    shutil.rmtree(copy / ".snakemake" / "slurm_logs", ignore_errors=True)
    explanations = sorted((copy / "data/explanations").rglob("*.*"))
    removed = [next(p for p in explanations if p.suffix == ".npz"), next(p for p in explanations if p.suffix == ".json")]
    removed += sorted((copy / "data/metrics").glob("*/*/model.json"))[:1]   # evaluate_model, where the DAG has it
    for path in removed:
        path.unlink()
    # Targets: the removed files, all.csv and one table, one figure and the results document made from it
    # (not all of them: every job costs seconds of start-up here).
    table, figure = (sorted((local / "paper" / kind).glob(pattern))[0].relative_to(local)
                     for kind, pattern in (("tables", "*.md"), ("figures", "*.png")))
    targets = [str(p.relative_to(copy)) for p in removed] + ["data/metrics/all.csv", str(table), str(figure),
                                                             "paper/results.md"]
    mtime = ("--rerun-triggers=mtime",)   # "=": the targets that follow are not taken as more triggers
    dry = snakemake(copy, "-n", "--cores", "1", *mtime, *targets)
    planned = job_stats(dry.stdout + dry.stderr)
    assert 0 < sum(planned.values()) <= 12, f"the copy of the local run would rerun more than planned: {dict(planned)}"

    with ThreadPoolExecutor(2) as pool:   # both at once: the cluster's two cores serve both queues
        first = pool.submit(through_slurm, fresh, str(checkpoint))
        second = pool.submit(through_slurm, copy, *mtime, *targets)
        ran = first.result() + second.result()
    wall = time.perf_counter() - start
    print(f"\n{sum(ran.values())} jobs through SLURM ({dict(ran)}): {wall:.0f} s")

    every = snakemake(tmp_path / "dry", "-n", "--cores", "1")
    rules = set(job_stats(every.stdout + every.stderr))
    local_rules = {"build_paper"}   # the Snakefile's localrules: TeX where Snakemake runs, not on compute nodes
    assert rules - local_rules <= set(ran), f"rules never sent through SLURM: {sorted(rules - local_rules - set(ran))}"
    for rel in [*(p.relative_to(local) for p in (local / "data/prepared" / dataset).glob("*.npz")), checkpoint]:
        assert (fresh / rel).read_bytes() == (local / rel).read_bytes(), rel
    for path in removed:
        rel = path.relative_to(copy)
        assert path.is_file(), f"not regenerated: {rel}"
        if rel.parts[1] == "metrics":
            assert metrics(path) == metrics(local / rel), rel
    for rel in {p.relative_to(local) for p in (local / "data/metrics").glob("*/*/*.json")}:
        assert metrics(copy / rel) == metrics(local / rel), rel
    compare_fingerprints(copy, local)
