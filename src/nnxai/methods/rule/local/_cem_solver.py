"""The optimiser of CEM [69]: projected FISTA on the elastic-net objective, the search over ``c``, the domain
("absent" values and the box) and the optional autoencoder.

Dhurandhar et al., "Explanations based on the missing: towards contrastive explanations with pertinent
negatives", NeurIPS 2018, Sec. 3.  With ``Pred`` the network's logits, ``t0`` its class for ``x0``,
``margin(x) = [Pred(x)]_t0 - max_{i != t0} [Pred(x)]_i`` and the absent value ``a``:

* pertinent negative (Eq. 1): ``min_{delta in X/x0} c f_neg(x0 + delta) + beta ||delta||_1 + ||delta||_2^2
  + gamma ||x0 + delta - AE(x0 + delta)||_2^2`` with ``f_neg(x) = max(margin(x), -kappa)``: the least
  (elastic-net) addition of what is *missing* from ``x0`` that moves it to another class by ``kappa``;
* pertinent positive (Eq. 2): ``min_{delta in X cap x0} c f_pos(a + delta) + beta ||delta||_1 + ||delta||_2^2
  + gamma ||a + delta - AE(a + delta)||_2^2`` with ``f_pos(x) = max(-margin(x), -kappa)``: the least part of
  what is *present* in ``x0`` that alone keeps class ``t0`` by ``kappa``.

The paper's data are non-negative with 0 meaning "absent" (MNIST's background); ``X/x0`` lets only
missing mass be added (``x0 + delta >= x0``) and ``X cap x0`` keeps a part of ``x0`` (``0 <= delta <= x0``).
Here "absent" is a value ``a`` per feature and presence is the distance from it, on its side
(:func:`input_domain`): the PP lies between ``a`` and ``x0`` coordinate-wise, the PN moves each coordinate
only away from ``a`` (either way where ``x0 = a``), both inside the data's box.  Both feasible sets are
boxes in ``delta`` that contain 0, so the proximal map of ``step * beta ||.||_1`` plus the constraint is the
closed form :func:`shrink_project` (soft-thresholding, then clipping: exact for a separable 1-D problem).

FISTA (Eqs. 4-6, Beck & Teboulle 2009): ``delta_{k+1} = Pi(S_{alpha_k beta}(y_k - alpha_k grad g(y_k)))``,
``y_{k+1} = Pi(delta_{k+1} + k / (k + 3) (delta_{k+1} - delta_k))`` with ``g`` the smooth part (the
``c f`` hinge, the squared norm and the autoencoder term) and ``alpha_k = alpha_0 sqrt(1 - k / K)`` (the
authors' code: polynomial decay of power 0.5).  Where this implementation chose:

* the shrinkage threshold is ``alpha_k beta``, the proximal map of the objective's L1 term for a step of
  ``alpha_k``, so the iteration minimises the objective as written (the paper's Eq. 4 prints ``S_beta``;
  the authors' code shrinks by ``beta`` unscaled, which weighs the L1 term by ``beta / alpha``);
* the search over ``c`` is the authors' (success: ``c`` halves towards the largest failure; failure:
  ``c`` x 10 until a success, then bisection), ``c_steps`` times from ``c_init``; the answer is the
  successful iterate ``delta_k`` of least elastic-net size ``beta ||delta||_1 + ||delta||_2^2`` over all
  steps, as in the authors' code; success means margin >= kappa (PP) or < -kappa, another class ahead by
  kappa (PN), the code's ``compare``;
* every input of a batch has its own ``c`` and its own best; the inputs do not interact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

#: The value ``c`` may not exceed before it counts as "no upper bound" (the authors' 1e10 sentinel).
NO_BOUND = 1e10


@dataclass(frozen=True)
class CEMSettings:
    """The hyperparameters of Eqs. 1-6 (names as in the paper) and of the search over ``c``."""

    kappa: float
    beta: float
    gamma: float
    c_init: float
    c_steps: int
    max_iter: int
    lr: float

    @classmethod
    def of(cls, params: dict) -> "CEMSettings":
        return cls(**{name: params[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Domain:
    """Per feature (shaped like one input, with a leading 1): the absent value and the box ``X``."""

    absent: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    meaning: str

    def as_lists(self) -> dict:
        return {"absent": self.absent.reshape(-1).tolist(), "lower": self.lower.reshape(-1).tolist(),
                "upper": self.upper.reshape(-1).tolist(), "absent_means": self.meaning}


def input_domain(kind: str, train_x: torch.Tensor) -> Domain:
    """What "absent" means, and the box, for images and for tables.

    * images: the lowest intensity of the training images (0 on ``digits``' black background and on
      ``shapes``' near-black noise), the paper's choice for MNIST; the box is the training range of the
      intensities (``[0, 1]`` here);
    * tables: a binary column (training values in {0, 1}, e.g. a one-hot ``a5=1`` of MONK) is absent at 0,
      as in the paper; a continuous column at its training mean (0 for the standardised tables: the
      population's typical value, which carries no evidence), MACEM's base value for real features
      (Dhurandhar et al. 2019); the box is each column's training range.
    """
    x = train_x.detach().float()
    shape = (1, *x.shape[1:])
    if kind == "image":
        low, high = float(x.min()), float(x.max())
        full = torch.full(shape, low)
        return Domain(full, full.clone(), torch.full(shape, high),
                      "images: the lowest training intensity (the black background)")
    flat = x.reshape(len(x), -1)
    binary = ((flat == 0) | (flat == 1)).all(0)
    absent = torch.where(binary, torch.zeros(()), flat.mean(0))
    return Domain(absent.reshape(shape), flat.min(0).values.reshape(shape), flat.max(0).values.reshape(shape),
                  "tables: 0 for a binary (0/1) column, the training mean of a continuous one")


def shrink_project(z: torch.Tensor, tau: float | torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """``argmin_d tau ||d||_1 + ||d - z||^2 / 2`` subject to ``low <= d <= high`` (``low <= 0 <= high``):
    soft-thresholding ``S_tau(z) = sign(z) max(|z| - tau, 0)`` then clipping to the box."""
    shrunk = torch.sign(z) * torch.clamp(z.abs() - tau, min=0.0)
    return torch.minimum(torch.maximum(shrunk, low), high)


def margin(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[Pred]_t0 - max_{i != t0} [Pred]_i`` per row."""
    own = logits.gather(1, target[:, None])[:, 0]
    others = logits.masked_fill(nn.functional.one_hot(target, logits.shape[1]).bool(), -torch.inf)
    return own - others.max(1).values


def delta_bounds(mode: str, x0: torch.Tensor, domain: Domain) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(centre, low, high)``: the explained point is ``centre + delta`` with ``low <= delta <= high``.

    PN: centre ``x0``; a coordinate above its absent value may only grow (to the box's top), one below
    only shrink, one at it move either way.  PP: centre ``a``; ``delta`` between 0 and ``x0 - a``.
    """
    a, lo, hi = (t.to(x0) for t in (domain.absent, domain.lower, domain.upper))
    if mode == "pn":
        low = torch.where(x0 > a, torch.zeros_like(x0), lo - x0)
        high = torch.where(x0 < a, torch.zeros_like(x0), hi - x0)
        return x0, torch.minimum(low, torch.zeros_like(low)), torch.maximum(high, torch.zeros_like(high))
    if mode == "pp":
        span = x0 - a
        return a.expand_as(x0), torch.clamp(span, max=0.0), torch.clamp(span, min=0.0)
    raise ValueError(f"mode must be 'pp' or 'pn', got {mode!r}")


def success(mode: str, m: torch.Tensor, kappa: float) -> torch.Tensor:
    """The authors' ``compare``: the PP keeps ``t0`` ahead by ``kappa``, the PN puts a class ahead by it."""
    return m >= kappa if mode == "pp" else m < -kappa


def elastic_net(delta: torch.Tensor, beta: float) -> torch.Tensor:
    flat = delta.reshape(len(delta), -1)
    return beta * flat.abs().sum(1) + (flat ** 2).sum(1)


def objective(model: nn.Module, mode: str, centre: torch.Tensor, delta: torch.Tensor, target: torch.Tensor,
              c: torch.Tensor, s: CEMSettings, autoencoder: nn.Module | None = None,
              with_l1: bool = True) -> torch.Tensor:
    """Eq. 1 (``pn``) or Eq. 2 (``pp``) per row; ``with_l1=False`` gives the smooth part ``g`` of FISTA."""
    x = centre + delta
    m = margin(model(x), target)
    attack = torch.clamp((m if mode == "pn" else -m) + s.kappa, min=0.0)   # max(., -kappa) + kappa
    flat = delta.reshape(len(delta), -1)
    out = c * attack + (flat ** 2).sum(1)
    if with_l1:
        out = out + s.beta * flat.abs().sum(1)
    if s.gamma > 0 and autoencoder is not None:
        out = out + s.gamma * ((x - autoencoder(x)) ** 2).reshape(len(x), -1).sum(1)
    return out


def fista(model: nn.Module, mode: str, x0: torch.Tensor, target: torch.Tensor, c: torch.Tensor, s: CEMSettings,
          domain: Domain, autoencoder: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One run of Eqs. 4-6 at fixed ``c`` (one per row).  Returns ``(delta_K, best, best_size)``: the last
    iterate, the successful iterate of least elastic-net size (zeros where none) and that size (inf)."""
    centre, low, high = delta_bounds(mode, x0, domain)
    delta = torch.zeros_like(x0)
    slack = torch.zeros_like(x0)
    best = torch.zeros_like(x0)
    best_size = torch.full((len(x0),), torch.inf, device=x0.device)
    shape = (-1,) + (1,) * (x0.dim() - 1)
    for k in range(s.max_iter):
        step = s.lr * (1.0 - k / s.max_iter) ** 0.5
        point = slack.detach().requires_grad_(True)
        smooth = objective(model, mode, centre, point, target, c, s, autoencoder, with_l1=False).sum()
        grad, = torch.autograd.grad(smooth, point)
        new = shrink_project(point.detach() - step * grad, step * s.beta, low, high)
        slack = torch.minimum(torch.maximum(new + k / (k + 3.0) * (new - delta), low), high)
        delta = new
        with torch.no_grad():
            ok = success(mode, margin(model(centre + delta), target), s.kappa)
            size = elastic_net(delta, s.beta)
            better = ok & (size < best_size)
            best = torch.where(better.view(shape), delta, best)
            best_size = torch.where(better, size, best_size)
    return delta, best, best_size


def search(model: nn.Module, mode: str, x0: torch.Tensor, target: torch.Tensor, s: CEMSettings, domain: Domain,
           autoencoder: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The search over ``c`` around :func:`fista` (the authors' ``attack``): per row the best ``delta``, its
    elastic-net size (inf: none found), and the ``c`` of the step that found it."""
    n = len(x0)
    c = torch.full((n,), float(s.c_init), device=x0.device)
    lower = torch.zeros(n, device=x0.device)
    upper = torch.full((n,), NO_BOUND, device=x0.device)
    best = torch.zeros_like(x0)
    best_size = torch.full((n,), torch.inf, device=x0.device)
    best_c = torch.full((n,), torch.nan, device=x0.device)
    shape = (-1,) + (1,) * (x0.dim() - 1)
    for _ in range(s.c_steps):
        _, found, size = fista(model, mode, x0, target, c, s, domain, autoencoder)
        ok = torch.isfinite(size)
        better = size < best_size
        best = torch.where(better.view(shape), found, best)
        best_c = torch.where(better, c, best_c)
        best_size = torch.minimum(size, best_size)
        upper = torch.where(ok, torch.minimum(upper, c), upper)
        lower = torch.where(ok, lower, torch.maximum(lower, c))
        c = torch.where(upper < NO_BOUND / 10, (lower + upper) / 2, c * 10)
    return {"delta": best, "size": best_size, "c": best_c}


# -- the optional autoencoder of the gamma term ---------------------------------------------------------------

class _ConvAE(nn.Module):
    """A small convolutional autoencoder (two stride-2 convolutions down, two transposed up), output in the
    box by a scaled sigmoid: the kind of AE the paper trains on MNIST, made small for the CPU budget."""

    def __init__(self, channels: int, low: float, high: float, width: int = 16):
        super().__init__()
        self.low, self.span = low, max(high - low, 1e-6)
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, width // 2, 3, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(width // 2, width, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 3, stride=2, padding=1, output_padding=1))

    def forward(self, x):
        return self.low + self.span * torch.sigmoid(self.net(x))


class _DenseAE(nn.Module):
    """A one-hidden-layer autoencoder of a table (``d -> max(2, d // 2) -> d``, ReLU, linear output)."""

    def __init__(self, d: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, max(2, d // 2)), nn.ReLU(), nn.Linear(max(2, d // 2), d))

    def forward(self, x):
        return self.net(x.reshape(len(x), -1)).reshape(x.shape)


def train_autoencoder(kind: str, train_x: torch.Tensor, domain: Domain, epochs: int, seed: int,
                      batch_size: int = 64, lr: float = 1e-3) -> nn.Module:
    """The AE of the gamma term, trained here on the train split (mean squared reconstruction error, Adam),
    seeded without touching the global random state; returned frozen, in eval mode."""
    x = train_x.detach().float().cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ae = (_ConvAE(x.shape[1], float(domain.lower.min()), float(domain.upper.max())) if kind == "image"
              else _DenseAE(int(np.prod(x.shape[1:]))))
        opt = torch.optim.Adam(ae.parameters(), lr=lr)
        order = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=order).split(batch_size):
                opt.zero_grad()
                nn.functional.mse_loss(ae(x[idx]), x[idx]).backward()
                opt.step()
    for p in ae.parameters():
        p.requires_grad_(False)
    return ae.eval()
