"""Benchmark: our attribution metrics against Quantus 0.6 on the same explanations (speed and values).

    NNXAI_EXTRAS=test,bench bash envs/setup.sh     # an environment with Quantus (plain `quantus`)
    .venv/bin/python benchmarks/bench_metrics_quantus.py [--n 200] [--json out.json] [--readme]

On the default profile's `shapes` test inputs (prepared in a temporary folder), a seeded ConvNet and its
gradient saliency maps, each metric is computed by us and by the Quantus metric with the matching
definition, timed (best of ``--repeat``), and the two values printed side by side.  Where the definitions
match exactly (localisation: relevance mass, rank, pointing game on non-negative maps), the values must be
equal and the script says so; where they differ (Quantus's region perturbation orders patches and fills
differently, its max-sensitivity samples noise differently, its randomisation test compares other
layers), the difference is printed with the reason, and only the timing is compared.  Target: ours
>= 10x faster.  The re-explaining metrics (continuity, model randomisation) spend most of their time in
the explained method, which both libraries call; for them the script also times the method's
``attribute`` calls inside each run and prints the metric's own work (total less explaining) side by side.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from nnxai import data, registry
from nnxai.ops.maps import saliency_map
from nnxai.methods.base import ExplainContext
from nnxai.metrics.base import metrics
from nnxai.metrics.localisation import MASK
from nnxai.training.trainer import TrainConfig, train_model

SIZES = {"train": 600, "val": 100, "test": 1000}


def best_of(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


class ExplainTimer:
    """Seconds spent inside ``type(method).attribute`` while the block runs (every call, ours or Quantus's
    ``explain_func``, reaches it), so that a re-explaining metric's own work can be told from the method's."""

    def __init__(self, method):
        self.cls, self.seconds, self.calls = type(method), 0.0, 0

    def __enter__(self):
        original = self.original = self.cls.attribute

        def timed(method_self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return original(method_self, *args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        self.cls.attribute = timed
        return self

    def __exit__(self, *exc):
        self.cls.attribute = self.original


def best_of_split(fn, method, repeat):
    """Best of ``repeat`` runs of ``fn``: ``(total s, s inside the method's attribute, its calls, output)``."""
    best = None
    for _ in range(repeat):
        with ExplainTimer(method) as timer:
            start = time.perf_counter()
            out = fn()
            total = time.perf_counter() - start
        if best is None or total < best[0]:
            best = (total, timer.seconds, timer.calls, out)
    return best


def setup(n: int, workdir: Path):
    from bench_attribution import default_model
    from nnxai.config import load_config

    data.prepare("shapes", workdir, SIZES, 0)
    train, test = data.load_split("shapes", "train", workdir), data.load_split("shapes", "test", workdir)
    model = default_model(load_config({}), "shapes")
    val = data.load_split("shapes", "val", workdir)
    # Two epochs, so the scores are not those of a constant classifier (AOPC of an untrained net is ~0).
    train_model(model, (train.x, train.y), (val.x, val.y),
                TrainConfig(epochs=2, batch_size=64, lr=0.004, weight_decay=0.0, penalty="none", penalty_weight=0.0),
                0, torch.device("cpu"), progress=False)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    ctx = ExplainContext(model=model, dataset="shapes", model_id="bench", info=data.DATASETS["shapes"],
                         train=train, test=test, seed=0, workdir=workdir)
    method = registry.get("gradient")(n_explain=n, batch_size=100)
    record = method.explain(ctx)
    return ctx, method, record


def quantus_inputs(ctx, record):
    idx = torch.as_tensor(record.indices)
    x = ctx.test.x[idx].numpy()
    y = record.targets
    a = saliency_map(torch.as_tensor(record.attributions))[:, None].numpy()          # (N, 1, H, W), >= 0
    names = list(ctx.test.meta.get("mask_names"))
    s = ctx.test.masks[record.indices, names.index(MASK)][:, None].astype(float)
    return x, y, a, s


def compare_localisation(ctx, method, record, repeat):
    import quantus

    ours_metric = metrics()["localisation"]()
    x, y, a, s = quantus_inputs(ctx, record)
    keep = s.reshape(len(s), -1).any(1)                      # we leave out empty masks; so must Quantus
    x, y, a, s = x[keep], y[keep], a[keep], s[keep]
    kw = dict(model=ctx.model, x_batch=x, y_batch=y, a_batch=a, s_batch=s, channel_first=True, device="cpu")
    t_ours, ours = best_of(lambda: ours_metric(record, ctx, method), repeat)
    rows, t_quantus = [], 0.0
    for key, cls in (("localisation.mass", quantus.RelevanceMassAccuracy),
                     ("localisation.rank", quantus.RelevanceRankAccuracy),
                     ("localisation.pointing", quantus.PointingGame)):
        q = cls(normalise=False, abs=False, disable_warnings=True)
        t_q, values = best_of(lambda: q(**kw), repeat)
        theirs = float(np.mean(values))
        t_quantus += t_q
        rows.append({"metric": key, "ours": ours[key], "quantus": theirs, "equal": abs(ours[key] - theirs) < 1e-6})
    for row in rows:    # we compute the three scores in one call: time the three against the three
        row.update({"ours_s": t_ours, "quantus_s": t_quantus, "timed": "all three scores"})
    return rows


def compare_pixel_flipping(ctx, method, record, repeat):
    import quantus

    params = {"patch": 4, "steps": 16, "fill": "zero"}
    ours_metric = metrics()["pixel_flipping"](**params)
    x, y, a, _ = quantus_inputs(ctx, record)
    t_ours, ours = best_of(lambda: ours_metric(record, ctx, method), repeat)
    q = quantus.RegionPerturbation(patch_size=params["patch"], regions_evaluation=params["steps"], order="morf",
                                   perturb_baseline="black", normalise=False, abs=False, disable_warnings=True)
    t_q, curves = best_of(lambda: q(model=ctx.model, x_batch=x, y_batch=y, a_batch=a, channel_first=True,
                                    device="cpu", softmax=True), repeat)
    # Quantus returns, per input, f(x) - f(x^(k)) for k = 1..L; AOPC is their mean.
    theirs = float(np.mean([np.mean(c) for c in curves]))
    # Ours computes two curves per call (the ranking's and a random order's): half its time is the AOPC's.
    return [{"metric": "pixel_flipping (AOPC, zero fill)", "ours": ours["pixel_flipping"], "quantus": theirs,
             "ours_s": t_ours / 2, "quantus_s": t_q, "timed": "one AOPC (ours: half a call)",
             "equal": abs(ours["pixel_flipping"] - theirs) < 1e-5}]


def gradient_explain_func(method):
    """Quantus's ``explain_func`` for our gradient method (numpy in, numpy saliency maps out)."""
    def explain(model, inputs, targets, **kwargs):
        x = torch.as_tensor(inputs, dtype=torch.float32)
        return saliency_map(method(model, x, torch.as_tensor(targets))).numpy()[:, None]
    return explain


def compare_continuity(ctx, method, record, repeat):
    """Max-sensitivity [Yeh et al.]: both re-explain ``n`` inputs under ``n_samples`` uniform perturbations;
    the noise draws differ (ours per-input seeded, radius relative to the channel range), so only time is
    compared."""
    import quantus

    params = {"n_inputs": 50, "n_samples": 10, "radius": 0.05}
    ours_metric = metrics()["continuity"](**params)
    x, y, a, _ = quantus_inputs(ctx, record)
    n = params["n_inputs"]
    t_ours, e_ours, c_ours, ours = best_of_split(lambda: ours_metric(record, ctx, method), method, repeat)
    q = quantus.MaxSensitivity(nr_samples=params["n_samples"], lower_bound=params["radius"], abs=False,
                               normalise=False, disable_warnings=True)
    t_q, e_q, c_q, values = best_of_split(
        lambda: q(model=ctx.model, x_batch=x[:n], y_batch=y[:n], a_batch=a[:n], channel_first=True, device="cpu",
                  explain_func=gradient_explain_func(method)), method, repeat)
    return [{"metric": "continuity (max-sensitivity)", "ours": ours["continuity"], "quantus": float(np.mean(values)),
             "ours_s": t_ours, "quantus_s": t_q, "timed": f"{n} inputs x {params['n_samples']} samples",
             "equal": None, **explain_split(e_ours, c_ours, e_q, c_q)}]


def explain_split(e_ours, c_ours, e_q, c_q):
    """The part of a re-explaining metric's time spent explaining, and the calls made, for each library."""
    return {"ours_explain_s": e_ours, "ours_explain_calls": c_ours, "quantus_explain_s": e_q,
            "quantus_explain_calls": c_q}


def compare_sanity(ctx, method, record, repeat):
    """Cascading model randomisation [Adebayo et al.], top down, Spearman of |maps|: Quantus's MPRT walks
    every parameterised layer as we do, but re-initialises with its own draws: only time is compared."""
    import quantus

    n = 50
    ours_metric = metrics()["sanity_model_randomisation"](n_inputs=n)
    x, y, a, _ = quantus_inputs(ctx, record)
    t_ours, e_ours, c_ours, ours = best_of_split(lambda: ours_metric(record, ctx, method), method, repeat)
    q = quantus.MPRT(similarity_func=quantus.similarity_func.correlation_spearman, layer_order="top_down",
                     return_last_correlation=True, abs=True, normalise=False, disable_warnings=True)
    t_q, e_q, c_q, values = best_of_split(
        lambda: q(model=ctx.model, x_batch=x[:n], y_batch=y[:n], a_batch=a[:n], channel_first=True, device="cpu",
                  explain_func=gradient_explain_func(method)), method, repeat)
    theirs = float(np.mean(values)) if not isinstance(values, dict) else float("nan")
    return [{"metric": "sanity_model_randomisation (Spearman)", "ours": ours["sanity_model_randomisation"],
             "quantus": theirs, "ours_s": t_ours, "quantus_s": t_q, "timed": f"{n} inputs, all layers",
             "equal": None, **explain_split(e_ours, c_ours, e_q, c_q)}]


COMPARISONS = {"localisation": compare_localisation, "pixel_flipping": compare_pixel_flipping,
               "continuity": compare_continuity, "sanity": compare_sanity}


VERDICT = {True: "equal", False: "DIFFERENT", None: "values not comparable (different random draws)"}


def readme_text(rows: list[dict], command: str) -> str:
    """The README block ``bench-quantus``: ours against Quantus, metric by metric."""
    import quantus

    lines = [f"`{command}` on this machine ({platform.machine()}, {torch.get_num_threads()} threads, Quantus "
             f"{quantus.__version__}; {datetime.date.today().isoformat()}; target: ours ≥ 10× faster):", "",
             "| metric | ours | Quantus | ours (ms) | Quantus (ms) | speed-up | values | own work speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        own = f"{row['overhead_speedup']:.1f}×" if "overhead_speedup" in row else ""
        lines.append(f"| {row['metric']} | {row['ours']:.4f} | {row['quantus']:.4f} | {row['ours_s'] * 1e3:.1f} | "
                     f"{row['quantus_s'] * 1e3:.1f} | {row['quantus_s'] / row['ours_s']:.1f}× | "
                     f"{VERDICT[row['equal']]} | {own} |")
    lines += ["", "Own work: the metric's time less the time spent in the explained method's `attribute`, "
              "which both libraries call (re-explaining metrics only)."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="explained inputs (default profile: 200)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", choices=sorted(COMPARISONS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--readme", action="store_true", help="write the table into the README's block bench-quantus")
    args = parser.parse_args(argv)
    try:
        import quantus  # noqa: F401
    except ImportError:
        parser.error("Quantus is not installed here: NNXAI_EXTRAS=test,bench bash envs/setup.sh")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ctx, method, record = setup(args.n, Path(tmp))
        for name in args.only or sorted(COMPARISONS):
            for row in COMPARISONS[name](ctx, method, record, args.repeat):
                rows.append(row)
                speedup = row["quantus_s"] / row["ours_s"]
                print(f"{row['metric']:34s} ours {row['ours']:.6f} ({row['ours_s'] * 1e3:8.1f} ms)  "
                      f"quantus {row['quantus']:.6f} ({row['quantus_s'] * 1e3:8.1f} ms)  "
                      f"speed-up {speedup:6.1f}x  {VERDICT[row['equal']]}  (timed: {row['timed']})",
                      flush=True)
                if "ours_explain_s" in row:
                    own, theirs = row["ours_s"] - row["ours_explain_s"], row["quantus_s"] - row["quantus_explain_s"]
                    row["overhead_speedup"] = theirs / own if own > 0 else float("nan")
                    print(f"{'':34s} explaining: ours {row['ours_explain_s'] * 1e3:8.1f} ms in "
                          f"{row['ours_explain_calls']} calls, quantus {row['quantus_explain_s'] * 1e3:8.1f} ms in "
                          f"{row['quantus_explain_calls']} calls; the metric's own work: ours {own * 1e3:8.1f} ms, "
                          f"quantus {theirs * 1e3:8.1f} ms, speed-up {row['overhead_speedup']:6.1f}x", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.readme:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _readme import write_block

        argv_shown = " ".join(a for a in (argv if argv is not None else sys.argv[1:]) if a != "--readme")
        write_block("bench-quantus", readme_text(rows, f"bench_metrics_quantus.py {argv_shown}".strip()))


if __name__ == "__main__":
    main()
