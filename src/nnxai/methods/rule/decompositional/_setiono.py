"""Penalised training and pruning of a sigmoid MLP: step 1 of NeuroRule [83] and of NeuroLinear [84].

Setiono & Liu ("Understanding neural networks via rule extraction", IJCAI 1995, Sec. 2; "NeuroLinear: from
neural networks to oblique decision rules", Neurocomputing 17, 1997, Sec. 2.1; the pruning algorithm is
Setiono's N2PFA, "A penalty-function approach for pruning feedforward neural networks", Neural Computation
9, 1997) train with the cross-entropy plus the penalty

    P(w) = eps1 * sum_w beta w^2 / (1 + beta w^2) + eps2 * sum_w w^2,                     (penalty)

whose first term drives unneeded weights to zero and whose second keeps the others small, and prune:

1. train until the network meets the required accuracy, a pattern counting as correct when every output is
   within ``eta1`` of its 0/1 target (``|S_pc - t_pc| <= eta1``);
2. remove every input-to-hidden weight with ``max_p |v_pm w_ml| <= 4 eta2`` and every hidden-to-output
   weight with ``|v_pm| <= 4 eta2`` (``eta1 + eta2 < 0.5``: each such removal alone changes no output by
   more than ``eta2``, so no correct pattern becomes wrong);
3. if none qualifies, remove the weight with the smallest ``max_p |v_pm w_ml|``;
4. retrain; if the accuracy falls below the required level, restore the previous network and stop,
   else go to 2.

Here (choices, documented once):

* **The bound of step 2, for any depth and for sigmoid units.**  The paper's ``4 eta2`` is the bound of the
  change of an output, ``(1/4) |v w|`` (slope of tanh at most 1, of the output sigmoid at most 1/4), for
  binary inputs.  :func:`removal_bounds` computes the same bound for our networks: removing a weight ``w``
  from unit (or input) ``i`` to unit ``j`` changes ``j``'s net input by at most ``|w| max_p |a_i|`` (the
  largest magnitude of the source over the training patterns; 1 for binary inputs), every sigmoid unit on
  the way to the outputs has slope at most 1/4, and a change ``dz`` of the softmax's logits moves any class
  probability by at most ``(1/4) max_d |dz_c - dz_d|`` (so differences of the output weights of two classes
  count).  The result, ``omega(w) = (1/4) * max_{c,d} L_j^{cd} * |w| * max_p |a_i|`` with ``L_j^{cd}`` the
  sum over paths from ``j`` to the logits of the products of ``|weights|`` and slopes, is an upper bound
  (not an estimate: every slope is bounded everywhere) of the change of any class probability on the
  training patterns; a weight is removed when ``omega <= eta2``.  With one tanh
  hidden layer and sigmoid outputs it is the paper's ``|v_pm w_ml| / 4 <= eta2``.
* **Targets.**  The method explains the given network, which it must not change: it prunes a copy, trained
  on the training inputs labelled with the given network's classes (the paper trains from the data's labels
  because it builds the network itself).
* **Outputs.**  Our networks end in a softmax over the logits (the paper: one sigmoid per class); the
  cross-entropy is summed over the patterns as in the paper, and ``S_pc`` above are the softmax outputs.
* **Optimiser.**  The paper minimises with BFGS; here L-BFGS (scipy's L-BFGS-B, no bounds), at most
  ``iterations`` iterations per (re)training, full batch, float64, over the connections still present, with
  the gradient written out (:func:`loss_and_grad`).  Biases are not connections: they are neither penalised
  nor removed.
* **Several weights failing together.**  Step 2 removes all qualifying weights at once; their bounds hold
  one by one, so together they may break the accuracy.  Then the single weight of smallest bound is tried
  (step 3) before pruning stops.
* **Dead units.**  A hidden unit left without outgoing connections is removed with its incoming ones; one
  left without incoming connections is a constant ``sigmoid(b)``, folded into the next layer's biases.
* **Threads.**  The matrices are tiny: BLAS runs on one thread while pruning (two threads on two busy
  cores made every L-BFGS step ten times slower).
* **Rows.**  At most ``max_rows`` training rows (a seeded subsample of a larger split) are used, so that the
  retraining fits the budget on tables of thousands of rows (the papers' sets had hundreds).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import optimize, special
from threadpoolctl import threadpool_limits
from torch import nn

from nnxai.ops.feature_space import predict_classes
from nnxai.params import Float, Int, ParamError

#: The pruning parameters, declared once for NeuroRule and NeuroLinear.
PRUNING_PARAMETERS = {
    "eps1": Float("weight of the term sum beta w^2 / (1 + beta w^2) of the penalty (epsilon_1 of [83])", low=0.0),
    "eps2": Float("weight of the weight decay sum w^2 of the penalty (epsilon_2 of [83])", low=0.0),
    "beta": Float("beta of the penalty's first term (the scale below which weights count as unneeded)",
                  low=0.0, low_open=True),
    "eta1": Float("a training pattern is correctly classified when every output is within eta1 of its 0/1 "
                  "target (eta_1 of [83]; eta1 + eta2 < 0.5)", low=0.0, high=0.5, low_open=True, high_open=True),
    "eta2": Float("a weight is removed when its removal alone can change no class probability by more than "
                  "eta2 (eta_2 of [83])", low=0.0, high=0.5, low_open=True, high_open=True),
    "min_accuracy": Float("required accuracy on the training rows (labelled by the given network): pruning "
                          "stops before it would fall below, and the discretisation keeps it", low=0.0,
                          high=1.0, low_open=True),
    "iterations": Int("L-BFGS iterations per penalised (re)training (the paper trains with BFGS)", low=1),
    "max_rows": Int("training rows used (a seeded subsample of a larger train split)", low=1),
}


def check_etas(owner: str, params: dict) -> None:
    """eta1 + eta2 < 0.5 ([83]: a removal within eta2 must not flip a pattern classified within eta1)."""
    if params["eta1"] + params["eta2"] >= 0.5:
        raise ParamError(f"{owner}: eta1 + eta2 must be < 0.5 (a removal must not flip a correctly classified "
                         f"pattern), got {params['eta1']} + {params['eta2']}")


@dataclass
class Net:
    """A sigmoid MLP as tensors: ``weights[l]`` (out, in), ``biases[l]``, ``masks[l]`` (1: the connection is
    there); layers ``0 .. L-2`` are hidden (sigmoid), ``L-1`` gives the logits (softmax)."""

    weights: list
    biases: list
    masks: list
    history: list = field(default_factory=list)

    @classmethod
    def from_model(cls, model: nn.Module) -> "Net":
        """A float64 copy of an :class:`~nnxai.models.networks.MLP` with sigmoid units (the model is read only)."""
        features = getattr(model, "features", None)
        classifier = getattr(model, "classifier", None)
        if not isinstance(features, nn.Sequential) or not isinstance(classifier, nn.Linear):
            raise ValueError("needs an MLP (model.features: Linear/Sigmoid layers, model.classifier: Linear)")
        modules = list(features)
        linears = [m for m in modules if isinstance(m, nn.Linear)] + [classifier]
        acts = [m for m in modules if not isinstance(m, nn.Linear)]
        if not all(isinstance(a, nn.Sigmoid) for a in acts) or len(acts) != len(linears) - 1 or not acts:
            raise ValueError("needs an MLP whose hidden layers are Linear followed by Sigmoid")
        with torch.no_grad():
            weights = [m.weight.detach().to("cpu", torch.float64).clone() for m in linears]
            biases = [m.bias.detach().to("cpu", torch.float64).clone() for m in linears]
        return cls(weights, biases, [torch.ones_like(w) for w in weights])

    def copy(self) -> "Net":
        return Net([w.clone() for w in self.weights], [b.clone() for b in self.biases],
                   [m.clone() for m in self.masks], list(self.history))

    @property
    def n_hidden_layers(self) -> int:
        return len(self.weights) - 1

    def hidden(self, x: torch.Tensor) -> list:
        """Activations of every hidden layer."""
        out, a = [], x
        for w, b, m in zip(self.weights[:-1], self.biases[:-1], self.masks[:-1]):
            a = torch.sigmoid(a @ (w * m).T + b)
            out.append(a)
        return out

    def logits_from(self, first: torch.Tensor) -> torch.Tensor:
        """Logits given the first hidden layer's activations (exact or discretised): the rest of the network."""
        a = first
        for w, b, m in zip(self.weights[1:-1], self.biases[1:-1], self.masks[1:-1]):
            a = torch.sigmoid(a @ (w * m).T + b)
        return a @ (self.weights[-1] * self.masks[-1]).T + self.biases[-1]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from(self.hidden(x)[0])

    def n_connections(self) -> int:
        return int(sum(m.sum().item() for m in self.masks))

    def alive(self, layer: int) -> np.ndarray:
        """Indices of the units of hidden ``layer`` that have incoming and outgoing connections."""
        incoming = self.masks[layer].sum(1) > 0
        outgoing = self.masks[layer + 1].sum(0) > 0
        return torch.nonzero(incoming & outgoing).flatten().numpy()

    def to_json(self) -> dict:
        """The network's present connections ``[[unit, source, weight], ...]`` per layer, its biases and
        layer sizes: enough to rebuild it (:meth:`from_json`)."""
        return {"shapes": [list(w.shape) for w in self.weights],
                "connections": [[[int(i), int(j), float(w[i, j])] for i, j in torch.nonzero(m).tolist()]
                                for w, m in zip(self.weights, self.masks)],
                "biases": [b.tolist() for b in self.biases]}

    @classmethod
    def from_json(cls, doc: dict) -> "Net":
        weights = [torch.zeros(shape, dtype=torch.float64) for shape in doc["shapes"]]
        masks = [torch.zeros(shape, dtype=torch.float64) for shape in doc["shapes"]]
        for w, m, conns in zip(weights, masks, doc["connections"]):
            for i, j, value in conns:
                w[i, j], m[i, j] = value, 1.0
        return cls(weights, [torch.tensor(b, dtype=torch.float64) for b in doc["biases"]], masks)

    def summary(self) -> dict:
        return {"connections": self.n_connections(),
                "hidden_units": [int(len(self.alive(l))) for l in range(self.n_hidden_layers)],
                "inputs": [int(j) for j in torch.nonzero(self.masks[0].sum(0) > 0).flatten()]}


