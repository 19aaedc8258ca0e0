"""Causal Shapley values, Heskes, Sijben, Bucur & Claassen 2020 (survey [107]).

Shapley values attribute ``f(x) − E[f(X)]`` to the features ``N = {1..n}``:

    φ_i = Σ_{S ⊆ N∖{i}} |S|! (n − |S| − 1)! / n! · [v(S ∪ {i}) − v(S)],

and differ in the value function ``v``.  Heskes et al. (Sec. 2) take the *interventional* expectation
under the data's causal model,

    v(S) = E[f(X) | do(X_S = x_S)],

where, by Pearl's do-calculus, the features outside ``S`` are drawn from the structural causal model
with ``X_S`` clamped to ``x_S``: descendants of ``S`` move with the intervention, ancestors keep their
marginal law.  A feature thus gets credit for its effect on the features ``f`` reads (an *indirect*
effect), which marginal ("interventional-independent") Shapley values, ``v(S) = E[f(x_S, X_S̄)]``, deny it.

Decomposition (their Sec. 3).  Each marginal contribution splits into a direct and an indirect effect,

    v(S ∪ {i}) − v(S) = ( E[f(X_{S̄∖i}, x_i, x_S) | do(X_S = x_S)] − v(S) )                 direct
                      + ( v(S ∪ {i}) − E[f(X_{S̄∖i}, x_i, x_S) | do(X_S = x_S)] ),          indirect

the direct part changing only the value ``f`` reads for feature ``i``, the indirect part the values of
the other out-of-coalition features through the intervention on ``X_i``; weighted as in ``φ_i`` they give
``φ_i = direct_i + indirect_i``, recorded by :meth:`CausalShapley.explain` in ``meta``.

Computation here.  ``f`` is the logit of the explained class.  Every coalition is enumerated (exact
Shapley weights; at most :data:`MAX_FEATURES` features).  ``v(S)`` is a Monte-Carlo mean over
``n_samples`` draws of the SCM's noise, the same draws for every coalition (common random numbers): then
``v(N) = f(x)`` exactly and Σ_i φ_i = f(x) − v̂(∅) holds to rounding, ``v̂(∅)`` being the Monte-Carlo
estimate of ``E[f(X)]``.  The draws are antithetic (``ε`` and ``−ε``), which keeps the estimator unbiased
and makes it exact for a linear ``f`` on a linear SCM.  Each input draws its noise with
:func:`~nnxai.ops.noise.input_noise` (seeded by its values and the fitted seed), so results do not depend
on batching.

Applicability.  Only data whose causal graph is known: :data:`nnxai.data.causal.CAUSAL_GRAPHS` (the
generated ``causal`` set, a linear-Gaussian SCM).  :meth:`CausalShapley.fit` reads the SCM the train split
was drawn from (recorded in its ``meta["scm"]``), checked against the data set's graph (:func:`data_scm`).

Scoring.  The ``shapley_error`` metric compares φ with exact Shapley values of the same game;
:meth:`CausalShapley.shapley_game` gives it the interventional value function estimated with
:data:`REFERENCE_FACTOR` times as many antithetic draws, independent of the method's (seed
``ctx.seed + REFERENCE_SEED_OFFSET``), so the score measures the method's Monte-Carlo error.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from nnxai.data.causal import CAUSAL_GRAPHS, LinearGaussianSCM
from nnxai.explanations import AttributionMap
from nnxai.methods.base import AttributionMethod, explained_indices
from nnxai.ops.noise import input_noise
from nnxai.params import Int, ParamError
from nnxai.registry import register

#: Most features for exact enumeration of the 2^n coalitions.
MAX_FEATURES = 12
#: Sampled rows per forward pass; bounds memory only.
ROWS_PER_PASS = 2**16
#: The reference game of ``shapley_error`` draws this many times ``n_samples`` ...
REFERENCE_FACTOR = 10
#: ... from noise seeded apart from the method's.
REFERENCE_SEED_OFFSET = 2**32


def coalitions(n: int) -> torch.Tensor:
    """``(2^n, n)`` bool: row ``k`` holds feature ``j`` iff bit ``j`` of ``k`` is set."""
    k = torch.arange(2**n)[:, None]
    return (k >> torch.arange(n)[None, :]) & 1 == 1


def shapley_weight(size: int, n: int) -> float:
    """``|S|! (n − |S| − 1)! / n!``."""
    return math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)


def interventional_samples(scm: LinearGaussianSCM, x: torch.Tensor, members: torch.Tensor,
                           noise: torch.Tensor) -> torch.Tensor:
    """Draws of ``X | do(X_S = x_S)`` for every input and coalition: ``(B, m, n_samples, d)`` float64.

    ``x`` (B, d), ``members`` (m, d) bool (the coalitions ``S``), ``noise`` (B, n_samples, d) standard
    normal.  Variables are set in topological order: clamped to ``x_j`` when ``j ∈ S``, else from their
    structural equation with the parents' (clamped or drawn) values.
    """
    coef = torch.tensor(scm.coefficients, dtype=torch.float64)
    b, m, s, d = len(x), len(members), noise.shape[1], x.shape[1]
    out = torch.empty(b, m, s, d, dtype=torch.float64)
    for j in range(d):
        drawn = scm.intercepts[j] + scm.noise_std[j] * noise[:, None, :, j]
        if j:
            drawn = drawn + out[..., :j] @ coef[j, :j]
        out[..., j] = torch.where(members[None, :, None, j], x[:, None, None, j], drawn)
    return out


def _mean_logits(model: nn.Module, target: torch.Tensor, rows, count: int, n_samples: int,
                 dtype: torch.dtype) -> torch.Tensor:
    """``(B, count)``: mean over the samples of the target logit on ``rows(start, stop)`` (B, m, n, d)."""
    b = len(target)
    step = max(1, ROWS_PER_PASS // (b * n_samples))
    parts = []
    for start in range(0, count, step):
        chunk = rows(start, min(start + step, count))
        m = chunk.shape[1]
        logits = model(chunk.reshape(-1, chunk.shape[-1]).to(dtype)).double()
        picked = logits.gather(1, target.repeat_interleave(m * n_samples)[:, None])
        parts.append(picked.reshape(b, m, n_samples).mean(2))
    return torch.cat(parts, dim=1)


@torch.no_grad()
def causal_shapley_decomposition(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                                 scm: LinearGaussianSCM, noise: torch.Tensor) -> dict[str, torch.Tensor]:
    """Causal Shapley values of the target logit with their direct/indirect split (module docstring).

    Parameters
    ----------
    model : nn.Module
        Maps ``(M, d)`` rows to logits.
    inputs : torch.Tensor
        ``(B, d)`` inputs, features in the SCM's order.
    target : torch.Tensor
        ``(B,)`` classes.
    scm : LinearGaussianSCM
        Causal model of the features.
    noise : torch.Tensor
        ``(B, n_samples, d)`` standard-normal SCM noise per input (shared by all coalitions).

    Returns
    -------
    dict
        ``phi``, ``direct``, ``indirect`` (B, d) and ``expected`` (B,) = v̂(∅), all float64.
    """
    b, d = inputs.shape
    n_samples = noise.shape[1]
    x = inputs.detach().double().cpu()
    noise = noise.double().cpu()
    target = target.cpu()
    members = coalitions(d)
    device_model = _cpu_in_cpu_out(model, inputs.device)

    def coalition_rows(start, stop):
        return interventional_samples(scm, x, members[start:stop], noise)

    value = _mean_logits(device_model, target, coalition_rows, len(members), n_samples, inputs.dtype)

    # pairs (S, i) with i ∉ S: the direct-effect term E[f(X_{S̄∖i}, x_i, x_S) | do(X_S = x_S)]
    pair_s, pair_i = (~members).nonzero(as_tuple=True)

    def pair_rows(start, stop):
        rows = interventional_samples(scm, x, members[pair_s[start:stop]], noise)
        swap = torch.nn.functional.one_hot(pair_i[start:stop], d).bool()        # (m, d): feature i of pair
        return torch.where(swap[None, :, None, :], x[:, None, None, :], rows)

    swapped = _mean_logits(device_model, target, pair_rows, len(pair_s), n_samples, inputs.dtype)
    sizes = members.sum(1)
    weight = torch.tensor([shapley_weight(int(sizes[s]), d) for s in pair_s.tolist()], dtype=torch.float64)
    with_i = pair_s + (1 << pair_i)
    direct = torch.zeros(b, d, dtype=torch.float64).index_add_(1, pair_i, weight * (swapped - value[:, pair_s]))
    indirect = torch.zeros(b, d, dtype=torch.float64).index_add_(1, pair_i, weight * (value[:, with_i] - swapped))
    return {"phi": direct + indirect, "direct": direct, "indirect": indirect, "expected": value[:, 0]}


def _cpu_in_cpu_out(model: nn.Module, device: torch.device):
    """The model as a function of CPU rows, run on the inputs' device."""
    return lambda rows: model(rows.to(device)).cpu()


