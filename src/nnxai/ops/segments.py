"""Multi-resolution superpixels and the resized segment patches of ACE (Ghorbani et al. 2019, survey ref.
[115], Sec. 3 "Concept-based explanation via automatic concept discovery", step 1, and the authors'
reference code ``ace.py``: ``_return_superpixels`` / ``_extract_patch``).

* **Segmentation**: SLIC (scikit-image) at every ``n_segments`` of ``resolutions``.  RGB images are
  segmented in CIE-Lab (scikit-image's default); other images are scaled to 0..100, the range of Lab's
  lightness, so that one ``compactness`` means the same for both.  Images are clipped to [0, 1] first (the
  project's image sets are stored in [0, 1]).  SLIC is deterministic.
* **Filtering** (reference code): a segment must cover more than 0.1 % of the image, and one whose
  Jaccard overlap with an earlier kept segment of the same image exceeds 0.5 (the same region found at
  another resolution) is dropped.
* **Patch**: the pixels outside the segment are set to the train split's per-channel mean ("padded with
  the average value", 117.5/255 grey in the reference code), the segment's bounding box is cropped and
  resized to the input size, bilinearly (the reference code resizes with PIL's bicubic filter; bilinear
  stays in the data range).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: Reference-code thresholds: smallest segment (fraction of the image) and largest Jaccard overlap with
#: a segment kept already.
MIN_SEGMENT_FRACTION = 0.001
MAX_JACCARD = 0.5
#: Lab lightness runs over 0..100; grey images are scaled to it before SLIC.
LAB_RANGE = 100.0


@dataclass(frozen=True)
class Segment:
    image: int          # position of the image in the split
    resolution: int     # the ``n_segments`` asked of SLIC
    label: int          # SLIC label within that segmentation
    mask: np.ndarray    # bool (H, W)

    def describe(self) -> dict:
        """JSON-able description: image, resolution, label, bounding box, area and pixel runs."""
        rows, cols = np.nonzero(self.mask)
        return {"image": int(self.image), "resolution": int(self.resolution), "segment": int(self.label),
                "bbox": [int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1],
                "area": int(self.mask.sum()), "runs": encode_runs(self.mask)}


def encode_runs(mask: np.ndarray) -> str:
    """Run-length code ``"start:length start:length ..."`` of the True pixels of ``mask`` in row-major
    order (a string keeps the indented JSON records compact)."""
    flat = np.r_[False, np.asarray(mask, dtype=bool).ravel(), False].astype(np.int8)
    edges = np.flatnonzero(np.diff(flat))
    return " ".join(f"{s}:{e - s}" for s, e in zip(edges[::2], edges[1::2]))


def decode_runs(runs: str, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`encode_runs`: a bool mask of ``shape``."""
    flat = np.zeros(int(np.prod(shape)), dtype=bool)
    for run in runs.split():
        start, length = (int(v) for v in run.split(":"))
        flat[start:start + length] = True
    return flat.reshape(shape)


def slic_labels(image: np.ndarray, n_segments: int, compactness: float) -> np.ndarray:
    """SLIC superpixel labels ``(H, W)`` of one ``(C, H, W)`` image in [0, 1]."""
    from skimage.segmentation import slic

    image = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if image.shape[0] == 3:
        return slic(image.transpose(1, 2, 0), n_segments=n_segments, compactness=compactness, start_label=0,
                    channel_axis=-1)
    if image.shape[0] == 1:
        return slic(LAB_RANGE * image[0], n_segments=n_segments, compactness=compactness, start_label=0,
                    channel_axis=None)
    return slic(LAB_RANGE * image.transpose(1, 2, 0), n_segments=n_segments, compactness=compactness,
                start_label=0, channel_axis=-1, convert2lab=False)


def image_segments(image: np.ndarray, position: int, resolutions, compactness: float) -> list[Segment]:
    """The kept segments of one image over all resolutions, in resolution then label order."""
    kept: list[Segment] = []
    for n_segments in resolutions:
        labels = slic_labels(image, n_segments, compactness)
        for label in np.unique(labels):
            mask = labels == label
            if mask.mean() <= MIN_SEGMENT_FRACTION:
                continue
            if any(np.logical_and(mask, s.mask).sum() / np.logical_or(mask, s.mask).sum() > MAX_JACCARD
                   for s in kept):
                continue
            kept.append(Segment(position, int(n_segments), int(label), mask))
    return kept


def segment_patch(image: torch.Tensor, mask: np.ndarray, fill: torch.Tensor) -> torch.Tensor:
    """The segment on a ``fill`` background, its bounding box resized to the image size ``(C, H, W)``."""
    m = torch.as_tensor(mask, dtype=torch.bool)
    filled = torch.where(m, image, fill.reshape(-1, 1, 1).to(image.dtype))
    rows, cols = np.nonzero(mask)
    crop = filled[:, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    return F.interpolate(crop[None], size=tuple(image.shape[1:]), mode="bilinear", align_corners=False)[0]


def segments_and_patches(images: torch.Tensor, positions: np.ndarray, resolutions, compactness: float,
                         fill: torch.Tensor) -> tuple[list[Segment], torch.Tensor]:
    """Segments of every image (``positions``: their indices in the split) and their patches ``(S, C, H, W)``."""
    segments: list[Segment] = []
    for image, position in zip(images, positions):
        segments.extend(image_segments(image.numpy(), int(position), resolutions, compactness))
    lookup = {int(p): i for i, p in enumerate(positions)}
    patches = [segment_patch(images[lookup[s.image]], s.mask, fill) for s in segments]
    return segments, (torch.stack(patches) if patches else images[:0])
