"""Global CEM: a transparent global model built from local contrastive explanations (survey ref. [92]).

Pedapati, Balakrishnan, Shanmugam, Dhurandhar, "Learning global transparent models consistent with local
contrastive explanations", NeurIPS 2020.  The key step (their Sec. 3): every local contrastive explanation
of the black box becomes a Boolean feature, a sparse conjunction of binarised input features, and a
transparent model (a decision tree) is trained on these features alone; because each feature holds at its
input and fails at that input's contrast point, the data set it builds is consistent with the local
explanations by design.  Here:

1. ``n_inputs`` training inputs (a seeded sample) are explained by CEM [69]
   (:mod:`nnxai.methods.rule.local.cem`, its own parameters below: same objective, FISTA, ``c`` search and
   absent values);
2. each pertinent negative ``delta`` gives the feature ``AND_{j: delta_j != 0} [x_j short of
   x0_j + delta_j]`` (``x_j < x0_j + delta_j`` where the PN raises ``x_j``, ``>`` where it lowers it): it
   holds at ``x0`` and fails at the contrast point ``x0 + delta`` (every literal does); each pertinent
   positive ``p`` gives ``AND_{j in PP} [x_j present at least as much as p_j]``, the literal of
   :func:`~nnxai.methods.rule.local.cem.presence_literal`, which holds at ``x0`` and at the PP and fails
   where the feature is absent.  Features with no literal (an empty PP: the all-absent input
   already has the class) and duplicates are dropped;
3. every training input is described by these Boolean features and labelled with the network's class; a
   CART tree (scikit-learn, Gini, best-first with at most ``max_leaves`` leaves and ``min_samples_leaf``
   inputs per leaf, seeded) is fitted to them;
4. the tree is written as a decision list over the *inputs*, one rule per leaf: a true Boolean feature on
   the path contributes its literals (1-of-1 conditions each), a false one the condition "at least 1 of its
   negated literals" (1-of-n), so the rules are exclusive and exhaustive and read the original features.

Where this implementation chose: the paper builds its features from the PN (the contrast points), and
from the PP where one is given; both are used here, one feature each.  The tree is fitted on the whole
train split (the explanations come from ``n_inputs`` of it) with the network's labels, as the fidelity of a
surrogate is judged.  ``tree`` records ``depth``, ``n_leaves``, the Boolean features (their literals and
where they come from) and the local consistency of the rules with the explanations (the paper's metric:
``pp``, the fraction of explained inputs whose PP input the rules give the input's rule class; ``pn``, the
fraction whose contrast point they give another class).

Tables only: the image models' rules read ``shapes``' concept table, whose network is reached through a
renderer that has no gradient; CEM's FISTA needs one in the space the Boolean features are built in.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nnxai.explanations import RuleSet
from nnxai.methods.base import ExplainContext, RuleExtractor
from nnxai.methods.rule.local._cem_solver import CEMSettings, input_domain, train_autoencoder
from nnxai.methods.rule.local.cem import CEM_PARAMETERS, below, contrastive_explanations, presence_literal
from nnxai.ops.feature_space import predict_classes
from nnxai.params import BATCH_SIZE, Int
from nnxai.registry import register

NEGATE = {">": "<=", "<=": ">"}


def pn_clause(x0: np.ndarray, delta: np.ndarray) -> list[dict]:
    """The PN's Boolean feature: every changed feature short of its contrast value ``v = x0 + delta``
    (``x_j < v``, written ``x_j <= below(v)``, where the PN raised it; ``x_j > v`` where it lowered it)."""
    out = []
    for j in np.flatnonzero(delta):
        v = float(np.float32(x0[j] + delta[j]))
        out.append({"feature": int(j), "op": "<=", "threshold": below(v)} if delta[j] > 0 else
                   {"feature": int(j), "op": ">", "threshold": v})
    return out


def pp_clause(absent: np.ndarray, delta: np.ndarray) -> list[dict]:
    """The PP's Boolean feature: every PP feature present at least as much as in the PP."""
    return [presence_literal(j, absent[j], delta[j]) for j in np.flatnonzero(delta)]


def clause_holds(literals: list[dict], x: np.ndarray) -> np.ndarray:
    out = np.ones(len(x), dtype=bool)
    for lit in literals:
        col = x[:, lit["feature"]]
        out &= (col <= lit["threshold"]) if lit["op"] == "<=" else (col > lit["threshold"])
    return out


def boolean_features(x: np.ndarray, res: dict[str, np.ndarray], absent: np.ndarray, rows: np.ndarray) -> list[dict]:
    """Step 2: the distinct non-empty clauses of the explained rows (``rows``: their train positions)."""
    out, seen = [], set()
    for k, row in enumerate(rows):
        for mode in ("pn", "pp"):
            if not res[f"{mode}_found"][k]:
                continue
            lits = pn_clause(x[k], res["pn"][k]) if mode == "pn" else pp_clause(absent, res["pp"][k])
            key = tuple((lit["feature"], lit["op"], round(lit["threshold"], 6)) for lit in lits)
            if lits and key not in seen:
                seen.add(key)
                out.append({"source": mode, "train_index": int(row), "literals": lits})
    return out


