"""``planted``: seeded tables whose relevant features, their importance and the meta-features that predict
that importance are known, for the attribution-regularised networks of the survey (Sec. IV-A).

The deep attribution prior (DAPr [121]) learns, jointly with the network, a prior network that maps each
feature's *meta-features* (descriptions of the feature, e.g. gene annotations) to how important the
feature should be; dual-net [122] ranks features for a whole population.  Neither can be scored without
knowing which features matter and what the meta-features say about them; no bundled table knows, so this
set plants both (all numbers are constants of this module, documented here):

- 12 features ``x_j ~ N(0, 1)``, independent;
- the label ``y = 1[2.0·x_1 − 1.5·x_4 + 1.0·x_7 + 0.5·x_10 + ε > 0]``, ``ε ~ N(0, 0.3²)``: features 1, 4, 7
  and 10 are relevant (:data:`RELEVANT`), with true importance ``|w_j|`` (:data:`IMPORTANCE`, 2.0, 1.5, 1.0,
  0.5; 0 elsewhere), the rest are noise;
- three meta-features per feature (:data:`META_FEATURES`, shape ``(12, 3)``): the first is the feature's
  importance scaled to [0, 1] plus ``N(0, 0.05²)`` noise (the planted meta-feature -> importance link), the
  other two are ``N(0, 1)`` and unrelated.  They are drawn once from seed 0 of this module, so they are the
  same for every run (they describe the features, not the rows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nnxai.data.splits import SPLITS, generated_sizes

N_FEATURES = 12
CLASS_NAMES = ["negative", "positive"]
FEATURE_NAMES = [f"x{j}" for j in range(N_FEATURES)]
WEIGHTS = np.zeros(N_FEATURES)
WEIGHTS[[1, 4, 7, 10]] = [2.0, -1.5, 1.0, 0.5]
WEIGHTS.flags.writeable = False
NOISE_STD = 0.3
#: Indices of the features the label depends on, most important first.
RELEVANT = (1, 4, 7, 10)
#: True importance of each feature: ``|w_j|`` (0 for the irrelevant ones).
IMPORTANCE = np.abs(WEIGHTS)
IMPORTANCE.flags.writeable = False
RULE_TEXT = "positive iff 2.0*x1 - 1.5*x4 + 1.0*x7 + 0.5*x10 + noise > 0, noise ~ N(0, 0.3^2)"


def _meta_features() -> np.ndarray:
    rng = np.random.default_rng(0)
    informative = IMPORTANCE / IMPORTANCE.max() + 0.05 * rng.standard_normal(N_FEATURES)
    return np.column_stack([informative, rng.standard_normal((N_FEATURES, 2))]).astype(np.float32)


#: ``(12, 3)`` meta-features of the features: the first predicts the feature's importance, two are noise.
META_FEATURES = _meta_features()
META_FEATURES.flags.writeable = False
META_FEATURE_NAMES = ["annotation", "noise_a", "noise_b"]


def generate(n: int, rng: np.random.Generator | int | Sequence[int] | None) -> dict[str, np.ndarray]:
    """Draw ``n`` rows: ``x`` float32 ``(n, 12)``, ``y`` int64 (features first, then the label noise)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    x = rng.standard_normal((int(n), N_FEATURES))
    score = x @ WEIGHTS + NOISE_STD * rng.standard_normal(int(n))
    return {"x": x.astype(np.float32), "y": (score > 0).astype(np.int64)}


def build(sizes: Mapping[str, int | None], seed: int) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Each split from its own stream ``[seed, split number]``."""
    sizes = generated_sizes("planted", sizes)
    splits = {split: generate(sizes[split], [seed, k]) for k, split in enumerate(SPLITS)}
    meta = {"class_names": CLASS_NAMES, "feature_names": FEATURE_NAMES, "rule": RULE_TEXT,
            "relevant_features": list(RELEVANT), "importance": IMPORTANCE.tolist(),
            "meta_features": META_FEATURES.tolist(), "meta_feature_names": META_FEATURE_NAMES,
            "split_seeds": {s: [seed, k] for k, s in enumerate(SPLITS)},
            "source_detail": "nnxai.data.planted.generate(n, [seed, split number])"}
    return splits, meta
