"""Randomness determined by an input's values: the same input gets the same draws however it is batched,
and the global RNG is neither read nor advanced (SmoothGrad's noise [39], the samplers' coins).
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager

import numpy as np
import torch


def input_noise(x: torch.Tensor, n_samples: int, seed: int) -> torch.Tensor:
    """Standard normal noise ``(n_samples, *x.shape)`` determined by the values of ``x`` and ``seed`` only."""
    gen = torch.Generator().manual_seed(input_seed(x, seed))
    return torch.randn((n_samples, *x.shape), generator=gen, dtype=x.dtype).to(x.device)


def input_seed(x: torch.Tensor, seed: int, salt: str = "") -> int:
    """A 63-bit seed determined by the values and shape of ``x``, ``seed`` and ``salt`` only."""
    values = x.detach().cpu().contiguous()
    digest = hashlib.blake2b(digest_size=8)
    digest.update(np.int64(seed).tobytes())
    digest.update(salt.encode())
    digest.update(np.asarray(values.shape, dtype=np.int64).tobytes())
    digest.update(values.numpy().tobytes())
    return int.from_bytes(digest.digest(), "little") & (2**63 - 1)


@contextmanager
def seeded(seed: int):
    """Run the block with torch's CPU RNG seeded by ``seed``; the caller's RNG state is restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def per_input_normals(x: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """``count`` standard normal draws (1-D) determined by the values of the one input ``x`` and ``seed``."""
    copies = max(1, math.ceil(count / max(x.numel(), 1)))
    return input_noise(x, copies, seed).reshape(-1)[:count]