def tree_rules(tree, features: list[dict]) -> list[dict]:
    """Step 4: one rule per leaf of the fitted sklearn tree, its path written over the inputs."""
    t = tree.tree_
    rules = []

    def walk(node: int, conditions: list[dict]) -> None:
        if t.children_left[node] == -1:
            counts = t.value[node][0]
            rules.append({"conditions": conditions, "prediction": int(tree.classes_[int(np.argmax(counts))]),
                          "support": int(t.n_node_samples[node])})
            return
        lits = features[int(t.feature[node])]["literals"]
        false = [{"m": 1, "literals": [{**lit, "op": NEGATE[lit["op"]]} for lit in lits]}]
        true = [{"m": 1, "literals": [lit]} for lit in lits]
        walk(int(t.children_left[node]), conditions + false)      # sklearn: left is "feature <= 0.5"
        walk(int(t.children_right[node]), conditions + true)

    walk(0, [])
    return rules


@register("global_cem")
class GlobalCEM(RuleExtractor):
    """Global CEM [92]: a decision tree over Boolean features made from CEM's PPs and PNs [69]."""

    modalities = frozenset({"tabular"})
    architectures = frozenset({"mlp"})
    scope_note = ("Tables only: the image models' rules read shapes' concept table, whose network is reached "
                  "through a renderer that has no gradient; CEM's FISTA needs one in the space the Boolean "
                  "features are built in")
    parameters = {
        "n_inputs": Int("training inputs explained by CEM, whose PPs and PNs become Boolean features (all of a "
                        "smaller train split)", low=1, at_most="train"),
        "batch_size": BATCH_SIZE,
        **CEM_PARAMETERS,
        "max_leaves": Int("most leaves (rules) of the CART tree over the Boolean features", low=2),
        "min_samples_leaf": Int("fewest training inputs in a leaf of the tree", low=1),
    }

    def _fit(self, model: nn.Module, train) -> None:
        """The domain of CEM (absent values, box) from the train split; the AE when ``gamma > 0``."""
        self.domain_ = input_domain("tabular", train.x)
        self.autoencoder_ = (train_autoencoder("tabular", train.x, self.domain_, int(self.params["ae_epochs"]),
                                               self.seed) if self.params["gamma"] > 0 else None)

    def extract(self, model: nn.Module, ctx: ExplainContext) -> RuleSet:
        from sklearn.tree import DecisionTreeClassifier  # lazy: sklearn costs ~1 s per job start
        self.check_fitted(model)
        x_train = ctx.train.x.reshape(len(ctx.train.x), -1).double().numpy()
        rng = np.random.default_rng(ctx.seed)
        rows = np.sort(rng.permutation(len(x_train))[:min(self.params["n_inputs"], len(x_train))])
        res = contrastive_explanations(model, ctx.train.x[torch.as_tensor(rows)], CEMSettings.of(self.params),
                                       self.domain_, self.autoencoder_, int(self.params["batch_size"]), ctx.device)
        absent = self.domain_.absent.reshape(-1).double().numpy()
        features = boolean_features(x_train[rows], res, absent, rows)
        labels = predict_classes(model, ctx.train.x)
        names = list(ctx.train.meta.get("feature_names") or [f"x{j}" for j in range(x_train.shape[1])])
        n_classes = int(getattr(ctx.info, "n_classes", 0) or labels.max() + 1)
        class_names = list(ctx.train.meta.get("class_names") or [str(c) for c in range(n_classes)])
        majority = int(np.argmax(np.bincount(labels, minlength=n_classes)))
        if not features:     # no explanation gave a literal: the constant model
            rules = [{"conditions": [], "prediction": majority, "support": int(len(labels))}]
            depth = 0
        else:
            table = np.column_stack([clause_holds(f["literals"], x_train) for f in features]).astype(np.float64)
            tree = DecisionTreeClassifier(max_leaf_nodes=int(self.params["max_leaves"]),
                                          min_samples_leaf=int(self.params["min_samples_leaf"]),
                                          random_state=ctx.seed).fit(table, labels)
            rules, depth = tree_rules(tree, features), int(tree.get_depth())
        record = RuleSet(rules=rules, default=majority, feature_names=names, class_names=class_names,
                         feature_space="inputs",
                         tree={"depth": depth, "n_leaves": len(rules), "n_explained": int(len(rows)),
                               "boolean_features": features})
        record.tree["local_consistency"] = local_consistency(record, x_train[rows], res, absent)
        return record


def local_consistency(rules: RuleSet, x: np.ndarray, res: dict[str, np.ndarray], absent: np.ndarray) -> dict:
    """The paper's consistency of the global model with the local explanations: the fraction of explained
    inputs (with a PP, resp. PN) whose PP input gets the rules' class of the input, and whose contrast point
    gets another one (``None`` where no input had one)."""
    own = rules.predict(x)
    out = {}
    for mode in ("pp", "pn"):
        found = res[f"{mode}_found"].astype(bool)
        points = (absent[None, :] + res["pp"]) if mode == "pp" else (x + res["pn"])
        same = rules.predict(points) == own
        hits = same if mode == "pp" else ~same
        out[mode] = float(hits[found].mean()) if found.any() else None
    return out
