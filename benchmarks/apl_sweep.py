"""Benchmark: APL against accuracy on ``planted`` for tree regularisation [119], L1 and L2 over a sweep of
strengths (the paper's Fig. 4 style: each point one strength; upper left is better).

    .venv/bin/python benchmarks/apl_sweep.py [--epochs 30] [--n-train 1000]

For every regulariser and strength it trains the config's planted MLP (``architecture.mlp``, Adam at
``training.mlp``'s learning rate and batch size, fewer epochs), fits CART (``min_samples_leaf`` of
``active_params.tree_regularization``) to the network's predictions on the training inputs and reports the
tree's APL on the test inputs (the ``apl`` metric), with the network's validation and test accuracy.
Writes ``benchmarks/results/apl_sweep.csv`` and ``paper/figures/apl_sweep.png``; with ``--readme``, the
table into the README's ``apl-sweep`` block.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

from nnxai.active.rule.tree_regularization import TreeRegularization, fit_tree, path_lengths
from nnxai.config import load_config
from nnxai.data import planted
from nnxai.models import build_network
from nnxai.training.trainer import TrainConfig, accuracy, train_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
SWEEP = {"tree_regularization": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0],
         "l1": [1e-4, 1e-3, 1e-2, 1e-1],
         "l2": [1e-4, 1e-3, 1e-2, 1e-1]}


def run(regulariser, strength, data, config, epochs, seed):
    (x, y), (xv, yv), (xt, yt) = data
    params = dict(config["active_params"]["tree_regularization"])
    mlp = config["training"]["mlp"]
    torch.manual_seed(seed)
    model = build_network("mlp", n_features=x.shape[1], n_classes=2, hidden=list(config["architecture"]["mlp"]["hidden"]),
                          activation="relu")
    active, penalty = None, "none"
    if regulariser == "tree_regularization":
        active = TreeRegularization(**{**params, "strength": strength})
    elif regulariser in ("l1", "l2"):
        penalty = regulariser
    cfg = TrainConfig(epochs=epochs, batch_size=mlp["batch_size"], lr=mlp["lr"], penalty=penalty,
                      penalty_weight=strength if penalty != "none" else 0.0)
    start = time.perf_counter()
    train_model(model, (x, y), (xv, yv), cfg, seed, progress=False, active=active)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        labels = model(x).argmax(1).numpy()
    tree = fit_tree(x.numpy(), labels, params["min_samples_leaf"])
    return {"regulariser": regulariser, "strength": strength,
            "apl": float(path_lengths(tree, xt.numpy()).mean()),
            "val_accuracy": accuracy(model, xv, yv), "test_accuracy": accuracy(model, xt, yt),
            "train_seconds": round(seconds, 2)}


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, marker in (("tree_regularization", "o"), ("l1", "s"), ("l2", "^"), ("none", "*")):
        pts = [(r["apl"], r["test_accuracy"]) for r in rows if r["regulariser"] == name]   # strength order
        if pts:
            ax.plot(*zip(*pts), marker=marker, label=name.replace("_", " "),
                    linestyle="-" if name != "none" else "")
    ax.set_xlabel("APL of the tree simulating the network (test inputs)")
    ax.set_ylabel("test accuracy")
    ax.set_title("planted: APL vs accuracy, one point per strength", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30, help="training epochs per network (default 30)")
    parser.add_argument("--n-train", type=int, default=1000, help="planted training rows (default 1000)")
    parser.add_argument("--n-test", type=int, default=500, help="planted validation and test rows (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", type=Path, default=ROOT / "benchmarks/results/apl_sweep.csv")
    parser.add_argument("--figure", type=Path, default=ROOT / "paper/figures/apl_sweep.png")
    parser.add_argument("--readme", action="store_true", help="write the table into the README's apl-sweep block")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = load_config(directory=ROOT / "configs")
    data = tuple((torch.from_numpy(d["x"]), torch.from_numpy(d["y"]))
                 for d in (planted.generate(n, [args.seed, k]) for k, n in
                           enumerate((args.n_train, args.n_test, args.n_test))))
    rows = [run("none", 0.0, data, config, args.epochs, args.seed)]
    for name, strengths in SWEEP.items():
        rows += [run(name, s, data, config, args.epochs, args.seed) for s in strengths]
    for r in rows:
        print(f"{r['regulariser']:>20} {r['strength']:>8g}  apl {r['apl']:.2f}  val {r['val_accuracy']:.3f}  "
              f"test {r['test_accuracy']:.3f}  {r['train_seconds']:.1f} s", flush=True)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.figure)
    print(f"wrote {args.csv} and {args.figure}")
    if args.readme:
        from _readme import write_block

        write_block("apl-sweep", readme_table(rows, args))


def readme_table(rows, args) -> str:
    """The sweep as a markdown table, with the setting that produced it."""
    lines = [f"`planted`, {args.n_train} training rows, {args.epochs} epochs, seed {args.seed}; APL of CART "
             "(min_samples_leaf of `active_params.tree_regularization`) fitted to the network's training "
             f"predictions, on {args.n_test} test rows (`benchmarks/results/apl_sweep.csv`, "
             "`paper/figures/apl_sweep.png`):", "",
             "| regulariser | strength | APL | test accuracy |", "|---|---|---|---|"]
    lines += [f"| {r['regulariser']} | {r['strength']:g} | {r['apl']:.2f} | {r['test_accuracy']:.3f} |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
