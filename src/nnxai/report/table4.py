"""Table IV of the survey: formulation of gradient-related attribution methods, checked numerically.

Zhang, Tiňo, Leonardis & Tang (2021), Section III-C1, Table IV (adapted there from Ancona et al. [139]).
Each row gives the survey's attribution formula; ``S_c`` is the output for class ``c``, ``σ`` the
nonlinearity and ``g`` a replacement of ``σ'`` in the chain rule of ``∂S_c/∂x``, which rewrites LRP and
DeepLIFT as modified gradients ``∂^g S_c/∂x``. The reference numbers and implemented marks come from the
registry. The last column is measured each time the table is written: every identity of the row is
evaluated on small seeded float64 networks built here, *this project's* implementation (the registry's
class, :func:`own`, the code the workflow runs) against the formula evaluated independently, by
:func:`modified_gradient` (the chain rule written out layer by layer), by autograd or by numpy's
Gauss–Legendre nodes, and its largest absolute error is printed, ✓ below :data:`TOLERANCE` and ✗
otherwise. Negative controls (:func:`negative_controls`) show that the comparisons can fail: they must
exceed :data:`CONTROL_MIN_ERROR`.

Measured finding: LRP-ε (ε → 0) equals Gradient ⊙ Input on ReLU networks *with* biases as well, since
the bias enters the stabilised denominator ``z``; it is DeepLIFT with a zero reference that needs a
bias-free network to equal Gradient ⊙ Input [139], and LRP's conservation ``Σ R = S_c`` that fails when
biases absorb relevance.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nnxai import registry
from nnxai.io import atomic_write_text
from nnxai.report._format import (CHECK, CROSS, RAGGED, format_error, latex_escape, mixed_md, mixed_tex, ref_labels,
                                  wide_table_head)
from nnxai.report._items import report_item

TOLERANCE = 1e-6  #: an identity holds when the max abs error is below this (float64 networks)
CONTROL_MIN_ERROR = 1e-3  #: a negative control must differ by more than this
LRP_EPSILON = 1e-9  #: the stabiliser ε of the LRP-ε rule, ε → 0 in the identities of [139]
IG_STEPS = 64  #: Gauss-Legendre nodes: exact to ~1e-9 on the smooth toy network
WIDTHS = (6, 8, 8, 3)  #: the toy MLP, inputs → hidden → hidden → classes
N_INPUTS = 8
RELU, RELU_NO_BIAS = "ReLU MLP 6→8→8→3 with biases", "ReLU MLP 6→8→8→3 without biases"
TANH, LINEAR = "tanh MLP 6→8→8→3 with biases", "linear model 6→3 with bias"

_REF = r"^{\mathrm{ref}}"
#: Table IV transcribed from the survey: registry id → (the survey's row label, attribution formula).
ROWS: dict[str, tuple[str, str]] = {
    "gradient": ("Gradient", r"\frac{\partial S_c(x)}{\partial x_i}"),
    "gradient_x_input": ("Gradient ⊙ Input", r"x_i \cdot \frac{\partial S_c(x)}{\partial x_i}"),
    "lrp": ("LRP", r"x_i \cdot \frac{\partial^g S_c(x)}{\partial x_i},\ g = \frac{\sigma(z)}{z}"),
    "deeplift": ("DeepLIFT", rf"(x_i - x_i{_REF}) \cdot \frac{{\partial^g S_c(x)}}{{\partial x_i}},\ "
                             rf"g = \frac{{\sigma(z) - \sigma(z{_REF})}}{{z - z{_REF}}}"),
    "integrated_gradients": (
        "Integrated Gradients",
        rf"(x_i - x_i{_REF}) \cdot \int_0^1 \left.\frac{{\partial S_c(\tilde x)}}{{\partial \tilde x_i}}"
        rf"\right\vert_{{\tilde x = x{_REF} + \alpha (x - x{_REF})}} \mathrm{{d}}\alpha"),
}
CAPTION = ("Formulation of gradient-related attribution methods (the survey's Table IV, after [139]). "
           r"$S_c$ is the output for class $c$, $\sigma$ the nonlinearity and $g$ a replacement of "
           r"$\sigma'$ in $\partial S_c(x)/\partial x$; $x_i$ is the $i$-th feature of $x$. "
           "The last column evaluates each identity when the table is generated, on seeded float64 toy "
           "networks, and prints its max abs error.")


# ----------------------------------------------------------------------------- toy networks and inputs
def toy_mlp(seed: int = 0, *, bias: bool = True, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """A seeded float64 MLP ``6 → 8 → 8 → 3`` with separate (not in-place) activation modules.

    Weights are N(0, 2/fan_in); biases, if any, U(-0.5, 0.5), large enough that a bias-dependent
    identity visibly fails.
    """
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:])):
        linear = nn.Linear(fan_in, fan_out, bias=bias, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(fan_out, fan_in, generator=gen, dtype=torch.float64)
                                * (2.0 / fan_in) ** 0.5)
            if bias:
                linear.bias.copy_(torch.rand(fan_out, generator=gen, dtype=torch.float64) - 0.5)
        layers += [linear, activation()] if i < len(WIDTHS) - 2 else [linear]
    return nn.Sequential(*layers).eval()


def toy_linear(seed: int = 0) -> nn.Sequential:
    """A seeded float64 linear model ``6 → 3`` with a bias (Integrated Gradients = Gradient ⊙ Input)."""
    gen = torch.Generator().manual_seed(seed)
    linear = nn.Linear(WIDTHS[0], WIDTHS[-1], dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=gen, dtype=torch.float64))
        linear.bias.copy_(torch.randn(linear.bias.shape, generator=gen, dtype=torch.float64))
    return nn.Sequential(linear).eval()


def toy_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, x_ref, target)``: 8 seeded float64 inputs, random references, targets cycling the classes."""
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(N_INPUTS, WIDTHS[0], generator=gen, dtype=torch.float64)
    x_ref = 0.5 * torch.randn(N_INPUTS, WIDTHS[0], generator=gen, dtype=torch.float64)
    return x, x_ref, torch.arange(N_INPUTS) % WIDTHS[-1]


