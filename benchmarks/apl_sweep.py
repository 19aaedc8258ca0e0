"""Benchmark: APL against accuracy on ``planted`` for tree regularisation [119], L1 and L2 over a sweep of
strengths (the paper's Fig. 4 style: each point one strength; upper left is better).

    .venv/bin/python benchmarks/apl_sweep.py [--epochs 30] [--n-train 1000] [--readme]
    .venv/bin/python benchmarks/apl_sweep.py --from-csv [--csv PATH] [--readme]

For every regulariser and strength it trains the config's planted MLP (``architecture.mlp``, Adam at
``training.mlp``'s learning rate and batch size, fewer epochs), fits CART (``min_samples_leaf`` of
``active_params.tree_regularization``) to the network's predictions on the training inputs and reports the
tree's APL on the test inputs (the ``apl`` metric), with the network's validation and test accuracy.
Writes ``benchmarks/results/apl_sweep.csv`` (one row per network, with the sweep's settings) and
``paper/figures/apl_sweep.png``; with ``--readme``, the table and its verdict into the README's
``apl-sweep`` block.  ``--from-csv`` rebuilds the figure, table and verdict from a saved CSV without
training anything.

Time: 15 networks of ~940 Adam steps each (1000 rows, batch 32, 30 epochs) on one CPU thread, measured at
27 s of CPU and 75 s wall on a shared 2-core machine (the six tree-regularised networks take two thirds:
their CART fits and surrogate refits); ``train_seconds`` in the CSV gives each network's share.
``--from-csv`` takes about 10 s (mostly imports).

**Verdict** (:func:`verdict`), the rule fixed before the sweep was read: [119] reports that tree
regularisation reaches a lower APL than L1 and L2 *at the same accuracy* (its APL-against-AUC figures).  An
L1 or L2 network and a tree-regularised one are *matched* when their test accuracies differ by at most the
half-width of a 95 % normal interval of the difference of two accuracies measured on ``n_test`` rows each,
``1.96 · sqrt(2 p (1 − p) / n_test)`` with ``p`` the L1/L2 network's accuracy (our choice: the paper reads
its curves by eye and states no tolerance).  At each L1/L2 point with a matched tree-regularised network,
tree regularisation *is lower* when the least APL among its matched networks is below the point's.  The
claim is ``reproduced`` when it is lower at every matched point, ``not reproduced`` when at none, and
``inconclusive`` when at some, or when no point is matched; points with no match are counted apart (a
collapsed network predicting one class, APL 0, has no tree-regularised match unless one collapses too).
"""

from __future__ import annotations

import argparse
import csv
import math
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
SETTINGS = ("epochs", "n_train", "n_test", "seed")    #: written into every CSV row, read back by --from-csv
Z95 = 1.96                                           #: the normal quantile of a two-sided 95 % interval


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


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30, help="training epochs per network (default 30)")
    parser.add_argument("--n-train", type=int, default=1000, help="planted training rows (default 1000)")
    parser.add_argument("--n-test", type=int, default=500, help="planted validation and test rows (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", type=Path, default=ROOT / "benchmarks/results/apl_sweep.csv")
    parser.add_argument("--figure", type=Path, default=ROOT / "paper/figures/apl_sweep.png")
    parser.add_argument("--readme", action="store_true",
                        help="write the table and its verdict into the README's apl-sweep block")
    parser.add_argument("--from-csv", action="store_true",
                        help="rebuild figure, table and verdict from --csv (its settings too) without training")
    return parser.parse_args(argv)


def sweep(args) -> list[dict]:
    """Train and measure every network of the sweep (:data:`SWEEP`, and the unregularised one)."""
    torch.set_num_threads(1)
    config = load_config(directory=ROOT / "configs")
    data = tuple((torch.from_numpy(d["x"]), torch.from_numpy(d["y"]))
                 for d in (planted.generate(n, [args.seed, k]) for k, n in
                           enumerate((args.n_train, args.n_test, args.n_test))))
    runs = [("none", 0.0)] + [(name, s) for name, strengths in SWEEP.items() for s in strengths]
    settings = {key: getattr(args, key) for key in SETTINGS}
    rows = []
    for name, strength in runs:
        rows.append({**run(name, strength, data, config, args.epochs, args.seed), **settings})
        r = rows[-1]
        print(f"{r['regulariser']:>20} {r['strength']:>8g}  apl {r['apl']:.2f}  val {r['val_accuracy']:.3f}  "
              f"test {r['test_accuracy']:.3f}  {r['train_seconds']:.1f} s", flush=True)
    return rows


