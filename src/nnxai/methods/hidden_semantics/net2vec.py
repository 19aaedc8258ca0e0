"""Net2Vec (survey ref. [99]; Fong & Vedaldi, "Net2Vec: quantifying and explaining how concepts are encoded by
filters in deep neural networks", CVPR 2018): a concept is a vector over the K filters of a layer.

For a layer with activations ``A(x) ∈ R^{K×h×w}`` and a concept ``c`` with pixel masks ``L_c(x) ∈ {0,1}^{H×W}``:

1. **Segmentation embedding** (the paper's concept segmentation): ``M(x; w, b) = σ(Σ_k w_k A_k(x) + b)`` at the
   masks' resolution, learnt with the per-pixel binary cross-entropy balanced by ``α``::

       L_1(w, b) = -1/(N S) Σ_x Σ_u [ α L_c(x)_u log M(x)_u + (1 - α)(1 - L_c(x)_u) log(1 - M(x)_u) ],
       α = 1 - Σ_x |L_c(x)| / (N S)            (S = H W pixels per mask, N training images)

   (:func:`segmentation_loss`, :func:`balance_alpha`).  The paper upsamples the activations to the mask size
   (bilinearly, as Network Dissection [21]) and combines them; we combine at the layer's resolution and
   upsample the sum, which is the same map: both steps are linear and the bilinear weights sum to one.  The
   concept is segmented where ``M > 0.5`` and scored by the set IoU over the held-out images,
   ``IoU_set = Σ_x |M(x) ∩ L_c(x)| / Σ_x |M(x) ∪ L_c(x)|``.
2. **Classification embedding** (the paper's concept classification): whether ``c`` is present in ``x`` (any
   pixel of ``L_c(x)``), ``σ(wᵀ Ā(x) + b)`` on the spatially averaged activations ``Ā(x) ∈ R^K``, scored by
   average precision (AP) and accuracy at 0.5 on the held-out images.
3. **Best single filter** (the paper's baseline, Network Dissection style): filter ``k``'s upsampled map
   thresholded at its top-``quantile`` level ``T_k`` (:func:`~nnxai.methods.hidden_semantics.network_dissection.
   unit_thresholds`); per concept the filter with the highest set IoU on the training images, scored on the
   held-out ones.  For classification, the filter whose average activation has the highest training AP.
   The multi-filter minus single-filter IoU is the paper's headline (several filters segment a concept better
   than the best single one).

**Protocol**: the embeddings, the thresholds ``T_k`` and the best filters are fitted on ``n_train`` seeded
train-split images (:meth:`fit`); everything is scored on ``n_images`` held-out test images, the seeded
sample every method explains.  Concepts are the data set's mask channels except ``evidence`` (as Network
Dissection); a concept with no positive (or no negative) training pixel has no segmentation embedding, one
present in all (or no) training images no classification embedding (``background`` on ``shapes``: every
image has one); their scores are ``None``.

**Unit labels** (``units``): each filter is named with the concept whose segmentation embedding weights it
most: ``concept = argmax_c ŵ_{c,k}``, ``score`` = that weight, where ``ŵ_c = w̃_c / ||w̃_c||`` and ``w̃`` are the
weights on standardised activations (one unit's weight per standard deviation of its activation, so filters
of different scales compare).

Choices where the paper leaves room or where we depart from it:

* optimiser: the loss is convex in ``(w, b)``; we minimise it on the whole training sample with L-BFGS
  (``max_iter`` iterations, strong-Wolfe line search) where the paper runs SGD over mini-batches;
* the activations are standardised per filter before fitting (mean 0, standard deviation 1 over the
  training positions; a filter that never changes gets weight 0) - a reparametrisation of the same model
  for the optimiser's sake; the record stores the embeddings on the raw activations too;
* every image enters both losses and the IoU (every ``shapes`` image is labelled for every concept, as
  Network Dissection notes); the classification loss is balanced as the segmentation loss, with
  ``α = 1 -`` the fraction of training images that show the concept;
* every unit layer of the CNN is analysed; the metrics' headline layer is the deepest (the paper's conv5).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nnxai.explanations import UnitConcepts
from nnxai.methods.base import UnitLabeler, explained_indices
from nnxai.methods.hidden_semantics._unit_activations import layer_activations, model_device
from nnxai.ops.cav import eval_mode
from nnxai.methods.hidden_semantics.network_dissection import EXCLUDED_MASKS, unit_concept_iou, unit_thresholds
from nnxai.params import BATCH_SIZE, Float, Int
from nnxai.registry import register

OWNER = "net2vec"
#: L-BFGS settings (torch.optim.LBFGS): stop when the gradient or the step is this small.
TOLERANCE_GRAD, TOLERANCE_CHANGE, HISTORY = 1e-7, 1e-10, 20


def balance_alpha(masks: torch.Tensor) -> torch.Tensor:
    """``α_c = 1 - Σ_x |L_c(x)| / (N S)`` of masks ``(N, C, H, W)``: the share of background pixels."""
    return 1.0 - masks.float().mean(dim=(0, 2, 3))


def segmentation_logits(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                        size: tuple[int, int]) -> torch.Tensor:
    """``Σ_k w_{c,k} z_k + b_c`` for every concept, upsampled bilinearly to ``size``: ``(N, C, H, W)``."""
    s = F.conv2d(z, weight[:, :, None, None], bias)
    if tuple(s.shape[-2:]) != tuple(size):
        s = F.interpolate(s, size=tuple(size), mode="bilinear", align_corners=False)
    return s


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Per-concept ``L_1``: the α-balanced binary cross-entropy of ``σ(logits)`` against ``masks``,
    averaged over images and pixels; ``(C,)`` for logits and masks ``(N, C, H, W)`` and ``alpha`` ``(C,)``."""
    t = masks.to(logits.dtype)
    a = alpha.to(logits.dtype)[None, :, None, None]
    per_pixel = a * t * F.logsigmoid(logits) + (1 - a) * (1 - t) * F.logsigmoid(-logits)
    return -per_pixel.mean(dim=(0, 2, 3))


