"""The networks of L2X [110] (explainer and variational approximator), the Gumbel-softmax subset sampler
and the seeded training loop; :mod:`.l2x` wraps them as an attribution method.

Units.  The explainer scores *units*: the features of a table, or the non-overlapping
``patch × patch`` squares of an image (all channels), as L2X selects 4×4 patches of MNIST digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: Inputs per forward pass of the model when its outputs are precomputed; bounds memory only.
FORWARD_BATCH = 512


def gumbel_subset(logits: torch.Tensor, k: int, tau: float, generator: torch.Generator) -> torch.Tensor:
    """Continuous relaxation of a k-subset (Chen et al. 2018, Eqs. 5–6), ``(B, U)`` in [0, 1].

    ``k`` independent Gumbel-softmax draws ``C^(l)_j = exp((log p_j + G_j)/τ) / Σ_u exp((log p_u + G_u)/τ)``
    with ``G = −log(−log u)``, ``u ~ U(0, 1)`` (Eq. 5; ``log p = logits`` up to a constant that cancels),
    combined by ``V_j = max_l C^(l)_j`` (Eq. 6).
    """
    u = torch.rand((len(logits), k, logits.shape[1]), generator=generator, dtype=logits.dtype)
    gumbel = -torch.log(-torch.log(u.clamp(min=torch.finfo(logits.dtype).tiny))).to(logits.device)
    return torch.softmax((logits[:, None, :] + gumbel) / tau, dim=-1).amax(dim=1)


def units_to_input(values: torch.Tensor, input_shape: tuple[int, ...], patch: int) -> torch.Tensor:
    """Broadcast per-unit ``values`` (B, U) to inputs ``(B, *input_shape)`` (a patch's pixels, all channels)."""
    if len(input_shape) == 1:
        return values
    c, h, w = input_shape
    grid = values.reshape(len(values), 1, h // patch, w // patch)
    pixels = grid.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)
    return pixels.expand(len(values), c, h, w)


class TabularExplainer(nn.Module):
    """``d → hidden → hidden → d`` scores, one per feature."""

    def __init__(self, n_features: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_features))

    def forward(self, x):
        return self.net(x)


class ImageExplainer(nn.Module):
    """One score per patch from a code of the patch, a global summary of the image and the patch's position.

    As the L2X explainers for text concatenate a global (max-pooled) code to every position's local code:
    the local code embeds each patch's pixels (a convolution with kernel and stride ``patch``), the global
    code is the mean of the local codes, and two 1×1 convolutions map their concatenation to a score, to
    which a learned per-patch offset adds where the patch is (the convolutions alone cannot tell).
    """

    def __init__(self, input_shape: tuple[int, int, int], hidden: int, patch: int):
        super().__init__()
        c, h, w = input_shape
        self.embed = nn.Sequential(nn.Conv2d(c, hidden, patch, stride=patch), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(2 * hidden, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 1, 1))
        self.position = nn.Parameter(torch.zeros(1, 1, h // patch, w // patch))

    def forward(self, x):
        local = self.embed(x)
        context = local.mean(dim=(2, 3), keepdim=True).expand_as(local)
        return (self.head(torch.cat([local, context], dim=1)) + self.position).flatten(1)


def approximator(input_shape: tuple[int, ...], n_classes: int, hidden: int, patch: int) -> nn.Module:
    """The variational family ``g(x_S)`` predicting the model's class distribution from the masked input.

    Tables: an MLP.  Images: the same patch embedding as the explainer, a 1×1 convolution, and a linear
    layer over the whole (position-aware) grid of patch codes.
    """
    if len(input_shape) == 1:
        return nn.Sequential(nn.Linear(input_shape[0], hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                             nn.Linear(hidden, n_classes))
    c, h, w = input_shape
    return nn.Sequential(nn.Conv2d(c, hidden, patch, stride=patch), nn.ReLU(), nn.Conv2d(hidden, hidden, 1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(hidden * (h // patch) * (w // patch), n_classes))


def explainer(input_shape: tuple[int, ...], hidden: int, patch: int) -> nn.Module:
    if len(input_shape) == 1:
        return TabularExplainer(input_shape[0], hidden)
    return ImageExplainer(input_shape, hidden, patch)


def n_units(input_shape: tuple[int, ...], patch: int) -> int:
    """Features of a table, or patches of an image (whose sides must be multiples of ``patch``)."""
    if len(input_shape) == 1:
        return input_shape[0]
    _, h, w = input_shape
    if h % patch or w % patch:
        raise ValueError(f"L2X: image sides {h}×{w} must be multiples of patch_size={patch}")
    return (h // patch) * (w // patch)


@dataclass
class TrainingSettings:
    k: int
    tau: float
    epochs: int
    lr: float
    batch_size: int
    hidden: int
    patch: int
    seed: int


@torch.no_grad()
def model_probabilities(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``P_m(y | x)``: the softmax of the explained model, the targets L2X learns to reproduce."""
    return torch.cat([model(b).softmax(dim=1) for b in x.split(FORWARD_BATCH)])


def train_explainer(model: nn.Module, x_train: torch.Tensor, settings: TrainingSettings
                    ) -> tuple[nn.Module, list[float]]:
    """Maximise the variational lower bound of I(X_S; Y) (Chen et al. 2018, Sec. 3, with Eqs. 5–6).

    ``max_{E, g} E_x E_{y ~ P_m(·|x)} E_V [log g_y(V ⊙ x)]``, ``V`` the relaxed subset of the explainer
    ``E``: cross-entropy of the approximator against the model's class probabilities, minimised jointly
    over both networks with Adam.  Initialisation (``torch.manual_seed(seed)`` inside a forked RNG state,
    so the global stream is untouched), batch order and Gumbel noise come from ``seed`` only.

    Returns the trained explainer (eval mode, no gradients) and the mean loss of every epoch.
    """
    device = x_train.device
    shape = tuple(x_train.shape[1:])
    targets = model_probabilities(model, x_train)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        select = explainer(shape, settings.hidden, settings.patch).to(device)
        approx = approximator(shape, targets.shape[1], settings.hidden, settings.patch).to(device)
    generator = torch.Generator().manual_seed(settings.seed)
    optimiser = torch.optim.Adam(list(select.parameters()) + list(approx.parameters()), lr=settings.lr)
    history = []
    with torch.enable_grad():
        for _ in range(settings.epochs):
            order = torch.randperm(len(x_train), generator=generator).to(device)
            total = 0.0
            for batch in order.split(settings.batch_size):
                xb, pb = x_train[batch], targets[batch]
                relaxed = gumbel_subset(select(xb), settings.k, settings.tau, generator)
                log_q = F.log_softmax(approx(xb * units_to_input(relaxed, shape, settings.patch)), dim=1)
                loss = -(pb * log_q).sum(dim=1).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(batch)
            history.append(total / len(x_train))
    select.eval().requires_grad_(False)
    return select, history
