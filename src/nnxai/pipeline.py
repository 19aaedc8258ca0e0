"""The stages of the pipeline, one function each; the CLI calls them and Snakemake calls the CLI.

Every stage takes the slice of the config it depends on (:func:`nnxai.workflow.stage_settings`), reads
its inputs from the work directory (checked: :mod:`nnxai.io`, :mod:`nnxai.data.checks`,
:mod:`nnxai.explanations.checks`, :mod:`nnxai.models.checkpoint`) and writes its outputs there atomically,
after removing the temporary files an earlier, killed run of the same outputs left behind.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from nnxai import data, registry
from nnxai.explanations import load_explanation
from nnxai.explanations.checks import SplitBounds
from nnxai.io import BadFileError, atomic_write_json, atomic_write_text, read_json_object, sweep_stale_temp
from nnxai.methods.base import ExplainContext
from nnxai.metrics.base import metrics
from nnxai.models import build_network, load_model, save_checkpoint
from nnxai.models.networks import network_kwargs
from nnxai.training import TrainConfig, train_model
from nnxai.training.runtime import resolve_device, seed_everything, set_threads
from nnxai.training.trainer import accuracy
from nnxai.versions import code_version
from nnxai.paths import checkpoint_path, explanation_path, metrics_path, prepared_path

log = logging.getLogger("nnxai")


def config_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _sweep(workdir: Path, outputs: list[str]) -> None:
    """Remove what a killed earlier run of these outputs left: their stale temporary files."""
    for path in sweep_stale_temp(Path(workdir) / rel for rel in outputs):
        log.info("removed %s, left by an interrupted run", path)


def prepare(settings: dict, workdir: Path) -> Path:
    """Build one data set's splits; write them and ``meta.json``."""
    dataset = settings["dataset"]
    _sweep(workdir, [prepared_path(dataset, s) for s in data.SPLITS] + [f"data/prepared/{dataset}/meta.json"])
    return data.prepare(dataset, workdir, settings["sizes"], settings["seed"])


def _arch_kwargs(settings: dict, info) -> dict:
    return network_kwargs(settings["architecture"], settings["arch_config"], settings["activation"],
                          info.input_shape, info.n_classes)


def train(settings: dict, workdir: Path, progress: bool = True) -> Path:
    """Train one model variant on one dataset; write ``{model}.pt`` and its ``.json`` record."""
    set_threads(settings["threads"])
    device = resolve_device(settings["device"])
    dataset, model_id = settings["dataset"], settings["model"]
    _sweep(workdir, [checkpoint_path(dataset, model_id), checkpoint_path(dataset, model_id)[:-3] + ".json"])
    info = data.DATASETS[dataset]
    train_split, val_split, test_split = (data.load_split(dataset, s, workdir) for s in ("train", "val", "test"))
    y_train = train_split.y
    if settings["shuffle_labels"]:
        # Data randomisation test of Adebayo et al. [75]: same inputs, labels permuted once.
        perm = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(settings["seed"] + 7919))
        y_train = y_train[perm]
    cfg = TrainConfig(**settings["training"], penalty=settings["penalty"],
                      penalty_weight=settings["penalty_weight"])
    kwargs = _arch_kwargs(settings, info)
    seed_everything(settings["seed"])
    model = build_network(settings["architecture"], **kwargs)
    start = time.perf_counter()
    history = train_model(model, (train_split.x, y_train), (val_split.x, val_split.y), cfg, settings["seed"],
                          device, progress=progress, desc=f"train {dataset}/{model_id}")
    log.info("trained %s/%s in %.1f s", dataset, model_id, time.perf_counter() - start)
    model.cpu()
    test_acc = accuracy(model, test_split.x, test_split.y)
    record = {"dataset": dataset, "model": model_id, "seed": settings["seed"], "config": settings,
              "config_hash": config_hash(settings), "code_version": code_version(),
              "architecture": settings["architecture"], "arch_kwargs": kwargs}
    path = Path(workdir) / checkpoint_path(dataset, model_id)
    return save_checkpoint(path, model, record, sidecar={**record, "history": history, "test_accuracy": test_acc,
                                                         "val_accuracy": history[-1]["val_accuracy"]})


def _context(dataset: str, model_id: str, workdir: Path, seed: int, device: torch.device) -> ExplainContext:
    model = load_model(Path(workdir) / checkpoint_path(dataset, model_id), device=device, require_sidecar=True)
    for p in model.parameters():
        p.requires_grad_(True)
    return ExplainContext(model=model, dataset=dataset, model_id=model_id, info=data.DATASETS[dataset],
                          train=data.load_split(dataset, "train", workdir),
                          test=data.load_split(dataset, "test", workdir), seed=seed, device=device,
                          workdir=Path(workdir))


