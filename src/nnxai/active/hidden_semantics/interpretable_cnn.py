"""Interpretable CNN: "one filter, one part" (survey ref. [70]; Zhang, Wu & Zhu, CVPR 2018, Sec. 3).

Every filter ``f`` of the top conv layer (``conv3`` here, after its ReLU; an ``n × n`` map ``x``) gets

* **Part templates** (Sec. 3.1, "part templates"): ``n²`` positive templates ``T_μ``, one per position
  ``μ`` of the map, ``t_ij = τ · max(1 − β ‖[i, j] − μ‖₁ / n, −1)``, and one negative template
  ``T⁻ = −τ`` (the filter stays silent).  The paper's settings: ``τ = 0.5 / n²``, ``β = 4``,
  ``α = n² / (1 + n²)`` (so every template has prior ``1 / (1 + n²)``).
* **The mask** (Sec. 3.1, Fig. 2): ``μ̂ = argmax_μ x_μ``, ``x^masked = max(x ∘ T_μ̂, 0)``, in training and
  test.  The template is applied without its factor ``τ`` — ``max(1 − β ‖[i, j] − μ̂‖₁ / n, −1)``, 1 at
  the peak — as the authors' code does (``getMask.m``); ``τ`` only rescales the map, which ``τ = 0.5/n²``
  would shrink ~100× before the head.  The mask is a constant in the backward pass (it depends on ``x``
  through an argmax only): given the input, an element-wise gate, which is how the layer-walking
  attribution methods treat it (:mod:`nnxai.methods.attribution.propagation._lrp_rules`).
* **The filter loss** (Sec. 3.1): ``Loss_f = −MI(X; T) = −Σ_T p(T) Σ_x p(x|T) log[p(x|T) / p(x)]`` with
  ``p(x|T) = exp(tr(x·T)) / Z_T``, ``Z_T = Σ_{x∈X} exp(tr(x·T))``, ``p(x) = Σ_T p(T) p(x|T)``,
  ``p(T_μ) = α / n²``, ``p(T⁻) = 1 − α``.  ``X`` is the set of the filter's (pre-mask) feature maps on the
  images of one batch (the paper's mini-batch approximation of the set over all images).  The network's
  loss is the cross-entropy plus ``weight · mean_f Loss_f``.

Choices: the paper weights the filter losses by a factor ``λ`` against the task loss; here ``weight``
multiplies the *mean* over filters, and the configured ``weight = 1`` is a stated rule, not a tuned value:
the filter loss (nats, in ``[−log(1 + n²), 0]``) and the cross-entropy (nats) count alike.  The paper's multi-category variant (each
filter assigned a class, ``T⁻`` on the other classes' images) is not used: the templates stay latent, as
in the loss above, for every image.

The network's own explanation (:class:`InterpretableFilters`) labels each interpretable filter with the
part (concept) it represents, as Network Dissection [21] does for any unit, on the *masked* maps (the
receptive region of each filter on an image is its template-masked map, upsampled to the input), and lists
each filter's top-activating images and the input position of its peak on each (what ``part_consistency``
scores).  On a data set without concept masks (digits) it lists the filters' peak statistics only.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from nnxai.active.base import ActiveMethod, register_active
from nnxai.explanations import UnitConcepts
from nnxai.methods.base import UnitLabeler, explained_indices
from nnxai.methods.hidden_semantics.network_dissection import (EXCLUDED_MASKS, unit_concept_iou,
                                                                unit_thresholds)
from nnxai.models.networks import ConvNet, NetworkSpec, register_network
from nnxai.params import BATCH_SIZE, Float, Int
from nnxai.registry import register

NETWORK = "interpretable_convnet"


# -- templates and the filter loss -------------------------------------------------------------------------
def l1_distances(n: int, device=None) -> torch.Tensor:
    """``(n², n, n)``: ``‖[i, j] − μ‖₁`` for every position ``μ`` (row-major) and cell ``(i, j)``."""
    grid = torch.arange(n, device=device, dtype=torch.float32)
    mu_i, mu_j = grid.repeat_interleave(n), grid.repeat(n)
    return (grid[None, :, None] - mu_i[:, None, None]).abs() + (grid[None, None, :] - mu_j[:, None, None]).abs()


def part_templates(n: int, beta: float, tau: float, device=None) -> torch.Tensor:
    """``(n² + 1, n, n)``: the positive templates ``T_μ`` (row-major ``μ``), then ``T⁻`` (Sec. 3.1)."""
    positive = tau * torch.clamp(1.0 - beta * l1_distances(n, device) / n, min=-1.0)
    negative = torch.full((1, n, n), -tau, device=device)
    return torch.cat([positive, negative])


def template_log_prior(n: int, alpha: float, device=None) -> torch.Tensor:
    """``log p(T)``: ``α / n²`` for each ``T_μ``, ``1 − α`` for ``T⁻``."""
    prior = torch.full((n * n + 1,), alpha / (n * n), device=device, dtype=torch.float64)
    prior[-1] = 1.0 - alpha
    return prior.log().float()


def filter_mutual_information(x: torch.Tensor, templates: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
    """``MI(X; T)`` of each filter (Sec. 3.1), ``(K,)``, over the set ``X`` of the ``B`` maps ``x`` ``(B, K, n, n)``.

    ``log p(x|T) = tr(x·T) − log Z_T`` with ``Z_T`` the sum over ``X``; ``log p(x) = logsumexp_T (log p(T) +
    log p(x|T))``; ``MI = Σ_T p(T) Σ_x p(x|T) (log p(x|T) − log p(x))``.  ``tr(x·T) = Σ_ij x_ij t_ij`` (``T``
    symmetric in the sense that the trace of the product is the elementwise sum).
    """
    scores = x.flatten(2) @ templates.flatten(1).t()                                  # tr(x·T), (B, K, M)
    log_px_t = torch.log_softmax(scores, dim=0)                                      # log p(x|T), Z_T over X
    log_px = torch.logsumexp(log_px_t + log_prior, dim=2, keepdim=True)              # log p(x)
    inner = (log_px_t.exp() * (log_px_t - log_px)).sum(0)                            # (K, M)
    return (inner * log_prior.exp()).sum(1)


def peak_masks(x: torch.Tensor, beta: float, table: torch.Tensor | None = None) -> torch.Tensor:
    """The forward mask of each map of ``x`` ``(B, K, h, w)``: ``max(1 − β ‖[i, j] − μ̂‖₁ / n, −1)`` at its
    peak ``μ̂`` (the first maximum, row-major), ``n = max(h, w)``; ``table``: :func:`mask_table` of the
    same size, if at hand."""
    b, k, h, w = x.shape
    if table is None:
        table = mask_table(h, w, beta, x.device, x.dtype)
    return table[x.detach().flatten(2).argmax(2)]                                     # (B, K, h, w)


def mask_table(h: int, w: int, beta: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(h·w, h, w)``: the mask for each peak position (row-major)."""
    rows = torch.arange(h, device=device, dtype=dtype)
    cols = torch.arange(w, device=device, dtype=dtype)
    dist = ((rows[None, :, None] - rows.repeat_interleave(w)[:, None, None]).abs()
            + (cols[None, None, :] - cols.repeat(h)[:, None, None]).abs())
    return torch.clamp(1.0 - beta * dist / max(h, w), min=-1.0)


