"""Deconvnet projections of each filter's top-9 activations, Zeiler & Fergus, "Visualizing and understanding
convolutional networks", ECCV 2014 (2nd survey [14]; the survey's [72]).

The paper (Sec. 2.1, Fig. 1; Sec. 4, Fig. 2) for a feature map of a layer:

1. **Top activations**: over all images of the validation set and all spatial positions, the strongest
   activations of the map; Fig. 2 shows the top 9, each from a different image.  Here: each image's strongest
   position (max over ``(h, w)``), and the ``n_top`` (the paper: 9) images with the largest such maxima
   (ties by test position), over a seeded sample of ``n_images`` test inputs.
2. **Projection**: "to examine a given convnet activation, we set all other activations in the layer to zero
   and pass the feature maps as input to the attached deconvnet layer", which *unpools* with the switches
   (the positions of the maxima) recorded by the forward pass, *rectifies* the signal with a ReLU, and
   *filters* it with the transposed filters, layer by layer down to pixels.  Unpooling with switches and
   filtering with transposed filters are the gradients of max-pooling and convolution, so the projection is
   a backward pass from the activation, seeded with its value, in which every ReLU passes
   ``δ_in = max(δ_out, 0)`` instead of its gradient: the rule of the DeconvNet attribution method
   (:mod:`nnxai.methods.attribution.propagation.deconvnet`, Springenberg et al.'s Fig. 1 "deconvnet" row),
   here applied by a forward hook on every ``nn.ReLU`` that routes its output through a function with that
   backward.  Biases are not used, as in the paper.  One backward pass projects all top activations of a
   layer at once (the inputs of a batch do not interact in eval mode).
3. **Receptive-field crop**: Fig. 2 shows "the corresponding image patches" beside the projections.  The
   receptive field of a position is traced through the convolutions and poolings that the forward pass
   runs before the unit layer (:func:`~nnxai.methods.hidden_semantics._conv_units.receptive_box`); inputs
   and projections are cropped to it, zeros where it reaches past the image (what the convolutions' padding
   reads).  The projection is zero outside the receptive field, so the crop loses nothing.

Where we had to choose:

* Zeiler & Fergus visualise the output of a layer after pooling; a unit layer here is the activation map
  after the ReLU (``model.unit_layers()``), before pooling, so one pooling fewer lies between it and the
  pixels.
* Which filters: the paper shows "a random subset of feature maps"; ``n_filters`` per layer, a seeded
  random subset (all filters of a layer that has fewer).
* **Concept** (shapes' pixel masks, as Network Dissection [21] names them; ``evidence`` excluded): the
  concept whose mask holds the largest share of the projections' energy, ``|projection|`` summed over the
  colour channels, averaged over the top images: ``share_c = mean_n sum(E_n * M_{n,c}) / sum(E_n)``.  It
  names what the pixels that drive the activation show, the deconvnet's own reading, rather than where the
  unit fires (Network Dissection's IoU).  Ties (an image's shape, texture and colour masks coincide) go to
  the first concept in mask order; every share is kept in ``shares``.  A filter whose top activations are all
  zero (a dead filter) projects nothing and gets no concept.

Record (:class:`~nnxai.explanations.UnitImages`): ``images[i]`` is ``(2, n_top, C, S, S)``: the receptive-field
crops of the top inputs (``[0]``) and of their projections (``[1]``), each crop in the top-left
``crop_size`` corner of an ``S x S`` array (``S``: the largest receptive field of the record), zeros
elsewhere.  ``units[i]``: ``layer``, ``unit``, ``test_indices`` (test-split positions, strongest first),
``activations``, ``positions`` (``[row, col]`` in the layer's map), ``boxes`` (receptive fields in input
pixels, ``[top, left, bottom, right]``, ends exclusive), ``crop_size``, and ``concept``, ``concept_share``,
``shares`` where the data set has concept masks.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nnxai.explanations import UnitImages
from nnxai.methods.base import UnitLabeler, explained_indices
from nnxai.methods.hidden_semantics._conv_units import (StopForward, check_maps, conv_unit_layers, crop,
                                                        layer_outputs, receptive_box, receptive_size, trace_steps)
from nnxai.ops.cav import eval_mode
from nnxai.params import BATCH_SIZE, Int
from nnxai.registry import register

EXCLUDED_MASKS = ("evidence",)


class _DeconvReLU(torch.autograd.Function):
    """``relu(x)`` forward; the deconvnet's rectification ``max(δ_out, 0)`` backward [14]."""

    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0)