def data_scm(train: Any, info: Any) -> LinearGaussianSCM:
    """The structural causal model the split ``train`` was drawn from.

    The SCM recorded in ``train.meta["scm"]`` (written when the data set was prepared) or, where the split
    records none, the graph :data:`~nnxai.data.causal.CAUSAL_GRAPHS` holds for the data set ``info.name``.

    Raises
    ------
    ValueError
        If the recorded SCM differs from the data set's graph (data prepared by an older generator), or
        neither is known.
    """
    recorded = (train.meta or {}).get("scm")
    name = getattr(info, "name", None)
    known = CAUSAL_GRAPHS.get(name)
    if recorded is None:
        if known is None:
            raise ValueError(f"causal Shapley values need the causal graph of the data: the train split records "
                             f"no meta['scm'] and {name!r} is not one of {sorted(CAUSAL_GRAPHS)}")
        return known
    scm = LinearGaussianSCM.from_dict(recorded)
    if known is not None and not scm.same_as(known):
        raise ValueError(f"the prepared {name!r} data were drawn from another SCM than nnxai.data.causal holds "
                         "now; prepare the data set again")
    return scm if known is None else known


def antithetic_noise(inputs: torch.Tensor, n_samples: int, seed: int) -> torch.Tensor:
    """``(B, n_samples, d)``: per input ``n_samples / 2`` draws of :func:`input_noise` and their negatives."""
    half = [input_noise(x.detach().cpu(), n_samples // 2, seed) for x in inputs]
    return torch.stack([torch.cat([e, -e]) for e in half]).double()


@register("causal_shapley")
class CausalShapley(AttributionMethod):
    """Causal Shapley values [107]: exact coalition enumeration, ``v(S) = E[f_c(X) | do(X_S = x_S)]``.

    Attributes
    ----------
    scm_ : LinearGaussianSCM
        Causal model of the features, read by :meth:`fit` from the train split (:func:`data_scm`).

    Notes
    -----
    No reference input: ``baselines`` passed to :meth:`attribute` are ignored.  Every input's SCM noise is
    seeded by its values and the fitted seed (:attr:`~nnxai.methods.base.Method.seed`).
    """
    model_agnostic = True    # queries the model's outputs only

    parameters = {**AttributionMethod.parameters,
                  "n_samples": Int("Monte-Carlo draws of the SCM's noise per coalition estimating "
                                   "v(S) = E[f(X) | do(X_S = x_S)]: antithetic pairs, so even", low=2)}
    modalities = frozenset({"tabular"})

    @classmethod
    def check_combination(cls, params: dict[str, Any]) -> None:
        if params["n_samples"] % 2:
            raise ParamError(f"method {cls.spec.id!r}.n_samples: {params['n_samples']!r} is odd; the draws "
                             "come in antithetic pairs (ε and −ε), so it must be even")

    def _fit(self, model: nn.Module, train: Any) -> None:
        self.scm_ = data_scm(train, self.info_)

    @classmethod
    def why_not(cls, info, traits):
        reason = super().why_not(info, traits)
        if reason is None and info.name not in CAUSAL_GRAPHS:
            reason = (f"needs the causal graph of the data, known only for {sorted(CAUSAL_GRAPHS)}, "
                      f"not {info.name}")
        return reason

    def decompose(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """:func:`causal_shapley_decomposition` of ``inputs`` in passes of ``batch_size`` (fitted for ``model``)."""
        self.check_fitted(model)
        d = self.scm_.n_features
        if inputs.dim() != 2 or inputs.shape[1] != d:
            raise ValueError(f"method {self.spec.id!r}: inputs must be (N, {d}) rows of the SCM's features "
                             f"{list(self.scm_.names)}, got shape {tuple(inputs.shape)}")
        if d > MAX_FEATURES:
            raise ValueError(f"method {self.spec.id!r}: exact enumeration of 2^{d} coalitions; at most "
                             f"{MAX_FEATURES} features are supported")
        size, parts = self.params["batch_size"], []
        for xb, tb in zip(inputs.split(size), target.split(size)):
            noise = antithetic_noise(xb, self.params["n_samples"], self.seed)
            parts.append(causal_shapley_decomposition(model, xb, tb, self.scm_, noise))
        return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        return self.decompose(model, inputs, target)["phi"].to(dtype=inputs.dtype, device=inputs.device)

    def shapley_game(self, ctx, record):
        """The value function for ``shapley_error``: ``game(x, target, coalitions) → v(S)`` (M,) float64,
        ``E[f_c(X) | do(X_S = x_S)]`` from ``REFERENCE_FACTOR · n_samples`` independent antithetic draws, under
        the SCM of the cell's train split (:func:`data_scm`; no fit needed)."""
        scm = data_scm(ctx.train, ctx.info)
        n_samples = REFERENCE_FACTOR * self.params["n_samples"]
        model = _cpu_in_cpu_out(ctx.model, ctx.device)

        @torch.no_grad()
        def game(x: torch.Tensor, target: int, coalition: torch.Tensor) -> torch.Tensor:
            row = x.detach().cpu()[None]
            noise = antithetic_noise(row, n_samples, int(ctx.seed) + REFERENCE_SEED_OFFSET)
            members = coalition.cpu()
            values = _mean_logits(model, torch.tensor([int(target)]),
                                  lambda a, b: interventional_samples(scm, row.double(), members[a:b], noise),
                                  len(members), n_samples, x.dtype)
            return values[0]

        return game

    def _run(self, ctx):
        idx = explained_indices(len(ctx.test.x), self.params["n_explain"], ctx.seed)
        inputs = ctx.test.x[idx].to(ctx.device)
        with torch.no_grad():
            targets = ctx.model(inputs).argmax(1)
        parts = self.decompose(ctx.model, inputs, targets)
        record = AttributionMap(parts["phi"].numpy(), idx, targets.cpu().numpy())
        record.meta.update({
            "value_function": "E[f_c(X) | do(X_S = x_S)], f_c the logit of the explained class",
            "expected_value": parts["expected"].tolist(),
            "direct_effect": parts["direct"].tolist(), "indirect_effect": parts["indirect"].tolist(),
            "scm": self.scm_.as_dict(),
        })
        return record, len(idx)