class _BalancedBCE(torch.autograd.Function):
    """``Σ ω ⊙ (softplus(s) - t ⊙ s)``, the α-balanced cross-entropy of :func:`segmentation_loss` summed with
    per-pixel weights ``ω`` (``α/(N S)`` on foreground, ``(1-α)/(N S)`` on background pixels): for a binary
    ``t``, ``softplus(s) - t s`` is ``-log σ(s)`` where ``t = 1`` and ``-log(1 - σ(s))`` where ``t = 0``.  Its
    gradient ``ω ⊙ (σ(s) - t)`` is written out: the fit evaluates it some hundred times on every pixel."""

    @staticmethod
    def forward(ctx, s, omega, t):
        ctx.save_for_backward(s, omega, t)
        return (omega * (F.softplus(s) - t * s)).sum()

    @staticmethod
    def backward(ctx, grad):
        s, omega, t = ctx.saved_tensors
        return grad * omega * (torch.sigmoid(s) - t), None, None


def presence_loss(logits: torch.Tensor, present: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Per-concept classification loss: the α-balanced cross-entropy of ``σ(logits)`` ``(N, C)`` against the
    image-level presence ``(N, C)``, averaged over images; ``(C,)``."""
    t = present.to(logits.dtype)
    a = alpha.to(logits.dtype)[None, :]
    return -(a * t * F.logsigmoid(logits) + (1 - a) * (1 - t) * F.logsigmoid(-logits)).mean(0)


def set_iou(pred: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-concept intersection and union counts ``(C,)`` of boolean ``(N, C, H, W)`` segmentations."""
    return (pred & masks).sum(dim=(0, 2, 3)).double(), (pred | masks).sum(dim=(0, 2, 3)).double()


def average_precision(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AP of ``scores`` ``(n,)`` for each column of boolean ``labels`` ``(n, C)``: ``Σ_t (R_t - R_{t-1}) P_t``
    over the distinct score thresholds ``t`` (ties count together, as scikit-learn's
    ``average_precision_score``); NaN for a column without positives."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]        # end of each group of tied scores
    tp = np.cumsum(y, axis=0)[last]
    precision = tp / (last + 1.0)[:, None]
    positives = y.sum(0)
    recall_steps = np.diff(np.vstack([np.zeros((1, y.shape[1])), tp]), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (recall_steps * precision).sum(0) / positives


def _standardiser(a: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-unit mean and ``1/std`` over ``dims`` (``1/std`` = 0 for a unit that never changes)."""
    mean = a.mean(dim=dims)
    std = a.std(dim=dims, unbiased=False)
    return mean, torch.where(std > 0, 1.0 / std.clamp_min(1e-30), torch.zeros_like(std))


def _minimise(params: list[torch.Tensor], loss_fn, max_iter: int) -> dict:
    """Full-batch L-BFGS on a convex loss; its iterations and final loss."""
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, history_size=HISTORY, line_search_fn="strong_wolfe",
                            tolerance_grad=TOLERANCE_GRAD, tolerance_change=TOLERANCE_CHANGE)

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        final = float(loss_fn())
    return {"iterations": int(opt.state[params[0]].get("n_iter", 0)), "loss": final}


def fit_segmentation(z: torch.Tensor, masks: torch.Tensor, active: torch.Tensor,
                     max_iter: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Segmentation embeddings ``(C, K)`` and biases ``(C,)`` minimising Σ_c L_1 over the ``active`` concepts
    (standardised maps ``z`` ``(N, K, h, w)``, masks ``(N, C, H, W)``); inactive concepts keep 0.  Also the
    optimiser's iterations and final loss."""
    alpha = balance_alpha(masks).to(z.dtype)
    weight = torch.zeros(masks.shape[1], z.shape[1], dtype=z.dtype, device=z.device, requires_grad=True)
    bias = torch.zeros(masks.shape[1], dtype=z.dtype, device=z.device, requires_grad=True)
    on = active.to(z.dtype)
    size = tuple(masks.shape[-2:])
    t = masks.to(z.dtype)
    per_image = on / (masks.shape[0] * size[0] * size[1])            # L_1 averages over images and pixels
    omega = torch.where(masks, (alpha * per_image)[None, :, None, None], ((1 - alpha) * per_image)[None, :, None, None])
    info = _minimise([weight, bias], lambda: _BalancedBCE.apply(
        segmentation_logits(z, weight * on[:, None], bias * on, size), omega, t), max_iter)
    return (weight * on[:, None]).detach(), (bias * on).detach(), info


def fit_classification(f: torch.Tensor, present: torch.Tensor, active: torch.Tensor,
                       max_iter: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Classification embeddings ``(C, K)`` and biases ``(C,)`` on standardised pooled activations ``f``."""
    alpha = 1.0 - present.float().mean(0)
    weight = torch.zeros(present.shape[1], f.shape[1], dtype=f.dtype, device=f.device, requires_grad=True)
    bias = torch.zeros(present.shape[1], dtype=f.dtype, device=f.device, requires_grad=True)
    on = active.to(f.dtype)
    info = _minimise([weight, bias], lambda: (presence_loss(f @ (weight * on[:, None]).T + bias * on, present, alpha)
                                              * on).sum(), max_iter)
    return (weight * on[:, None]).detach(), (bias * on).detach(), info


def _maybe(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


@register("net2vec")
class Net2Vec(UnitLabeler):
    """Concept embeddings over the filters of every conv layer, segmentation and classification probes, the
    best single filter beside them (Fong & Vedaldi [99]); see the module docstring.

    Returns (:meth:`label_units`) a :class:`~nnxai.explanations.UnitConcepts` whose ``units`` are
    ``{layer, unit, concept, score, weights: {concept: ŵ_{c,k}}}`` and whose ``meta`` holds ``scores[layer]
    [concept]`` (held-out ``seg_iou``, ``single_iou``, ``single_filter``, ``gain``, ``cls_ap``,
    ``cls_accuracy``, ``single_cls_ap``, ``single_cls_filter``, ``alpha``), ``embeddings[layer][concept]``
    (``segmentation`` and ``classification`` weights on the raw activations with their biases, and
    ``segmentation_standardised``), ``headline_layer``, ``train_indices`` and ``test_indices``.
    """

    parameters = {
        "n_train": Int("train-split images the embeddings, thresholds and best filters are fitted on (a seeded "
                       "sample)", low=1, at_most="train"),
        "n_images": Int("held-out test images scored (the seeded sample every method explains)", low=1,
                        at_most="test"),
        "quantile": Float("single-filter baseline: T_k is this quantile of filter k's activations, as Network "
                          "Dissection (0.995)", low=0.0, high=1.0, low_open=True, high_open=True),
        "max_iter": Int("L-BFGS iterations per fit of a layer's embeddings (the loss is convex)", low=1),
        "batch_size": BATCH_SIZE,
    }
    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})
    needs_masks = True
    trains = True            # fits concept embeddings on the train split (companion survey's 'Training' column)
    variant_cap = False      # the set IoU is a statistic of the image population, not one result per image

    # -- fitting on the train split ---------------------------------------------------------------------------
    def _fit(self, model: nn.Module, train) -> None:
        p = self.params
        where = getattr(self.info_, "name", None) or "the train split"
        if getattr(train, "masks", None) is None:
            raise ValueError(f"Net2Vec needs pixel-level concept masks of the training images; {where} has none")
        names, keep = self._concepts(train, train.masks.shape[1])
        self.concepts_ = [names[i] for i in keep]
        rng = np.random.default_rng([self.seed, 99])
        idx = np.sort(rng.permutation(len(train.x))[:min(p["n_train"], len(train.x))])
        x = train.x[idx]
        masks_np = np.ascontiguousarray(train.masks[idx][:, keep])
        device = model_device(model)
        masks = torch.from_numpy(masks_np).to(device)
        with eval_mode(model):
            acts = layer_activations(model, x, p["batch_size"], device, OWNER, maps=True)
            self.thresholds_ = unit_thresholds(model, x, p["batch_size"], p["quantile"], device)
            single = unit_concept_iou(model, x, masks_np, self.thresholds_, p["batch_size"], device)
        pixels = masks.flatten(2)
        present = pixels.any(2)                                                     # (N, C)
        self.seg_active_ = pixels.any(2).any(0) & ~pixels.all(2).all(0)
        self.cls_active_ = present.any(0) & ~present.all(0)
        self.alpha_ = balance_alpha(masks).cpu().numpy()
        self.train_indices_ = idx
        self.layers_ = {}
        for layer, a in acts.items():
            mean, scale = _standardiser(a, (0, 2, 3))
            z = (a - mean[None, :, None, None]) * scale[None, :, None, None]
            w, b, seg_fit = fit_segmentation(z, masks, self.seg_active_, p["max_iter"])
            pooled = a.mean(dim=(2, 3))
            pmean, pscale = _standardiser(pooled, (0,))
            cw, cb, cls_fit = fit_classification((pooled - pmean) * pscale, present, self.cls_active_, p["max_iter"])
            train_ap = np.stack([average_precision(col, present.cpu().numpy()) for col in pooled.T.cpu().numpy()])
            self.layers_[layer] = {"mean": mean, "scale": scale, "w": w, "b": b, "pmean": pmean, "pscale": pscale,
                                   "cw": cw, "cb": cb, "best_filter": single[layer].argmax(0),
                                   "best_cls_filter": np.nan_to_num(train_ap, nan=-1.0).argmax(0),
                                   "fit": {"segmentation": seg_fit, "classification": cls_fit}}

    def _concepts(self, split, n_channels: int) -> tuple[list[str], list[int]]:
        names = list((split.meta or {}).get("mask_names") or getattr(self.info_, "mask_names", ()))
        if len(names) != n_channels:
            raise ValueError(f"{n_channels} mask channels but {len(names)} mask names")
        keep = [i for i, n in enumerate(names) if n not in EXCLUDED_MASKS]
        if not keep:
            raise ValueError(f"no concept masks besides {list(EXCLUDED_MASKS)}: {names}")
        return names, keep

    # -- scoring on held-out test images ------------------------------------------------------------------------
    def _run(self, ctx):
        record = self.label_units(ctx.model, ctx)
        return record, record.meta["n_images"]      # seconds per scored image, as Network Dissection

    def label_units(self, model: nn.Module, ctx) -> UnitConcepts:
        self.check_fitted(model)
        p = self.params
        if ctx.test.masks is None:
            raise ValueError(f"Net2Vec needs pixel-level concept masks; {ctx.dataset} has none")
        names, keep = self._concepts(ctx.test, ctx.test.masks.shape[1])
        if [names[i] for i in keep] != self.concepts_:
            raise ValueError(f"test concepts {[names[i] for i in keep]} differ from the fitted {self.concepts_}")
        idx = explained_indices(len(ctx.test.x), p["n_images"], ctx.seed)
        x = ctx.test.x[idx]
        masks_np = np.ascontiguousarray(ctx.test.masks[idx][:, keep])
        device = model_device(model)
        masks = torch.from_numpy(masks_np).to(device)
        with eval_mode(model):
            acts = layer_activations(model, x, p["batch_size"], device, OWNER, maps=True)
            single = unit_concept_iou(model, x, masks_np, self.thresholds_, p["batch_size"], device)
        present = masks.flatten(2).any(2).cpu().numpy()
        shown = present.any(0)                 # a concept without a held-out pixel has no IoU to score
        units, scores, embeddings = [], {}, {}
        for layer, a in acts.items():
            fitted = self.layers_[layer]
            seg_iou = self._held_out_iou(a, masks, fitted, p["batch_size"])
            pooled = a.mean(dim=(2, 3))
            probs = torch.sigmoid(((pooled - fitted["pmean"]) * fitted["pscale"]) @ fitted["cw"].T + fitted["cb"])
            probs = probs.cpu().numpy()
            cls_ap = np.stack([average_precision(probs[:, c], present[:, [c]])[0] for c in range(len(self.concepts_))])
            pooled_np = pooled.cpu().numpy()
            scores[layer], embeddings[layer] = {}, {}
            for c, concept in enumerate(self.concepts_):
                seg_on = bool(self.seg_active_[c]) and bool(shown[c])
                cls_on = bool(self.cls_active_[c])
                k_seg, k_cls = int(fitted["best_filter"][c]), int(fitted["best_cls_filter"][c])
                multi = _maybe(seg_iou[c]) if seg_on else None
                single_iou = _maybe(single[layer][k_seg, c]) if seg_on else None
                single_ap = average_precision(pooled_np[:, k_cls], present[:, [c]])[0] if cls_on else None
                scores[layer][concept] = {
                    "seg_iou": multi, "single_iou": single_iou, "single_filter": k_seg if seg_on else None,
                    "gain": None if multi is None or single_iou is None else multi - single_iou,
                    "cls_ap": _maybe(cls_ap[c]) if cls_on else None,
                    "cls_accuracy": float(((probs[:, c] > 0.5) == present[:, c]).mean()) if cls_on else None,
                    "single_cls_ap": _maybe(single_ap), "single_cls_filter": k_cls if cls_on else None,
                    "alpha": float(self.alpha_[c])}
                embeddings[layer][concept] = self._raw_embeddings(fitted, c)
            units += self._unit_labels(layer, fitted["w"].cpu().numpy())
        meta = {"n_images": int(len(idx)), "n_train": int(len(self.train_indices_)),
                "test_indices": [int(i) for i in idx], "train_indices": [int(i) for i in self.train_indices_],
                "layers": list(acts), "headline_layer": list(acts)[-1], "scores": scores, "embeddings": embeddings,
                "fit": {layer: self.layers_[layer]["fit"] for layer in acts},
                "protocol": "embeddings, thresholds and best filters fitted on n_train train-split images; every "
                            "score on n_images held-out test images",
                "excluded_masks": [n for n in names if n in EXCLUDED_MASKS]}
        return UnitConcepts(units=units, concepts=list(self.concepts_), meta=meta)

    def _held_out_iou(self, a, masks, fitted, batch_size) -> np.ndarray:
        inter = torch.zeros(masks.shape[1], dtype=torch.float64, device=masks.device)
        union = torch.zeros_like(inter)
        size = tuple(masks.shape[-2:])
        for start in range(0, len(a), batch_size):
            part = slice(start, start + batch_size)
            z = (a[part] - fitted["mean"][None, :, None, None]) * fitted["scale"][None, :, None, None]
            pred = segmentation_logits(z, fitted["w"], fitted["b"], size) > 0          # M > 0.5
            i, u = set_iou(pred, masks[part])
            inter, union = inter + i, union + u
        return torch.where(union > 0, inter / union.clamp_min(1.0), torch.nan).cpu().numpy()

    def _raw_embeddings(self, fitted: dict, c: int) -> dict:
        """Weights and bias on the raw activations: ``w_k = w̃_k s_k``, ``b = b̃ - Σ_k w̃_k s_k μ_k``."""
        out = {}
        for key, w, b, mean, scale in (("segmentation", "w", "b", "mean", "scale"),
                                       ("classification", "cw", "cb", "pmean", "pscale")):
            raw = fitted[w][c] * fitted[scale]
            out[key] = raw.cpu().double().tolist()
            out[f"{key}_bias"] = float(fitted[b][c] - (raw * fitted[mean]).sum())
        out["segmentation_standardised"] = fitted["w"][c].cpu().double().tolist()
        return out

    def _unit_labels(self, layer: str, w: np.ndarray) -> list[dict]:
        """Each filter named with the concept whose normalised segmentation embedding weights it most."""
        active = self.seg_active_.cpu().numpy()
        norms = np.linalg.norm(w, axis=1, keepdims=True)
        unit_w = np.where(norms > 0, w / np.where(norms > 0, norms, 1.0), 0.0)
        candidates = np.where(active[:, None], unit_w, -np.inf)
        units = []
        for k in range(w.shape[1]):
            best = int(np.argmax(candidates[:, k]))
            units.append({"layer": layer, "unit": k, "concept": self.concepts_[best],
                          "score": float(unit_w[best, k]) if active[best] else 0.0,
                          "weights": {c: float(unit_w[j, k]) for j, c in enumerate(self.concepts_) if active[j]}})
        return units