def penalty(net: Net, eps1: float, beta: float, eps2: float) -> torch.Tensor:
    """``P(w)`` of the module docstring, over the present connections."""
    total = torch.zeros((), dtype=torch.float64)
    for w, m in zip(net.weights, net.masks):
        sq = (w * m) ** 2
        total = total + eps1 * (beta * sq / (1 + beta * sq)).sum() + eps2 * sq.sum()
    return total


def accuracy(logits: torch.Tensor, targets: torch.Tensor, eta1: float) -> float:
    """Fraction of patterns whose every softmax output is within ``eta1`` of its 0/1 target."""
    error = (torch.softmax(logits, 1) - nn.functional.one_hot(targets, logits.shape[1]).to(logits.dtype)).abs()
    return float((error.max(1).values <= eta1).double().mean())


def loss_and_grad(weights: list, biases: list, masks: list, x: np.ndarray, onehot: np.ndarray,
                  p: dict) -> tuple[float, list, list]:
    """The summed cross-entropy plus the penalty, and its gradient (backpropagation written out in numpy:
    the retraining evaluates it thousands of times, where autograd's per-operation cost would dominate)."""
    acts = [x]
    for w, b in zip(weights[:-1], biases[:-1]):
        acts.append(special.expit(acts[-1] @ w.T + b))
    logits = acts[-1] @ weights[-1].T + biases[-1]
    log_s = logits - special.logsumexp(logits, axis=1, keepdims=True)
    loss = -float((onehot * log_s).sum())
    delta = np.exp(log_s) - onehot
    g_w, g_b = [None] * len(weights), [None] * len(weights)
    for layer in range(len(weights) - 1, -1, -1):
        g_w[layer] = delta.T @ acts[layer]
        g_b[layer] = delta.sum(0)
        if layer:
            delta = (delta @ weights[layer]) * acts[layer] * (1 - acts[layer])
    eps1, beta, eps2 = p["eps1"], p["beta"], p["eps2"]
    for layer, (w, m) in enumerate(zip(weights, masks)):
        sq = w * w
        loss += float(eps1 * (beta * sq / (1 + beta * sq)).sum() + eps2 * sq.sum())
        g_w[layer] = (g_w[layer] + eps1 * 2 * beta * w / (1 + beta * sq) ** 2 + 2 * eps2 * w) * m
    return loss, g_w, g_b


