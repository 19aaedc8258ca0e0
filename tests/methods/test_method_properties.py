"""Properties every implemented method has, whatever its explanation type.

Every id of ``registry.implemented_ids()`` is a case (the pytest id is the method id), so a method added
later is covered without editing this file: per-input attribution, global concept attribution (TCAV,
ACE), aggregations over a local method (SpRAy, MAME, DeepConsensus), rules (TREPAN), hidden semantics
(Network Dissection) and examples (representer points).  Each method runs through ``explain``, the one
entry point the pipeline calls, on every cell of the ``smoke`` profile it applies to (the pipeline's own
choice: :func:`nnxai.workflow.methods_for`, with ``variant_methods`` ignored: every method that applies runs
on every active network of the profile, where the smoke run itself explains them with one method of each
family), with its ``smoke`` parameters resolved as the pipeline resolves them
(:func:`nnxai.config.method_params`: composites get their local method's block).  The cells are the smoke
data sets prepared by :func:`nnxai.data.prepare` at toy sizes (``shapes`` images with concepts and masks,
the ``causal`` and ``planted`` tables, MONK-1), each with one small seeded network per model variant that
changes what applies (ReLU CNN, ReLU MLP, sigmoid MLP, each active method's network), trained a few steps
so that it predicts more than one class; the checkpoints a method reads besides its model
(``required_inputs``: DeepConsensus's seed variants) are written to the work directory.  A method that
applies to no cell fails, it is never skipped.

Checked, for each method and cell:

1. same seed, same record: two fresh instances with the same parameters, on fresh copies of the model and
   the splits give equal records (arrays bit for bit, JSON fields equal; the measured ``seconds`` in
   ``meta`` excepted), the first after ``seed_everything(seed)`` as in ``pipeline.explain``, the second
   with the global RNGs seeded otherwise: a method draws only from its own seed, so explanations,
   metrics and tables are reproducible;
2. the model is left alone: every tensor of its ``state_dict`` (weights and buffers) bit for bit, every
   parameter's ``.grad`` still ``None`` and ``requires_grad`` as it was, the ``training`` flag of every
   module as it was (the model is explained once from eval mode, as loaded, and once from train mode), no
   hook and no attribute left on any module: the pipeline's metrics re-explain the same model object, and
   a stray gradient, hook or mode would change their results;
3. the data are left alone: ``x``, ``y``, ``concepts`` and ``masks`` of the train and test splits bit for
   bit, with no gradient attached to the inputs, and the checkpoints read from the work directory byte for
   byte.

Deeper per-input attribution properties (shapes, batch invariance, targets, baselines, 1-channel images,
fit before explain) are in ``test_attribution_properties.py``; bad parameters in ``test_parameters.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nnxai import data, registry
from nnxai.config import load_config, method_params
from nnxai.methods.base import ExplainContext
from nnxai.models import save_checkpoint
from nnxai.models.networks import build_network
from nnxai.models.variants import variant
from nnxai.paths import checkpoint_path
from nnxai.training.runtime import seed_everything, set_threads
from nnxai.workflow import methods_for, model_traits_for, models_for

CFG = load_config({"profile": "smoke"})
#: The smoke profile with every applicable method on l1, l2 and the active networks: its
#: ``variant_methods`` (one method of each family there) bounds the smoke run's time, not this test's.
EVERY_METHOD = {**CFG, "variant_methods": None}
SEED = 3
#: Toy split sizes: enough concept examples for TCAV/ACE and per-class clusters for SpRAy.
SIZES = {"train": 48, "val": 1, "test": 16}
#: Toy widths of the networks (the smoke profile's are larger; the properties do not depend on them).
WIDTHS, HIDDEN = [4, 6, 8], [8, 6]
#: ``meta`` keys that are measurements, not results.
TIMING = {"seconds", "seconds_per_input"}


def smoke_cells() -> list[tuple[str, str]]:
    """(dataset, model variant) cells of the smoke profile; a variant is kept where it lets some method run
    on traits no earlier cell of the data set had (``baseline_shuffled_labels``, ``l1`` and ``l2`` differ only
    in training; every active network runs its own explanation, so each is kept)."""
    cells, covered = [], set()
    for dataset in CFG["datasets"]:
        for model_id in models_for(CFG, dataset):
            traits = tuple(sorted(model_traits_for(CFG, dataset, model_id).items()))
            new = {(dataset, traits, m) for m in methods_for(EVERY_METHOD, dataset, model_id)} - covered
            if new:
                cells.append((dataset, model_id))
                covered |= new
    return cells


CELLS = smoke_cells()


def cells_of(method_id: str) -> list[tuple[str, str]]:
    """The cells the method runs on: every cell it applies to, the active networks included."""
    return [(d, m) for d, m in CELLS if method_id in methods_for(EVERY_METHOD, d, m)]


def params_of(method_id: str) -> dict:
    """The smoke parameters as the pipeline resolves them (composites: their local method's block)."""
    return method_params(CFG, method_id)


# -- the toy run: prepared splits, seeded networks, member checkpoints ---------------------------------------

def arch_kwargs(dataset: str, model_id: str) -> tuple[str, dict]:
    info = data.DATASETS[dataset]
    activation = variant(model_id).activation
    if info.kind == "image":
        return "cnn", {"in_channels": int(info.input_shape[0]), "n_classes": int(info.n_classes),
                       "widths": WIDTHS, "activation": activation}
    return "mlp", {"n_features": int(np.prod(info.input_shape)), "n_classes": int(info.n_classes),
                   "hidden": HIDDEN, "activation": activation}


def network(dataset: str, model_id: str, train) -> nn.Module:
    """A seeded toy network of the variant, 150 full-batch Adam steps on the train split (confident enough
    that every method has something to show, e.g. a meaningful-perturbation mask), in eval mode.  An active
    method's variant is its own network trained by the trainer with its hooks and the smoke profile's
    ``active_params`` (its extra modules and its record, as ``load_model`` gives them)."""
    arch, kwargs = arch_kwargs(dataset, model_id)
    torch.manual_seed(SEED + variant(model_id).seed_offset)
    active_id = variant(model_id).active
    if active_id is not None:
        return active_network(dataset, active_id, arch, kwargs, train)
    net = build_network(arch, **kwargs)
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(train.x), train.y).backward()
        opt.step()
    net.zero_grad(set_to_none=True)
    for p in net.parameters():
        p.requires_grad_(True)                        # as pipeline._context leaves a loaded model
    return net.eval()


