"""CEM: the Contrastive Explanation Method, pertinent positives and pertinent negatives (survey ref. [69]).

Dhurandhar, Chen, Luss, Tu, Ting, Shanmugam, Das, "Explanations based on the missing: towards contrastive
explanations with pertinent negatives", NeurIPS 2018.  For an input ``x0`` of network class ``t0``:

* the pertinent positive (PP) is a minimal, sparse part of what is present in ``x0`` that alone (everything
  else absent) is still classified ``t0`` with margin ``kappa``: Eq. 2;
* the pertinent negative (PN) is a minimal, sparse addition of what is absent from ``x0`` that moves it to
  another class ``t'`` with margin ``kappa``: Eq. 1;

both found by projected FISTA on the elastic-net objective with the paper's search over ``c``
(:mod:`nnxai.methods.rule.local._cem_solver`, which says where the implementation chose), optionally with the
autoencoder term ``gamma ||x - AE(x)||^2`` (an AE trained in :meth:`CEM.fit` on the train split; no
downloaded weights).  "Absent" is the lowest intensity for images (the black background, the paper's MNIST
choice) and, for tables, 0 for a binary column and the training mean of a continuous (standardised) one
(:func:`~nnxai.methods.rule.local._cem_solver.input_domain`).

The explanation reads "class ``t0`` because features {PP} are present (PP), and not class ``t'`` because
{PN} are absent (PN)" (the survey's Table II wording).  Its ``conditions`` are the PP's features as
literals, one 1-of-1 condition each: "feature ``j`` present at least as much as in the PP", ``x_j >= p_j``
for a PP value ``p_j`` above the absent value ``a_j`` (``x_j <= p_j`` below it): the PP and ``x0`` satisfy
it, the absent value does not (``>=`` is written ``> `` the next float32 below ``p_j``, exact for the
float32 inputs).  Every entry also keeps the PP and the PN themselves as sparse lists ``[[feature, delta],
...]`` of the paper's ``delta`` (PP input = absent + delta; contrast point = x0 + delta), the touched
features' names, the classes of the PP input and the contrast point, the ``c`` that found each, and their
elastic-net sizes; ``extra`` holds the absent values and the box, with which ``pp_pn_validity`` rebuilds both.

A PP may be empty: where the all-absent input already has class ``t0`` by ``kappa``, ``delta = 0`` is the
optimum of Eq. 2 (the text says so).  Inputs are explained in batches of ``batch_size``; each input has its
own ``c`` (the batch only shares the network's forward passes).  Cost: per input and per explanation,
``c_steps * max_iter`` forward-backward passes (plus a forward pass for the success check); the default
run's 3 x 30 (the paper: 9 x 1000) explains 100 ``shapes`` images with the baseline CNN in ~7 s on one core,
and every search succeeded there (on ``digits`` 71 % of the PPs, all PNs).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from nnxai.explanations import LocalRules
from nnxai.methods.base import ExplainContext, LocalRuleMethod
from nnxai.methods.rule.local._cem_solver import CEMSettings, Domain, input_domain, search, train_autoencoder
from nnxai.params import BATCH_SIZE, Float, Int
from nnxai.registry import register

#: Features listed by name in an explanation's text (the rest are counted).
SHOWN = 12

CEM_PARAMETERS = {
    "kappa": Float("confidence kappa of f_neg / f_pos (Eqs. 1-2): the margin of the logits the PP must keep "
                   "and the PN must reach", low=0.0),
    "beta": Float("weight beta of the L1 term (sparsity) of the elastic net", low=0.0),
    "gamma": Float("weight gamma of the autoencoder term ||x - AE(x)||^2 (0: no autoencoder is trained)", low=0.0),
    "c_init": Float("first value of the constant c of the attack term", low=0.0, low_open=True),
    "c_steps": Int("steps of the search over c (the paper's binary search; x10 until a first success)", low=1),
    "max_iter": Int("FISTA iterations per value of c (Eqs. 4-6)", low=1),
    "lr": Float("initial FISTA step alpha_0 (decays as sqrt(1 - k/K), the authors' schedule)", low=0.0,
                low_open=True),
    "ae_epochs": Int("epochs of the autoencoder's training on the train split (used only when gamma > 0)", low=0),
}


@contextmanager
def evaluating(model: nn.Module):
    """The model in eval mode for the duration; every module's own ``training`` flag restored after."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags.items():
            module.training = flag


def feature_names(ctx_or_meta, shape: tuple[int, ...]) -> list[str]:
    """The split's feature names, else pixel names ``px[c,y,x]`` (``px[y,x]`` for one channel)."""
    names = (getattr(ctx_or_meta, "meta", None) or {}).get("feature_names")
    if names:
        return list(names)
    if len(shape) == 3:
        c, h, w = shape
        return [f"px[{y},{x}]" if c == 1 else f"px[{k},{y},{x}]" for k in range(c) for y in range(h) for x in range(w)]
    return [f"x{j}" for j in range(int(np.prod(shape)))]


