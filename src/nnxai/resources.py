"""Memory estimates of what a config asks for, checked before any job (``nnxai.config.validate``).

The estimates are deliberately simple upper bounds of the dominant terms, so that a size typed with a few
zeros too many is refused with the key and the memory it would need, instead of a job that swaps or is
killed an hour into the run:

- a prepared data set: every split's inputs as float32 (plus the masks of a set that has them, one byte
  per mask pixel), held at once by the prepare job;
- training: the weights with their gradient and two Adam moments (4 copies, float32) and one batch's
  activations of every layer, twice (the forward values and their gradients).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

FLOAT_BYTES = 4
#: Share of the machine's memory one job may plan to use (the other job of ``--cores 2``, the OS).
JOB_SHARE = 0.5


def machine_memory() -> int:
    """Physical memory of this machine in bytes (``NNXAI_MEMORY_BYTES`` overrides it, e.g. a cluster node's)."""
    given = os.environ.get("NNXAI_MEMORY_BYTES")
    if given:
        return int(given)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def job_budget() -> int:
    """Bytes one job may plan to use: :data:`JOB_SHARE` of :func:`machine_memory`."""
    return int(JOB_SHARE * machine_memory())


def gib(n_bytes: float) -> str:
    """``n_bytes`` in readable units (``1.5 GiB``, ``12 TiB``)."""
    for unit, scale in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes / 2 ** 10:.3g} KiB"


def dataset_bytes(n_inputs: int, input_shape: Sequence[int], n_masks: int = 0) -> int:
    """Inputs (float32) and masks (one byte per pixel and mask) of ``n_inputs`` samples."""
    pixels = math.prod(input_shape[1:]) if len(input_shape) == 3 else 0
    return n_inputs * (math.prod(input_shape) * FLOAT_BYTES + n_masks * pixels)


def cnn_training_bytes(input_shape: Sequence[int], widths: Sequence[int], n_classes: int, batch_size: int) -> int:
    """The ConvNet of :mod:`nnxai.models.networks` (3×3 convolutions; pooling halves the side after the first
    two): weights ×4 and one batch's activations ×2."""
    channels, height, width = input_shape
    weights, activations, side_h, side_w, c_in = 0, 0, height, width, channels
    for k, c_out in enumerate(widths):
        weights += 9 * c_in * c_out + c_out
        activations += 2 * c_out * side_h * side_w        # conv output and its activation
        if k < len(widths) - 1:
            side_h, side_w = max(1, side_h // 2), max(1, side_w // 2)
        c_in = c_out
    weights += c_in * n_classes + n_classes
    return FLOAT_BYTES * (4 * weights + 2 * batch_size * (activations + math.prod(input_shape)))


def mlp_training_bytes(n_features: int, hidden: Sequence[int], n_classes: int, batch_size: int) -> int:
    """The MLP of :mod:`nnxai.models.networks`: weights ×4 and one batch's activations ×2."""
    sizes = [n_features, *hidden, n_classes]
    weights = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    activations = sum(sizes) + sum(hidden)
    return FLOAT_BYTES * (4 * weights + 2 * batch_size * activations)
