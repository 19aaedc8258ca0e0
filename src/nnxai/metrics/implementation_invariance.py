"""``implementation_invariance``: equal maps for functionally equivalent networks, Sundararajan et al. [114].

Sundararajan, Taly & Yan [114] (Sec. 2.2) call two networks *functionally equivalent* "if their outputs
are equal for all inputs, despite having very different implementations", and ask that attributions be
*implementation invariant*: identical for such networks.  Gradients are, by the chain rule, and so is every
method built from them alone (IG, SmoothGrad); methods that replace gradients by discrete ones or by
layer-wise rules (DeepLIFT, LRP; [114] Sec. 2.2) need not be, since the chain rule does not
hold for them.

The metric rebuilds the trained network in the ways below (each a deep copy of a ConvNet or MLP of
:mod:`nnxai.models`: same class, same ``features``/``gap``/``classifier`` names, so CAM, Grad-CAM and the
layer-walking methods run on it), checks on the scored inputs that the outputs equal the model's (to
:data:`~.input_invariance.EQUIVALENCE_TOLERANCE`), explains the same inputs for the same classes with the
same method, and compares the maps as :func:`~.input_invariance.map_difference` does.  Random choices
come from a generator seeded with the context's seed.

``permute``
    The units of every hidden layer (channels of every conv layer) are permuted, and the next layer's
    input weights with them.  Every method here is invariant in exact arithmetic.
``split``
    Every hidden unit ``j`` becomes two copies with incoming weights and bias scaled by ``s₁, s₂ > 0`` and
    outgoing weights ``λ/s₁`` and ``(1 − λ)/s₂`` (``s ~ U(0.5, 2)``, ``λ ~ U(0.2, 0.8)`` per unit), exact
    because ``relu(s z) = s relu(z)`` and max-pooling commutes with positive scaling (sigmoid networks use
    ``s = 1``).  Gradients, DeepLIFT's multipliers ``Δy/Δz`` and LRP's ratios ``z_ij / z_j`` are all
    unchanged by positive scaling; LRP-ε changes only through ``ε`` (``z_j + ε`` becomes ``s z_j + ε``).
``redundant``
    Every hidden layer gets one more unit, a copy of a random unit, whose outgoing weights are zero: it
    computes but never contributes.
``bias_layer``
    After the last hidden layer, whose outputs ``h`` are ≥ 0 (ReLU or sigmoid units), an identity layer
    with a positive bias ``β`` (``U(0.5, 1.5)`` per unit) and a ReLU is inserted, and the classifier's bias
    becomes ``b − V β``: ``relu(h + β) = h + β`` for ``h ≥ 0``, so the function is unchanged.  Gradients
    and DeepLIFT pass through the new unit with multiplier 1.  LRP-ε hands the unit the relevance share of
    ``h + β`` and then gives ``h`` the fraction ``h / (h + β)`` of it, which cancels exactly (ε-LRP of a ReLU
    network is Gradient ⊙ Input as ε → 0, Ancona et al., ICLR 2018, Prop. 1, and so is invariant to all
    of these rebuilds up to O(ε)); LRP-αβ splits the classifier's contributions ``(h + β) v`` and its new
    bias into positive and negative parts that differ from those of ``h v``, so it is *not* invariant.
    CAM's map, read from the features before the classifier's bias, moves by the constant ``Σ_k w_k^c β_k``.
``pool_swap``
    (CNNs) Every activation followed by a max-pool is swapped with it: ``maxpool(σ(z)) = σ(maxpool(z))``
    for a non-decreasing ``σ``.  Gradients are unchanged; DeepLIFT is not, because the multiplier of the
    swapped ReLU compares the window maxima of the input and the reference, which may sit at different
    positions (and max-pooling passes DeepLIFT's multipliers by the gradient rule); DeconvNet is not
    either, as its backward ReLU ignores the forward sign, which now acts after the pool.

Methods that query only the network's outputs (``model_agnostic``: occlusion, prediction difference,
LIME, MAPLE, the Shapley samplers, L2X) are not re-run: the rebuilds leave every output equal (up to float
rounding, which :func:`check_equivalent` bounds), so these methods see the same numbers and are invariant
by construction; :meth:`ImplementationInvariance.why_not` says so.  Re-running them would only measure how
their sampling or fitting amplifies float rounding.

``implementation_invariance`` is the largest, over the transformations in ``transforms``, of the mean
normalised difference over the scored inputs (lower is better; float32 models leave ~1e-7 of rounding).
None of these rebuilds moves DeepLIFT on an MLP (no max-pooling); [114]'s own counter-example (appendix)
needs a hand-made pair of networks, not a rebuild of a trained one.
``implementation_invariance.<transform>`` gives each; ``implementation_invariance.agreement`` the fraction
of inputs whose maps agree within ``tolerance`` under every transformation.  ``pool_swap`` is skipped for
networks without max-pooling after an activation.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from nnxai.intervals import PerInput
from nnxai.metrics._robustness import N_INPUTS, TOLERANCE, scored_inputs
from nnxai.metrics.base import Metric, register_metric
from nnxai.metrics.input_invariance import check_equivalent, map_difference
from nnxai.metrics.rerun import attribute_as_explained
from nnxai.params import Choice, List

WEIGHTED = (nn.Linear, nn.Conv2d)
MONOTONE = (nn.ReLU, nn.Sigmoid)          # elementwise, non-decreasing; ≥ 0 outputs
TRANSFORMS = ("permute", "split", "redundant", "bias_layer", "pool_swap")


def _check_structure(model: nn.Module) -> list[str]:
    """Names of the weighted layers of ``model.features``, after checking the ConvNet/MLP layout."""
    features, classifier = getattr(model, "features", None), getattr(model, "classifier", None)
    if not isinstance(features, nn.Sequential) or not isinstance(classifier, nn.Linear):
        raise ValueError(f"implementation_invariance rebuilds networks with an nn.Sequential 'features' and a "
                         f"Linear 'classifier' (nnxai.models ConvNet, MLP); got {type(model).__name__}")
    for name, module in features.named_children():
        if not isinstance(module, WEIGHTED + MONOTONE + (nn.MaxPool2d,)):
            raise ValueError(f"implementation_invariance: layer {name!r} ({type(module).__name__}) of the features "
                             "is not a Linear, Conv2d, ReLU, Sigmoid or MaxPool2d")
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise ValueError(f"implementation_invariance: grouped convolution {name!r} is not supported")
    return [name for name, module in features.named_children() if isinstance(module, WEIGHTED)]


def _relu_network(model: nn.Module) -> bool:
    return not any(isinstance(m, nn.Sigmoid) for m in model.features)


def _like(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A fresh layer of ``layer``'s kind and hyperparameters holding ``weight`` and ``bias``."""
    factory = {"device": weight.device, "dtype": weight.dtype}
    if isinstance(layer, nn.Linear):
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, **factory)
    else:
        new = nn.Conv2d(weight.shape[1], weight.shape[0], layer.kernel_size, stride=layer.stride,
                        padding=layer.padding, dilation=layer.dilation, bias=bias is not None,
                        padding_mode=layer.padding_mode, **factory)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new.requires_grad_(layer.weight.requires_grad)


