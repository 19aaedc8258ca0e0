"""Interrupted stages leave nothing half-written (issue 9).

A stage subprocess is killed with SIGKILL at seeded random moments (and as soon as one of its temporary
files appears): every target is then either absent or whole, the only other files are temporaries that
.dvcignore and .gitignore ignore, and a rerun sweeps them and writes exactly what an uninterrupted run
writes.  SIGTERM (Snakemake cancelling a job) unwinds instead, removing the temporary file on the way out.
Checkpoint bytes do not depend on how the job was started (--profile by hand, --settings from Snakemake).
"""

from __future__ import annotations

import fnmatch
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nnxai.cli import main
from nnxai.config import load_config
from nnxai.io import TEMP_GLOB, sweep_stale_temp
from nnxai.workflow import settings_json

ROOT = Path(__file__).resolve().parents[1]
CFG = load_config({"profile": "smoke"})
DATASET, MODEL = "shapes", "baseline"
KILLS = 3                                   # seeded random SIGKILLs per stage, plus one at a temp file

STAGES = {
    "prepare": {"argv": ["prepare", "-d", DATASET, "--settings", settings_json(CFG, "prepare", dataset=DATASET)],
                "folder": f"data/prepared/{DATASET}",
                "targets": ["train.npz", "val.npz", "test.npz", "meta.json"]},
    "train": {"argv": ["train", "-d", DATASET, "-m", MODEL, "--quiet",
                       "--settings", settings_json(CFG, "train", dataset=DATASET, model=MODEL)],
              "folder": f"data/checkpoints/{DATASET}", "targets": [f"{MODEL}.pt", f"{MODEL}.json"]},
}


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def _start(stage: str, workdir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nnxai", *STAGES[stage]["argv"], "--workdir", str(workdir)],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _run(stage: str, workdir: Path) -> float:
    start = time.perf_counter()
    proc = _start(stage, workdir)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return time.perf_counter() - start


def _content(path: Path):
    """What must equal between runs: bytes, except a checkpoint's code version (git state)."""
    if path.suffix == ".pt":
        payload = torch.load(path, weights_only=True)
        tensors = {k: v.numpy().tobytes() for k, v in payload.pop("state_dict").items()}
        return tensors, {k: v for k, v in payload.items() if k not in ("code_version", "payload_sha256")}
    if path.parent.parent.name == "checkpoints":
        return {k: v for k, v in json.loads(path.read_text()).items() if k not in ("code_version", "sha256")}
    return path.read_bytes()


def _dvc_ignored(name: str) -> bool:
    patterns = [line.strip() for line in (ROOT / ".dvcignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def _check_folder(stage: str, workdir: Path, reference: Path) -> list[Path]:
    """Targets absent or whole (equal to the reference); anything else an ignored temporary file."""
    folder = workdir / STAGES[stage]["folder"]
    temps = []
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        if entry.name in STAGES[stage]["targets"]:
            assert _content(entry) == _content(reference / STAGES[stage]["folder"] / entry.name), \
                f"partial or different {entry}"
        else:
            assert fnmatch.fnmatch(entry.name, TEMP_GLOB) and _dvc_ignored(entry.name), f"visible leftover {entry}"
            temps.append(entry)
    return temps


def _kill_when_temp_appears(proc: subprocess.Popen, folder: Path, deadline: float) -> bool:
    """SIGKILL as soon as a temporary file shows in ``folder``; whether one was caught."""
    while proc.poll() is None and time.perf_counter() < deadline:
        if folder.is_dir() and any(fnmatch.fnmatch(e.name, TEMP_GLOB) for e in os.scandir(folder)):
            proc.kill()
            return True
        time.sleep(0.0005)
    proc.kill()
    return False


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """An uninterrupted run of both stages, and how long each took."""
    workdir = tmp_path_factory.mktemp("reference")
    durations = {stage: _run(stage, workdir) for stage in STAGES}
    return {"workdir": workdir, "durations": durations}


@pytest.mark.parametrize("stage", list(STAGES))
def test_sigkill_leaves_no_partial_output_and_a_rerun_is_identical(tmp_path, reference, stage, probes):
    ref = reference["workdir"]
    if stage == "train":   # its input: the reference's prepared data
        shutil.copytree(ref / "data/prepared", tmp_path / "data/prepared")
    rng = random.Random(f"issue-9-{stage}")
    moments = [rng.uniform(0.2, 1.0) * reference["durations"][stage] for _ in range(KILLS)]
    survived, leftovers = 0, []
    for moment in [None, *moments]:                 # None: when the first temporary file appears
        proc = _start(stage, tmp_path)
        if moment is None:
            _kill_when_temp_appears(proc, tmp_path / STAGES[stage]["folder"], time.perf_counter() + 60)
        else:
            time.sleep(moment)
            proc.kill()
        proc.wait(timeout=60)
        leftovers += _check_folder(stage, tmp_path, ref)
        survived += 1
    assert survived == KILLS + 1
    _run(stage, tmp_path)                           # sweeps the leftovers of the killed runs
    assert _check_folder(stage, tmp_path, ref) == []
    assert sorted(p.name for p in (tmp_path / STAGES[stage]["folder"]).iterdir()) == sorted(STAGES[stage]["targets"])
    probes.record("SIGKILL of a stage at a seeded moment", "no partial output; rerun identical", survived)


def test_a_rerun_sweeps_only_stale_temporaries_of_its_own_outputs(tmp_path):
    folder = tmp_path / "data/checkpoints/shapes"
    folder.mkdir(parents=True)
    stale, fresh = folder / ".baseline.pt.abc123.tmp", folder / ".baseline.pt.def456.tmp"
    other = folder / ".l1.pt.ghi789.tmp"                     # another job's file in the same folder
    for path in (stale, fresh, other):
        path.write_bytes(b"partial")
    old = time.time() - 3600
    for path in (stale, other):
        os.utime(path, (old, old))
    removed = sweep_stale_temp([folder / "baseline.pt", folder / "baseline.json"], older_than=time.time() - 60)
    assert removed == [stale] and fresh.exists() and other.exists()


def test_sigterm_unwinds_and_removes_the_temporary_file(tmp_path):
    target = tmp_path / "out" / "result.npz"
    script = (
        "import sys, time\n"
        "from nnxai import io as nio\n"
        "from nnxai.cli import _sigterm_unwinds\n"
        "try:\n"
        "    with _sigterm_unwinds(), nio.atomic_open(sys.argv[1]) as handle:\n"
        "        handle.write(b'half'); handle.flush(); print('writing', flush=True); time.sleep(60)\n"
        "except BaseException:\n"
        "    sys.exit(143)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(target)], env=_env(), stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "writing"
    assert len(list(target.parent.glob(TEMP_GLOB))) == 1
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode == 143 and not target.exists() and not list(target.parent.glob(TEMP_GLOB))


def test_sigterm_while_the_temporary_file_is_created_leaves_none(tmp_path, monkeypatch):
    """The signal arrives the instant the temporary file exists, before its name is recorded."""
    import tempfile

    from nnxai import io as nio
    from nnxai.cli import _Terminated, _sigterm_unwinds

    real_mkstemp = tempfile.mkstemp

    def mkstemp_then_sigterm(*args, **kwargs):
        made = real_mkstemp(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return made

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_sigterm)
    target = tmp_path / "result.npz"
    with pytest.raises(_Terminated), _sigterm_unwinds(), nio.atomic_open(target) as handle:
        handle.write(b"never")
    assert not target.exists() and not list(tmp_path.glob(TEMP_GLOB))


def test_sigterm_of_a_stage_says_so_and_leaves_no_temporary_file(tmp_path):
    proc = _start("prepare", tmp_path)
    folder = tmp_path / STAGES["prepare"]["folder"]
    deadline = time.perf_counter() + 60
    while proc.poll() is None and time.perf_counter() < deadline and not folder.is_dir():
        time.sleep(0.001)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 143:                      # the handler ran (the usual case): one line, no traceback
        assert "nnxai prepare: terminated (SIGTERM)" in err and "Traceback" not in err
    assert not list(folder.glob(TEMP_GLOB))


def test_checkpoint_bytes_do_not_depend_on_how_the_job_was_started(tmp_path):
    """By hand (--profile: the config's dict order) or from Snakemake (--settings: sorted JSON)."""
    dataset = "iris"
    for workdir in (tmp_path / "hand", tmp_path / "snakemake"):
        assert main(["prepare", "-d", dataset, "--profile", "smoke", "--workdir", str(workdir)]) == 0
    assert main(["train", "-d", dataset, "-m", MODEL, "--profile", "smoke", "--quiet",
                 "--workdir", str(tmp_path / "hand")]) == 0
    assert main(["train", "-d", dataset, "-m", MODEL, "--quiet", "--threads", str(CFG["threads"]),
                 "--settings", settings_json(CFG, "train", dataset=dataset, model=MODEL),
                 "--workdir", str(tmp_path / "snakemake")]) == 0
    hand, job = (tmp_path / w / f"data/checkpoints/{dataset}/{MODEL}.pt" for w in ("hand", "snakemake"))
    assert hand.read_bytes() == job.read_bytes()
    assert hand.with_suffix(".json").read_bytes() == job.with_suffix(".json").read_bytes()


def test_temporary_files_are_ignored_by_dvc_and_git(tmp_path):
    name = "data/prepared/shapes/.train.npz.k3j4l5.tmp"
    assert f"\n{TEMP_GLOB}\n" in "\n" + (ROOT / ".dvcignore").read_text()
    assert f"\n{TEMP_GLOB}\n" in "\n" + (ROOT / ".gitignore").read_text()
    git = subprocess.run(["git", "check-ignore", "-q", name], cwd=ROOT)
    assert git.returncode == 0
    dvc = subprocess.run([sys.executable, "-m", "dvc", "check-ignore", "-q", name], cwd=ROOT, env=_env())
    assert dvc.returncode == 0
