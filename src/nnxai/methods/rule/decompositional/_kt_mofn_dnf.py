"""Disjunctions of M-of-N terms over boolean input attributes, and the bounded layer-wise rewriting that KT [81]
and M-of-N [82] share (survey Sec. III-A-2a: "layer-by-layer rule generation, then rewriting to omit the hidden
neurons").

A *literal* ``(j, s)`` is the attribute ``j`` true (``s``) or false; a *condition* ``(m, literals)`` holds when at
least ``m`` of its literals hold (a plain literal is ``(1, (lit,))``); a *term* is a frozenset of conditions, all
of which must hold; a :class:`DNF` is a list of terms, any of which may hold, kept with the boolean cover of every
term on the training inputs.

Rewriting a hidden unit's literal into the inputs substitutes the unit's DNF ("true") or the DNF of its negation
("false"); a conjunction of unit literals becomes the product of their DNFs, an M-of-N over unit literals the
dynamic programme :meth:`Rewriter.at_least`.  Products explode (a term of ``k`` literals over units with ``r``
input terms each gives ``r**k`` terms), so every DNF is **bounded to ``max_rules`` terms**: candidate terms are
taken in order of how many training inputs they cover (then fewest literals), and a DNF that had to leave a
viable term out is marked ``exact = False``.  A candidate is kept only when it is satisfiable and no kept term is
a subset of it (subsumption).

Terms are simplified (:meth:`Space.simplify`) with propositional identities (``x and not x`` is impossible, an
M-of-N whose literals are decided by the term's plain literals is reduced, an n-of-n is a conjunction) and, on
one-hot groups (MONK's attributes: exactly one value holds), with the value constraint: two values of one
attribute are impossible together, ``a1=1`` makes ``not a1=2`` redundant, ``not a1=1 and not a1=2`` is ``a1=3``.
The simplifications are exact on every input that respects the groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Lit = tuple[int, bool]
Cond = tuple[int, tuple[Lit, ...]]
Term = frozenset
#: Simplified terms remembered (the rewriting meets the same products again); the memo is emptied past it.
MEMO = 200_000


def plain(j: int, value: bool) -> Cond:
    return (1, ((int(j), bool(value)),))


def term_size(term: Term) -> int:
    """Number of literals of a term (an M-of-N condition counts its n literals, as ``rule_size`` does)."""
    return sum(len(lits) for _, lits in term)


@dataclass
class DNF:
    """A disjunction of terms with their cover ``(n_terms, n_train)`` on the training inputs; ``exact`` is
    false when a bound left a term out (then the DNF implies, but need not equal, what it stands for)."""

    terms: list
    cover: np.ndarray
    exact: bool = True

    @property
    def support(self) -> np.ndarray:
        return self.cover.sum(1)


class Space:
    """The boolean attributes of the training inputs, their one-hot groups, and term simplification."""

    def __init__(self, literals: np.ndarray, groups: list[tuple[int, ...]]):
        self.x = np.asarray(literals, dtype=bool)
        self.n, self.d = self.x.shape
        self.groups = [tuple(g) for g in groups]
        self._covers: dict[Cond, np.ndarray] = {}
        self._simplified: dict[Term, Term | None] = {}
        self._cols: dict[tuple, frozenset] = {}
        # group indicator of every column (for the vectorised one-hot contradiction test)
        self.group_matrix = np.zeros((self.d, max(len(self.groups), 1)), dtype=np.float32)
        for g, cols in enumerate(self.groups):
            self.group_matrix[list(cols), g] = 1.0

    # -- covers ------------------------------------------------------------------------------------------
    def cond_cover(self, cond: Cond) -> np.ndarray:
        if cond not in self._covers:
            m, lits = cond
            count = np.zeros(self.n, dtype=np.int64)
            for j, s in lits:
                count += self.x[:, j] if s else ~self.x[:, j]
            self._covers[cond] = count >= m
        return self._covers[cond]

    def cover(self, term: Term) -> np.ndarray:
        out = np.ones(self.n, dtype=bool)
        for cond in term:
            out &= self.cond_cover(cond)
        return out

    # -- simplification ----------------------------------------------------------------------------------
    def simplify(self, term) -> Term | None:
        """The term simplified, or ``None`` when no input respecting the one-hot groups satisfies it."""
        term = frozenset(term)
        if term not in self._simplified:
            if len(self._simplified) > MEMO:
                self._simplified.clear()
            self._simplified[term] = self._simplify(term)
        return self._simplified[term]

    def _simplify(self, term: Term) -> Term | None:
        conds = list(term)
        while True:
            value: dict[int, bool] = {}
            mofn = []
            for m, lits in conds:
                if m == 1 and len(lits) == 1:
                    j, s = lits[0]
                    if value.setdefault(j, s) != s:
                        return None
                else:
                    mofn.append((m, lits))
            known = self._implied(value)
            if known is None:
                return None
            reduced, forced = [], []
            for m, lits in mofn:
                r = (m, lits) if self._columns(lits).isdisjoint(known) else _reduce(m, lits, known)
                if r is None:
                    return None
                if r == ():
                    continue
                if r[0] == len(r[1]):          # n-of-n: a conjunction of its literals
                    forced += [plain(j, s) for j, s in r[1]]
                elif r not in reduced:
                    reduced.append(r)
            if not forced:
                return frozenset(self._canonical(value, known) + reduced)
            conds = [plain(j, s) for j, s in value.items()] + reduced + forced

    def _columns(self, lits: tuple) -> frozenset:
        if lits not in self._cols:
            self._cols[lits] = frozenset(j for j, _ in lits)
        return self._cols[lits]

    def _implied(self, value: dict[int, bool]) -> dict[int, bool] | None:
        """Every attribute value the plain literals decide under the one-hot constraint (``None``: none)."""
        if not self.groups:
            return value
        known = dict(value)
        for cols in self.groups:
            on = [j for j in cols if known.get(j) is True]
            if len(on) > 1:
                return None
            if on:
                for j in cols:
                    if j != on[0]:
                        known[j] = False
                continue
            off = [j for j in cols if known.get(j) is False]
            if len(off) == len(cols):
                return None
            if len(off) == len(cols) - 1:
                known[next(j for j in cols if j not in off)] = True
        return known

    def _canonical(self, value: dict[int, bool], known: dict[int, bool]) -> list[Cond]:
        """The plain literals that say the same as ``value``: per one-hot group its true value, else its false
        values; other attributes as given."""
        if not self.groups:
            return [plain(j, s) for j, s in value.items()]
        in_group = {j for cols in self.groups for j in cols}
        out = [plain(j, s) for j, s in value.items() if j not in in_group]
        for cols in self.groups:
            on = [j for j in cols if known.get(j) is True]
            if on:
                out.append(plain(on[0], True))
            else:
                out += [plain(j, False) for j in cols if value.get(j) is False]
        return out


def _reduce(m: int, lits: tuple, known: dict[int, bool]):
    """An M-of-N condition given decided attributes: ``()`` when it holds, ``None`` when it cannot, else the
    reduced ``(m, literals)`` (a pair ``x, not x`` always contributes exactly one)."""
    rest = []
    for j, s in lits:
        if j in known:
            m -= known[j] == s
        else:
            rest.append((j, s))
    columns = [j for j, _ in rest]
    if len(set(columns)) < len(columns):
        both = {j for j in columns if columns.count(j) == 2}
        rest = [(j, s) for j, s in rest if j not in both]
        m -= len(both)
    if m <= 0:
        return ()
    if m > len(rest):
        return None
    return (m, tuple(rest))


class Rewriter:
    """DNF algebra bounded to ``max_rules`` terms per DNF (module docstring)."""

    def __init__(self, space: Space, max_rules: int):
        self.space, self.max_rules = space, int(max_rules)

    def true(self) -> DNF:
        return DNF([frozenset()], np.ones((1, self.space.n), dtype=bool))

    def false(self) -> DNF:
        return DNF([], np.zeros((0, self.space.n), dtype=bool))

    def union(self, dnfs: list[DNF]) -> DNF:
        return self.combine(dnfs, [])

    def product(self, a: DNF, b: DNF) -> DNF:
        """The conjunction of two DNFs: pairs of terms in order of their joint training cover."""
        return self.combine([], [(a, b)])

    def conjunction(self, dnfs: list[DNF]) -> DNF:
        out = self.true()
        for d in sorted(dnfs, key=lambda d: len(d.terms)):
            out = self.product(out, d)
            if not out.terms:
                break
        return out

    def at_least(self, k: int, items: list[DNF]) -> list[DNF]:
        """``[A_0, ..., A_k]``: ``A_c`` is the DNF of "at least ``c`` of ``items`` hold", by the recurrence
        ``A_c(i) = A_c(i-1) or (A_{c-1}(i-1) and item_i)``."""
        table = [self.true()] + [self.false() for _ in range(k)]
        for i, item in enumerate(items):
            for c in range(min(i + 1, k), 0, -1):
                table[c] = self.combine([table[c]], [(table[c - 1], item)])
        return table

    def combine(self, bases: list[DNF], pairs: list[tuple[DNF, DNF]]) -> DNF:
        """``OR(bases) OR OR_p (a_p AND b_p)`` in one bounded pass: the terms of the bases and the pairs of terms
        of every product are ranked together by training cover (then literals), and only as many are built and
        simplified as the bound needs."""
        support, size, source, first, second = [], [], [], [], []
        for s, d in enumerate(bases):
            support.append(d.support.astype(np.float32))
            size.append(_sizes(d))
            source.append(np.full(len(d.terms), s))
            first.append(np.arange(len(d.terms)))
            second.append(np.zeros(len(d.terms), dtype=np.int64))
        for p, (a, b) in enumerate(pairs):
            if not a.terms or not b.terms:
                continue
            joint = a.cover.astype(np.float32) @ b.cover.T.astype(np.float32)
            ii, jj = np.nonzero(~self._contradictory(a, b))
            support.append(joint[ii, jj])
            size.append(_sizes(a)[ii] + _sizes(b)[jj])
            source.append(np.full(len(ii), len(bases) + p))
            first.append(ii)
            second.append(jj)
        exact = all(d.exact for d in bases) and all(a.exact and b.exact for a, b in pairs)
        if not support:
            return DNF([], np.zeros((0, self.space.n), dtype=bool), exact)
        if len(bases) == 1 and len(support) == 1:     # no product term: the base as it is
            return DNF(bases[0].terms, bases[0].cover, exact)
        if len(bases) == 1 and len(bases[0].terms) >= self.max_rules and len(support) > 1 \
                and max(v.max(initial=0) for v in support[1:]) < support[0].min():
            # a full base whose every term covers more training inputs than any new one: the new ones would
            # all be left out (conservatively inexact without building them)
            return DNF(bases[0].terms, bases[0].cover, exact and not any(len(v) for v in support[1:]))
        support, size, source, first, second = (np.concatenate(v) for v in (support, size, source, first, second))
        order = np.lexsort((second, first, source, size, -support))

        def candidates():
            for k in order:
                s, i, j = int(source[k]), int(first[k]), int(second[k])
                if s < len(bases):
                    yield bases[s].terms[i], True
                else:
                    a, b = pairs[s - len(bases)]
                    yield a.terms[i] | b.terms[j], False

        out = self.select(candidates(), tagged=True)
        out.exact = out.exact and exact
        return out

    def select(self, candidates, tagged: bool = False) -> DNF:
        """The DNF of candidate terms taken in priority order: simplified, deduplicated, not subsumed, at most
        ``max_rules`` (``exact`` false when a viable candidate was left out).  ``tagged``: the candidates are
        ``(term, already_simplified)`` pairs."""
        kept: list = []
        seen: set = set()
        exact = True
        for item in candidates:
            raw, done = item if tagged else (item, False)
            term = raw if done else self.space.simplify(raw)
            if term is None or term in seen:
                continue
            seen.add(term)
            if any(k <= term for k in kept):
                continue
            if len(kept) >= self.max_rules:
                exact = False
                break
            kept = [k for k in kept if not term <= k] + [term]
        covers = np.array([self.space.cover(t) for t in kept], dtype=bool).reshape(len(kept), self.space.n)
        order = sorted(range(len(kept)), key=lambda i: (-int(covers[i].sum()), term_size(kept[i]), _key(kept[i])))
        return DNF([kept[i] for i in order], covers[order], exact)

    # -- internals ---------------------------------------------------------------------------------------
    def _contradictory(self, a: DNF, b: DNF) -> np.ndarray:
        """Pairs of terms whose plain literals contradict (``x`` and ``not x``, two values of one group)."""
        pa, na = self._signature(a)
        pb, nb = self._signature(b)
        clash = pa @ nb.T + na @ pb.T
        if self.space.groups:
            ga, gb = pa @ self.space.group_matrix, pb @ self.space.group_matrix
            clash += np.clip(ga @ gb.T - pa @ pb.T, 0, None)
        return clash > 0

    def _signature(self, dnf: DNF) -> tuple[np.ndarray, np.ndarray]:
        """The plain literals of every term: (true, false) indicator matrices ``(n_terms, d)``, kept on the DNF."""
        if "_signature" not in dnf.__dict__:
            pos = np.zeros((len(dnf.terms), self.space.d), dtype=np.float32)
            neg = np.zeros_like(pos)
            for i, t in enumerate(dnf.terms):
                for m, lits in t:
                    if m == 1 and len(lits) == 1:
                        j, s = lits[0]
                        (pos if s else neg)[i, j] = 1.0
            dnf.__dict__["_signature"] = (pos, neg)
        return dnf.__dict__["_signature"]


def _sizes(dnf: DNF) -> np.ndarray:
    """Literals of every term of a DNF, kept on it."""
    if "_sizes" not in dnf.__dict__:
        dnf.__dict__["_sizes"] = np.array([term_size(t) for t in dnf.terms], dtype=np.int64)
    return dnf.__dict__["_sizes"]


def _key(term: Term) -> tuple:
    """A deterministic order of terms (frozensets iterate in hash order)."""
    return tuple(sorted((len(lits) > 1, lits, m) for m, lits in term))


def condition_record(cond: Cond, thresholds: np.ndarray) -> dict:
    """A condition as a :class:`~nnxai.explanations.RuleSet` condition over the inputs."""
    m, lits = cond
    return {"m": int(m), "literals": [{"feature": int(j), "op": ">" if s else "<=", "threshold": float(thresholds[j])}
                                      for j, s in lits]}


def rule_records(term: Term, thresholds: np.ndarray) -> list[dict]:
    """A term's conditions, plain literals first, in a fixed order."""
    return [condition_record((m, lits), thresholds) for _, lits, m in sorted((len(c) > 1, c, m) for m, c in term)]


def decision_list(by_class: list[tuple[int, DNF]], space: Space, thresholds: np.ndarray,
                  network_classes: np.ndarray) -> tuple[list[dict], int]:
    """The rules of the classes' DNFs in the given order (within a class: by training cover), and the default:
    the network's most frequent class on the training inputs no rule covers (on all of them if none is left)."""
    rules, covered = [], np.zeros(space.n, dtype=bool)
    for cls, dnf in by_class:
        for term, cover in zip(dnf.terms, dnf.cover):
            rules.append({"conditions": rule_records(term, thresholds), "prediction": int(cls),
                          "support": int(cover.sum())})
            covered |= cover
    rest = network_classes[~covered] if (~covered).any() else network_classes
    return rules, int(np.argmax(np.bincount(rest, minlength=2)))
