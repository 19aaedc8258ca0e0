"""envs/nnxai.yaml (for `snakemake --use-conda`) pins exactly what pyproject.toml pins; envs/setup.sh's
shared environment runs each clone's own sources."""

import os
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_conda_env_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    env = yaml.safe_load((ROOT / "envs/nnxai.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert set(pip) == wanted
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python.split("=")[1] in project["requires-python"] or python == "python=3.11"


def test_torch_pins():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.14.1" in deps and "torchvision==0.29.1" in deps
    assert all("==" in d for d in deps), "every dependency is pinned exactly"


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").exists(), reason="envs/setup.sh has not linked .venv here")
def test_this_checkouts_venv_runs_this_checkouts_sources():
    """The cached environment is shared by clones; `<clone>/.venv/bin/python` must import `<clone>/src`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", "import nnxai; print(nnxai.__file__)"],
                          capture_output=True, text=True, check=True, env=env, cwd="/")
    assert Path(proc.stdout.strip()).resolve().is_relative_to((ROOT / "src").resolve())
