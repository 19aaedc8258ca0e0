"""Influence functions (survey ref. [73]; Koh & Liang, "Understanding black-box predictions via influence
functions", ICML 2017).

Upweighting a training point ``z`` by ``ε`` in the empirical risk moves its minimiser θ̂ by
``dθ̂/dε = −H⁻¹ ∇L(z, θ̂)`` (paper Eq. 1), and so changes the loss at a test point ``z_test`` by

    I_up,loss(z, z_test) = −∇L(z_test, θ̂)ᵀ H⁻¹ ∇L(z, θ̂)                      (paper Eq. 2)

where ``H = ∇²R(θ̂)`` is the Hessian of the training objective.  Removing ``z`` is upweighting it by
``ε = −1/n``, so the leave-one-out change of the test loss is predicted as ``−(1/n) I_up,loss`` (what the
``loo_correlation`` metric checks against real retraining, paper Fig. 2).  The test loss is the cross-entropy at
the test input's *label* (paper Eq. 2 and Fig. 4: the loss of ``z_test = (x_test, y_test)``), so ``targets``
are the test labels, not the predictions.  ``I_up,loss < 0``: upweighting ``z`` lowers the test loss, a
*helpful* training point; ``> 0``: a *harmful* one (paper Sec. 5.1, Fig. 4).

Solvers of ``s_test = H⁻¹ ∇L(z_test)`` (paper Sec. 3), chosen by ``solver``:

* ``head``: the convex problem of the linear head ``model.classifier`` on the frozen penultimate features
  (:mod:`._influence_head`): ``R(Θ) = (1/n) Σ L + (λ/2)||Θ||²`` is first minimised to convergence (damped
  Newton, from the network's own head, until ``max |∇R| <= fit_tol``), then ``H`` is built explicitly and
  factored (Cholesky): ``H⁻¹`` is exact.  As the paper's Inception experiment (Sec. 5.1), which freezes all but
  the top layer and trains it to convergence; the network's head itself is not a minimiser of ``R`` (trained
  without the L2 term, stopped early), so the influence is that of the refitted head, whose parameters are
  ``extra["fit_grad_max"]`` from stationary.
* ``lissa`` / ``cg``: every parameter of the network at its trained weights (:mod:`._influence_hvp`), with
  Hessian-vector products by double backward and the damped ``H + λI`` (the paper's remedy for non-convex
  networks, Sec. 4.2): LiSSA's stochastic recursion (Agarwal et al. 2017: ``depth``, ``scale``,
  ``repeats``, minibatch size) or conjugate gradients on full-batch products.  Then ``∇L(z_i)ᵀ s_test`` for
  every training point from per-example gradients.  LiSSA is stable only when ``scale`` exceeds half the
  largest eigenvalue of every minibatch Hessian (batch 1: of single-point Hessians, up to ~1200 on the CNNs
  here, against ~130 for the mean) and converges only once ``depth ≫ scale/λ``; CG stops at the first
  direction of negative curvature of ``H + λI`` (a trained MLP's Hessian can have eigenvalues below −λ).
  ``extra["solve_residual"]`` says how far either got.
* ``auto``: ``cg`` over all parameters on a network of at most :data:`AUTO_MAX_PARAMETERS` parameters, ``head``
  on a larger one (:func:`resolve_solver`; ``extra["solver"]`` records which ran).  Our rule, fixed from cost
  alone before any influence or leave-one-out number was read: a full-batch Hessian-vector product costs
  ~``n·P`` and CG needs ~``√κ`` of them per explained input, so the tabular MLPs of the project (786-1138
  parameters, ~1-3k training points: ~0.1-0.2 s an input, measured) get the paper's all-parameter influence in
  the default run, while the CNNs (≥ 24k parameters: minutes to hours an input) keep the exact head solve.  A
  rule inside the method rather than per-data-set method parameters because the configuration gives a method
  one parameter block for every data set and model (only the counts are thinned per data set).

Choices the paper leaves open: the damping ``λ`` is the L2 weight of ``R`` in both solvers (the paper adds the
damping to a Hessian that already has the training run's weight decay; the networks here train without one);
the head regularises its bias like its weights (``H`` positive definite); the all-parameter solvers run on a
float64 copy of the network; each test input's LiSSA recursions are seeded from (run seed, test index,
repeat), so an estimate does not depend on the other inputs explained with it.

``extra`` holds ``solver`` (the one that ran) and, per explained input: ``harmful_examples``/``harmful_scores``
(largest ``I_up,loss`` first;
``examples``/``scores`` are the most helpful, most negative first), ``predictions``, ``test_loss`` (at the
label, under the influence model: the refitted head or the network), ``solve_residual`` (``||(H + λI) s −
∇L(z_test)|| / ||∇L(z_test)||``: 0 for an exact solve); and ``n_train``, ``n_parameters``; for ``head``
``fit_grad_max`` and ``hessian_eigenvalues`` (smallest, largest); for ``cg`` ``cg_iterations`` and
``cg_negative_curvature`` per input.
"""

