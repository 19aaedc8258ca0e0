"""Dual-net feature importance ranking: Wojtas & Chen, NeurIPS 2020 (the survey's [122], Sec. IV-C).

Two networks are trained in alternation for a supervised task on ``d`` features (paper, Sec. 3):

- the **operator** ``f_O(x ⊙ m; θ)`` predicts ``y`` from the input seen through a binary mask ``m`` with
  exactly ``s`` ones; it is trained on every input of a batch under every mask of a mask batch ``M``,
  ``L_O(θ) = 1/(|B||M|) Σ_{x∈B} Σ_{m∈M} ℓ(f_O(x ⊙ m), y)`` (the relaxation of the subset problem
  ``min_{θ, ‖m‖₀ = s} E ℓ(f_O(x ⊙ m; θ), y)``);
- the **selector** ``f_S(m; φ)`` learns to predict the operator's loss for a mask, ``ℓ(m) = 1/|B| Σ_x
  ℓ(f_O(x ⊙ m), y)``, regressing it by the mean absolute error over the masks of the last steps.

Masks (Algorithm 1 of the paper; the authors' ``MaskOptimizer``):

- **exploration** (phase I, the first ``exploration_epochs`` epochs): every mask of ``M`` is drawn uniformly
  among those with ``s`` ones;
- **exploitation** (phase II): half of ``M`` is still drawn at random; then come ``m_opt``, the selector's
  optimal mask, ``m_best``, the mask with the lowest operator loss since the last selector update, and the
  rest are ``m_opt`` perturbed by ``s_p`` random swaps (one selected feature out, one other in, each) — the
  stochastic local search around the current optimum;
- ``m_opt`` (:func:`optimal_mask`): start from ``m = ½·1``, take the ``s`` features of largest
  ``−∂f_S/∂m`` (the steepest predicted loss decrease), then repeat up to ``search_steps`` times: with
  ``g = −∇f_S(m_opt)``, try swapping the unselected feature of largest ``g`` in for each selected feature
  of negative ``g``, then for the selected feature of smallest ``g``; keep the first swap the selector
  predicts to lower the loss, stop when none does.

The **population-wise ranking** (Sec. 3, deployment): the importance of feature ``j`` is
``−∂f_S(m)/∂m_j`` at ``m = m_opt`` (:func:`importance_scores`): how much the predicted loss falls when
the feature's mask entry grows; the optimal subset is ``m_opt``.  At test time the operator predicts from
the top-``s`` subset: the deployed network (:class:`DualNetOperator`) applies ``m_opt`` itself, through a
frozen diagonal ``Linear`` layer ``select`` (so that its forward pass stays a plain chain of modules, which
LRP, DeepLIFT and the other passive methods replay), and every passive method explains that network.

Where we chose (the paper leaves these to the implementation, or the project requires it):

- the operator is the project's MLP (``architecture.mlp``) on ``x ⊙ m`` alone; the authors' code also
  feeds ``m`` beside ``x ⊙ m`` (to tell a masked 0 from a measured 0, which has probability 0 for continuous
  features): that would double the first layer's inputs and break the passive methods' input layer;
- the selector is ``build_network("mlp", n_classes=1)`` with sigmoid hidden units of widths
  ``selector_hidden`` (the authors' code: sigmoid units, [100, 50, 10], linear output), Adam with its own
  rate ``selector_lr``, one step on the masks and losses of the last ``selector_every`` operator steps
  (the authors: 8); the authors' extra sample weights of ``m_opt`` and ``m_best`` in phase II are not used;
- the start of phase II is counted in epochs (the hooks do not see the number of steps): 40 % of the
  epochs, the authors' 6000 of 15000 batches; ``s_p = 2`` as in their synthetic example, ``|M| = 16``
  masks per step, half their 32, which halves the operator's extra cost (2.3x the plain MLP's training
  time on ``planted`` instead of 2.8x, the same ranking in our runs); ``s = 5``: larger than the planted
  subset, as the authors' XOR example (s = 5 for 3 relevant of 10), so the truth is not given away;
- ``search_steps`` bounds the local search both in training and for the final mask (the authors: 5, 12);
- **cost-driven choices**, stated as such: ``mask_batch`` = 16 (the operator's cost per step grows linearly
  with |M|, see above) and the selector cadence, one selector step per ``selector_every`` = 8 operator steps
  on the masks of those steps only, each followed by a fresh ``m_opt`` search (:meth:`DualNet._update_selector`).
  8 is the authors' value; it is kept rather than updating the selector more often because every update
  also runs the ``m_opt`` search, whose cost adds to the run's budget.  Neither value was tuned on a result;
  ``tests/active/test_dualnet.py`` trains with exactly the config's values (on a shortened schedule) and
  checks that the ranking's top 4 holds the planted features well above chance (measured: all 4);
- the selector, trained on the operator's cross-entropy, is saved in the checkpoint as the extra module
  ``selector`` (``model.extras["selector"]``); the deployed mask is the ``select`` layer's diagonal.

The network's own explanation (``dualnet``, below) is the population-wise score vector, the same for every
explained input, with the ranking and the selected subset in ``meta``; the metric ``ranking_quality``
(:mod:`nnxai.metrics.ranking_quality`) scores it against the planted importance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nnxai.active.base import ActiveMethod, register_active
from nnxai.explanations import AttributionMap
from nnxai.methods.base import Method
from nnxai.models.networks import MLP, NetworkSpec, build_network, parameter_count, register_network
from nnxai.params import Float, Int, List
from nnxai.registry import register

#: Name of the selector network among the checkpoint's extra modules.
SELECTOR = "selector"
#: Salt of the mask generator's seed (the run's seed + salt).
_SALT = 12201


# -- the operator network ------------------------------------------------------------------------------

class DualNetOperator(MLP):
    """The operator ``f_O`` of [122]: the project's MLP behind a frozen feature-selection layer.

    ``select`` is a ``Linear(d, d)`` whose weight is ``diag(m)`` and bias 0: ``forward(x) = f_O(x ⊙ m)``
    with the deployed mask ``m`` (all ones until training sets it).  :meth:`operate` applies any batch of
    masks instead (training).  Everything else is :class:`~nnxai.models.networks.MLP`'s.
    """

    def __init__(self, n_features: int, n_classes: int, hidden=(32, 16), activation: str = "relu"):
        super().__init__(n_features, n_classes, hidden, activation)
        self.select = nn.Linear(n_features, n_features)
        with torch.no_grad():
            self.select.weight.copy_(torch.eye(n_features))
            self.select.bias.zero_()
        self.select.requires_grad_(False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.select(x.flatten(1)))

    def operate(self, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Logits of ``f_O(x ⊙ m)``, one mask per row of ``x`` (``masks`` shaped like ``x.flatten(1)``)."""
        return self.classifier(self.features(x.flatten(1) * masks))

    @property
    def mask(self) -> torch.Tensor:
        """The deployed mask ``m`` (``d``,): the diagonal of ``select``."""
        return self.select.weight.detach().diagonal().clone()

    def set_mask(self, mask: torch.Tensor) -> None:
        with torch.no_grad():
            self.select.weight.copy_(torch.diag(mask.to(self.select.weight)))
            self.select.bias.zero_()


