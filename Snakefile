# The reproduction DAG: a few generic rules over {dataset} {model} {method}; each rule is one `nnxai` call.
# Targets, applicability and per-job settings come from nnxai.workflow (importable, unit-tested).
#   snakemake --cores 2                          default profile (README: numbers and timings)
#   snakemake --cores 2 --config profile=smoke   toy sizes, the whole DAG in minutes
#   snakemake --cores 2 --directory /tmp/run     relocated: every output under /tmp/run
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))   # this checkout's nnxai, whichever clone set up .venv
from nnxai import registry
from nnxai.config import ConfigError, cli_overrides, load_config
from nnxai.data import DATASETS
from nnxai.models.variants import variant_pattern
from nnxai import workflow as wf

from snakemake.exceptions import WorkflowError

wf.prepare_job_environment(workflow.basedir)   # jobs run `python -m nnxai` with this interpreter
try:   # --configfile and --config overrides (nested values read as YAML), validated before any job
    CFG = load_config(cli_overrides(workflow.config_settings.configfiles, workflow.config_settings.config))
except ConfigError as err:
    raise WorkflowError(f"invalid configuration: {err}")

ENV = "envs/nnxai.yaml"
SETTINGS = lambda stage: lambda w: shlex.quote(wf.settings_json(CFG, stage, **dict(w.items())))
TARGETS = wf.targets(CFG)

wildcard_constraints:
    dataset="|".join(sorted(DATASETS)),
    model=variant_pattern().strip("^$"),
    method="|".join(registry.implemented_ids()),


rule all:
    input: wf.all_targets(CFG),


rule prepare_data:
    output: expand("data/prepared/{{dataset}}/{split}.npz", split=wf.SPLITS), "data/prepared/{dataset}/meta.json",
    params: settings=SETTINGS("prepare"),
    conda: ENV
    log: "logs/prepare/{dataset}.log",
    shell: "python -m nnxai prepare --dataset {wildcards.dataset} --settings {params.settings} > {log} 2>&1"


rule train_model:
    input: expand("data/prepared/{{dataset}}/{split}.npz", split=wf.SPLITS),
    output: "data/checkpoints/{dataset}/{model}.pt", "data/checkpoints/{dataset}/{model}.json",
    params: settings=SETTINGS("train"),
    threads: CFG["threads"]
    resources: gpu=lambda w: 1 if CFG["device"].startswith("cuda") else 0,
    conda: ENV
    log: "logs/train/{dataset}/{model}.log",
    benchmark: "logs/benchmarks/train/{dataset}/{model}.tsv",
    shell: "python -m nnxai train --dataset {wildcards.dataset} --model {wildcards.model} --settings {params.settings} "
           "--threads {threads} > {log} 2>&1"


rule explain_attribution:
    input: lambda w: wf.explain_inputs(CFG, w.dataset, w.model, w.method),
    output: "data/explanations/{dataset}/{model}/{method}.npz",
    params: settings=SETTINGS("explain"),
    threads: CFG["threads"]
    conda: ENV
    log: "logs/explain/{dataset}/{model}/{method}.log",
    benchmark: "logs/benchmarks/explain/{dataset}/{model}/{method}.tsv",
    shell: "python -m nnxai explain -d {wildcards.dataset} -m {wildcards.model} -x {wildcards.method} "
           "--settings {params.settings} > {log} 2>&1"


use rule explain_attribution as explain_structured with:
    output: "data/explanations/{dataset}/{model}/{method}.json",


# One evaluate job per trained model scores the model and all its explanations: its outputs depend on the
# (dataset, model) pair, so the rule is written out once per pair.
for _dataset, _model in wf.model_cells(CFG):
    rule:
        name: f"evaluate_{_dataset}_{_model}"
        input: wf.evaluate_inputs(CFG, _dataset, _model),
        output: wf.evaluate_outputs(CFG, _dataset, _model),
        params: settings=shlex.quote(wf.settings_json(CFG, "evaluate", dataset=_dataset, model=_model)),
                dataset=_dataset, model=_model,
        threads: CFG["threads"]
        conda: ENV
        log: f"logs/evaluate/{_dataset}/{_model}.log",
        benchmark: f"logs/benchmarks/evaluate/{_dataset}/{_model}.tsv",
        shell: "python -m nnxai --verbose evaluate -d {params.dataset} -m {params.model} --quiet "
               "--settings {params.settings} > {log} 2>&1"


rule aggregate_metrics:
    input: TARGETS["metrics"],
    output: "data/metrics/all.csv", "data/metrics/summary.json",
    conda: ENV
    log: "logs/aggregate.log",
    shell: "python -m nnxai aggregate {input} > {log} 2>&1"


rule make_table:
    input: lambda w: ["data/metrics/all.csv"] + (TARGETS["explanations"] if w.table == "table2" else []),
    output: "paper/tables/{table}.md", "paper/tables/{table}.tex",
    wildcard_constraints: table="|".join(wf.TABLES),
    conda: ENV
    log: "logs/report/{table}.log",
    shell: "python -m nnxai report {wildcards.table} --out paper/tables > {log} 2>&1"


rule make_figure:
    input: "data/metrics/all.csv",
    output: expand("paper/figures/{{figure}}.{ext}", ext=wf.FIGURE_FORMATS),
    wildcard_constraints: figure="|".join(wf.FIGURES),
    conda: ENV
    log: "logs/report/{figure}.log",
    shell: "python -m nnxai report {wildcards.figure} --out paper/figures > {log} 2>&1"


# Stage groups (what dvc.yaml's stages call): `snakemake train_all --cores 2` (target first: --config swallows what follows).
rule prepare_all:
    input: TARGETS["prepared"],

rule train_all:
    input: TARGETS["checkpoints"],

rule evaluate_all:
    input: TARGETS["explanations"], TARGETS["metrics"], TARGETS["aggregate"],

rule report_all:
    input: TARGETS["tables"], TARGETS["figures"],
