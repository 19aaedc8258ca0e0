"""Configuration: ``configs/config.yaml`` merged with a profile and the overrides, checked before any job.

Every key is declared (:func:`config_parameters`, with :mod:`nnxai.params`, as methods and metrics declare
theirs; choices come from the registries), so an unknown key, a wrong type, a non-finite number, an empty
list, a value out of range, a split larger than its data or a size that would not fit in memory is refused
before any job starts, with a message that names the key, the value and what is allowed.  The JSON schema
(``nnxai config --schema``) is generated from the same declarations.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from nnxai import registry, resources
from nnxai.active.base import ACTIVE
from nnxai.data import DATASETS
from nnxai.data.splits import SPLITS
from nnxai.metrics import metrics
from nnxai.models.variants import VARIANTS, variant, variant_pattern
from nnxai.params import (Block, Choice, Float, Int, List, MappingOf, OneOf, Overrides, Param, ParamError, Str,
                          check_params, params_schema)
from nnxai.profiles import PROFILES
from nnxai.training.penalties import PENALTIES


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


#: Bounds no sensible run reaches (a rule, not a tuned value): seeds are what numpy and torch take, and a
#: job cannot use more threads than the largest machines have cores.
SEED_MAX = 2 ** 32 - 1
MAX_THREADS = 1024
MAX_EPOCHS = 100_000
MAX_WIDTH = 8192
MAX_HIDDEN_LAYERS = 32
MODEL_KINDS = ("image", "tabular")


#: In a ``models`` list: every registered active method's variant that fits the data set (nnxai.active).
ALL_ACTIVE = "active"


def _variant_ids() -> Param:
    return List(f"model variant ids (nnxai.models.variants; baseline_seed<k> for seed k; {ALL_ACTIVE!r}: every "
                "registered active method whose design fits the data set)",
                item=Str("a model variant id", pattern=f"{variant_pattern().strip('^$')}|{ALL_ACTIVE}"),
                min_items=0, unique=True)


def regularised_variant_ids() -> list[str]:
    """The registered variants :func:`is_variant` counts as regularised networks: l1, l2, the active ones."""
    return [v for v in VARIANTS if is_variant(v)]


def listed_models(cfg: dict, key: str) -> list[str]:
    """The ``models`` list under ``key`` (a kind or a data set), with :data:`ALL_ACTIVE` expanded to the
    registered active variants (registry order), each once."""
    out = []
    for model in cfg["models"].get(key, []):
        out += list(ACTIVE) if model == ALL_ACTIVE else [model]
    return list(dict.fromkeys(out))


def _training_block(title: str, required: bool = True) -> Param:
    return Block(title, {
        "epochs": Int("passes over the train split", low=1, high=MAX_EPOCHS, required=required),
        "batch_size": Int("inputs per optimiser step", low=1, required=required),
        "lr": Float("Adam's learning rate", low=0.0, low_open=True, required=required),
        "weight_decay": Float("Adam's L2 weight decay", low=0.0, required=required)})


def training_for(cfg: dict, dataset: str, arch: str) -> dict:
    """The training block of ``arch`` on ``dataset``: ``training.<arch>`` with ``training.datasets.<dataset>``
    over it (e.g. the sigmoid MLPs of the MONK's problems need more passes over their 124 robots)."""
    return {**cfg["training"][arch], **(cfg["training"].get("datasets") or {}).get(dataset, {})}


def config_parameters() -> dict[str, Param]:
    """The declared keys of a merged config (types, ranges, choices: one declaration, as for methods)."""
    catalogue = lambda: [s.id for s in registry.specs()]
    sizes = Block("split sizes", {split: Int(f"{split} inputs (null: the natural size of a fixed-size set)",
                                             low=1, nullable=True) for split in SPLITS})
    return {
        "profile": Choice("the profile merged over config.yaml", PROFILES),
        "seed": Int("master seed: data generation, splits, training, explained inputs", low=0, high=SEED_MAX),
        "device": Str("auto (CUDA when present), cpu, or cuda[:k]", pattern=r"auto|cpu|cuda(:\d+)?"),
        "threads": Int("torch threads per job (Snakemake rules declare the same)", low=1, high=MAX_THREADS),
        "datasets": List("data sets of the run", item=Choice("a data set id", lambda: sorted(DATASETS)),
                         unique=True),
        "models": MappingOf("model variants trained on every data set of a kind (image, tabular) that fits "
                            "them; a data set's own list (key: its id) replaces its kind's",
                            values=_variant_ids(), keys=lambda: [*MODEL_KINDS, *sorted(DATASETS)]),
        "active_params": MappingOf("training hyperparameters of each active method's variant (checked by its "
                                   "class, nnxai.active)", values=Overrides("an active method's parameters"),
                                   keys=lambda: list(ACTIVE)),
        "methods": OneOf("every implemented method, or a list of method ids",
                         Choice("every implemented method", ("all",)),
                         List("method ids", item=Choice("a method id", catalogue), unique=True)),
        "data": MappingOf("split sizes per data set", values=sizes, keys=lambda: sorted(DATASETS)),
        "training": Block("training, per architecture", {
            "cnn": _training_block("training of the CNNs"), "mlp": _training_block("training of the MLPs"),
            "penalty_weight": MappingOf("weight of each training penalty of a model variant",
                                        values=Float("the penalty's weight", low=0.0), keys=lambda: list(PENALTIES)),
            "datasets": MappingOf("per data set, training keys that replace its architecture's (the rest kept)",
                                  values=_training_block("training on one data set", required=False), keys=lambda: sorted(DATASETS),
                                  required=False)}),
        "architecture": Block("network widths, per architecture", {
            "cnn": Block("the ConvNet", {"widths": List(
                "channels of its three 3x3 convolutions", item=Int("channels", low=1, high=MAX_WIDTH),
                min_items=3, max_items=3)}),
            "mlp": Block("the MLP", {"hidden": List(
                "units of each hidden layer", item=Int("units", low=1, high=MAX_WIDTH), min_items=1,
                max_items=MAX_HIDDEN_LAYERS)})}),
        "thin": MappingOf("per data set, at most this many test inputs explained and scored: caps every count "
                          "declared against the test split (n_explain, the metrics' n_inputs, n_images); "
                          "null: no cap.  The default profile thins the sets without ground truth",
                          values=Int("test inputs", low=1, nullable=True), keys=lambda: sorted(DATASETS)),
        "control_n_explain": Int("the control models (trained on shuffled labels) explain and are scored on at most "
                                 "this many test inputs, a subset of the baseline's (the data-randomisation check "
                                 "compares the maps on it; a method that analyses a population of maps, SpRAy, keeps the "
                                 "baseline's count); null: as many as the baseline", low=1, nullable=True),
        "variant_n_reexplain": Int("on l1, l2 and the active networks, the metrics that re-run the method (continuity, "
                                   "fragility, stability, the invariances, model randomisation) score at most this "
                                   "many inputs; null: as many as variant_n_explain allows", low=1, nullable=True),
        "variant_reexplain_datasets": List("data sets on which those re-running metrics score l1, l2 and the active "
                                           "networks (elsewhere they score the baseline only); null: every data set",
                                           item=Choice("a data set id", lambda: sorted(DATASETS)), min_items=0,
                                           unique=True, nullable=True),
        "variant_reexplain_methods": MappingOf(
            "per regularised network (l1, l2, an active method's variant): methods whose explanations of it the "
            "re-running metrics also score, on every data set it trains on, beside variant_reexplain_datasets "
            "(expo: [expo] scores ExpO's own local model [120] with its catalogue metric stability)",
            values=List("method ids", item=Choice("an implemented method id", lambda: registry.implemented_ids()),
                        min_items=0, unique=True),
            keys=regularised_variant_ids),
        "variant_methods": List("the passive methods run on l1, l2 and the active networks (each network's own "
                                "explanation always runs); null: every method that applies", item=Choice(
                                    "a method id", catalogue), unique=True, nullable=True),
        "seed_replicas": Block("the baseline retrained with other training seeds (baseline_seed<k>), so that every "
                               "reported number shows its spread over training seeds beside its interval over inputs", {
            "seeds": List("seed offsets k: baseline_seed<k> is trained on every data set whose models include the "
                          "baseline, and its test accuracy reported", item=Int("a seed offset", low=1), min_items=0,
                          unique=True),
            "datasets": List("data sets on which the replicas also run the seed methods; null: every data set",
                             item=Choice("a data set id", lambda: sorted(DATASETS)), min_items=0, unique=True,
                             nullable=True),
            "methods": List("methods run on the replicas there, scored by the metrics that neither re-run the method "
                            "nor retrain; null: every method that applies", item=Choice("a method id", catalogue),
                            min_items=0, unique=True, nullable=True)}),
        "variant_n_explain": Int("every other variant but the baseline (l1, l2, the active methods' networks) "
                                 "explains and is scored on at most this many test inputs, a subset of the "
                                 "baseline's (paired comparisons); null: as many as the baseline", low=1,
                                 nullable=True),
        "method_params": MappingOf("every hyperparameter of every method (checked by the method's class)",
                                   values=Overrides("a method's parameters"), keys=catalogue),
        "metric_params": MappingOf("every parameter of every metric (checked by the metric's class)",
                                   values=Overrides("a metric's parameters"), keys=lambda: list(metrics())),
    }


def schema() -> dict:
    """The JSON schema of a merged config, from :func:`config_parameters` and every class's declarations."""
    out = {"$schema": "https://json-schema.org/draft/2020-12/schema", **params_schema(config_parameters())}
    properties = out["properties"]
    properties["method_params"]["properties"] = {m: params_schema(registry.get(m).parameters)
                                                 for m in registry.implemented_ids()}
    properties["metric_params"]["properties"] = {m: params_schema(cls.parameters) for m, cls in metrics().items()}
    properties["active_params"]["properties"] = {a: params_schema(cls.parameters) for a, cls in ACTIVE.items()}
    return out


def validate(cfg: dict) -> dict:
    """Raise :class:`ConfigError` naming the first bad key, its value and what is allowed.

    Every key is declared (:func:`config_parameters`; a method's or metric's block by its class), so an
    unknown key at any level, a wrong type, ``2.0`` where an integer belongs, a non-finite number, an
    empty list or a value out of range is refused here, before any job; then what no single key says:
    split sizes against the data, the memory a size asks for, models for every selected kind.
    """
    try:
        check_params("config", config_parameters(), cfg)
    except ParamError as err:
        raise ConfigError(str(err)) from None
    for name in cfg["datasets"]:
        if name not in cfg["data"]:
            raise ConfigError(f"config.data.{name}: dataset {name!r} is listed but has no split sizes")
        if not DATASETS[name].in_profile(cfg["profile"]):
            raise ConfigError(f"config.datasets: {name!r} is for the {'/'.join(DATASETS[name].profiles)} "
                              f"profile(s), not {cfg['profile']!r}")
        kind = DATASETS[name].kind
        key = name if name in cfg["models"] else kind
        if not cfg["models"].get(key):
            raise ConfigError(f"config.models.{key}: no model variants for the {kind} data set {name!r}; "
                              f"list at least one (e.g. [baseline])")
        for model in cfg["models"][key]:   # named explicitly (the ``active`` token takes those that fit)
            reason = None if model == ALL_ACTIVE else variant_why_not(model, name)
            if reason and key == name:
                raise ConfigError(f"config.models.{name}: {model!r} cannot be trained on {name}: {reason}")
            if reason and arch_of(name) not in variant(model).architectures:
                raise ConfigError(f"config.models.{kind}: {model!r} cannot be trained on {kind} data: {reason}")
    for model in sorted({m for key in cfg["models"] for m in listed_models(cfg, key)}):
        if variant(model).active is not None and variant(model).active not in cfg.get("active_params", {}):
            raise ConfigError(f"config.active_params.{model}: missing; the variant {model!r} needs "
                              f"{sorted(ACTIVE[variant(model).active].param_names)}")
    for active_id, given in cfg.get("active_params", {}).items():
        try:
            ACTIVE[active_id].checked_params(given, owner=f"config.active_params.{active_id}")
        except ParamError as err:
            raise ConfigError(str(err)) from None
    if cfg["methods"] != "all":
        for method_id in cfg["methods"]:
            if not registry.is_implemented(method_id):
                raise ConfigError(f"config.methods: {method_id!r} is in the catalogue but not implemented "
                                  f"yet; implemented: {', '.join(registry.implemented_ids())}")
    for method_id in selected_methods(cfg):
        if method_id not in cfg["method_params"]:
            raise ConfigError(f"config.method_params.{method_id}: missing; {method_id} needs "
                              f"{sorted(registry.get(method_id).param_names)}")
    for method_id in cfg["method_params"]:   # every block of an implemented method, selected or not
        if not registry.is_implemented(method_id):
            continue
        try:
            registry.get(method_id).checked_params(method_params(cfg, method_id),
                                                   owner=f"config.method_params.{method_id}")
        except ParamError as err:
            raise ConfigError(str(err)) from None
    for metric_id, cls in metrics().items():
        try:
            cls.checked_params(cfg["metric_params"].get(metric_id, {}), owner=f"config.metric_params.{metric_id}")
        except ParamError as err:
            raise ConfigError(str(err)) from None
    check_sizes(cfg)
    check_methods_on_data(cfg)
    check_listed_methods_apply(cfg)
    return cfg


def check_listed_methods_apply(cfg: dict) -> None:
    """A method the config lists by name (``methods: [kt, ...]``) must run on at least one model of the run:
    otherwise the run would silently do nothing for it.  The error names the method, each model of the run
    and what the method needs there (``Method.why_not``: KT on a ReLU CNN needs sigmoid units and tabular
    inputs), then what this implementation runs on (:func:`nnxai.workflow.implementation_runs_on`: from the
    class's declarations and its scope_note, not the catalogue's description of the method)."""
    if cfg["methods"] == "all":
        return
    from nnxai.workflow import cell_why_not, implementation_runs_on

    cells = [(d, m) for d in cfg["datasets"] for m in models_for(cfg, d)]
    for method_id in cfg["methods"]:
        reasons = [(d, m, cell_why_not(cfg, d, m, method_id)) for d, m in cells]
        if any(why is None for _, _, why in reasons):
            continue
        reasons = [f"{d}/{m}: {why}" for d, m, why in reasons]
        shown = "; ".join(reasons[:6]) + (f"; ... ({len(reasons) - 6} more)" if len(reasons) > 6 else "")
        raise ConfigError(f"config.methods: {method_id!r} applies to no model of this run ({shown}); this "
                          f"implementation runs on {implementation_runs_on(method_id)}: add a data set and model "
                          f"it fits to config.datasets / config.models, or remove it")


def check_methods_on_data(cfg: dict) -> None:
    """Every selected method's parameters, as each data set and model of the run gets them (thinned),
    against that data set (:meth:`nnxai.methods.base.Method.check_run`)."""
    sizes = planned_sizes(cfg)
    for method_id in selected_methods(cfg):
        cls = registry.get(method_id)
        for name in cfg["datasets"]:
            if DATASETS[name].kind not in cls.modalities:
                continue
            for model in models_for(cfg, name):
                reason = cls.check_run(method_params(cfg, method_id, name, model), DATASETS[name],
                                       sizes[name]["test"])
                if reason:
                    caps = [f"test split {sizes[name]['test']}", f"thin.{name}={cfg.get('thin', {}).get(name)}"]
                    if variant(model).shuffle_labels and cls.variant_cap:
                        caps.append(f"control_n_explain={cfg.get('control_n_explain')}")
                    elif is_variant(model) and cls.variant_cap:
                        caps.append(f"variant_n_explain={cfg.get('variant_n_explain')}")
                    raise ConfigError(f"config.method_params.{method_id} on {name}/{model}: {reason} "
                                      f"(on this model: {', '.join(caps)})")


def planned_sizes(cfg: dict) -> dict[str, dict[str, int]]:
    """Split sizes of every selected data set as its prepare job will make them (natural sizes resolved)."""
    out = {}
    for name in cfg["datasets"]:
        try:
            out[name] = DATASETS[name].planned_sizes(cfg["data"][name])
        except ValueError as err:
            raise ConfigError(f"config.data.{name}: {err}") from None
    return out


def check_sizes(cfg: dict) -> None:
    """Split sizes that the data hold, memory within :func:`nnxai.resources.job_budget`, and no ``n_explain``
    beyond every test split (it would be cut to the split without a word)."""
    sizes = planned_sizes(cfg)
    budget = resources.job_budget()
    refuse = (lambda key, what, need: ConfigError(
        f"config.{key}: {what} needs about {resources.gib(need)} of memory, more than a job may use here "
        f"({resources.gib(budget)}: half of this machine's {resources.gib(resources.machine_memory())})"))
    for name, split in sizes.items():
        info = DATASETS[name]
        need = resources.dataset_bytes(sum(split.values()), info.input_shape, len(info.mask_names))
        if need > budget:
            raise refuse(f"data.{name}", f"{sum(split.values())} inputs of shape {info.input_shape}", need)
    for arch in {("cnn" if DATASETS[n].kind == "image" else "mlp") for n in sizes}:
        for name in (n for n in sizes if (DATASETS[n].kind == "image") == (arch == "cnn")):
            info, training = DATASETS[name], training_for(cfg, name, arch)
            batch = min(training["batch_size"], sizes[name]["train"])    # a larger batch is the whole split
            if arch == "cnn":
                need = resources.cnn_training_bytes(info.input_shape, cfg["architecture"]["cnn"]["widths"],
                                                    info.n_classes, batch)
            else:
                need = resources.mlp_training_bytes(info.input_shape[0], cfg["architecture"]["mlp"]["hidden"],
                                                    info.n_classes, batch)
            if need > budget:
                raise refuse(f"architecture.{arch} / training.{arch}.batch_size",
                             f"training on {name} (batches of {batch})", need)
    largest = {split: max((s[split] for s in sizes.values()), default=0) for split in SPLITS}
    blocks = []
    for method_id in selected_methods(cfg):
        cls, params = registry.get(method_id), method_params(cfg, method_id)
        blocks.append((f"method_params.{method_id}", cls.parameters, params))
        if "local_method" in cls.parameters:
            blocks.append((f"method_params.{method_id}.local_params", registry.get(params["local_method"]).parameters,
                           params.get("local_params") or {}))
    blocks += [(f"metric_params.{m}", cls.parameters, cfg["metric_params"].get(m, {})) for m, cls in metrics().items()]
    for where, declared, values in blocks:
        for name, param in declared.items():
            value = values.get(name)
            if param.at_most and isinstance(value, int) and value > largest[param.at_most]:
                raise ConfigError(f"config.{where}.{name}: {value} is more than any {param.at_most} split of "
                                  f"the run holds; at most {largest[param.at_most]}")


def cli_overrides(configfiles: Sequence[str | Path] = (), cli_config: Mapping[str, Any] | None = None) -> dict:
    """The overrides Snakemake was given: ``--configfile`` files (YAML) merged in order, then ``--config``.

    Snakemake types a ``--config`` value itself only at the top level (``seed=2`` is 2) and reads nested
    values as strings (``training={cnn: {epochs: 3}}`` gives ``"3"``); here every string is read as YAML
    again, so a nested override means what it would mean in a config file.
    """
    out: dict = {}
    for path in configfiles:
        out = deep_merge(out, _read_yaml(Path(path)))
    return deep_merge(out, _retyped(dict(cli_config or {})))


def _retyped(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _retyped(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_retyped(v) for v in value]
    if isinstance(value, str):
        try:
            return yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            return value
    return value


def _read_yaml(path: Path) -> dict:
    """A YAML mapping (an empty file is an empty mapping); a :class:`ConfigError` names the file otherwise."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot be read as YAML: {err}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(loaded).__name__}")
    return loaded


def load_config(overrides: dict | None = None, directory: str | Path | None = None) -> dict:
    """Merge ``config.yaml``, the profile named in it or in ``overrides``, then ``overrides``; validate."""
    directory = Path(directory) if directory else config_dir()
    base = _read_yaml(directory / "config.yaml")
    overrides = dict(overrides or {})
    profile = overrides.get("profile", base.get("profile", "default"))
    if profile not in PROFILES:
        raise ConfigError(f"config.profile: {profile!r} is not one of {', '.join(PROFILES)}")
    profile_cfg = _read_yaml(directory / "profiles" / f"{profile}.yaml")
    cfg = deep_merge(deep_merge(base, profile_cfg), overrides)
    cfg["profile"] = profile
    if "active_params" in cfg and cfg["active_params"] is None:   # a block of comments only: no entry yet
        cfg["active_params"] = {}
    return validate(cfg)


def is_variant(model: str | None) -> bool:
    """A regularised network compared with the baseline: a weight penalty (l1, l2) or an active method's
    variant; not the baseline, its seeds, the shuffled-label control or the sigmoid twin."""
    if model is None:
        return False
    var = variant(model)
    return var.penalty != "none" or var.active is not None


def count_cap(cfg: dict, dataset: str | None, model: str | None = None, variant_cap: bool = True,
              reexplain: bool = False) -> int | None:
    """The most test inputs a job on ``dataset``/``model`` explains or scores: ``thin.<dataset>``, and
    ``control_n_explain`` on a control model (trained on shuffled labels) and ``variant_n_explain`` on every
    other model but the baseline (and its seeds), both unless ``variant_cap`` is false (a method that analyses
    a population of maps: ``Method.variant_cap``), and there ``variant_n_reexplain`` too for a metric that
    re-runs the method (``reexplain``); ``None``: no cap."""
    caps = [cfg.get("thin", {}).get(dataset) if dataset is not None else None]
    if model is not None and variant(model).shuffle_labels:
        if variant_cap:
            caps.append(cfg.get("control_n_explain"))
    elif variant_cap and is_variant(model):
        caps.append(cfg.get("variant_n_explain"))
        if reexplain:
            caps.append(cfg.get("variant_n_reexplain"))
    caps = [c for c in caps if c is not None]
    return min(caps) if caps else None


def thinned(cfg: dict, dataset: str | None, declared: Mapping[str, Param], values: Mapping[str, Any],
            model: str | None = None, variant_cap: bool = True, reexplain: bool = False) -> dict:
    """``values`` with every count declared against the test split (``Param.at_most == "test"``) capped at
    :func:`count_cap`; unchanged where there is no cap (or ``dataset`` is ``None``)."""
    cap = count_cap(cfg, dataset, model, variant_cap, reexplain)
    out = dict(values)
    if cap is None:
        return out
    for name, param in declared.items():
        value = out.get(name)
        if param.at_most == "test" and isinstance(value, int) and not isinstance(value, bool):
            out[name] = min(value, cap)
    return out


def method_params(cfg: dict, method_id: str, dataset: str | None = None, model: str | None = None) -> dict[str, Any]:
    """The parameters ``method_id`` runs with: its block of ``method_params``.  A composite method (SpRAy,
    MAME, DeepConsensus: a ``local_method`` parameter) takes its local method's parameters from that
    method's own block, with the optional ``local_params`` of its block on top (overrides, not a copy).
    With ``dataset`` (and ``model``), the counts are :func:`thinned` for that data set (and model)."""
    cls = registry.get(method_id)
    given = copy.deepcopy(cfg["method_params"].get(method_id, {}))
    local = given.get("local_method")
    if "local_method" in cls.parameters and isinstance(local, str):
        if local not in cfg["method_params"]:
            allowed = cls.parameters["local_method"].allowed()
            raise ConfigError(f"config.method_params.{method_id}.local_method: {local!r} has no parameter block "
                              f"method_params.{local}; expected {allowed} (with its block)")
        given["local_params"] = thinned(cfg, dataset, registry.get(local).parameters,
                                        deep_merge(cfg["method_params"][local], given.get("local_params") or {}),
                                        model, cls.variant_cap)
    return thinned(cfg, dataset, cls.parameters, given, model, cls.variant_cap)


def metric_params(cfg: dict, metric_id: str, dataset: str | None = None, model: str | None = None) -> dict[str, Any]:
    """The parameters ``metric_id`` scores with: its block of ``metric_params``, :func:`thinned` for
    ``dataset`` (and ``model``) when one is given."""
    cls = metrics()[metric_id]
    return thinned(cfg, dataset, cls.parameters, cfg["metric_params"].get(metric_id, {}), model,
                   reexplain=cls.reexplains)


def selected_methods(cfg: dict) -> list[str]:
    """Method ids the config asks for, in registry order."""
    if cfg["methods"] == "all":
        return registry.implemented_ids()
    wanted = set(cfg["methods"])
    return [m for m in registry.implemented_ids() if m in wanted]


def arch_of(dataset: str) -> str:
    """The base network trained on a data set: ``cnn`` on images, ``mlp`` on tables."""
    return "cnn" if DATASETS[dataset].kind == "image" else "mlp"


def variant_why_not(model: str, dataset: str) -> str | None:
    """Why the variant ``model`` is not trained on ``dataset`` (its design does not fit), or ``None``."""
    var = variant(model)
    if arch_of(dataset) not in var.architectures:
        return f"it trains a {'/'.join(var.architectures)}, {dataset} takes a {arch_of(dataset)}"
    if var.active is not None:
        return ACTIVE[var.active].why_not(DATASETS[dataset])
    return None


def models_for(cfg: dict, dataset: str) -> list[str]:
    """The variants trained on ``dataset``: its own list under ``models``, else its kind's, without the
    variants whose design does not fit it (:func:`variant_why_not`), then the seed replicas of its baseline
    (``seed_replicas.seeds``)."""
    key = dataset if dataset in cfg["models"] else DATASETS[dataset].kind
    listed = [m for m in listed_models(cfg, key) if variant_why_not(m, dataset) is None]
    if "baseline" in listed:
        listed += [f"baseline_seed{k}" for k in seed_replica_seeds(cfg)]
    return list(dict.fromkeys(listed))


def seed_replica_seeds(cfg: dict) -> list[int]:
    return list((cfg.get("seed_replicas") or {}).get("seeds") or [])


def is_seed_replica(model: str | None) -> bool:
    """The baseline retrained with another training seed (``baseline_seed<k>``)."""
    if model is None:
        return False
    var = variant(model)
    return var.seed_offset > 0 and not is_variant(model) and not var.shuffle_labels


def train_settings(cfg: dict, dataset: str, model_id: str) -> dict[str, Any]:
    """Everything that determines one checkpoint (its config hash is computed from this)."""

    arch = arch_of(dataset)
    var = variant(model_id)
    active = {"active": var.active, "active_params": cfg["active_params"][var.active] if var.active else {}}
    return {**active, "dataset": dataset, "model": model_id, "architecture": arch,
            "arch_config": cfg["architecture"][arch], "activation": var.activation,
            "training": training_for(cfg, dataset, arch), "penalty": var.penalty,
            "penalty_weight": cfg["training"].get("penalty_weight", {}).get(var.penalty, 0.0),
            "shuffle_labels": var.shuffle_labels, "seed": cfg["seed"] + var.seed_offset,
            "data_seed": cfg["seed"]}
