"""``shapes``: seeded synthetic images whose label follows a known logical rule over concepts.

Every image is 3x32x32 (float32 in [0, 1], quantised to multiples of 1/255 like an 8-bit picture) and
shows one object on a background of low-amplitude noise. Each object has

- ``shape`` in {circle, square, triangle}            -- decides the label
- ``texture`` in {solid, stripes}                    -- decides the label (stripes: alternating bands
  of the object colour and a darker version of it, period 4 px, orientation horizontal, vertical or
  one of the two diagonals, random phase)
- ``colour`` in {red, green, blue}                   -- DISTRACTOR (hue and brightness jittered)
- ``size`` (radius in px, continuous)                -- DISTRACTOR
- ``x``, ``y`` (centre in px, continuous)            -- DISTRACTORS

**Label rule** (:data:`RULE_TEXT`): class 1 ("positive") iff ``texture = stripes`` and
``shape != triangle``; class 0 otherwise. The label is drawn first (exactly balanced up to one sample)
and concepts are drawn uniformly among the combinations consistent with it, so the classes are 50/50
while ``stripes`` alone is only 80 % predictive and ``triangle`` is always negative; the distractors are
independent of the label.

Why: the survey asks whether an explanation recovers what the network really uses. Here that is
known. Rule extraction (TREPAN [89], decision-tree distillation) can be scored against the
generating rule, whose inputs are the one-hot :data:`CONCEPT_FEATURES`; TCAV [63] can test the
survey's own "stripes" example against a concept that truly matters (and ``colour`` as one that does
not); Network Dissection [21] needs per-pixel concept masks (:data:`MASK_NAMES`); attribution
localisation (pointing game, relevance mass) needs a mask of the class evidence.

A rule extractor can draw *new* concept vectors constrained by a tree node, convert them with
:func:`concepts_from_table`, and query the network on :func:`render` of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SIZE_PX = 32
SHAPES = ("circle", "square", "triangle")
TEXTURES = ("solid", "stripes")
COLOURS = ("red", "green", "blue")
CLASS_NAMES = ("negative", "positive")
RULE_TEXT = "positive iff texture=stripes and shape!=triangle"

#: Columns of :func:`concept_table`: one-hot concepts, then continuous distractors in pixels.
CONCEPT_FEATURES: list[str] = [
    "shape=circle", "shape=square", "shape=triangle", "texture=stripes",
    "colour=red", "colour=green", "colour=blue", "size", "x", "y",
]
#: Channels of the mask array returned by :func:`render`.
MASK_NAMES: list[str] = [
    "shape=circle", "shape=square", "shape=triangle", "texture=stripes", "texture=solid",
    "colour=red", "colour=green", "colour=blue", "background", "evidence",
]

#: Structured dtype of a concept record (what :func:`sample_concepts` returns and :func:`render` takes).
CONCEPT_DTYPE = np.dtype([("shape", "i1"), ("texture", "i1"), ("colour", "i1"),
                          ("size", "f4"), ("x", "f4"), ("y", "f4")])

RADIUS_RANGE = (5.5, 9.5)
#: Half-extent of every shape, in units of its radius: centres keep this far from the border, the same
#: for all shapes, so that position carries no information about shape (and hence label).
EXTENT = 1.3
STRIPE_PERIOD = 4.0
STRIPE_DARKNESS = 0.4
BACKGROUND_MAX = 0.12
OBJECT_NOISE = 0.03
BASE_RGB = np.array([[0.92, 0.16, 0.14], [0.16, 0.82, 0.22], [0.18, 0.30, 0.95]], dtype=np.float64)

# (texture, shape) combinations allowed for each label; sampled uniformly given the label.
_NEGATIVE = np.array([[0, 0], [0, 1], [0, 2], [1, 2]], dtype=np.int8)
_POSITIVE = np.array([[1, 0], [1, 1]], dtype=np.int8)


def centre_range(size: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive range of centre coordinates (px) at which an object of radius ``size`` fits."""
    ext = EXTENT * np.asarray(size, dtype=np.float64)
    return ext + 0.5, SIZE_PX - 0.5 - ext


