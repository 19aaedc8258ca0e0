"""A sigmoid MLP read as layers of boolean units, for the decompositional extractors KT [81] and M-of-N [82].

Both papers analyse a network whose inputs are boolean attributes and whose units are booleanised: a unit is a
threshold over the sum of its weighted boolean inputs.  :func:`read_network` turns the project's MLP
(``model.features``: Linear/Sigmoid pairs, ``model.classifier``: one logit per class) into that form:

* **the output unit.**  The two-class softmax is ``p(class 1) = sigmoid(z_1 - z_0)``, exactly one sigmoid unit
  whose weights and bias are the differences of the two logit rows; a softmax over more classes is not a
  sigmoid unit, so both extractors refuse data sets of more than two classes (:func:`why_not_boolean`).
* **boolean inputs.**  A column whose training values are all 0/1 (MONK's one-hot inputs) is its own boolean
  attribute, the literal ``x_j > 0.5``.  Any other column is binarised at its training **median** ``t_j``: the
  attribute is ``x_j > t_j``, and it stands for the mean training value above the median (``hi_j``) when true,
  below or at it (``lo_j``) when false.  The first layer then reads booleans exactly through the effective
  weights ``w_j (hi_j - lo_j)`` and bias ``b + sum_j w_j lo_j`` (an identity for 0/1 columns); on continuous
  data the extracted rules describe the network on these two representative values per input.
* **one-hot groups.**  Columns named ``attribute=value`` whose training rows hold exactly one 1 per attribute
  form a group (MONK's six attributes); the rewriting uses the constraint (one value per attribute) to drop
  impossible rules and redundant literals (:mod:`._kt_mofn_dnf`).  The unit analysis itself treats every column as an
  independent boolean attribute, as both papers do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nnxai.ops.feature_space import predict_classes, split_features


@dataclass
class BooleanNet:
    """The network as boolean layers and its training inputs as literals.

    ``layers[l] = (W, b)``: float64 weights ``(n_out, n_in)`` and biases of layer ``l`` read on boolean inputs
    (the first on the input attributes, the last the single output unit ``z_1 - z_0``).  ``thresholds[j]``:
    attribute ``j`` is ``x_j > thresholds[j]``.  ``states[l]``: the boolean inputs of layer ``l`` on the training
    split (``(n_train, n_in)``; layer 0: the attributes; layer ``l > 0``: the network's sigmoid activations of
    layer ``l - 1`` above 0.5), which the extractors use to rank rules by how many training inputs they cover.
    ``classes``: the network's classes on the training split.
    """

    layers: list[tuple[np.ndarray, np.ndarray]]
    thresholds: np.ndarray
    binary: np.ndarray
    names: list[str]
    groups: list[tuple[int, ...]]
    states: list[np.ndarray]
    classes: np.ndarray

    @property
    def literals(self) -> np.ndarray:
        """The boolean attributes of the training inputs ``(n_train, d)``."""
        return self.states[0]


def why_not_boolean(info) -> str | None:
    """Why the data set cannot be read as boolean attributes with one sigmoid output unit, or ``None``."""
    if int(info.n_classes) != 2:
        return (f"reads the output as one sigmoid unit (the two-class softmax is sigmoid(z1 - z0)); "
                f"{info.name} has {info.n_classes} classes")
    return None


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    """The Linear modules of an MLP in order, checking that a Sigmoid follows every hidden one."""
    modules = list(model.features.children()) if hasattr(model, "features") else []
    linears = [m for m in modules if isinstance(m, nn.Linear)]
    acts = [m for m in modules if not isinstance(m, nn.Linear)]
    if len(acts) != len(linears) or not all(isinstance(a, nn.Sigmoid) for a in acts) \
            or not isinstance(getattr(model, "classifier", None), nn.Linear):
        raise ValueError("KT / M-of-N read an MLP of Linear-Sigmoid layers and a Linear output layer")
    return [*linears, model.classifier]


def read_network(model: nn.Module, train) -> BooleanNet:
    """The network ``model`` on the training split ``train`` (a PreparedSplit) as a :class:`BooleanNet`."""
    linears = linear_layers(model)
    with torch.no_grad():
        raw = [(m.weight.detach().cpu().double().numpy().copy(), m.bias.detach().cpu().double().numpy().copy())
               for m in linears]
    w_out, b_out = raw[-1]
    if w_out.shape[0] != 2:
        raise ValueError(f"KT / M-of-N read a two-class output layer, got {w_out.shape[0]} outputs")
    raw[-1] = ((w_out[1] - w_out[0])[None, :], np.array([b_out[1] - b_out[0]]))
    x = split_features(train, "inputs")
    thresholds, lo, hi, binary = binarise(x)
    w1, b1 = raw[0]
    raw[0] = (w1 * (hi - lo)[None, :], b1 + w1 @ lo)
    names = list(train.meta.get("feature_names") or [f"x{j}" for j in range(x.shape[1])])
    states = [x > thresholds[None, :]]
    h = torch.as_tensor(x, dtype=torch.float32)
    with torch.no_grad():
        for lin in linears[:-1]:
            h = torch.sigmoid(nn.functional.linear(h, lin.weight.detach().cpu(), lin.bias.detach().cpu()))
            states.append(h.numpy() > 0.5)
    return BooleanNet(layers=raw, thresholds=thresholds, binary=binary, names=names,
                      groups=one_hot_groups(names, x), states=states, classes=predict_classes(model, train.x))


def binarise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per column: threshold, value when false, value when true, and whether the column is 0/1 already."""
    d = x.shape[1]
    thresholds, lo, hi = np.empty(d), np.empty(d), np.empty(d)
    binary = np.array([np.isin(x[:, j], (0.0, 1.0)).all() for j in range(d)], dtype=bool)
    for j in range(d):
        if binary[j]:
            thresholds[j], lo[j], hi[j] = 0.5, 0.0, 1.0
            continue
        t = float(np.median(x[:, j]))
        above, below = x[x[:, j] > t, j], x[x[:, j] <= t, j]
        thresholds[j] = t
        lo[j] = below.mean() if len(below) else t
        hi[j] = above.mean() if len(above) else lo[j]      # a constant column: no effect either way
    return thresholds, lo, hi, binary


def one_hot_groups(names: list[str], x: np.ndarray) -> list[tuple[int, ...]]:
    """Columns ``attr=value`` of one attribute whose training rows are one-hot (exactly one 1 per row)."""
    by_attribute: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        if "=" in name:
            by_attribute.setdefault(name.split("=")[0], []).append(j)
    groups = []
    for columns in by_attribute.values():
        block = x[:, columns]
        if len(columns) > 1 and np.isin(block, (0.0, 1.0)).all() and (block.sum(1) == 1).all():
            groups.append(tuple(columns))
    return groups