def explain(dataset: str, model_id: str, settings: dict, workdir: Path) -> Path:
    """Run one method on one model; write its explanation record."""
    method_id = settings["method"]
    method = registry.get(method_id)(**settings["params"])   # bad params fail before any loading
    _sweep(workdir, [explanation_path(dataset, model_id, method_id)])
    set_threads(settings["threads"])
    ctx = _context(dataset, model_id, workdir, settings["seed"], resolve_device(settings["device"]))
    seed_everything(settings["seed"])
    record = method.explain(ctx)
    return record.save(Path(workdir) / explanation_path(dataset, model_id, method_id))


def evaluate(dataset: str, model_id: str, settings: dict, workdir: Path, progress: bool = True) -> list[Path]:
    """Score the model (accuracy) and each of its explanations named in ``settings["methods"]`` with the
    metrics listed there; write one ``{method}.json`` per explanation and ``model.json``."""
    registered = metrics()
    plan = settings["methods"]
    instances = {m: registered[m](**settings["metric_params"].get(m, {}))      # bad params fail first
                 for m in sorted({m for ids in plan.values() for m in ids})}
    outputs = [metrics_path(dataset, model_id, m) for m in plan] + [metrics_path(dataset, model_id, "model")]
    _sweep(workdir, outputs)
    set_threads(settings["threads"])
    ctx = _context(dataset, model_id, workdir, settings["seed"], resolve_device(settings["device"]))
    bounds = SplitBounds(n_test=len(ctx.test.y), n_train=len(ctx.train.y), n_classes=ctx.info.n_classes)
    written = []
    if settings.get("model_metrics", True):
        written.append(atomic_write_json(Path(workdir) / metrics_path(dataset, model_id, "model"),
                                         {"accuracy": accuracy(ctx.model, ctx.test.x, ctx.test.y)}))
    for method_id, metric_ids in tqdm(sorted(plan.items()), desc=f"evaluate {dataset}/{model_id}",
                                      disable=not progress):
        record = load_explanation(Path(workdir) / explanation_path(dataset, model_id, method_id), bounds)
        method = registry.get(method_id)(**record.meta["params"])
        values: dict[str, float] = {}
        for metric_id in metric_ids:
            seed_everything(settings["seed"])
            start = time.perf_counter()
            values.update({k: float(v) for k, v in instances[metric_id](record, ctx, method).items()})
            log.info("%s/%s %s %s: %.2f s", dataset, model_id, method_id, metric_id, time.perf_counter() - start)
        written.append(atomic_write_json(Path(workdir) / metrics_path(dataset, model_id, method_id), values))
    return written


COLUMNS = ("dataset", "model", "method", "metric", "value", "seed")


def _checkpoint_seed(sidecar: Path) -> int:
    """The seed recorded in a checkpoint's ``.json`` record."""
    seed = read_json_object(sidecar, "checkpoint record").get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise BadFileError(sidecar, f"'seed' must be an integer, got {seed!r}")
    return seed


def _metric_values(path: Path) -> dict:
    """A metric file: ``{metric_id: number or null}``."""
    values = read_json_object(path, "metric file")
    for metric_id, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise BadFileError(path, f"metric {metric_id!r} has value {value!r}, expected a number or null")
    return values


def aggregate(workdir: Path, metric_files: list[str]) -> list[Path]:
    """Collect per-explanation metric files into the tidy ``all.csv`` and a nested ``summary.json``."""
    rows, summary = [], {}
    _sweep(workdir, ["data/metrics/all.csv", "data/metrics/summary.json"])
    for rel in sorted(metric_files):
        path = Path(workdir) / rel
        dataset, model_id, method = path.parts[-3], path.parts[-2], path.stem
        values = _metric_values(path)
        seed = _checkpoint_seed(Path(workdir) / (checkpoint_path(dataset, model_id)[:-3] + ".json"))
        for metric_id, value in sorted(values.items()):
            rows.append((dataset, model_id, method, metric_id, value, seed))
            summary.setdefault(dataset, {}).setdefault(model_id, {}).setdefault(method, {})[metric_id] = (
                None if value is None or (isinstance(value, float) and math.isnan(value)) else value)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    out_csv = atomic_write_text(Path(workdir) / "data/metrics/all.csv", buffer.getvalue())
    out_json = atomic_write_json(Path(workdir) / "data/metrics/summary.json", summary)
    return [out_csv, out_json]