def train(net: Net, x: torch.Tensor, targets: torch.Tensor, p: dict) -> None:
    """Minimise the summed cross-entropy plus the penalty over the present connections and the biases, in
    place, with L-BFGS (scipy's L-BFGS-B without bounds, at most ``iterations`` iterations).  Only the inputs
    and units that still have connections are computed (the others feed nothing)."""
    full = [m.numpy().astype(bool) for m in net.masks]
    keep = [np.flatnonzero(full[0].any(0))]                            # inputs still read
    for layer in range(net.n_hidden_layers):
        keep.append(np.flatnonzero(full[layer].any(1) | full[layer + 1].any(0)))
    keep.append(np.arange(full[-1].shape[0]))                          # every class
    blocks = [np.ix_(keep[l + 1], keep[l]) for l in range(len(full))]
    masks = [m[b] for m, b in zip(full, blocks)]
    xs = x.numpy()[:, keep[0]]
    onehot = np.eye(full[-1].shape[0])[targets.numpy()]

    def unpack(theta):
        weights, biases, at = [], [], 0
        for m in masks:
            w = np.zeros(m.shape)
            w[m] = theta[at:at + int(m.sum())]
            at += int(m.sum())
            weights.append(w)
        for m in masks:
            biases.append(theta[at:at + m.shape[0]])
            at += m.shape[0]
        return weights, biases

    def objective(theta):
        weights, biases = unpack(theta)
        loss, g_w, g_b = loss_and_grad(weights, biases, masks, xs, onehot, p)
        return loss, np.concatenate([g[m] for g, m in zip(g_w, masks)] + g_b)

    theta0 = np.concatenate([w.numpy()[b][m] for w, b, m in zip(net.weights, blocks, masks)]
                            + [bias.numpy()[keep[l + 1]] for l, bias in enumerate(net.biases)])
    result = optimize.minimize(objective, theta0, jac=True, method="L-BFGS-B",
                               options={"maxiter": int(p["iterations"]), "gtol": 1e-6, "ftol": 1e-12})
    theta = result.x if np.all(np.isfinite(result.x)) else theta0
    weights, biases = unpack(theta)
    new_w, new_b = [w.numpy().copy() for w in net.weights], [b.numpy().copy() for b in net.biases]
    for layer, (w, b) in enumerate(zip(weights, biases)):
        new_w[layer][blocks[layer]] = w
        new_b[layer][keep[layer + 1]] = b
    net.weights = [torch.from_numpy(w) * m for w, m in zip(new_w, net.masks)]
    net.biases = [torch.from_numpy(b) for b in new_b]


