"""Registry, ``prepare`` / ``load_split`` / ``load_dataset`` for every data set kind, and their errors."""

from __future__ import annotations

import dataclasses
import json
import struct
import zipfile

import numpy as np
import pytest
import torch

from nnxai import data as nd
from nnxai.data import digits, shapes, store, tabular
from nnxai.data.torchvision_sets import MissingRawDataError

SMALL = {"train": 64, "val": 24, "test": 24}


def _files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# --- registry -------------------------------------------------------------------------------------

def test_registry_entries():
    assert set(nd.DATASETS) == {"shapes", "digits", "iris", "wine", "breast_cancer", "causal", "planted",
                                "mnist", "fashion_mnist", "cifar10", "monks1", "monks2", "monks3"}
    for name, info in nd.DATASETS.items():
        assert info.name == name and info.kind in ("image", "tabular")
    for name in ("mnist", "fashion_mnist", "cifar10"):
        assert nd.DATASETS[name].profiles == ("paper",)
    assert "mnist" not in nd.dataset_names("smoke") and "shapes" in nd.dataset_names("smoke")
    assert nd.DATASETS["shapes"].has_masks and nd.DATASETS["shapes"].has_concepts
    assert not nd.DATASETS["iris"].has_masks and not nd.DATASETS["iris"].has_concepts
    assert nd.DATASETS["shapes"].profiles is None and nd.DATASETS["shapes"].in_profile("smoke")
    with pytest.raises(dataclasses.FrozenInstanceError):
        nd.DATASETS["iris"].n_classes = 4
    with pytest.raises(ValueError, match="'tiny'"):
        nd.dataset_names("tiny")


def test_shapes_entry_carries_what_consumers_read_from_the_generator():
    info = nd.DATASETS["shapes"]
    assert list(info.concepts) == shapes.CONCEPT_FEATURES and list(info.mask_names) == shapes.MASK_NAMES
    table = shapes.concept_table(shapes.sample_concepts(5, 0))
    images, masks = info.render(table, 1)
    ref_images, ref_masks = shapes.render(shapes.concepts_from_table(table), 1)
    np.testing.assert_array_equal(images, ref_images)
    np.testing.assert_array_equal(masks, ref_masks)
    assert info.renderable(table).all()
    bad = table.copy()
    bad[0, info.concepts.index("size")] = 50.0
    bad[1, info.concepts.index("x")] = -3.0
    assert info.renderable(bad).tolist() == [False, False, True, True, True]
    from nnxai.data import causal

    assert nd.DATASETS["causal"].causal_graph is causal.SCM and nd.DATASETS["iris"].causal_graph is None


class _Toy(nd.Dataset):
    packages = ("scikit-learn",)

    def build(self, sizes, seed, workdir):
        rng = np.random.default_rng(seed)
        splits = {s: {"x": rng.standard_normal((sizes[s], 2)).astype(np.float32),
                      "y": (np.arange(sizes[s]) % 2).astype(np.int64)} for s in nd.SPLITS}
        return splits, {"class_names": ["a", "b"]}


@pytest.fixture
def toy():
    entry = nd.DATASETS.register("toy_registered", _Toy("toy_registered", "tabular", 2, (2,), source="test toy",
                                                        profiles=("smoke",)))
    yield entry
    nd.DATASETS.unregister("toy_registered")


def test_a_dataset_registered_in_one_place_is_prepared_and_loaded(toy, tmp_path):
    assert "toy_registered" in nd.DATASETS and nd.dataset_names("smoke")[-1] == "toy_registered"
    assert "toy_registered" not in nd.dataset_names("paper")
    meta = json.loads((nd.prepare("toy_registered", tmp_path, {"train": 6, "val": 2, "test": 2}, 0)
                       / "meta.json").read_text())
    assert meta["source"] == "test toy" and meta["class_names"] == ["a", "b"]
    assert set(meta["versions"]) == {"nnxai", "numpy", "scikit-learn"}
    assert nd.load_split("toy_registered", "train", tmp_path).x.shape == (6, 2)


def test_a_description_without_build_says_so(tmp_path):
    nd.DATASETS.register("toy_plain", nd.DatasetInfo("toy_plain", "tabular", 2, (2,), False, False, "no build"))
    try:
        with pytest.raises(NotImplementedError, match="'toy_plain'"):
            nd.prepare("toy_plain", tmp_path, {"train": 6, "val": 2, "test": 2}, 0)
    finally:
        nd.DATASETS.unregister("toy_plain")
    assert "toy_plain" not in nd.DATASETS


# --- shapes ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shapes_dirs(tmp_path_factory):
    a, b, c = (tmp_path_factory.mktemp(n) for n in ("a", "b", "c"))
    return (nd.prepare("shapes", a, SMALL, 1), nd.prepare("shapes", b, SMALL, 1),
            nd.prepare("shapes", c, SMALL, 2))


