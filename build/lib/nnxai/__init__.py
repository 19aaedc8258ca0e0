"""nnxai: the reference reproduction of "A Survey on Neural Network Interpretability"
(Zhang, Tino, Leonardis & Tang, IEEE TETCI 2021).

Public entry points (DESIGN.md contracts): :func:`load_model` and :func:`load_dataset`.
"""

from __future__ import annotations

__version__ = "0.1.0"


def load_model(checkpoint_path, device="cpu"):
    """Load a trained model from ``data/checkpoints/{dataset}/{model}.pt`` in eval mode (weights-only load)."""
    from nnxai.models.checkpoint import load_model as _load

    return _load(checkpoint_path, device=device)


def load_dataset(name, split, workdir="."):
    """``(inputs, labels)`` tensors of a prepared split (``train``, ``val`` or ``test``)."""
    from nnxai.data import load_dataset as _load

    return _load(name, split, workdir)


__all__ = ["__version__", "load_dataset", "load_model"]