@torch.no_grad()
def removal_bounds(net: Net, x: torch.Tensor) -> list:
    """Per layer, ``omega`` of every connection (``inf`` where it is already removed): an upper bound of the
    change of any class probability on the rows ``x`` when that connection alone is removed."""
    sources = [x] + net.hidden(x)
    reach = [s.abs().max(0).values for s in sources]           # max_p |a_i|
    w_eff = [(w * m).abs() for w, m in zip(net.weights, net.masks)]
    out_w = net.weights[-1] * net.masks[-1]
    pairs = list(itertools.combinations(range(out_w.shape[0]), 2))
    # L[pair, j]: Lipschitz constant of z_c - z_d in the net input of unit j of the current hidden layer
    lip = torch.stack([(out_w[c] - out_w[d]).abs() for c, d in pairs]) * 0.25
    bounds = [None] * len(net.weights)
    bounds[-1] = 0.25 * w_eff[-1] * reach[-1][None, :]
    for layer in range(len(net.weights) - 2, -1, -1):
        bounds[layer] = 0.25 * lip.max(0).values[:, None] * w_eff[layer] * reach[layer][None, :]
        lip = 0.25 * lip @ w_eff[layer]
    return [torch.where(m > 0, b, torch.full_like(b, torch.inf)) for b, m in zip(bounds, net.masks)]