from __future__ import annotations


import torch
from torch import nn

from nnxai.explanations import Examples
from nnxai.methods.base import ExampleSelector, explained_indices
from nnxai.methods.example import _influence_head as head
from nnxai.methods.example import _influence_hvp as full
from nnxai.params import N_EXPLAIN, Block, Choice, Float, Int
from nnxai.registry import register
from nnxai.ops.cav import eval_mode

SOLVERS = ("auto", "head", "lissa", "cg")
AUTO_MAX_PARAMETERS = 2000   # solver auto: cg over all parameters up to here, head above (see the module docstring)




def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def resolve_solver(solver: str, model: nn.Module) -> str:
    """The solver that runs: ``solver`` itself, or for ``auto`` ``cg`` when ``model`` has at most
    :data:`AUTO_MAX_PARAMETERS` parameters and ``head`` otherwise (the module docstring says why)."""
    if solver != "auto":
        return solver
    n_parameters = sum(q.numel() for q in model.parameters())
    return "cg" if n_parameters <= AUTO_MAX_PARAMETERS else "head"


@register("influence_functions")
class InfluenceFunctions(ExampleSelector):
    """The most helpful and most harmful training points of each explained test input by ``I_up,loss`` [73].

    :meth:`fit` prepares the solver on the train split (``head``: the refitted head ``theta_``, its features
    ``features_``, labels ``labels_``, Hessian ``hessian_`` and its Cholesky factor ``cholesky_``; ``lissa``/
    ``cg``: a float64 copy ``net_`` of the network and the split ``x_train_``, ``y_train_``).
    :meth:`influence` gives ``I_up,loss`` of every training point for given test inputs (the metric
    ``loo_correlation`` reuses it); :meth:`select` keeps the ``top_k`` of each side.
    """

    parameters = {
        "n_explain": N_EXPLAIN,
        "top_k": Int("training points kept per explained input on each side: the most helpful (examples, most "
                     "negative I_up,loss) and the most harmful (extra.harmful_examples)", low=1, at_most="train"),
        "solver": Choice("how s_test = H⁻¹ ∇L(z_test) is computed (paper Sec. 3): head = explicit Hessian of the "
                         "convex problem of the refitted linear head; lissa = LiSSA's stochastic recursion over "
                         "all parameters; cg = conjugate gradients over all parameters; auto = cg on a network "
                         f"of at most {AUTO_MAX_PARAMETERS} parameters (the tabular MLPs), head above (the CNNs)",
                         SOLVERS),
        "damping": Float("λ: the L2 term (λ/2)||θ||² of the training objective R, i.e. the damping λI added to "
                         "the Hessian (paper Sec. 4.2)", low=0.0, low_open=True),
        "fit_steps": Int("solver head: at most this many Newton steps of the head fit to the minimiser of R",
                         low=1),
        "fit_tol": Float("solver head: the fit (and the metric's leave-one-out refits) stop once max |∇R| is at "
                         "most this", low=0.0, low_open=True),
        "lissa": Block("solver lissa: the recursion (Agarwal et al.; paper Sec. 3)", {
            "depth": Int("recursion steps t", low=1),
            "scale": Float("the scale s: the eigenvalues of H + λI must lie in (0, 2s)", low=0.0, low_open=True),
            "repeats": Int("independent recursions averaged (the paper's r)", low=1),
            "batch_size": Int("training points drawn per step for the stochastic Hessian H̃_j", low=1),
        }),
        "cg": Block("solver cg: conjugate gradients on (H + λI) s = ∇L(z_test)", {
            "steps": Int("at most this many iterations (full-batch Hessian-vector products)", low=1),
            "tol": Float("stop at relative residual ||r|| / ||∇L(z_test)|| <= tol", low=0.0, low_open=True),
        }),
        "batch_size": Int("solvers lissa/cg: training points per batch of per-example gradients (memory only)",
                          low=1),
    }
    needs_linear_head = True   # solver head (and auto); every network here has one (lissa/cg would not need it)

    # -- fitting -----------------------------------------------------------------------------------------
    def _fit(self, model: nn.Module, train) -> None:
        p = self.params
        lam = float(p["damping"])
        y = torch.as_tensor(train.y).long().cpu()
        self.n_train_ = len(y)
        self.solver_ = resolve_solver(p["solver"], model)
        if self.solver_ == "head":
            with eval_mode(model):
                f = head.head_features(model, train.x, model_device(model))
            theta, hess, gmax = head.fit_head(f, y, lam, int(p["fit_steps"]), float(p["fit_tol"]),
                                              head.head_parameters(model))
            self.features_, self.labels_, self.theta_, self.hessian_ = f, y, theta, hess
            self.fit_grad_max_ = gmax
            self.cholesky_ = torch.linalg.cholesky(hess)
        else:
            self.net_ = full.float64_copy(model)
            self.x_train_, self.y_train_ = train.x, y

    # -- influence ---------------------------------------------------------------------------------------
    def influence(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, test_indices) -> dict:
        """``I_up,loss(z_i, z_t)`` of every training point ``i`` for the test inputs ``(x, y)`` (whose test-split
        positions ``test_indices`` seed LiSSA), with the test losses and the solves' relative residuals.

        Returns a dict of ``influence`` ``(m, n_train)``, ``test_loss`` ``(m,)``, ``residual`` ``(m,)`` (float64,
        CPU) and, for ``cg``, ``iterations`` and ``negative_curvature`` (lists).
        """
        self.check_fitted(model)
        y = torch.as_tensor(y).long().cpu()
        if self.solver_ == "head":
            return self._head_influence(model, x, y)
        return self._full_influence(x, y, [int(i) for i in test_indices])

    def _head_influence(self, model, x, y) -> dict:
        with eval_mode(model):
            f_t = head.head_features(model, x, model_device(model))
        g = head.per_example_gradients(self.theta_, f_t, y)                    # (m, D·C)
        s = torch.cholesky_solve(g.T, self.cholesky_).T
        return {"influence": head.influence_on_train(s, self.theta_, self.features_, self.labels_),
                "test_loss": head.losses(self.theta_, f_t, y),
                "residual": _relative(s @ self.hessian_ - g, g)}

    def _full_influence(self, x, y, test_indices) -> dict:
        p, lam, net = self.params, float(self.params["damping"]), self.net_
        g, test_loss = full.loss_gradients(net, x, y)
        rows, info = [], {"iterations": [], "negative_curvature": []}
        for row, t in enumerate(test_indices):
            if self.solver_ == "cg":
                s, out = full.conjugate_gradient(net, self.x_train_, self.y_train_, g[row], lam,
                                                 int(p["cg"]["steps"]), float(p["cg"]["tol"]))
                info["iterations"].append(out["iterations"])
                info["negative_curvature"].append(out["negative_curvature"])
            else:
                lp = p["lissa"]
                seeds = [full.lissa_seed(self.seed, t, r) for r in range(int(lp["repeats"]))]
                s = full.lissa(net, self.x_train_, self.y_train_, g[row], lam, int(lp["depth"]),
                               float(lp["scale"]), int(lp["repeats"]), int(lp["batch_size"]), seeds)
            rows.append(s)
        s = torch.stack(rows)
        residual = _relative(full.hvp(net, self.x_train_, self.y_train_, s, lam) - g, g)
        influence = -full.per_example_products(net, self.x_train_, self.y_train_, s, int(p["batch_size"]))
        out = {"influence": influence, "test_loss": test_loss.cpu(), "residual": residual.cpu()}
        if self.solver_ == "cg":
            out.update(info)
        return out

    # -- the record --------------------------------------------------------------------------------------
    def select(self, model: nn.Module, ctx) -> Examples:
        self.check_fitted(model)
        p = self.params
        idx = explained_indices(len(ctx.test.x), p["n_explain"], ctx.seed)
        x, y = ctx.test.x[idx], torch.as_tensor(ctx.test.y)[idx].long()
        result = self.influence(model, x, y, idx)
        infl = result["influence"]
        k = min(int(p["top_k"]), infl.shape[1])
        helpful = infl.topk(k, dim=1, largest=False)             # most negative I_up,loss first
        harmful = infl.topk(k, dim=1, largest=True)
        with torch.no_grad(), eval_mode(model):
            predictions = torch.cat([model(xb.to(ctx.device)).argmax(1).cpu() for xb in x.split(256)])
        extra = {
            "harmful_examples": harmful.indices.tolist(),
            "harmful_scores": harmful.values.tolist(),
            "predictions": predictions.tolist(),
            "test_loss": result["test_loss"].tolist(),
            "solve_residual": result["residual"].tolist(),
            "n_train": int(infl.shape[1]),
            "solver": self.solver_,
        }
        if self.solver_ == "head":
            eigen = torch.linalg.eigvalsh(self.hessian_)
            extra.update({"fit_grad_max": self.fit_grad_max_, "n_parameters": int(self.theta_.numel()),
                          "hessian_eigenvalues": [float(eigen[0]), float(eigen[-1])]})
        else:
            extra["n_parameters"] = int(sum(q.numel() for q in self.net_.parameters()))
            if self.solver_ == "cg":
                extra.update({"cg_iterations": result["iterations"],
                              "cg_negative_curvature": result["negative_curvature"]})
        return Examples(indices=idx.tolist(), targets=y.tolist(), examples=helpful.indices.tolist(),
                        scores=helpful.values.tolist(), extra=extra)


def _relative(diff: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Row-wise ``||diff|| / ||reference||`` (0 where the reference is 0)."""
    norm = reference.norm(dim=1)
    return torch.where(norm > 0, diff.norm(dim=1) / norm.clamp_min(1e-300), torch.zeros_like(norm))
