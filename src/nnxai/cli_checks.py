"""Checks of what a CLI stage is asked to do, before it loads or computes anything.

Argument types with ranges (:func:`threads`, :func:`device`, :func:`model_id`, :func:`folder`) and the check
of a stage's ``--settings`` slice (:func:`check_settings`): the keys :func:`nnxai.workflow.stage_settings`
writes for that stage, each value's type and range, a method's or metric's parameters checked by its class,
and no contradiction with the ``-d``/``-m``/``-x`` of the command line (settings of another data set, model
or method would otherwise write their result under the name asked for).

Every failure is a :class:`SettingsError` (a ``ValueError``) or an ``argparse.ArgumentTypeError`` naming the
key, the bad value and what is allowed.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nnxai.params import Bool, Choice, Float, Int, Param, ParamError, Str
from nnxai.paths import MODEL_ROW

MAX_THREADS = 1024
SEED_MAX = 2 ** 63 - 1
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class SettingsError(ValueError):
    """``--settings`` is not JSON, lacks or adds keys, holds a bad value, or contradicts -d/-m/-x."""


# --- argparse types ---------------------------------------------------------------------------------

def threads(text: str) -> int:
    """``--threads``: an integer in 1..MAX_THREADS."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer (1..{MAX_THREADS})") from None
    if not 1 <= value <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"{value} is out of range: torch threads must be 1..{MAX_THREADS}")
    return value


def device(text: str) -> str:
    """``--device``: auto, cpu or cuda[:k]."""
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use auto, cpu, cuda or cuda:<k>")
    return text


