"""Checkpoints: ``data/checkpoints/{dataset}/{model}.pt`` plus a ``.json`` record beside it.

The ``.pt`` file holds only tensors and plain Python values (architecture, config, seed, code version),
so it loads with ``torch.load(weights_only=True)``: no pickled code runs when a checkpoint is opened.
It is saved through an open file object and renamed into place, which keeps the bytes reproducible
(``torch.save`` names the archive's inner folder after the file name otherwise) and the write atomic.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnxai.io import atomic_write_bytes
from nnxai.models.networks import build_network


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or not one of ours."""


def save_checkpoint(path: str | Path, model: nn.Module, record: dict[str, Any]) -> Path:
    """Write ``model``'s weights with ``record`` (must contain ``architecture`` and ``arch_kwargs``)."""
    for key in ("architecture", "arch_kwargs"):
        if key not in record:
            raise ValueError(f"checkpoint record needs {key!r}")
    payload = dict(record)
    payload["state_dict"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, loaded safely; clear errors for missing or damaged files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; train it with `snakemake --cores 2 {path}` or `dvc pull {path.parent}`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, pickle.UnpicklingError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint ({err}); delete it and retrain") from err
    if not isinstance(payload, dict) or "state_dict" not in payload or "architecture" not in payload:
        raise CheckpointError(f"{path} is not an nnxai checkpoint (no state_dict/architecture)")
    return payload


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Load a trained model in eval mode (public contract, re-exported as ``nnxai.load_model``)."""
    payload = read_checkpoint(path)
    model = build_network(payload["architecture"], **payload["arch_kwargs"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit architecture {payload['architecture']} ({err})") from err
    model.checkpoint = {k: v for k, v in payload.items() if k != "state_dict"}
    return model.to(device).eval()