def contrastive_explanations(model: nn.Module, x: torch.Tensor, settings: CEMSettings, domain: Domain,
                             autoencoder: nn.Module | None, batch_size: int,
                             device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """PP and PN of every row of ``x`` (batches of ``batch_size``), as flat numpy arrays: ``target`` (the
    network's class), ``pp`` / ``pn`` (the paper's ``delta``, zeros where none was found), ``pp_found`` /
    ``pn_found``, ``pp_class`` / ``pn_class`` (the network's class of ``absent + pp`` and ``x + pn``),
    ``pp_c`` / ``pn_c`` and ``pp_size`` / ``pn_size`` (elastic net)."""
    device = torch.device(device)
    dom = Domain(*(t.to(device) for t in (domain.absent, domain.lower, domain.upper)), domain.meaning)
    ae = None if autoencoder is None or settings.gamma == 0 else autoencoder.to(device)
    parts: dict[str, list] = {}
    with evaluating(model):
        for xb in x.split(batch_size):
            xb = xb.detach().float().to(device)
            with torch.no_grad():
                target = model(xb).argmax(1)
            out = {"target": target}
            for mode, centre in (("pp", dom.absent.expand_as(xb)), ("pn", xb)):
                res = search(model, mode, xb, target, settings, dom, ae)
                with torch.no_grad():
                    cls = model(centre + res["delta"]).argmax(1)
                found = torch.isfinite(res["size"])
                out.update({mode: res["delta"].reshape(len(xb), -1), f"{mode}_found": found,
                            f"{mode}_class": cls, f"{mode}_c": res["c"], f"{mode}_size": res["size"]})
            for key, value in out.items():
                parts.setdefault(key, []).append(value.detach().cpu())
    return {k: torch.cat(v).numpy() for k, v in parts.items()}


def below(value: float) -> float:
    """The largest float32 below ``value``: ``x > below(v)`` is ``x >= v`` for float32 inputs."""
    return float(np.nextafter(np.float32(value), np.float32(-np.inf)))


def presence_literal(j: int, absent: float, delta: float) -> dict:
    """Feature ``j`` present at least as much as in the PP (value ``p = absent + delta``): ``x_j >= p`` above the
    absent value (written ``x_j > below(p)``, exact for float32 inputs), ``x_j <= p`` below it."""
    p = float(np.float32(absent + delta))
    return {"feature": int(j), "op": ">", "threshold": below(p)} if delta > 0 else \
        {"feature": int(j), "op": "<=", "threshold": p}


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return "{" + shown + (f", ... (+{len(names) - SHOWN} more)" if len(names) > SHOWN else "") + "}"


def entry(k: int, res: dict[str, np.ndarray], absent: np.ndarray, names: list[str], class_names: list[str]) -> dict:
    """One input's explanation (see the module docstring for its fields)."""
    out: dict = {}
    for mode in ("pp", "pn"):
        found = bool(res[f"{mode}_found"][k])
        touched = np.flatnonzero(res[mode][k]) if found else np.zeros(0, dtype=np.int64)
        out[mode] = touched
        key = "pertinent_positive" if mode == "pp" else "pertinent_negative"
        out[key] = [[int(j), float(res[mode][k][j])] for j in touched]
        out[f"{mode}_features"] = [names[j] for j in touched]
        out[f"{mode}_found"] = found
        out[f"{mode}_class"] = int(res[f"{mode}_class"][k]) if found else None
        out[f"{mode}_c"] = float(res[f"{mode}_c"][k]) if found else None
        out[f"{mode}_size"] = float(res[f"{mode}_size"][k]) if found else None
    t = int(res["target"][k])
    if not out["pp_found"]:
        pp_text = f"class {class_names[t]}: no pertinent positive found"
    elif out["pp_features"]:
        pp_text = f"class {class_names[t]} because features {_listing(out['pp_features'])} are present (PP)"
    else:   # the all-absent input already has the class: the empty PP is the least sufficient part
        pp_text = f"class {class_names[t]} even with every feature absent (empty PP)"
    pn_text = (f"not class {class_names[out['pn_class']]} because {_listing(out['pn_features'])} are absent (PN)"
               if out["pn_found"] else "no pertinent negative found")
    out["text"] = f"{pp_text}, and {pn_text}"
    out["conditions"] = [{"m": 1, "literals": [presence_literal(j, absent[j], res["pp"][k][j])]} for j in out.pop("pp")]
    out.pop("pn")
    return out


@register("cem")
class CEM(LocalRuleMethod):
    """CEM [69]: per input, the pertinent positive and the pertinent negative (projected FISTA, Eqs. 1-6)."""

    parameters = {**LocalRuleMethod.parameters, "batch_size": BATCH_SIZE, **CEM_PARAMETERS}

    def _fit(self, model: nn.Module, train) -> None:
        """The domain (absent values, box) from the train split and, when ``gamma > 0``, the autoencoder."""
        kind = getattr(self.info_, "kind", None) or ("image" if train.x.dim() == 4 else "tabular")
        self.domain_ = input_domain(kind, train.x)
        self.autoencoder_ = (train_autoencoder(kind, train.x, self.domain_, int(self.params["ae_epochs"]), self.seed)
                             if self.params["gamma"] > 0 else None)

    def explain_inputs(self, model: nn.Module, ctx: ExplainContext, indices: np.ndarray) -> LocalRules:
        self.check_fitted(model)
        x = ctx.test.x[torch.as_tensor(np.asarray(indices, dtype=np.int64))]
        res = contrastive_explanations(model, x, CEMSettings.of(self.params), self.domain_, self.autoencoder_,
                                       int(self.params["batch_size"]), ctx.device)
        names = feature_names(ctx.test, tuple(x.shape[1:]))
        n_classes = int(getattr(ctx.info, "n_classes", 0) or res["target"].max() + 1)
        class_names = list(ctx.test.meta.get("class_names") or [str(c) for c in range(n_classes)])
        absent = self.domain_.absent.reshape(-1).numpy()
        entries = [entry(k, res, absent, names, class_names) for k in range(len(indices))]
        return LocalRules(indices=[int(i) for i in indices], targets=[int(t) for t in res["target"]],
                          explanations=entries, feature_names=names, class_names=class_names,
                          feature_space="inputs", extra=self.domain_.as_lists())