def test_prepare_shapes_is_byte_reproducible(shapes_dirs):
    first, second, other = (_files(d) for d in shapes_dirs)
    assert sorted(first) == ["meta.json", "test.npz", "train.npz", "val.npz"]  # no temp files left
    assert first == second
    assert first["train.npz"] != other["train.npz"]


def test_npz_members_have_fixed_dates_and_meta_hashes_match(shapes_dirs):
    directory = shapes_dirs[0]
    meta = json.loads((directory / "meta.json").read_text())
    for split in nd.SPLITS:
        with zipfile.ZipFile(directory / f"{split}.npz") as archive:
            assert {i.date_time for i in archive.infolist()} == {store.FIXED_DATE}
        assert meta["sha256"][split] == store.sha256_file(directory / f"{split}.npz")
    assert meta["split_sizes"] == SMALL and meta["rule"] == shapes.RULE_TEXT
    assert meta["concept_features"] == shapes.CONCEPT_FEATURES and meta["mask_names"] == shapes.MASK_NAMES


def test_load_split_shapes_round_trip(shapes_dirs):
    workdir = shapes_dirs[0].parents[2]
    part = nd.load_split("shapes", "val", workdir, verify=True)
    ref = shapes.generate(SMALL["val"], [1, nd.SPLITS.index("val")])
    assert part.x.dtype == torch.float32 and part.y.dtype == torch.int64
    np.testing.assert_array_equal(part.x.numpy(), ref["x"])
    np.testing.assert_array_equal(part.y.numpy(), ref["y"])
    np.testing.assert_array_equal(part.concepts, ref["concepts"])
    assert part.masks.dtype == bool
    np.testing.assert_array_equal(part.masks, ref["masks"])
    x, y = nd.load_dataset("shapes", "val", workdir)
    assert torch.equal(x, part.x) and torch.equal(y, part.y)
    # Plain numpy reads the files too.
    with np.load(shapes_dirs[0] / "test.npz") as raw:
        assert raw["x"].dtype == np.float32 and raw["masks"].dtype == np.uint8


def test_verify_detects_a_changed_file(shapes_dirs, tmp_path):
    import shutil

    shutil.copytree(shapes_dirs[0], tmp_path / "data" / "prepared" / "shapes")
    store.write_npz(tmp_path / "data" / "prepared" / "shapes" / "test.npz", {"x": np.zeros(1)})
    with pytest.raises(ValueError, match="sha256"):
        nd.load_split("shapes", "test", tmp_path, verify=True)


# --- digits ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    return nd.prepare("digits", tmp_path_factory.mktemp("digits"), None, 0)


def test_digits_natural_split_is_stratified_shuffled_and_disjoint(digits_dir):
    workdir = digits_dir.parents[2]
    parts = {s: nd.load_split("digits", s, workdir) for s in nd.SPLITS}
    expected = {"train": 400, "val": 50, "test": 50}
    for split, part in parts.items():
        assert part.x.shape[1:] == (1, 28, 28) and part.x.dtype == torch.float32
        assert float(part.x.min()) >= 0.0 and float(part.x.max()) <= 1.0 and float(part.x.max()) > 0.9
        counts = np.bincount(part.y.numpy(), minlength=10)
        assert counts.tolist() == [expected[split]] * 10, split
        assert not np.all(np.diff(part.y.numpy()) >= 0), f"{split} still sorted by label"
    indices = [set(parts[s].index.tolist()) for s in nd.SPLITS]
    assert sum(map(len, indices)) == len(set().union(*indices)) == 5000
    x_all, y_all = digits.load_raw()
    np.testing.assert_array_equal(parts["test"].x.numpy(), x_all[parts["test"].index])
    assert parts["train"].meta["class_names"] == [str(d) for d in range(10)]


def test_digits_subsample_keeps_every_class_and_is_seeded():
    sizes = {"train": 100, "val": 20, "test": 20}
    a, _ = digits.build(sizes, 3)
    b, _ = digits.build(sizes, 3)
    c, _ = digits.build(sizes, 4)
    for split in nd.SPLITS:
        assert set(a[split]["y"].tolist()) == set(range(10)), split
        np.testing.assert_array_equal(a[split]["index"], b[split]["index"])
    assert not np.array_equal(a["train"]["index"], c["train"]["index"])


def test_digits_too_large_request_names_counts():
    with pytest.raises(ValueError, match=r"'digits'.*5600.*5000"):
        nd.prepare("digits", "/nonexistent", {"train": 4600, "val": 500, "test": 500}, 0)


