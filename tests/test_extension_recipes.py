"""The five extension recipes of README.md ("Extend it"), each followed on a toy (issue 8, point 7).

Each test writes one module into a temporary package, the way a contributor writes one file under ``src/``:
importing it runs its decorator, and nothing else is edited.  The test then checks that the new entry
appears everywhere the registries feed: the config schema, the DAG's targets, the CLI, the tables.  The
entry is removed again at teardown, so that the rest of the suite sees the stock registries.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import textwrap
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

from nnxai import cli, registry
from nnxai.config import ConfigError, load_config, schema
from nnxai.workflow import all_targets, methods_for, metrics_for, stage_settings, targets

SMOKE_METHOD_PARAMS = {"n_explain": 4, "batch_size": 4}


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    """``write(name, source)``: write ``<tmp>/toy_ext_<name>/__init__.py`` and import it (registering its
    entries); the package leaves ``sys.modules`` at teardown."""
    imported = []

    def write(name: str, source: str):
        package = f"toy_ext_{name}"
        folder = tmp_path / package
        folder.mkdir()
        (folder / "__init__.py").write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(tmp_path))
        importlib.invalidate_caches()
        imported.append(package)
        return importlib.import_module(package)

    yield write
    for package in imported:
        sys.modules.pop(package, None)


@pytest.fixture
def method_registry():
    """The method registry; every method a test registers is taken out again at teardown."""
    before = set(registry.IMPLEMENTATIONS.names())
    yield registry
    for method_id in set(registry.IMPLEMENTATIONS.names()) - before:
        registry.unregister(method_id)


def smoke(**overrides) -> dict:
    return load_config({"profile": "smoke", **overrides})


def schema_rejects(cfg: dict, path: list, value) -> bool:
    """Whether the config schema alone (no Python check) rejects ``cfg`` with ``value`` at ``path``."""
    bad = json.loads(json.dumps(cfg))
    node = bad
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return not jsonschema.Draft202012Validator(schema()).is_valid(bad)


def assert_block_in_schema(section: str, owner: str, cls: type) -> None:
    """The config block ``<section>.<owner>`` of the schema holds exactly the class's declared parameters."""
    block = schema()["properties"][section].get("properties", {}).get(owner)
    assert block is not None, f"schema has no block {section}.{owner}"
    assert set(block["properties"]) == set(cls.parameters)
    for name, param in cls.parameters.items():
        assert block["properties"][name]["description"] == param.help