def _operator_parameters(kwargs: dict) -> int:
    base = {k: v for k, v in kwargs.items() if k in ("n_features", "n_classes", "hidden", "activation")}
    d = int(kwargs["n_features"])
    return parameter_count("mlp", base) + d * d + d


register_network("dualnet_mlp", NetworkSpec(DualNetOperator, base="mlp", parameter_count=_operator_parameters))


# -- masks (Algorithm 1) -----------------------------------------------------------------------------------

def random_masks(n: int, d: int, s: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` masks with exactly ``s`` ones among ``d``, each subset equally likely (exploration)."""
    order = torch.rand(n, d, generator=gen).argsort(dim=1)
    masks = torch.zeros(n, d)
    masks.scatter_(1, order[:, :s], 1.0)
    return masks


def perturbed_masks(mask: torch.Tensor, n: int, n_swaps: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` copies of ``mask``, each changed by ``n_swaps`` random swaps (a selected feature out, an
    unselected one in, both uniform; the authors' ``perturb_masks`` applied ``s_p`` times)."""
    masks = mask.detach().cpu().float().reshape(1, -1).repeat(n, 1)
    rows = torch.arange(n)
    for _ in range(n_swaps):
        draw = torch.rand(n, masks.shape[1], generator=gen) + 1.0   # > 0, so a 0-mask entry never wins
        out = (draw * masks).argmax(dim=1)
        into = (draw * (1 - masks)).argmax(dim=1)
        masks[rows, out] = 0.0
        masks[rows, into] = 1.0
    return masks


def mask_batch(n: int, d: int, s: int, gen: torch.Generator, m_opt: torch.Tensor | None = None,
               m_best: torch.Tensor | None = None, n_swaps: int = 0) -> torch.Tensor:
    """The mask batch ``M`` of one operator step: all random in phase I (``m_opt`` is ``None``); in phase
    II, ``⌊n/2⌋`` random, then ``m_opt``, ``m_best`` and ``m_opt`` perturbed by ``n_swaps`` swaps."""
    masks = random_masks(n, d, s, gen)
    if m_opt is None:
        return masks
    half = n // 2
    masks[half] = m_opt
    masks[half + 1] = m_opt if m_best is None else m_best
    masks[half + 2:] = perturbed_masks(m_opt, n - half - 2, n_swaps, gen)
    return masks


def _selector_gradient(selector: nn.Module, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f_S(m), ∇_m f_S(m))`` of every row of ``masks``; the selector's parameters get no gradient."""
    m = masks.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = selector(m).reshape(-1)
        (grad,) = torch.autograd.grad(out.sum(), m)
    return out.detach(), grad


@torch.no_grad()
def _predicted_loss(selector: nn.Module, masks: torch.Tensor) -> torch.Tensor:
    return selector(masks).reshape(-1)


def optimal_mask(selector: nn.Module, d: int, s: int, search_steps: int) -> torch.Tensor:
    """``m_opt``: the top-``s`` features of ``−∇f_S`` at ``½·1``, improved by the swap search (module
    docstring); deterministic given the selector."""
    device = next(selector.parameters()).device
    _, grad = _selector_gradient(selector, torch.full((1, d), 0.5, device=device))
    m_opt = torch.zeros(d, device=device)
    m_opt[torch.topk(-grad[0], s).indices] = 1.0
    if s == d:
        return m_opt
    for _ in range(search_steps):
        value, grad = _selector_gradient(selector, m_opt[None])
        g = -grad[0]
        selected, others = m_opt.nonzero().reshape(-1), (m_opt == 0).nonzero().reshape(-1)
        into = others[g[others].argmax()]
        weakest = selected[g[selected].argmin()]
        outs = [*selected[g[selected] < 0].tolist(), int(weakest)]
        candidates = m_opt.repeat(len(outs), 1)
        candidates[torch.arange(len(outs)), torch.tensor(outs, device=device)] = 0.0
        candidates[:, into] = 1.0
        better = (_predicted_loss(selector, candidates) < value[0]).nonzero().reshape(-1)
        if not len(better):
            break
        m_opt = candidates[better[0]]
    return m_opt


def importance_scores(selector: nn.Module, mask: torch.Tensor) -> torch.Tensor:
    """The population-wise importance of [122]: ``−∇_m f_S(m)`` at the optimal mask ``m``, shape (d,)."""
    _, grad = _selector_gradient(selector, mask.reshape(1, -1).float())
    return -grad[0]


# -- training ------------------------------------------------------------------------------------------

@register_active
class DualNet(ActiveMethod):
    """Operator and selector trained in alternation (Algorithm 1 of [122]); see the module docstring."""

    id = "dualnet"
    description = "Dual-net: operator + selector networks, population-wise feature ranking [122]"
    architectures = frozenset({"mlp"})
    parameters = {
        "n_selected": Int("s: size of the optimal feature subset (ones of every mask); below the number of features",
                          low=1),
        "mask_batch": Int("|M|: masks per operator step, each applied to every input of the batch", low=4),
        "exploration_epochs": Int("epochs of phase I (random masks only) before phase II adds m_opt, m_best and "
                                  "its perturbations", low=0),
        "n_swaps": Int("s_p: random swaps that perturb m_opt into each exploitation mask", low=1),
        "selector_every": Int("operator steps between selector updates; the selector regresses the per-mask "
                              "losses of those steps", low=1),
        "selector_hidden": List("hidden widths of the selector f_S (sigmoid units)", item=Int("units", low=1)),
        "selector_lr": Float("Adam learning rate of the selector", low=0, low_open=True),
        "search_steps": Int("most swap iterations of the local search for m_opt", low=0),
    }

    def build(self, architecture: str, kwargs: dict, info: Any) -> tuple[str, dict]:
        return "dualnet_mlp", dict(kwargs)

    def setup(self, model, train, info, device, seed):
        self.d = int(np.prod(train[0].shape[1:]))
        self.s = int(self.params["n_selected"])
        if not self.s < self.d:
            raise ValueError(f"dualnet: n_selected ({self.s}) must be below the number of features ({self.d})")
        self.selector = build_network("mlp", n_features=self.d, n_classes=1,
                                      hidden=list(self.params["selector_hidden"]), activation="sigmoid").to(device)
        self.selector_optimiser = torch.optim.Adam(self.selector.parameters(), lr=self.params["selector_lr"])
        self.gen = torch.Generator().manual_seed(int(seed) + _SALT)
        self.device = device
        self.epochs_done, self.steps = 0, 0
        self.pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.m_opt: torch.Tensor | None = None
        self.m_best: torch.Tensor | None = None
        self.selector_errors: list[float] = []

    def parameters_to_train(self, model):
        """The operator's weights (not the frozen ``select`` layer); the selector has its own optimiser."""
        return [p for name, p in model.named_parameters() if not name.startswith("select.")]

    def _exploiting(self) -> bool:
        return self.epochs_done >= self.params["exploration_epochs"] and self.m_opt is not None

    def penalty(self, model, inputs, targets, logits):
        """The operator's loss ``L_O`` over the batch × the mask batch (replaces the plain cross-entropy)."""
        n = self.params["mask_batch"]
        exploit = self._exploiting()
        masks = mask_batch(n, self.d, self.s, self.gen, self.m_opt.cpu() if exploit else None,
                           self.m_best.cpu() if exploit and self.m_best is not None else None,
                           self.params["n_swaps"]).to(inputs.device)
        b = len(inputs)
        x = inputs.flatten(1).repeat_interleave(n, dim=0)
        out = model.operate(x, masks.repeat(b, 1))
        losses = F.cross_entropy(out, targets.repeat_interleave(n), reduction="none").reshape(b, n)
        self.pending.append((masks, losses.detach().mean(dim=0)))
        return losses.mean()

    def replaces_loss(self) -> bool:
        return True

    def after_step(self, model):
        self.steps += 1
        if self.steps % self.params["selector_every"] == 0:
            self._update_selector(model)

    def _update_selector(self, model) -> None:
        """One selector step on the pending (mask, loss) pairs; then ``m_best`` and a fresh ``m_opt``, which
        becomes the operator's deployed mask."""
        masks = torch.cat([m for m, _ in self.pending])
        losses = torch.cat([l for _, l in self.pending])
        self.pending = []
        self.selector.train()
        error = (self.selector(masks).reshape(-1) - losses).abs().mean()
        self.selector_optimiser.zero_grad(set_to_none=True)
        error.backward()
        self.selector_optimiser.step()
        self.selector_optimiser.zero_grad(set_to_none=True)
        self.selector.eval()
        self.selector_errors.append(float(error.detach()))
        self.m_best = masks[losses.argmin()].detach().clone()
        self.m_opt = optimal_mask(self.selector, self.d, self.s, self.params["search_steps"])
        model.set_mask(self.m_opt)

    def after_epoch(self, model, epoch):
        self.epochs_done = epoch
        errors, self.selector_errors = self.selector_errors, []
        return {"selector_mae": float(np.mean(errors)) if errors else float("nan"),
                "phase": 2.0 if self._exploiting() else 1.0}

    def finish(self, model, train, val, device):
        if self.pending:
            self._update_selector(model)
        self.m_opt = optimal_mask(self.selector, self.d, self.s, self.params["search_steps"])
        model.set_mask(self.m_opt)
        scores = importance_scores(self.selector, self.m_opt).cpu()
        return {"selected": self.m_opt.nonzero().reshape(-1).tolist(),
                "importance": [float(v) for v in scores],
                "ranking": scores.argsort(descending=True).tolist()}

    def extras(self) -> dict[str, nn.Module]:
        return {SELECTOR: self.selector} if hasattr(self, "selector") else {}


# -- the network's own explanation ---------------------------------------------------------------------

def population_ranking(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores, mask)`` of a trained dual-net: the importance ``−∇f_S`` at the deployed mask."""
    selector = (getattr(model, "extras", None) or {}).get(SELECTOR)
    if not isinstance(model, DualNetOperator) or selector is None:
        raise ValueError("dualnet explains a network trained by the dualnet active method (a DualNetOperator "
                         f"with the extra module {SELECTOR!r}); got {type(model).__name__} with extras "
                         f"{sorted((getattr(model, 'extras', None) or {}))}")
    mask = model.mask
    selector = selector.to(mask.device)
    return importance_scores(selector, mask).detach(), mask


@register("dualnet")
class DualNetRanking(Method):
    """The population-wise feature ranking of a dual-net [122]: one score vector for the whole population,
    given for every test input (a global attribution), with the ranking and the selected subset in
    ``meta`` (``global_scores``, ``ranking``, ``selected``)."""

    record_type = AttributionMap
    modalities = frozenset({"tabular"})
    architectures = frozenset({"mlp"})
    only_models = frozenset({"dualnet"})

    def _run(self, ctx):
        scores, mask = population_ranking(ctx.model)
        scores, mask = scores.cpu(), mask.cpu()
        x_test = ctx.test.x
        n = len(x_test)
        with torch.no_grad():
            targets = torch.cat([ctx.model(b.to(ctx.device)).argmax(1).cpu() for b in x_test.split(512)]) \
                if n else torch.zeros(0, dtype=torch.long)
        maps = scores.reshape(1, *x_test.shape[1:]).expand(n, *x_test.shape[1:]).numpy()
        record = AttributionMap(maps, np.arange(n), targets.numpy())
        record.meta.update({"global_scores": [float(v) for v in scores],
                            "ranking": scores.argsort(descending=True).tolist(),
                            "selected": mask.nonzero().reshape(-1).tolist()})
        return record, n