class TemplateMask(nn.Module):
    """``x ∘ T_μ̂`` (the ReLU after it completes ``max(x ∘ T_μ̂, 0)``); in training it keeps its input, the
    pre-mask maps the filter loss reads (:meth:`take_input`)."""

    def __init__(self, beta: float):
        super().__init__()
        self.beta = float(beta)
        self._input: torch.Tensor | None = None
        self._table: tuple[tuple, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._input = x
        key = (*x.shape[-2:], x.device, x.dtype)
        if self._table is None or self._table[0] != key:
            self._table = (key, mask_table(*x.shape[-2:], self.beta, x.device, x.dtype))
        return x * peak_masks(x, self.beta, self._table[1])

    def take_input(self) -> torch.Tensor:
        """The input of the last training forward pass, released (a stored graph tensor would stop the
        module from being deep-copied)."""
        x, self._input = self._input, None
        if x is None:
            raise RuntimeError("the template mask has no input stored: call the network in training mode first")
        return x

    def extra_repr(self) -> str:
        return f"beta={self.beta:g}"


class InterpretableConvNet(ConvNet):
    """:class:`~nnxai.models.networks.ConvNet` with the template mask after the top conv layer's activation:
    conv-act-pool ×2, conv3-act3, mask, ReLU, GAP, linear.  ``unit_layers()["conv3"]`` is the masked
    layer (the interpretable filters)."""

    def __init__(self, in_channels: int, n_classes: int, widths=(16, 32, 64), activation: str = "relu",
                 beta: float = 4.0):
        super().__init__(in_channels, n_classes, widths, activation)
        layers = OrderedDict(self.features.named_children())
        layers["mask3"] = TemplateMask(beta)
        layers["act_mask3"] = nn.ReLU()
        self.features = nn.Sequential(layers)

    def unit_layers(self) -> dict[str, nn.Module]:
        return {"conv1": self.features.act1, "conv2": self.features.act2, "conv3": self.features.act_mask3}

    @property
    def last_conv_layer(self) -> nn.Module:
        return self.features.act_mask3

    @property
    def mask(self) -> TemplateMask:
        return self.features.mask3


register_network(NETWORK, NetworkSpec(InterpretableConvNet, base="cnn", extra={"beta": (0.0, 1000.0)}))


# -- the active method -------------------------------------------------------------------------------------
@register_active
class InterpretableCNN(ActiveMethod):
    """Train the CNN with the template mask and the filter loss of Zhang et al. [70] on its top conv layer."""

    id = "interpretable_cnn"
    description = 'Interpretable CNN: template-masked top filters with the mutual-information filter loss [70]'
    architectures = frozenset({"cnn"})
    #: The template mask is a layer the base ConvNet lacks (``standard_layers`` false: the rebuilds of the
    #: invariance metrics do not apply), declared in ``added_layers``: an element-wise gate, fixed given the
    #: input, for which the layer-walking methods (LRP, DeepLIFT, bias attribution, DASP's LPDN) have a rule
    #: (nnxai.methods.attribution.propagation._lrp_rules.WalksLayers).
    traits = {"standard_layers": False, "added_layers": ("TemplateMask",)}
    parameters = {
        "weight": Float("weight of the filter loss: CE + weight · mean_f Loss_f, Loss_f = −MI(X; T) (the "
                        "paper's λ, here on the mean over filters)", low=0.0),
        "beta": Float("β of the templates t_ij = τ max(1 − β‖[i,j] − μ‖₁/n, −1) and of the mask (paper: 4)",
                      low=0.0, low_open=True, high=1000.0),
        "tau": Float("τ · n² (the templates' scale τ = tau / n²; paper: 0.5)", low=0.0, low_open=True),
        "alpha": Float("prior mass α of the positive templates, p(T_μ) = α/n², p(T⁻) = 1 − α; null: the "
                       "paper's n²/(1 + n²)", low=0.0, high=1.0, low_open=True, high_open=True, nullable=True),
    }

    def build(self, architecture, kwargs, info):
        return NETWORK, {**kwargs, "beta": float(self.params["beta"])}

    def _loss_terms(self, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (n, str(device))
        if getattr(self, "_cache_key", None) != key:
            alpha = self.params["alpha"]
            alpha = n * n / (1.0 + n * n) if alpha is None else float(alpha)
            self._templates = part_templates(n, self.params["beta"], self.params["tau"] / (n * n), device)
            self._log_prior = template_log_prior(n, alpha, device)
            self._cache_key = key
        return self._templates, self._log_prior

    def filter_loss(self, x: torch.Tensor) -> torch.Tensor:
        """``mean_f Loss_f`` of the pre-mask maps ``x`` ``(B, K, n, n)``."""
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"the part templates need square feature maps, got {tuple(x.shape[-2:])}")
        templates, log_prior = self._loss_terms(x.shape[-1], x.device)
        return -filter_mutual_information(x, templates, log_prior).mean()

    def penalty(self, model, inputs, targets, logits):
        x = model.mask.take_input()
        if self.params["weight"] == 0:
            return None
        return self.params["weight"] * self.filter_loss(x)

    def after_epoch(self, model, epoch):
        model.mask._input = None
        return {}


# -- the network's own explanation -------------------------------------------------------------------------
class _TopLayer(nn.Module):
    """The network seen with its interpretable layer only as unit layer (for the dissection passes)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)

    def unit_layers(self) -> dict[str, nn.Module]:
        return {"conv3": self.model.unit_layers()["conv3"]}


def peak_statistics(model: nn.Module, inputs: torch.Tensor, batch_size: int, device) -> tuple[np.ndarray, ...]:
    """Per image and filter: the peak value of the masked top-layer map and its position ``(row, col)`` in
    the map, and the map size ``(h, w)``: ``values (N, K)``, ``rows (N, K)``, ``cols (N, K)``, ``(h, w)``."""
    layer = model.unit_layers()["conv3"]
    kept: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: kept.append(out.detach().cpu()))
    try:
        with torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                model(inputs[start:start + batch_size].to(device))
    finally:
        handle.remove()
    maps = torch.cat(kept)
    h, w = maps.shape[-2:]
    values, flat = maps.flatten(2).max(2)
    return (values.numpy().astype(np.float64), torch.div(flat, w, rounding_mode="floor").numpy(),
            (flat % w).numpy(), (int(h), int(w)))


def to_input_pixel(index: np.ndarray, size_map: int, size_input: int) -> np.ndarray:
    """The input pixel at the centre of each map cell ``index`` (the cell spans ``size_input / size_map``
    pixels)."""
    return np.minimum(((index + 0.5) * size_input / size_map).astype(np.int64), size_input - 1)


@register("interpretable_cnn")
class InterpretableFilters(UnitLabeler):
    """The part each interpretable filter represents (Zhang et al. [70] evaluate it in their experiments with
    Network Dissection's IoU [21]) and where it fires on its top images.

    Units (``layer`` ``conv3``, one per filter): ``concept``, ``iou`` (= ``score``), ``threshold``,
    ``detector``, ``ious`` as :class:`~nnxai.methods.hidden_semantics.network_dissection.NetworkDissection`
    computes them on the masked maps (absent, and ``concept`` ``None``, without masks); ``fire_rate``
    (share of images with a positive peak), ``mean_peak``; ``top_images`` (test-split positions of the
    ``top_images`` images with the highest peak, positive peaks only) and ``peaks`` (the input pixel
    ``[row, col]`` at the centre of the peak cell on each).
    """

    parameters = {
        "n_images": Int("test images analysed (a seeded sample)", low=1, at_most="test"),
        "top_images": Int("images per filter whose peak position is recorded: its highest peaks", low=1),
        "quantile": Float("T_k is this quantile of filter k's masked activations (Network Dissection [21]: "
                          "0.995)", low=0.0, high=1.0, low_open=True, high_open=True),
        "iou_threshold": Float("a filter is a detector of its part when its IoU exceeds this ([21]: 0.04)",
                               low=0.0, high=1.0, high_open=True),
        "batch_size": BATCH_SIZE,
    }
    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})
    only_models = frozenset({"interpretable_cnn"})
    variant_cap = False     # the dissection needs the population of images, not a few explained inputs

    def label_units(self, model: nn.Module, ctx) -> UnitConcepts:
        p = self.params
        idx = explained_indices(len(ctx.test.x), p["n_images"], ctx.seed)
        inputs = ctx.test.x[idx]
        was_training = model.training
        model.eval()
        try:
            values, rows, cols, (h, w) = peak_statistics(model, inputs, p["batch_size"], ctx.device)
            dissection = self._dissect(model, ctx, idx, inputs) if ctx.test.masks is not None else None
        finally:
            model.train(was_training)
        size_h, size_w = inputs.shape[-2:]
        units = []
        for k in range(values.shape[1]):
            firing = np.flatnonzero(values[:, k] > 0)
            top = firing[np.argsort(-values[firing, k], kind="stable")][:p["top_images"]]
            unit = {"layer": "conv3", "unit": k, "concept": None,
                    "fire_rate": float(len(firing) / len(idx)), "mean_peak": float(values[:, k].mean()),
                    "top_images": [int(idx[i]) for i in top],
                    "peaks": [[int(to_input_pixel(rows[i, k], h, size_h)), int(to_input_pixel(cols[i, k], w, size_w))]
                              for i in top],
                    "peak_values": [float(values[i, k]) for i in top]}
            if dissection is not None:
                concepts, ious, thresholds = dissection
                best = int(np.argmax(ious[k]))
                unit.update({"concept": concepts[best], "iou": float(ious[k, best]), "score": float(ious[k, best]),
                             "threshold": float(thresholds[k]), "detector": bool(ious[k, best] > p["iou_threshold"]),
                             "ious": {c: float(v) for c, v in zip(concepts, ious[k])}})
            units.append(unit)
        meta = {"n_images": int(len(idx)), "layers": ["conv3"], "map_size": [h, w],
                "has_masks": dissection is not None}
        if dissection is not None:
            meta["excluded_masks"] = list(EXCLUDED_MASKS)
        return UnitConcepts(units=units, concepts=dissection[0] if dissection is not None else [], meta=meta)

    def _dissect(self, model, ctx, idx, inputs):
        """Network Dissection's two passes [21] on the masked top layer: ``(concepts, IoU (K, C), T_k)``."""
        names = list(ctx.test.meta.get("mask_names") or ctx.info.mask_names)
        if len(names) != ctx.test.masks.shape[1]:
            raise ValueError(f"{ctx.test.masks.shape[1]} mask channels but {len(names)} mask names")
        keep = [i for i, n in enumerate(names) if n not in EXCLUDED_MASKS]
        masks = ctx.test.masks[idx][:, keep]
        top = _TopLayer(model)
        p = self.params
        thresholds = unit_thresholds(top, inputs, p["batch_size"], p["quantile"], ctx.device)["conv3"]
        ious = unit_concept_iou(top, inputs, masks, {"conv3": thresholds}, p["batch_size"], ctx.device)["conv3"]
        return [names[i] for i in keep], ious, thresholds

