"""Mixed-integer linear programs over ReLU networks, for ``scipy.optimize.milp`` (HiGHS).

DACE [79] (Kanamori et al., IJCAI 2020, Sec. 4.3) writes the classifier's output as linear constraints on
binary and continuous variables.  For a ReLU unit ``h = max(0, z)``, ``z = w·u + b``, whose pre-activation is
known to lie in ``[l, u_z]`` over the whole feasible input box, the encoding is *exact* (Tjeng et al.'s
big-M form; the DACE code's split ``z = ξ − ξ̄`` with ``ξ <= M ν``, ``ξ̄ <= M̄ (1 − ν)`` is the same set):

* ``u_z <= 0``: the unit is always off, ``h = 0``;
* ``l >= 0``: always on, ``h = z``;
* otherwise a binary ``ν``: ``h >= z``, ``h >= 0``, ``h <= z − l (1 − ν)``, ``h <= u_z ν``.

The bounds ``[l, u_z]`` come from interval arithmetic (DACE's code: the box of the inputs through one layer)
or, much tighter, from linear programming over any region of the inputs (:func:`tightened_bounds`); any
bounds that hold on the region keep the encoding exact there.  The DACE code encodes one hidden layer; the
same constraints are stacked here for every hidden layer.

The network is read as a chain ``affine, ReLU, affine, ReLU, ..., affine`` by tracing it (``torch.fx``):
consecutive linear modules (DualNet's diagonal selector before ``fc1``) are composed; a network with any
other operation is refused, never approximated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch.fx as fx
from scipy.optimize import Bounds, LinearConstraint, milp
from torch import nn

#: Relative widening of the interval bounds, so that float rounding never cuts the true activation off.
BOUND_SLACK = 1e-6
#: ``flatten``/``view``/``reshape`` of a (n, d) table are no-ops in the traced chain.
_NO_OPS = {"flatten", "view", "reshape", "float"}


def affine_relu_chain(model: nn.Module) -> list[tuple[np.ndarray, np.ndarray]]:
    """The network as ``[(W_1, b_1), ..., (W_L, b_L)]`` (float64) with a ReLU after every map but the last.

    Raises ``ValueError`` when the traced forward pass is anything else than linear modules and ReLUs (and
    no-op reshapes of the input)."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as error:                  # noqa: BLE001 - any tracing failure means "not a plain chain"
        raise ValueError(f"cannot trace {type(model).__name__} into a Linear/ReLU chain: {error}") from None
    modules = dict(model.named_modules())
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    pending: tuple[np.ndarray, np.ndarray] | None = None
    for node in graph.nodes:
        if node.op in ("placeholder", "output") or (node.op == "call_method" and node.target in _NO_OPS):
            continue
        module = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, nn.Linear):
            w = module.weight.detach().double().cpu().numpy()
            b = (module.bias.detach().double().cpu().numpy() if module.bias is not None else np.zeros(len(w)))
            pending = (w, b) if pending is None else (w @ pending[0], w @ pending[1] + b)
        elif isinstance(module, nn.ReLU) and pending is not None:
            layers.append(pending)
            pending = None
        else:
            raise ValueError(f"{type(model).__name__} is not a Linear/ReLU chain: it computes "
                             f"{node.op} {node.target!r}")
    if pending is None:
        raise ValueError(f"{type(model).__name__} does not end in a linear layer")
    return [*layers, pending]