def methods_json(capsys) -> list[dict]:
    """``nnxai methods --json``, in this process (a subprocess would not import the toy)."""
    capsys.readouterr()
    assert cli.main(["methods", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def table3_markdown(out_dir: Path) -> str:
    from nnxai.report.table3 import write_table3

    return write_table3(out_dir)[0].read_text()


def tiny_mlp_and_split(n_features: int, seed: int = 0):
    from nnxai.data import PreparedSplit
    from nnxai.models.networks import MLP

    torch.manual_seed(seed)
    model = MLP(n_features, 2, hidden=(8, 6), activation="relu").eval()
    x = torch.randn(16, n_features)
    return model, PreparedSplit(x=x, y=(x[:, 0] > 0).long())


# -- 1. a passive method ---------------------------------------------------------------------------------

PASSIVE = '''
"""Toy saliency: |x - x̄| times a scale, x̄ the train mean (a passive, local attribution)."""

from nnxai.methods.base import AttributionMethod
from nnxai.params import Float
from nnxai.registry import register
from nnxai.taxonomy import Engagement, ExplanationType, MethodSpec, Scope


@register(MethodSpec(id="toy_saliency", name="Toy saliency", description="|x - train mean|, scaled",
                     engagement=Engagement.PASSIVE, explanation_type=ExplanationType.ATTRIBUTION,
                     scopes=(Scope.LOCAL,), judged_by=("pixel_flipping",)))
class ToySaliency(AttributionMethod):
    parameters = {**AttributionMethod.parameters,
                  "scale": Float("factor applied to |x - x̄|", low=0, low_open=True)}

    def _fit(self, model, train):
        self.mean_ = train.x.mean(0, keepdim=True)

    def attribute(self, model, inputs, target, baselines=None):
        return self.params["scale"] * (inputs - self.mean_.to(inputs)).abs()
'''


def test_passive_method_recipe(toy_module, method_registry, tmp_path, capsys):
    toy = toy_module("passive", PASSIVE)
    cls = toy.ToySaliency
    assert registry.get("toy_saliency") is cls and registry.is_implemented("toy_saliency")
    assert cls.param_names == ("n_explain", "batch_size", "scale")

    # nnxai methods --json
    record = next(r for r in methods_json(capsys) if r["id"] == "toy_saliency")
    assert record["implemented"] and record["engagement"] == "passive" and record["scopes"] == ["local"]

    # the config: the method's block, validated against its declaration (schema and Python check)
    params = {**SMOKE_METHOD_PARAMS, "scale": 2.0}
    cfg = smoke(methods=["toy_saliency"], method_params={"toy_saliency": params})
    assert_block_in_schema("method_params", "toy_saliency", cls)
    assert schema_rejects(cfg, ["method_params", "toy_saliency", "scale"], -1.0)
    with pytest.raises(ConfigError, match=r"method_params\.toy_saliency'?\.scale"):
        smoke(methods=["toy_saliency"], method_params={"toy_saliency": {**params, "scale": 0.0}})
    assert "toy_saliency" in cli.build_parser().parse_args(
        ["explain", "-d", "shapes", "-m", "baseline", "-x", "toy_saliency"]).method

    # the DAG: every model it applies to, with the metrics its catalogue entry is judged by
    assert methods_for(cfg, "shapes", "baseline") == ["toy_saliency"]
    assert methods_for(cfg, "causal", "baseline") == ["toy_saliency"]
    paths = all_targets(cfg)
    for dataset, model in [("shapes", "baseline"), ("causal", "baseline")]:
        assert f"data/explanations/{dataset}/{model}/toy_saliency.npz" in paths
        assert f"data/metrics/{dataset}/{model}/toy_saliency.json" in paths
    # not on the shuffled-label control: no metric it is judged by compares with the control's maps
    assert "data/explanations/shapes/baseline_shuffled_labels/toy_saliency.npz" not in paths
    assert "pixel_flipping" in metrics_for(cfg, "shapes", "baseline", "toy_saliency")
    assert stage_settings(cfg, "explain", dataset="shapes", model="baseline", method="toy_saliency")["params"] == params

    # learning is in _fit: unfitted it refuses, fitted it explains
    model, train = tiny_mlp_and_split(4)
    method = cls(**params)
    with pytest.raises(RuntimeError, match="fit"):
        method(model, train.x[:2], torch.tensor([0, 1]))
    out = method.fit(model, train)(model, train.x[:2], torch.tensor([0, 1]))
    assert torch.allclose(out, 2.0 * (train.x[:2] - train.x.mean(0)).abs())

    # Table III: bold with a check mark in its cell
    assert "**Toy saliency** ✓" in table3_markdown(tmp_path)


# -- 2. an active method: a training penalty and the model variant that uses it --------------------------

ACTIVE = '''
"""Toy logit damping: a network trained with a penalty on its logits (an active method, survey Sec. IV),
and the method that reads the trained network."""

from nnxai.methods.base import AttributionMethod
from nnxai.models.variants import VARIANTS, Variant
from nnxai.registry import register
from nnxai.taxonomy import Engagement, ExplanationType, MethodSpec, Scope
from nnxai.training.penalties import PENALTIES

CALLS = []


@PENALTIES.register("toy_logit_norm")
def toy_logit_norm(model, inputs, targets, logits):
    """Mean squared logit."""
    CALLS.append(len(inputs))
    return logits.pow(2).mean()


VARIANTS.register("toy_damped", Variant("toy_damped", "trained with the toy logit penalty",
                                        penalty="toy_logit_norm"))


@register(MethodSpec(id="toy_active", name="Toy damping", description="|x| on a damped network",
                     engagement=Engagement.ACTIVE, explanation_type=ExplanationType.ATTRIBUTION,
                     scopes=(Scope.GLOBAL,)))
class ToyActive(AttributionMethod):
    only_models = frozenset({"toy_damped"})

    def attribute(self, model, inputs, target, baselines=None):
        return inputs.abs()
'''


def test_active_method_recipe(toy_module, method_registry, tmp_path, capsys):
    from nnxai.config import train_settings
    from nnxai.models.variants import VARIANTS, variant, variant_pattern
    from nnxai.report.table3 import cells
    from nnxai.taxonomy import Engagement, ExplanationType, Scope
    from nnxai.training.penalties import PENALTIES
    from nnxai.training.trainer import TrainConfig, train_model

    try:
        toy = toy_module("active", ACTIVE)
        assert PENALTIES["toy_logit_norm"] is toy.toy_logit_norm
        assert variant("toy_damped").penalty == "toy_logit_norm"
        assert re.match(variant_pattern(), "toy_damped")
        record = next(r for r in methods_json(capsys) if r["id"] == "toy_active")
        assert record["engagement"] == "active" and record["implemented"]

        # the config: the variant in a modality's model list, the penalty's weight under training
        cfg = smoke(models={"image": ["baseline", "toy_damped"], "tabular": ["baseline"]},
                    methods=["gradient", "toy_active"], training={"penalty_weight": {"toy_logit_norm": 0.5}},
                    method_params={"toy_active": SMOKE_METHOD_PARAMS})
        assert schema_rejects(cfg, ["models", "image"], ["baseline", "toy_undamped"])
        settings = train_settings(cfg, "shapes", "toy_damped")
        assert (settings["penalty"], settings["penalty_weight"]) == ("toy_logit_norm", 0.5)

        # the DAG: a checkpoint of the variant; the method runs on it only, the other methods too
        groups = targets(cfg)
        assert "data/checkpoints/shapes/toy_damped.pt" in groups["checkpoints"]
        assert "data/checkpoints/causal/toy_damped.pt" not in groups["checkpoints"]
        assert methods_for(cfg, "shapes", "toy_damped") == ["gradient", "toy_active"]
        assert methods_for(cfg, "shapes", "baseline") == ["gradient"]
        assert "data/explanations/shapes/toy_damped/toy_active.npz" in groups["explanations"]

        # the trainer adds weight * penalty to every batch's loss
        model, train = tiny_mlp_and_split(4)
        config = TrainConfig(epochs=1, batch_size=8, lr=0.01, penalty="toy_logit_norm", penalty_weight=0.5)
        train_model(model, (train.x, train.y), (train.x[:0], train.y[:0]), config, seed=0, progress=False)
        assert toy.CALLS == [8, 8]

        # Table III: the active attribution row, global column
        assert toy.ToyActive.spec in cells()[(Engagement.ACTIVE, ExplanationType.ATTRIBUTION, Scope.GLOBAL)]
        assert "**Toy damping** ✓" in table3_markdown(tmp_path)
    finally:
        VARIANTS.unregister("toy_damped")
        PENALTIES.unregister("toy_logit_norm")


# -- 2b. an active method with its own network, extra module and training hooks (nnxai.active) ------------

ACTIVE_METHOD = '''
"""Toy gate: an MLP whose inputs pass a learnt gate, trained with an L1 penalty on the gate and a
companion network kept beside it (an active method with every part of nnxai.active.base)."""

import torch
from torch import nn

from nnxai.active.base import ActiveMethod, register_active
from nnxai.methods.base import AttributionMethod
from nnxai.models.networks import MLP, NetworkSpec, build_network, register_network
from nnxai.params import Float, Int
from nnxai.registry import register
from nnxai.taxonomy import Engagement, ExplanationType, MethodSpec, Scope

EVENTS = []


class GatedMLP(MLP):
    def __init__(self, n_features, n_classes, hidden=(32, 16), activation="relu", gate_init=1.0):
        super().__init__(n_features, n_classes, hidden, activation)
        self.gate = nn.Parameter(torch.full((n_features,), float(gate_init)))

    def embed(self, x):
        return self.features(x.flatten(1) * self.gate)


register_network("toy_gated_mlp", NetworkSpec(GatedMLP, base="mlp", extra={"gate_init": (0.0, 10.0)}))


@register_active
class ToyGate(ActiveMethod):
    """L1 on the input gate."""

    id = "toy_gate"
    description = "an input gate with an L1 penalty (toy)"
    architectures = frozenset({"mlp"})
    parameters = {"weight": Float("weight of the gate's L1 norm", low=0.0), "companion": Int("units", low=1)}

    def build(self, architecture, kwargs, info):
        return "toy_gated_mlp", {**kwargs, "gate_init": 1.0}

    def setup(self, model, train, info, device, seed):
        self.companion = build_network("mlp", n_features=info.input_shape[0], n_classes=1,
                                       hidden=[self.params["companion"]])
        EVENTS.append("setup")

    def penalty(self, model, inputs, targets, logits):
        return self.params["weight"] * model.gate.abs().sum() + 0.0 * self.companion(inputs).sum()

    def after_epoch(self, model, epoch):
        return {"gate_l1": float(model.gate.detach().abs().sum())}

    def finish(self, model, train, val, device):
        EVENTS.append("finish")
        return {"open_gates": int((model.gate.abs() > 0.1).sum())}

    def extras(self):
        return {"companion": self.companion}


@register(MethodSpec(id="toy_gate", name="Toy gate", description="the learnt input gate",
                     engagement=Engagement.ACTIVE, explanation_type=ExplanationType.ATTRIBUTION,
                     scopes=(Scope.GLOBAL,)))
class ToyGateMap(AttributionMethod):
    only_models = frozenset({"toy_gate"})

    def attribute(self, model, inputs, target, baselines=None):
        return model.gate.detach().abs().expand_as(inputs).clone()
'''


def test_active_method_class_recipe(toy_module, method_registry, tmp_path, capsys):
    """One file: the network, the loss, the hooks, the extra module and the self-explanation; one config
    entry (active_params); the variant joins every tabular data set through the ``active`` token."""
    from nnxai import load_model
    from nnxai.active.base import ACTIVE
    from nnxai.models.networks import NETWORKS
    from nnxai.models.variants import VARIANTS, variant
    from nnxai.stages.prepare import prepare
    from nnxai.stages.train import train

    try:
        toy = toy_module("active_class", ACTIVE_METHOD)
        assert variant("toy_gate").active == "toy_gate" and variant("toy_gate").architectures == ("mlp",)
        record = next(r for r in methods_json(capsys) if r["id"] == "toy_gate")
        assert record["engagement"] == "active" and record["implemented"]

        # the config: without its active_params entry the variant is refused, naming the key
        with pytest.raises(ConfigError, match=r"active_params\.toy_gate"):
            smoke(models={"image": ["baseline"], "tabular": ["baseline", "active"], "causal": ["baseline", "active"]})
        cfg = smoke(models={"image": ["baseline"], "tabular": ["baseline", "active"], "causal": ["baseline", "active"]},
                    active_params={"toy_gate": {"weight": 0.01, "companion": 3}},
                    methods=["gradient", "toy_gate"], method_params={"toy_gate": SMOKE_METHOD_PARAMS})
        with pytest.raises(ConfigError, match=r"active_params\.toy_gate.*weight"):
            smoke(models={"image": ["baseline"], "tabular": ["baseline", "active"], "causal": ["baseline", "active"]},
                  active_params={"toy_gate": {"weight": -1.0, "companion": 3}})
        assert schema_rejects(cfg, ["active_params", "toy_gate", "weight"], "heavy")
        groups = targets(cfg)
        assert "data/checkpoints/causal/toy_gate.pt" in groups["checkpoints"]
        assert "data/checkpoints/shapes/toy_gate.pt" not in groups["checkpoints"]   # an MLP design only
        assert methods_for(cfg, "causal", "toy_gate") == ["gradient", "toy_gate"]
        assert "toy_gate" not in methods_for(cfg, "causal", "baseline")

        # the train stage builds the changed network, runs the hooks and saves the extra module
        prepare(stage_settings(cfg, "prepare", dataset="causal"), tmp_path)
        settings = stage_settings(cfg, "train", dataset="causal", model="toy_gate")
        path = train({**settings, "training": {**settings["training"], "epochs": 2}}, tmp_path, progress=False)
        assert toy.EVENTS == ["setup", "finish"]
        model = load_model(path)
        assert isinstance(model, toy.GatedMLP) and model.checkpoint["active"] == "toy_gate"
        assert model.checkpoint["variant"] == "toy_gate" and model.checkpoint["architecture"] == "toy_gated_mlp"
        assert set(model.extras) == {"companion"}
        companion = model.extras["companion"]
        assert companion.network_name == "mlp" and companion.network_kwargs["hidden"] == [3]
        sidecar = json.loads(path.with_suffix(".json").read_text())
        assert "gate_l1" in sidecar["history"][0] and "open_gates" in sidecar["history"][-1]["active"]
    finally:
        VARIANTS.unregister("toy_gate")
        ACTIVE.unregister("toy_gate")
        NETWORKS.unregister("toy_gated_mlp")


# -- 3. a data set ---------------------------------------------------------------------------------------

DATASET = '''
"""``toy_blobs``: two Gaussian blobs in four dimensions (a generated table)."""

import numpy as np

from nnxai.data.base import DATASETS, Dataset

NATURAL = {"train": 60, "val": 20, "test": 20}


class ToyBlobs(Dataset):
    def build(self, sizes, seed, workdir):
        rng = np.random.default_rng(seed)
        splits = {}
        for split in ("train", "val", "test"):
            n = sizes[split] or NATURAL[split]
            y = rng.integers(0, 2, n)
            x = rng.normal(size=(n, 4)) + 2.0 * y[:, None]
            splits[split] = {"x": x.astype(np.float32), "y": y.astype(np.int64)}
        return splits, {"generator": "two Gaussian blobs, unit variance, means 0 and 2"}


TOY_BLOBS = DATASETS.register("toy_blobs", ToyBlobs(
    name="toy_blobs", kind="tabular", n_classes=2, input_shape=(4,), source="generated: two Gaussian blobs"))
'''


def test_dataset_recipe(toy_module, tmp_path):
    from nnxai.data import DATASETS, load_split, prepare

    try:
        toy_module("dataset", DATASET)
        assert DATASETS["toy_blobs"].kind == "tabular"
        assert cli.build_parser().parse_args(["prepare", "-d", "toy_blobs"]).dataset == "toy_blobs"

        sizes = {"train": 40, "val": 10, "test": 10}
        cfg = smoke(datasets=["shapes", "causal", "toy_blobs"], data={"toy_blobs": sizes})
        assert schema_rejects(cfg, ["datasets"], ["toy_clouds"])
        assert schema_rejects(cfg, ["data", "toy_blobs", "train"], 0)
        assert stage_settings(cfg, "prepare", dataset="toy_blobs")["sizes"] == sizes

        # the DAG: its splits, a model of every tabular variant, the methods that apply to it
        groups = targets(cfg)
        assert {f"data/prepared/toy_blobs/{s}.npz" for s in ("train", "val", "test")} <= set(groups["prepared"])
        for model in cfg["models"]["tabular"]:
            assert f"data/checkpoints/toy_blobs/{model}.pt" in groups["checkpoints"]
        applicable = methods_for(cfg, "toy_blobs", "baseline")
        assert "gradient" in applicable and "network_dissection" not in applicable   # no masks
        assert "data/explanations/toy_blobs/baseline/gradient.npz" in groups["explanations"]

        # the prepare stage writes the splits its build makes
        prepare("toy_blobs", tmp_path, sizes, seed=0)
        train = load_split("toy_blobs", "train", tmp_path)
        assert tuple(train.x.shape) == (40, 4) and set(train.y.tolist()) <= {0, 1}
    finally:
        DATASETS.unregister("toy_blobs")


# -- 4. a metric -----------------------------------------------------------------------------------------

METRIC = '''
"""``toy_mass``: share of the absolute attribution in each map's ``top_k`` features."""

import numpy as np

from nnxai.metrics.base import Metric, register_metric
from nnxai.params import Int


@register_metric
class ToyMass(Metric):
    id = "toy_mass"
    higher_is_better = None
    kinds = frozenset({"attribution"})
    universal = True
    description = "share of |attribution| in the top-k features"
    parameters = {"top_k": Int("features counted, largest |attribution| first", low=1)}

    def __call__(self, record, ctx, method):
        a = np.abs(record.attributions).reshape(len(record.attributions), -1)
        top = -np.sort(-a, axis=1)[:, :self.params["top_k"]].sum(1)
        return {self.id: float(np.mean(top / np.maximum(a.sum(1), 1e-12)))}
'''


def test_metric_recipe(toy_module):
    from nnxai.explanations import AttributionMap
    from nnxai.metrics.base import METRICS

    try:
        toy = toy_module("metric", METRIC)
        assert METRICS["toy_mass"] is toy.ToyMass

        cfg = smoke(metric_params={"toy_mass": {"top_k": 2}})
        assert_block_in_schema("metric_params", "toy_mass", toy.ToyMass)
        assert schema_rejects(cfg, ["metric_params", "toy_mass", "top_k"], 0)
        with pytest.raises(ConfigError, match=r"metric_params\.toy_mass"):
            smoke()                                           # its block is missing
        with pytest.raises(ConfigError, match=r"metric_params\.toy_mass'?\.top_k"):
            smoke(metric_params={"toy_mass": {"top_k": 0}})

        # the DAG: every attribution cell (universal), with its block in the evaluate job's settings
        assert "toy_mass" in metrics_for(cfg, "shapes", "baseline", "gradient")
        assert "toy_mass" not in metrics_for(cfg, "shapes", "baseline", "trepan")    # scores attribution only
        evaluate = stage_settings(cfg, "evaluate", dataset="shapes", model="baseline")
        assert "toy_mass" in evaluate["methods"]["gradient"]
        assert evaluate["metric_params"]["toy_mass"] == {"top_k": 2}

        record = AttributionMap(np.array([[3.0, 1.0, 0.0, 0.0]]), np.array([0]), np.array([0]))
        assert toy.ToyMass(top_k=1)(record, None, None) == {"toy_mass": 0.75}
    finally:
        METRICS.unregister("toy_mass")


# -- 5. a report item ------------------------------------------------------------------------------------

REPORT = '''
"""A toy {kind}: one file per format of its kind."""

from pathlib import Path

from nnxai.io import atomic_write_text
from nnxai.report import report_item
from nnxai.report._items import KIND_FORMATS


@report_item("{name}", kind="{kind}")
def write_{name}(out_dir: Path) -> list[Path]:
    return [atomic_write_text(Path(out_dir) / f"{name}.{{ext}}", "toy\\n") for ext in KIND_FORMATS["{kind}"]]
'''


@pytest.mark.parametrize("kind", ["table", "figure"])
def test_report_item_recipe(toy_module, monkeypatch, tmp_path, capsys, kind):
    import nnxai.report as report
    from nnxai.report._items import KIND_FORMATS, REPORT_ITEMS

    name = f"toy_recipe_{kind}"
    try:
        toy = toy_module(f"report_{kind}", REPORT.format(kind=kind, name=name))
        writer = getattr(toy, f"write_{name}")
        assert REPORT_ITEMS[name].kind == kind
        assert getattr(report, f"{kind.upper()}S")[name] is writer

        # the DAG: one target per format of its kind
        group = targets(smoke())[f"{kind}s"]
        assert {f"paper/{kind}s/{name}.{ext}" for ext in KIND_FORMATS[kind]} <= set(group)

        # the CLI writes it
        out = tmp_path / "out"
        assert cli.main(["report", name, "--out", str(out)]) == 0
        assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.{e}" for e in KIND_FORMATS[kind])
    finally:
        REPORT_ITEMS.unregister(name)
