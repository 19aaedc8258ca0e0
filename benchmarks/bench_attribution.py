"""Benchmark of the attribution methods (issue 3's performance targets live here, never in tests).

    .venv/bin/python benchmarks/bench_attribution.py                  # all three parts, default sizes
    .venv/bin/python benchmarks/bench_attribution.py --part captum    # ours vs plain Captum only
    .venv/bin/python benchmarks/bench_attribution.py --methods gradient lime --dataset digits
    .venv/bin/python benchmarks/bench_attribution.py --repeat 7 --n-explain 80 --readme   # the README's figures

Three parts, each printing one table (and ``--json PATH`` writes every figure):

``captum``
    For every method that wraps a Captum class, ours (``method(model, x, target)``: validation, batching,
    leaf copies) against the same Captum call made directly on the same model and batch, timed alternately
    (best of ``--repeat``).  Target: ratio <= 1.05.  Shapley sampling and KernelSHAP, which batch their own
    samplers, are timed against Captum's ``ShapleyValueSampling`` / ``KernelShap`` run input by input with
    the same number of samples.
``floor``
    For every attribution method, its *floor*: the forward and backward passes it makes (recorded by hooks
    on the model, each with its batch size), replayed as plain passes of those batch sizes, and the ratio
    of its measured time to the replay's (timed alternately, best of ``--repeat``).  Target: <= 1.15 (a
    method that does other work, e.g. fitting a surrogate or
    sampling a conditional Gaussian, shows it here).
``scaling``
    Wall time of ``explain`` for each method on 3 sizes of ``n_explain`` (the default profile's value and
    half and a quarter of it), i.e. how the family grows with the number of explained inputs.

The model is the default profile's ConvNet (or MLP) for the dataset, with seeded random weights: timing
does not depend on training.  Method parameters are the default profile's (``configs/config.yaml``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from nnxai import registry
from nnxai.config import load_config
from nnxai.data import DATASETS
from nnxai.methods.attribution._captum import CaptumAttribution
from nnxai.methods.base import AttributionMethod, ExplainContext, model_traits
from nnxai.models import build_network


def default_model(cfg: dict, dataset: str, seed: int = 0) -> torch.nn.Module:
    info = DATASETS[dataset]
    torch.manual_seed(seed)
    if info.kind == "image":
        model = build_network("cnn", in_channels=info.input_shape[0], n_classes=info.n_classes,
                              widths=cfg["architecture"]["cnn"]["widths"])
    else:
        model = build_network("mlp", n_features=int(np.prod(info.input_shape)), n_classes=info.n_classes,
                              hidden=cfg["architecture"]["mlp"]["hidden"])
    return model.eval()


def inputs_for(dataset: str, n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((n, *DATASETS[dataset].input_shape), generator=gen)


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# --- ours vs plain Captum -------------------------------------------------------------------------------

def plain_captum_call(method: AttributionMethod, model, x, target, baseline):
    """The Captum call a wrapped method makes, written directly (same class, arguments and batch)."""
    import captum.attr as ca

    p = method.params
    if isinstance(method, CaptumAttribution):
        leaf = x.clone().requires_grad_(True)
        return ca.__dict__[method.captum_class](model).attribute(leaf, target=target, **method.captum_kwargs())
    mid = method.spec.id
    if mid == "integrated_gradients":
        return ca.IntegratedGradients(model).attribute(x, baselines=baseline, target=target, n_steps=p["n_steps"],
                                                       method="gausslegendre")
    if mid == "smoothgrad":
        sigma = p["noise_level"] * float(x.max() - x.min())
        return ca.NoiseTunnel(ca.Saliency(model)).attribute(
            x.clone().requires_grad_(True), nt_type="smoothgrad", nt_samples=p["n_samples"],
            nt_samples_batch_size=p["n_samples"] * len(x), stdevs=sigma, target=target, abs=False).abs()
    if mid == "occlusion":
        shapes, strides = method.window_shape(x)
        with torch.no_grad():
            return ca.Occlusion(model).attribute(x, sliding_window_shapes=shapes, strides=strides, baselines=baseline,
                                                 target=target, perturbations_per_eval=64)
    if mid == "deeplift" and p["rule"] == "rescale":
        return ca.DeepLift(model).attribute(x.clone().requires_grad_(True), baselines=baseline.expand_as(x).clone(),
                                            target=target)
    if mid in ("shapley_sampling", "kernel_shap"):            # Captum's samplers, one input at a time
        groups, n_players = method.player_groups(tuple(x.shape[1:]))
        sampler = (ca.ShapleyValueSampling if mid == "shapley_sampling" else ca.KernelShap)(model)
        per_eval = min(n_players if mid == "shapley_sampling" else p["n_samples"], 512)
        with torch.no_grad():
            return torch.cat([sampler.attribute(x[j:j + 1], baselines=baseline, target=int(target[j]),
                                                feature_mask=groups[None], n_samples=p["n_samples"],
                                                perturbations_per_eval=per_eval) for j in range(len(x))])
    if mid == "deep_shap":
        return ca.DeepLiftShap(model).attribute(x.clone().requires_grad_(True), baselines=baseline.clone(),
                                                target=target)
    return None


def reference_for(method: AttributionMethod, x: torch.Tensor) -> torch.Tensor:
    """What the benchmark passes as ``baselines``: a seeded background set for DeepSHAP, else the zero input."""
    if method.spec.id == "deep_shap":
        gen = torch.Generator().manual_seed(4)
        return torch.rand((method.params["n_background"], *x.shape[1:]), generator=gen)
    return torch.zeros_like(x[:1])


def part_captum(cfg, dataset, method_ids, repeat):
    model = default_model(cfg, dataset)
    rows = []
    for mid in method_ids:
        method = registry.get(mid)(**cfg["method_params"][mid])
        if not isinstance(method, AttributionMethod):
            continue
        x = inputs_for(dataset, method.params["batch_size"])
        target = model(x).argmax(1)
        baseline = reference_for(method, x)
        if plain_captum_call(method, model, x[:2], target[:2], baseline) is None:
            continue
        passed = baseline if (method.uses_baseline or mid == "deep_shap") else None
        ours_fn = lambda: method(model, x, target, passed)
        captum_fn = lambda: plain_captum_call(method, model, x, target, baseline)
        ours_fn(), captum_fn()                                    # warm-up
        ours, plain = [], []
        for _ in range(repeat):                                   # alternate, so drift hits both
            ours.append(best_of(ours_fn, 1))
            plain.append(best_of(captum_fn, 1))
        rows.append({"method": mid, "batch": len(x), "ours_s": min(ours), "captum_s": min(plain),
                     "ratio": min(ours) / min(plain)})
        print(f"  {mid:24s} batch {len(x):4d}  ours {min(ours):8.3f} s  captum {min(plain):8.3f} s  "
              f"ratio {min(ours) / min(plain):5.2f}", flush=True)
    return rows


# --- floor: passes x one pass ----------------------------------------------------------------------------

class PassCounter:
    """Records every pass through ``model``: the batch of each forward call (and whether autograd recorded
    it) and the batch of each gradient that comes back through the model's output."""

    def __init__(self, model):
        self.forwards: list[tuple[int, bool]] = []
        self.backwards: list[int] = []
        # Rows are counted where they enter the first layer: methods such as CAM call the feature extractor,
        # not model.forward; gradients are counted where they leave the model's output.
        first = next(m for m in model.modules() if not list(m.children()) and list(m.parameters(recurse=False)))
        self.handles = [first.register_forward_hook(self._count_rows), model.register_forward_hook(self._hook)]

    def _count_rows(self, module, args, output):
        self.forwards.append((len(args[0]), torch.is_grad_enabled()))

    def _hook(self, module, args, output):
        if output.requires_grad:
            output.register_hook(self._grad_hook)

    def _grad_hook(self, grad):
        self.backwards.append(len(grad))

    @property
    def forward_rows(self) -> int:
        return sum(n for n, _ in self.forwards)

    @property
    def backward_rows(self) -> int:
        return sum(self.backwards)

    def remove(self):
        for handle in self.handles:
            handle.remove()


