"""The companion survey's Table 1, "Feature importance methods comparison", transcribed.

W. Zhang, L. Cai, M. Chen, N. Wang, "Progress in interpretability research of convolutional neural
networks", 2019 (the "2nd survey" of this project), Section 3.3, Table 1, itself adapted from Chen et
al.'s L2X paper ([7] there, [110] in the survey).  Its caption defines the columns:

    "Training" indicates whether a method requires training on an unlabeled data set. "Efficiency"
    qualitatively evaluates the computational time during single interpretation. "Locality" indicates
    whether a method is locally additive. "Model-agnostic" indicates whether a method is generic to
    black-box models.

The text's OCR writes "No" as "N ₀" in some cells; it is read as "No".  Each row is tied to the registry id
of the method it describes (``method_id``); "SHAP" [30] is Lundberg & Lee's paper ([105] of the survey),
whose "sample-based method and kernel SHAP" the row rates: KernelSHAP, the model-agnostic estimator.
"""

from __future__ import annotations

from dataclasses import dataclass

CITATION = ("W. Zhang, L. Cai, M. Chen, N. Wang, \u201cProgress in interpretability research of convolutional "
            "neural networks\u201d, 2019, Table 1 (adapted there from Chen et al., L2X, 2018)")
DEFINITIONS = {
    "training": "whether a method requires training on an unlabeled data set",
    "efficiency": "qualitatively evaluates the computational time during single interpretation",
    "locality": "whether a method is locally additive",
    "model_agnostic": "whether a method is generic to black-box models",
}


@dataclass(frozen=True)
class CompanionRow:
    """One row of the companion survey's Table 1, as printed."""

    label: str             #: the method as the table names it
    ref: int               #: its reference number in the companion survey
    method_id: str         #: the registry id of the method the row rates
    training: bool
    efficiency: str        #: "Low" or "High"
    locality: bool         #: locally additive
    model_agnostic: bool


ROWS: tuple[CompanionRow, ...] = (
    CompanionRow("LIME", 27, "lime", False, "Low", True, True),
    CompanionRow("DeepLIFT", 28, "deeplift", False, "High", True, False),
    CompanionRow("LRP", 29, "lrp", False, "High", True, False),
    CompanionRow("SHAP", 30, "kernel_shap", False, "Low", True, True),
    CompanionRow("Integrated gradient", 31, "integrated_gradients", False, "High", False, True),
    CompanionRow("L2X", 7, "l2x", True, "High", False, True),
)


def by_method() -> dict[str, CompanionRow]:
    """The rows keyed by registry id."""
    return {row.method_id: row for row in ROWS}
