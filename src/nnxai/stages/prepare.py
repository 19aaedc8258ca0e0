"""Stage ``prepare``: build one data set's splits; write them and ``meta.json``."""

from __future__ import annotations

from pathlib import Path

from nnxai import data
from nnxai.paths import prepared_path
from nnxai.stages._common import sweep


def prepare(settings: dict, workdir: Path) -> Path:
    """Build one data set's splits; write them and ``meta.json``."""
    dataset = settings["dataset"]
    sweep(workdir, [prepared_path(dataset, s) for s in data.SPLITS] + [f"data/prepared/{dataset}/meta.json"])
    return data.prepare(dataset, workdir, settings["sizes"], settings["seed"])
