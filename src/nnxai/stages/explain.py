"""Stage ``explain``: run one method on one model; write its explanation record."""

from __future__ import annotations

from pathlib import Path

from nnxai import registry
from nnxai.paths import explanation_path
from nnxai.stages._common import sweep
from nnxai.stages.context import load_context
from nnxai.training.runtime import resolve_device, seed_everything, set_threads


def explain(dataset: str, model_id: str, settings: dict, workdir: Path) -> Path:
    """Run one method on one model; write its explanation record."""
    method_id = settings["method"]
    method = registry.get(method_id)(**settings["params"])   # bad params fail before any loading
    sweep(workdir, [explanation_path(dataset, model_id, method_id)])
    set_threads(settings["threads"])
    ctx = load_context(dataset, model_id, workdir, settings["seed"], resolve_device(settings["device"]))
    seed_everything(settings["seed"])
    record = method.explain(ctx)
    return record.save(Path(workdir) / explanation_path(dataset, model_id, method_id))
