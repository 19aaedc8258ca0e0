"""Configuration: ``configs/config.yaml`` merged with a profile, validated against a JSON schema.

The schema's enums (datasets, model variants, method ids) come from the registries, so an unknown id, a
wrong type or a negative size fails before any job starts, with a message that names the key.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from nnxai import registry
from nnxai.data import DATASETS
from nnxai.metrics import metrics
from nnxai.models.variants import variant, variant_pattern
from nnxai.params import ParamError, params_schema
from nnxai.profiles import PROFILES



class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key and value."""


def config_dir() -> Path:
    """``$NNXAI_CONFIG_DIR``, else the ``configs/`` folder of the source checkout."""
    env = os.environ.get("NNXAI_CONFIG_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "configs"
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"no config.yaml in {path}; set NNXAI_CONFIG_DIR to the repository's configs/ folder")
    return path


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``, recursively for nested dicts (lists and scalars replace)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _sizes_schema() -> dict:
    size = {"type": ["integer", "null"], "minimum": 1}
    return {"type": "object", "required": ["train", "val", "test"], "additionalProperties": False,
            "properties": {"train": size, "val": size, "test": size}}


def schema() -> dict:
    """The JSON schema of a merged config."""
    method_ids = [s.id for s in registry.specs()]
    positive = {"type": "integer", "minimum": 1}
    train_block = {"type": "object", "additionalProperties": False,
                   "properties": {"epochs": positive, "batch_size": positive,
                                  "lr": {"type": "number", "exclusiveMinimum": 0},
                                  "weight_decay": {"type": "number", "minimum": 0}}}
    variant_list = {"type": "array", "items": {"type": "string", "pattern": variant_pattern()}, "uniqueItems": True}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["profile", "seed", "device", "threads", "datasets", "models", "methods", "data", "training",
                     "architecture", "method_params", "metric_params"],
        "properties": {
            "profile": {"enum": list(PROFILES)},
            "seed": {"type": "integer", "minimum": 0},
            "device": {"type": "string", "pattern": r"^(auto|cpu|cuda(:\d+)?)$"},
            "threads": positive,
            "datasets": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"enum": sorted(DATASETS)}},
            "models": {"type": "object", "additionalProperties": False,
                       "properties": {"image": variant_list, "tabular": variant_list}},
            "methods": {"oneOf": [{"const": "all"},
                                  {"type": "array", "uniqueItems": True, "items": {"enum": method_ids}}]},
            "data": {"type": "object", "propertyNames": {"enum": sorted(DATASETS)},
                     "additionalProperties": _sizes_schema()},
            "training": {"type": "object", "required": ["cnn", "mlp"],
                         "properties": {"cnn": train_block, "mlp": train_block,
                                        "penalty_weight": {"type": "object", "additionalProperties":
                                                           {"type": "number", "minimum": 0}}}},
            "architecture": {"type": "object"},
            "method_params": {"type": "object", "propertyNames": {"enum": method_ids},
                              "additionalProperties": {"type": "object"},
                              # every implemented method's block, from the parameters its class declares
                              "properties": {m: params_schema(registry.get(m).parameters)
                                             for m in registry.implemented_ids()}},
            "metric_params": {"type": "object", "propertyNames": {"enum": list(metrics())},
                              "properties": {m: params_schema(cls.parameters) for m, cls in metrics().items()}},
        },
    }


