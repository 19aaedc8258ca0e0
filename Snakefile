# The reproduction DAG: a few generic rules over {dataset} {model} {method}; each rule is one `nnxai` call.
# Targets, applicability and per-job settings come from nnxai.workflow (importable, unit-tested).
#   snakemake --cores 2                          default profile (README: numbers and timings)
#   snakemake --cores 2 --config profile=smoke   toy sizes, the whole DAG in minutes
#   snakemake --cores 2 --directory /tmp/run     relocated: every output under /tmp/run
#   snakemake --cores 2 paper                    the PDF: paper/main.tex with every generated table and figure
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
GPU = lambda w: 1 if CFG["device"].startswith("cuda") else 0   # SLURM: the plugin's --gpus (configs/slurm)
SETTINGS = lambda stage: lambda w: shlex.quote(wf.settings_json(CFG, stage, **dict(w.items())))
# Code is a dependency: each job's own source files (nnxai.codedeps), so editing a method reruns its jobs.
CODE = lambda stage: lambda w: wf.code_inputs(CFG, stage, **dict(w.items()))
TARGETS = wf.targets(CFG)
wf.write_code_manifests(CFG)   # before planning: Snakemake caches which inputs exist

wildcard_constraints:
    dataset="|".join(sorted(DATASETS)),
    model=variant_pattern().strip("^$"),
    method="|".join(registry.implemented_ids()),


rule all:
    input: wf.all_targets(CFG),


rule prepare_data:
    input: CODE("prepare"),
    output: expand("data/prepared/{{dataset}}/{split}.npz", split=wf.SPLITS), "data/prepared/{dataset}/meta.json",
    params: settings=SETTINGS("prepare"),
    conda: ENV
    log: "logs/prepare/{dataset}.log",
    benchmark: "logs/benchmarks/prepare/{dataset}.tsv",
    shell: "python -m nnxai prepare --dataset {wildcards.dataset} --settings {params.settings} > {log} 2>&1"


rule train_model:
    input: expand("data/prepared/{{dataset}}/{split}.npz", split=wf.SPLITS), CODE("train"),
    output: "data/checkpoints/{dataset}/{model}.pt", "data/checkpoints/{dataset}/{model}.json",
    params: settings=SETTINGS("train"),
    threads: CFG["threads"]
    resources: gpu=GPU,
    conda: ENV
    log: "logs/train/{dataset}/{model}.log",
    benchmark: "logs/benchmarks/train/{dataset}/{model}.tsv",
    shell: "python -m nnxai train --dataset {wildcards.dataset} --model {wildcards.model} --settings {params.settings} "
           "--threads {threads} > {log} 2>&1"


rule explain_attribution:
    input: lambda w: wf.explain_inputs(CFG, w.dataset, w.model, w.method) + CODE("explain")(w),
    output: "data/explanations/{dataset}/{model}/{method}.npz",
    params: settings=SETTINGS("explain"),
    threads: CFG["threads"]
    priority: lambda w: wf.job_priority(CFG, w.dataset, w.model, w.method),
    resources: gpu=GPU,
    conda: ENV
    log: "logs/explain/{dataset}/{model}/{method}.log",
    benchmark: "logs/benchmarks/explain/{dataset}/{model}/{method}.tsv",
    shell: "python -m nnxai explain -d {wildcards.dataset} -m {wildcards.model} -x {wildcards.method} "
           "--settings {params.settings} > {log} 2>&1"


use rule explain_attribution as explain_structured with:
    output: "data/explanations/{dataset}/{model}/{method}.json",


rule evaluate_explanation:
    input: lambda w: wf.evaluate_inputs(CFG, w.dataset, w.model, w.method) + CODE("evaluate")(w),
    output: "data/metrics/{dataset}/{model}/{method}.json",
    params: settings=SETTINGS("evaluate"),
    threads: CFG["threads"]
    priority: lambda w: wf.job_priority(CFG, w.dataset, w.model, w.method),
    resources: gpu=GPU,
    conda: ENV
    log: "logs/evaluate/{dataset}/{model}/{method}.log",
    benchmark: "logs/benchmarks/evaluate/{dataset}/{model}/{method}.tsv",
    shell: "python -m nnxai --verbose evaluate -d {wildcards.dataset} -m {wildcards.model} -x {wildcards.method} "
           "--quiet --settings {params.settings} > {log} 2>&1"


