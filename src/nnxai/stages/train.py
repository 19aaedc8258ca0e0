"""Stage ``train``: train one model variant on one data set; write the checkpoint and its ``.json`` record.

An active method's variant (:mod:`nnxai.active`) trains the network its class builds, with its hooks in the
loop, and the checkpoint keeps that network's name and arguments, the variant and the extra modules."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from nnxai import data
from nnxai.active.base import ACTIVE
from nnxai.models import build_network, save_checkpoint
from nnxai.models.networks import network_kwargs
from nnxai.paths import checkpoint_path
from nnxai.stages._common import log, sweep
from nnxai.training.trainer import TrainConfig, train_model
from nnxai.training.runtime import resolve_device, seed_everything, set_threads
from nnxai.training.trainer import accuracy
from nnxai.versions import code_version


def config_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _arch_kwargs(settings: dict, info) -> dict:
    return network_kwargs(settings["architecture"], settings["arch_config"], settings["activation"],
                          info.input_shape, info.n_classes)


def train(settings: dict, workdir: Path, progress: bool = True) -> Path:
    """Train one model variant on one dataset; write ``{model}.pt`` and its ``.json`` record."""
    set_threads(settings["threads"])
    device = resolve_device(settings["device"])
    dataset, model_id = settings["dataset"], settings["model"]
    sweep(workdir, [checkpoint_path(dataset, model_id), checkpoint_path(dataset, model_id)[:-3] + ".json"])
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
    active = ACTIVE[settings["active"]](**settings["active_params"]) if settings.get("active") else None
    network = settings["architecture"]
    if active is not None:
        reason = active.why_not(info)
        if reason:
            raise ValueError(f"active method {settings['active']!r} cannot be trained on {dataset}: {reason}")
        network, kwargs = active.build(network, kwargs, info)
        active.prepared = {"train": train_split, "val": val_split}
    seed_everything(settings["seed"])
    model = build_network(network, **kwargs)
    start = time.perf_counter()
    history = train_model(model, (train_split.x, y_train), (val_split.x, val_split.y), cfg, settings["seed"],
                          device, progress=progress, desc=f"train {dataset}/{model_id}", active=active, info=info)
    log.info("trained %s/%s in %.1f s", dataset, model_id, time.perf_counter() - start)
    model.cpu()
    test_acc = accuracy(model, test_split.x, test_split.y)
    record = {"dataset": dataset, "model": model_id, "seed": settings["seed"], "config": settings,
              "config_hash": config_hash(settings), "code_version": code_version(),
              "architecture": network, "arch_kwargs": kwargs, "variant": model_id,
              "active": settings.get("active")}
    extras = {name: m.cpu() for name, m in active.extras().items()} if active is not None else {}
    path = Path(workdir) / checkpoint_path(dataset, model_id)
    return save_checkpoint(path, model, record, sidecar={**record, "history": history, "test_accuracy": test_acc,
                                                         "val_accuracy": history[-1]["val_accuracy"]},
                           extras=extras)
