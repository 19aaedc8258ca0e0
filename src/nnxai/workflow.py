"""Workflow logic that the Snakefile imports: output paths, applicability and target lists.

Nothing here runs inside Snakemake only, so it is unit-tested (tests/test_workflow.py) and the Snakefile
stays a handful of generic rules over the wildcards {dataset} {model} {method}.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from nnxai import codedeps, registry
from nnxai.config import is_seed_replica, is_variant, method_params, metric_params, models_for, selected_methods, train_settings
from nnxai.data import DATASETS, SPLITS
from nnxai.io import atomic_write_text
from nnxai.paths import (CACHE_ROOT, MODEL_ROW, checkpoint_path, explanation_path, metrics_path,  # noqa: F401
                         prepared_path)
from nnxai.metrics.base import applicable_metrics, metrics
from nnxai.active.base import active_method
from nnxai.models.variants import variant
from nnxai.report._items import DOCUMENT_FORMATS, FIGURE_FORMATS, REPORT_ITEMS, items_of
from nnxai.training.penalties import PENALTIES


class _ReportNames(Sequence):
    """Names of the registered tables (or figures), read from the report registry when first used.

    Lazy, so that importing the workflow (every CLI call does) does not import the writers, and with
    them matplotlib, plotly and captum.
    """

    def __init__(self, kind: str):
        self.kind = kind

    def _names(self) -> list[str]:
        return list(items_of(self.kind))

    def __getitem__(self, index):
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __repr__(self) -> str:
        return repr(tuple(self._names()))


TABLES = _ReportNames("table")
FIGURES = _ReportNames("figure")
DOCUMENTS = _ReportNames("document")


def model_traits_for(cfg: dict, dataset: str, model: str) -> dict:
    """The traits :func:`nnxai.methods.base.model_traits` will find in the trained model, from config alone
    (an active method's network declares where it differs from the base network: ``ActiveMethod.traits``)."""
    arch = "cnn" if DATASETS[dataset].kind == "image" else "mlp"
    traits = {"architecture": arch, "activation": variant(model).activation, "gap_head": arch == "cnn",
              "linear_head": True, "standard_layers": True}
    active = active_method(model)
    return {**traits, **(active.traits if active is not None else {})}


def methods_for(cfg: dict, dataset: str, model: str) -> list[str]:
    """Selected methods that apply to this dataset/model pair."""
    info, traits = DATASETS[dataset], model_traits_for(cfg, dataset, model)
    subset = cfg.get("variant_methods") if is_variant(model) else None
    out = []
    for m in selected_methods(cfg):
        cls = registry.get(m)
        if cls.why_not(info, traits) is not None or (cls.only_models is not None and model not in cls.only_models):
            continue
        if subset is not None and m not in subset and cls.only_models is None:
            continue   # the profile runs a subset of the passive methods on the regularised networks
        if variant(model).controls and not compared_with_control(cls, info):
            continue   # a control exists for one check ([75]); only what that check compares is explained
        if is_seed_replica(model) and not seed_replica_runs(cfg, dataset, m):
            continue   # the replicas measure the seed spread of the methods seed_replicas names
        local = cfg["method_params"].get(m, {}).get("local_method") if "local_method" in cls.parameters else None
        if local is not None and registry.get(local).why_not(info, traits) is not None:
            continue   # a composite (SpRAy, MAME, DeepConsensus) runs where its local method does
        out.append(m)
    return out


def seed_replica_runs(cfg: dict, dataset: str, method: str) -> bool:
    """Whether the seed replicas (``baseline_seed<k>``) run ``method`` on ``dataset`` (``seed_replicas``)."""
    block = cfg.get("seed_replicas") or {}
    datasets, methods = block.get("datasets"), block.get("methods")
    return (datasets is None or dataset in datasets) and (methods is None or method in methods)


def compared_with_control(method_cls: type, info) -> bool:
    """Whether a metric of the method compares its explanation with the control model's (the
    data-randomisation check of [75]): only such methods run on a control (shuffled-label) model."""
    return any(cls.compares_control and cls.applies(method_cls, info) for cls in metrics().values())


def model_cells(cfg: dict) -> list[tuple[str, str]]:
    """Every (dataset, model) pair the run trains."""
    return [(d, m) for d in cfg["datasets"] for m in models_for(cfg, d)]


@dataclass(frozen=True)
class RunPlan:
    """The run ``cfg`` describes, as a metric's ``cell_why_not`` sees it (:class:`nnxai.metrics.base.RunPlan`):
    its config and which models and methods it runs, without the metric importing the workflow."""

    cfg: dict

    def models_for(self, dataset: str) -> list[str]:
        return models_for(self.cfg, dataset)

    def methods_for(self, dataset: str, model: str) -> list[str]:
        return methods_for(self.cfg, dataset, model)

    def model_traits(self, dataset: str, model: str) -> dict:
        return model_traits_for(self.cfg, dataset, model)


def metrics_for(cfg: dict, dataset: str, model: str, method: str) -> list[str]:
    """Metrics computed for one cell: those that apply to the method and that the run can compute."""

    registered = metrics()
    return [m for m in applicable_metrics(registry.get(method), DATASETS[dataset])
            if registered[m].control_why_not(model) is None
            and not (registered[m].reexplains and is_variant(model)
                     and not variant_reexplains_on(cfg, dataset, model, method))
            and not (is_seed_replica(model) and (registered[m].reexplains or m in RETRAINING_METRICS))
            and registered[m].cell_why_not(RunPlan(cfg), dataset, model, method) is None]


#: Metrics whose cells are the run's longest jobs besides those that re-run the method: ROAR retrains models.
RETRAINING_METRICS = ("roar",)


def job_priority(cfg: dict, dataset: str, model: str, method: str) -> int:
    """1 for the explain and evaluate jobs of a cell whose metrics re-run the method or retrain models, else 0.

    Those cells hold the longest jobs of a run (tens of seconds against a median of half a second); started
    first, they do not leave one core idle while the last of them runs at the end (longest processing time
    first).  The order changes no result: priorities only choose among jobs that are ready.
    """
    registered = metrics()
    return int(any(registered[m].reexplains or m in RETRAINING_METRICS
                   for m in metrics_for(cfg, dataset, model, method)))


def variant_reexplains_on(cfg: dict, dataset: str, model: str | None = None, method: str | None = None) -> bool:
    """Whether the metrics that re-run a method score l1, l2 and the active networks on ``dataset``
    (``variant_reexplain_datasets``; null: everywhere), or, wherever ``model`` trains, ``method`` on it
    (``variant_reexplain_methods``: ``{expo: [expo]}`` scores ExpO's own local model [120] with its catalogue
    metric stability, on every data set the ExpO network trains on, at the cost of these few cells only)."""
    allowed = cfg.get("variant_reexplain_datasets")
    if allowed is None or dataset in allowed:
        return True
    return method is not None and method in (cfg.get("variant_reexplain_methods") or {}).get(model, ())


def cell_why_not(cfg: dict, dataset: str, model: str, method: str) -> str | None:
    """Why the run does not explain ``dataset``/``model`` with ``method`` (what the method needs there), or
    ``None`` when it does (:func:`methods_for`)."""
    if dataset not in cfg["datasets"] or model not in models_for(cfg, dataset):
        return f"this run does not train {dataset}/{model} (config.datasets, config.models)"
    if method in methods_for(cfg, dataset, model):
        return None
    cls = registry.get(method)
    why = cls.why_not(DATASETS[dataset], model_traits_for(cfg, dataset, model))
    if why is None and cls.only_models is not None and model not in cls.only_models:
        why = f"it runs only on {', '.join(sorted(cls.only_models))}"
    return why or "the config does not select it on this model (config.methods, config.variant_methods)"


#: How a refusal names what a method's class declares (``Method.architectures``, ``Method.activations``).
ARCHITECTURE_NOUNS = {"cnn": "CNNs", "mlp": "MLPs"}
ACTIVATION_NAMES = {"relu": "ReLU", "sigmoid": "sigmoid"}
ALL_MODALITIES = frozenset({"image", "tabular"})


def implementation_runs_on(method: str) -> str:
    """What this implementation of ``method`` runs on, in words, from what its class declares (modalities,
    architectures, activations, the ``needs_*`` requirements, ``only_models``), followed by its
    ``scope_note`` on why, where the implementation is narrower than the method.

    The refusals say this, not the catalogue's ``runs_on``: that describes the published method, and can
    contradict the refusal it follows (global CEM [92] explains image CNNs too; ours reads tables only, so a
    refusal saying "needs tabular data" went on "it runs on image CNNs, tabular MLPs")."""
    cls = registry.get(method)
    return f"{declared_scope(cls)} ({cls.scope_note})" if cls.scope_note else declared_scope(cls)


def declared_scope(cls: type) -> str:
    """The networks and data a method class declares it runs on, in words ("sigmoid MLPs with the base MLP
    layers only on tabular data")."""
    units = "" if set(cls.activations) >= set(ACTIVATION_NAMES) else \
        "/".join(ACTIVATION_NAMES.get(a, a) for a in sorted(cls.activations)) + " "
    nets = " and ".join(ARCHITECTURE_NOUNS.get(a, a) for a in sorted(cls.architectures))
    layers = "/".join({"cnn": "ConvNet", "mlp": "MLP"}.get(a, a) for a in sorted(cls.architectures))
    parts = [("a global-average-pool head", cls.needs_gap_head), ("a linear output layer", cls.needs_linear_head),
             (f"the base {layers} layers only", cls.needs_standard_layers)]
    features = [text for text, needed in parts if needed]
    text = units + nets + (" with " + " and ".join(features) if features else "")
    if cls.needs_masks:
        text += " on images with pixel-level concept masks"
    elif cls.needs_concepts and "image" in cls.modalities:
        text += f" on {'tables or ' if 'tabular' in cls.modalities else ''}images with concept features"
    elif not cls.modalities >= ALL_MODALITIES:
        text += f" on {' and '.join(sorted(cls.modalities))} data"
    return text + (f", the {'/'.join(sorted(cls.only_models))} network only" if cls.only_models is not None else "")


def explain_inputs(cfg: dict, dataset: str, model: str, method: str) -> list[str]:
    """What one explain job reads: the checkpoint, the prepared splits and what the method asks for.  A cell
    the run does not explain (a target asked by path: KT on a ReLU CNN) is refused here, while Snakemake
    plans, before any job."""
    why = cell_why_not(cfg, dataset, model, method)
    if why is not None:
        raise ValueError(f"{method} does not run on {dataset}/{model}: {why}; this implementation of {method} "
                         f"runs on {implementation_runs_on(method)}")
    extra = registry.get(method).required_inputs(method_params(cfg, method, dataset, model), dataset, model)
    return [checkpoint_path(dataset, model)] + [prepared_path(dataset, s) for s in SPLITS] + list(extra)


def evaluate_inputs(cfg: dict, dataset: str, model: str, method: str = MODEL_ROW) -> list[str]:
    """What one evaluate job reads: the checkpoint and the prepared splits, and for an explanation (not
    :data:`MODEL_ROW`, the model's own accuracy) the explanation and what its metrics ask for."""
    paths = [checkpoint_path(dataset, model)] + [prepared_path(dataset, s) for s in SPLITS]
    if method != MODEL_ROW:
        registered = metrics()
        paths.append(explanation_path(dataset, model, method))
        for metric in metrics_for(cfg, dataset, model, method):
            paths += registered[metric].required_inputs(cfg, dataset, model, method)
    return list(dict.fromkeys(paths))


#: The stages that have a module under nnxai.stages (a report item's job runs its writer's module).
STAGE_MODULES = ("prepare", "train", "explain", "evaluate", "aggregate")


def code_modules(cfg: dict, stage: str, **wildcards: str) -> list[str]:
    """The ``nnxai`` modules whose code decides one job's output (:mod:`nnxai.codedeps` adds what they
    import): the CLI and the job's stage module, and the method, metrics, data set, penalty or report
    item it runs."""
    modules = ["nnxai.cli"] + ([f"nnxai.stages.{stage}"] if stage in STAGE_MODULES else [])
    if stage == "prepare":
        modules.append(type(DATASETS[wildcards["dataset"]]).__module__)
    elif stage == "train":
        penalty = variant(wildcards["model"]).penalty
        modules += ["nnxai.training.penalties", "nnxai.training.trainer"]
        if penalty in PENALTIES:
            modules.append(PENALTIES[penalty].__module__)
        active = active_method(wildcards["model"])
        if active is not None:
            modules.append(active.__module__)
    elif stage == "explain":
        modules.append(registry.get(wildcards["method"]).__module__)
    elif stage == "evaluate" and wildcards.get("method", MODEL_ROW) != MODEL_ROW:
        method = wildcards["method"]
        registered = metrics()
        modules.append(registry.get(method).__module__)
        modules += [registered[m].__module__ for m in metrics_for(cfg, wildcards["dataset"], wildcards["model"], method)]
    elif stage == "report":
        modules.append(REPORT_ITEMS[wildcards["item"]].writer.__module__)
    elif stage == "paper":
        modules.append("nnxai.report.paper_pdf")
    return modules


def code_files(cfg: dict, stage: str, **wildcards: str) -> list[str]:
    """The source files of one job (:func:`code_modules` and their imports), relative to the repository
    (``src/nnxai/...``)."""
    return [path for path, _ in codedeps.file_digests(_module_set(cfg, stage, **wildcards))]


def code_inputs(cfg: dict, stage: str, workdir: str | Path = ".", **wildcards: str) -> list[str]:
    """One input per job that stands for its code: a manifest of its source files and their sha256
    (``sha256sum`` format, paths relative to the repository), ``.nnxai-cache/code/<digest of the module
    set>.sha256`` under ``workdir``.  The manifest is rewritten only when a digest changes, so editing a
    source file reruns the jobs whose code it is (and their downstream) and nothing else, a touch or a
    moved run folder reruns nothing, and Snakemake checks one file per job instead of the ~50 sources."""
    return [_manifest(_module_set(cfg, stage, **wildcards), str(Path(workdir).resolve()))]


CODE_MANIFESTS = f"{CACHE_ROOT}/code"   #: where :func:`code_inputs` keeps the manifests (ignored by git and DVC)


def _module_set(cfg: dict, stage: str, **wildcards: str) -> tuple[str, ...]:
    return tuple(sorted(set(code_modules(cfg, stage, **wildcards))))


@lru_cache(maxsize=None)
def _manifest(modules: tuple[str, ...], workdir: str) -> str:
    # Written with the newest mtime of the sources it lists, not the time of writing: Snakemake compares
    # an input's mtime with its outputs', and outputs made (or pulled by DVC) after the code was last
    # changed must not look older than the code.
    text = "".join(f"{digest}  {path}\n" for path, digest in codedeps.file_digests(modules))
    name = hashlib.sha256("\n".join(modules).encode()).hexdigest()[:20]
    relative = f"{CODE_MANIFESTS}/{name}.sha256"
    path = Path(workdir) / relative
    try:
        unchanged = path.read_text() == text
    except OSError:
        unchanged = False
    if not unchanged:
        atomic_write_text(path, text)
        newest = max((codedeps.SOURCE_ROOT.parent / p).stat().st_mtime_ns for p, _ in codedeps.file_digests(modules))
        os.utime(path, ns=(newest, newest))
    return relative


#: The compiled paper (nnxai.report.paper_pdf): paper/main.tex with every generated table, figure and document.
PAPER_PDF = "paper/main.pdf"


def paper_inputs(cfg: dict) -> list[str]:
    """What the paper's build reads besides its source (the repository's ``paper/main.tex``): the generated
    tables (.tex), figures (.pdf) and documents (.tex)."""
    out = targets(cfg)
    return ([p for p in out["tables"] + out["documents"] if p.endswith(".tex")]
            + [p for p in out["figures"] if p.endswith(".pdf")])


def needs_tex(workflow) -> bool:
    """Whether the jobs Snakemake is about to run include the paper's build (checked before any job runs)."""
    try:
        jobs = list(workflow.dag.needrun_jobs())
    except AttributeError:           # another Snakemake API: assume it does, the check is cheap
        return True
    return any(PAPER_PDF in map(str, job.output) for job in jobs)


def check_paper_tools(workflow) -> None:
    """Stop a run that would build the paper without TeX, before its first job (not after 30 minutes)."""
    from nnxai.report.paper_pdf import missing_tools

    if needs_tex(workflow) and missing_tools():
        raise RuntimeError(f"{PAPER_PDF} needs {', '.join(missing_tools())}, not found on PATH: run `bash envs/tex.sh` "
                           f"(Debian's TeX Live, with apt), or ask for everything but the PDF: "
                           f"`snakemake --cores 2 evaluate_all report_all`")


def experiment_cells(cfg: dict) -> list[tuple[str, str, str]]:
    return [(d, m, meth) for d in cfg["datasets"] for m in models_for(cfg, d) for meth in methods_for(cfg, d, m)]


def targets(cfg: dict) -> dict[str, list[str]]:
    """Every output of the run described by ``cfg``, grouped by stage."""
    out: dict[str, list[str]] = {"prepared": [], "checkpoints": [], "explanations": [], "metrics": []}
    for dataset in cfg["datasets"]:
        out["prepared"] += [prepared_path(dataset, s) for s in SPLITS]
        for model in models_for(cfg, dataset):
            out["checkpoints"].append(checkpoint_path(dataset, model))
            out["metrics"].append(metrics_path(dataset, model, MODEL_ROW))
    for dataset, model, method in experiment_cells(cfg):
        out["explanations"].append(explanation_path(dataset, model, method))
        out["metrics"].append(metrics_path(dataset, model, method))
    out["aggregate"] = ["data/metrics/all.csv", "data/metrics/summary.json"]
    out["tables"] = [f"paper/tables/{t}.{ext}" for t in TABLES for ext in ("md", "tex")]
    out["figures"] = [f"paper/figures/{f}.{ext}" for f in FIGURES for ext in FIGURE_FORMATS]
    out["documents"] = [f"paper/{d}.{ext}" for d in DOCUMENTS for ext in DOCUMENT_FORMATS]
    out["paper"] = [PAPER_PDF]
    return out


def write_code_manifests(cfg: dict, workdir: str | Path = ".") -> int:
    """Write the code manifest of every job the run described by ``cfg`` can have (:func:`code_inputs`)
    before Snakemake plans: it checks inputs against a cache of what exists, so a file first written while
    it builds the DAG can be reported missing.  Returns the number of module sets."""
    jobs = [("prepare", {"dataset": d}) for d in cfg["datasets"]]
    jobs += [("train", {"dataset": d, "model": m}) for d, m in model_cells(cfg)]
    jobs += [("evaluate", {"dataset": d, "model": m, "method": MODEL_ROW}) for d, m in model_cells(cfg)]
    for d, m, x in experiment_cells(cfg):
        jobs += [("explain", {"dataset": d, "model": m, "method": x}), ("evaluate", {"dataset": d, "model": m, "method": x})]
    jobs += [("aggregate", {}), ("paper", {})] + [("report", {"item": item}) for item in REPORT_ITEMS.names()]
    sets = {_module_set(cfg, stage, **wildcards) for stage, wildcards in jobs}
    for modules in sets:
        _manifest(modules, str(Path(workdir).resolve()))
    return len(sets)


def all_targets(cfg: dict) -> list[str]:
    return [path for group in targets(cfg).values() for path in group]


def stage_settings(cfg: dict, stage: str, **wildcards: str) -> dict:
    """The slice of the config one job depends on.  Snakemake passes it as a ``params:`` value, so a job
    reruns when (and only when) its own slice changes."""
    common = {"device": cfg["device"], "threads": cfg["threads"]}
    if stage == "prepare":
        d = wildcards["dataset"]
        return {"dataset": d, "sizes": cfg["data"][d], "seed": cfg["seed"]}
    if stage == "train":
        return {**train_settings(cfg, wildcards["dataset"], wildcards["model"]), **common}
    if stage == "explain":
        m = wildcards["method"]
        registry.get(m)  # unknown or unimplemented: a clear error before anything else
        if m not in cfg["method_params"]:
            raise ValueError(f"config key 'method_params.{m}' is missing")
        return {"method": m, "params": method_params(cfg, m, wildcards["dataset"], wildcards["model"]),
                "seed": cfg["seed"], **common}
    if stage == "evaluate":
        # One job per explanation (and one for the model's accuracy: method MODEL_ROW); without a method,
        # the slice of every explanation of the model and its accuracy (one call by hand).
        d, model = wildcards["dataset"], wildcards["model"]
        only = wildcards.get("method")
        if only == MODEL_ROW:
            return {"methods": {}, "metric_params": {}, "inputs": {}, "model_metrics": True, "seed": cfg["seed"],
                    **common}
        if only is not None:
            registry.get(only)
        methods = {m: metrics_for(cfg, d, model, m) for m in methods_for(cfg, d, model) if only in (None, m)}
        if only is not None and only not in methods:
            raise ValueError(f"method {only!r} is not run on {d}/{model} by this config "
                             f"(it runs: {', '.join(methods_for(cfg, d, model)) or 'none'})")
        used = sorted({m for ids in methods.values() for m in ids})
        registered = metrics()
        # what each metric reads besides the explanation, checkpoint and splits (part of its cache key)
        inputs = {meth: {m: registered[m].required_inputs(cfg, d, model, meth) for m in ids}
                  for meth, ids in methods.items()}
        return {"methods": methods, "metric_params": {m: metric_params(cfg, m, d, model) for m in used},
                "inputs": inputs, "model_metrics": only is None, "seed": cfg["seed"], **common}
    raise ValueError(f"unknown stage {stage!r}")


def settings_json(cfg: dict, stage: str, **wildcards: str) -> str:
    return json.dumps(stage_settings(cfg, stage, **wildcards), sort_keys=True, separators=(",", ":"))


def prepare_job_environment(basedir: str | Path) -> None:
    """Make every job's ``python -m nnxai`` the interpreter running Snakemake, on this checkout's sources.

    The interpreter's folder goes first on PATH and ``src/`` on PYTHONPATH (so the conda env of
    ``--use-conda``, which pins only the dependencies, runs this checkout's ``nnxai`` too); the config
    folder is the checkout's ``configs/`` unless NNXAI_CONFIG_DIR says otherwise.
    """
    basedir = Path(basedir)
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in [str(basedir / "src"), os.environ.get("PYTHONPATH", "")] if p)
    os.environ.setdefault("NNXAI_CONFIG_DIR", str(basedir / "configs"))
