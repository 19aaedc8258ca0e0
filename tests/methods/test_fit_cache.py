"""Fitted states shared by the jobs of a run (nnxai.methods.fit_cache): MAPLE's forest is built once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnxai.methods import fit_cache
from nnxai.methods.attribution.perturbation import maple as maple_module
from nnxai.methods.attribution.perturbation.maple import Maple

from toy_models import tiny_mlp, toy_context


@pytest.fixture
def cache(tmp_path):
    fit_cache.use(tmp_path)
    yield tmp_path / fit_cache.FOLDER
    fit_cache.use(None)


def test_digest_tells_contents_apart():
    a = torch.arange(6.0)
    assert fit_cache.digest(a, {"k": 1}) == fit_cache.digest(a.clone(), {"k": 1})
    assert fit_cache.digest(a, {"k": 1}) != fit_cache.digest(a, {"k": 2})
    assert fit_cache.digest(a) != fit_cache.digest(a.reshape(2, 3))          # shapes count
    assert fit_cache.digest(tiny_mlp(0)) != fit_cache.digest(tiny_mlp(1))    # weights count


def test_maple_forest_is_fitted_once_and_gives_the_same_maps(cache, monkeypatch):
    model = tiny_mlp(0).double()
    gen = torch.Generator().manual_seed(0)
    ctx = toy_context(model, torch.randn(80, 6, generator=gen, dtype=torch.float64),
                      torch.randn(5, 6, generator=gen, dtype=torch.float64), n_classes=3)
    params = dict(n_explain=5, batch_size=5, patch=1, n_trees=5, min_samples_leaf=3, max_features=0.5, alpha=0.001)
    first = Maple(**params).explain(ctx)
    assert len(list(cache.glob("*.pkl"))) == 1
    from sklearn.ensemble import RandomForestRegressor

    monkeypatch.setattr(RandomForestRegressor, "fit", lambda *a, **k: pytest.fail("refitted"))
    second = Maple(**params).explain(ctx)                    # another job of the cell: read back
    np.testing.assert_array_equal(first.attributions, second.attributions)
    other = {**params, "n_trees": 6}
    with pytest.raises(pytest.fail.Exception, match="refitted"):
        Maple(**other).explain(ctx)                          # other parameters: their own forest


def test_an_unreadable_entry_is_rebuilt(cache):
    calls = []
    key = fit_cache.digest("x")
    assert fit_cache.cached(key, lambda: calls.append(1) or 7) == 7
    (cache / f"{key}.pkl").write_bytes(b"not a pickle")
    assert fit_cache.cached(key, lambda: calls.append(1) or 7) == 7 and len(calls) == 2
    assert fit_cache.cached(key, lambda: calls.append(1) or 8) == 7 and len(calls) == 2


def test_without_a_run_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit_cache.use(None)
    assert fit_cache.cached(fit_cache.digest("y"), lambda: 3) == 3
    assert not any(tmp_path.iterdir())
    assert maple_module.Forest is not None
