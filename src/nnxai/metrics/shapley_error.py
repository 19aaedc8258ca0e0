"""``shapley_error``: how far are a method's Shapley values from the exact ones? ([104]–[107])

The Shapley value of player ``i`` in a game ``v`` over ``n`` players ``P`` is (Shapley 1953; [104], [105])

    φ_i = Σ_{S ⊆ P∖{i}} |S|! (n − |S| − 1)! / n! · [ v(S ∪ {i}) − v(S) ].

:func:`exact_shapley` evaluates it by enumerating all ``2^n`` coalitions in one call of the value function
(which batches its forward passes), up to ``max_players`` players (13 in the config: 8,192 coalitions,
enough for iris, wine and the 3 × 3 image cells of ``patch: 11``).  For more players the reference is a
permutation-sampling estimate (:func:`permutation_shapley`, ``reference_permutations`` antithetic
permutations: each one and its reverse), unbiased, with sampling error ∝ 1/√permutations;
``shapley_error.exact`` reports which reference was used (1 / 0).  In the default config that happens only
for breast_cancer's 30 features (2,000 permutations, i.e. 1,000 pairs: the reference's standard error is
at least √(1000/25) ≈ 6 times smaller than that of ``shapley_sampling`` with 25 permutations).

What is compared.  The players are the *method's*: one per feature of a table, the ``patch``-pixel cells
of an image for ``shapley_sampling``, ``kernel_shap`` and ``dasp`` (read from ``method.player_groups``,
recomputed from the record's parameters; a method without it gets one player per feature, images then
raise).  The method's value of a player is its map summed over the player's input values (these methods
spread ``φ_g / |g|`` over each cell, so the sum is ``φ_g`` exactly); for a map made on finer players the
sum over a cell is *not* the cell's Shapley value in general, which is why the players are the method's.
The game is by default the method's own, ``v(S) = f_c(x_S ∪ r_{P∖S})``: the explained class's logit with
absent players at the reference ``r`` recorded in ``meta["baseline"]``.  A method whose value function
differs (causal Shapley values [107]: an interventional expectation under a causal graph) provides
``method.shapley_game(ctx, record)``, returning ``game(x, target, coalitions) → values``: ``x`` one input,
``target`` an int, ``coalitions`` a bool ``(M, n_players)`` tensor, values ``(M,)`` float64.

Scores, per explained input (the first ``max_inputs`` of the record), averaged:

- ``shapley_error``: relative L2 error ``‖φ − φ*‖₂ / (‖φ*‖₂ + 1e-12)`` against the reference ``φ*``
  (lower is better; 0 exact, 1 for e.g. an all-zero or a doubled explanation);
- ``shapley_error.efficiency``: ``|Σ_i φ_i − (v(P) − v(∅))|``, the violation of efficiency on the logit
  scale (``v(P) − v(∅) = f_c(x) − f_c(r)`` for the default game).

The reference values of the default game depend only on the model, input, class, reference and players,
not on the method: they are cached in the metric instance and, in a workflow run, on disk under
``<workdir>/.nnxai-cache/shapley_reference/`` (one file per input, keyed by a digest of the model's
weights, the input, class, reference, players, seed and this metric's parameters), so that the evaluate
jobs of the methods that share a game (``shapley_sampling``, ``kernel_shap`` and ``dasp`` on one model)
compute it once.  An unreadable entry is recomputed; a value is the same whichever job computes it.
"""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from nnxai.intervals import PerInput
from nnxai.io import atomic_write_bytes
from nnxai.metrics.attribution import FORWARD_BATCH, explained_inputs, reference_from_meta
from nnxai.metrics.base import Metric, register_metric
from nnxai.ops.groups import player_sums
from nnxai.ops.noise import input_seed
from nnxai.params import Int

ValueFunction = Callable[[torch.Tensor], torch.Tensor]
#: Folder of ``ctx.cache_dir`` that holds the reference values shared by the evaluate jobs of one model.
REFERENCE_CACHE = "shapley_reference"
#: Coalitions enumerated up to this many players at most, whatever ``max_players`` (2^20 = 1,048,576).
ENUMERATION_LIMIT = 20


def all_coalitions(n_players: int, device=None) -> torch.Tensor:
    """``(2^n, n)`` bool: row ``m`` holds the players of the coalition whose bitmask is ``m``."""
    masks = torch.arange(2 ** n_players, device=device)
    return (masks[:, None] >> torch.arange(n_players, device=device)) & 1 == 1


