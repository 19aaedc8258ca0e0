"""What the attribution methods that learn from the train split share (prediction difference [108] fits a
Gaussian to it, MAPLE [101] a random forest and local linear models): the split they read, the seed of
their per-input randomness, and a cache for what they build from a model, all bound for one explain
context by :meth:`TrainDataAttribution.bound`.

Train split.  :meth:`TrainDataAttribution.explain` (and the ``local_fidelity`` metric) bind
``ctx.train.x``; :meth:`TrainDataAttribution.fit` binds given inputs for direct ``attribute`` calls.  A bare
``attribute`` call on an unfitted method has no train split at hand (the registry-wide property tests make
such calls); it then fits on a fixed *stand-in*: :data:`STAND_IN_SIZE` inputs drawn from N(0, I) with the
seed :data:`STAND_IN_SEED`, whose first two moments are those of the project's standardised tables, and
warns.  ``explain`` never uses the stand-in.

Cache.  What a method builds from a model and the train split (MAPLE's forest, prediction difference's
Gaussians) is kept, while bound, in a cache shared by every instance of the method with the same
parameters and seed that is bound to the same model *with the same weights* (a digest of its parameters
and buffers: the cascading randomisation test re-initialises layers of one copy in place) and the same
train split tensor (:func:`shared_cache`: weak references to both, so the cache goes with them).  The
metrics that re-run a method many times (fragility, continuity, the invariances) bind a fresh instance
per call; without the shared cache each call refitted MAPLE's forest (fragility of MAPLE on ``shapes``:
222 s, 11 fits).

Randomness.  Every random draw for an input comes from :func:`per_input_normals`, i.e. SmoothGrad's
:func:`~nnxai.methods.attribution.gradient.smoothgrad.input_noise` (a generator seeded by the input's bytes and
``noise_seed``, which is ``ctx.seed`` during ``explain`` and 0 otherwise), so that results do not depend
on how the inputs are batched and the global RNG is neither read nor advanced.
"""

from __future__ import annotations

import hashlib
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from nnxai.methods.base import AttributionMethod, ExplainContext

#: Size and seed of the stand-in train split of a bare ``attribute`` call (see the module docstring).
STAND_IN_SIZE = 64
STAND_IN_SEED = 0


#: model -> id(train split tensor) -> (method id, parameters, seed, device) -> that method's cache.
_SHARED: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()


def shared_cache(model: torch.nn.Module, train: torch.Tensor, owner: tuple) -> dict:
    """The cache of the method ``owner`` (hashable: id, parameters, seed) for ``model`` and ``train``; it
    lives as long as both objects do (tensors compare by value, so the split is held by id and dropped by
    a finaliser when it is freed)."""
    per_model = _SHARED.get(model)
    if per_model is None:
        per_model = _SHARED[model] = {}
    entry = per_model.get(id(train))
    if entry is None or entry[0]() is not train:
        entry = per_model[id(train)] = (weakref.ref(train), {})
        weakref.finalize(train, per_model.pop, id(train), None)
    return entry[1].setdefault(owner, {})


def weights_digest(model: torch.nn.Module) -> str:
    """A digest of the values of ``model``'s parameters and buffers (changes when any weight does)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def stand_in_train(input_shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The stand-in train split: ``STAND_IN_SIZE`` seeded draws from N(0, I) of shape ``input_shape``."""
    gen = torch.Generator().manual_seed(STAND_IN_SEED)
    return torch.randn((STAND_IN_SIZE, *input_shape), generator=gen, dtype=dtype).to(device)


class TrainDataAttribution(AttributionMethod):
    """An attribution method that reads the train split (see the module docstring).

    Attributes
    ----------
    noise_seed : int
        Seed mixed into every input's random draws; :meth:`bound` sets it to ``ctx.seed``.
    """

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.noise_seed = 0
        self._train: torch.Tensor | None = None
        self._cache: dict | None = None          # per-model state, kept only while bound to a context

    def fit(self, x_train: torch.Tensor) -> "TrainDataAttribution":
        """Use ``x_train`` (N, ...) as the train split of later :meth:`attribute` calls."""
        x_train = torch.as_tensor(x_train)
        if x_train.dim() < 2 or len(x_train) < 2:
            raise ValueError(f"method {self.spec.id!r}: fit needs at least 2 train inputs (N, ...), got shape "
                             f"{tuple(x_train.shape)}")
        self._train = x_train.detach()
        return self

    def train_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """The bound train split (the stand-in when none is), checked against the shape of ``inputs``."""
        if self._train is None:
            warnings.warn(f"method {self.spec.id!r}: no train split bound (use explain(ctx), bound(ctx) or "
                          f"fit(x_train)); fitting on the stand-in of {STAND_IN_SIZE} N(0, I) draws",
                          RuntimeWarning, stacklevel=3)
            return stand_in_train(tuple(inputs.shape[1:]), inputs.dtype, inputs.device)
        if self._train.shape[1:] != inputs.shape[1:]:
            raise ValueError(f"method {self.spec.id!r}: inputs of shape {tuple(inputs.shape[1:])} do not match the "
                             f"train split's {tuple(self._train.shape[1:])}")
        return self._train.to(device=inputs.device, dtype=inputs.dtype)

    def cached(self, key: Any, build, *sources: Any):
        """``build()``, memoised under ``key`` while bound to a context (recomputed on bare calls).

        ``sources`` are the objects the value is built from (a model, a pool of inputs): they belong to the
        key by identity, held by weak reference, so an object freed and another given its ``id`` cannot
        hit the old value (the shared cache outlives single calls).
        """
        if self._cache is None:
            return build()
        full_key = (key, *map(id, sources))
        entry = self._cache.get(full_key)
        if entry is None or any(ref() is not obj for ref, obj in zip(entry[0], sources)):
            entry = self._cache[full_key] = (tuple(weakref.ref(obj) for obj in sources), build())
        return entry[1]

    @contextmanager
    def bound(self, ctx: ExplainContext) -> Iterator["TrainDataAttribution"]:
        """Bind ``ctx.train.x``, ``ctx.seed`` and the cache shared for ``ctx.model`` and ``ctx.train.x``;
        restore the previous state on exit."""
        saved = self._train, self.noise_seed, self._cache
        owner = (self.spec.id, repr(sorted(self.params.items())), int(ctx.seed), str(ctx.device),
                 weights_digest(ctx.model))
        self._train, self.noise_seed = ctx.train.x.to(ctx.device).detach(), int(ctx.seed)
        self._cache = shared_cache(ctx.model, ctx.train.x, owner)
        try:
            yield self
        finally:
            self._train, self.noise_seed, self._cache = saved

    def _run(self, ctx):
        with self.bound(ctx):
            return super()._run(ctx)
