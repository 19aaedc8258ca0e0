"""Every user error of the CLI ends in one line ``nnxai <command>: error: ...`` naming the bad value or
file, exit status 2, and no traceback (issue 9: "Bad input never reaches a job").

One table of probes, run in-process through :func:`nnxai.cli.main`: arguments out of range, ``--settings``
slices that are malformed, incomplete or contradict ``-d``/``-m``/``-x``, and damaged input files.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nnxai.cli import main
from nnxai.config import load_config
from nnxai.workflow import stage_settings

CFG = load_config({"profile": "smoke"})
D, M, X = "causal", "baseline", "gradient"          # the cell the file probes damage (tabular: fast)


def slice_of(stage: str, **changes) -> str:
    """The smoke profile's ``--settings`` of ``stage`` for the probe cell, with ``changes`` applied
    (``"a.b": v`` sets a nested key; ``v is DELETE`` removes it)."""
    wildcards = {"prepare": {"dataset": D}, "train": {"dataset": D, "model": M},
                 "explain": {"dataset": D, "model": M, "method": X},
                 "evaluate": {"dataset": D, "model": M, "method": X}}[stage]
    settings = copy.deepcopy(stage_settings(CFG, stage, **wildcards))
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        target = settings
        for key in parents:
            target = target[key]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return json.dumps(settings)


DELETE = object()


def run(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:            # argparse
        code = exc.code
    return code, capsys.readouterr().err


# --- arguments and --settings: no files needed ---------------------------------------------------------

TRAIN = ["train", "-d", D, "-m", M, "--quiet"]
EXPLAIN = ["explain", "-d", D, "-m", M, "-x", X]
EVALUATE = ["evaluate", "-d", D, "-m", M, "-x", X, "--quiet"]
PREPARE = ["prepare", "-d", D]

ARGUMENT_PROBES = {
    # name: (argv, strings the one-line message must contain)
    "threads negative": (TRAIN + ["--threads", "-3", "--profile", "smoke"], ["--threads", "-3"]),
    "threads zero": (TRAIN + ["--threads", "0", "--profile", "smoke"], ["--threads", "0 is out of range"]),
    "threads not a number": (TRAIN + ["--threads", "abc", "--profile", "smoke"], ["'abc'"]),
    "threads too many": (TRAIN + ["--threads", "99999", "--profile", "smoke"], ["99999", "1..1024"]),
    "device unknown": (EXPLAIN + ["--device", "gpu", "--profile", "smoke"], ["'gpu'", "cuda"]),
    "model unknown": (["train", "-d", D, "-m", "resnet", "--profile", "smoke"], ["'resnet'"]),
    "dataset unknown": (["prepare", "-d", "imagenet"], ["'imagenet'"]),
    "method unknown": (["explain", "-d", D, "-m", M, "-x", "magic"], ["'magic'"]),
    "report item unknown": (["report", "table9", "--out", "."], ["'table9'"]),
    "params id unknown": (["params", "nope"], ["'nope'"]),
    "aggregate path not a metric file": (["aggregate", "foo.json"], ["'foo.json'", "data/metrics/"]),
    "settings not JSON": (EXPLAIN + ["--settings", "{oops"], ["not valid JSON", "{oops"]),
    "settings not an object": (EXPLAIN + ["--settings", "[1, 2]"], ["JSON object", "list"]),
    "settings and profile": (EXPLAIN + ["--settings", slice_of("explain"), "--profile", "smoke"], ["exclude"]),
    "explain settings empty": (EXPLAIN + ["--settings", "{}"], ["missing", "'method'", "'params'"]),
    "explain settings of another method": (
        EXPLAIN + ["--settings", slice_of("explain", method="gradient_x_input")], ["'gradient_x_input'", "'gradient'"]),
    "explain param out of range": (
        EXPLAIN + ["--settings", slice_of("explain", **{"params.n_explain": -2})], ["n_explain", "-2"]),
    "explain param unknown": (
        EXPLAIN + ["--settings", slice_of("explain", **{"params.n_steps": 5})], ["n_steps"]),
    "explain threads zero": (EXPLAIN + ["--settings", slice_of("explain", threads=0)], ["threads", "0"]),
    "explain device unknown": (EXPLAIN + ["--settings", slice_of("explain", device="tpu")], ["'tpu'"]),
    "explain seed negative": (EXPLAIN + ["--settings", slice_of("explain", seed=-1)], ["seed", "-1"]),
    "explain extra key": (EXPLAIN + ["--settings", slice_of("explain", extra=1)], ["unknown ['extra']"]),
    "explain seed beyond torch": (EXPLAIN + ["--settings", slice_of("explain", seed=2 ** 70)], ["seed", str(2 ** 70)]),
    "explain seed missing": (EXPLAIN + ["--settings", slice_of("explain", seed=DELETE)], ["missing ['seed']"]),
    "train settings of another dataset": (
        TRAIN + ["--settings", slice_of("train", dataset="iris")], ["'iris'", "'causal'"]),
    "train settings of another model": (
        TRAIN + ["--settings", slice_of("train", model="l1")], ["'l1'", "'baseline'"]),
    "train activation contradicts model": (
        TRAIN + ["--settings", slice_of("train", activation="sigmoid")], ["'sigmoid'", "baseline"]),
    "train architecture contradicts dataset": (
        TRAIN + ["--settings", slice_of("train", architecture="cnn")], ["'cnn'", "'mlp'"]),
    "train architecture unknown": (TRAIN + ["--settings", slice_of("train", architecture="vit")], ["'vit'"]),
    "train hidden width huge": (
        TRAIN + ["--settings", slice_of("train", **{"arch_config.hidden": [1_000_000]})], ["1000000", "4096"]),
    "train hidden not a list": (
        TRAIN + ["--settings", slice_of("train", **{"arch_config.hidden": 32})], ["hidden", "32"]),
    "train epochs zero": (TRAIN + ["--settings", slice_of("train", **{"training.epochs": 0})], ["epochs", "0"]),
    "train lr not a number": (TRAIN + ["--settings", slice_of("train", **{"training.lr": "fast"})], ["lr", "'fast'"]),
    "train lr NaN": (TRAIN + ["--settings", slice_of("train", **{"training.lr": float("nan")})], ["lr", "nan"]),
    "train training key unknown": (
        TRAIN + ["--settings", slice_of("train", **{"training.momentum": 0.9})], ["momentum"]),
    "train penalty unknown": (TRAIN + ["--settings", slice_of("train", penalty="l3")], ["'l3'"]),
    "train penalty weight negative": (
        TRAIN + ["--settings", slice_of("train", penalty_weight=-1.0)], ["penalty_weight", "-1.0"]),
    "prepare settings of another dataset": (
        PREPARE + ["--settings", slice_of("prepare", dataset="wine")], ["'wine'", "'causal'"]),
    "prepare size negative": (PREPARE + ["--settings", slice_of("prepare", **{"sizes.train": -5})], ["-5"]),
    "prepare seed not an integer": (PREPARE + ["--settings", slice_of("prepare", seed="x")], ["seed", "'x'"]),
    "evaluate settings of another method": (
        EVALUATE + ["--settings", slice_of("evaluate", methods={"lime": ["runtime"]},
                                            metric_params={"runtime": {}})], ["'lime'", "'gradient'"]),
    "evaluate method unknown": (
        ["evaluate", "-d", D, "-m", M, "--quiet", "--settings",
         slice_of("evaluate", methods={"magic": ["runtime"]}, metric_params={"runtime": {}})], ["'magic'"]),
    "evaluate metric unknown": (
        EVALUATE + ["--settings", slice_of("evaluate", methods={X: ["beauty"]}, metric_params={})], ["'beauty'"]),
    "evaluate metric param out of range": (
        EVALUATE + ["--settings", slice_of("evaluate", **{"metric_params.continuity.n_inputs": 0})],
        ["continuity", "n_inputs"]),
    "evaluate metric params missing": (
        EVALUATE + ["--settings", slice_of("evaluate", **{"metric_params.entropy": DELETE})], ["entropy"]),
}


def _assert_one_line_error(code: int, err: str, expected: list[str]) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit status {code}, stderr: {err}"
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("nnxai ") and ": error: " in lines[0], err
    for text in expected:
        assert text in lines[0], f"{text!r} not in: {lines[0]}"


@pytest.mark.parametrize("name", list(ARGUMENT_PROBES))
def test_argument_probe_is_refused_in_one_line(capsys, tmp_path, monkeypatch, name, probes):
    monkeypatch.chdir(tmp_path)                     # nothing may be written: the work directory stays empty
    argv, expected = ARGUMENT_PROBES[name]
    _assert_one_line_error(*run(capsys, argv), expected)
    assert not (tmp_path / "data").exists()
    probes.record("CLI probes (arguments, --settings)", "refused in one line, exit 2")


def test_workdir_and_out_must_be_folders(capsys, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    _assert_one_line_error(*run(capsys, EXPLAIN + ["--profile", "smoke", "--workdir", a_file]), [str(a_file)])
    _assert_one_line_error(*run(capsys, ["report", "table1", "--out", a_file]), [str(a_file)])


# --- damaged input files, through the CLI ----------------------------------------------------------------

@pytest.fixture(scope="module")
def good_workdir(tmp_path_factory) -> Path:
    """A prepared, trained and explained smoke cell (causal / baseline / gradient)."""
    workdir = tmp_path_factory.mktemp("good")
    for argv in (PREPARE, TRAIN, EXPLAIN):
        assert main(argv + ["--profile", "smoke", "--workdir", str(workdir)]) == 0
    return workdir


def _flip(path: Path, offset: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * offset)] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _resave_attributions(path: Path, **changes) -> None:
    """Rewrite an attribution record with changed arrays, re-signed (so only the value check can refuse it)."""
    from nnxai.explanations import AttributionMap

    with np.load(path) as z:
        arrays = {k: z[k] for k in ("attributions", "indices", "targets")}
        meta = json.loads(str(z["meta"]))
    meta.pop("sha256")
    arrays.update(changes)
    AttributionMap(arrays["attributions"], arrays["indices"], arrays["targets"], meta).save(path)


PREPARED = f"data/prepared/{D}"
CKPT = f"data/checkpoints/{D}/{M}"
EXPL = f"data/explanations/{D}/{M}/{X}.npz"


def _nan_attributions(path: Path) -> None:
    with np.load(path) as z:
        values = z["attributions"].copy()
    values[0, 0] = np.nan
    _resave_attributions(path, attributions=values)


def _metric_garbage(workdir: Path) -> None:
    out = workdir / f"data/metrics/{D}/{M}/{X}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("{not json")


FILE_PROBES = {
    # name: (damage(workdir), command, the file the message must name, another string it must contain)
    "prepared npz garbage": (lambda w: (w / PREPARED / "test.npz").write_text("garbage"), TRAIN,
                             f"{PREPARED}/test.npz", "zip"),
    "prepared npz is JSON": (lambda w: (w / PREPARED / "test.npz").write_text('{"x": 1}'), TRAIN,
                             f"{PREPARED}/test.npz", "JSON"),
    "prepared npz truncated": (lambda w: _truncate(w / PREPARED / "train.npz"), TRAIN,
                               f"{PREPARED}/train.npz", "truncated"),
    "prepared npz byte flipped": (lambda w: _flip(w / PREPARED / "val.npz"), TRAIN, f"{PREPARED}/val.npz", "prepare"),
    "prepared meta missing": (lambda w: (w / PREPARED / "meta.json").unlink(), TRAIN,
                              f"{PREPARED}/meta.json", "nnxai prepare"),
    "prepared meta truncated": (lambda w: _truncate(w / PREPARED / "meta.json"), TRAIN,
                                f"{PREPARED}/meta.json", "not valid JSON"),
    "checkpoint byte flipped": (lambda w: _flip(w / f"{CKPT}.pt"), EXPLAIN, f"{CKPT}.pt", "sha256"),
    "checkpoint truncated": (lambda w: _truncate(w / f"{CKPT}.pt"), EXPLAIN, f"{CKPT}.pt", "--forcerun"),
    "checkpoint missing": (lambda w: (w / f"{CKPT}.pt").unlink(), EXPLAIN, f"{CKPT}.pt", "snakemake"),
    "checkpoint record broken": (lambda w: _truncate(w / f"{CKPT}.json"), EXPLAIN, f"{CKPT}.json", "JSON"),
    "checkpoint record missing": (lambda w: (w / f"{CKPT}.json").unlink(), EXPLAIN, f"{CKPT}.pt", "missing"),
    "explanation truncated": (lambda w: _truncate(w / EXPL), EVALUATE, EXPL, "truncated"),
    "explanation byte flipped": (lambda w: _flip(w / EXPL, 0.3), EVALUATE, EXPL, "nnxai explain"),
    "explanation NaN": (lambda w: _nan_attributions(w / EXPL), EVALUATE, EXPL, "NaN"),
    "explanation index outside test split": (
        lambda w: _resave_attributions(w / EXPL, indices=np.full(len(np.load(w / EXPL)["indices"]), 10 ** 6)),
        EVALUATE, EXPL, "1000000"),
    "metric file not JSON": (_metric_garbage, ["aggregate"], f"data/metrics/{D}/{M}/{X}.json", "JSON"),
}


@pytest.mark.parametrize("name", list(FILE_PROBES))
def test_damaged_file_is_named_in_one_line(capsys, tmp_path, good_workdir, name, probes):
    damage, command, named, also = FILE_PROBES[name]
    workdir = tmp_path / "w"
    shutil.copytree(good_workdir, workdir)
    damage(workdir)
    argv = command + (["--profile", "smoke"] if command[0] != "aggregate" else []) + ["--workdir", workdir]
    _assert_one_line_error(*run(capsys, argv), [named, also])
    probes.record("CLI probes (damaged input files)", "refused in one line naming the file, exit 2")


def test_the_probe_table_is_large_enough():
    """Issue 9 asks for at least 30 probes; the README's Reliability paragraph quotes these counts."""
    assert len(ARGUMENT_PROBES) + 2 + len(FILE_PROBES) >= 30


