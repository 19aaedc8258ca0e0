"""Metrics of extracted rule sets and trees (METHODS.md, Evaluation; survey Sec. V).

* ``fidelity``: agreement of the extracted rules with the network on held-out data [89], [119], with
  ``fidelity.queries`` (the same on fresh instances drawn from TREPAN's model of the training distribution and
  labelled by the network) and ``fidelity.label_accuracy`` (the rules' accuracy against the true test labels:
  the "accuracy" that METHODS.md lists for rule extractors; the bare id ``accuracy`` is the models' own).
  A :class:`SurrogateModel` (the mimic network of 2nd survey [50]) is scored alike on the test inputs whose
  logits it holds, with ``fidelity.logit_mse`` beside (lower is better, unlike the family).
* ``rule_size`` (number of rules; ``rule_size.antecedents``: mean number of literals per rule), ``tree_depth``
  and ``n_leaves``: comprehensibility as size [85], [119], [127]; smaller is read as more interpretable.
* ``rule_recovery``: whether the extracted rules are the rule that labelled the data, where it is planted
  (MONK's problems of Thrun et al. 1991, ``shapes``; :class:`nnxai.data.planted_rules.PlantedRule`).
"""

from __future__ import annotations

import numpy as np

from nnxai.explanations import AttributionMap, LocalRules, RuleSet, SurrogateModel
from nnxai.intervals import PerInput
from nnxai.metrics.base import Metric, register_metric
from nnxai.metrics.multilevel import level_fidelity
from nnxai.ops.feature_space import NodeModel, feature_space, predict_classes, sample, split_features
from nnxai.params import Int


def _rules(record) -> RuleSet:
    if not isinstance(record, RuleSet):
        raise ValueError(f"rule metrics score RuleSet records, got {type(record).__name__}")
    return record


@register_metric
class Fidelity(Metric):
    """Fraction of held-out inputs on which the rules predict the network's class.

    The rules read the test split in their own feature space (``RuleSet.feature_space``: the inputs, or the
    concept table); the network reads the test inputs.  ``n_queries`` fresh instances, drawn from the
    product-of-marginals kernel density model of the training features (TREPAN's query distribution [89];
    for concepts: rendered images), give ``fidelity.queries``; 0 skips it, and so does a set of images
    without a concept table (there is no query model of its pixels).

    Rules that abstain (a partial substitute [80] predicts -1 where it leaves the input to the network) are
    scored on the inputs they decide; ``coverage`` says how many.

    An attribution record (MAME's tree [68], the only attribution method judged by ``fidelity``) gets the
    fidelity of each tree level instead: :func:`~nnxai.metrics.multilevel.level_fidelity`, with
    ``n_queries`` group-masked copies of the explained inputs.

    A surrogate model (the shallow mimic of Ba & Caruana, 2nd survey [50]) holds its logits on test inputs
    (``indices``): ``fidelity`` is the fraction of them on which its argmax is the network's,
    ``fidelity.label_accuracy`` its accuracy against the true labels, and ``fidelity.logit_mse`` the mean
    squared difference of its logits from the network's (per input, over classes: the loss it was trained
    on, on held-out inputs; lower is better); no queries (``n_queries`` is not used).
    """

    id = "fidelity"
    higher_is_better = True
    kinds = frozenset({"rule", "attribution", "hidden_semantics"})
    parameters = {"n_queries": Int("fresh instances drawn from TREPAN's query distribution [89] and labelled by "
                                   "the network (0: no fidelity.queries); for a MAME record, the group-masked "
                                   "copies of the explained inputs per level [68]", low=0)}
    description = "agreement of the extracted rules with the network on the test split (and on fresh queries)"

    def __call__(self, record, ctx, method=None):
        if isinstance(record, AttributionMap):
            return level_fidelity(record, ctx, int(self.params["n_queries"]))
        if isinstance(record, SurrogateModel):
            return surrogate_fidelity(record, ctx)
        rules = _rules(record)
        network = predict_classes(ctx.model, ctx.test.x)
        predicted = rules.predict(split_features(ctx.test, rules.feature_space))
        decided = predicted >= 0        # a partial substitute [80] abstains (-1) where the network decides
        out = {"fidelity": PerInput((predicted == network)[decided]),
               "fidelity.label_accuracy": PerInput((predicted == ctx.test.y.numpy())[decided])}
        queryable = ctx.info.kind == "tabular" or (ctx.info.has_concepts and hasattr(ctx.info, "render"))
        if self.params["n_queries"] and queryable:   # pixels of a set without a concept table: no query model
            space = feature_space(ctx.model, ctx)
            if space.kind != rules.feature_space:
                raise ValueError(f"rules over {rules.feature_space!r} cannot be queried in the {space.kind!r} "
                                 f"space of {ctx.info.name}")
            rng = np.random.default_rng(ctx.seed)
            queries = sample(space, NodeModel.root(space), [], int(self.params["n_queries"]), rng)
            answers = rules.predict(queries)
            out["fidelity.queries"] = PerInput((answers == space.label(queries, rng))[answers >= 0])
        return out


