"""DVC tracks prepared data and checkpoints: push to a local remote, clone afresh, pull, same bytes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nnxai.dvc_yaml import STAGES

from e2e_helpers import ROOT

pytestmark = pytest.mark.e2e

GIT_ENV = {"GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@localhost", "GIT_COMMITTER_NAME": "ci",
           "GIT_COMMITTER_EMAIL": "ci@localhost"}


def run(cmd, cwd):
    # dvc.yaml's commands call `snakemake`: this interpreter's environment comes first on PATH.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **GIT_ENV, "PATH": path})
    assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def dvc(*args, cwd):
    return run([sys.executable, "-m", "dvc", *args], cwd)


def project_files() -> list[str]:
    """What a clone of this checkout contains: tracked files plus untracked files git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return [p for p in out.splitlines() if (ROOT / p).is_file()]


def tree_bytes(base: Path, sub: str) -> dict[str, bytes]:
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted((base / sub).rglob("*")) if p.is_file()}


def test_push_clone_pull_roundtrip(smoke_run, tmp_path):
    repo, remote, clone = tmp_path / "repo", tmp_path / "remote", tmp_path / "clone"
    for rel in project_files():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, repo / rel)
    for sub in ("data/prepared", "data/checkpoints", "data/explanations", "data/metrics", "paper/tables",
                "paper/figures"):
        shutil.copytree(smoke_run / sub, repo / sub)
    for document in ("paper/results.md", "paper/results.tex", "paper/main.pdf"):   # the results document, the PDF
        shutil.copy2(smoke_run / document, repo / document)
    assert (repo / ".dvc/config").is_file(), ".dvc/ must be committed"

    (repo / "configs/dvc_params.yaml").write_text("profile: smoke\ncores: 2\n")
    run(["git", "init", "-q"], repo)
    # dvc repro runs every stage's Snakemake target; the smoke outputs are there already, so Snakemake
    # finds nothing to do and DVC records (and caches) the outputs in dvc.lock.
    repro = dvc("repro", cwd=repo)
    assert repro.count("Running stage") == len(STAGES) == 5
    logs = sorted((repo / ".snakemake/log").glob("*.log"))
    assert len(logs) == len(STAGES) and all("Nothing to be done" in p.read_text() for p in logs)
    assert "changed" not in dvc("status", cwd=repo).lower()
    dvc("remote", "add", "-d", "local", str(remote), cwd=repo)
    dvc("push", "prepare", "train", cwd=repo)
    metrics = json.loads(dvc("metrics", "show", "--json", cwd=repo))
    shown = json.dumps(metrics)
    assert "accuracy" in shown and "shapes" in shown

    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "snapshot"], repo)
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "data/checkpoints").exists() and (clone / "dvc.lock").is_file()
    dvc("pull", "prepare", "train", cwd=clone)
    for sub in ("data/prepared", "data/checkpoints"):
        pulled, original = tree_bytes(clone, sub), tree_bytes(smoke_run, sub)
        assert pulled.keys() == original.keys() and pulled == original, sub