def test_real_bugs_keep_their_traceback(monkeypatch, tmp_path):
    """Only user errors are turned into one line: an unexpected TypeError in a stage still raises."""
    from nnxai.stages import prepare as stage

    def broken(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr(stage, "prepare", broken)
    with pytest.raises(TypeError, match="a bug"):
        main(PREPARE + ["--profile", "smoke", "--workdir", str(tmp_path)])


def test_snakemake_slices_pass_the_checks():
    """What the Snakefile passes (``settings_json``) is accepted for every stage of every smoke cell."""
    from nnxai import cli_checks
    from nnxai.workflow import experiment_cells, model_cells

    for dataset in CFG["datasets"]:
        cli_checks.check_settings("prepare", stage_settings(CFG, "prepare", dataset=dataset), dataset)
    for dataset, model in model_cells(CFG):
        cli_checks.check_settings("train", stage_settings(CFG, "train", dataset=dataset, model=model), dataset, model)
        cli_checks.check_settings("evaluate", stage_settings(CFG, "evaluate", dataset=dataset, model=model),
                                  dataset, model)
    for dataset, model, method in experiment_cells(CFG):
        cli_checks.check_settings("explain", stage_settings(CFG, "explain", dataset=dataset, model=model,
                                                            method=method), dataset, model, method)
