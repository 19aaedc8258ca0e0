"""Benchmark: rendering and preparing the generated `shapes` data set (speed targets live here, not in tests).

    .venv/bin/python benchmarks/bench_data.py
"""

from __future__ import annotations

import tempfile
import time

from nnxai.data import prepare, shapes


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    concepts = shapes.sample_concepts(2000, 0)
    shapes.render(concepts[:10], 0)
    print(f"render 2,000 images: {best_of(lambda: shapes.render(concepts, 0)):.2f} s (target < 2 s)")
    print(f"generate 10,000 images: {best_of(lambda: shapes.generate(10_000, 0), 1):.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        seconds = best_of(lambda: prepare("shapes", tmp, {"train": 6000, "val": 1000, "test": 1000}, 0), 1)
    print(f"prepare shapes (default profile sizes 6000/1000/1000): {seconds:.2f} s")


if __name__ == "__main__":
    main()
