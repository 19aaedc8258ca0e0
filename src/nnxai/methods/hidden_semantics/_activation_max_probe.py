"""An independent reader of synthesised images: concept probes trained on real inputs.

Activation maximisation gives an image, not a word; the papers [71], [93]-[98] name what it shows by eye.
Here a set of logistic regressions, one per binary column of the data set's concept table (``shapes``:
``shape=circle``, ..., ``texture=stripes``, ``colour=red``, ...), is fitted on the train split's images and
reads each synthesised image: ``p_c`` is the probability that it shows concept ``c``.  The probes never see
the explained network, so their reading is independent of it.

Features (translation invariant, as the concepts are: an object anywhere in the image): per channel, the
log-magnitude spectrum ``log(1 + |FFT(x_c - mean)|)`` averaged over ``bins`` radial x ``bins`` angular
cells of the frequency plane (texture period and orientation, shape outline), and the channel's mean,
standard deviation and mean over the brightest fifth of the pixels (colour of the object).  Each feature is
standardised on the training images; the regression's L2 strength is ``l2`` (scikit-learn's ``C = 1 / l2``).
"""

from __future__ import annotations

import numpy as np

BRIGHT_FRACTION = 0.2    # the object's colour: the mean of the brightest fifth of the pixels


def _bin_index(h: int, w: int, bins: int) -> np.ndarray:
    """The radial x angular cell of each frequency of an ``h x w`` FFT (angles in [0, π): |FFT| of a real image
    is symmetric), ``(h, w)`` ints in ``0 .. bins² - 1``."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    radius = np.sqrt(fx ** 2 + fy ** 2) / np.sqrt(0.5)          # 0 .. 1
    angle = np.mod(np.arctan2(fy, fx), np.pi) / np.pi           # 0 .. 1
    r = np.minimum((radius * bins).astype(int), bins - 1)
    a = np.minimum((angle * bins).astype(int), bins - 1)
    return r * bins + a


def probe_features(x: np.ndarray, bins: int) -> np.ndarray:
    """Features of images ``x`` ``(N, C, H, W)``: ``(N, C · (bins² + 3))``."""
    x = np.asarray(x, dtype=np.float64)
    n, c, h, w = x.shape
    cells = _bin_index(h, w, bins).ravel()
    counts = np.bincount(cells, minlength=bins * bins).astype(np.float64)
    spectrum = np.log1p(np.abs(np.fft.fft2(x - x.mean(axis=(2, 3), keepdims=True))))   # (N, C, H, W)
    flat = spectrum.reshape(n * c, h * w)
    pooled = np.zeros((n * c, bins * bins))
    for k in range(bins * bins):
        if counts[k]:
            pooled[:, k] = flat[:, cells == k].mean(1)
    luminance = x.mean(1).reshape(n, -1)
    top = max(1, int(round(BRIGHT_FRACTION * h * w)))
    bright = np.argsort(-luminance, axis=1, kind="stable")[:, :top]
    pixels = x.reshape(n, c, -1)
    bright_mean = np.take_along_axis(pixels, bright[:, None, :].repeat(c, 1), axis=2).mean(2)
    colour = np.concatenate([pixels.mean(2), pixels.std(2), bright_mean], axis=1)
    return np.concatenate([pooled.reshape(n, c * bins * bins), colour], axis=1)


def binary_columns(table: np.ndarray, names) -> list[int]:
    """Columns of a concept table whose values are all 0 or 1 and which vary (the probes' concepts)."""
    table = np.asarray(table)
    return [j for j in range(table.shape[1])
            if np.isin(table[:, j], (0.0, 1.0)).all() and 0 < table[:, j].sum() < len(table)]


class ConceptProbes:
    """One logistic regression per binary concept column, on :func:`probe_features`."""

    def __init__(self, bins: int, l2: float):
        self.bins, self.l2 = int(bins), float(l2)

    def fit(self, x: np.ndarray, table: np.ndarray, names) -> "ConceptProbes":
        from sklearn.linear_model import LogisticRegression

        self.columns_ = binary_columns(table, names)
        if not self.columns_:
            raise ValueError(f"the concept table ({list(names)}) has no binary concept column to probe")
        self.names_ = [str(names[j]) for j in self.columns_]
        feats = probe_features(x, self.bins)
        self.mean_, self.std_ = feats.mean(0), feats.std(0)
        self.std_[self.std_ == 0] = 1.0
        z = (feats - self.mean_) / self.std_
        self.models_ = []
        for j in self.columns_:
            model = LogisticRegression(C=1.0 / self.l2, max_iter=2000)
            model.fit(z, np.asarray(table)[:, j].astype(int))
            self.models_.append(model)
        self.prior_ = np.asarray(table)[:, self.columns_].mean(0)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(N, concepts)``: the probability that each image shows each concept."""
        z = (probe_features(x, self.bins) - self.mean_) / self.std_
        return np.stack([m.predict_proba(z)[:, 1] for m in self.models_], axis=1)

    def balanced_accuracy(self, x: np.ndarray, table: np.ndarray) -> dict[str, float]:
        """Per concept, the balanced accuracy of ``p > 0.5`` on labelled images (held-out: the test split)."""
        p = self.predict_proba(x) > 0.5
        out = {}
        for k, (name, j) in enumerate(zip(self.names_, self.columns_)):
            truth = np.asarray(table)[:, j] == 1
            rates = [np.mean(p[truth, k]) if truth.any() else np.nan,
                     np.mean(~p[~truth, k]) if (~truth).any() else np.nan]
            out[name] = float(np.nanmean(rates))
        return out


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def concept_readings(probs: np.ndarray, names: list[str], prior: np.ndarray,
                     mask_names: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The concepts an image can be read as showing, with their probabilities and prior rates: every probed
    column, and the complement of a column that is alone in its attribute (``texture=stripes`` ->
    ``texture=solid``) where the data set's masks name it.  Returns ``(names, probs (N, k), prior (k,))``."""
    names, probs, prior = list(names), np.asarray(probs, dtype=np.float64), np.asarray(prior, dtype=np.float64)
    attribute = [n.split("=", 1)[0] for n in names]
    extra_names, extra_cols, extra_prior = [], [], []
    for k, name in enumerate(names):
        if "=" not in name or attribute.count(attribute[k]) != 1:
            continue
        others = [m for m in mask_names if m.startswith(attribute[k] + "=") and m != name]
        if len(others) == 1:
            extra_names.append(others[0])
            extra_cols.append(1.0 - probs[:, k])
            extra_prior.append(1.0 - prior[k])
    if extra_names:
        names += extra_names
        probs = np.concatenate([probs, np.stack(extra_cols, 1)], axis=1)
        prior = np.concatenate([prior, extra_prior])
    return names, probs, prior


def named_concept(probs_row: np.ndarray, prior: np.ndarray, names: list[str]) -> tuple[str, float]:
    """The concept the image shows most above its base rate: ``argmax_c logit(p_c) - logit(prior_c)``, and
    that gain (in log-odds)."""
    gain = logit(probs_row) - logit(prior)
    k = int(np.argmax(gain))
    return names[k], float(gain[k])


def concept_truth(table: np.ndarray, columns, concept: str) -> np.ndarray | None:
    """Whether each row of a concept table (column names ``columns``) has ``concept``: its column, or the
    complement of the one column of its attribute (``texture=solid`` = not ``texture=stripes``); ``None``
    when the table cannot tell."""
    columns = [str(c) for c in columns]
    table = np.asarray(table)
    if concept in columns:
        return table[:, columns.index(concept)] == 1
    attribute = concept.split("=", 1)[0] + "="
    same = [j for j, c in enumerate(columns) if c.startswith(attribute)]
    if "=" in concept and len(same) == 1:
        return table[:, same[0]] == 0
    return None
