"""Stage ``evaluate``: score a model with its own metrics (kind ``model``: its accuracy,
:mod:`nnxai.metrics.accuracy`) or its explanations with their metrics, each explanation's metric value
computed once per content (:mod:`nnxai.evaluation_cache`)."""

from __future__ import annotations

import time
from pathlib import Path

from tqdm.auto import tqdm

from nnxai import data, registry
from nnxai.evaluation_cache import MetricCache, cell_key
from nnxai.explanations import load_explanation
from nnxai.explanations.checks import SplitBounds
from nnxai.intervals import FILE_KEY, summarise, to_file
from nnxai.io import atomic_write_json
from nnxai.metrics.accuracy import model_metric_ids
from nnxai.metrics.base import Metric, metrics
from nnxai.paths import MODEL_ROW, checkpoint_path, explanation_path, metrics_path, prepared_path
from nnxai.stages._common import log, sweep
from nnxai.stages.context import load_context
from nnxai.training.runtime import resolve_device, seed_everything, set_threads


def evaluate(dataset: str, model_id: str, settings: dict, workdir: Path, progress: bool = True) -> list[Path]:
    """Score the model (its own metrics, :func:`score_model`) and each of its explanations named in
    ``settings["methods"]`` with the metrics listed there; write one ``{method}.json`` per explanation and
    ``model.json``."""
    registered = metrics()
    plan = settings["methods"]
    misplaced = sorted({m for ids in plan.values() for m in ids} & set(model_metric_ids(registered)))
    if misplaced:
        raise ValueError(f"{misplaced} score the model, not an explanation: model_metrics computes them")
    instances = {m: registered[m](**settings["metric_params"].get(m, {}))      # bad params fail first
                 for m in sorted({m for ids in plan.values() for m in ids})}
    outputs = [metrics_path(dataset, model_id, m) for m in plan] + (
        [metrics_path(dataset, model_id, MODEL_ROW)] if settings["model_metrics"] else [])
    sweep(workdir, outputs)
    set_threads(settings["threads"])
    ctx = load_context(dataset, model_id, workdir, settings["seed"], resolve_device(settings["device"]))
    bounds = SplitBounds(n_test=len(ctx.test.y), n_train=ctx.train.size, n_classes=ctx.info.n_classes)
    cache = MetricCache(Path(workdir))
    job = {"seed": settings["seed"], "device": str(ctx.device), "threads": settings["threads"]}
    written = []
    if settings["model_metrics"]:
        written.append(atomic_write_json(Path(workdir) / metrics_path(dataset, model_id, MODEL_ROW),
                                         score_model(registered, settings["metric_params"], ctx, settings["seed"])))
    for method_id, metric_ids in tqdm(sorted(plan.items()), desc=f"evaluate {dataset}/{model_id}",
                                      disable=not progress):
        record = load_explanation(Path(workdir) / explanation_path(dataset, model_id, method_id), bounds)
        method = registry.get(method_id)(**record.meta["params"])
        values: dict[str, float] = {}
        intervals: dict[str, list] = {}
        cell_files = [explanation_path(dataset, model_id, method_id), checkpoint_path(dataset, model_id),
                      *(prepared_path(dataset, s) for s in data.SPLITS)]
        for metric_id in metric_ids:
            key = cell_key(metric_id, settings["metric_params"].get(metric_id, {}), job, Path(workdir),
                           cell_files + list(settings["inputs"].get(method_id, {}).get(metric_id, [])),
                           [registered[metric_id].__module__, type(method).__module__, __name__],
                           timing=registered[metric_id].reads_timing)
            cached = cache.get(key)
            if cached is not None:
                values.update(cached[0])
                intervals.update(cached[1])
                log.info("%s/%s %s %s: cached", dataset, model_id, method_id, metric_id)
                continue
            seed_everything(settings["seed"])
            start = time.perf_counter()
            computed, spread = summarise(instances[metric_id](record, ctx, method), settings["seed"])
            cache.put(key, metric_id, computed, to_file(spread))
            values.update(computed)
            intervals.update(to_file(spread))
            log.info("%s/%s %s %s: %.2f s", dataset, model_id, method_id, metric_id, time.perf_counter() - start)
        written.append(atomic_write_json(Path(workdir) / metrics_path(dataset, model_id, method_id),
                                         {**values, FILE_KEY: dict(sorted(intervals.items()))}))
    return written


def score_model(registered: dict[str, type[Metric]], metric_params: dict, ctx, seed: int) -> dict:
    """``model.json``: the values of the metrics that score the model itself (:func:`model_metric_ids`: the
    test accuracy), with their intervals under :data:`~nnxai.intervals.FILE_KEY`.  Not cached: one pass over
    the test split."""
    values: dict[str, float] = {}
    intervals: dict = {}
    for metric_id in model_metric_ids(registered):
        computed, spread = summarise(registered[metric_id](**metric_params.get(metric_id, {}))(None, ctx), seed)
        values.update(computed)
        intervals.update(spread)
    return {**values, FILE_KEY: to_file(intervals)}
