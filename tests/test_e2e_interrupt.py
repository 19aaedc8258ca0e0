"""The workflow survives its scheduler being killed (issue 10, point 8).

The smoke DAG is started and the Snakemake scheduler is killed with SIGKILL at seeded random moments
(what power loss or an out-of-memory kill does); after each kill, once the jobs it left running have
ended, ``snakemake --unlock`` clears the lock (as the README's "After an interrupted run" says).  No
output a later job reads may be partial (every file is written atomically: a temporary file renamed into
place), and the final ``snakemake --rerun-incomplete`` must finish with the outputs of an uninterrupted
run, bit for bit (the golden fingerprint of the smoke profile).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e_helpers import ROOT, snakemake

pytestmark = pytest.mark.e2e

KILLS = 2


def _start(workdir: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--config", "profile=smoke", "--cores", "2"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _processes_in(workdir: Path) -> list[int]:
    """Pids of processes still working in ``workdir`` (jobs the killed scheduler left behind)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if os.readlink(proc / "cwd") == str(workdir) or str(workdir) in (proc / "cmdline").read_text():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _wait_for_orphans(workdir: Path, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while _processes_in(workdir):
        if time.monotonic() > deadline:
            for pid in _processes_in(workdir):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.5)


def _partial_outputs(workdir: Path) -> list[str]:
    """Outputs that a later job would read but that are not whole: unreadable npz/json files."""
    import numpy as np

    bad = []
    for path in (workdir / "data").rglob("*"):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as z:
                    [z[k] for k in z.files]
            elif path.suffix == ".json":
                json.loads(path.read_text())
        except Exception as err:   # noqa: BLE001 - any failure to read back is a partial file
            bad.append(f"{path.relative_to(workdir)}: {err}")
    return bad


def test_killed_scheduler_then_rerun_gives_the_uninterrupted_results(tmp_path):
    from smoke_fingerprint import GOLDEN, differences, fingerprint

    rng = random.Random("issue-10-kill-the-scheduler")
    for k in range(KILLS):
        proc = _start(tmp_path)
        time.sleep(rng.uniform(15.0, 45.0) * (k + 1))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        _wait_for_orphans(tmp_path)
        assert not _partial_outputs(tmp_path), _partial_outputs(tmp_path)
        snakemake(tmp_path, "--unlock", "--cores", "1")
    snakemake(tmp_path, "--cores", "2", "--rerun-incomplete")
    diff = differences(fingerprint(tmp_path), json.loads(GOLDEN.read_text()))
    assert not diff, "after kills and a rerun, results differ from the uninterrupted run:\n" + "\n".join(diff[:40])
