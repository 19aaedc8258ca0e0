"""Integrity of every file a stage reads: prepared splits, checkpoints and explanation records carry the
sha256 of their payload and are refused, with the file named and the fix said, when they are missing,
truncated, of the wrong kind, changed by one byte, or hold values their type forbids (issue 9).

Checkpoints also: architecture fields bounded before anything is built, and bytes independent of the order
in which the record was put together.
"""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from nnxai import data as nd
from nnxai.data import store
from nnxai.explanations import AttributionMap, Examples, RuleSet, load_explanation
from nnxai.explanations.checks import SplitBounds
from nnxai.io import BadFileError, MissingFileError
from nnxai.models import MLP, CheckpointError, ConvNet, load_model, save_checkpoint
from nnxai.models.checkpoint import payload_digest

SIZES = {"train": 40, "val": 10, "test": 10}
FLIPS = 40                       # seeded byte positions flipped per file


def _flip(path: Path, offset: int) -> bytes:
    original = path.read_bytes()
    data = bytearray(original)
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    return original


def _offsets(path: Path, seed: int) -> list[int]:
    return sorted(random.Random(seed).sample(range(path.stat().st_size), FLIPS))


# --- prepared splits -----------------------------------------------------------------------------------

@pytest.fixture
def prepared(tmp_path) -> Path:
    nd.prepare("iris", tmp_path, SIZES, 0)
    return tmp_path


def _resign(workdir: Path, split: str, arrays: dict) -> Path:
    """Rewrite a split and record its new sha256 in meta.json: only the content checks can refuse it."""
    directory = nd.prepared_dir("iris", workdir)
    meta = json.loads((directory / "meta.json").read_text())
    meta["sha256"][split] = store.write_npz(directory / f"{split}.npz", arrays)
    (directory / "meta.json").write_text(json.dumps(meta))
    return directory / f"{split}.npz"


def _split_arrays(workdir: Path, split: str) -> dict:
    return store.read_npz(nd.prepared_dir("iris", workdir) / f"{split}.npz")


def test_the_sha256_check_is_on_by_default(prepared):
    """It used to be off (``verify=False``): a changed but well-formed split loaded silently."""
    arrays = _split_arrays(prepared, "test")
    arrays["x"] = arrays["x"] + np.float32(1.0)
    store.write_npz(nd.prepared_dir("iris", prepared) / "test.npz", arrays)
    with pytest.raises(BadFileError, match=r"test\.npz: does not match the sha256 recorded in .*meta\.json.*"
                                           r"nnxai prepare --dataset iris"):
        nd.load_split("iris", "test", prepared)


@pytest.mark.parametrize("split", list(nd.SPLITS))
def test_every_flipped_byte_of_a_split_is_refused(prepared, split, probes):
    path = nd.prepared_dir("iris", prepared) / f"{split}.npz"
    for offset in _offsets(path, seed=nd.SPLITS.index(split)):
        original = _flip(path, offset)
        with pytest.raises(BadFileError, match=f"{split}.npz"):
            nd.load_split("iris", split, prepared)
        path.write_bytes(original)
        probes.record("prepared splits: one byte flipped", "refused, file named")
    assert nd.load_split("iris", split, prepared).x.shape == (SIZES[split], 4)


def _zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _npy_header_claiming(shape) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + b"\0" * 16


SPLIT_DAMAGE = {
    # name: (new bytes of test.npz, or None to delete it; words of the message)
    "missing": (None, "does not exist"),
    "empty": (b"", "empty"),
    "truncated": ("half", "truncated"),
    "JSON where an npz belongs": (b'{"x": [1, 2]}', "JSON"),
    "text": (b"garbage", "not a zip archive"),
    "a zip that is not an npz": (_zip_of({"hello.txt": b"hi"}), "not a .npy array"),
    "an npz member that is not an array": (_zip_of({"x.npy": b"garbage"}), "not a numpy array"),
    "a header claiming 10^12 values": (_zip_of({"x.npy": _npy_header_claiming((10 ** 12,))}), "claims shape"),
}