rule evaluate_model:
    input: lambda w: wf.evaluate_inputs(CFG, w.dataset, w.model) + CODE("evaluate")(w),
    output: "data/metrics/{dataset}/{model}/model.json",
    params: settings=lambda w: SETTINGS("evaluate")({**dict(w.items()), "method": wf.MODEL_ROW}),
    threads: CFG["threads"]
    resources: gpu=GPU,
    conda: ENV
    log: "logs/evaluate/{dataset}/{model}/model.log",
    benchmark: "logs/benchmarks/evaluate/{dataset}/{model}/model.tsv",
    shell: "python -m nnxai evaluate -d {wildcards.dataset} -m {wildcards.model} --model-only --quiet "
           "--settings {params.settings} > {log} 2>&1"


rule aggregate_metrics:
    input: metrics=TARGETS["metrics"], code=CODE("aggregate")({}),
    output: "data/metrics/all.csv", "data/metrics/summary.json",
    conda: ENV
    log: "logs/aggregate.log",
    shell: "python -m nnxai aggregate {input.metrics} > {log} 2>&1"


rule make_table:
    input: lambda w: ["data/metrics/all.csv"] + (TARGETS["explanations"] if w.table == "table2" else [])
                     + wf.code_inputs(CFG, "report", item=w.table),
    output: "paper/tables/{table}.md", "paper/tables/{table}.tex",
    wildcard_constraints: table="|".join(wf.TABLES),
    conda: ENV
    log: "logs/report/{table}.log",
    shell: "python -m nnxai report {wildcards.table} --out paper/tables > {log} 2>&1"


rule make_document:
    input: lambda w: ["data/metrics/all.csv"] + wf.code_inputs(CFG, "report", item=w.document),
    output: expand("paper/{{document}}.{ext}", ext=wf.DOCUMENT_FORMATS),
    wildcard_constraints: document="|".join(wf.DOCUMENTS),
    conda: ENV
    log: "logs/report/{document}.log",
    shell: "python -m nnxai report {wildcards.document} --out paper > {log} 2>&1"


rule make_figure:
    input: lambda w: ["data/metrics/all.csv"] + wf.code_inputs(CFG, "report", item=w.figure),
    output: expand("paper/figures/{{figure}}.{ext}", ext=wf.FIGURE_FORMATS),
    wildcard_constraints: figure="|".join(wf.FIGURES),
    conda: ENV
    log: "logs/report/{figure}.log",
    shell: "python -m nnxai report {wildcards.figure} --out paper/figures > {log} 2>&1"


rule build_paper:
    input: generated=wf.paper_inputs(CFG), code=wf.code_inputs(CFG, "paper"),
           source=str(Path(workflow.basedir) / "paper/main.tex"),   # the repository's, wherever the run is
    output: wf.PAPER_PDF,
    conda: ENV
    log: "logs/report/paper.log",
    benchmark: "logs/benchmarks/report/paper.tsv",
    shell: "python -m nnxai paper --source {input.source:q} > {log} 2>&1"


# Stage groups (what dvc.yaml's stages call): `snakemake train_all --cores 2` (target first: --config swallows what follows).
rule prepare_all:
    input: TARGETS["prepared"],

rule train_all:
    input: TARGETS["checkpoints"],

rule evaluate_all:
    input: TARGETS["explanations"], TARGETS["metrics"], TARGETS["aggregate"],

rule report_all:
    input: TARGETS["tables"], TARGETS["figures"], TARGETS["documents"],

rule paper:
    input: TARGETS["paper"],


# Persistent worker (issue 10): on a local run, every `python -m nnxai` job runs in a fork of one process that
# imported torch, captum and the registries once (~0.1 s instead of ~4 s of start-up per job); results are
# bit for bit the same. Not for cluster executors, dry runs or --use-conda. NNXAI_NO_WORKER=1 turns it off.
from nnxai import worker as nnxai_worker
# Greedy job selection unless the command line names a --scheduler: the ILP default cost half a core on
# two and picks the same jobs here (no priorities, no temp files); see nnxai/scheduling.py.
from nnxai.scheduling import prefer_greedy

localrules: build_paper   # TeX Live where Snakemake runs (a cluster's login node), not on the compute nodes

onstart:
    wf.check_paper_tools(workflow)
    prefer_greedy(workflow)
    nnxai_worker.start_for_workflow(workflow)

onsuccess:
    nnxai_worker.stop()

onerror:
    nnxai_worker.stop()