# --- tabular --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, n_features, n_rows", [("iris", 4, 150), ("wine", 13, 178),
                                                      ("breast_cancer", 30, 569)])
def test_tabular_train_standardisation_and_names(tmp_path, name, n_features, n_rows):
    nd.prepare(name, tmp_path, None, 0)
    train, val = nd.load_split(name, "train", tmp_path), nd.load_split(name, "val", tmp_path)
    meta = train.meta
    assert train.x.shape[1] == n_features == len(meta["feature_names"]) == nd.DATASETS[name].input_shape[0]
    assert len(meta["class_names"]) == nd.DATASETS[name].n_classes
    sizes = meta["split_sizes"]
    assert sum(sizes.values()) == n_rows and abs(sizes["test"] - 0.2 * n_rows) <= 1
    np.testing.assert_allclose(train.x.numpy().mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.x.numpy().std(0), 1.0, atol=1e-4)
    assert np.abs(val.x.numpy().mean(0)).max() > 1e-3  # val is not standardised on itself
    raw, _, _, _ = tabular.load_raw(name)
    np.testing.assert_allclose(meta["standardisation"]["mean"], raw[train.index].mean(0))
    for split in nd.SPLITS:  # stratified: every class everywhere
        assert len(set(nd.load_split(name, split, tmp_path).y.tolist())) == nd.DATASETS[name].n_classes


def test_tabular_too_large_request_names_counts():
    with pytest.raises(ValueError, match=r"'breast_cancer'.*600.*569"):
        nd.prepare("breast_cancer", "/nonexistent", {"train": 500, "val": 50, "test": 50}, 0)


# --- torchvision ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, cls", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST"),
                                       ("cifar10", "CIFAR10")])
@pytest.mark.parametrize("make_dir", [False, True])
def test_torchvision_missing_raw_data_says_where_and_how(tmp_path, name, cls, make_dir):
    root = tmp_path / "data" / "raw" / name
    if make_dir:
        root.mkdir(parents=True)
    with pytest.raises(MissingRawDataError) as info:
        nd.prepare(name, tmp_path, None, 0)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(root) in message and f"dvc pull data/raw/{name}" in message
    assert f"torchvision.datasets.{cls}('data/raw/{name}'" in message
    if make_dir:  # the files torchvision would read are listed
        assert "Missing: " + str(root) in message


def _write_idx(path, array, magic):
    with open(path, "wb") as handle:
        handle.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape))
        handle.write(array.astype(np.uint8).tobytes())


def test_torchvision_mnist_from_local_idx_files(tmp_path):
    raw = tmp_path / "data" / "raw" / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 120), ("t10k", 40)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), 0x803)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, 0x801)
    nd.prepare("mnist", tmp_path, {"train": 60, "val": 20, "test": 20}, 0)
    part = nd.load_split("mnist", "train", tmp_path)
    assert part.x.shape == (60, 1, 28, 28) and float(part.x.max()) <= 1.0
    assert np.bincount(part.y.numpy()).tolist() == [6] * 10
    with pytest.raises(ValueError, match=r"'mnist'.*200.*only 120"):  # a partial copy is not enough
        nd.prepare("mnist", tmp_path, {"train": 180, "val": 20, "test": 20}, 0)


# --- argument errors ------------------------------------------------------------------------------

def test_unknown_names_and_bad_arguments_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr(digits, "load_raw", lambda: pytest.fail("expensive work before validation"))
    with pytest.raises(ValueError, match=r"'nope'.*shapes"):
        nd.prepare("nope", tmp_path, SMALL, 0)
    with pytest.raises(ValueError, match=r"'nope'.*digits"):
        nd.load_split("nope", "train", tmp_path)
    with pytest.raises(ValueError, match=r"'training'.*'train', 'val', 'test'"):
        nd.load_split("shapes", "training", tmp_path)
    with pytest.raises(ValueError, match=r"-5"):
        nd.prepare("digits", tmp_path, {"train": -5, "val": 10, "test": 10}, 0)
    with pytest.raises(ValueError, match=r"unknown: \['tset'\]"):
        nd.prepare("digits", tmp_path, {"train": 5, "val": 10, "tset": 10}, 0)
    with pytest.raises(ValueError, match=r"seed.*-1"):
        nd.prepare("digits", tmp_path, SMALL, -1)
    with pytest.raises(ValueError, match="no natural split"):
        nd.prepare("shapes", tmp_path, None, 0)
    assert not (tmp_path / "data").exists()


def test_missing_prepared_files_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        nd.load_dataset("wine", "test", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "data" / "prepared" / "wine" / "test.npz") in message
    assert "snakemake --cores 2 data/prepared/wine/test.npz" in message
    assert "nnxai prepare --dataset wine" in message
