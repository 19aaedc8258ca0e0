"""Tree regularisation (Wu et al., AAAI 2018; survey ref. [119], Sec. IV-A): train a network whose decisions
a shallow decision tree can simulate.

The paper's penalty (its Eq. 2 and Alg. 1) is the average path length of a decision tree fitted to the
network's own predictions on the training inputs,

    Omega(W) = APL({x_n, y_hat_n(W)}) = 1/N sum_n PathLength(tree, x_n),   tree = CART({x_n, y_hat_n}),

where PathLength counts the decision nodes an input passes from the root to its leaf (a single-leaf tree
has APL 0).  Omega is not differentiable in W, so a surrogate MLP ``Omega_hat(W; xi)`` (one hidden layer of
25 units in the paper) is fitted by least squares with an L2 term (Eq. 4 of the paper; the survey's
``min_xi sum_j (Omega(W_j) - Omega_hat(W_j; xi))^2 + eps ||xi||^2``) on pairs ``(W_j, Omega(W_j))`` collected
along the training trajectory, augmented with perturbed copies of the recorded weights; the surrogate is
refitted every few epochs and the loss becomes ``CE + lambda * Omega_hat(W)``.  At the end, the tree fitted
to the final network's predictions *is* the network's explanation.

Choices, each stated where the paper leaves room:

* CART is scikit-learn's ``DecisionTreeClassifier(min_samples_leaf=m, random_state=0)`` with ``m`` from the
  config (``min_samples_leaf``: 25, the value of the authors' released code); the tree is fitted on
  ``n_apl_inputs`` training inputs (a seeded subset; all of them on the tables) so that the true APL, one
  forward pass and one tree per weight vector, stays cheap on images.
* The weight trajectory is recorded every ``record_every`` optimiser steps (the paper records every step;
  a tenth to a twentieth of them keeps the tree fits cheap); each recorded vector gets ``n_augment`` copies
  perturbed by ``N(0, (augment_scale * rms(tensor))^2)`` per weight tensor (the paper's data augmentation).
  Every ``retrain_every`` epochs the surrogate is refitted (``surrogate_steps`` full-batch Adam steps) on the
  pairs recorded since its last fit, as the authors' released code does (it refits on the weights of the
  last 25 iterations); it is warm-started from its previous fit, which carries the older trajectory.  The
  penalty starts once it has been fitted (the first ``retrain_every`` epochs train without it).
* The surrogate reads the flattened weights.  A CNN has ~24k of them: there it reads a fixed Gaussian
  random projection to ``projection_dim`` coordinates (Johnson-Lindenstrauss: distances between weight
  vectors, hence the trajectory's geometry, are kept), regenerated from a seed stored with the network, so
  the penalty's gradient still reaches every weight; an MLP with fewer weights is read whole, as in the
  paper.  The surrogate's inputs are centred and divided by *one* scale (the pairs' RMS spread), not one per
  coordinate: a per-coordinate scale would magnify the penalty's gradient along directions the trajectory
  barely moved in (the paper feeds the raw weights); its targets are standardised (buffers of the surrogate).
  This standardisation (``in_mean``, ``in_scale``, ``out_mean``, ``out_scale``) is computed from the pairs of
  the *first* fit and kept fixed by every refit: the paper's surrogate reads the raw weights, one fixed
  coordinate system, and the warm start only carries the older trajectory if the refitted network reads it
  at the inputs it was fitted on (re-standardising on each new batch of pairs would shift all of them).
* Strength: the paper sweeps lambda over orders of magnitude (1e-4 ... 1e4 against a summed
  log-likelihood); the config's default is the sweep's geometric middle, 1, against the mean
  cross-entropy (``benchmarks/apl_sweep.py`` runs the sweep on ``planted``).
* The penalised tree and the explanation tree read the same features: the inputs of a table, the concept
  table on ``shapes`` (the feature space of the rule metrics, e.g. fidelity's TREPAN queries; read from the
  prepared split the train stage hands over), the flattened pixels on an image set without one
  (``digits``).  The explanation is fitted to the final network's predictions on the training split with the
  same ``min_samples_leaf``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from nnxai.active.base import ActiveMethod, register_active
from nnxai.explanations import RuleSet
from nnxai.methods.base import ExplainContext, RuleExtractor
from nnxai.models.networks import MLP, NetworkSpec, build_network, register_network
from nnxai.ops.feature_space import predict_classes, split_features
from nnxai.params import Float, Int
from nnxai.registry import register


# -- the true APL (Alg. 1 of [119]) ------------------------------------------------------------------------
def fit_tree(features: np.ndarray, labels: np.ndarray, min_samples_leaf: int) -> "DecisionTreeClassifier":
    """CART fitted to the network's predictions (deterministic: ``random_state=0``)."""
    from sklearn.tree import DecisionTreeClassifier   # imported where used: registry loads stay light

    tree = DecisionTreeClassifier(min_samples_leaf=int(min_samples_leaf), random_state=0)
    return tree.fit(np.asarray(features, dtype=np.float32), np.asarray(labels))


