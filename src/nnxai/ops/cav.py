"""Concept activation vectors and TCAV's statistical test (Kim et al. 2018, survey ref. [63]), shared by
:mod:`~nnxai.methods.attribution.concept.tcav` and :mod:`~nnxai.methods.attribution.concept.ace` (ACE [115]).

* **CAV** (Sec. 3.1): a linear classifier separates the layer-``l`` activations ``f_l(x)`` of concept
  examples ``P_C`` from those of random examples ``N``; the CAV ``v_C^l`` is the unit normal of its decision
  boundary, pointing towards the concept.  The classifier is an L2-regularised logistic regression (the
  reference code's ``model_type="logistic"``), deterministic given its data, solved exactly in the span
  of the examples (:func:`concept_activation_vector`): scikit-learn's ``LogisticRegression`` gives the same
  vector (tested) but spends ~1 ms of bookkeeping per lbfgs step, hundreds of steps per CAV on separable
  sets, which the default profile's 160 CAVs per model cannot afford.  Activations are not standardised:
  the CAV must live in the space of ``f_l`` for Eq. (1).
* **Conceptual sensitivity**, Eq. (1): ``S_{C,k,l}(x) = ∇h_{l,k}(f_l(x)) · v_C^l``, the derivative of the
  class-``k`` logit along the CAV.
* **TCAV score**, Eq. (2): ``TCAV_{Q,C,k,l} = |{x ∈ X_k : S_{C,k,l}(x) > 0}| / |X_k|``.
* **Significance** (Sec. 3.2): CAVs are retrained against different random sets, giving one TCAV score
  per run; the concept's scores are compared by a two-sided two-sample t-test (Student's, pooled variance,
  as ``scipy.stats.ttest_ind`` in the reference implementation's ``utils_plot``) with the scores of
  random-vs-random CAVs (one random set, as if it were a concept, against another).  Multiple hypotheses are
  Bonferroni-corrected: ``p_corrected = min(1, m p)`` with ``m`` the number of (concept, class) pairs
  tested in the record; a pair is *significant* when ``p_corrected < alpha``.  (The paper corrects with
  ``m`` the number of hypotheses of an experiment; every pair of the record is one.)  When both samples are
  constant the t statistic is 0/0: the p-value is then 1 for equal means and 0 otherwise (its limit).

Why not Captum's ``TCAV``: it has no statistical test (its tutorial leaves the t-test to the user), caches
CAVs and activations in files keyed by concept id and layer name but not by the weights, and its default
classifier shuffles a train/test split with Python's global ``random`` and fits scikit-learn's
``SGDClassifier`` without a seed; the core is a few lines, written here with explicit seeds.

Layers are addressed by the names of ``model.unit_layers()`` (:class:`~nnxai.models.networks.ConvNet`:
``conv1``, ``conv2``, ``conv3``, the outputs of its three activation modules).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

#: Newton iterations and gradient-norm tolerance of the CAV classifier: its optimum to far below the
#: precision that the sign of ``∇h · v`` needs.
CAV_MAX_ITER = 200
CAV_GTOL = 1e-9
#: Gram eigenvalues below this fraction of the largest are taken as 0 (directions outside the span).
RANK_TOL = 1e-12


def model_device(model: nn.Module) -> torch.device:
    """Where ``model`` lives (its first parameter or buffer; the CPU for a model with neither)."""
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the block; afterwards every module's ``training`` flag is what it was (a
    model explained from train mode, or one whose modules' flags differ, is left exactly as it came)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


def layer_module(model: nn.Module, layer: str) -> nn.Module:
    """The module whose output is layer ``layer`` of ``model.unit_layers()``; ValueError naming the choices."""
    if not hasattr(model, "unit_layers"):
        raise ValueError(f"the model ({type(model).__name__}) names no unit layers (unit_layers())")
    layers = model.unit_layers()
    if layer not in layers:
        raise ValueError(f"layer {layer!r} is not a unit layer of the model; choose one of {list(layers)}")
    return layers[layer]


@contextmanager
def _tap(module: nn.Module, leaf: bool) -> Iterator[list]:
    """Record ``module``'s output of each forward pass; with ``leaf`` the output becomes a fresh leaf that
    requires grad, so gradients stop there and never reach the parameters."""
    seen: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        if leaf:
            output = output.detach().requires_grad_(True)
        seen.append(output)
        return output if leaf else None

    handle = module.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def _reduce(values: torch.Tensor, reduce: str, gradient: bool) -> torch.Tensor:
    if reduce == "flatten" or values.dim() == 2:
        return values.flatten(1)
    # channel_mean: activations a_c = mean_hw a_chw; the gradient that matches a step v in that space is
    # the directional derivative of shifting every position by v, Σ_hw ∂h/∂a_chw.
    dims = tuple(range(2, values.dim()))
    return values.sum(dims) if gradient else values.mean(dims)


def layer_activations(model: nn.Module, module: nn.Module, inputs: torch.Tensor, batch_size: int,
                      device: torch.device, reduce: str) -> np.ndarray:
    """``f_l(x)`` of every input as float64 rows ``(N, D)`` (``reduce``: ``flatten`` or ``channel_mean``)."""
    rows = []
    with _tap(module, leaf=False) as seen, torch.no_grad():
        for part in inputs.split(batch_size):
            seen.clear()
            model(part.to(device))
            rows.append(_reduce(seen[0], reduce, gradient=False).double().cpu())
    return torch.cat(rows).numpy() if rows else np.zeros((0, 0))


def layer_gradients(model: nn.Module, module: nn.Module, inputs: torch.Tensor, target: int, batch_size: int,
                    device: torch.device, reduce: str) -> np.ndarray:
    """``∇h_{l,k}(f_l(x))`` of the class-``target`` logit w.r.t. the layer, float64 rows ``(N, D)``."""
    rows = []
    with _tap(module, leaf=True) as seen:
        for part in inputs.split(batch_size):
            seen.clear()
            logits = model(part.to(device))
            if not 0 <= target < logits.shape[1]:
                raise ValueError(f"class {target} out of range: the model has {logits.shape[1]} classes")
            (grad,) = torch.autograd.grad(logits[:, target].sum(), seen[0])
            rows.append(_reduce(grad, reduce, gradient=True).double().cpu())
    return torch.cat(rows).numpy() if rows else np.zeros((0, 0))


def _span_coordinates(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Z, B)`` with ``Z = U S`` the coordinates of the rows of ``x = U S Vᵀ`` in their span and
    ``B = Xᵀ U S⁻¹ = V`` the map back; from the ``n × n`` Gram matrix, cheaper than an SVD of ``x``."""
    evals, evecs = np.linalg.eigh(x @ x.T)
    keep = evals > RANK_TOL * max(evals.max(), np.finfo(np.float64).tiny)
    sv = np.sqrt(evals[keep])
    return evecs[:, keep] * sv, x.T @ (evecs[:, keep] / sv)


