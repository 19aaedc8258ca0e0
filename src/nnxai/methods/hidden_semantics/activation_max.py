"""Activation maximisation with every regulariser of the survey (Sec. III-B-1): one synthesised image per
(unit or class, regulariser).

The survey's frame (after Erhan et al. [93]): ``x* = argmax_x act(x; θ) - λ Ω(x)``.  The targets are every
class score (before the softmax, Simonyan et al. [71]) and the ``units_per_layer`` channels of each unit layer
(``model.unit_layers()``, or the ``layers`` named) that respond most to real inputs (largest mean over the
reference images of the channel's spatial maximum).  Each regulariser of ``regularisers`` gives one image per
target:

=================  ====================================================================================
``none``           Erhan et al. [93]: plain gradient ascent under their only constraint, ``||x - μ|| <= ρ``
                   (ρ: the mean distance of real inputs to their mean μ; the paper fixes ``||x|| = ρ``).
``l2``             Simonyan et al. [71]: ``Ω(x) = ||x - μ||²`` (their zero image in mean-subtracted space).
``blur``           Wang et al. [94]: alternate Gaussian blurring and Richardson-Lucy deblurring every
                   ``every`` steps, the blur width decaying from ``sigma_start`` to ``sigma_end``.
``total_variation`` Mahendran & Vedaldi [95]: ``Ω = TV^β``, the survey's formula.
``yosinski``       Yosinski et al. [96]: after each step, L2 decay, a Gaussian blur every few steps and the
                   clipping of pixels of small norm / small contribution.
``generator``      Nguyen et al. [97]: ``x = G(h)``, the code ``h`` optimised, with ``G`` fitted here to invert
                   the network's deepest unit layer on the train split (:mod:`._activation_max_generator`:
                   the paper's up-convolutional network, or its closed-form linear counterpart).
``robust``         Olah et al. [98]: a colour-decorrelated Fourier parameterisation with 1/f scaling, and
                   random jitter, scale and rotation at every step.
=================  ====================================================================================

Shared choices, so that the regulariser is the only difference between the columns of the grid: every variant
runs ``steps`` steps of normalised gradient ascent, ``q ← q + η_k g / mean|g|``, ``η_k`` decaying linearly from
``lr`` (a fraction of the parameters' range) to 0 (Wang et al.'s [94] and Nguyen et al.'s [97] step rule,
with Nguyen's decay; Erhan, Simonyan, Mahendran and Yosinski take plain gradient steps, Olah Adam, whose
per-coordinate steps, projected onto Erhan's ball, drift to the box's corner direction instead of the ball's
maximiser: the planted-unit test found it), the objective is each target's activation divided by its standard
deviation over real inputs (so one weight ``λ`` suits every unit), the penalties are divided by what a real image scores (``Ω_L2`` by the
mean pixel variance, ``Ω_TV`` by the mean ``TV^β`` of real inputs: a real image costs ``λ``), the pixel-space
variants start at ``μ + init_std · (high - low) · ε`` and are clipped to the data's input range after every
step, and the other two map into that range by a sigmoid, so every image is a valid input
(``meta["input_range"]``).  The regulariser modules' docstrings give each paper's equation and the
choices made against it.

On a data set with a concept table (``shapes``) the images are read by concept probes trained on the real
train images (:mod:`._activation_max_probe`, independent of the network): each unit's ``concept`` is the
concept its image shows most above its base rate, and every image's readings are kept in ``probe`` (the
metrics check them against the data generator's labelling rule and the unit's responses to real inputs).

Record (:class:`~nnxai.explanations.UnitImages`): ``images[i]`` ``(C, H, W)`` belongs to ``units[i]`` =
``{"layer", "unit", "regulariser", "activation" (the layer's output, spatial mean, at the image; the logit
for a class), "objective" (the pre-activation optimised), "reference_max" (the largest activation over the
reference inputs), "class_name" (classes), "concept", "concept_gain", "probe" {concept: p} (with probes)}``.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from nnxai.explanations import UnitImages
from nnxai.methods.base import UnitLabeler
from nnxai.methods.hidden_semantics import _activation_max_engine as engine
from nnxai.methods.hidden_semantics import _activation_max_probe as probe
from nnxai.methods.hidden_semantics import _activation_max_regularisers as reg
from nnxai.methods.hidden_semantics._activation_max_generator import code_bounds, train_generator
from nnxai.params import Block, Choice, Float, Int, List, OneOf, Str
from nnxai.registry import register

REGULARISERS = engine.REGULARISERS
LOGITS = engine.LOGITS


def _deepest_layer_encoder(model: nn.Module):
    """``x -> `` the output of the deepest unit layer (the generator's code, as fc6 for [97])."""
    name = list(model.unit_layers())[-1]

    def encode(x):
        with engine.UnitRecorder(model, [name]) as rec:
            model(x)
            return rec.post[name]
    return encode, name


@register("activation_max")
class ActivationMax(UnitLabeler):
    """Synthesise, for each class and chosen unit, the input that maximises it under each regulariser."""

    record_type = UnitImages
    parameters = {
        "regularisers": List("the image priors, one image each per target: none [93], l2 [71], blur [94] "
                             "(blur/deblur), total_variation [95], yosinski [96], generator [97], robust [98]",
                             Choice("a regulariser", REGULARISERS), unique=True),
        "layers": OneOf("unit layers whose channels are visualised: all (every key of model.unit_layers()) or "
                        "a list of names", Choice("every unit layer", ("all",)), List("layer names", Str("a layer"))),
        "units_per_layer": Int("channels visualised per layer: those with the largest mean spatial-max "
                               "activation over the reference inputs", low=0),
        "steps": Int("gradient steps per image", low=1),
        "lr": Float("first step η_0 of the normalised gradient ascent, decaying linearly to 0: the mean step "
                    "per parameter as a fraction of its range (pixels: the input range; the generator's code: the "
                    "mean width of its channels' bounds; Fourier coefficients: absolute, as Lucid's)",
                    low=0.0, low_open=True),
        "init_std": Float("start noise: pixels μ + init_std · range · N(0,1); Fourier coefficients "
                          "init_std · N(0,1) (Lucid: 0.01)", low=0.0),
        "n_train": Int("train inputs (a seeded sample) the priors learn from: μ, ρ, the penalties' units, the "
                       "colour covariance, the units' scales, the generator and the concept probes",
                       low=2, at_most="train"),
        "l2": Block("Simonyan et al. [71]", {"weight": Float("λ of Ω_L2 (a real image's deviation costs λ)",
                                                             low=0.0)}),
        "total_variation": Block("Mahendran & Vedaldi [95]", {
            "weight": Float("λ of Ω_TV (a real image's TV^β costs λ)", low=0.0),
            "beta": Float("β of TV^β (the paper: 2)", low=0.0, low_open=True)}),
        "blur": Block("Wang et al. [94]", {
            "sigma_start": Float("Gaussian width of the first blur, px (their code: 1.2 at 224 px)", low=0.0),
            "sigma_end": Float("smallest width, px (their code: 0.5)", low=0.0),
            "decay": Float("width factor per cycle (their code: 0.99)", low=0.0, high=1.0),
            "every": Int("steps per blur/deblur cycle (their code: 10)", low=1),
            "deblur_ratio": Float("deblur kernel width / blur width (their code: 0.8)", low=0.0, low_open=True),
            "deblur_iterations": Int("Richardson-Lucy iterations (MATLAB deconvlucy: 10)", low=0)}),
        "yosinski": Block("Yosinski et al. [96]", {
            "decay": Float("θ_decay: L2 decay of the mean-subtracted image per step", low=0.0, high=1.0),
            "blur_sigma": Float("θ_b_width: Gaussian width, px (0: no blur)", low=0.0),
            "blur_every": Int("θ_b_every: blur every this many steps (0: never)", low=0),
            "norm_percentile": Float("θ_n_pct: clip pixels whose norm is below this percentile", low=0.0,
                                     high=100.0),
            "contribution_percentile": Float("θ_c_pct: clip pixels whose |x ∘ ∇a| is below this percentile",
                                             low=0.0, high=100.0)}),
        "generator": Block("Nguyen et al. [97]", {
            "kind": Choice("upconv: the paper's up-convolutional network, trained by Adam; linear: the closed-form "
                           "least-squares inversion of the code (see _activation_max_generator)", ("upconv", "linear")),
            "width": Int("upconv: channels of the last hidden layer (the first has twice as many)", low=1),
            "epochs": Int("upconv: training passes over the n_train images", low=1),
            "batch_size": Int("images per training step (and per encoding batch)", low=1),
            "lr": Float("upconv: Adam step size of the training", low=0.0, low_open=True),
            "feature_weight": Float("upconv: λ_feat of the feature loss ||E(G(h)) - h||² (Dosovitskiy & Brox)",
                                    low=0.0),
            "code_decay": Float("the code is multiplied by this after each step (their code: 0.99)", low=0.0,
                                high=1.0),
            "code_std_bound": Float("upper bound of each code channel: mean + this many std (their code: 3)",
                                    low=0.0)}),
        "robust": Block("Olah et al. [98]", {
            "decay_power": Float("1/f^decay_power scaling of the spectrum (Lucid: 1)", low=0.0),
            "pad": Int("padding before the transformations, px (Lucid: 12 at 224 px)", low=0),
            "jitter": Int("largest shift, px (Lucid: 8 then 4 at 224 px)", low=0),
            "scales": List("scale factors drawn from", Float("a scale", low=0.0, low_open=True)),
            "angles": List("rotation angles drawn from, degrees", Float("an angle"))}),
        "probe": Block("concept probes (data sets with a concept table)", {
            "bins": Int("radial and angular cells of the spectrum features", low=1),
            "l2": Float("L2 strength of each logistic regression (C = 1 / l2)", low=0.0, low_open=True)}),
    }
    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})
    trains = True

    # -- fitting: everything learnt from the train split -------------------------------------------------
    def _fit(self, model: nn.Module, train) -> None:
        p = self.params
        x_all = train.x
        gen = torch.Generator().manual_seed(self.seed)
        idx = torch.randperm(len(x_all), generator=gen)[:min(p["n_train"], len(x_all))].sort().values
        ref = x_all[idx].float()
        self.reference_index_ = idx.numpy()
        low, high = float(x_all.min()), float(x_all.max())
        if not high > low:
            raise ValueError(f"the train inputs are constant ({low}); there is no input range to search")
        mean = ref.mean(0, keepdim=True)
        c = ref.shape[1]
        prior = engine.Prior(
            low=low, high=high, mean=mean, radius=engine.mean_radius(ref, mean),
            variance=float(ref.var(0).mean()) or 1.0,
            tv_real=float(reg.total_variation(ref, p["total_variation"]["beta"]).mean()) or 1.0,
            colour=reg.colour_sqrt(ref.permute(0, 2, 3, 1).reshape(-1, c).numpy()))
        was_training = model.training
        model.eval()
        try:
            device = next(model.parameters()).device
            self.stats_ = engine.layer_statistics(model, ref.to(device))
            self.generator_info_ = None
            if "generator" in p["regularisers"]:
                prior = self._fit_generator(model, ref.to(device), prior)
        finally:
            model.train(was_training)
        self.prior_ = prior
        self.probes_ = None
        concepts = getattr(train, "concepts", None)
        if concepts is not None and self.info_ is not None and getattr(self.info_, "concepts", ()):
            table = np.asarray(concepts)[self.reference_index_]
            if probe.binary_columns(table, self.info_.concepts):
                pr = p["probe"]
                self.probes_ = probe.ConceptProbes(pr["bins"], pr["l2"]).fit(ref.numpy(), table,
                                                                              list(self.info_.concepts))

    def _fit_generator(self, model, ref, prior):
        g = self.params["generator"]
        encode, layer = _deepest_layer_encoder(model)
        gen, info = train_generator(encode, ref, g["kind"], g["width"], g["epochs"], g["batch_size"], g["lr"],
                                    g["feature_weight"], prior.low, prior.high, self.seed)
        codes = info.pop("codes")
        lower, upper = code_bounds(codes, g["code_std_bound"])
        per_channel = codes.transpose(0, 1).reshape(codes.shape[1], -1)
        prior.generator = gen
        prior.code_mean = per_channel.mean(1).view(1, -1, 1, 1).expand(1, *codes.shape[1:]).cpu()
        prior.code_std = per_channel.std(1).view(1, -1, 1, 1).expand(1, *codes.shape[1:]).cpu()
        prior.code_lower, prior.code_upper = lower.cpu(), upper.cpu()
        with torch.no_grad():
            recon = torch.cat([gen(h) for h in codes.split(256)])
        info.update({"code_layer": layer, "reconstruction_mse": float((recon - ref).pow(2).mean()),
                     "n_train": int(len(ref))})
        self.generator_info_ = info
        return prior

    # -- explaining ----------------------------------------------------------------------------------------
    def _targets(self, model: nn.Module, ctx) -> list[engine.Target]:
        layers = engine.resolve_layers(model, self.params["layers"], f"{ctx.dataset}/{ctx.model_id}")
        n_classes = self.stats_[LOGITS]["post"].shape[1]
        targets = [engine.Target(LOGITS, k) for k in range(n_classes)]
        k = self.params["units_per_layer"]
        for layer in layers:
            peak = self.stats_[layer]["peak"].double().mean(0)
            if k > len(peak):
                raise ValueError(f"activation_max: units_per_layer {k} but layer {layer!r} of "
                                 f"{ctx.dataset}/{ctx.model_id} has {len(peak)} channels")
            order = sorted(range(len(peak)), key=lambda u: (-float(peak[u]), u))
            targets += [engine.Target(layer, u) for u in sorted(order[:k])]
        widths = {name: s["post"].shape[1] for name, s in self.stats_.items()}
        engine.check_targets(targets, widths, f"{ctx.dataset}/{ctx.model_id}")
        return targets

    def _run(self, ctx):
        record = self.label_units(ctx.model, ctx)
        return record, len(record.units)

    def label_units(self, model: nn.Module, ctx) -> UnitImages:
        self.check_fitted(model)
        p = self.params
        targets = self._targets(model, ctx)
        device = next(model.parameters()).device
        scales = torch.stack([engine.finite_scale(self.stats_[t.layer]["pre"])[t.unit] for t in targets])
        was_training = model.training
        model.eval()
        images, timing = {}, {}
        try:
            for r, name in enumerate(p["regularisers"]):
                start = time.perf_counter()
                images[name] = engine.synthesise(model, targets, scales, name, self.prior_, p,
                                                 self.seed * 1000 + r, device)
                timing[name] = time.perf_counter() - start
            with torch.no_grad():
                values = {name: engine.unit_values(model, img, targets) for name, img in images.items()}
        finally:
            model.train(was_training)
        self.seconds_per_regulariser_ = timing          # measured, so kept out of the (reproducible) record
        return self._record(ctx, targets, images, values)

    def _record(self, ctx, targets, images, values) -> UnitImages:
        class_names = list((ctx.test.meta or {}).get("class_names") or getattr(ctx.info, "class_names", None) or [])
        mask_names = list(ctx.train.meta.get("mask_names") or getattr(ctx.info, "mask_names", ()) or ())
        units, arrays = [], []
        readings = names = prior = None
        for name in self.params["regularisers"]:
            img = images[name].cpu()
            if self.probes_ is not None:
                names, readings, prior = probe.concept_readings(self.probes_.predict_proba(img.numpy()),
                                                                self.probes_.names_, self.probes_.prior_,
                                                                mask_names)
            objective, activation = (v.cpu() for v in values[name])
            for i, t in enumerate(targets):
                unit = {"layer": t.layer, "unit": int(t.unit), "regulariser": name,
                        "activation": engine.safe_float(activation[i]), "objective": engine.safe_float(objective[i]),
                        "reference_max": engine.safe_float(self.stats_[t.layer]["post"][:, t.unit].max())}
                if t.layer == LOGITS:
                    unit["class_name"] = class_names[t.unit] if t.unit < len(class_names) else str(t.unit)
                if readings is not None:
                    unit["probe"] = {c: float(v) for c, v in zip(names, readings[i])}
                    if t.layer != LOGITS:
                        unit["concept"], unit["concept_gain"] = probe.named_concept(readings[i], prior, names)
                units.append(unit)
                arrays.append(img[i].numpy())
        meta = {"input_range": [self.prior_.low, self.prior_.high], "regularisers": list(self.params["regularisers"]),
                "layers": sorted({t.layer for t in targets} - {LOGITS}, key=list(ctx.model.unit_layers()).index),
                "n_train": int(len(self.reference_index_)), "norm_radius": self.prior_.radius}
        if self.generator_info_ is not None:     # its training time is in the method's seconds, not here
            meta["generator"] = {k: v for k, v in self.generator_info_.items() if k != "seconds"}
        if self.probes_ is not None:
            acc = self.probes_.balanced_accuracy(ctx.test.x.numpy(), np.asarray(ctx.test.concepts)) \
                if getattr(ctx.test, "concepts", None) is not None else {}
            meta["probe"] = {"concepts": list(names or []), "prior": {c: float(v) for c, v in zip(names, prior)},
                             "test_balanced_accuracy": acc}
        return UnitImages(units=units, concepts=list(names or []), images=np.stack(arrays), meta=meta)