def node_depths(tree: "DecisionTreeClassifier") -> np.ndarray:
    """Depth of every node of a fitted tree (the root has depth 0)."""
    t = tree.tree_
    depth = np.zeros(t.node_count, dtype=np.int64)
    for node in range(t.node_count):       # children always have larger ids than their parent
        for child in (t.children_left[node], t.children_right[node]):
            if child >= 0:
                depth[child] = depth[node] + 1
    return depth


def path_lengths(tree: "DecisionTreeClassifier", features: np.ndarray) -> np.ndarray:
    """Decision nodes on each input's path from the root to its leaf."""
    return node_depths(tree)[tree.apply(np.asarray(features, dtype=np.float32))]


def average_path_length(features: np.ndarray, labels: np.ndarray, min_samples_leaf: int) -> float:
    """Omega(W) of [119]: the APL, over ``features``, of the tree fitted to the predictions ``labels``."""
    return float(path_lengths(fit_tree(features, labels, min_samples_leaf), features).mean())


def flat_weights(model: nn.Module) -> torch.Tensor:
    """The network's parameters as one vector W (differentiable)."""
    return torch.cat([p.reshape(-1) for p in model.parameters()])


# -- the surrogate Omega_hat(W; xi) ----------------------------------------------------------------------
class APLSurrogate(MLP):
    """MLP from the (projected, standardised) weight vector to the APL(s): ``n_classes`` outputs.

    ``n_features < n_weights``: the weights are first projected by a fixed Gaussian matrix drawn from
    ``projection_seed`` (not stored: rebuilt on load).  The standardisation of inputs and targets is kept in
    buffers, so :meth:`predict_apl` of a loaded checkpoint gives the trained estimate.
    """

    def __init__(self, n_features: int, n_classes: int, hidden=(25,), activation: str = "relu",
                 n_weights: int = 1, projection_seed: int = 0):
        super().__init__(n_features, n_classes, hidden, activation)
        self.n_weights = int(n_weights)
        projection = None
        if n_features < n_weights:
            generator = torch.Generator().manual_seed(int(projection_seed))
            projection = torch.randn(self.n_weights, n_features, generator=generator) / math.sqrt(n_features)
        self.register_buffer("projection", projection, persistent=False)
        self.register_buffer("in_mean", torch.zeros(n_features))
        self.register_buffer("in_scale", torch.ones(n_features))
        self.register_buffer("out_mean", torch.zeros(n_classes))
        self.register_buffer("out_scale", torch.ones(n_classes))
        # set by the first fit, kept by the refits (a loaded checkpoint's buffers are the trained ones)
        self.scaling_set = False

    def read(self, weights: torch.Tensor) -> torch.Tensor:
        """Surrogate coordinates of weight vectors ``(J, n_weights)`` (projected, not yet standardised)."""
        return weights @ self.projection if self.projection is not None else weights

    def predict_apl(self, weights: torch.Tensor) -> torch.Tensor:
        """Omega_hat(W) for weight vectors ``(J, n_weights)``: ``(J, n_classes)``."""
        return self.predict_read(self.read(weights))

    def predict_read(self, z: torch.Tensor) -> torch.Tensor:
        # softplus output, as the paper's surrogate: an APL is never negative, and an unbounded estimate
        # would let the network lower the penalty without bound where the surrogate extrapolates
        return nn.functional.softplus(self.out_mean + self.out_scale * self((z - self.in_mean) / self.in_scale))


register_network("apl_surrogate", NetworkSpec(cls=APLSurrogate, base="mlp", extra={
    "n_weights": (1, 50_000_000), "projection_seed": (0, 2**31 - 1)}))


def build_surrogate(n_weights: int, n_outputs: int, hidden: int, projection_dim: int, seed: int) -> APLSurrogate:
    return build_network("apl_surrogate", n_features=int(min(projection_dim, n_weights)), n_classes=int(n_outputs),
                         hidden=[int(hidden)], activation="relu", n_weights=int(n_weights),
                         projection_seed=int(seed))