class PassReplay:
    """The plain passes a method made, replayed on the model: one forward of each recorded batch size (in
    autograd or not, as recorded), and after each recorded forward in autograd the backward to the input
    that the method took from it (forwards and backwards are paired in order).  Inputs are made before
    timing.  This is the method's floor: the same passes with nothing around them."""

    def __init__(self, model, dataset, counter: PassCounter):
        self.model = model
        backwards = list(counter.backwards)
        self.steps = []
        for n, grad in counter.forwards:
            self.steps.append((inputs_for(dataset, n, seed=1), grad, bool(grad and backwards and backwards.pop(0))))
        self.steps += [(inputs_for(dataset, n, seed=1), True, True) for n in backwards]   # unpaired backwards

    def __call__(self):
        for x, grad, backward in self.steps:
            if not grad:
                with torch.no_grad():
                    self.model(x)
                continue
            leaf = x.clone().requires_grad_(True)
            out = self.model(leaf)
            if backward:
                torch.autograd.grad(out[:, 0].sum(), leaf)


def part_floor(cfg, dataset, method_ids, repeat):
    model = default_model(cfg, dataset)
    rows = []
    for mid in method_ids:
        method = registry.get(mid)(**cfg["method_params"][mid])
        if not isinstance(method, AttributionMethod):
            continue
        x = inputs_for(dataset, method.params["batch_size"])
        target = model(x).argmax(1)
        baseline = reference_for(method, x) if (method.uses_baseline or mid == "deep_shap") else None
        method(model, x[:2], target[:2], baseline)                # warm-up
        counter = PassCounter(model)
        try:
            method(model, x, target, baseline)
        finally:
            counter.remove()
        replay = PassReplay(model, dataset, counter)
        replay()                                                  # warm-up
        floors, measured = [], []
        for _ in range(repeat):                                   # alternate, so drift hits both
            floors.append(best_of(replay, 1))
            measured.append(best_of(lambda: method(model, x, target, baseline), 1))
        floor, time_s = min(floors), min(measured)
        ratio = time_s / floor if counter.forwards else float("nan")
        rows.append({"method": mid, "batch": len(x), "forward_rows": counter.forward_rows,
                     "forward_calls": len(counter.forwards), "backward_rows": counter.backward_rows,
                     "backward_calls": len(counter.backwards), "floor_s": floor, "measured_s": time_s,
                     "ratio": ratio})
        print(f"  {mid:24s} fwd {counter.forward_rows:6d} rows/{len(counter.forwards):4d} calls  "
              f"bwd {counter.backward_rows:6d} rows/{len(counter.backwards):4d} calls  "
              f"floor {floor:7.3f} s  measured {time_s:7.3f} s  ratio {ratio:5.2f}", flush=True)
    return rows


