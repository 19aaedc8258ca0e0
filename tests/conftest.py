"""Shared fixtures: one end-to-end smoke run of the whole DAG per test session, in a temporary folder."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from e2e_helpers import snakemake

# Subprocesses (Snakemake, the CLI, notebooks) import this checkout's sources too: the cached environment is
# shared by clones, and its editable install points at whichever clone ran envs/setup.sh last.
_SRC = str(Path(__file__).resolve().parents[1] / "src")
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [_SRC, os.environ.get("PYTHONPATH", "")] if p)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The complete smoke DAG, run once; tests read its outputs and must not modify them."""
    workdir = tmp_path_factory.mktemp("smoke")
    start = time.perf_counter()
    snakemake(workdir, "--cores", "2")
    (workdir / "wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    return workdir
