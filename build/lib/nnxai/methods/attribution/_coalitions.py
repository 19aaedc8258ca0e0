"""The model's score on *coalitions* of input components, batched: the one forward loop of the sampling
methods that query ``f`` on inputs made of parts of ``x`` and parts of a reference (``shapley_sampling``
[104], ``kernel_shap`` [105], ``lime`` [20]).

A coalition is a boolean vector over the ``P`` components (players, superpixels, columns) of one input; the
input it stands for keeps ``x`` where its component is present and takes the reference ``r`` elsewhere,

    z = r + m[index] ⊙ (x − r),

with ``index`` the component of every input value.  :func:`coalition_scores` composes these inputs chunk by
chunk, across the coalitions of *all* inputs of a batch, and runs the model on at most ``PASS_INPUTS`` of
them per forward pass, so a method makes the fewest passes its sample allows (Captum's samplers make one
pass per permutation or per ``perturbations_per_eval`` samples of one input, and build every sample in
Python).  Chunking bounds memory; results change only by float rounding.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

#: Most composed inputs in one forward pass; bounds memory only.
PASS_INPUTS = 512


def with_empty_and_full(masks: torch.Tensor) -> torch.Tensor:
    """``masks`` (B, S, P) preceded by the empty and the full coalition of every input: (B, S + 2, P)."""
    n_inputs, _, n_players = masks.shape
    ends = torch.zeros(n_inputs, 2, n_players, dtype=torch.bool, device=masks.device)
    ends[:, 1] = True
    return torch.cat([ends, masks], dim=1)


def coalition_scores(model: nn.Module, inputs: torch.Tensor, references: torch.Tensor, masks: torch.Tensor,
                     index: torch.Tensor, target: torch.Tensor, score: Literal["logit", "probability"] = "logit",
                     pass_inputs: int = PASS_INPUTS) -> torch.Tensor:
    """``f_c(z)`` for every coalition of every input, ``(B, S)`` in the model's dtype.

    Parameters
    ----------
    inputs : (B, ...) tensor
        The explained inputs.
    references : (1, ...) or (B, ...) tensor
        Value of absent components: one reference for all inputs, or one per input.
    masks : (B, S, P) bool tensor
        ``S`` coalitions of each input's ``P`` components.
    index : long tensor shaped like one input, or (B, ...)
        Component (0..P−1) of every value of an input: the same for all inputs, or one per input.
    target : (B,) long tensor
        Class ``c`` whose score is read for each input.
    score : {"logit", "probability"}
        The model's output for class ``c``, or its softmax probability.
    """
    if score not in ("logit", "probability"):
        raise ValueError(f"score must be 'logit' or 'probability', got {score!r}")
    n_inputs, n_coalitions, _ = masks.shape
    flat_x = inputs.detach().reshape(n_inputs, -1)
    flat_r = references.detach().reshape(len(references), -1)
    flat_index = index.reshape(-1 if index.dim() < inputs.dim() else n_inputs, flat_x.shape[1])
    flat_index = flat_index.to(inputs.device)
    target = target.to(inputs.device)
    out = torch.empty(n_inputs * n_coalitions, dtype=inputs.dtype, device=inputs.device)
    with torch.no_grad():
        for start in range(0, n_inputs * n_coalitions, pass_inputs):
            rows = torch.arange(start, min(start + pass_inputs, n_inputs * n_coalitions), device=inputs.device)
            which, coalition = rows // n_coalitions, rows % n_coalitions
            row_index = flat_index[0].expand(len(rows), -1) if len(flat_index) == 1 else flat_index[which]
            present = torch.gather(masks[which, coalition], 1, row_index).to(inputs.dtype)
            base = flat_r[0] if len(flat_r) == 1 else flat_r[which]
            composed = base + present * (flat_x[which] - base)
            logits = model(composed.reshape(len(rows), *inputs.shape[1:]))
            values = logits.softmax(dim=1) if score == "probability" else logits
            out[start:start + len(rows)] = values.gather(1, target[which][:, None])[:, 0]
    return out.reshape(n_inputs, n_coalitions)
