"""What the active methods' tests share: one torch thread, as a pipeline job runs (tiny steps are slower on
two contended threads), and seeded rows of the planted tabular set."""

from __future__ import annotations

import pytest
import torch

from nnxai.data import planted


@pytest.fixture(scope="module", autouse=True)
def _one_thread_per_module(one_thread):
    """Every test module here runs on one thread (the shared ``one_thread`` fixture)."""


def planted_split(n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` rows of ``planted`` from the stream ``[0, k]``, as tensors."""
    rows = planted.generate(n, [0, k])
    return torch.as_tensor(rows["x"]), torch.as_tensor(rows["y"])