@pytest.mark.parametrize("name", list(SPLIT_DAMAGE))
def test_a_damaged_split_is_named(prepared, name, probes):
    content, words = SPLIT_DAMAGE[name]
    path = nd.prepared_dir("iris", prepared) / "test.npz"
    if content is None:
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2] if content == "half" else content)
    with pytest.raises(BadFileError) as info:
        nd.load_split("iris", "test", prepared)
    message = str(info.value)
    assert str(path) in message and words in message and "nnxai prepare --dataset iris" in message
    assert isinstance(info.value, MissingFileError) == (content is None)
    probes.record("prepared splits: missing, truncated or of another kind", "refused, file named")


SPLIT_VALUES = {
    # name: (change the arrays, words of the message)
    "NaN input": (lambda a: a["x"].__setitem__((3, 1), np.nan), "NaN"),
    "infinite input": (lambda a: a["x"].__setitem__((0, 0), np.inf), "NaN or infinite"),
    "label above the classes": (lambda a: a["y"].__setitem__(2, 7), "label 7"),
    "negative label": (lambda a: a["y"].__setitem__(0, -1), "label -1"),
    "labels of another length": (lambda a: a.__setitem__("y", a["y"][:-1]), "one label per input"),
    "inputs of another shape": (lambda a: a.__setitem__("x", a["x"][:, :3].copy()), "(3,)"),
    "float64 inputs": (lambda a: a.__setitem__("x", a["x"].astype(np.float64)), "float32"),
    "float labels": (lambda a: a.__setitem__("y", a["y"].astype(np.float32)), "int64"),
}


@pytest.mark.parametrize("name", list(SPLIT_VALUES))
def test_bad_values_in_a_correctly_signed_split_are_refused(prepared, name, probes):
    change, words = SPLIT_VALUES[name]
    arrays = _split_arrays(prepared, "val")
    change(arrays)
    path = _resign(prepared, "val", arrays)
    with pytest.raises(BadFileError) as info:
        nd.load_split("iris", "val", prepared)
    assert str(path) in str(info.value) and words in str(info.value)
    probes.record("prepared splits: NaN, out-of-range labels, wrong shapes (correct sha256)", "refused, file named")


def test_a_meta_json_that_is_wrong_is_named(prepared):
    meta_path = nd.prepared_dir("iris", prepared) / "meta.json"
    good = meta_path.read_text()
    for content, words in ((good[:40], "not valid JSON"), ("[1, 2]", "JSON object"),
                           (good.replace('"name": "iris"', '"name": "wine"'), "'wine'"),
                           (good.replace('"n_classes": 3', '"n_classes": 0'), "n_classes"),
                           (_zip_of({"a.npy": b""}).decode("latin-1"), "not text")):
        meta_path.write_bytes(content.encode("latin-1"))
        with pytest.raises(BadFileError) as info:
            nd.load_split("iris", "train", prepared)
        assert str(meta_path) in str(info.value) and words in str(info.value), content[:40]


def test_prepare_removes_an_old_meta_json_first(prepared, monkeypatch):
    """meta.json means "complete": an interrupted re-prepare must not leave the old one beside new splits."""
    directory = nd.prepared_dir("iris", prepared)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "write_npz", killed)
    monkeypatch.setattr(nd, "write_npz", killed)
    with pytest.raises(KeyboardInterrupt):
        nd.prepare("iris", prepared, {"train": 30, "val": 10, "test": 10}, 0)
    assert not (directory / "meta.json").exists()


# --- checkpoints ---------------------------------------------------------------------------------------

MLP_RECORD = {"architecture": "mlp", "arch_kwargs": {"n_features": 4, "n_classes": 3, "hidden": [8, 6],
                                                     "activation": "relu"}, "seed": 0}


def _mlp() -> MLP:
    torch.manual_seed(0)
    return MLP(4, 3, hidden=[8, 6])


@pytest.mark.parametrize("sidecar", [True, False])
def test_every_flipped_byte_of_a_checkpoint_is_refused_or_harmless(tmp_path, sidecar, probes):
    """With its ``.json`` record (as the pipeline writes it) every flip is refused by the file's sha256;
    a bare ``.pt`` refuses every flip that changes its weights or record (payload_sha256)."""
    path = save_checkpoint(tmp_path / "m.pt", _mlp(), MLP_RECORD, sidecar={"seed": 0} if sidecar else None)
    reference = load_model(path)
    x = torch.randn(5, 4)
    refused = 0
    kind = "checkpoints with their .json record: one byte flipped" if sidecar else "bare .pt: one byte flipped"
    for offset in _offsets(path, seed=1):
        original = _flip(path, offset)
        try:
            model = load_model(path)
        except CheckpointError as err:
            assert str(path) in str(err)
            refused += 1
            probes.record(kind, "refused, file named")
        else:
            assert not sidecar, f"flip at {offset} loaded despite the sidecar's sha256"
            assert torch.equal(model(x), reference(x)) and model.checkpoint == reference.checkpoint
            probes.record(kind, "loaded the very same weights and record (zip bookkeeping)")
        path.write_bytes(original)
    assert refused == FLIPS if sidecar else refused > FLIPS // 2