def surrogate_fidelity(record: SurrogateModel, ctx) -> dict:
    """``fidelity``, ``fidelity.label_accuracy`` and ``fidelity.logit_mse`` of a surrogate model's logits on the
    test inputs at ``record.indices`` (see :class:`Fidelity`)."""
    import torch

    indices = np.asarray(record.indices, dtype=np.int64)
    if not len(indices):
        raise ValueError("the surrogate model holds logits on no test input")
    x = ctx.test.x[torch.as_tensor(indices)].to(ctx.device)
    was_training = [(m, m.training) for m in ctx.model.modules()]
    ctx.model.eval()
    try:
        with torch.no_grad():
            network = torch.cat([ctx.model(x[s:s + 512]).float().cpu() for s in range(0, len(x), 512)]).numpy()
    finally:
        for module, flag in was_training:
            module.training = flag
    if network.shape != record.logits.shape:
        raise ValueError(f"the surrogate's logits {record.logits.shape} do not match the network's {network.shape}")
    mimic = record.logits.argmax(1)
    return {"fidelity": PerInput(mimic == network.argmax(1)),
            "fidelity.label_accuracy": PerInput(mimic == ctx.test.y.numpy()[indices]),
            "fidelity.logit_mse": PerInput(((record.logits.astype(np.float64) - network) ** 2).mean(1))}


@register_metric
class RuleSize(Metric):
    """Number of rules; ``rule_size.antecedents``: mean number of literals per rule (an M-of-N condition
    counts its n literals).  For rules of single inputs (:class:`LocalRules`: CEM, Anchors, ...), the
    length of each input's rule, its number of literals (both keys), with an interval over the inputs."""

    id = "rule_size"
    higher_is_better = False
    kinds = frozenset({"rule", "local_rule"})
    description = "number of rules and mean literals per rule (local rules: literals per input's rule)"

    def __call__(self, record, ctx=None, method=None):
        if isinstance(record, LocalRules):
            lengths = np.array([sum(len(c["literals"]) for c in e.get("conditions", [])) for e in record.explanations],
                               dtype=np.float64)
            return {"rule_size": PerInput(lengths), "rule_size.antecedents": PerInput(lengths)}
        rules = _rules(record).rules
        literals = [sum(len(c["literals"]) for c in rule["conditions"]) for rule in rules]
        return {"rule_size": float(len(rules)), "rule_size.antecedents": float(np.mean(literals)) if rules else 0.0}


class _TreeMetric(Metric):
    higher_is_better = False
    kinds = frozenset({"rule"})
    key = ""

    def __call__(self, record, ctx=None, method=None):
        tree = _rules(record).tree
        if not tree or self.key not in tree:
            raise ValueError(f"{self.id}: the rule set of {record.meta.get('method', '?')!r} records no tree "
                             f"(RuleSet.tree lacks {self.key!r}); only tree extractors are judged by {self.id}")
        return {self.id: float(tree[self.key])}


@register_metric
class TreeDepth(_TreeMetric):
    """Depth of the extracted tree (a single leaf has depth 0)."""

    id = "tree_depth"
    key = "depth"
    description = "depth of the extracted decision tree"


@register_metric
class NLeaves(_TreeMetric):
    """Number of leaves of the extracted tree."""

    id = "n_leaves"
    key = "n_leaves"
    description = "number of leaves of the extracted decision tree"


@register_metric
class RuleRecovery(Metric):
    """Whether the extracted rule set is the planted rule: ``rule_recovery`` is 1 when the two classify every
    instance of the planted rule's space alike (logical equivalence on MONK's whole 432-robot space; on
    ``shapes``, agreement on every combination of the categorical concepts across the distractors' range),
    else 0; ``rule_recovery.agreement``: the fraction of those instances on which they agree.

    The rules must read the planted rule's feature space (MONK: the one-hot inputs; ``shapes``: its concept
    table); a rule set over another space is an error, not a zero.
    """

    id = "rule_recovery"
    higher_is_better = True
    kinds = frozenset({"rule"})
    universal = True
    description = "1 when the extracted rules equal the planted rule on its whole instance space; and their agreement"

    @classmethod
    def why_not(cls, method_cls, info):
        if getattr(info, "planted_rule", None) is None:
            return f"{info.name} has no planted rule"
        return super().why_not(method_cls, info)

    def __call__(self, record, ctx, method=None):
        rules, planted = _rules(record), ctx.info.planted_rule
        if rules.feature_space != planted.feature_space:
            raise ValueError(f"rule_recovery: the rules read {rules.feature_space!r}, the planted rule of "
                             f"{ctx.info.name} reads {planted.feature_space!r}")
        agree = rules.predict(planted.space) == np.asarray(planted.labels)
        return {"rule_recovery": float(agree.all()), "rule_recovery.agreement": PerInput(agree)}