def write_csv(rows, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict]:
    """The rows a sweep saved, numbers parsed; the settings must be there (an older CSV lacks them)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or any(key not in rows[0] for key in SETTINGS):
        raise SystemExit(f"{path} has no sweep rows with the settings {SETTINGS}: run the sweep again")
    for r in rows:
        r.update({k: float(r[k]) for k in ("strength", "apl", "val_accuracy", "test_accuracy", "train_seconds")})
        r.update({k: int(r[k]) for k in SETTINGS})
    return rows


def settings_of(rows) -> dict:
    """The one setting the rows share (a CSV mixing sweeps is refused)."""
    found = {tuple(r[k] for k in SETTINGS) for r in rows}
    if len(found) != 1:
        raise SystemExit(f"the rows come from {len(found)} different sweep settings")
    return dict(zip(SETTINGS, found.pop()))


def matching_tolerance(accuracy: float, n_test: int) -> float:
    """The half-width of a 95 % normal interval of the difference of two accuracies near ``accuracy``, each
    measured on ``n_test`` rows: two networks closer than this are at the same accuracy (module docstring)."""
    return Z95 * math.sqrt(2 * accuracy * (1 - accuracy) / n_test)


def matched_outcomes(rows, other: str, n_test: int) -> list[str]:
    """Per point of ``other`` (``l1``/``l2``): ``lower`` when some tree-regularised network of matched test
    accuracy has a lower APL, ``not lower`` when the matched ones do not, ``unmatched`` when there is none."""
    tree = [r for r in rows if r["regulariser"] == "tree_regularization"]
    outcomes = []
    for point in (r for r in rows if r["regulariser"] == other):
        tolerance = matching_tolerance(point["test_accuracy"], n_test)
        matched = [t["apl"] for t in tree if abs(t["test_accuracy"] - point["test_accuracy"]) <= tolerance]
        outcomes.append("unmatched" if not matched else "lower" if min(matched) < point["apl"] else "not lower")
    return outcomes


def verdict(rows, n_test: int) -> tuple[str, str]:
    """``(verdict, sentence)`` of [119]'s claim on the sweep's own numbers (the rule: module docstring)."""
    per = {other: matched_outcomes(rows, other, n_test) for other in ("l1", "l2")}
    matched = [o for outcomes in per.values() for o in outcomes if o != "unmatched"]
    lower = matched.count("lower")
    word = ("inconclusive" if not matched or 0 < lower < len(matched)
            else "reproduced" if lower == len(matched) else "not reproduced")
    counts = " and ".join(f"at {o.count('lower')} of {len(o) - o.count('unmatched')} matched {name.upper()} points "
                          f"({o.count('unmatched')} unmatched)" for name, o in per.items())
    sentence = (f"Verdict on [119]'s claim that tree regularisation reaches a lower APL than L1 and L2 at the "
                f"same accuracy (matched: test accuracies within {Z95}·√(2p(1−p)/{n_test}), the 95 % interval of "
                f"their difference; lower at every matched point: reproduced, at none: not reproduced): "
                f"**{word}**.  Tree regularisation's APL is lower {counts}.")
    return word, sentence


def main(argv=None):
    args = parse(argv)
    rows = read_csv(args.csv) if args.from_csv else sweep(args)
    if not args.from_csv:
        write_csv(rows, args.csv)
    plot(rows, args.figure)
    settings = settings_of(rows)
    print(verdict(rows, settings["n_test"])[1])
    print(f"{'read' if args.from_csv else 'wrote'} {args.csv}; wrote {args.figure}")
    if args.readme:
        from _readme import write_block

        write_block("apl-sweep", readme_table(rows, settings))


def readme_table(rows, settings: dict) -> str:
    """The sweep as a markdown table, with the setting that produced it and the verdict (:func:`verdict`)."""
    lines = [f"`planted`, {settings['n_train']} training rows, {settings['epochs']} epochs, seed {settings['seed']}; "
             "APL of CART (min_samples_leaf of `active_params.tree_regularization`) fitted to the network's "
             f"training predictions, on {settings['n_test']} test rows (`benchmarks/results/apl_sweep.csv`, "
             "`paper/figures/apl_sweep.png`):", "",
             "| regulariser | strength | APL | test accuracy |", "|---|---|---|---|"]
    lines += [f"| {r['regulariser']} | {r['strength']:g} | {r['apl']:.2f} | {r['test_accuracy']:.3f} |" for r in rows]
    return "\n".join(lines + ["", verdict(rows, settings["n_test"])[1]])


if __name__ == "__main__":
    main()
