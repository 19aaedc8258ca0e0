"""Shared fixtures: one end-to-end smoke run of the whole DAG per test session, in a temporary folder."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from e2e_helpers import snakemake


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The complete smoke DAG, run once; tests read its outputs and must not modify them."""
    workdir = tmp_path_factory.mktemp("smoke")
    start = time.perf_counter()
    snakemake(workdir, "--cores", "2")
    (workdir / "wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    return workdir
