"""Benchmark: the transparency-accuracy trade-off of the interpretable partial substitute [80] (HyRS).

    .venv/bin/python benchmarks/partial_substitution_tradeoff.py [--datasets monks1 monks3 breast_cancer causal]
        [--thetas 0 0.02 0.05 0.1 0.2 0.5 1] [--csv benchmarks/results/partial_substitution_tradeoff.csv]

[80] sweeps the weight θ₂ of the uncovered fraction in its objective and plots the hybrid's accuracy against
its transparency (the fraction of inputs the rules decide): the "efficient frontier".  For every data set
this trains the default profile's ReLU MLP (``architecture.mlp``, ``training.mlp`` and the per-data-set
epochs), fits the substitute with the default profile's ``method_params.partial_substitution`` but θ₂, and
prints, per θ₂, the test coverage (the ``coverage`` metric), the hybrid's test accuracy (``hybrid_accuracy``)
beside the network's own, and the number of rules.  θ₂ = 0 leaves everything to the network (a rule then
only costs); a large θ₂ hands (almost) everything to the rules.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import torch
import yaml

from nnxai import data
from nnxai.methods.base import ExplainContext
from nnxai.methods.rule.local.partial_substitution import PartialSubstitution
from nnxai.metrics.coverage import Coverage, HybridAccuracy
from nnxai.models import build_network
from nnxai.training.trainer import TrainConfig, train_model

ROOT = Path(__file__).resolve().parents[1]


def config() -> dict:
    """The default profile's YAML as written (the sweep only reads it; nnxai.config validates the pipeline's)."""
    return yaml.safe_load((ROOT / "configs" / "config.yaml").read_text())


def trained_context(name: str, cfg: dict, workdir: Path, seed: int) -> ExplainContext:
    data.prepare(name, workdir, cfg["data"].get(name), seed)
    train, val, test = (data.load_split(name, s, workdir) for s in ("train", "val", "test"))
    info = data.DATASETS[name]
    torch.manual_seed(seed)
    model = build_network("mlp", n_features=train.x.shape[1], n_classes=info.n_classes,
                          hidden=list(cfg["architecture"]["mlp"]["hidden"]), activation="relu")
    mlp = {**cfg["training"]["mlp"], **cfg["training"].get("datasets", {}).get(name, {})}
    train_model(model, (train.x, train.y), (val.x, val.y),
                TrainConfig(epochs=mlp["epochs"], batch_size=mlp["batch_size"], lr=mlp["lr"]), seed, progress=False)
    return ExplainContext(model=model.eval(), dataset=name, model_id="baseline", info=info, train=train, test=test,
                          seed=seed)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["monks1", "monks3", "breast_cancer", "causal"])
    parser.add_argument("--thetas", nargs="+", type=float, default=[0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = config()
    params = dict(cfg["method_params"]["partial_substitution"])
    rows = []
    print(f"{'dataset':14} {'theta_2':>7} {'coverage':>8} {'hybrid_acc':>10} {'network_acc':>11} {'rules':>5} {'s':>5}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            ctx = trained_context(name, cfg, Path(tmp), args.seed)
            for theta in args.thetas:
                start = time.perf_counter()
                record = PartialSubstitution(**{**params, "theta_coverage": theta}).explain(ctx)
                seconds = time.perf_counter() - start
                hybrid = HybridAccuracy()(record, ctx)
                row = {"dataset": name, "theta_coverage": theta,
                       "coverage": float(Coverage()(record, ctx, None)["coverage"]),
                       "hybrid_accuracy": float(hybrid["hybrid_accuracy"]),
                       "network_accuracy": float(hybrid["hybrid_accuracy.network"]),
                       "rules": len(record.rules), "seconds": round(seconds, 2)}
                rows.append(row)
                print(f"{name:14} {theta:7.2f} {row['coverage']:8.3f} {row['hybrid_accuracy']:10.3f} "
                      f"{row['network_accuracy']:11.3f} {row['rules']:5d} {seconds:5.1f}", flush=True)
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