def _path_of(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate(cfg: dict) -> dict:
    """Raise :class:`ConfigError` naming the first bad key; check cross-references the schema cannot."""
    validator = jsonschema.Draft202012Validator(schema())
    # Inside a method's or metric's block the declared-parameter validator speaks (it names what is missing
    # or allowed, and tells 2.0 from 2, which JSON Schema does not); the schema documents the same rules.
    errors = sorted((e for e in validator.iter_errors(cfg) if not _inside_declared_block(e)),
                    key=lambda e: (len(e.absolute_path), e.message))
    if errors:
        err = errors[0]
        raise ConfigError(f"config key '{_path_of(err)}': {err.message}")
    for name in cfg["datasets"]:
        if name not in cfg["data"]:
            raise ConfigError(f"config key 'data.{name}': dataset {name!r} is listed but has no split sizes")
        if not DATASETS[name].in_profile(cfg["profile"]):
            raise ConfigError(f"config key 'datasets': {name!r} is for the {'/'.join(DATASETS[name].profiles)} "
                              f"profile(s), not {cfg['profile']!r}")
    if cfg["methods"] != "all":
        for method_id in cfg["methods"]:
            if not registry.is_implemented(method_id):
                raise ConfigError(f"config key 'methods': {method_id!r} is in the catalogue but not implemented "
                                  f"yet; implemented: {', '.join(registry.implemented_ids())}")
    for method_id in selected_methods(cfg):
        if method_id not in cfg["method_params"]:
            raise ConfigError(f"config key 'method_params.{method_id}': missing; {method_id} needs "
                              f"{sorted(registry.get(method_id).param_names)}")
    for method_id in cfg["method_params"]:   # every block of an implemented method, selected or not
        if not registry.is_implemented(method_id):
            continue
        cls = registry.get(method_id)
        try:
            cls.checked_params(method_params(cfg, method_id), owner=f"config key method_params.{method_id}")
        except ParamError as err:
            raise ConfigError(str(err)) from None
    _validate_metric_params(cfg["metric_params"])
    return cfg


def _inside_declared_block(error: jsonschema.ValidationError) -> bool:
    path = list(error.absolute_path)
    return len(path) >= 2 and path[0] in ("method_params", "metric_params")


def _validate_metric_params(params: dict) -> None:

    registered = metrics()
    for metric_id, given in params.items():
        if metric_id not in registered:
            raise ConfigError(f"config key 'metric_params.{metric_id}': unknown metric; known: "
                              f"{', '.join(sorted(registered))}")
    for metric_id, cls in registered.items():
        try:
            cls.checked_params(params.get(metric_id, {}), owner=f"config key metric_params.{metric_id}")
        except ParamError as err:
            raise ConfigError(str(err)) from None


def load_config(overrides: dict | None = None, directory: str | Path | None = None) -> dict:
    """Merge ``config.yaml``, the profile named in it or in ``overrides``, then ``overrides``; validate."""
    directory = Path(directory) if directory else config_dir()
    base = yaml.safe_load((directory / "config.yaml").read_text())
    overrides = dict(overrides or {})
    profile = overrides.get("profile", base.get("profile", "default"))
    if profile not in PROFILES:
        raise ConfigError(f"config key 'profile': {profile!r} is not one of {', '.join(PROFILES)}")
    profile_cfg = yaml.safe_load((directory / "profiles" / f"{profile}.yaml").read_text()) or {}
    cfg = deep_merge(deep_merge(base, profile_cfg), overrides)
    cfg["profile"] = profile
    return validate(cfg)


def method_params(cfg: dict, method_id: str) -> dict[str, Any]:
    """The parameters ``method_id`` runs with: its block of ``method_params``.  A composite method (SpRAy,
    MAME, DeepConsensus: a ``local_method`` parameter) takes its local method's parameters from that
    method's own block, with the optional ``local_params`` of its block on top (overrides, not a copy)."""
    given = copy.deepcopy(cfg["method_params"].get(method_id, {}))
    local = given.get("local_method")
    if "local_method" in registry.get(method_id).parameters and isinstance(local, str):
        if local not in cfg["method_params"]:
            raise ConfigError(f"config key 'method_params.{method_id}.local_method': {local!r} has no parameter "
                              f"block 'method_params.{local}'")
        given["local_params"] = deep_merge(cfg["method_params"][local], given.get("local_params") or {})
    return given


def selected_methods(cfg: dict) -> list[str]:
    """Method ids the config asks for, in registry order."""
    if cfg["methods"] == "all":
        return registry.implemented_ids()
    wanted = set(cfg["methods"])
    return [m for m in registry.implemented_ids() if m in wanted]


def models_for(cfg: dict, dataset: str) -> list[str]:
    return list(cfg["models"].get(DATASETS[dataset].kind, []))


def train_settings(cfg: dict, dataset: str, model_id: str) -> dict[str, Any]:
    """Everything that determines one checkpoint (its config hash is computed from this)."""

    info = DATASETS[dataset]
    arch = "cnn" if info.kind == "image" else "mlp"
    var = variant(model_id)
    return {"dataset": dataset, "model": model_id, "architecture": arch,
            "arch_config": cfg["architecture"][arch], "activation": var.activation,
            "training": cfg["training"][arch], "penalty": var.penalty,
            "penalty_weight": cfg["training"].get("penalty_weight", {}).get(var.penalty, 0.0),
            "shuffle_labels": var.shuffle_labels, "seed": cfg["seed"] + var.seed_offset,
            "data_seed": cfg["seed"]}