def model_id(text: str) -> str:
    """``--model``: a model variant id (``baseline``, ``l1``, ``baseline_seed3``, ...)."""
    from nnxai.models.variants import variant

    try:
        variant(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def folder(text: str) -> str:
    """``--workdir``/``--out``: a folder, or a path that does not exist yet (not a file)."""
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, expected a folder")
    return text


# --- --settings -------------------------------------------------------------------------------------

def parse_settings(text: str) -> dict:
    """The JSON object of ``--settings``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise SettingsError(f"--settings is not valid JSON ({err.msg} at character {err.pos}): "
                            f"{text[:60]!r}") from None
    if not isinstance(value, dict):
        raise SettingsError(f"--settings must be a JSON object (as `nnxai.workflow.settings_json` writes), "
                            f"got a {type(value).__name__}: {text[:60]!r}")
    return value


def _common() -> dict[str, Param]:
    return {"device": Str("auto, cpu or cuda[:k]"), "threads": Int("torch threads", low=1, high=MAX_THREADS),
            "seed": Int("the run's seed", low=0)}


def _declared(stage: str) -> dict[str, Param]:
    """The top-level keys of a stage's slice (see :func:`nnxai.workflow.stage_settings`)."""
    from nnxai.active.base import ACTIVE
    from nnxai.training.penalties import NO_PENALTY, PENALTIES

    seed = Int("a seed", low=0)
    if stage == "prepare":
        return {"dataset": Str("the data set"), "sizes": Param("mapping", "split sizes"), "seed": seed}
    if stage == "train":
        return {**_common(), "dataset": Str("the data set"), "model": Str("the model variant"),
                "architecture": Choice("the base network", ("cnn", "mlp")),
                "arch_config": Param("mapping", "network widths"), "activation": Str("unit activation"),
                "training": Param("mapping", "the training block"),
                "penalty": Choice("the variant's penalty", lambda: [NO_PENALTY, *PENALTIES]),
                "penalty_weight": Float("the penalty's weight", low=0.0), "shuffle_labels": Bool("shuffled labels"),
                "data_seed": seed,
                "active": Choice("the active method training it (null: none)", lambda: list(ACTIVE), nullable=True),
                "active_params": Param("mapping", "the active method's training parameters")}
    if stage == "explain":
        return {**_common(), "method": Str("the method id"), "params": Param("mapping", "the method's parameters")}
    if stage == "evaluate":
        return {**_common(), "methods": Param("mapping", "metric ids per method"),
                "metric_params": Param("mapping", "each metric's parameters"),
                "inputs": Param("mapping", "per method and metric, the files it reads besides the cell's own"),
                "model_metrics": Bool("also score the model's accuracy")}
    raise ValueError(f"unknown stage {stage!r}")


def _check_keys(stage: str, settings: dict, declared: Mapping[str, Param]) -> None:
    missing = sorted(set(declared) - set(settings))
    unknown = sorted(set(settings) - set(declared))
    if missing or unknown:
        raise SettingsError(f"--settings of `nnxai {stage}` must hold the keys {sorted(declared)}"
                            + (f"; missing {missing}" if missing else "") + (f"; unknown {unknown}" if unknown else "")
                            + " (Snakemake passes `nnxai.workflow.settings_json`; by hand use --profile)")
    for key, param in declared.items():
        try:
            param.check(settings[key], f"--settings.{key}")
        except ParamError as err:
            raise SettingsError(str(err)) from None
    if "device" in declared and not _DEVICE.match(settings["device"]):
        raise SettingsError(f"--settings.device: {settings['device']!r} is not auto, cpu, cuda or cuda:<k>")
    for key in ("seed", "data_seed"):
        if key in declared and settings[key] > SEED_MAX:   # torch takes seeds up to 2**63 - 1
            raise SettingsError(f"--settings.{key}: {settings[key]} is out of range, expected 0..{SEED_MAX}")


def _same(key: str, settings: dict, flag: str, wanted: str) -> None:
    if settings[key] != wanted:
        raise SettingsError(f"--settings.{key} is {settings[key]!r} but {flag} asks for {wanted!r}; settings of "
                            f"another {key} would write their result under {wanted!r}: pass the slice of {wanted!r}")


def _check_prepare(settings: dict, dataset: str) -> None:
    from nnxai.data.splits import check_sizes

    _same("dataset", settings, "--dataset", dataset)
    try:
        check_sizes(settings["sizes"])
    except ValueError as err:
        raise SettingsError(f"--settings.sizes: {err}") from None


def _check_train(settings: dict, dataset: str, model: str) -> None:
    from nnxai.data import DATASETS
    from nnxai.models.networks import check_arch, network_kwargs
    from nnxai.models.variants import variant

    _same("dataset", settings, "--dataset", dataset)
    _same("model", settings, "--model", model)
    info, var = DATASETS[dataset], variant(model)
    expected = {"architecture": "cnn" if info.kind == "image" else "mlp", "activation": var.activation,
                "penalty": var.penalty, "shuffle_labels": var.shuffle_labels,
                "seed": settings["data_seed"] + var.seed_offset}
    for key, value in expected.items():
        if settings[key] != value:
            raise SettingsError(f"--settings.{key} is {settings[key]!r} but {dataset}/{model} trains with "
                                f"{value!r} (from --dataset {dataset} --model {model})")
    arch = settings["architecture"]
    layers = {"cnn": "widths", "mlp": "hidden"}[arch]
    if not isinstance(settings["arch_config"], dict) or set(settings["arch_config"]) != {layers}:
        raise SettingsError(f"--settings.arch_config of a {arch} must be {{{layers!r}: [...]}}, "
                            f"got {settings['arch_config']!r}")
    widths = settings["arch_config"][layers]
    if not isinstance(widths, list):
        raise SettingsError(f"--settings.arch_config.{layers} must be a list of layer widths, got {widths!r}")
    try:
        check_arch(arch, network_kwargs(arch, settings["arch_config"], settings["activation"], info.input_shape,
                                        info.n_classes))
    except (ValueError, TypeError) as err:
        raise SettingsError(f"--settings.arch_config: {err}") from None
    _check_training(settings["training"])


def _check_training(block: dict) -> None:
    declared = {"epochs": Int("passes over the train split", low=1, high=100_000),
                "batch_size": Int("inputs per step", low=1, high=10_000_000),
                "lr": Float("learning rate", low=0.0, low_open=True), "weight_decay": Float("weight decay", low=0.0)}
    _check_block("training", block, declared)


def _check_block(name: str, block: dict, declared: Mapping[str, Param]) -> None:
    missing, unknown = sorted(set(declared) - set(block)), sorted(set(block) - set(declared))
    if missing or unknown:
        raise SettingsError(f"--settings.{name} must hold {sorted(declared)}"
                            + (f"; missing {missing}" if missing else "") + (f"; unknown {unknown}" if unknown else ""))
    for key, param in declared.items():
        try:
            param.check(block[key], f"--settings.{name}.{key}")
        except ParamError as err:
            raise SettingsError(str(err)) from None


def _check_explain(settings: dict, method: str) -> None:
    from nnxai import registry

    _same("method", settings, "--method", method)
    cls = registry.get(method)   # an unknown or unimplemented id: a clear UnknownMethodError
    try:
        cls.checked_params(settings["params"], owner=f"--settings.params (method {method!r})")
    except ParamError as err:
        raise SettingsError(str(err)) from None


def _check_evaluate(settings: dict, method: str | None) -> None:
    from nnxai import registry
    from nnxai.metrics.base import metrics

    plan, registered = settings["methods"], metrics()
    if method == MODEL_ROW:
        if plan or settings.get("model_metrics") is not True:
            raise SettingsError(f"--model-only: --settings.methods must be empty and model_metrics true, got "
                                f"methods {sorted(plan)}, model_metrics {settings.get('model_metrics')!r}")
        return
    if method is not None and set(plan) != {method}:
        raise SettingsError(f"--settings.methods scores {sorted(plan)} but --method asks for {method!r} only; "
                            f"pass the slice of {method!r}")
    used = set()
    for method_id, metric_ids in plan.items():
        registry.get(method_id)
        if not isinstance(metric_ids, list) or not all(isinstance(m, str) for m in metric_ids):
            raise SettingsError(f"--settings.methods.{method_id} must be a list of metric ids, got {metric_ids!r}")
        unknown = [m for m in metric_ids if m not in registered]
        if unknown:
            raise SettingsError(f"--settings.methods.{method_id}: unknown metrics {unknown}; known: "
                                f"{', '.join(sorted(registered))}")
        of_model = [m for m in metric_ids if "model" in registered[m].kinds]
        if of_model:
            raise SettingsError(f"--settings.methods.{method_id}: {of_model} score the model, not an "
                                f"explanation (model_metrics: true computes them)")
        used.update(metric_ids)
    given = settings["metric_params"]
    if set(given) != used:
        raise SettingsError(f"--settings.metric_params must hold the parameters of exactly the metrics used "
                            f"{sorted(used)}; got {sorted(given)}")
    for metric_id in sorted(used):
        try:
            registered[metric_id].checked_params(given[metric_id], owner=f"--settings.metric_params.{metric_id}")
        except ParamError as err:
            raise SettingsError(str(err)) from None


def check_settings(stage: str, settings: Any, dataset: str, model: str | None = None,
                   method: str | None = None) -> dict:
    """``settings`` if it is a complete, valid slice for ``stage`` that agrees with -d/-m/-x; else
    :class:`SettingsError` (an unknown method id: :class:`nnxai.registry.UnknownMethodError`)."""
    if not isinstance(settings, dict):
        raise SettingsError(f"--settings must be a JSON object, got {settings!r}")
    _check_keys(stage, settings, _declared(stage))
    if stage == "prepare":
        _check_prepare(settings, dataset)
    elif stage == "train":
        _check_train(settings, dataset, model)
    elif stage == "explain":
        _check_explain(settings, method)
    else:
        _check_evaluate(settings, method)
    return settings
