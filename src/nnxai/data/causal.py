"""``causal``: seeded tables drawn from a linear-Gaussian structural causal model (SCM) with a known DAG.

Causal Shapley values (Heskes, Sijben, Bucur & Claassen 2020, survey [107]) need the causal graph of the
data; no bundled table comes with one, so this set is generated from a documented SCM. Features are the
six variables below, in topological order (every parent has a smaller index), all centred and of
roughly unit variance, so they are stored as drawn (no standardisation: the SCM holds in the units the
network sees)::

    X1 = ε1                            σ1 = 1.0
    X2 = 0.8·X1 + ε2                   σ2 = 0.6      (var 1)
    X3 = −0.6·X1 + ε3                  σ3 = 0.8      (var 1)
    X4 = 0.7·X3 + ε4                   σ4 = 0.7      (var 0.98)
    X5 = ε5                            σ5 = 1.0      independent of everything
    X6 = 0.5·X2 − 0.5·X4 + ε6          σ6 = 0.5      child of the label-relevant features

    DAG:  X1 → X2,  X1 → X3 → X4,  {X2, X4} → X6;  X5 alone.

**Label** (:data:`RULE_TEXT`): ``y = 1[2.0·X2 − 1.5·X4 + ε_y > 0]``, ``ε_y ~ N(0, 0.5²)``, all noises
independent. So ``y`` depends on X2 and X4 only (given them it is independent of X1, X3, X5 and X6); X1
and X3 act on it through X2 and X4 (ancestors: causal Shapley gives them indirect credit); X6 is a
child of X2 and X4, predictive of ``y`` but not a cause; X5 is irrelevant. Classes are 50/50 in
expectation (the score is symmetric about 0).

The graph is exposed as data: :data:`SCM` (a :class:`LinearGaussianSCM`: coefficient matrix,
intercepts, noise scales, names, :meth:`~LinearGaussianSCM.parents`), :data:`LABEL` (weights, noise) and
:data:`CAUSAL_GRAPHS` (data set name -> SCM, what methods needing a graph check); ``meta.json`` records
both (:func:`build`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nnxai.data.splits import SPLITS, generated_sizes

CLASS_NAMES = ["negative", "positive"]
RULE_TEXT = "positive iff 2.0*x2 - 1.5*x4 + noise > 0, noise ~ N(0, 0.5^2)"


@dataclass(frozen=True, eq=False)
class LinearGaussianSCM:
    """``X_i = intercepts[i] + Σ_j coefficients[i, j]·X_j + noise_std[i]·ε_i``, ``ε ~ N(0, I)``.

    ``coefficients[i, j] != 0`` is the edge ``X_j → X_i``; the matrix is strictly lower triangular, i.e.
    the variables are listed in a topological order.
    """

    names: tuple[str, ...]
    coefficients: np.ndarray
    intercepts: np.ndarray
    noise_std: np.ndarray

    def __post_init__(self):
        d = len(self.names)
        coef = np.asarray(self.coefficients, dtype=np.float64)
        intercepts = np.asarray(self.intercepts, dtype=np.float64)
        noise = np.asarray(self.noise_std, dtype=np.float64)
        if coef.shape != (d, d) or intercepts.shape != (d,) or noise.shape != (d,):
            raise ValueError(f"an SCM over {d} variables needs coefficients ({d}, {d}), intercepts ({d},) and "
                             f"noise_std ({d},); got {coef.shape}, {intercepts.shape}, {noise.shape}")
        if np.any(np.triu(coef) != 0):
            raise ValueError("coefficients must be strictly lower triangular (variables in topological "
                             f"order, X_j -> X_i only for j < i); got\n{coef}")
        if not np.all(np.isfinite(noise)) or np.any(noise < 0):
            raise ValueError(f"noise_std must be finite and >= 0, got {noise.tolist()}")
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        for name, value in (("coefficients", coef), ("intercepts", intercepts), ("noise_std", noise)):
            value.flags.writeable = False
            object.__setattr__(self, name, value)

    @property
    def n_features(self) -> int:
        return len(self.names)

    def parents(self, i: int) -> list[int]:
        """Indices ``j`` with an edge ``X_j → X_i``."""
        return [int(j) for j in np.flatnonzero(self.coefficients[i])]

    def from_noise(self, noise: np.ndarray) -> np.ndarray:
        """The variables ``(n, d)`` produced by standard-normal ``noise`` ``(n, d)``, in topological order."""
        noise = np.asarray(noise, dtype=np.float64)
        x = np.empty_like(noise)
        for i in range(self.n_features):
            x[:, i] = self.intercepts[i] + x[:, :i] @ self.coefficients[i, :i] + self.noise_std[i] * noise[:, i]
        return x

    def covariance(self) -> np.ndarray:
        """``Cov(X) = A diag(σ²) Aᵀ`` with ``A = (I − B)⁻¹``."""
        a = np.linalg.inv(np.eye(self.n_features) - self.coefficients)
        return a @ np.diag(self.noise_std ** 2) @ a.T

    def mean(self) -> np.ndarray:
        """``E[X] = (I − B)⁻¹ c``."""
        return np.linalg.solve(np.eye(self.n_features) - self.coefficients, self.intercepts)

    def as_dict(self) -> dict:
        return {"names": list(self.names), "coefficients": self.coefficients.tolist(),
                "intercepts": self.intercepts.tolist(), "noise_std": self.noise_std.tolist(),
                "parents": {self.names[i]: [self.names[j] for j in self.parents(i)]
                            for i in range(self.n_features)}}

    @classmethod
    def from_dict(cls, doc: Mapping) -> "LinearGaussianSCM":
        return cls(tuple(doc["names"]), np.asarray(doc["coefficients"]), np.asarray(doc["intercepts"]),
                   np.asarray(doc["noise_std"]))

    def same_as(self, other: "LinearGaussianSCM") -> bool:
        return (self.names == other.names and np.array_equal(self.coefficients, other.coefficients)
                and np.array_equal(self.intercepts, other.intercepts)
                and np.array_equal(self.noise_std, other.noise_std))


@dataclass(frozen=True)
class LinearLabel:
    """``y = 1[Σ_i weights[i]·X_i + noise_std·ε_y > 0]``."""

    weights: tuple[float, ...]
    noise_std: float

    def as_dict(self) -> dict:
        return {"weights": list(self.weights), "noise_std": self.noise_std, "threshold": 0.0}


_NAMES = ("x1", "x2", "x3", "x4", "x5", "x6")
_B = np.zeros((6, 6))
_B[1, 0] = 0.8      # X1 -> X2
_B[2, 0] = -0.6     # X1 -> X3
_B[3, 2] = 0.7      # X3 -> X4
_B[5, 1] = 0.5      # X2 -> X6
_B[5, 3] = -0.5     # X4 -> X6

#: The SCM of the ``causal`` data set (module docstring).
SCM = LinearGaussianSCM(_NAMES, _B, np.zeros(6), np.array([1.0, 0.6, 0.8, 0.7, 1.0, 0.5]))
#: How its label is made from the features.
LABEL = LinearLabel(weights=(0.0, 2.0, 0.0, -1.5, 0.0, 0.0), noise_std=0.5)
#: Data sets whose causal graph is known: name -> SCM of their features.
CAUSAL_GRAPHS: dict[str, LinearGaussianSCM] = {"causal": SCM}


def generate(n: int, rng: np.random.Generator | int | Sequence[int] | None) -> dict[str, np.ndarray]:
    """Draw ``n`` rows: ``x`` float32 ``(n, 6)`` from :data:`SCM`, ``y`` int64 from :data:`LABEL`.

    The stream is consumed in a fixed order (feature noise, then label noise), so a seed gives the same
    rows on every machine.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    x = SCM.from_noise(rng.standard_normal((int(n), SCM.n_features)))
    score = x @ np.asarray(LABEL.weights) + LABEL.noise_std * rng.standard_normal(int(n))
    return {"x": x.astype(np.float32), "y": (score > 0).astype(np.int64)}


def build(sizes: Mapping[str, int | None], seed: int) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Each split from its own stream ``[seed, split number]`` (resizing one leaves the others alone)."""
    sizes = generated_sizes("causal", sizes)
    splits = {split: generate(sizes[split], [seed, k]) for k, split in enumerate(SPLITS)}
    meta = {"class_names": CLASS_NAMES, "feature_names": list(SCM.names), "rule": RULE_TEXT,
            "scm": SCM.as_dict(), "label": LABEL.as_dict(),
            "split_seeds": {s: [seed, k] for k, s in enumerate(SPLITS)},
            "source_detail": "nnxai.data.causal.generate(n, [seed, split number]); features not standardised"}
    return splits, meta