def _deconv_rule(_module, inputs, _output):
    return _DeconvReLU.apply(inputs[0])


def deconv_projection(model: nn.Module, layer: nn.Module, x: torch.Tensor, units: torch.Tensor,
                      rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Project, for each input ``x[b]``, the single activation ``(units[b], rows[b], cols[b])`` of ``layer``
    to pixel space with the deconvnet (all other activations of the layer zeroed), shaped like ``x``.

    The model's ReLUs must be ``nn.ReLU`` modules (not in place); ``model`` should be in eval mode."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if any(m.inplace for m in relus):
        raise ValueError("the deconvnet rule hooks nn.ReLU modules; in-place ReLUs cannot be hooked")
    captured: dict[str, torch.Tensor] = {}

    def capture(_module, _inputs, output):
        captured["maps"] = output
        raise StopForward

    handles = [m.register_forward_hook(_deconv_rule) for m in relus]   # first: the capture sees the rule's output
    handles.append(layer.register_forward_hook(capture))
    inputs = x.detach().clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            try:
                model(inputs)
            except StopForward:
                pass
            maps = captured["maps"]
            seed = torch.zeros_like(maps)
            batch = torch.arange(len(x))
            seed[batch, units, rows, cols] = maps.detach()[batch, units, rows, cols]
            (projection,) = torch.autograd.grad(maps, inputs, grad_outputs=seed)
    finally:
        for handle in handles:
            handle.remove()
    return projection.detach()


@register("deconv_receptive_field")
class DeconvReceptiveField(UnitLabeler):
    """Top-``n_top`` activating test inputs of a random subset of each conv layer's filters, with the deconvnet
    projection of each of those activations and their receptive-field crops (Zeiler & Fergus [14], Fig. 2)."""

    record_type = UnitImages
    parameters = {
        "n_images": Int("test images searched for each filter's top activations (a seeded sample of the test "
                        "split; all of a smaller split; the paper: the whole validation set)", low=1),
        "n_filters": Int("filters per conv layer, a seeded random subset (the paper shows \"a random subset of "
                         "feature maps\"); every filter of a layer that has fewer", low=1),
        "n_top": Int("top activating images per filter, each projected (the paper: 9)", low=1),
        "batch_size": BATCH_SIZE,
    }
    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})
    activations = frozenset({"relu"})

    @classmethod
    def check_run(cls, params, info, n_test):
        searched = min(params["n_images"], n_test)
        if params["n_top"] > searched:
            return f"n_top={params['n_top']} exceeds the {searched} test images searched (n_images, test split)"
        return None

    def _run(self, ctx):
        record = self.label_units(ctx.model, ctx)
        return record, record.meta["n_images"]

    def label_units(self, model: nn.Module, ctx) -> UnitImages:
        p = self.params
        owner = f"method {self.spec.id!r}"
        idx = explained_indices(len(ctx.test.x), p["n_images"], ctx.seed)
        if len(idx) < p["n_top"]:
            raise ValueError(f"{owner}: n_top={p['n_top']} but only {len(idx)} test images to search")
        inputs = ctx.test.x[idx]
        layers = conv_unit_layers(model, owner)
        concepts, masks = _concept_masks(ctx, idx)
        with eval_mode(model):
            peaks = _peaks(model, inputs, layers, p["batch_size"], ctx.device, owner)
            steps = {name: trace_steps(model, inputs[:1].to(ctx.device), module) for name, module in layers.items()}
            sizes = {name: receptive_size(s) for name, s in steps.items()}
            side = max(max(hw) for hw in sizes.values())
            units, images = [], []
            for li, (name, module) in enumerate(layers.items()):
                values, where, (h, w) = peaks[name]
                chosen = _chosen_filters(values.shape[1], p["n_filters"], ctx.seed, li)
                tops = [np.argsort(-values[:, k], kind="stable")[:p["n_top"]] for k in chosen]
                rows_top = np.concatenate(tops)
                unit_of = np.repeat(chosen, p["n_top"])
                flat = where[rows_top, unit_of]
                rows, cols = flat // w, flat % w
                projections = []
                for part in range(0, len(rows_top), p["batch_size"]):
                    s = slice(part, part + p["batch_size"])
                    projections.append(deconv_projection(
                        model, module, inputs[rows_top[s]].to(ctx.device), torch.as_tensor(unit_of[s]),
                        torch.as_tensor(rows[s]), torch.as_tensor(cols[s])).cpu())
                projection = torch.cat(projections)
                boxes = [receptive_box(steps[name], int(r), int(c)) for r, c in zip(rows, cols)]
                in_crops, proj_crops = crop(inputs[rows_top], boxes), crop(projection, boxes)
                for j, k in enumerate(chosen):
                    s = slice(j * p["n_top"], (j + 1) * p["n_top"])
                    unit = {"layer": name, "unit": int(k), "test_indices": [int(i) for i in idx[rows_top[s]]],
                            "activations": [float(v) for v in values[rows_top[s], k]],
                            "positions": [[int(r), int(c)] for r, c in zip(rows[s], cols[s])],
                            "boxes": boxes[s], "crop_size": list(sizes[name])}
                    if masks is not None:
                        unit.update(_concept_of(projection[s], masks[rows_top[s]], concepts))
                    units.append(unit)
                    images.append(_pack(in_crops[s], proj_crops[s], side))
        meta = {"n_images": int(len(idx)), "layers": list(layers), "crop_side": int(side),
                "receptive_fields": {name: list(hw) for name, hw in sizes.items()},
                "excluded_masks": list(EXCLUDED_MASKS) if masks is not None else []}
        return UnitImages(units=units, concepts=concepts, images=np.stack(images), meta=meta)