def _rebuild_units(producer: nn.Module, consumer: nn.Module, index: torch.Tensor, in_scale: torch.Tensor,
                   out_scale: torch.Tensor) -> tuple[nn.Module, nn.Module]:
    """New unit ``u`` of the producer = its unit ``index[u]`` scaled by ``in_scale[u]``; the consumer reads
    it with its weights of unit ``index[u]`` times ``out_scale[u]``."""
    w, v = producer.weight.detach(), consumer.weight.detach()
    index = index.to(w.device)
    in_scale, out_scale = in_scale.to(w), out_scale.to(v)
    bias = None if producer.bias is None else producer.bias.detach()[index] * in_scale
    new_producer = _like(producer, w[index] * in_scale.reshape((-1,) + (1,) * (w.dim() - 1)), bias)
    new_consumer = _like(consumer, v[:, index] * out_scale.reshape((1, -1) + (1,) * (v.dim() - 2)),
                         None if consumer.bias is None else consumer.bias.detach())
    return new_producer, new_consumer


def _unitwise(model: nn.Module, gen: torch.Generator, plan: Callable) -> nn.Module:
    """Apply ``plan(n_units, gen, relu) -> (index, in_scale, out_scale)`` to every hidden layer of a copy."""
    twin = copy.deepcopy(model)
    names = _check_structure(twin)
    relu = _relu_network(twin)
    for k, name in enumerate(names):
        last = k + 1 == len(names)
        producer = getattr(twin.features, name)
        consumer = twin.classifier if last else getattr(twin.features, names[k + 1])
        new_producer, new_consumer = _rebuild_units(producer, consumer, *plan(producer.weight.shape[0], gen, relu))
        setattr(twin.features, name, new_producer)
        if last:
            twin.classifier = new_consumer
        else:
            setattr(twin.features, names[k + 1], new_consumer)
    return twin


def _permute_plan(n, gen, relu):
    return torch.randperm(n, generator=gen), torch.ones(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64)


def _split_plan(n, gen, relu):
    scales = 0.5 + 1.5 * torch.rand(2, n, generator=gen, dtype=torch.float64) if relu else torch.ones(2, n,
                                                                                                        dtype=torch.float64)
    share = 0.2 + 0.6 * torch.rand(n, generator=gen, dtype=torch.float64)
    index = torch.cat([torch.arange(n), torch.arange(n)])
    return index, scales.flatten(), torch.cat([share / scales[0], (1 - share) / scales[1]])


