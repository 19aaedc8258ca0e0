"""KL-LUCB best-arm identification and the anchor beam search of Ribeiro, Singh & Guestrin [65].

Anchors ([65] Sec. 3) treats every candidate rule ``A`` as an arm of a multi-armed bandit whose pulls are
draws ``z ~ D(z|A)`` with reward ``1[f(z) = f(x)]``; the arm's mean is the precision ``prec(A)``.

* KL confidence bounds (Kaufmann & Kalyanakrishnan 2013, used by [65] Sec. 3.1): with ``n`` pulls of mean
  ``p̂`` and exploration level ``β``,

      ub = max{q ∈ [p̂, 1] : n·KL(p̂, q) ≤ β},      lb = min{q ∈ [0, p̂] : n·KL(p̂, q) ≤ β},

  ``KL(p, q) = p log(p/q) + (1-p) log((1-p)/(1-q))`` the Bernoulli divergence.  Both are found by bisection
  to machine precision; for ``p̂ = 0`` the upper bound is ``1 - exp(-β/n)`` and for ``p̂ = 1`` the lower
  bound is ``exp(-β/n)`` (closed forms, tested).
* KL-LUCB ([65] Alg. "B-BestCand"): after one draw per arm, at round ``t`` let ``J`` be the ``B`` arms of
  highest empirical mean, ``u`` the arm outside ``J`` of largest upper bound and ``l`` the arm in ``J`` of
  smallest lower bound (level ``β(t, δ) = log(k₁ K t^α / δ) + log log(k₁ K t^α / δ)``, ``α = 1.1``,
  ``k₁ = 405.5``: Kaufmann & Kalyanakrishnan's exploration rate, as in the authors' code); stop when
  ``ub(u) - lb(l) ≤ ε`` and return ``J``, else pull ``u`` and ``l`` once more (``batch_size`` draws each).
* The beam search ([65] Alg. 2, with Alg. 3 ``GenerateCands``): from the empty anchor, extend each of the
  ``B`` anchors kept at the previous size by one predicate of ``x``, keep only candidates whose coverage
  exceeds that of the best anchor found so far, pick the ``B`` most precise with KL-LUCB, and check each
  of them: draw from ``D(z|A)`` until its precision is decided — its lower bound above ``τ`` (an anchor)
  or its upper bound below ``τ`` (not one), at level ``β = log(1/δ)`` ([65] Eq. 3:
  ``P(prec(A) ≥ τ) ≥ 1 - δ``).  An anchor is a checked candidate with ``prec_lb(A) > τ``; the anchor of
  largest coverage is returned.  [65] also starts with the empty anchor (``IF true``): it is returned when
  its own lower bound exceeds ``τ``.

Budget (a choice, not in [65]): ``max_samples`` bounds the draws spent on one input.  Each KL-LUCB call
may spend half of the draws left (the rest is kept for checking its picks); once its share is spent it
returns its current ``J``, and a candidate still undecided when the budget is spent is not an anchor; if
no anchor is found by then (or up to ``max_size`` predicates), the checked candidate of largest lower
bound is returned, marked as not meeting ``τ``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

#: KL-LUCB's exploration rate constants (Kaufmann & Kalyanakrishnan 2013): α > 1 and
#: k₁ > 2e + 1 + e/(α-1) + (e+1)/(α-1)² = 405.45 for α = 1.1.
ALPHA, K1 = 1.1, 405.5
#: Bisection steps for the KL bounds (2^-44 < 1e-13) and how far from 0 and 1 the means are clipped.
BISECTION_STEPS = 44
TINY = 1e-15

#: ``sample(anchors, n)``: for each anchor (a tuple of predicate ids) ``n`` fresh draws from D(z|A);
#: returns the number of draws on which the model's class equals the explained one, per anchor.
Sampler = Callable[[Sequence[tuple], int], np.ndarray]


def kl_bernoulli(p, q) -> np.ndarray:
    """``KL(Ber(p) || Ber(q))`` elementwise, with ``0 log 0 = 0`` (infinite where q is 0 or 1 and p is not)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p > 0, p * np.log(p / q), 0.0)
        b = np.where(p < 1, (1 - p) * np.log((1 - p) / (1 - q)), 0.0)
    return a + b