def active_network(dataset: str, active_id: str, arch: str, kwargs: dict, train) -> nn.Module:
    from nnxai.active.base import ACTIVE
    from nnxai.training.trainer import TrainConfig, train_model

    info = data.DATASETS[dataset]
    active = ACTIVE[active_id](**CFG["active_params"][active_id])
    name, kwargs = active.build(arch, kwargs, info)
    active.prepared = {"train": train, "val": train}
    net = build_network(name, **kwargs)
    train_model(net, (train.x, train.y), (train.x[:0], train.y[:0]),
                TrainConfig(epochs=12, batch_size=16, lr=0.01), SEED, progress=False, active=active, info=info)
    net.cpu()
    net.extras = {k: m.cpu().eval() for k, m in active.extras().items()}
    net.checkpoint = {"active": active_id, "variant": active_id, "architecture": name, "arch_kwargs": kwargs,
                      "config": {"active": active_id, "active_params": CFG["active_params"][active_id]}}
    net.zero_grad(set_to_none=True)
    for p in net.parameters():
        p.requires_grad_(True)                        # as pipeline._context leaves a loaded model
    return net.eval()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The work directory with the prepared smoke data sets, and the pristine splits and networks; torch's
    threads as the smoke profile sets them for an explain job (restored afterwards)."""
    threads = torch.get_num_threads()
    set_threads(CFG["threads"])
    workdir = tmp_path_factory.mktemp("method_properties")
    splits, models = {}, {}
    for dataset in sorted({d for d, _ in CELLS}):
        try:
            data.DATASETS[dataset].planned_sizes(SIZES)
            sizes = SIZES
        except ValueError:           # a set of fixed sizes (the MONK's problems): its natural splits
            sizes = dict.fromkeys(SIZES)
        data.prepare(dataset, workdir, sizes, SEED)
        splits[dataset] = {s: data.load_split(dataset, s, workdir) for s in ("train", "test")}
    for dataset, model_id in CELLS:
        models[dataset, model_id] = network(dataset, model_id, splits[dataset]["train"])
    yield {"workdir": workdir, "splits": splits, "models": models}
    torch.set_num_threads(threads)


def required_files(run, method_id: str, dataset: str, model_id: str) -> dict[Path, str]:
    """Write the checkpoints the method reads besides its model; their sha256 by path."""
    out = {}
    for rel in registry.get(method_id).required_inputs(params_of(method_id), dataset, model_id):
        member = Path(rel).stem
        if rel != checkpoint_path(dataset, member):
            pytest.fail(f"{method_id} requires {rel}, which is not a checkpoint: teach this test to make it")
        path = run["workdir"] / rel
        if not path.exists():
            arch, kwargs = arch_kwargs(dataset, member)
            save_checkpoint(path, network(dataset, member, run["splits"][dataset]["train"]),
                            {"architecture": arch, "arch_kwargs": kwargs})
        out[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def fresh_context(run, dataset: str, model_id: str, training: bool = False) -> ExplainContext:
    """Copies of the pristine model and splits (so that one method cannot disturb another's run)."""
    model = copy.deepcopy(run["models"][dataset, model_id]).train(training)
    splits = copy.deepcopy(run["splits"][dataset])
    return ExplainContext(model=model, dataset=dataset, model_id=model_id, info=data.DATASETS[dataset],
                          train=splits["train"], test=splits["test"], seed=SEED, workdir=run["workdir"])


def explain(method_id: str, ctx: ExplainContext, global_seed: int | None = None):
    """The method's record; the global RNGs seeded as ``pipeline.explain`` does, or with ``global_seed``."""
    method = registry.get(method_id)(**params_of(method_id))
    seed_everything(ctx.seed if global_seed is None else global_seed)
    return method.explain(ctx)


# -- comparisons --------------------------------------------------------------------------------------------

def plain(record) -> dict:
    fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    fields["meta"] = {k: v for k, v in fields["meta"].items() if k not in TIMING}
    return {"type": type(record).__name__, **fields}


def differences(a, b, where: str = "record") -> list[str]:
    """Where two records (nested dicts, lists, arrays, numbers) differ; exact, NaN equal to NaN."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        a, b = (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v for v in (a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        same = a.shape == b.shape and a.dtype == b.dtype and np.array_equal(
            a, b, equal_nan=a.dtype.kind in "fc")
        return [] if same else [f"{where}: arrays differ"]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(map(str, a.keys() ^ b.keys()))} in one only"]
        return [d for k in a for d in differences(a[k], b[k], f"{where}[{k!r}]")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if type(a) is type(b) and a == b else [f"{where}: {a!r} vs {b!r}"]


HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def model_state(model: nn.Module) -> dict:
    return {
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "buffers": {k: v.detach().clone() for k, v in model.named_buffers()},
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "training": {k: m.training for k, m in model.named_modules()},
        "modules": [(k, type(m).__name__) for k, m in model.named_modules()],
        "attributes": {k: sorted(vars(m)) for k, m in model.named_modules()},
    }


def model_changes(model: nn.Module, before: dict) -> list[str]:
    out = differences(model_state(model), before, "model")
    out += [f"parameter {k} has a .grad" for k, p in model.named_parameters() if p.grad is not None]
    out += [f"parameter {k} has a tensor hook" for k, p in model.named_parameters()
            if getattr(p, "_backward_hooks", None)]
    out += [f"module {k!r} keeps {len(getattr(m, h))} {h}" for k, m in model.named_modules() for h in HOOKS
            if getattr(m, h, None)]
    return out


def split_arrays(ctx: ExplainContext) -> dict:
    return {f"{name}.{key}": copy.deepcopy(getattr(split, key))
            for name, split in (("train", ctx.train), ("test", ctx.test))
            for key in ("x", "y", "concepts", "masks") if getattr(split, key) is not None}


def data_changes(ctx: ExplainContext, before: dict) -> list[str]:
    out = differences(split_arrays(ctx), before, "splits")
    for name, split in (("train", ctx.train), ("test", ctx.test)):
        if split.x.requires_grad or split.x.grad is not None:
            out.append(f"{name}.x has a gradient attached")
    return out


def checked_run(run, method_id: str, dataset: str, model_id: str, training: bool) -> tuple[object, list[str]]:
    """Explain once on a fresh context; the record and every change to the model, the data and the files."""
    files = required_files(run, method_id, dataset, model_id)
    ctx = fresh_context(run, dataset, model_id, training)
    model_before, data_before = model_state(ctx.model), split_arrays(ctx)
    record = explain(method_id, ctx)
    problems = model_changes(ctx.model, model_before) + data_changes(ctx, data_before)
    problems += [f"{p.name} changed" for p, digest in files.items()
                 if hashlib.sha256(p.read_bytes()).hexdigest() != digest]
    return record, problems


@pytest.fixture(scope="module")
def first_records():
    """Records of the eval-mode runs of the left-alone test, reused as the determinism test's first run."""
    return {}


def cells_or_fail(method_id: str) -> list[tuple[str, str]]:
    cells = cells_of(method_id)
    if not cells:
        pytest.fail(f"{method_id} applies to no cell of the smoke profile {CELLS}: add a data set or model "
                    f"variant it runs on to this test (never skip it)")
    return cells


METHOD_IDS = registry.implemented_ids()


def parametrized_ids(test) -> list[str]:
    return [v for mark in test.pytestmark if mark.name == "parametrize" and mark.args[0] == "method_id"
            for v in mark.args[1]]


def test_every_implemented_method_is_a_case():
    """Nothing is left out: both property tests run every implemented id, each on at least one cell."""
    implemented = registry.implemented_ids()
    for test in (test_model_and_data_are_left_alone, test_same_seed_same_record):
        ids = parametrized_ids(test)
        assert sorted(ids) == sorted(implemented), f"{test.__name__}: {set(implemented) ^ set(ids)}"
    kinds = {registry.get(m).record_type.kind for m in implemented}
    assert {"attribution", "rule", "hidden_semantics", "example", "concept_attribution"} <= kinds
    assert all(cells_of(m) for m in implemented), [m for m in implemented if not cells_of(m)]


def test_every_method_that_applies_runs_on_every_active_network():
    """What smoke.yaml and the README say of this file: each active network of the smoke profile is a cell,
    and every method that applies there runs on it, not only the profile's ``variant_methods``."""
    active = [(d, m) for d in CFG["datasets"] for m in models_for(CFG, d) if variant(m).active is not None]
    assert active and set(active) <= set(CELLS), set(active) - set(CELLS)
    for dataset, model_id in active:
        for method_id in methods_for(EVERY_METHOD, dataset, model_id):
            assert (dataset, model_id) in cells_of(method_id), (method_id, dataset, model_id)
    assert "lime" not in (CFG["variant_methods"] or []) and ("shapes", "expo") in cells_of("lime")


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("method_id", METHOD_IDS, ids=METHOD_IDS)
def test_model_and_data_are_left_alone(run, first_records, method_id, training):
    for dataset, model_id in cells_or_fail(method_id):
        record, problems = checked_run(run, method_id, dataset, model_id, training)
        mode = "train" if training else "eval"
        assert not problems, f"{method_id} on {dataset}/{model_id} ({mode} mode): " + "; ".join(problems)
        if not training:
            first_records[method_id, dataset, model_id] = record


@pytest.mark.parametrize("method_id", METHOD_IDS, ids=METHOD_IDS)
def test_same_seed_same_record(run, first_records, method_id):
    cls = registry.get(method_id)
    for dataset, model_id in cells_or_fail(method_id):
        required_files(run, method_id, dataset, model_id)
        first = first_records.get((method_id, dataset, model_id))
        if first is None:                             # run alone (-k): make the first record here
            first = explain(method_id, fresh_context(run, dataset, model_id))
        # the global RNGs in another state: a method draws only from its own seed (ctx.seed)
        second = explain(method_id, fresh_context(run, dataset, model_id), global_seed=SEED + 12345)
        assert isinstance(first, cls.record_type) and isinstance(second, cls.record_type)
        diff = differences(plain(first), plain(second))
        assert not diff, f"{method_id} on {dataset}/{model_id}, same seed: " + "; ".join(diff[:10])


#: Parameters that name unit layers of the model (``model.unit_layers()``), a name or a list of names.
LAYER_PARAMS = ("layer", "layers")
LAYER_METHODS = [m for m in METHOD_IDS if set(registry.get(m).parameters) & set(LAYER_PARAMS)]


def test_layer_naming_methods_are_found():
    """The layer-name test below has cases (TCAV, ACE and activation maximisation name layers)."""
    assert {"tcav", "ace"} <= set(LAYER_METHODS), LAYER_METHODS


@pytest.mark.parametrize("method_id", LAYER_METHODS, ids=LAYER_METHODS)
def test_a_bad_layer_name_is_refused_naming_the_layers_that_exist(run, method_id):
    """A layer that the model does not have is an error that names it and every unit layer it has, raised
    before any work (no record), and the model is left as it was."""
    dataset, model_id = cells_or_fail(method_id)[0]
    params = dict(params_of(method_id))
    key = next(k for k in LAYER_PARAMS if k in registry.get(method_id).parameters)
    params[key] = ["no_such_layer"] if isinstance(params.get(key), list) else "no_such_layer"
    ctx = fresh_context(run, dataset, model_id)
    before = model_state(ctx.model)
    try:
        method = registry.get(method_id)(**params)
    except ValueError as err:                         # refused by the parameter check: names the value
        assert "no_such_layer" in str(err)
        return
    with pytest.raises(ValueError) as err:
        method.explain(ctx)
    message = str(err.value)
    assert "no_such_layer" in message, message
    assert all(name in message for name in ctx.model.unit_layers()), message
    assert not model_changes(ctx.model, before)