def test_the_sidecar_names_the_checkpoint_and_is_required_by_the_pipeline(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _mlp(), MLP_RECORD, sidecar={"seed": 0})
    side = path.with_suffix(".json")
    assert len(json.loads(side.read_text())["sha256"]) == 64
    side.write_text(json.dumps({"seed": 0}))
    with pytest.raises(CheckpointError, match=r"m\.json carries no valid 'sha256'"):
        load_model(path)
    side.unlink()
    assert load_model(path).checkpoint["seed"] == 0                        # a bare .pt: its own digest
    with pytest.raises(CheckpointError, match=r"m\.json is missing"):
        load_model(path, require_sidecar=True)


def test_checkpoint_bytes_do_not_depend_on_key_order(tmp_path):
    """A CLI call (dict from the profile) and a Snakemake job (dict from sorted JSON) save the same bytes."""
    config = {"training": {"lr": 0.01, "epochs": 2}, "dataset": "iris", "threads": 1}
    shuffled = {"threads": 1, "dataset": "iris", "training": {"epochs": 2, "lr": 0.01}}
    a = save_checkpoint(tmp_path / "a.pt", _mlp(), {**MLP_RECORD, "config": config})
    b = save_checkpoint(tmp_path / "b.pt", _mlp(), {"config": shuffled, "seed": 0, "arch_kwargs": {
        "activation": "relu", "hidden": (8, 6), "n_classes": 3, "n_features": 4}, "architecture": "mlp"})
    assert a.read_bytes() == b.read_bytes()


def _save_raw(path: Path, payload: dict, sign: bool = True) -> Path:
    """A crafted checkpoint: any record, optionally with a valid payload digest."""
    if sign:
        payload = {**payload, "payload_sha256": payload_digest(
            {k: v for k, v in payload.items() if k != "state_dict"}, payload["state_dict"])}
    torch.save(payload, path)
    return path


CRAFTED = {
    # name: (architecture, arch_kwargs, words)
    "widths of a million": ("cnn", {"in_channels": 3, "n_classes": 2, "widths": [10 ** 6] * 3}, "1000000"),
    "too many parameters": ("cnn", {"in_channels": 3, "n_classes": 2, "widths": [4096] * 3}, "parameters"),
    "hidden of a million": ("mlp", {"n_features": 4, "n_classes": 2, "hidden": [10 ** 6]}, "1000000"),
    "a thousand hidden layers": ("mlp", {"n_features": 4, "n_classes": 2, "hidden": [4] * 1000}, "layer widths"),
    "zero classes": ("mlp", {"n_features": 4, "n_classes": 0, "hidden": [4]}, "n_classes"),
    "negative input channels": ("cnn", {"in_channels": -1, "n_classes": 2}, "in_channels"),
    "width not an integer": ("cnn", {"in_channels": 3, "n_classes": 2, "widths": [4, "8", 8]}, "widths[1]"),
    "unknown argument": ("mlp", {"n_features": 4, "n_classes": 2, "dropout": 0.5}, "dropout"),
    "unknown activation": ("mlp", {"n_features": 4, "n_classes": 2, "activation": "tanh"}, "'tanh'"),
    "unknown architecture": ("transformer", {"n_classes": 2}, "'transformer'"),
}


@pytest.mark.parametrize("name", list(CRAFTED))
def test_crafted_architectures_are_refused_before_anything_is_built(tmp_path, monkeypatch, name, probes):
    architecture, kwargs, words = CRAFTED[name]

    def no_allocation(*args, **kwargs):
        pytest.fail("a network was built from an unchecked checkpoint")

    monkeypatch.setattr(ConvNet, "__init__", no_allocation)
    monkeypatch.setattr(MLP, "__init__", no_allocation)
    path = _save_raw(tmp_path / "crafted.pt", {"architecture": architecture, "arch_kwargs": kwargs,
                                               "state_dict": {}})
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert str(path) in str(info.value) and "architecture refused" in str(info.value) and words in str(info.value)
    probes.record("checkpoints: crafted architecture fields", "refused before any tensor is allocated")