def _kl_inside(p: np.ndarray, q: np.ndarray, level: np.ndarray) -> np.ndarray:
    """``KL(p, q) <= level`` for ``p`` clipped into (0, 1) and ``q`` in (0, 1): the bisection's test, without
    the special cases of :func:`kl_bernoulli` (the clipping moves the bounds by < 1e-13)."""
    return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q)) <= level


def _clip(p, level) -> tuple[np.ndarray, np.ndarray]:
    p, level = np.broadcast_arrays(np.asarray(p, dtype=np.float64), np.asarray(level, dtype=np.float64))
    return np.clip(p, TINY, 1 - TINY), level


def kl_upper(p, level) -> np.ndarray:
    """``max{q ∈ [p, 1] : KL(p, q) ≤ level}`` elementwise (``level`` = β / n), by bisection."""
    p, level = _clip(p, level)
    lo, hi = p.copy(), np.full_like(p, 1 - TINY)
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        inside = _kl_inside(p, mid, level)
        lo, hi = np.where(inside, mid, lo), np.where(inside, hi, mid)
    return np.where(_kl_inside(p, hi, level), 1.0, lo)


def kl_lower(p, level) -> np.ndarray:
    """``min{q ∈ [0, p] : KL(p, q) ≤ level}`` elementwise (``level`` = β / n), by bisection."""
    p, level = _clip(p, level)
    lo, hi = np.full_like(p, TINY), p.copy()
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        inside = _kl_inside(p, mid, level)
        lo, hi = np.where(inside, lo, mid), np.where(inside, mid, hi)
    return np.where(_kl_inside(p, lo, level), 0.0, hi)


def exploration_rate(n_arms: int, t: int, delta: float) -> float:
    """KL-LUCB's ``β(t, δ) = log(k₁ K t^α / δ) + log log(k₁ K t^α / δ)``."""
    base = math.log(K1 * n_arms * t ** ALPHA / delta)
    return base + math.log(base)


