"""Where the workflow's files live, relative to the work directory.

One definition of every output path, read by the Snakefile's workflow logic (:mod:`nnxai.workflow`), the
pipeline stages and the metrics that read another cell's files (the data randomisation check reads the
explanation of the model trained on shuffled labels).  It imports nothing of ``nnxai`` but the method
registry (an explanation's suffix is its record type's), so any module may import it.
"""

from __future__ import annotations

from nnxai import registry

#: The ``method`` part of the metric file that holds a model's own scores (accuracy), beside one per explanation.
MODEL_ROW = "model"
#: The run's caches (ignored by git and DVC): metric values, code manifests, what metrics share across jobs.
CACHE_ROOT = ".nnxai-cache"


def prepared_path(dataset: str, split: str) -> str:
    """A prepared split (``train``, ``val``, ``test``) of ``dataset``."""
    return f"data/prepared/{dataset}/{split}.npz"


def checkpoint_path(dataset: str, model: str) -> str:
    """The trained checkpoint of model variant ``model`` on ``dataset``."""
    return f"data/checkpoints/{dataset}/{model}.pt"


def explanation_path(dataset: str, model: str, method: str) -> str:
    """The record ``method`` writes for ``dataset``/``model`` (its suffix is the record type's)."""
    suffix = registry.get(method).record_type.suffix
    return f"data/explanations/{dataset}/{model}/{method}{suffix}"


def metrics_path(dataset: str, model: str, method: str) -> str:
    """Per-explanation metrics; ``method == "model"`` holds the model's own metrics (accuracy)."""
    return f"data/metrics/{dataset}/{model}/{method}.json"
