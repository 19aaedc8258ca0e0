"""Shared fixtures: one end-to-end smoke run of the whole DAG per test session, in a temporary folder; the
log of the reliability probes (what was tried, what came of it), written where ``NNXAI_PROBE_LOG`` says
(``benchmarks/reliability.py`` turns it into the README's figures)."""

from __future__ import annotations

import collections
import json
import os
import time
from pathlib import Path

import pytest

from e2e_helpers import snakemake


@pytest.fixture(scope="module")
def one_thread():
    """One torch and one BLAS thread for a test module, as a pipeline job runs: the networks and products of
    unit tests are tiny, so a second thread only adds contention and synchronisation."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The complete smoke DAG, run once; tests read its outputs and must not modify them."""
    workdir = tmp_path_factory.mktemp("smoke")
    start = time.perf_counter()
    snakemake(workdir, "--cores", "2")
    (workdir / "wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    return workdir


class ProbeLog:
    """Counts of reliability probes: ``record(kind, outcome)`` once per bad input tried."""

    def __init__(self) -> None:
        self.counts: collections.Counter = collections.Counter()

    def record(self, kind: str, outcome: str, n: int = 1) -> None:
        self.counts[kind, outcome] += n


_PROBES = ProbeLog()


@pytest.fixture(scope="session")
def probes() -> ProbeLog:
    return _PROBES


def pytest_sessionfinish(session, exitstatus):
    target = os.environ.get("NNXAI_PROBE_LOG")
    if target and _PROBES.counts:
        rows = [{"kind": k, "outcome": o, "count": n} for (k, o), n in sorted(_PROBES.counts.items())]
        Path(target).write_text(json.dumps({"exitstatus": int(exitstatus), "probes": rows}, indent=1) + "\n")


@pytest.fixture
def unimplemented_id():
    """A catalogue id without an implementation, for the tests of what happens to one: every catalogue id
    is implemented, so one (``gradient``) is taken out for the test and put back afterwards."""
    from nnxai import registry

    unimplemented = next((s.id for s in registry.specs() if not registry.is_implemented(s.id)), None)
    if unimplemented is not None:
        yield unimplemented
        return
    cls = registry.get("gradient")
    registry.unregister("gradient")
    try:
        yield "gradient"
    finally:
        registry.register("gradient")(cls)