def set_scaling(surrogate: APLSurrogate, z: torch.Tensor, apl: torch.Tensor) -> None:
    """Standardisation of the surrogate's inputs and targets from the pairs ``(z, apl)`` (the first fit's)."""
    with torch.no_grad():
        surrogate.in_mean.copy_(z.mean(0))
        # one scale for every coordinate (the RMS spread of the pairs): a per-coordinate scale would blow up the
        # gradient along directions the trajectory barely moved in, where the surrogate knows nothing
        spread = z.var(0, unbiased=False).mean().sqrt() if len(z) > 1 else torch.ones(())
        surrogate.in_scale.fill_(float(spread.clamp_min(1e-6)))
        surrogate.out_mean.copy_(apl.mean(0))
        surrogate.out_scale.copy_(apl.std(0, unbiased=False).clamp_min(1e-3) if len(apl) > 1
                                  else torch.ones(apl.shape[1]))
    surrogate.scaling_set = True


def fit_surrogate(surrogate: APLSurrogate, z: torch.Tensor, apl: torch.Tensor, steps: int, lr: float,
                  l2: float) -> float:
    """Eq. 4 of [119]: least squares of the standardised APLs plus ``l2 * ||xi||^2``; warm-started.
    Returns the root mean squared error in APL units on the pairs.

    The first fit of a surrogate sets its standardisation (:func:`set_scaling`); every refit keeps it, so
    that the warm-started weights read the same coordinates as before (see the module docstring)."""
    if not surrogate.scaling_set:
        set_scaling(surrogate, z, apl)
    params = list(surrogate.parameters())
    for p in params:
        p.requires_grad_(True)
    optimiser = torch.optim.Adam(params, lr=lr)
    scaled = apl / surrogate.out_scale
    surrogate.train()
    for _ in range(int(steps)):
        loss = ((surrogate.predict_read(z) / surrogate.out_scale - scaled).pow(2).mean()
                + l2 * sum(p.pow(2).sum() for p in params))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    for p in params:
        p.requires_grad_(False)
    surrogate.eval()
    with torch.no_grad():
        return float((surrogate.predict_read(z) - apl).pow(2).mean().sqrt())