def _logistic_fit(z: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """``argmin_β Σ_i logloss(y_i, z_i·β + b) + (l2 / 2) ||β||²`` (intercept ``b`` free), by scipy's
    trust-region Newton method with the exact Hessian."""
    from scipy.optimize import minimize
    from scipy.special import expit

    n, r = z.shape
    za = np.hstack([z, np.ones((n, 1))])
    penalty = np.r_[np.full(r, l2), 0.0]

    def fun(theta):
        m = za @ theta
        g = expit(m) - y
        loss = np.logaddexp(0.0, m).sum() - y @ m + 0.5 * theta @ (penalty * theta)
        return loss, za.T @ g + penalty * theta

    def hess(theta):
        p = expit(za @ theta)
        return (za.T * (p * (1 - p))) @ za + np.diag(penalty)

    result = minimize(fun, np.zeros(r + 1), jac=True, hess=hess, method="trust-exact",
                      options={"gtol": CAV_GTOL, "maxiter": CAV_MAX_ITER})
    return result.x[:r]


def concept_activation_vector(concept_acts: np.ndarray, random_acts: np.ndarray, l2: float) -> np.ndarray:
    """Unit normal ``v_C`` of the logistic-regression boundary between concept and random activations.

    The classifier minimises ``Σ_i logloss_i + (l2 / 2) ||w||²`` with a free intercept (scikit-learn's
    ``LogisticRegression(C=1 / l2)``; the tests check the two agree).  Its minimiser ``w`` lies in the
    span of the ``n`` examples (representer theorem), so when they are fewer than the activations'
    dimension it is solved on their coordinates in that span, ``X = U S Vᵀ``, ``Z = U S``, ``w = V β``
    (``||w|| = ||β||``, ``X w = Z β``): ``n`` unknowns instead of thousands.  A zero normal (the sets
    cannot be told apart at all) is returned as the zero vector: every sensitivity is then 0 and the TCAV
    score 0.
    """
    x = np.concatenate([concept_acts, random_acts]).astype(np.float64)
    y = np.r_[np.ones(len(concept_acts)), np.zeros(len(random_acts))]
    if len(x) < x.shape[1]:
        z, back = _span_coordinates(x)
        w = back @ _logistic_fit(z, y, float(l2))
    else:
        w = _logistic_fit(x, y, float(l2))
    norm = np.linalg.norm(w)
    return w / norm if norm > 0 else w


def cav_runs(concept_acts: np.ndarray, negatives: Sequence[np.ndarray], l2: float) -> np.ndarray:
    """One CAV per random negative set, stacked ``(runs, D)``."""
    return np.stack([concept_activation_vector(concept_acts, neg, l2) for neg in negatives])


def random_cavs(random_acts: Sequence[np.ndarray], n_random: int, l2: float) -> np.ndarray:
    """The null CAVs: random set ``j`` as the "concept" against set ``(j + 1) mod M``, ``j < n_random``."""
    if n_random >= len(random_acts):
        raise ValueError(f"{n_random} random-vs-random runs need at least {n_random + 1} random sets, "
                         f"got {len(random_acts)}")
    return np.stack([concept_activation_vector(random_acts[j], random_acts[(j + 1) % len(random_acts)], l2)
                     for j in range(n_random)])


def tcav_scores(gradients: np.ndarray, cavs: np.ndarray) -> np.ndarray:
    """Eq. (2) for each CAV row: the fraction of inputs whose sensitivity ``∇h · v`` (Eq. 1) is positive."""
    return (gradients @ cavs.T > 0).mean(axis=0)


def t_test(concept_scores: Sequence[float], random_scores: Sequence[float]) -> float:
    """Two-sided p-value of Student's two-sample t-test (pooled variance) of the concept's TCAV scores
    against the random ones; ``scipy.stats.ttest_ind``'s value (tested), without importing scipy.stats."""
    from scipy.special import stdtr

    a, b = np.asarray(concept_scores, dtype=np.float64), np.asarray(random_scores, dtype=np.float64)
    na, nb = len(a), len(b)
    pooled = ((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2)
    diff = a.mean() - b.mean()
    if pooled <= 0:
        return 1.0 if diff == 0 else 0.0
    t = diff / np.sqrt(pooled * (1.0 / na + 1.0 / nb))
    return float(2.0 * stdtr(na + nb - 2, -abs(t)))


def significance_tests(pairs: Sequence[tuple[str, int]], concept_cavs: dict[str, np.ndarray],
                       random_cavs: np.ndarray, gradients: dict[int, np.ndarray], alpha: float,
                       ) -> tuple[list[dict], dict[int, list[float]]]:
    """TCAV scores and Bonferroni-corrected t-tests of the (concept, class) ``pairs``.

    ``concept_cavs[c]``: the concept's CAVs, one per run; ``random_cavs``: the random-vs-random CAVs;
    ``gradients[k]``: the layer gradients of the class-``k`` logit at the class-``k`` inputs.  Returns the
    ``tests`` entries of :class:`~nnxai.explanations.ConceptScores` and the random scores per class.
    """
    random = {k: tcav_scores(gradients[k], random_cavs) for k in sorted({k for _, k in pairs})}
    tests = []
    for concept, k in pairs:
        runs = tcav_scores(gradients[k], concept_cavs[concept])
        tests.append({"concept": concept, "class": int(k), "tcav_score": float(runs.mean()),
                      "run_scores": [float(s) for s in runs], "random_mean": float(random[k].mean()),
                      "p_value": t_test(runs, random[k])})
    for test in tests:
        test["p_value_corrected"] = min(1.0, len(tests) * test["p_value"])
        test["significant"] = bool(test["p_value_corrected"] < alpha)
    return tests, {k: [float(s) for s in v] for k, v in random.items()}


def random_sets(pool_size: int, set_size: int, n_sets: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n_sets`` seeded random index sets, each ``set_size`` distinct positions of ``range(pool_size)``."""
    if pool_size < 2:
        raise ValueError(f"random sets need at least 2 examples to draw from, got {pool_size}")
    size = min(set_size, pool_size)
    return [np.sort(rng.choice(pool_size, size=size, replace=False)) for _ in range(n_sets)]


def class_inputs(labels: np.ndarray, target: int, n: int, seed: int) -> np.ndarray:
    """Seeded sample of at most ``n`` positions whose label is ``target`` (the inputs ``X_k`` of Eq. 2)."""
    where = np.flatnonzero(np.asarray(labels) == target)
    rng = np.random.default_rng([seed, target])
    return np.sort(rng.permutation(where)[:n])