# --- scaling with the number of explained inputs --------------------------------------------------------

def part_scaling(cfg, dataset, method_ids, n_explain=None):
    from nnxai.data import PreparedSplit

    model = default_model(cfg, dataset)
    info = DATASETS[dataset]
    rows = []
    for mid in method_ids:
        cls = registry.get(mid)
        if not issubclass(cls, AttributionMethod) or cls.why_not(info, model_traits(model)) is not None:
            continue
        base = n_explain or cfg["method_params"][mid]["n_explain"]
        sizes = sorted({max(1, base // 4), max(1, base // 2), base})
        times = []
        for n in sizes:
            split = PreparedSplit(x=inputs_for(dataset, n, seed=2), y=torch.zeros(n, dtype=torch.long))
            train = PreparedSplit(x=inputs_for(dataset, 256, seed=3), y=torch.zeros(256, dtype=torch.long))
            ctx = ExplainContext(model=model, dataset=dataset, model_id="bench", info=info, train=train,
                                 test=split, seed=0)
            method = cls(**{**cfg["method_params"][mid], "n_explain": n})
            start = time.perf_counter()
            method.explain(ctx)
            times.append(time.perf_counter() - start)
        rows.append({"method": mid, "sizes": sizes, "seconds": times})
        print(f"  {mid:24s} " + "  ".join(f"n={n:4d}: {t:7.2f} s" for n, t in zip(sizes, times)), flush=True)
    total = [sum(r["seconds"][i] for r in rows) for i in range(3)] if rows else []
    if total:
        print(f"  {'all methods':24s} " + "  ".join(f"{t:7.2f} s" for t in total))
    return rows


def readme_text(results: dict, command: str) -> str:
    """The README block ``bench-attribution``: one table per part that ran."""
    lines = [f"`{command}` on this machine ({platform.machine()}, {torch.get_num_threads()} threads, torch "
             f"{results['torch']}; {datetime.date.today().isoformat()}; `{results['dataset']}`, the default "
             "profile's ConvNet with seeded weights and its batch sizes):"]
    if results.get("captum"):
        lines += ["", "Ours vs the same Captum call (best of the repeats, timed alternately; target ratio ≤ 1.05; "
                  "Shapley sampling and KernelSHAP against Captum's samplers run input by input):", "",
                  "| method | batch | ours (s) | Captum (s) | ratio |", "|---|---|---|---|---|"]
        lines += [f"| {r['method']} | {r['batch']} | {r['ours_s']:.3f} | {r['captum_s']:.3f} | {r['ratio']:.2f} |"
                  for r in results["captum"]]
    if results.get("floor"):
        lines += ["", "Measured time against the floor, the same forward and backward passes replayed plainly "
                  "(target ratio ≤ 1.15):", "",
                  "| method | forward rows / calls | backward rows / calls | floor (s) | measured (s) | ratio |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['method']} | {r['forward_rows']} / {r['forward_calls']} | {r['backward_rows']} / "
                  f"{r['backward_calls']} | {r['floor_s']:.3f} | {r['measured_s']:.3f} | {r['ratio']:.2f} |"
                  for r in results["floor"]]
    if results.get("scaling"):
        sizes = results["scaling"][0]["sizes"]
        same = all(r["sizes"] == sizes for r in results["scaling"])
        lines += ["", "Wall time of `explain` against the number of explained inputs:", ""]
        if same:
            lines += ["| method | " + " | ".join(f"n = {n} (s)" for n in sizes) + " |",
                      "|---|" + "---|" * len(sizes)]
            lines += [f"| {r['method']} | " + " | ".join(f"{t:.2f}" for t in r["seconds"]) + " |"
                      for r in results["scaling"]]
            totals = [sum(r["seconds"][i] for r in results["scaling"]) for i in range(len(sizes))]
            lines.append("| **all** | " + " | ".join(f"**{t:.1f}**" for t in totals) + " |")
        else:
            lines += [f"- {r['method']}: " + ", ".join(f"n = {n}: {t:.2f} s" for n, t in zip(r["sizes"], r["seconds"]))
                      for r in results["scaling"]]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["captum", "floor", "scaling", "all"], default="all")
    parser.add_argument("--dataset", default="shapes", choices=sorted(DATASETS))
    parser.add_argument("--methods", nargs="*", help="method ids (default: every implemented attribution method)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-explain", type=int, help="largest size of the scaling part (default: each method's "
                        "default-profile n_explain); the others are a half and a quarter of it")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--readme", action="store_true", help="write the tables into the README's block "
                        "bench-attribution")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")   # Captum's per-call hook notices would drown the tables
    torch.set_num_threads(args.threads)
    cfg = load_config({})
    info = DATASETS[args.dataset]
    traits = model_traits(default_model(cfg, args.dataset))
    ids = args.methods or [m for m in registry.implemented_ids()
                           if issubclass(registry.get(m), AttributionMethod)
                           and registry.get(m).why_not(info, traits) is None]
    unknown = [m for m in ids if m not in registry.implemented_ids()]
    if unknown:
        parser.error(f"unknown or unimplemented method ids {unknown}; see `nnxai methods --implemented`")
    results = {"dataset": args.dataset, "threads": args.threads, "torch": torch.__version__}
    if args.part in ("captum", "all"):
        print(f"[captum] ours vs plain Captum on {args.dataset} (target ratio <= 1.05)")
        results["captum"] = part_captum(cfg, args.dataset, ids, args.repeat)
    if args.part in ("floor", "all"):
        print(f"[floor] measured vs passes x one pass on {args.dataset} (target ratio <= 1.15)")
        results["floor"] = part_floor(cfg, args.dataset, ids, args.repeat)
    if args.part in ("scaling", "all"):
        print(f"[scaling] explain wall time vs n_explain on {args.dataset}")
        results["scaling"] = part_scaling(cfg, args.dataset, ids, args.n_explain)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.readme:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _readme import write_block

        argv_shown = " ".join(a for a in (argv if argv is not None else sys.argv[1:]) if a != "--readme")
        write_block("bench-attribution", readme_text(results, f"bench_attribution.py {argv_shown}".strip()))


if __name__ == "__main__":
    main()