def _as_rng(rng: np.random.Generator | int | Sequence[int] | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def sample_concepts(n: int, rng: np.random.Generator | int | Sequence[int] | None) -> np.ndarray:
    """Draw ``n`` concept records: balanced labels, concepts uniform given the label.

    Parameters
    ----------
    n : int
        Number of records (>= 0).
    rng : numpy.random.Generator or seed
        Random source; consumed in a fixed order, so the same stream gives the same records.

    Returns
    -------
    numpy.ndarray
        Structured array of dtype :data:`CONCEPT_DTYPE`, shape ``(n,)``.
    """
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    rng = _as_rng(rng)
    n = int(n)
    labels = rng.permutation(np.arange(n) % 2)
    neg = _NEGATIVE[rng.integers(0, len(_NEGATIVE), n)]
    pos = _POSITIVE[rng.integers(0, len(_POSITIVE), n)]
    combo = np.where(labels[:, None] == 1, pos, neg)
    out = np.empty(n, dtype=CONCEPT_DTYPE)
    out["texture"], out["shape"] = combo[:, 0], combo[:, 1]
    out["colour"] = rng.integers(0, len(COLOURS), n)
    size = rng.uniform(*RADIUS_RANGE, n)
    lo, hi = centre_range(size)
    out["size"] = size
    out["x"] = lo + (hi - lo) * rng.random(n)
    out["y"] = lo + (hi - lo) * rng.random(n)
    return out


def label_from_concepts(concepts: np.ndarray) -> np.ndarray:
    """Apply the generating rule (:data:`RULE_TEXT`); int64 labels.

    Accepts either concept records (:data:`CONCEPT_DTYPE`) or a :func:`concept_table` (its one-hot
    columns are thresholded at 0.5), so it also labels feature vectors drawn by a rule extractor.
    """
    concepts = np.asarray(concepts)
    if concepts.dtype.names:
        stripes, triangle = concepts["texture"] == 1, concepts["shape"] == 2
    else:
        if concepts.ndim != 2 or concepts.shape[1] != len(CONCEPT_FEATURES):
            raise ValueError(f"expected concept records or a (N, {len(CONCEPT_FEATURES)}) concept table, "
                             f"got an array of shape {concepts.shape}")
        col = CONCEPT_FEATURES.index
        stripes = concepts[:, col("texture=stripes")] > 0.5
        triangle = concepts[:, col("shape=triangle")] > 0.5
    return (stripes & ~triangle).astype(np.int64)


def concept_table(concepts: np.ndarray) -> np.ndarray:
    """Encode concept records as a float32 feature table with columns :data:`CONCEPT_FEATURES`."""
    concepts = np.asarray(concepts)
    n = len(concepts)
    table = np.zeros((n, len(CONCEPT_FEATURES)), dtype=np.float32)
    table[np.arange(n), concepts["shape"].astype(np.int64)] = 1.0
    table[:, 3] = concepts["texture"] == 1
    table[np.arange(n), 4 + concepts["colour"].astype(np.int64)] = 1.0
    table[:, 7], table[:, 8], table[:, 9] = concepts["size"], concepts["x"], concepts["y"]
    return table


def concepts_from_table(table: np.ndarray) -> np.ndarray:
    """Inverse of :func:`concept_table` for (possibly synthetic) feature vectors.

    One-hot groups are decoded by argmax (``texture=stripes`` by a 0.5 threshold); ``size`` is clipped
    to :data:`RADIUS_RANGE` and ``x``, ``y`` to the range where the object fits, so every row renders.
    """
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != len(CONCEPT_FEATURES):
        raise ValueError(f"expected a (N, {len(CONCEPT_FEATURES)}) concept table with columns "
                         f"{CONCEPT_FEATURES}, got shape {table.shape}")
    out = np.empty(len(table), dtype=CONCEPT_DTYPE)
    out["shape"] = np.argmax(table[:, 0:3], axis=1)
    out["texture"] = table[:, 3] > 0.5
    out["colour"] = np.argmax(table[:, 4:7], axis=1)
    size = np.clip(table[:, 7], *RADIUS_RANGE)
    lo, hi = centre_range(size)
    out["size"] = size
    out["x"] = np.clip(table[:, 8], lo, hi)
    out["y"] = np.clip(table[:, 9], lo, hi)
    return out


def _silhouettes(concepts: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Boolean object masks (N, H, W); ``px``/``py`` are pixel-centre coordinates (1, H, W)."""
    cx = concepts["x"].astype(np.float64)[:, None, None]
    cy = concepts["y"].astype(np.float64)[:, None, None]
    r = concepts["size"].astype(np.float64)[:, None, None]
    dx, dy = px - cx, py - cy
    circle = dx * dx + dy * dy <= r * r
    half = 0.9 * r  # square of similar area to the circle
    square = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    # Upward equilateral triangle centred on its bounding box (half-width 1.3 r, half-height 1.125 r),
    # so its area (2.9 r^2) is close to the circle's (3.1 r^2) and the square's (3.2 r^2).
    half_h, half_w = 1.125 * r, EXTENT * r
    triangle = (dy <= half_h) & (np.abs(dx) * (2 * half_h) <= half_w * (dy + half_h))
    shape = concepts["shape"][:, None, None]
    return np.where(shape == 0, circle, np.where(shape == 1, square, triangle))


def render(concepts: np.ndarray, rng: np.random.Generator | int | Sequence[int] | None,
           ) -> tuple[np.ndarray, np.ndarray]:
    """Draw images and concept masks for given concept records.

    A pure function of ``(concepts, rng state)``: the nuisance factors that are not concepts (stripe
    orientation and phase, colour jitter, pixel noise) are drawn from ``rng`` in a fixed order.

    Parameters
    ----------
    concepts : numpy.ndarray
        Records of dtype :data:`CONCEPT_DTYPE` (see :func:`sample_concepts`, :func:`concepts_from_table`).
    rng : numpy.random.Generator or seed

    Returns
    -------
    images : numpy.ndarray
        float32 ``(N, 3, 32, 32)`` in [0, 1], multiples of 1/255.
    masks : numpy.ndarray
        bool ``(N, len(MASK_NAMES), 32, 32)``; channel ``k`` is the pixel mask of ``MASK_NAMES[k]``:
        the object silhouette where the concept holds (empty otherwise), ``background`` its
        complement, ``evidence`` the silhouette (both shape and texture decide the class).
    """
    concepts = np.asarray(concepts)
    if concepts.dtype != CONCEPT_DTYPE:
        raise ValueError(f"concepts must be records of dtype {CONCEPT_DTYPE} "
                         f"(see sample_concepts / concepts_from_table), got {concepts.dtype}")
    rng = _as_rng(rng)
    n = len(concepts)
    orientation = rng.integers(0, 4, n)
    phase = rng.uniform(0.0, STRIPE_PERIOD, n)
    brightness = rng.uniform(0.8, 1.0, n)
    jitter = rng.uniform(-0.08, 0.08, (n, 3))
    rgb = np.clip(BASE_RGB[concepts["colour"].astype(np.int64)] * brightness[:, None] + jitter, 0.0, 1.0)
    images = np.empty((n, 3, SIZE_PX, SIZE_PX), dtype=np.float32)
    masks = np.zeros((n, len(MASK_NAMES), SIZE_PX, SIZE_PX), dtype=bool)
    for start in range(0, n, _CHUNK):  # chunks keep the working set in cache; same stream as one draw
        part = slice(start, min(start + _CHUNK, n))
        noise = rng.random((part.stop - part.start, 3, SIZE_PX, SIZE_PX), dtype=np.float32)
        images[part], masks[part] = _render_chunk(concepts[part], orientation[part], phase[part],
                                                  rgb[part], noise)
    return images, masks


_CHUNK = 256


def _render_chunk(concepts, orientation, phase, rgb, noise):
    coords = np.arange(SIZE_PX, dtype=np.float64) + 0.5
    px, py = coords[None, None, :], coords[None, :, None]
    silhouette = _silhouettes(concepts, px, py)

    # Stripes: projection on the stripe normal (horizontal bands vary with y, vertical with x, ...).
    normals = np.array([[0.0, 1.0], [1.0, 0.0], [0.5**0.5, 0.5**0.5], [0.5**0.5, -(0.5**0.5)]])
    nrm = normals[orientation]
    proj = nrm[:, 0, None, None] * px + nrm[:, 1, None, None] * py + phase[:, None, None]
    dark_band = (np.floor(proj / (STRIPE_PERIOD / 2)) % 2 == 1) & (concepts["texture"] == 1)[:, None, None]

    shade = np.where(dark_band, np.float32(STRIPE_DARKNESS), np.float32(1.0))[:, None]  # (N, 1, H, W)
    obj = rgb.astype(np.float32)[:, :, None, None] * shade
    obj += np.float32(OBJECT_NOISE) * (np.float32(2.0) * noise - np.float32(1.0))
    images = np.where(silhouette[:, None], obj, np.float32(BACKGROUND_MAX) * noise)
    np.clip(images, 0.0, 1.0, out=images)
    images *= np.float32(255.0)
    np.round(images, out=images)
    images /= np.float32(255.0)

    masks = np.zeros((len(concepts), len(MASK_NAMES), SIZE_PX, SIZE_PX), dtype=bool)
    for k in range(len(SHAPES)):
        masks[:, k] = silhouette & (concepts["shape"] == k)[:, None, None]
    masks[:, 3] = silhouette & (concepts["texture"] == 1)[:, None, None]
    masks[:, 4] = silhouette & (concepts["texture"] == 0)[:, None, None]
    for k in range(len(COLOURS)):
        masks[:, 5 + k] = silhouette & (concepts["colour"] == k)[:, None, None]
    masks[:, 8] = ~silhouette
    masks[:, 9] = silhouette
    return images, masks


def generate(n: int, seed: int | Sequence[int]) -> dict[str, np.ndarray]:
    """Generate ``n`` labelled images; the same ``(n, seed)`` gives identical bytes.

    Equivalent to ``rng = np.random.default_rng(seed)``; ``c = sample_concepts(n, rng)``;
    ``render(c, rng)``.

    Returns
    -------
    dict
        ``x`` float32 (N, 3, 32, 32), ``y`` int64 (N,), ``concepts`` float32 :func:`concept_table`
        (N, 10), ``masks`` bool (N, len(MASK_NAMES), 32, 32).
    """
    rng = np.random.default_rng(seed)
    records = sample_concepts(n, rng)
    images, masks = render(records, rng)
    return {"x": images, "y": label_from_concepts(records), "concepts": concept_table(records),
            "masks": masks}


def label_of_table(table: np.ndarray) -> np.ndarray:
    """The label rule (:data:`RULE_TEXT`) on concept-table rows: int64 1 iff stripes and not a triangle."""
    concepts = concepts_from_table(table)
    return ((concepts["texture"] == 1) & (concepts["shape"] != SHAPES.index("triangle"))).astype(np.int64)


def rule_space() -> np.ndarray:
    """Concept-table rows covering every combination of the categorical concepts (3 shapes x 2 textures x 3
    colours) at the smallest, middle and largest radius, each at the 9 corner/edge/centre positions where
    it fits: 18 x 27 = 486 rows.  The label depends on shape and texture only, so agreement on these rows
    checks a rule on every categorical combination and across the range of each distractor."""
    rows = []
    for shape in range(len(SHAPES)):
        for texture in range(len(TEXTURES)):
            for colour in range(len(COLOURS)):
                for size in np.linspace(*RADIUS_RANGE, 3):
                    lo, hi = centre_range(size)
                    for x in np.linspace(lo, hi, 3):
                        for y in np.linspace(lo, hi, 3):
                            rows.append((shape, texture, colour, size, x, y))
    return concept_table(np.array(rows, dtype=CONCEPT_DTYPE))