@torch.no_grad()
def drop_dead_units(net: Net) -> None:
    """Remove hidden units without outgoing connections; fold constant ones (no incoming) into the next
    layer's biases; repeat until nothing changes (exact: the network's function is unchanged)."""
    changed = True
    while changed:
        changed = False
        for layer in range(net.n_hidden_layers):
            incoming = net.masks[layer].sum(1) > 0
            outgoing = net.masks[layer + 1].sum(0) > 0
            for j in torch.nonzero(incoming & ~outgoing).flatten().tolist():
                net.masks[layer][j] = 0
                net.weights[layer][j] = 0
                changed = True
            for j in torch.nonzero(~incoming & outgoing).flatten().tolist():
                nxt = net.weights[layer + 1][:, j] * net.masks[layer + 1][:, j]
                net.biases[layer + 1] += nxt * torch.sigmoid(net.biases[layer][j])
                net.masks[layer + 1][:, j] = 0
                net.weights[layer + 1][:, j] = 0
                changed = True


def _remove(net: Net, chosen: list) -> Net:
    out = net.copy()
    with torch.no_grad():
        for layer, mask in enumerate(chosen):
            out.masks[layer][mask] = 0
            out.weights[layer][mask] = 0
    drop_dead_units(out)
    return out


def prune(net: Net, x: torch.Tensor, targets: torch.Tensor, p: dict) -> Net:
    """The pruning loop of the module docstring on ``net`` (a copy: the caller's tensors are not changed);
    the returned network's ``history`` lists, per round, the connections left and the accuracy."""
    net = net.copy()
    train(net, x, targets, p)
    with torch.no_grad():
        acc = accuracy(net.logits(x), targets, p["eta1"])
    net.history = [{"connections": net.n_connections(), "accuracy": acc, "removed": 0}]
    if acc < p["min_accuracy"]:
        return net                   # the penalised network misses the requirement: nothing may go
    while net.n_connections() > 0:
        bounds = removal_bounds(net, x)
        small = [b <= p["eta2"] for b in bounds]
        tries = []
        if any(s.any() for s in small):
            tries.append(small)
        flat = torch.cat([b.flatten() for b in bounds])
        k = int(torch.argmin(flat))
        single = [torch.zeros_like(b, dtype=torch.bool) for b in bounds]
        for layer, b in enumerate(bounds):
            if k < b.numel():
                single[layer].view(-1)[k] = True
                break
            k -= b.numel()
        if not tries or sum(int(s.sum()) for s in small) > 1:
            tries.append(single)
        for chosen in tries:
            candidate = _remove(net, chosen)
            train(candidate, x, targets, p)
            with torch.no_grad():
                acc = accuracy(candidate.logits(x), targets, p["eta1"])
            if acc >= p["min_accuracy"]:
                candidate.history.append({"connections": candidate.n_connections(), "accuracy": acc,
                                          "removed": int(sum(int(c.sum()) for c in chosen))})
                net = candidate
                break
        else:
            return net
    return net


def training_rows(x: torch.Tensor, max_rows: int, seed: int) -> torch.Tensor:
    """The rows the pruning reads: all, or a seeded subsample of ``max_rows`` (sorted positions)."""
    if len(x) <= max_rows:
        return torch.arange(len(x))
    rng = np.random.default_rng([seed, 8383])
    return torch.from_numpy(np.sort(rng.permutation(len(x))[:max_rows]))


def prepare(model: nn.Module, train_x: torch.Tensor, p: dict, seed: int) -> tuple[Net, Net, torch.Tensor, torch.Tensor]:
    """The given network as tensors, the pruned network, the rows used and their targets (the given
    network's classes)."""
    given = Net.from_model(model)
    rows = training_rows(train_x, int(p["max_rows"]), seed)
    x = train_x[rows].reshape(len(rows), -1).to(torch.float64)
    targets = torch.from_numpy(predict_classes(model, train_x[rows]))
    with threadpool_limits(1, user_api="blas"):
        pruned = prune(given, x, targets, p)
    return given, pruned, x, targets
