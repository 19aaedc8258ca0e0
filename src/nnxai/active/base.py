"""What an active method of the survey (Sec. IV) is made of, declared once on one class.

An active method changes how a network is *trained* (the survey's "active interpretation interventions"),
so it is a model variant, not a pass over a trained model.  One class per method, in one file under
``nnxai/active/<explanation type>/``, registered with :func:`register_active`::

    @register_active
    class ProtoPNet(ActiveMethod):
        id = "protopnet"                                 # catalogue id = model variant id
        description = "ProtoPNet: part prototypes [123]"
        architectures = frozenset({"cnn"})               # base networks the design fits
        parameters = {"weight": Float(...), ...}        # config: active_params.protopnet

        def build(self, architecture, kwargs, info): ...   # the changed network (a registered one)
        def penalty(self, model, inputs, targets, logits): ...   # the loss term it adds
        def finish(self, model, train, val, device): ...  # e.g. the push and the last-layer step

and, beside it in the same file, the method class that reads the trained network's own explanation
(a decision tree, prototypes, filter concepts, a feature ranking), registered with the catalogue id and
``only_models = frozenset({"protopnet"})`` so that the workflow runs it on that variant only.

Registering the class registers its model variant (:data:`nnxai.models.variants.VARIANTS`), so the config
schema, the Snakemake targets, Tables II/III and the 3D figure follow; the trainer calls its hooks
(:func:`nnxai.training.trainer.train_model`), and the checkpoint stores the changed network and the
:meth:`ActiveMethod.extras` (a surrogate, a prior network) that :func:`nnxai.load_model` rebuilds.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from nnxai.models.variants import VARIANTS, Variant
from nnxai.params import Declared, Param
from nnxai.registration import Registry

#: Every active method's training-time class, by id (its catalogue id and model variant id).
ACTIVE: Registry[type["ActiveMethod"]] = Registry("active method", packages=("nnxai.active",))


class ActiveMethod(Declared):
    """The training-time part of one active method: network changes, the loss term, training hooks.

    A fresh instance trains one model: it may keep state between hooks (a surrogate, a weight trajectory).
    Hooks default to doing nothing, so a method overrides only what its paper changes.
    """

    id: ClassVar[str]
    description: ClassVar[str]
    #: Base networks the design fits (``cnn`` for image data, ``mlp`` for tables).
    architectures: ClassVar[frozenset[str]] = frozenset({"cnn", "mlp"})
    #: What the trained network offers the passive methods, where it differs from the base network
    #: (keys of :func:`nnxai.methods.base.model_traits`: ``gap_head``, ``linear_head``).
    traits: ClassVar[dict[str, Any]] = {}
    #: Training hyperparameters (config ``active_params.<id>``), no defaults (STYLE.md habit 5).
    parameters: ClassVar[dict[str, Param]] = {}
    #: The prepared splits (``{"train": PreparedSplit, "val": ...}``, with the concept table and masks where the
    #: data set has them), set by the train stage before :meth:`setup`; ``None`` when trained by hand.
    prepared: dict[str, Any] | None = None

    @classmethod
    def owner_name(cls) -> str:
        return f"active method {cls.id!r}" if hasattr(cls, "id") else cls.__name__

    @classmethod
    def why_not(cls, info: Any) -> str | None:
        """Why the design does not fit the data set ``info`` (beyond its architecture), or ``None``."""
        return None

    # -- the network -----------------------------------------------------------------------------------
    def build(self, architecture: str, kwargs: dict, info: Any) -> tuple[str, dict]:
        """The network to train: a name of :data:`nnxai.models.networks.NETWORKS` and its constructor
        arguments, given the base network's (``architecture``: ``cnn``/``mlp``).  Default: unchanged."""
        return architecture, kwargs

    # -- training hooks (called by nnxai.training.trainer.train_model) ----------------------------------
    def setup(self, model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], info: Any,
              device: torch.device, seed: int) -> None:
        """Before the first step: build what training needs besides the network (templates, a surrogate)."""

    def penalty(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                logits: torch.Tensor) -> torch.Tensor | None:
        """The term added to the batch's cross-entropy (already weighted), or ``None``."""
        return None

    def replaces_loss(self) -> bool:
        """Whether :meth:`penalty` is the whole loss (the cross-entropy is not added)."""
        return False

    def after_step(self, model: nn.Module) -> None:
        """After each optimiser step (e.g. record the weights, as tree regularisation's trajectory)."""

    def after_epoch(self, model: nn.Module, epoch: int) -> dict[str, float]:
        """After each epoch; what it returns joins the epoch's history record."""
        return {}

    def finish(self, model: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
               val: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> dict[str, Any]:
        """After the last epoch (e.g. ProtoPNet's push and last-layer step); returns a record for the
        checkpoint's ``active`` entry."""
        return {}

    def parameters_to_train(self, model: nn.Module) -> list[nn.Parameter]:
        """What the optimiser updates: the network's parameters and those of :meth:`extras` trained with it."""
        params = list(model.parameters())
        for extra in self.extras().values():
            params += [p for p in extra.parameters() if p.requires_grad]
        return params

    def extras(self) -> dict[str, nn.Module]:
        """Modules that belong to the trained model but not to its forward pass (a prior network, an
        APL surrogate): saved in the checkpoint, rebuilt by :func:`nnxai.load_model` as ``model.extras``.
        Each must be a network of :data:`nnxai.models.networks.NETWORKS` with ``network_name`` and
        ``network_kwargs`` attributes."""
        return {}


def register_active(cls: type[ActiveMethod]) -> type[ActiveMethod]:
    """Class decorator: register the active method and its model variant (same id)."""
    if not isinstance(cls, type) or not issubclass(cls, ActiveMethod):
        raise TypeError(f"register_active takes an ActiveMethod subclass, got {cls!r}")
    ACTIVE.register(cls.id, cls)
    VARIANTS.register(cls.id, Variant(cls.id, cls.description, active=cls.id,
                                      architectures=tuple(sorted(cls.architectures))))
    return cls


def active_method(model_id: str) -> type[ActiveMethod] | None:
    """The active method a model variant trains with, or ``None`` for a passive variant."""
    known = VARIANTS.get(model_id)
    if known is None or known.active is None:
        return None
    return ACTIVE[known.active]
