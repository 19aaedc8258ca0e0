"""Model variants: what is trained on each dataset.

``baseline`` is the plain network.  ``l1`` / ``l2`` add the sparsity penalties that tree regularization
[119] is compared against; ``baseline_shuffled_labels`` is trained on permuted labels for the
data-randomisation sanity check of Adebayo et al. [75]; ``baseline_seed{k}`` retrains the baseline with
another seed (seed variance, DeepConsensus [116]); ``baseline_sigmoid`` uses sigmoid units, as the classic
rule extractors [81]-[83] assume.  Active methods of the survey (Section IV) register further variants
through :func:`nnxai.active.base.register_active`, which adds one variant per active method (its network
changes, loss and training hooks live on the :class:`~nnxai.active.base.ActiveMethod` class).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from nnxai.registration import Registry

_SEED_VARIANT = re.compile(r"^baseline_seed(\d+)$")


@dataclass(frozen=True)
class Variant:
    """What is changed, against the plain network, when a model of this variant is trained.

    Parameters
    ----------
    id : str
        The model id (registry key, checkpoint name).
    description : str
    activation : str
        Unit nonlinearity of the network (``relu`` or ``sigmoid``).
    penalty : str
        A training penalty of :data:`nnxai.training.penalties.PENALTIES` added to the loss
        (weighted by ``training.penalty_weight.<penalty>`` of the config), or ``"none"``.
    shuffle_labels : bool
        Train on permuted labels.
    seed_offset : int
        Added to the run's seed for this model.
    active : str or None
        The active method (:data:`nnxai.active.base.ACTIVE`) that trains it, ``None`` for a passive variant.
    architectures : tuple of str
        Base networks the variant can be trained as (``cnn`` on images, ``mlp`` on tables).
    """

    id: str
    description: str
    activation: str = "relu"
    penalty: str = "none"
    shuffle_labels: bool = False
    seed_offset: int = 0
    active: str | None = None
    architectures: tuple[str, ...] = ("cnn", "mlp")

    @property
    def controls(self) -> bool:
        """A control model (its explanations are only compared against, not scored for robustness)."""
        return self.shuffle_labels


#: Every model variant by id; each is registered where it is defined (active methods add their own).
#: Active methods (survey Sec. IV) register their variants in their own modules under nnxai.active.
VARIANTS: Registry[Variant] = Registry("model variant", packages=("nnxai.active",))

VARIANTS.register("baseline", Variant("baseline", "plain network, no intervention"))
VARIANTS.register("baseline_sigmoid", Variant(
    "baseline_sigmoid", "sigmoid units (classic rule extraction [81]-[83])", activation="sigmoid"))
VARIANTS.register("l1", Variant("l1", "L1 weight penalty (sparsity baseline of [119])", penalty="l1"))
VARIANTS.register("l2", Variant("l2", "L2 weight penalty (sparsity baseline of [119])", penalty="l2"))
VARIANTS.register("baseline_shuffled_labels", Variant(
    "baseline_shuffled_labels", "trained on shuffled labels (sanity check of [75])", shuffle_labels=True))


def variant(model_id: str) -> Variant:
    """The variant called ``model_id``; ``baseline_seed{k}`` is the baseline with seed offset k."""
    if model_id in VARIANTS:
        return VARIANTS[model_id]
    match = _SEED_VARIANT.match(model_id) if isinstance(model_id, str) else None
    if match:
        k = int(match.group(1))
        return replace(VARIANTS["baseline"], id=model_id, description=f"baseline, seed offset {k}", seed_offset=k)
    raise ValueError(f"unknown model variant {model_id!r}; known: {', '.join(sorted(VARIANTS))}, baseline_seed<k>")


def variant_pattern() -> str:
    """A regular expression matching every variant id (for Snakemake wildcard constraints and the schema)."""
    return "^(" + "|".join(sorted(VARIANTS)) + r"|baseline_seed\d+)$"