def chain_forward(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """Logits of the chain for rows ``x`` (float64), the reference the encoding must reproduce."""
    h = np.asarray(x, dtype=np.float64)
    for k, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if k < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h


def interval_bounds(layers, lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pre-activation bounds ``(l, u)`` of every layer over the input box ``[lo, hi]`` (interval arithmetic),
    widened by :data:`BOUND_SLACK`."""
    out = []
    a, b_ = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    for k, (w, bias) in enumerate(layers):
        pos, neg = np.maximum(w, 0.0), np.minimum(w, 0.0)
        low, high = pos @ a + neg @ b_ + bias, pos @ b_ + neg @ a + bias
        slack = BOUND_SLACK * (1.0 + np.maximum(np.abs(low), np.abs(high)))
        low, high = low - slack, high + slack
        out.append((low, high))
        a, b_ = np.maximum(low, 0.0), np.maximum(high, 0.0)
    return out


@dataclass
class MilpBuilder:
    """Variables (bounds, integrality, objective) and sparse rows ``lo <= A v <= hi`` of one MILP."""

    lb: list = field(default_factory=list)
    ub: list = field(default_factory=list)
    integer: list = field(default_factory=list)
    cost: list = field(default_factory=list)
    rows: list = field(default_factory=list)          # (columns, values, lo, hi)

    @property
    def n_vars(self) -> int:
        return len(self.lb)

    def add_vars(self, n: int, lb, ub, integer: bool = False, cost=0.0) -> np.ndarray:
        """``n`` new variables; returns their indices."""
        start = self.n_vars
        self.lb.extend(np.broadcast_to(np.asarray(lb, dtype=np.float64), (n,)).tolist())
        self.ub.extend(np.broadcast_to(np.asarray(ub, dtype=np.float64), (n,)).tolist())
        self.integer.extend([1 if integer else 0] * n)
        self.cost.extend(np.broadcast_to(np.asarray(cost, dtype=np.float64), (n,)).tolist())
        return np.arange(start, start + n)

    def add_row(self, columns, values, lo: float, hi: float) -> None:
        columns, values = np.asarray(columns, dtype=np.int64).ravel(), np.asarray(values, dtype=np.float64).ravel()
        keep = values != 0.0
        self.rows.append((columns[keep], values[keep], float(lo), float(hi)))

    def matrix(self) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
        if not self.rows:
            return sp.csr_matrix((0, self.n_vars)), np.zeros(0), np.zeros(0)
        cols = np.concatenate([r[0] for r in self.rows])
        vals = np.concatenate([r[1] for r in self.rows])
        rows = np.repeat(np.arange(len(self.rows)), [len(r[0]) for r in self.rows])
        a = sp.csr_matrix((vals, (rows, cols)), shape=(len(self.rows), self.n_vars))
        return a, np.array([r[2] for r in self.rows]), np.array([r[3] for r in self.rows])

    def solve(self, time_limit: float, mip_rel_gap: float, node_limit: int | None = None):
        """``scipy.optimize.milp`` (HiGHS) on the program; its ``OptimizeResult``.  A node limit stops HiGHS
        after the same work on every run (a time limit, after however much the machine's load allowed)."""
        a, lo, hi = self.matrix()
        constraints = [LinearConstraint(a, lo, hi)] if a.shape[0] else []
        options = {"time_limit": float(time_limit), "mip_rel_gap": float(mip_rel_gap), "presolve": True}
        if node_limit is not None:
            options["node_limit"] = int(node_limit)
        return milp(np.asarray(self.cost), integrality=np.asarray(self.integer),
                    bounds=Bounds(np.asarray(self.lb), np.asarray(self.ub)), constraints=constraints, options=options)


@dataclass
class EncodedNetwork:
    """Where the encoded network lives in the program: the variables of every hidden layer, its binaries,
    the pre-activation bounds, and the output layer ``(W_L, b_L)`` (logits = ``W_L h_last + b_L``)."""

    hidden: list[np.ndarray]
    binaries: list[np.ndarray]
    bounds: list[tuple[np.ndarray, np.ndarray]]
    out_weight: np.ndarray
    out_bias: np.ndarray


def encode_relu_chain(builder: MilpBuilder, layers, inputs: np.ndarray, bounds) -> EncodedNetwork:
    """Add the exact big-M encoding of the chain ``layers`` (module docstring) on the input variables
    ``inputs``, with ``bounds`` on the pre-activations of every hidden layer that hold wherever the inputs
    may go (:func:`interval_bounds` or :func:`tightened_bounds` of their box)."""
    previous, hidden, binaries = np.asarray(inputs), [], []
    for (w, b), (low, high) in zip(layers[:-1], bounds):
        h = builder.add_vars(len(w), 0.0, np.maximum(high, 0.0))
        nu = []
        for j in range(len(w)):
            cols = np.concatenate([[h[j]], previous])
            if high[j] <= 0.0:                 # always off: h = 0 (its upper bound is 0)
                continue
            if low[j] >= 0.0:                  # always on: h - w·u = b
                builder.add_row(cols, np.concatenate([[1.0], -w[j]]), b[j], b[j])
                continue
            v = builder.add_vars(1, 0.0, 1.0, integer=True)[0]
            nu.append(v)
            builder.add_row(cols, np.concatenate([[1.0], -w[j]]), b[j], np.inf)                       # h >= z
            builder.add_row(np.append(cols, v), np.concatenate([[1.0], -w[j], [-low[j]]]), -np.inf,
                            b[j] - low[j])                                                            # h <= z - l(1-ν)
            builder.add_row([h[j], v], [1.0, -high[j]], -np.inf, 0.0)                                  # h <= u ν
        hidden.append(h)
        binaries.append(np.asarray(nu, dtype=np.int64))
        previous = h
    w_out, b_out = layers[-1]
    return EncodedNetwork(hidden, binaries, bounds, w_out, b_out)


def require_class(builder: MilpBuilder, net: EncodedNetwork, target: int, margin: float) -> None:
    """Rows ``logit_target − logit_c >= margin`` for every other class ``c``."""
    last = net.hidden[-1]
    for c in range(len(net.out_weight)):
        if c != target:
            builder.add_row(last, net.out_weight[target] - net.out_weight[c],
                            net.out_bias[c] - net.out_bias[target] + margin, np.inf)


def solve_forward(layers, x: np.ndarray, bounds) -> tuple[list[np.ndarray], np.ndarray]:
    """The encoding's hidden values and logits with the inputs fixed to ``x`` and the big-M ``bounds`` of a
    box around it (a feasibility MILP): what the exactness test compares with the network."""
    builder = MilpBuilder()
    x = np.asarray(x, dtype=np.float64)
    inputs = builder.add_vars(len(x), x, x)
    net = encode_relu_chain(builder, layers, inputs, bounds)
    result = builder.solve(time_limit=60.0, mip_rel_gap=0.0)
    if result.x is None:
        raise RuntimeError(f"the encoding with fixed inputs is infeasible: {result.message}")
    hidden = [result.x[h] for h in net.hidden]
    return hidden, net.out_weight @ hidden[-1] + net.out_bias


def relax_layers(builder: MilpBuilder, layers, inputs: np.ndarray, bounds) -> np.ndarray:
    """Add the *triangle* LP relaxation of the ReLU layers that ``bounds`` covers: ``h >= 0``, ``h >= z``,
    ``h <= u (z − l) / (u − l)`` (``h = z`` or ``h = 0`` where the unit is stable); the last layer's variables."""
    previous = np.asarray(inputs)
    for (w, bias), (low, high) in zip(layers, bounds):
        h = builder.add_vars(len(w), 0.0, np.maximum(high, 0.0))
        for j in range(len(w)):
            cols = np.concatenate([[h[j]], previous])
            if high[j] <= 0.0:
                continue
            if low[j] >= 0.0:
                builder.add_row(cols, np.concatenate([[1.0], -w[j]]), bias[j], bias[j])
                continue
            slope = high[j] / (high[j] - low[j])
            builder.add_row(cols, np.concatenate([[1.0], -w[j]]), bias[j], np.inf)
            builder.add_row(cols, np.concatenate([[1.0], -slope * w[j]]), -np.inf, slope * (bias[j] - low[j]))
        previous = h
    return previous


def tightened_bounds(layers, region, known=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pre-activation bounds of every hidden layer by linear programming (the LP step of Tjeng et al.'s
    progressive bound tightening): each unit's pre-activation is minimised and maximised over the LP
    relaxation of the input ``region`` and the triangle relaxation of the layers before it.

    ``region()`` returns a fresh :class:`MilpBuilder` holding the (relaxed) constraints on the inputs and
    the indices of the input variables; its integrality is ignored.  ``known``: bounds that already hold
    (e.g. over a larger region), intersected with the new ones.  The bounds contain every value the network
    takes on the region and are far tighter than interval arithmetic, so the big-M relaxation is stronger
    and HiGHS needs far fewer nodes."""
    from scipy.optimize import linprog

    bounds = []
    for k in range(len(layers) - 1):
        b, inputs = region()
        previous = relax_layers(b, layers[:k], inputs, bounds)
        a, row_lo, row_hi = b.matrix()
        eq = row_lo == row_hi
        upper, lower = ~eq & np.isfinite(row_hi), ~eq & np.isfinite(row_lo)
        lp = {"A_ub": sp.vstack([a[upper], -a[lower]]).tocsr(), "b_ub": np.concatenate([row_hi[upper], -row_lo[lower]]),
              "A_eq": a[eq] if eq.any() else None, "b_eq": row_lo[eq] if eq.any() else None,
              "bounds": np.column_stack([b.lb, b.ub]), "method": "highs"}
        w, bias = layers[k]
        low, high = np.empty(len(w)), np.empty(len(w))
        for j in range(len(w)):
            c = np.zeros(b.n_vars)
            c[previous] = w[j]
            ends = []
            for sign in (1.0, -1.0):
                res = linprog(sign * c, **lp)
                if res.status == 2:            # the region is empty: any bounds hold, the MILP is infeasible
                    return [(np.zeros(len(wk)), np.zeros(len(wk))) for wk, _ in layers[:-1]]
                if res.status != 0:
                    raise RuntimeError(f"bound tightening LP failed: {res.message}")
                ends.append(sign * res.fun + bias[j])
            low[j], high[j] = ends
        slack = BOUND_SLACK * (1.0 + np.maximum(np.abs(low), np.abs(high)))
        low, high = low - slack, high + slack
        if known is not None:
            low, high = np.maximum(low, known[k][0]), np.minimum(high, known[k][1])
        bounds.append((low, high))
    return bounds


def box_region(lo: np.ndarray, hi: np.ndarray):
    """A :func:`tightened_bounds` region: the box ``[lo, hi]``."""
    def region():
        b = MilpBuilder()
        return b, b.add_vars(len(lo), lo, hi)
    return region
