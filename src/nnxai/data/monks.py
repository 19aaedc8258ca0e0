"""The three MONK's problems (Thrun et al., "The MONK's problems: a performance comparison of different
learning algorithms", CMU-CS-91-197, 1991), built from their published definitions.

The benchmark on which the rule-extraction literature compared itself (Thrun's report, NeuroRule [83],
the M-of-N successors [82]): a robot is described by six attributes

====  =============  ======
attr  name (report)  values
====  =============  ======
a1    head_shape     1, 2, 3
a2    body_shape     1, 2, 3
a3    is_smiling     1, 2
a4    holding        1, 2, 3
a5    jacket_colour  1, 2, 3, 4
a6    has_tie        1, 2
====  =============  ======

so the instance space has 3·3·2·3·4·2 = 432 robots, and each problem is a known rule over it:

- MONK-1: ``a1 = a2 or a5 = 1`` (a disjunctive normal form with a first-order equality);
- MONK-2: exactly two of the six attributes take their first value (hard for rules and trees);
- MONK-3: ``(a5 = 3 and a4 = 1) or (a5 ≠ 4 and a2 ≠ 3)``, with 5 % of the *training* labels flipped.

Splits, as in the report: the training set is drawn from the 432 instances without replacement (124, 169
and 122 instances; here by seed, not the report's fixed files, which cannot be downloaded at run time);
MONK-3 flips ``round(5 % of 122) = 6`` of its training labels (the report's set has 6 misclassifications);
the test set is the **whole instance space** with clean labels.  The validation split (needed by the
pipeline, unused by the report) is the instances not drawn for training, also with clean labels.

Inputs are the attributes one-hot binarised: 17 features named ``a1=1, a1=2, ..., a6=2`` (0/1 floats, not
standardised), what the decompositional extractors (KT [81], M-of-N [82], NeuroRule [83]) read.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

from nnxai.data.planted_rules import PlantedRule
from nnxai.data.splits import SPLITS

#: Number of values of each attribute a1..a6.
CARDINALITIES = (3, 3, 2, 3, 4, 2)
ATTRIBUTES = tuple(f"a{k + 1}" for k in range(len(CARDINALITIES)))
FEATURE_NAMES = [f"{a}={v + 1}" for a, n in zip(ATTRIBUTES, CARDINALITIES) for v in range(n)]
#: One-hot columns of each attribute, in order.
GROUPS = tuple(tuple(range(sum(CARDINALITIES[:k]), sum(CARDINALITIES[:k + 1]))) for k in range(len(CARDINALITIES)))
CLASS_NAMES = ["no", "yes"]
N_INSTANCES = int(np.prod(CARDINALITIES))
#: The report's training-set sizes.
TRAIN_SIZES = {1: 124, 2: 169, 3: 122}
#: Fraction of MONK-3's training labels flipped.
NOISE = {1: 0.0, 2: 0.0, 3: 0.05}
RULE_TEXTS = {1: "yes iff a1 = a2 or a5 = 1",
              2: "yes iff exactly two of a1..a6 take their first value",
              3: "yes iff (a5 = 3 and a4 = 1) or (a5 != 4 and a2 != 3)"}


def attribute_space() -> np.ndarray:
    """All 432 robots as attribute values ``(432, 6)`` int64 (values from 1), in lexicographic order."""
    return np.array(list(itertools.product(*[range(1, n + 1) for n in CARDINALITIES])), dtype=np.int64)


def one_hot(attributes: np.ndarray) -> np.ndarray:
    """``(n, 6)`` attribute values (from 1) -> ``(n, 17)`` float32 one-hot inputs."""
    attributes = np.asarray(attributes)
    out = np.zeros((len(attributes), len(FEATURE_NAMES)), dtype=np.float32)
    for k, columns in enumerate(GROUPS):
        out[np.arange(len(attributes)), np.asarray(columns)[attributes[:, k] - 1]] = 1.0
    return out


def attributes_of(features: np.ndarray) -> np.ndarray:
    """One-hot inputs (any real values: the largest of each group wins) -> attribute values (from 1)."""
    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    if features.shape[1] != len(FEATURE_NAMES):
        raise ValueError(f"MONK inputs have {len(FEATURE_NAMES)} one-hot columns, got {features.shape[1]}")
    return np.column_stack([np.argmax(features[:, list(g)], axis=1) + 1 for g in GROUPS])


def label(problem: int, attributes: np.ndarray) -> np.ndarray:
    """The planted rule of MONK-``problem`` on attribute values: int64 0 (no) / 1 (yes)."""
    a = np.asarray(attributes)
    if problem == 1:
        yes = (a[:, 0] == a[:, 1]) | (a[:, 4] == 1)
    elif problem == 2:
        yes = (a == 1).sum(axis=1) == 2
    elif problem == 3:
        yes = ((a[:, 4] == 3) & (a[:, 3] == 1)) | ((a[:, 4] != 4) & (a[:, 1] != 3))
    else:
        raise ValueError(f"MONK problem must be 1, 2 or 3, got {problem!r}")
    return yes.astype(np.int64)


def planted_rule(problem: int) -> PlantedRule:
    """The rule of MONK-``problem`` over the one-hot inputs, with the whole 432-instance space."""
    space = one_hot(attribute_space())
    space.flags.writeable = False
    return PlantedRule(feature_space="inputs", text=RULE_TEXTS[problem], space=space,
                       labels=label(problem, attribute_space()), exhaustive=True,
                       classify=lambda features: label(problem, attributes_of(features)))


def build(problem: int, sizes: Mapping[str, int | None], seed: int) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """The splits of MONK-``problem`` (sizes from :func:`plan_sizes`); randomness from ``[seed, problem]``."""
    plan_sizes(problem, sizes)
    rng = np.random.default_rng([seed, problem])
    attributes = attribute_space()
    clean = label(problem, attributes)
    order = rng.permutation(N_INSTANCES)
    train_rows, val_rows = np.sort(order[:TRAIN_SIZES[problem]]), np.sort(order[TRAIN_SIZES[problem]:])
    train_y = clean[train_rows].copy()
    n_flip = int(round(NOISE[problem] * len(train_rows)))
    flipped = np.sort(rng.choice(len(train_rows), size=n_flip, replace=False)) if n_flip else np.zeros(0, int)
    train_y[flipped] = 1 - train_y[flipped]
    rows = {"train": train_rows, "val": val_rows, "test": np.arange(N_INSTANCES)}
    splits = {}
    for split in SPLITS:
        y = train_y if split == "train" else clean[rows[split]]
        splits[split] = {"x": one_hot(attributes[rows[split]]), "y": y.astype(np.int64),
                         "index": rows[split].astype(np.int64)}
    meta = {"class_names": CLASS_NAMES, "feature_names": FEATURE_NAMES, "rule": RULE_TEXTS[problem],
            "attributes": list(ATTRIBUTES), "cardinalities": list(CARDINALITIES),
            "flipped_train_rows": flipped.tolist(),
            "source_detail": f"nnxai.data.monks.build({problem}, ..., [seed, {problem}]): Thrun et al. 1991"}
    return splits, meta


def plan_sizes(problem: int, sizes: Mapping[str, int | None]) -> dict[str, int]:
    """The report's sizes; a config may only leave them natural (``null``) or repeat them."""
    natural = {"train": TRAIN_SIZES[problem], "val": N_INSTANCES - TRAIN_SIZES[problem], "test": N_INSTANCES}
    bad = {s: sizes[s] for s in SPLITS if sizes.get(s) is not None and sizes[s] != natural[s]}
    if bad:
        raise ValueError(f"dataset 'monks{problem}' has the fixed sizes of Thrun et al. 1991 {natural} (the test "
                         f"split is the whole instance space); got {bad}: leave them null")
    return natural
