"""Shared fixtures: one end-to-end smoke run of the whole DAG per test session, in a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 1500) -> subprocess.CompletedProcess:
    """Run the project's Snakefile relocated to ``workdir`` with the smoke profile."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--config", "profile=smoke", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted((workdir / "logs").rglob("*.log"))
                         if "error" in p.read_text().lower() or "Traceback" in p.read_text())
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-6000:]}\n{logs}")
    return proc


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The complete smoke DAG, run once; tests read its outputs and must not modify them."""
    workdir = tmp_path_factory.mktemp("smoke")
    start = time.perf_counter()
    snakemake(workdir, "--cores", "2")
    (workdir / "wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    return workdir
