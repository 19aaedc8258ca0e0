"""Device, threads and determinism settings shared by every stage that runs torch."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cpu``/``cuda``/``cuda:1`` are taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {name!r} is not valid; use 'auto', 'cpu' or 'cuda[:k]'") from None


def set_threads(threads: int | None) -> None:
    """Match torch's intra-op threads to the cores Snakemake gave the job (two 2-thread jobs thrash 2 cores)."""
    if threads:
        torch.set_num_threads(int(threads))


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a generator for data order.

    On CUDA, deterministic kernels are forced too.  CPU kernels are deterministic already (the end-to-end
    test checks checkpoints byte for byte), and ``torch.use_deterministic_algorithms`` costs ~1.7 s of
    imports per process, which every short pipeline job would pay.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