@dataclass
class Budget:
    """Draws left for one input (``max_samples``), spent by every pull."""

    left: int

    def take(self, per_arm: int, n_arms: int) -> int:
        """Draws per arm granted for ``n_arms`` arms (``per_arm`` or fewer, the same for all), spent."""
        n = max(0, min(per_arm, self.left // max(n_arms, 1)))
        self.left -= n * n_arms
        return n


@dataclass
class ArmStats:
    """Pulls and positives of every anchor evaluated for one input (shared by the LUCB calls and checks)."""

    n: dict = field(default_factory=dict)
    positives: dict = field(default_factory=dict)

    def add(self, anchor: tuple, n: int, positives: float) -> None:
        self.n[anchor] = self.n.get(anchor, 0) + int(n)
        self.positives[anchor] = self.positives.get(anchor, 0.0) + float(positives)

    def mean(self, anchor: tuple) -> float:
        return self.positives[anchor] / self.n[anchor] if self.n.get(anchor) else 0.0

    def bounds(self, anchor: tuple, beta: float) -> tuple[float, float]:
        if not self.n.get(anchor):
            return 0.0, 1.0
        p, level = self.mean(anchor), beta / self.n[anchor]
        return float(kl_lower(p, level)), float(kl_upper(p, level))


def pull(sample: Sampler, stats: ArmStats, anchors: Sequence[tuple], batch: int, budget: Budget) -> bool:
    """``batch`` draws for each anchor (fewer when the budget runs out); False when nothing could be drawn."""
    n = budget.take(batch, len(anchors))
    if n == 0:
        return False
    for anchor, positives in zip(anchors, sample(list(anchors), n)):
        stats.add(anchor, n, positives)
    return True


def kl_lucb(sample: Sampler, arms: Sequence[tuple], top_n: int, epsilon: float, delta: float, batch: int,
            stats: ArmStats, budget: Budget) -> list[tuple]:
    """The ``top_n`` arms of highest precision, identified within ``epsilon`` at confidence ``1 - delta``
    (module docstring); an arm without draws is first pulled once (one draw: KL-LUCB's initialisation),
    then the two arms ``u`` and ``l`` get ``batch`` draws per round."""
    arms = list(arms)
    fresh = [a for a in arms if not stats.n.get(a)]
    if fresh:
        pull(sample, stats, fresh, 1, budget)
    if len(arms) <= top_n:
        return arms
    t = 1
    while True:
        means = np.array([stats.mean(a) for a in arms])
        counts = np.array([max(stats.n.get(a, 0), 1) for a in arms], dtype=np.float64)
        order = np.argsort(-means, kind="stable")
        best, rest = order[:top_n], order[top_n:]
        beta = exploration_rate(len(arms), t, delta)
        upper = kl_upper(means[rest], beta / counts[rest])
        lower = kl_lower(means[best], beta / counts[best])
        u, l = rest[int(np.argmax(upper))], best[int(np.argmin(lower))]
        if upper.max() - lower.min() <= epsilon or not pull(sample, stats, [arms[u], arms[l]], batch, budget):
            return [arms[i] for i in best]
        t += 1


def check_precision(sample: Sampler, anchor: tuple, tau: float, delta: float, batch: int, stats: ArmStats,
                    budget: Budget) -> tuple[float, float]:
    """Draw from D(z|A) until ``prec(A)`` is decided against ``tau`` at level ``log(1/δ)`` or the budget is
    spent; returns ``(lb, ub)``."""
    beta = math.log(1 / delta)
    while True:
        lb, ub = stats.bounds(anchor, beta)
        if lb > tau or ub < tau or not pull(sample, stats, [anchor], batch, budget):
            return lb, ub


@dataclass
class AnchorResult:
    """The anchor found (predicate ids), its estimated precision, bounds, coverage and draws spent."""

    anchor: tuple
    precision: float
    lower: float
    upper: float
    coverage: float
    meets_threshold: bool
    n_samples: int


def anchor_beam(sample: Sampler, coverage: Callable[[tuple], float], n_predicates: int,
                normalise: Callable[[tuple], tuple], *, tau: float,
                delta: float, epsilon: float, beam_width: int, batch: int, max_size: int,
                max_samples: int) -> AnchorResult:
    """[65] Alg. 2: the anchor of largest coverage among those of precision lower bound above ``tau``.

    ``normalise`` drops the predicates of a candidate that its others imply (the same set of instances:
    :meth:`._anchor_space.TableSpace.normalise`), so no anchor carries a redundant predicate.
    """
    stats, budget = ArmStats(), Budget(max_samples)
    checked: dict[tuple, tuple[float, float]] = {}

    def result(anchor: tuple, meets: bool) -> AnchorResult:
        lb, ub = checked[anchor]
        return AnchorResult(anchor, stats.mean(anchor), lb, ub, coverage(anchor), meets, max_samples - budget.left)

    pull(sample, stats, [()], batch, budget)
    checked[()] = check_precision(sample, (), tau, delta, batch, stats, budget)
    if checked[()][0] > tau:
        return result((), True)
    best, best_coverage, beam = None, -1.0, [()]
    for _ in range(min(max_size, n_predicates)):
        candidates = {normalise(tuple(sorted(set(a) | {p}))) for a in beam for p in range(n_predicates) if p not in a}
        candidates = sorted(candidates - set(beam))
        candidates = [c for c in candidates if coverage(c) > best_coverage]
        if not candidates or budget.left <= 0:
            break
        share = Budget(budget.left // 2)      # the rest is kept for checking the picks
        beam = kl_lucb(sample, candidates, min(beam_width, len(candidates)), epsilon, delta, batch, stats, share)
        budget.left -= budget.left // 2 - share.left
        for anchor in beam:
            checked[anchor] = check_precision(sample, anchor, tau, delta, batch, stats, budget)
            if checked[anchor][0] > tau and coverage(anchor) > best_coverage:
                best, best_coverage = anchor, coverage(anchor)
    if best is not None:
        return result(best, True)
    fallback = max(checked, key=lambda a: (checked[a][0], stats.mean(a), -len(a)))
    return result(fallback, False)