# -- the training-time part ---------------------------------------------------------------------------------
class APLRegulariser(ActiveMethod):
    """What global and regional tree regularisation share: the trajectory, the true APLs, the surrogates.

    A subclass says how many APLs a weight vector has (:meth:`true_apls`) and how the surrogate's estimates
    become the penalty (:meth:`combine`)."""

    parameters = {
        "strength": Float("lambda: weight of the surrogate APL penalty lambda * Omega_hat(W)", low=0.0),
        "min_samples_leaf": Int("CART's minimum number of inputs per leaf (the tree whose APL is penalised and "
                                "the explanation tree)", low=1),
        "n_apl_inputs": Int("training inputs (seeded subset) the true-APL trees are fitted on", low=2),
        "record_every": Int("optimiser steps between recorded weight vectors of the trajectory", low=1),
        "retrain_every": Int("epochs between refits of the surrogate (the penalty starts after the first)", low=1),
        "n_augment": Int("perturbed copies of each recorded weight vector (data augmentation)", low=0),
        "augment_scale": Float("std of the perturbation, relative to each weight tensor's RMS", low=0.0),
        "surrogate_hidden": Int("hidden units of the surrogate MLP (paper: 25)", low=1),
        "surrogate_steps": Int("full-batch Adam steps per surrogate refit", low=1),
        "surrogate_lr": Float("learning rate of the surrogate's Adam", low=0.0, low_open=True),
        "surrogate_l2": Float("epsilon: L2 weight of the surrogate's parameters (Eq. 4)", low=0.0),
        "projection_dim": Int("coordinates of the fixed random projection the surrogate reads when the network "
                              "has more weights", low=1),
    }

    n_outputs = 1

    # subclasses ---------------------------------------------------------------------------------------------
    def true_apls(self, labels: np.ndarray) -> np.ndarray:
        """The APL(s) of the trees fitted to the predictions ``labels`` on the APL inputs."""
        raise NotImplementedError

    def combine(self, estimates: torch.Tensor) -> torch.Tensor:
        """The penalised scalar from the surrogate estimates ``(n_outputs,)``."""
        raise NotImplementedError

    def prepare(self, features: np.ndarray) -> None:
        """Before training, with the APL inputs' features (e.g. the regions)."""

    # hooks ----------------------------------------------------------------------------------------------------
    def setup(self, model, train, info, device, seed):
        p = self.params
        x = train[0]
        rng = np.random.default_rng([int(seed), 119])
        rows = np.sort(rng.permutation(len(x))[:min(p["n_apl_inputs"], len(x))])
        self.apl_x = x[rows]
        split = (self.prepared or {}).get("train")
        concepts = getattr(split, "concepts", None)
        if concepts is not None and len(concepts) == len(x):     # the explanation's feature space (shapes)
            self.apl_features = np.asarray(concepts, dtype=np.float64)[rows]
        else:
            self.apl_features = x[rows].reshape(len(rows), -1).numpy().astype(np.float64)
        self.prepare(self.apl_features)
        self.scratch = copy.deepcopy(model).eval()
        self.device = device
        self.noise = torch.Generator().manual_seed(int(seed) + 118)
        self.shapes = [p_.numel() for p_ in model.parameters()]
        n_weights = sum(self.shapes)
        self.surrogates = [build_surrogate(n_weights, 1, p["surrogate_hidden"], p["projection_dim"], seed)
                           for _ in range(self.n_outputs)]      # one projection: the coordinates are shared
        for s in self.surrogates:
            s.to(device).eval().requires_grad_(False)
        self.pending: list[torch.Tensor] = []   # weight vectors recorded since the last refit
        self.steps, self.fitted, self.n_pairs = 0, False, 0

    def parameters_to_train(self, model):
        return list(model.parameters())          # the surrogates are fitted by their own least squares

    def extras(self):
        surrogates = getattr(self, "surrogates", [])
        if len(surrogates) == 1:
            return {"surrogate": surrogates[0]}
        return {f"surrogate_r{k}": s for k, s in enumerate(surrogates)}

    def penalty(self, model, inputs, targets, logits):
        if not self.fitted or self.params["strength"] == 0:
            return None
        w = flat_weights(model)[None]
        estimates = torch.cat([s.predict_apl(w)[0] for s in self.surrogates])
        return self.params["strength"] * self.combine(estimates)

    def after_step(self, model):
        self.steps += 1
        if self.steps % self.params["record_every"] == 0:
            self.pending.append(flat_weights(model).detach().clone())

    def apl_of(self, weights: torch.Tensor) -> np.ndarray:
        """The true APL(s) of weight vector ``weights``: load it into a scratch copy, predict, fit the tree(s)."""
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(weights.to(self.device), self.scratch.parameters())
        return self.true_apls(predict_classes(self.scratch, self.apl_x))

    def _augmented(self, weights: torch.Tensor) -> list[torch.Tensor]:
        out = [weights]
        for _ in range(self.params["n_augment"]):
            parts = []
            for chunk in weights.cpu().split(self.shapes):
                rms = chunk.pow(2).mean().sqrt()
                parts.append(chunk + self.params["augment_scale"] * rms * torch.randn(chunk.shape, generator=self.noise))
            out.append(torch.cat(parts).to(weights.device))
        return out

    def after_epoch(self, model, epoch):
        if epoch % self.params["retrain_every"]:
            return {}
        current = flat_weights(model).detach().clone()
        batch = [w for recorded in [*self.pending, current] for w in self._augmented(recorded)]
        self.pending = []
        apls = [self.apl_of(w) for w in batch]
        with torch.no_grad():
            z = self.surrogates[0].read(torch.stack(batch))
        self.n_pairs += len(batch)
        target = torch.as_tensor(np.stack(apls), dtype=torch.float32, device=self.device)
        errors = [fit_surrogate(s, z, target[:, k:k + 1], self.params["surrogate_steps"], self.params["surrogate_lr"],
                                self.params["surrogate_l2"]) for k, s in enumerate(self.surrogates)]
        self.fitted = True
        with torch.no_grad():
            estimate = torch.cat([s.predict_apl(current[None])[0] for s in self.surrogates])
        now = apls[len(batch) - 1 - self.params["n_augment"]]    # the current weights' own (unperturbed) APL
        return {"apl": float(self.summary(now)), "apl_surrogate": float(self.combine(estimate)),
                "surrogate_rmse": float(np.mean(errors)), "surrogate_pairs": self.n_pairs}

    def summary(self, apls: np.ndarray) -> float:
        """One number for the history from the true APL(s) of a weight vector."""
        return float(self.combine(torch.as_tensor(apls, dtype=torch.float32)))

    def finish(self, model, train, val, device):
        return {"apl_train": self.summary(self.apl_of(flat_weights(model).detach())),
                "surrogate_pairs": self.n_pairs}