def _peaks(model, inputs, layers, batch_size, device, owner):
    """Per layer: each image's maximum over positions per filter ``(N, K)``, its flat position ``(N, K)`` and
    the map size ``(h, w)``."""
    values: dict[str, list] = {name: [] for name in layers}
    where: dict[str, list] = {name: [] for name in layers}
    size: dict[str, tuple[int, int]] = {}
    for start in range(0, len(inputs), batch_size):
        outputs = layer_outputs(model, inputs[start:start + batch_size].to(device), layers)
        for name, maps in outputs.items():
            check_maps(name, maps, owner)
            size[name] = tuple(maps.shape[-2:])
            best = maps.flatten(2).max(2)          # the first maximum of a tie: deterministic
            values[name].append(best.values.cpu())
            where[name].append(best.indices.cpu())
    return {name: (torch.cat(values[name]).double().numpy(), torch.cat(where[name]).numpy(), size[name])
            for name in layers}


def _chosen_filters(n_units: int, n_filters: int, seed: int, layer_index: int) -> np.ndarray:
    """A seeded random subset of ``n_filters`` of the layer's filters, ascending (all of them when fewer)."""
    if n_filters >= n_units:
        return np.arange(n_units)
    rng = np.random.default_rng([seed, layer_index])
    return np.sort(rng.choice(n_units, size=n_filters, replace=False))


def _concept_masks(ctx, idx):
    """The concept names and masks ``(N, concepts, H, W)`` of the searched images, or ``([], None)``."""
    if ctx.test.masks is None:
        return [], None
    names = list(ctx.test.meta.get("mask_names") or ctx.info.mask_names)
    if len(names) != ctx.test.masks.shape[1]:
        raise ValueError(f"{ctx.test.masks.shape[1]} mask channels but {len(names)} mask names")
    keep = [i for i, n in enumerate(names) if n not in EXCLUDED_MASKS]
    return [names[i] for i in keep], torch.from_numpy(np.ascontiguousarray(ctx.test.masks[idx][:, keep]))


def _concept_of(projection: torch.Tensor, masks: torch.Tensor, concepts: list[str]) -> dict:
    """The concept holding the largest mean share of the projections' energy (see the module docstring)."""
    energy = projection.abs().sum(1).double()                           # (n, H, W)
    total = energy.sum((1, 2))
    alive = total > 0
    if not bool(alive.any()):
        return {}
    inside = torch.einsum("nhw,nchw->nc", energy, masks.double())       # (n, concepts)
    shares = (inside[alive] / total[alive, None]).mean(0).numpy()
    best = int(np.argmax(shares))
    return {"concept": concepts[best], "concept_share": float(shares[best]),
            "shares": {c: float(v) for c, v in zip(concepts, shares)}}


def _pack(inputs: torch.Tensor, projections: torch.Tensor, side: int) -> np.ndarray:
    """``(2, n_top, C, side, side)``: the crops in the top-left corner, zeros elsewhere."""
    n, c, h, w = inputs.shape
    out = np.zeros((2, n, c, side, side), dtype=np.float32)
    out[0, :, :, :h, :w] = inputs.numpy()
    out[1, :, :, :h, :w] = projections.numpy()
    return out
