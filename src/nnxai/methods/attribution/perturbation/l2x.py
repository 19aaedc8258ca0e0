"""L2X, "Learning to Explain", Chen, Song, Wainwright & Jordan 2018 (survey [110]).

An explainer ``E`` maps an input to a distribution over subsets ``S`` of ``k`` units (features, or
image patches), chosen to maximise the mutual information ``I(X_S; Y)`` between the selected part and the
model's prediction ``Y ~ P_m(·|x)``.  L2X maximises the variational lower bound ``E[log g_Y(X_S)]``
of that information (their Sec. 3) jointly over ``E`` and an approximator ``g`` (the variational family,
a network predicting the model's output from the selected units), with the subset relaxed by
Gumbel-softmax: ``k`` independent draws ``C^(l)`` (Eq. 5), ``V = max_l C^(l)`` (Eq. 6), ``X_S ≈ V ⊙ X``.
At explanation time the selection is the top ``k`` of the explainer's scores.  Implementation in
:mod:`._l2x_training`.

Attribution.  The map is the explainer's score (logit) of each unit, broadcast to the unit's entries
(all pixels and channels of a patch); its top ``k`` units are the selected subset.  It does not depend on
the ``target`` class: L2X explains the model's prediction as a whole.

Scope.  The explainer is one network trained on the train split (a global model of the model's
reasoning, the survey places L2X in all three scope cells) and queried per input (local).

Training data.  :meth:`L2X.explain` trains on the train split with ``ctx.seed``.  :meth:`L2X.attribute`
reuses that explainer while the model's parameters are unchanged; called directly on a model it has no
explainer for, it first trains one on the inputs it is asked to explain (seed 0): the objective needs only
the model's outputs, not labels.  The trained explainer is kept per model (keyed by a hash of its
parameters), so later calls on that model do not depend on how inputs are batched.

Adaptation.  The paper's units are words, sentences, pixels and 4×4 MNIST patches; tables use features,
images ``patch_size`` squares, with ``k_features`` and ``k_patches`` units selected.
"""

from __future__ import annotations

import hashlib
import math
from numbers import Real
from typing import Any

import torch
from torch import nn

from nnxai.methods.attribution.perturbation._l2x_training import TrainingSettings, n_units, train_explainer, units_to_input
from nnxai.params import check_positive_ints
from nnxai.methods.base import AttributionMethod
from nnxai.registry import register


def model_fingerprint(model: nn.Module) -> str:
    """Hash of the model's parameters and buffers (their values, names and shapes)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@register("l2x")
class L2X(AttributionMethod):
    """L2X [110]: a learned instance-wise selector of ``k`` features / patches; attribution = its scores.

    Parameters
    ----------
    n_explain : int
        Number of seeded test inputs explained by :meth:`explain`.
    batch_size : int
        Inputs per pass of the explainer.
    epochs : int
        Passes over the training inputs.
    lr : float
        Adam learning rate of the explainer and the approximator.
    k_features : int
        Features selected from a table (at most its width).
    k_patches : int
        Patches selected from an image (at most the number of patches).
    patch_size : int
        Side of an image's square patches (the image sides must be multiples of it; unused for tables).
    tau : float
        Gumbel-softmax temperature τ (Eq. 5), > 0.
    hidden : int
        Width of the explainer and approximator networks (units, or channels for images).
    train_batch_size : int
        Training inputs per Adam step.
    """
    trains = True            # fits the explainer and approximator networks (companion survey's 'Training' column)
    model_agnostic = True    # queries the model's outputs only

    param_names = ("n_explain", "batch_size", "epochs", "lr", "k_features", "k_patches", "patch_size", "tau",
                   "hidden", "train_batch_size")

    def __init__(self, **params: Any):
        super().__init__(**params)
        owner = f"method {self.spec.id!r}"
        check_positive_ints(owner, self.params, ("n_explain", "batch_size", "epochs", "k_features", "k_patches",
                                                 "patch_size", "hidden", "train_batch_size"))
        for name in ("lr", "tau"):
            value = self.params[name]
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{owner}: parameter {name!r} must be a finite number > 0, got {value!r}")
        self._fitted: tuple[str, nn.Module, list[float], int] | None = None
        self.train_seed = 0

    def settings(self, input_shape: tuple[int, ...], seed: int) -> TrainingSettings:
        """Training settings for inputs of ``input_shape``; checks that ``k`` fits the units."""
        image = len(input_shape) == 3
        patch = self.params["patch_size"]
        units = n_units(input_shape, patch)
        name = "k_patches" if image else "k_features"
        if self.params[name] > units:
            what = f"{units} patches of {patch}×{patch}" if image else f"{units} features"
            raise ValueError(f"method {self.spec.id!r}: parameter {name!r}={self.params[name]} exceeds the "
                             f"{what} of inputs shaped {input_shape}")
        return TrainingSettings(k=self.params[name], tau=float(self.params["tau"]), epochs=self.params["epochs"],
                                lr=float(self.params["lr"]), batch_size=self.params["train_batch_size"],
                                hidden=self.params["hidden"], patch=patch, seed=int(seed))

    def fit(self, model: nn.Module, x_train: torch.Tensor, seed: int) -> list[float]:
        """Train the explainer on ``x_train`` for ``model``; returns the loss of every epoch."""
        if x_train.dim() not in (2, 4):
            raise ValueError(f"method {self.spec.id!r}: inputs must be tables (N, F) or images (N, C, H, W), "
                             f"got shape {tuple(x_train.shape)}")
        settings = self.settings(tuple(x_train.shape[1:]), seed)
        select, history = train_explainer(model, x_train.detach(), settings)
        self._fitted = (model_fingerprint(model), select, history, settings.k)
        return history

    def _explainer_for(self, model: nn.Module, inputs: torch.Tensor) -> nn.Module:
        if self._fitted is None or self._fitted[0] != model_fingerprint(model):
            self.fit(model, inputs, self.train_seed)
        return self._fitted[1]

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        select = self._explainer_for(model, inputs)
        shape = tuple(inputs.shape[1:])
        with torch.no_grad():
            scores = torch.cat([select(part.detach()) for part in inputs.split(self.params["batch_size"])])
        return units_to_input(scores, shape, self.params["patch_size"]).to(inputs.dtype).contiguous()

    def _run(self, ctx):
        history = self.fit(ctx.model, ctx.train.x.to(ctx.device), ctx.seed)
        record, n_inputs = super()._run(ctx)
        image = ctx.test.x.dim() == 4
        record.meta["selection"] = {"k": self._fitted[3], "unit": "patch" if image else "feature",
                                    "patch_size": self.params["patch_size"] if image else 1}
        record.meta["training"] = {"n_train": len(ctx.train.x), "loss_per_epoch": history}
        return record, n_inputs