def test_bad_weights_and_unsigned_checkpoints_are_refused(tmp_path):
    state = {k: v.clone() for k, v in _mlp().state_dict().items()}
    base = {"architecture": "mlp", "arch_kwargs": MLP_RECORD["arch_kwargs"]}
    nan_state = {**state, "classifier.bias": torch.tensor([0.0, float("nan"), 0.0])}
    cases = [
        (_save_raw(tmp_path / "nan.pt", {**base, "state_dict": nan_state}), "NaN"),
        (_save_raw(tmp_path / "f64.pt", {**base, "state_dict": {k: v.double() for k, v in state.items()}}), "float64"),
        (_save_raw(tmp_path / "shape.pt", {**base, "state_dict": {**state, "classifier.bias": torch.zeros(5)}}),
         "do not fit"),
        (_save_raw(tmp_path / "unsigned.pt", {**base, "state_dict": state}, sign=False), "payload_sha256"),
        (_edited(_save_raw(tmp_path / "edited.pt", {**base, "state_dict": state, "seed": 1})), "payload_sha256"),
    ]
    for path, words in cases:
        with pytest.raises(CheckpointError) as info:
            load_model(path)
        assert str(path) in str(info.value) and words in str(info.value), path.name


def _edited(path: Path) -> Path:
    """The checkpoint with its seed changed by hand, its digest left as it was."""
    payload = torch.load(path, weights_only=True)
    payload["seed"] = 2
    torch.save(payload, path)
    return path


def test_a_checkpoint_of_another_kind_is_named(tmp_path):
    cases = {"json.pt": b'{"state_dict": {}}', "empty.pt": b"", "zip.pt": _zip_of({"a.txt": b"x"})}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match="not a readable checkpoint") as info:
            load_model(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)


# --- explanation records -------------------------------------------------------------------------------

BOUNDS = SplitBounds(n_test=10, n_train=40, n_classes=3)


def _attribution(tmp_path: Path, **changes) -> Path:
    arrays = {"attributions": np.linspace(-1, 1, 24, dtype=np.float32).reshape(3, 8), "indices": [1, 4, 9],
              "targets": [0, 2, 1], **changes}
    return AttributionMap(arrays["attributions"], arrays["indices"], arrays["targets"], {"method": "x"}).save(
        tmp_path / "data/explanations/iris/baseline/gradient.npz")


def _examples(tmp_path: Path, **changes) -> Path:
    fields = {"indices": [1, 3], "targets": [0, 2], "examples": [[5, 7], [39, 0]], "scores": [[0.5, 0.1], [0.2, 0.0]],
              **changes}
    return Examples(**fields, meta={"method": "representer_points"}).save(
        tmp_path / "data/explanations/iris/baseline/representer_points.json")


def _rules(tmp_path: Path, prediction: int = 1) -> Path:
    rule = {"conditions": [{"m": 1, "literals": [{"feature": 2, "op": ">", "threshold": 0.5}]}],
            "prediction": prediction, "support": 3}
    return RuleSet([rule], 0, ["a", "b", "c", "d"], ["x", "y", "z"], "inputs", meta={"method": "trepan"}).save(
        tmp_path / "data/explanations/iris/baseline/trepan.json")


def test_records_carry_their_digest_and_load_without_it(tmp_path):
    path = _attribution(tmp_path)
    with np.load(path) as z:
        assert len(json.loads(str(z["meta"]))["sha256"]) == 64
    assert load_explanation(path, BOUNDS).meta == {"method": "x"}
    assert path.read_bytes() == _attribution(tmp_path).read_bytes()             # fixed member dates
    json_path = _examples(tmp_path)
    assert len(json.loads(json_path.read_text())["meta"]["sha256"]) == 64
    assert load_explanation(json_path, BOUNDS).meta == {"method": "representer_points"}


def _same(a, b) -> bool:
    if isinstance(a, AttributionMap):
        return a.meta == b.meta and all(np.array_equal(getattr(a, k), getattr(b, k))
                                        for k in ("attributions", "indices", "targets"))
    return a == b


