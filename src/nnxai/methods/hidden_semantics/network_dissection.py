"""Network Dissection (survey ref. [21]; Bau, Zhou, Khosla, Oliva, Torralba, CVPR 2017).

Every unit ``k`` of every convolutional layer is scored against every pixel-level concept ``c``:

1. **Threshold** (paper, Sec. 2.2): ``T_k`` is the top-quantile level of the unit's activations over all
   images and all spatial positions of the dissection set, ``P(a_k > T_k) = 1 - quantile`` (0.005 in the
   paper).  It is computed at the layer's native resolution, as the empirical quantile with linear
   interpolation (``numpy.quantile``'s default).
2. **Segmentation**: the activation map ``A_k(x)`` is upsampled bilinearly to the resolution of the concept
   masks and thresholded, ``M_k(x) = S_k(x) > T_k``.  The strict inequality keeps a ReLU unit that is
   silent on more than 99.5 % of positions (``T_k = 0``) from segmenting every pixel.
3. **Score**: the dataset-wide ``IoU_{k,c} = sum_x |M_k(x) ∩ L_c(x)| / sum_x |M_k(x) ∪ L_c(x)|``.  The
   paper sums over the images labelled for the *category* of ``c`` (colour, material, object, ...); every
   ``shapes`` image is labelled for every category (one shape, one texture, one colour each), so the sums
   run over all dissected images.  (The survey paraphrases this as "inputs that contain the concept"; we
   follow the original.)  A unit is a *detector* of its best concept when that IoU exceeds
   ``iou_threshold`` (0.04 in the paper).

Concepts are the dataset's mask channels (``meta["mask_names"]``, else the data set's declared ``mask_names``)
except ``evidence``, which is the class-level union of the object masks rather than a visual concept.
``background`` is kept: like Broden's scene and "stuff" regions (sky, floor) it is a pixel region a unit can
detect, and leaving it out would mislabel units that fire on the background.

Memory: pass 1 keeps only each unit's running top ``n - floor((n - 1) q)`` activations (a few thousand
numbers), enough for the exact interpolated quantile; pass 2 recomputes the activations and accumulates the
intersection and union counts per batch, so no upsampled map is ever kept.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nnxai.explanations import UnitConcepts
from nnxai.methods.base import UnitLabeler, explained_indices
from nnxai.params import BATCH_SIZE, Float, Int
from nnxai.registry import register

EXCLUDED_MASKS = ("evidence",)


class _Recorder:
    """Forward hooks that keep the latest output of every unit layer."""

    def __init__(self, layers: dict[str, nn.Module]):
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = [module.register_forward_hook(self._hook(name)) for name, module in layers.items()]

    def _hook(self, name):
        def hook(_module, _inputs, output):
            if output.dim() != 4:
                raise ValueError(f"unit layer {name!r} gives {output.dim()}-D activations; Network Dissection "
                                 "needs convolutional (N, units, h, w) maps")
            self.outputs[name] = output.detach()
        return hook

    def close(self):
        for handle in self.handles:
            handle.remove()


def _run_batches(model, inputs, batch_size, device, recorder):
    """Yield ``(batch slice, {layer: activations})`` over ``inputs``."""
    for start in range(0, len(inputs), batch_size):
        part = slice(start, min(start + batch_size, len(inputs)))
        with torch.no_grad():
            model(inputs[part].to(device))
        yield part, recorder.outputs


def _quantile_from_top(top: torch.Tensor, n: int, q: float) -> np.ndarray:
    """``numpy.quantile(values, q)`` (linear) from each row's descending top ``n - floor((n - 1) q)`` values."""
    h = (n - 1) * q
    lo = math.floor(h)
    m = n - lo
    low = top[:, m - 1].double()                       # sorted position lo
    high = top[:, m - 2].double() if m >= 2 else low    # sorted position lo + 1
    return (low + (h - lo) * (high - low)).cpu().numpy()


def unit_thresholds(model, inputs, batch_size, quantile, device) -> dict[str, np.ndarray]:
    """Pass 1: per-unit thresholds ``T_k`` of every unit layer, ``{layer: (units,) float64}``."""
    recorder = _Recorder(model.unit_layers())
    top: dict[str, torch.Tensor] = {}
    keep: dict[str, int] = {}
    totals: dict[str, int] = {}
    try:
        for _part, outputs in _run_batches(model, inputs, batch_size, device, recorder):
            for name, act in outputs.items():
                k, h, w = act.shape[1:]
                if name not in keep:
                    totals[name] = len(inputs) * h * w
                    keep[name] = totals[name] - math.floor((totals[name] - 1) * quantile)
                flat = act.transpose(0, 1).reshape(k, -1)
                pool = flat if name not in top else torch.cat([top[name], flat], dim=1)
                top[name] = pool.topk(min(keep[name], pool.shape[1]), dim=1).values
    finally:
        recorder.close()
    return {name: _quantile_from_top(top[name], totals[name], quantile) for name in top}


def _below_float32(t: np.ndarray) -> np.ndarray:
    """Largest float32 <= each float64 threshold: then ``v > t32`` iff ``v > t`` for every float32 ``v``."""
    t32 = t.astype(np.float32)
    return np.where(t32 > t, np.nextafter(t32, np.float32(-np.inf)), t32)


