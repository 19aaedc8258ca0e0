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

Training data.  :meth:`L2X.fit` trains the explainer on the train split for one model, seeded by the run's
seed (the objective needs only the model's outputs, not labels); :meth:`L2X.attribute` queries it, so the
scores of an input do not depend on how inputs are batched.  Another model needs its own fit.

Adaptation.  The paper's units are words, sentences, pixels and 4×4 MNIST patches; tables use features,
images ``patch_size`` squares, with ``k_features`` and ``k_patches`` units selected.
"""

from __future__ import annotations

import torch
from torch import nn

from nnxai.methods.attribution.perturbation._l2x_training import (TrainingSettings, n_units, train_explainer,
                                                                  units_to_input)
from nnxai.methods.attribution.perturbation._train_data import check_input_shape, train_inputs
from nnxai.methods.base import AttributionMethod
from nnxai.params import Float, Int
from nnxai.registry import register


@register("l2x")
class L2X(AttributionMethod):
    """L2X [110]: a learned instance-wise selector of ``k`` features / patches; attribution = its scores.

    ``batch_size`` inputs go through the trained explainer per pass.

    Attributes
    ----------
    explainer_ : nn.Module
        The trained explainer ``E`` (eval mode, no gradients): a score per unit.
    history_ : list of float
        Mean training loss of every epoch.
    k_ : int
        Units selected (``k_features`` or ``k_patches``).
    input_shape_ : tuple of int
        Shape of one train input; the inputs explained must have it.
    """
    trains = True            # fits the explainer and approximator networks (companion survey's 'Training' column)
    model_agnostic = True    # queries the model's outputs only

    parameters = {**AttributionMethod.parameters,
                  "epochs": Int("passes over the training inputs", low=1),
                  "lr": Float("Adam learning rate of the explainer E and the approximator g", low=0, low_open=True),
                  "k_features": Int("features k selected from a table (at most its width)", low=1),
                  "k_patches": Int("patches k selected from an image (at most the number of patches)", low=1),
                  "patch_size": Int("side of an image's square patches, the units of an image (the image sides "
                                    "must be multiples of it; unused for tables)", low=1),
                  "tau": Float("Gumbel-softmax temperature τ ([110] Eq. 5)", low=0, low_open=True),
                  "hidden": Int("width of the explainer and approximator networks (units, or channels for "
                                "images)", low=1),
                  "train_batch_size": Int("training inputs per Adam step", low=1)}

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

    def _fit(self, model: nn.Module, train) -> None:
        """Train the explainer on the train split for ``model``, seeded by :attr:`seed` ([110] Sec. 3)."""
        x_train = train_inputs(f"method {self.spec.id!r}", model, train)
        if x_train.dim() not in (2, 4):
            raise ValueError(f"method {self.spec.id!r}: inputs must be tables (N, F) or images (N, C, H, W), "
                             f"got shape {tuple(x_train.shape)}")
        settings = self.settings(tuple(x_train.shape[1:]), self.seed)
        self.explainer_, self.history_ = train_explainer(model, x_train, settings)
        self.k_, self.input_shape_ = settings.k, tuple(x_train.shape[1:])

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        check_input_shape(f"method {self.spec.id!r}", inputs, self.input_shape_)
        with torch.no_grad():
            scores = torch.cat([self.explainer_(part.detach()) for part in inputs.split(self.params["batch_size"])])
        return units_to_input(scores, self.input_shape_, self.params["patch_size"]).to(inputs.dtype).contiguous()

    def _run(self, ctx):
        record, n_inputs = super()._run(ctx)
        image = ctx.test.x.dim() == 4
        record.meta["selection"] = {"k": self.k_, "unit": "patch" if image else "feature",
                                    "patch_size": self.params["patch_size"] if image else 1}
        record.meta["training"] = {"n_train": len(ctx.train.x), "loss_per_epoch": self.history_}
        return record, n_inputs