@register_active
class TreeRegularization(APLRegulariser):
    """Tree regularisation [119]: cross-entropy + lambda * Omega_hat(W), Omega_hat a surrogate of the APL."""

    id = "tree_regularization"
    description = "Tree regularisation: surrogate of the average decision-path length as a penalty [119]"
    architectures = frozenset({"cnn", "mlp"})

    def true_apls(self, labels):
        return np.array([average_path_length(self.apl_features, labels, self.params["min_samples_leaf"])])

    def combine(self, estimates):
        return estimates.sum()


# -- the explanation: the tree of the final network, as a rule set ------------------------------------------
def training_params(model: nn.Module, active_id: str) -> dict:
    """The active method's parameters the network was trained with (its checkpoint's config)."""
    record = getattr(model, "checkpoint", None) or {}
    params = (record.get("config") or {}).get("active_params")
    if record.get("active") != active_id or not isinstance(params, dict):
        raise ValueError(f"{active_id}: the model was not trained by {active_id} (its checkpoint records "
                         f"active={record.get('active')!r}); load it with nnxai.load_model")
    return params


def explanation_features(ctx: ExplainContext) -> tuple[str, list[str]]:
    """The feature space of the explanation tree (the one training penalised): the concept table where the
    image set has one, else the (flattened) inputs."""
    if ctx.info.kind != "tabular" and ctx.train.concepts is not None:
        return "concepts", list(ctx.info.concepts)
    n = int(np.prod(ctx.info.input_shape))
    prefix = "x" if ctx.info.kind == "tabular" else "pixel"
    return "inputs", list(ctx.train.meta.get("feature_names") or [f"{prefix}{j}" for j in range(n)])


def tree_rules(tree: "DecisionTreeClassifier", prefix: list | None = None, extra: dict | None = None) -> list[dict]:
    """One rule per leaf, depth first: the path's tests as 1-of-1 conditions (after ``prefix``, e.g. a
    region's), the leaf's class, its support and ``path_length`` (the tests of the tree only)."""
    t, prefix, extra = tree.tree_, list(prefix or []), dict(extra or {})
    rules, stack = [], [(0, [])]
    while stack:
        node, path = stack.pop()
        left, right = t.children_left[node], t.children_right[node]
        if left < 0:
            rules.append({"conditions": prefix + path, "prediction": int(tree.classes_[int(np.argmax(t.value[node]))]),
                          "support": int(t.n_node_samples[node]), "path_length": len(path), **extra})
            continue
        lit = {"feature": int(t.feature[node]), "threshold": float(t.threshold[node])}
        stack.append((right, path + [{"m": 1, "literals": [{**lit, "op": ">"}]}]))
        stack.append((left, path + [{"m": 1, "literals": [{**lit, "op": "<="}]}]))
    return rules


def tree_summary(tree: "DecisionTreeClassifier", features: np.ndarray) -> dict:
    t = tree.tree_
    nodes = [{"id": i, "feature": int(t.feature[i]) if t.children_left[i] >= 0 else None,
              "threshold": float(t.threshold[i]) if t.children_left[i] >= 0 else None,
              "left": int(t.children_left[i]) if t.children_left[i] >= 0 else None,
              "right": int(t.children_right[i]) if t.children_left[i] >= 0 else None,
              "prediction": int(tree.classes_[int(np.argmax(t.value[i]))]), "n_train": int(t.n_node_samples[i])}
             for i in range(t.node_count)]
    return {"depth": int(tree.get_depth()), "n_leaves": int(tree.get_n_leaves()),
            "apl_train": float(path_lengths(tree, features).mean()), "nodes": nodes}


@register("tree_regularization")
class TreeRegularizationTree(RuleExtractor):
    """The tree-regularised network's own explanation [119]: CART fitted to its predictions on the training
    split (``min_samples_leaf`` of its training), one rule per leaf; ``tree`` records depth, leaves and the
    training APL."""

    only_models = frozenset({"tree_regularization"})
    needs_concepts = False      # the penalised tree reads the pixels where an image set has no concept table
    parameters = {}

    def extract(self, model, ctx):
        min_leaf = training_params(model, "tree_regularization")["min_samples_leaf"]
        kind, names = explanation_features(ctx)
        features = split_features(ctx.train, kind)
        labels = predict_classes(model, ctx.train.x)
        tree = fit_tree(features, labels, min_leaf)
        n_classes = int(ctx.info.n_classes)
        class_names = list(ctx.train.meta.get("class_names") or [str(c) for c in range(n_classes)])
        return RuleSet(rules=tree_rules(tree), default=int(np.bincount(labels, minlength=n_classes).argmax()),
                       feature_names=names, class_names=class_names, feature_space=kind,
                       tree={**tree_summary(tree, features), "min_samples_leaf": int(min_leaf)})
