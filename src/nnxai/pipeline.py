"""The stages of the pipeline, one function each; the CLI calls them and Snakemake calls the CLI.

Every stage takes the slice of the config it depends on (:func:`nnxai.workflow.stage_settings`), reads
its inputs from the work directory (checked: :mod:`nnxai.io`, :mod:`nnxai.data.checks`,
:mod:`nnxai.explanations.checks`, :mod:`nnxai.models.checkpoint`) and writes its outputs there atomically,
after removing the temporary files an earlier, killed run of the same outputs left behind.  Each lives in
its own module of :mod:`nnxai.stages` (so a job's code is its stage's); this module gathers them.
"""

from __future__ import annotations

from nnxai.stages.aggregate import COLUMNS, aggregate
from nnxai.stages.context import load_context
from nnxai.stages.evaluate import evaluate
from nnxai.stages.explain import explain
from nnxai.stages.prepare import prepare
from nnxai.stages.train import config_hash, train

__all__ = ["COLUMNS", "aggregate", "config_hash", "evaluate", "explain", "load_context", "prepare", "train"]