def unit_concept_iou(model, inputs, masks, thresholds, batch_size, device) -> dict[str, np.ndarray]:
    """Pass 2: dataset-wide ``IoU_{k,c}``, ``{layer: (units, concepts) float64}``.

    ``masks`` is a bool array ``(N, concepts, H, W)`` aligned with ``inputs``.
    """
    recorder = _Recorder(model.unit_layers())
    size = tuple(masks.shape[-2:])
    inter: dict[str, torch.Tensor] = {}
    area_m: dict[str, torch.Tensor] = {}
    area_l = torch.zeros(masks.shape[1], dtype=torch.float64)
    try:
        for part, outputs in _run_batches(model, inputs, batch_size, device, recorder):
            labels = torch.from_numpy(np.ascontiguousarray(masks[part])).to(device)
            labels = labels.flatten(2).transpose(1, 2).float()                      # (B, H*W, C)
            area_l += labels.sum((0, 1)).double().cpu()
            for name, act in outputs.items():
                # channels-last makes CPU bilinear upsampling several times faster; values are the same
                up = F.interpolate(act.float().contiguous(memory_format=torch.channels_last), size=size,
                                   mode="bilinear", align_corners=False)
                seg = up.permute(0, 2, 3, 1).reshape(len(up), -1, up.shape[1])       # (B, H*W, K)
                thr = torch.as_tensor(_below_float32(thresholds[name]), device=seg.device)
                seg.sub_(thr).sign_().clamp_(min=0.0)                               # 1 where S_k > T_k, else 0
                # 0/1 products summed over one batch stay far below 2**24, exact in float32
                inter[name] = inter.get(name, 0) + torch.einsum("bpk,bpc->kc", seg, labels).double().cpu()
                area_m[name] = area_m.get(name, 0) + seg.sum((0, 1)).double().cpu()
    finally:
        recorder.close()
    out = {}
    for name in inter:
        union = area_m[name][:, None] + area_l[None, :] - inter[name]
        out[name] = torch.where(union > 0, inter[name] / union.clamp_min(1.0), 0.0).numpy()
    return out


@register("network_dissection")
class NetworkDissection(UnitLabeler):
    """Label every conv unit with the concept its top-activation regions overlap most (IoU), Bau et al. [21].

    Returns (:meth:`label_units`) a :class:`~nnxai.explanations.UnitConcepts` whose ``units`` are
    ``{layer, unit, concept, iou, score (= iou), threshold, detector, ious: {concept: iou}}``.
    """

    parameters = {
        "n_images": Int("test images dissected (a seeded sample, the one every method explains)", low=1,
                        at_most="test"),
        "quantile": Float("T_k is this quantile of unit k's activations, P(a_k > T_k) = 1 - quantile (the "
                          "paper: 0.995)", low=0.0, high=1.0, low_open=True, high_open=True),
        "iou_threshold": Float("a unit is a detector of its best concept when IoU_{k,c} exceeds this (the "
                               "paper: 0.04)", low=0.0, high=1.0, high_open=True),
        "batch_size": BATCH_SIZE,
    }
    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})
    needs_masks = True

    def _run(self, ctx):
        record = self.label_units(ctx.model, ctx)
        return record, record.meta["n_images"]      # seconds per dissected image, not per test image

    def label_units(self, model: nn.Module, ctx) -> UnitConcepts:
        if ctx.test.masks is None:
            raise ValueError(f"Network Dissection needs pixel-level concept masks; {ctx.dataset} has none")
        names = list(ctx.test.meta.get("mask_names") or ctx.info.mask_names)
        if len(names) != ctx.test.masks.shape[1]:
            raise ValueError(f"{ctx.test.masks.shape[1]} mask channels but {len(names)} mask names")
        keep = [i for i, n in enumerate(names) if n not in EXCLUDED_MASKS]
        concepts = [names[i] for i in keep]
        idx = explained_indices(len(ctx.test.x), self.params["n_images"], ctx.seed)
        inputs, masks = ctx.test.x[idx], ctx.test.masks[idx][:, keep]
        p = self.params
        was_training = model.training
        model.eval()
        try:
            thresholds = unit_thresholds(model, inputs, p["batch_size"], p["quantile"], ctx.device)
            ious = unit_concept_iou(model, inputs, masks, thresholds, p["batch_size"], ctx.device)
        finally:
            model.train(was_training)
        units = []
        for layer in model.unit_layers():
            for k, row in enumerate(ious[layer]):
                best = int(np.argmax(row))
                units.append({"layer": layer, "unit": k, "concept": concepts[best], "iou": float(row[best]),
                              "score": float(row[best]), "threshold": float(thresholds[layer][k]),
                              "detector": bool(row[best] > p["iou_threshold"]),
                              "ious": {c: float(v) for c, v in zip(concepts, row)}})
        meta = {"n_images": int(len(idx)), "layers": list(model.unit_layers()),
                "excluded_masks": [n for n in names if n in EXCLUDED_MASKS]}
        return UnitConcepts(units=units, concepts=concepts, meta=meta)