def exact_shapley(value_fn: ValueFunction, n_players: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact Shapley values of the game ``value_fn`` by enumeration of all ``2^n`` coalitions.

    Parameters
    ----------
    value_fn : callable
        Maps a bool ``(M, n_players)`` tensor of coalitions to their values ``(M, ...)``; called once, with
        all ``2^n`` coalitions (it may batch its own forward passes).
    n_players : int
        ``n`` (at most :data:`ENUMERATION_LIMIT`).

    Returns
    -------
    phi : torch.Tensor
        float64 ``(..., n_players)``: the Shapley value of every player (for every trailing entry of the
        values, e.g. classes).
    values : torch.Tensor
        float64 ``(2^n, ...)``: ``v`` of every coalition, row = bitmask (row 0 = ∅, last = all players).
    """
    if not 1 <= n_players <= ENUMERATION_LIMIT:
        raise ValueError(f"exact_shapley enumerates 2^n coalitions for 1 <= n <= {ENUMERATION_LIMIT} players, "
                         f"got n = {n_players}")
    coalitions = all_coalitions(n_players)
    values = torch.as_tensor(value_fn(coalitions)).double()
    if values.shape[0] != len(coalitions):
        raise ValueError(f"value_fn returned {values.shape[0]} values for {len(coalitions)} coalitions")
    device = values.device
    sizes = coalitions.sum(1).to(device)
    weights = torch.tensor([math.factorial(s) * math.factorial(n_players - s - 1) / math.factorial(n_players)
                            for s in range(n_players)], dtype=torch.float64, device=device)
    low = torch.arange(2 ** (n_players - 1), device=device)
    phi = []
    for i in range(n_players):          # coalitions without i: insert a 0 bit at position i
        without = ((low >> i) << (i + 1)) | (low & ((1 << i) - 1))
        gain = values[without | (1 << i)] - values[without]
        w = weights[sizes[without]].reshape(-1, *(1,) * (values.dim() - 1))
        phi.append((w * gain).sum(0))
    return torch.stack(phi, dim=-1), values


def permutation_shapley(value_fn: ValueFunction, n_players: int, n_permutations: int,
                        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shapley values estimated from ``n_permutations`` antithetic permutations (each and its reverse).

    Returns ``(phi (..., n), v(∅), v(all players))``, float64; ``value_fn`` is called once with every
    prefix coalition of every permutation.  Efficiency holds exactly for any number of permutations.
    """
    half = -(-n_permutations // 2)
    perms = torch.stack([torch.randperm(n_players, generator=generator) for _ in range(half)])
    perms = torch.cat([perms, perms.flip(1)])
    rank = torch.argsort(perms, dim=1)                                        # position of each player
    steps = torch.arange(n_players + 1)
    prefixes = rank[:, None, :] < steps[None, :, None]                        # (P, n + 1, n)
    values = torch.as_tensor(value_fn(prefixes.reshape(-1, n_players))).double()
    values = values.reshape(len(perms), n_players + 1, *values.shape[1:]).cpu()
    rank_v = rank.reshape(*rank.shape, *(1,) * (values.dim() - 2)).expand(-1, -1, *values.shape[2:])
    gain = values.gather(1, rank_v + 1) - values.gather(1, rank_v)            # (P, n, ...)
    return gain.mean(0).movedim(0, -1), values[0, 0], values[0, -1]


def baseline_game(model, x: torch.Tensor, target: int, reference: torch.Tensor,
                  groups: torch.Tensor) -> ValueFunction:
    """``v(S) = f_target(x_S ∪ r_{P∖S})``: the logit with the values of absent players at ``reference``."""
    flat_groups = groups.flatten().to(x.device)

    @torch.no_grad()
    def value(coalitions: torch.Tensor) -> torch.Tensor:
        out = []
        for chunk in coalitions.to(x.device).split(FORWARD_BATCH):
            keep = chunk[:, flat_groups].reshape(len(chunk), *x.shape)
            out.append(model(torch.where(keep, x, reference.reshape(x.shape)))[:, target].double())
        return torch.cat(out)

    return value


def players_of(method: Any, input_shape: tuple[int, ...]) -> tuple[torch.Tensor, int]:
    """The method's players (``method.player_groups``), else one per feature of a table."""
    if hasattr(method, "player_groups"):
        return method.player_groups(tuple(input_shape))
    if len(input_shape) == 1:
        return torch.arange(input_shape[0]), int(input_shape[0])
    raise ValueError(f"method {getattr(getattr(method, 'spec', None), 'id', method)!r} declares no players "
                     f"(player_groups) for inputs of shape {tuple(input_shape)}")


def _digest(*tensors: torch.Tensor) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        h.update(np.asarray(t.shape, dtype=np.int64).tobytes())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.digest()


@register_metric
class ShapleyError(Metric):
    """Relative L2 error of a method's player values against exact (or large-sample) Shapley values."""

    id = "shapley_error"
    higher_is_better = False
    kinds = frozenset({"attribution"})
    parameters = {
        "max_players": Int("players n up to which the reference φ* enumerates all 2^n coalitions (exact); "
                           "a permutation estimate beyond", low=1, high=ENUMERATION_LIMIT),
        "reference_permutations": Int("antithetic permutations of the reference estimate beyond max_players",
                                      low=1),
        "max_inputs": Int("the first explained inputs of the record that are scored", low=1),
    }
    description = "relative L2 error of the player values against exact Shapley values of the same game"

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._cache: dict[bytes, tuple[torch.Tensor, torch.Tensor]] = {}

    def reference_values(self, value_fn: ValueFunction, n_players: int, x: torch.Tensor,
                         seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(φ* (n,), v(P) − v(∅))`` of one input's game: exact, or estimated beyond ``max_players``."""
        if n_players <= self.params["max_players"]:
            phi, values = exact_shapley(value_fn, n_players)
            return phi.cpu(), (values[-1] - values[0]).cpu()
        generator = torch.Generator().manual_seed(input_seed(x, seed, "shapley_error"))
        phi, empty, full = permutation_shapley(value_fn, n_players, self.params["reference_permutations"],
                                               generator)
        return phi, full - empty

    def cached_reference(self, ctx, key: bytes, compute: Callable[[], tuple[torch.Tensor, torch.Tensor]]):
        """``compute()``, memoised in this instance and in ``ctx.cache_dir`` (when the context has one)."""
        if key in self._cache:
            return self._cache[key]
        root = getattr(ctx, "cache_dir", None)
        path = None if root is None else Path(root) / REFERENCE_CACHE / f"{key.hex()}.pt"
        value = None
        if path is not None and path.is_file():
            try:
                phi, delta = torch.load(path, weights_only=True)
                value = (phi, delta)
            except Exception:        # unreadable or half-written by an older run: recomputed below
                value = None
        if value is None:
            value = compute()
            if path is not None:
                buffer = io.BytesIO()
                torch.save(tuple(t.detach().cpu() for t in value), buffer)
                atomic_write_bytes(path, buffer.getvalue())
        self._cache[key] = value
        return value

    def __call__(self, record, ctx, method):
        inputs, targets, attributions = explained_inputs(record, ctx)
        keep = slice(0, self.params["max_inputs"])
        inputs, targets, attributions = inputs[keep], targets[keep], attributions[keep]
        groups, n_players = players_of(method, tuple(inputs.shape[1:]))
        values = player_sums(attributions, groups, n_players).cpu()
        custom = getattr(method, "shapley_game", None)
        game = custom(ctx, record) if custom is not None else None
        reference = None if game is not None else reference_from_meta(record.meta, inputs)
        from nnxai.evaluation_cache import code_digest       # the reference's code: part of its disk key

        model_key = _digest(*[p for p in ctx.model.state_dict().values()]) + bytes.fromhex(
            code_digest([__name__]))
        errors, efficiency = [], []
        for x, target, phi in zip(inputs, targets.tolist(), values):
            if game is not None:
                ref_phi, delta = self.reference_values(lambda c: game(x, target, c), n_players, x, ctx.seed)
            else:
                key = model_key + _digest(x, reference, groups, torch.tensor(
                    [target, ctx.seed, self.params["max_players"], self.params["reference_permutations"]]))
                ref_phi, delta = self.cached_reference(ctx, key, lambda: self.reference_values(
                    baseline_game(ctx.model, x, target, reference, groups), n_players, x, ctx.seed))
            errors.append(float((phi - ref_phi).norm() / (ref_phi.norm() + 1e-12)))
            efficiency.append(abs(float(phi.sum() - delta)))
        return {"shapley_error": PerInput(errors),
                "shapley_error.efficiency": PerInput(efficiency),
                "shapley_error.exact": float(n_players <= self.params["max_players"])}
