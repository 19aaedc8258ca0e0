"""Why `nnxai.models.build_network` lays CNN weights out channels-last: seconds per image of the project's
CNN, forward and forward+backward (an input gradient), at the batch sizes the methods use, in the default
layout and in channels-last, on one thread (one job of ``snakemake --cores 2``).

    .venv/bin/python benchmarks/channels_last.py                 # CPU, 1 thread
    .venv/bin/python benchmarks/channels_last.py --threads 2 --device cuda

Measured on this machine (2 cores, x86_64; torch 2.14.1, oneDNN), shapes-sized inputs 3x32x32: forward about
2.1-2.3x faster, forward+backward 1.2-1.5x (batch 10-100); rerun it to see yours.
"""

from __future__ import annotations

import argparse
import time

import torch

from nnxai.models import ConvNet, build_network


def seconds_per_image(model, x: torch.Tensor, grad: bool, repeats: int) -> float:
    def once():
        if grad:
            xx = x.detach().clone().requires_grad_()
            model(xx)[:, 0].sum().backward()
        else:
            with torch.no_grad():
                model(x)
    for _ in range(2):          # warm-up: oneDNN picks its kernels on the first calls
        once()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / (repeats * len(x))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as one job)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:k] (default cpu)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 10, 25, 100, 500])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fast = build_network("cnn", in_channels=3, n_classes=10).to(args.device).eval()
    plain = ConvNet(3, 10).to(args.device).eval()
    plain.load_state_dict(fast.state_dict())
    print(f"{'pass':<9}{'batch':>6}{'default ms/img':>16}{'channels-last ms/img':>22}{'speed-up':>10}")
    for grad in (False, True):
        for bs in args.batch_sizes:
            x = torch.randn(bs, 3, 32, 32, device=args.device)
            repeats = max(2, 1000 // bs)
            a = seconds_per_image(plain, x, grad, repeats)
            b = seconds_per_image(fast, x, grad, repeats)
            print(f"{'backward' if grad else 'forward':<9}{bs:>6}{a * 1e3:>16.3f}{b * 1e3:>22.3f}{a / b:>9.2f}x")


if __name__ == "__main__":
    main()