@pytest.mark.parametrize("make", [_attribution, _examples, _rules])
def test_every_flipped_byte_of_a_record_is_refused_or_harmless(tmp_path, make, probes):
    """A record's sha256 covers its payload: a flip that changes what is loaded is refused; one in the
    zip's bookkeeping (a member's date) or in JSON whitespace loads the very same record."""
    path = make(tmp_path)
    reference = load_explanation(path, BOUNDS)
    refused = 0
    for offset in _offsets(path, seed=2):
        original = _flip(path, offset)
        try:
            record = load_explanation(path, BOUNDS)
        except BadFileError as err:
            assert str(path) in str(err) and "nnxai explain --dataset iris --model baseline" in str(err)
            refused += 1
            probes.record("explanation records: one byte flipped", "refused, file named")
        else:
            assert _same(record, reference), f"flip at {offset} changed the record and was not refused"
            probes.record("explanation records: one byte flipped",
                          "loaded the very same record (zip bookkeeping, JSON whitespace)")
        path.write_bytes(original)
    assert refused >= FLIPS // 2


RECORD_DAMAGE = {
    # name: (make the record, damage, words of the message)
    "attribution truncated": (_attribution, lambda p: p.write_bytes(p.read_bytes()[:100]), "truncated"),
    "attribution is JSON": (_attribution, lambda p: p.write_text('{"kind": "rule"}'), "JSON"),
    "attribution missing": (_attribution, lambda p: p.unlink(), "does not exist"),
    "attribution NaN": (lambda t: _attribution(t, attributions=np.full((3, 8), np.nan, np.float32)), None, "NaN"),
    "attribution index outside the test split": (lambda t: _attribution(t, indices=[1, 4, 10]), None, "holds 10"),
    "attribution negative index": (lambda t: _attribution(t, indices=[-1, 4, 9]), None, "holds -1"),
    "attribution target outside the classes": (lambda t: _attribution(t, targets=[0, 3, 1]), None, "classes"),
    "attribution without digest": (_attribution, lambda p: _strip_npz_digest(p), "no valid 'sha256'"),
    "examples truncated": (_examples, lambda p: p.write_text(p.read_text()[:50]), "not valid JSON"),
    "examples is an npz": (_examples, lambda p: p.write_bytes(_zip_of({"a.npy": b""})), "zip"),
    "examples value edited": (_examples, lambda p: p.write_text(p.read_text().replace("39", "38")), "sha256"),
    "examples outside the train split": (lambda t: _examples(t, examples=[[5, 7], [40, 0]]), None, "train split"),
    "examples NaN score": (lambda t: _examples(t, scores=[[0.5, float("nan")], [0.2, 0.0]]), None, "NaN"),
    "examples field unknown": (_examples, lambda p: _edit_json(p, lambda d: d.__setitem__("extra2", 1)),
                               "not a valid example record"),
    "rule predicts a class that does not exist": (lambda t: _rules(t, prediction=5), None, "class indices"),
    "record of another kind": (_rules, lambda p: _edit_json(p, lambda d: d.__setitem__("kind", "beauty")),
                               "unknown explanation kind"),
}


def _edit_json(path: Path, change) -> None:
    """Change a JSON record and sign it again: only the value checks can refuse it."""
    from nnxai.io import canonical_json, sha256_bytes

    doc = json.loads(path.read_text())
    change(doc)
    doc["meta"].pop("sha256")
    doc["meta"]["sha256"] = sha256_bytes(canonical_json(doc))
    path.write_text(json.dumps(doc))


def _strip_npz_digest(path: Path) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta.pop("sha256")
    arrays["meta"] = np.array(json.dumps(meta))
    store.write_npz(path, arrays)


@pytest.mark.parametrize("name", list(RECORD_DAMAGE))
def test_a_damaged_record_is_named(tmp_path, name, probes):
    make, damage, words = RECORD_DAMAGE[name]
    path = make(tmp_path)
    if damage is not None:
        damage(path)
    with pytest.raises(BadFileError) as info:
        load_explanation(path, BOUNDS)
    assert str(path) in str(info.value) and words in str(info.value)
    assert "snakemake --cores 2 --forcerun data/explanations/iris/baseline/" in str(info.value)
    probes.record("explanation records: damaged, NaN, out-of-range positions", "refused, file named")
