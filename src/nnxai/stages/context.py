"""The context an explain or evaluate job works in: the checkpoint and the splits, loaded and checked."""

from __future__ import annotations

from pathlib import Path

import torch

from nnxai import data
from nnxai.methods import fit_cache
from nnxai.methods.base import ExplainContext
from nnxai.models import load_model
from nnxai.paths import CACHE_ROOT, checkpoint_path


def load_context(dataset: str, model_id: str, workdir: Path, seed: int, device: torch.device) -> ExplainContext:
    """The model (gradients enabled on its weights, as the methods expect) and the train and test splits (the
    train split read on first use: most attribution jobs never touch it)."""
    fit_cache.use(Path(workdir) / CACHE_ROOT)     # the cell's explain and evaluate jobs share fitted states
    model = load_model(Path(workdir) / checkpoint_path(dataset, model_id), device=device, require_sidecar=True)
    for p in model.parameters():
        p.requires_grad_(True)
    return ExplainContext(model=model, dataset=dataset, model_id=model_id, info=data.DATASETS[dataset],
                          train=data.LazySplit(dataset, "train", workdir),   # read where a method or metric uses it
                          test=data.load_split(dataset, "test", workdir), seed=seed, device=device,
                          workdir=Path(workdir), cache_dir=Path(workdir) / CACHE_ROOT)
