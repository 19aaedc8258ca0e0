"""Throughput on whatever device this machine has: images per second for training the default ConvNet and
for the gradient family of attribution methods (issue 10, target 7).

    .venv/bin/python benchmarks/bench_device.py                   # device auto (CUDA when present)
    .venv/bin/python benchmarks/bench_device.py --device cpu --batch 128 --repeat 5

The model is the default profile's ConvNet for ``shapes`` (3×32×32 inputs, widths from configs/), with
seeded random weights (throughput does not depend on training); the inputs are seeded noise.  Each figure
is the best of ``--repeat`` timed runs after one warm-up; on CUDA every run ends in a synchronize.
Determinism: ``nnxai.training.runtime.seed_everything`` forces deterministic kernels on CUDA (CPU kernels
are deterministic already), so the numbers here are those of the setting the pipeline runs with.
"""

from __future__ import annotations

import argparse
import time

import torch

from nnxai import registry
from nnxai.config import load_config
from nnxai.data import DATASETS, PreparedSplit
from nnxai.models import build_network
from nnxai.models.networks import network_kwargs
from nnxai.training.runtime import resolve_device, seed_everything, set_threads

GRADIENT_FAMILY = ("gradient", "gradient_x_input", "smoothgrad", "integrated_gradients", "guided_backprop",
                   "deconvnet", "grad_cam")


def _timed(fn, device: torch.device, repeat: int) -> float:
    """Best wall time of ``fn()`` over ``repeat`` runs, after one warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:k]")
    parser.add_argument("--batch", type=int, default=128, help="inputs per batch")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per figure (best is kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    cfg = load_config()
    device = resolve_device(args.device)
    set_threads(args.threads)
    seed_everything(0)
    info = DATASETS["shapes"]
    model = build_network("cnn", **network_kwargs("cnn", cfg["architecture"]["cnn"], "relu", info.input_shape,
                                                  info.n_classes)).to(device)
    x = torch.rand(args.batch, *info.input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    y = torch.randint(0, info.n_classes, (args.batch,), generator=torch.Generator().manual_seed(1)).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train_step():
        model.train()
        optimiser.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()

    rows = [("training (forward, backward, Adam step)", args.batch / _timed(train_step, device, args.repeat))]
    model.eval()
    params = cfg["method_params"]
    for method_id in GRADIENT_FAMILY:
        method_params = {**params[method_id], "batch_size": args.batch, "n_explain": args.batch}
        method = registry.get(method_id)(**method_params)
        if method.learns():   # e.g. integrated gradients' mean reference: fitted on the benchmark's inputs
            method.fit(model, PreparedSplit(x=x.cpu(), y=y.cpu()), seed=0, info=info)
        rows.append((method_id, args.batch / _timed(lambda: method(model, x, y), device, args.repeat)))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}); batch {args.batch}; best of {args.repeat}; torch {torch.__version__}\n")
    print("| work | images / s |\n|---|---|")
    for label, rate in rows:
        print(f"| {label} | {rate:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