# ----------------------------------------------------------------------------- independent evaluations
def score(net: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``S_c(x)`` per input, ``c = target``."""
    return net(x).gather(1, target[:, None])[:, 0]


def gradient(net: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``∂S_c(x)/∂x`` by autograd."""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(score(net, x, target).sum(), x)
    return grad


def _derivative(sigma: nn.Module, z: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        z = z.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(sigma(z).sum(), z)
    return grad


def g_lrp(sigma: nn.Module, z: torch.Tensor, z_ref: torch.Tensor) -> torch.Tensor:
    """Table IV's ``g = σ(z)/z`` for LRP; 0 where ``z = 0`` (the ε-stabiliser gives the same)."""
    return torch.where(z != 0, sigma(z) / torch.where(z != 0, z, 1.0), 0.0)


def g_deeplift(sigma: nn.Module, z: torch.Tensor, z_ref: torch.Tensor) -> torch.Tensor:
    """Table IV's ``g = (σ(z) − σ(z_ref))/(z − z_ref)`` for DeepLIFT (rescale); ``σ'(z)`` if ``z = z_ref``."""
    dz = z - z_ref
    same = dz.abs() < 1e-10
    return torch.where(same, _derivative(sigma, z), (sigma(z) - sigma(z_ref)) / torch.where(same, 1.0, dz))


Rule = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def modified_gradient(net: nn.Sequential, x: torch.Tensor, target: torch.Tensor, g: Rule,
                      x_ref: torch.Tensor | None = None) -> torch.Tensor:
    """``∂^g S_c(x)/∂x``: the chain rule through a Linear/activation MLP with each ``σ'(z)`` replaced by
    ``g(σ, z, z_ref)``, written out layer by layer (no autograd), as in Ancona et al. [139], Sec. 3."""
    a, a_ref = x, torch.zeros_like(x) if x_ref is None else x_ref
    saved = []
    with torch.no_grad():
        for layer in net:
            if not isinstance(layer, nn.Linear):
                saved.append(g(layer, a, a_ref))
            a, a_ref = layer(a), layer(a_ref)
        grad = nn.functional.one_hot(target, a.shape[1]).to(x.dtype)
        for layer in reversed(net):
            grad = grad @ layer.weight if isinstance(layer, nn.Linear) else grad * saved.pop()
    return grad


#: Parameters of the project's classes in the checks (``n_explain`` and ``batch_size`` do not change a map).
OWN_PARAMS: dict[str, dict] = {
    "gradient": {},
    "gradient_x_input": {},
    "lrp": {"rule": "epsilon", "epsilon": LRP_EPSILON, "alpha": 2.0, "input_rule": "epsilon"},
    "deeplift": {"rule": "rescale", "baseline": "zero"},
    "integrated_gradients": {"n_steps": IG_STEPS, "baseline": "zero"},
}


def own(method_id: str, net: nn.Module, x: torch.Tensor, target: torch.Tensor,
        x_ref: torch.Tensor | None = None, **params) -> torch.Tensor:
    """The map of this project's class for ``method_id`` (:func:`nnxai.registry.get`) on ``net``: its
    ``attribute``, with the reference ``x_ref`` where the method takes one."""
    cls = registry.get(method_id)
    method = cls(**{"n_explain": len(x), "batch_size": len(x), **OWN_PARAMS[method_id], **params})
    with warnings.catch_warnings():  # Captum's notice that DeepLIFT hooks the activations, on every call
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks", category=UserWarning)
        return method.attribute(net, x.detach().clone(), target, x_ref).detach()


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max())


# ----------------------------------------------------------------------------- the checks
def _case(method_id: str, identity: str, network: str, error: float, *, control: bool = False) -> dict:
    passed = error > CONTROL_MIN_ERROR if control else error < TOLERANCE
    return {"id": method_id, "row": ROWS[method_id][0], "identity": identity, "network": network,
            "error": error, "tolerance": CONTROL_MIN_ERROR if control else TOLERANCE, "passed": passed}


def check_identities(seed: int = 0) -> list[dict]:
    """Evaluate every identity of Table IV on seeded float64 toy networks.

    Parameters
    ----------
    seed : int
        Seed of the toy networks' weights and of the inputs and references.

    Returns
    -------
    list of dict
        One record per identity: ``id`` (registry id of the row), ``row`` (the survey's row label),
        ``identity`` (text with ``$...$`` math), ``network``, ``error`` (max abs error over 8 inputs × 6
        features), ``tolerance`` and ``passed`` (``error < tolerance``).
    """
    x, x_ref, t = toy_inputs(seed)
    relu, relu0 = toy_mlp(seed), toy_mlp(seed, bias=False)
    tanh, linear = toy_mlp(seed, activation=nn.Tanh), toy_linear(seed)
    gxi, gxi0, gxi_linear = (x * gradient(n, x, t) for n in (relu, relu0, linear))
    lrp, lrp0 = own("lrp", relu, x, t), own("lrp", relu0, x, t)
    dl = own("deeplift", relu, x, t, x_ref)
    dl0 = own("deeplift", relu0, x, t, torch.zeros_like(x))
    ig = own("integrated_gradients", tanh, x, t, x_ref)
    ig_linear = own("integrated_gradients", linear, x, t, torch.zeros_like(x))
    nodes, weights = np.polynomial.legendre.leggauss(IG_STEPS)  # own quadrature of Table IV's integral
    ig_own = (x - x_ref) * sum(float(w) / 2 * gradient(tanh, x_ref + float(a + 1) / 2 * (x - x_ref), t)
                               for a, w in zip(nodes, weights))

    def d_out(net: nn.Module) -> torch.Tensor:  # S_c(x) - S_c(x_ref)
        return score(net, x, t) - score(net, x_ref, t)

    lrp_eps = f"nnxai lrp, ε rule (ε = {LRP_EPSILON:g})"
    g_dl = r"$g = \frac{\sigma(z) - \sigma(z^{\mathrm{ref}})}{z - z^{\mathrm{ref}}}$"
    complete = r"completeness $\sum_i a_i = S_c(x) - S_c(x^{\mathrm{ref}})$"
    return [
        _case("gradient", r"nnxai gradient = $|\partial S_c/\partial x|$ by autograd (the saliency of [71] "
              "takes the magnitude)", RELU, max_error(own("gradient", relu, x, t), gradient(relu, x, t).abs())),
        _case("gradient_x_input", r"nnxai gradient_x_input = $x \odot \partial S_c/\partial x$", RELU,
              max_error(own("gradient_x_input", relu, x, t), gxi)),
        _case("lrp", rf"{lrp_eps} = $x \odot \partial^g S_c/\partial x$, $g = \sigma(z)/z$", RELU,
              max_error(lrp, x * modified_gradient(relu, x, t, g_lrp))),
        _case("lrp", f"{lrp_eps} = Gradient ⊙ Input [139]", RELU_NO_BIAS, max_error(lrp0, gxi0)),
        _case("lrp", f"{lrp_eps} = Gradient ⊙ Input", RELU, max_error(lrp, gxi)),
        _case("lrp", r"LRP conservation $\sum_i R_i = S_c(x)$", RELU_NO_BIAS,
              max_error(lrp0.sum(1), score(relu0, x, t))),
        _case("deeplift", r"nnxai deeplift (rescale) = "
              rf"$(x - x^{{\mathrm{{ref}}}}) \odot \partial^g S_c/\partial x$, {g_dl}, random reference",
              RELU,
              max_error(dl, (x - x_ref) * modified_gradient(relu, x, t, g_deeplift, x_ref))),
        _case("deeplift", f"{complete}, random reference", RELU, max_error(dl.sum(1), d_out(relu))),
        _case("deeplift", "zero reference: nnxai deeplift = Gradient ⊙ Input [139]", RELU_NO_BIAS,
              max_error(dl0, gxi0)),
        _case("integrated_gradients", f"nnxai integrated_gradients ({IG_STEPS} nodes) = the integral by "
              "numpy's Gauss–Legendre nodes, random reference", TANH, max_error(ig, ig_own)),
        _case("integrated_gradients", f"{complete}, random reference", TANH,
              max_error(ig.sum(1), d_out(tanh))),
        _case("integrated_gradients", "zero reference: nnxai integrated_gradients = Gradient ⊙ Input", LINEAR,
              max_error(ig_linear, gxi_linear)),
    ]


def negative_controls(seed: int = 0) -> list[dict]:
    """Comparisons that must *fail* (error > :data:`CONTROL_MIN_ERROR`), so the checks can detect a
    difference: DeepLIFT with a zero reference vs Gradient ⊙ Input and LRP conservation, both on a
    network with biases, and LRP with a large ε vs Gradient ⊙ Input. Same record layout as
    :func:`check_identities`; ``passed`` means "differs as expected"."""
    x, _, t = toy_inputs(seed)
    relu = toy_mlp(seed)
    gxi = x * gradient(relu, x, t)
    return [
        _case("deeplift", "zero reference: nnxai deeplift ≠ Gradient ⊙ Input", RELU,
              max_error(own("deeplift", relu, x, t, torch.zeros_like(x)), gxi), control=True),
        _case("lrp", r"LRP conservation $\sum_i R_i \neq S_c(x)$ (biases absorb relevance)", RELU,
              max_error(own("lrp", relu, x, t).sum(1), score(relu, x, t)), control=True),
        _case("lrp", "nnxai lrp, ε rule (ε = 1) ≠ Gradient ⊙ Input", RELU,
              max_error(own("lrp", relu, x, t, epsilon=1.0), gxi), control=True),
    ]


# ----------------------------------------------------------------------------- rendering
def _status(case: dict) -> str:
    return f"{CHECK if case['passed'] else CROSS} (max err {format_error(case['error'])})"


def _check_text(case: dict, render: Callable[[str], str]) -> str:
    return render(f"{_status(case)} {case['identity']}; {case['network']}")


def _markdown(cases: list[dict], controls: list[dict], seed: int) -> str:
    lines = ["<!-- generated by nnxai.report.table4; the last column is measured; do not edit -->", "",
             f"**Table IV.** {mixed_md(CAPTION)}", "",
             "| Method | Attribution | Ref. | Numerical check on a toy network |", "|---|---|---|---|"]
    for method_id, (label, formula) in ROWS.items():
        spec = registry.spec(method_id)
        done = registry.is_implemented(method_id)
        name = f"**{mixed_md(label)}** {CHECK}" if done else mixed_md(label)
        checks = "<br>".join(_check_text(c, mixed_md) for c in cases if c["id"] == method_id)
        lines.append(f"| {name} | ${formula}$ | {', '.join(ref_labels(spec))} | {checks} |")
    lines += ["", f"Negative controls (each must differ by more than {CONTROL_MIN_ERROR:g}, showing that the "
              "checks can fail):", ""]
    lines += [f"- {_check_text(c, mixed_md)}" for c in controls]
    lines += ["", mixed_md(_footnote(cases, seed))]
    return "\n".join(lines) + "\n"


def _footnote(cases: list[dict], seed: int) -> str:
    held = sum(c["passed"] for c in cases)
    return (f"{held} of {len(cases)} identities hold (max abs error < {TOLERANCE:g}); toy networks and "
            f"{N_INPUTS} inputs seeded with {seed}, float64; bold with {CHECK}: implemented in nnxai.")


def _latex(cases: list[dict], controls: list[dict], seed: int) -> str:
    col = RAGGED
    lines = wide_table_head("nnxai.report.table4; the last column is measured", "booktabs,tabularx,amssymb",
                            mixed_tex(CAPTION), "tab:gradient-attribution",
                            f"@{{}}{col}p{{1.7cm}}{col}p{{5.6cm}}l{col}X@{{}}")
    lines += ["Method & Attribution & Ref. & Numerical check on a toy network \\\\", "\\midrule"]
    for method_id, (label, formula) in ROWS.items():
        spec = registry.spec(method_id)
        name = latex_escape(label)
        if registry.is_implemented(method_id):
            name = f"\\textbf{{{name}}}~$\\checkmark$"
        checks = " \\newline ".join(_check_text(c, mixed_tex) for c in cases if c["id"] == method_id)
        refs = latex_escape(", ".join(ref_labels(spec)))
        lines.append(f"{name} & $\\displaystyle {formula}$ & {refs} & {checks} \\\\[4pt]")
    lines += ["\\bottomrule", "\\end{tabularx}", "", "\\smallskip", "{\\footnotesize",
              latex_escape(f"Negative controls (each must differ by more than {CONTROL_MIN_ERROR:g}):"),
              "\\begin{itemize}"]
    lines += [f"\\item {_check_text(c, mixed_tex)}" for c in controls]
    lines += ["\\end{itemize}", mixed_tex(_footnote(cases, seed)), "}", "\\end{table*}"]
    return "\n".join(lines) + "\n"


@report_item("table4", kind="table")
def write_table4(out_dir: Path, seed: int = 0) -> list[Path]:
    """Write the survey's Table IV with its measured check column as ``table4.md`` and ``table4.tex``.

    Parameters
    ----------
    out_dir : pathlib.Path
        Folder of the generated tables (``paper/tables``); created if missing.
    seed : int
        Seed of the toy networks of the check column (:func:`check_identities`).

    Returns
    -------
    list of pathlib.Path
        The two files written (atomically), Markdown first. A failing identity is printed with ✗,
        not raised: the table reports what was measured.
    """
    out_dir = Path(out_dir)
    cases, controls = check_identities(seed), negative_controls(seed)
    return [atomic_write_text(out_dir / "table4.md", _markdown(cases, controls, seed)),
            atomic_write_text(out_dir / "table4.tex", _latex(cases, controls, seed))]