def _redundant_plan(n, gen, relu):
    index = torch.cat([torch.arange(n), torch.randint(n, (1,), generator=gen)])
    ones = torch.ones(n + 1, dtype=torch.float64)
    return index, ones, torch.cat([torch.ones(n, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])


def bias_layer(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """Insert ``relu(identity · h + β)`` after the last hidden layer and take ``V β`` off the classifier's bias."""
    twin = copy.deepcopy(model)
    names = _check_structure(twin)
    children = list(twin.features.named_children())
    after = [m for n, m in children[[n for n, _ in children].index(names[-1]) + 1:] if not isinstance(m, nn.MaxPool2d)]
    if twin.classifier.bias is None:
        raise ValueError("bias_layer moves a bias into the classifier's; this classifier has none")
    if not after or not isinstance(after[-1], MONOTONE):
        raise ValueError("bias_layer needs the features to end with ReLU or sigmoid units (outputs >= 0)")
    last = getattr(twin.features, names[-1])
    n, w = last.weight.shape[0], last.weight
    beta = (0.5 + torch.rand(n, generator=gen, dtype=torch.float64)).to(w)
    eye = torch.eye(n, dtype=w.dtype, device=w.device)
    if isinstance(last, nn.Linear):
        identity = _like(last, eye, beta)
    else:                                                   # 1×1, no padding: an identity on every pixel
        identity = _like(nn.Conv2d(n, n, 1), eye[:, :, None, None], beta).requires_grad_(w.requires_grad)
    twin.features = nn.Sequential(OrderedDict(children + [("bias_shift", identity), ("bias_act", nn.ReLU())]))
    with torch.no_grad():
        twin.classifier.bias -= twin.classifier.weight @ beta
    return twin


def pool_swap(model: nn.Module, gen: torch.Generator) -> nn.Module | None:
    """Swap every (activation, max-pool) pair of the features; ``None`` when there is none."""
    twin = copy.deepcopy(model)
    _check_structure(twin)
    items = list(twin.features.named_children())
    swapped = False
    for i in range(len(items) - 1):
        if isinstance(items[i][1], MONOTONE) and isinstance(items[i + 1][1], nn.MaxPool2d):
            items[i], items[i + 1] = items[i + 1], items[i]
            swapped = True
    if not swapped:
        return None
    twin.features = nn.Sequential(OrderedDict(items))
    return twin


def equivalent_network(model: nn.Module, transform: str, seed: int) -> nn.Module | None:
    """The network ``transform`` rebuilds from ``model`` (a deep copy, eval mode), or ``None`` if it does not apply."""
    gen = torch.Generator().manual_seed(int(seed))
    if transform == "bias_layer":
        twin = bias_layer(model, gen)
    elif transform == "pool_swap":
        twin = pool_swap(model, gen)
    else:
        plan = {"permute": _permute_plan, "split": _split_plan, "redundant": _redundant_plan}[transform]
        twin = _unitwise(model, gen, plan)
    return None if twin is None else twin.eval()


@register_metric
class ImplementationInvariance(Metric):
    """Largest normalised change of the map over functionally equivalent rebuilds of the network [114]."""

    id = "implementation_invariance"
    reexplains = True
    higher_is_better = False
    kinds = frozenset({"attribution"})
    parameters = {
        "n_inputs": N_INPUTS,
        "transforms": List("rebuilds of the network into a functionally equivalent one ([114] Sec. 2.2) whose "
                           "maps are compared with the model's", item=Choice("a rebuild", TRANSFORMS), unique=True),
        "tolerance": TOLERANCE,
    }
    description = "largest mean normalised difference of the maps of functionally equivalent rebuilt networks"

    @classmethod
    def why_not(cls, method_cls, info):
        if getattr(method_cls, "model_agnostic", False):
            return ("invariant by construction: the method queries only the network's outputs, which every "
                    "rebuild leaves equal ([114] Sec. 2.2: attributions that depend on the function alone)")
        return super().why_not(method_cls, info)

    @classmethod
    def cell_why_not(cls, run, dataset, model, method):
        traits = run.model_traits(dataset, model) if hasattr(run, "model_traits") else {}
        if not traits.get("standard_layers", True):
            return (f"{model}'s network adds layers to the base ConvNet/MLP (an active method's design); the "
                    "rebuilds rewrite the base layout only")
        return None

    def __call__(self, record, ctx, method):
        inputs, targets = scored_inputs(record, ctx, self.params["n_inputs"])
        twins = {}
        for transform in self.params["transforms"]:
            twin = equivalent_network(ctx.model, transform, int(ctx.seed))
            if twin is not None:
                check_equivalent(ctx.model, twin, inputs, inputs)
                twins[transform] = twin
        first = attribute_as_explained(method, ctx, ctx.model, inputs, targets)
        out, agree = {}, torch.ones(len(inputs), dtype=torch.bool, device=inputs.device)
        for transform, twin in twins.items():
            mean, largest = map_difference(first, attribute_as_explained(method, ctx, twin, inputs, targets))
            out[f"{self.id}.{transform}"] = PerInput(mean)
            agree &= largest <= self.params["tolerance"]
        out[self.id] = float(max(out.values())) if out else float("nan")   # the worst transform's mean
        out[f"{self.id}.agreement"] = PerInput(agree)
        return out
