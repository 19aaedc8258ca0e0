"""Malformed configs never reach a job: generated mutations of every key of the default config.

Each key of the merged default config (every level: top-level keys, blocks, method and metric parameters,
list items) is mutated in type, sign, finiteness, size, integer-ness, spelling and emptiness, and removed.
Every mutant must either be refused by :func:`nnxai.config.validate` (which runs before the first job)
with a message that names the key, or be valid: then it plans (every target and every job's settings are
built) and comes back unchanged (nothing is clipped or coerced on the way).
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from nnxai import workflow as wf
from nnxai.config import ConfigError, cli_overrides, load_config, validate

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = load_config()
HUGE_INT = 10 ** 12


def _paths(value, path=()):
    """Every key path of a nested config: dict keys and list positions, parents before children."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield path + (key,)
            yield from _paths(item, path + (key,))
    elif isinstance(value, list):
        for k, item in enumerate(value):
            yield path + (k,)
            yield from _paths(item, path + (k,))


def _get(cfg, path):
    for part in path:
        cfg = cfg[part]
    return cfg


def _replaced(path, value):
    cfg = copy.deepcopy(DEFAULT)
    _get(cfg, path[:-1])[path[-1]] = value
    return cfg


def _renamed(path):
    cfg = copy.deepcopy(DEFAULT)
    parent = _get(cfg, path[:-1])
    parent[f"{path[-1]}_x"] = parent.pop(path[-1])       # a misspelt key: the right one gone, an unknown one added
    return cfg


def _removed(path):
    cfg = copy.deepcopy(DEFAULT)
    parent = _get(cfg, path[:-1])
    if isinstance(parent, list):
        parent.pop(path[-1])
    else:
        parent.pop(path[-1])
    return cfg


def _values(value):
    """Type, sign, finiteness, size, integer-ness and emptiness mutations of one value."""
    out = {"str": "text", "bool": True, "null": None, "mapping": {"k": 1}, "list": [1]}
    if isinstance(value, bool):
        out["int"] = 1
    elif isinstance(value, int):
        out.update(negative=-value - 1, zero=0, huge=HUGE_INT, float=float(value), nan=math.nan)
    elif isinstance(value, float):
        out.update(negative=-value - 1.0, zero=0.0, inf=math.inf, minus_inf=-math.inf, nan=math.nan, huge=1e300)
    elif isinstance(value, str):
        out.update(empty="", other=value + "_x")
    elif isinstance(value, list):
        out.update(empty=[], duplicated=value + value[:1] if value else [None])
    elif isinstance(value, dict):
        out.update(empty={})
    return out


def _name(path):
    return ".".join(str(p) for p in path)


def mutants():
    cases = []
    for path in _paths(DEFAULT):
        value = _get(DEFAULT, path)
        for label, new in _values(value).items():
            if new == value and type(new) is type(value):
                continue
            cases.append((f"{_name(path)}={label}", path, _replaced(path, new)))
        if isinstance(path[-1], str):
            cases.append((f"{_name(path)}:misspelt", path, _renamed(path)))
        cases.append((f"{_name(path)}:removed", path, _removed(path)))
    return cases


CASES = mutants()


def _key_texts(path):
    """How a message may name the key: its dotted path (list items as [k]) or a parent block's."""
    parts, texts = "config", []
    for part in path:
        parts += f"[{part}]" if isinstance(part, int) else f".{part}"
        texts.append(parts)
    return texts


def test_at_least_two_hundred_mutants_over_every_level():
    assert len(CASES) >= 200
    assert {len(p) for _, p, _ in CASES} >= {1, 2, 3, 4}


@pytest.mark.parametrize("label, path, cfg", CASES, ids=[c[0] for c in CASES])
def test_refused_with_the_key_named_or_valid_and_unchanged(label, path, cfg, probes):
    given = copy.deepcopy(cfg)
    try:
        checked = validate(cfg)
    except ConfigError as err:
        message = str(err)
        texts = _key_texts(path)
        named = texts[1:] if len(texts) > 1 else texts        # deeper than the top-level block alone
        renamed = f"{path[-1]}_x" if isinstance(path[-1], str) else None
        assert any(t in message for t in named) or (renamed and renamed in message) \
            or (label.endswith(":removed") and str(path[-1]) in message), f"{label}: {message}"
        assert "Traceback" not in message
        probes.record("malformed configs (every key mutated)", "refused before any job, key named")
        return
    assert checked == given, f"{label}: the config was changed on its way through the check"
    targets = wf.targets(checked)
    assert targets["metrics"], f"{label}: valid but plans nothing"
    for dataset in checked["datasets"]:
        json.loads(wf.settings_json(checked, "prepare", dataset=dataset))
    probes.record("malformed configs (every key mutated)", "valid after all: planned, unchanged")


def test_non_finite_learning_rate_is_refused_before_training():
    with pytest.raises(ConfigError, match=r"config\.training\.cnn\.lr: expected a finite number"):
        load_config({"training": {"cnn": {"lr": math.inf}}})


def test_sizes_beyond_memory_name_the_key_and_the_memory():
    with pytest.raises(ConfigError, match=r"config\.data\.shapes: .* needs about .*iB of memory"):
        load_config({"data": {"shapes": {"train": 10 ** 9, "val": 10, "test": 10}}})
    with pytest.raises(ConfigError, match=r"config\.architecture\.cnn.*needs about .*iB of memory"):
        load_config({"architecture": {"cnn": {"widths": [8192, 8192, 8192]}}})


def test_splits_larger_than_the_data_are_refused_before_any_job():
    with pytest.raises(ConfigError, match=r"config\.data\.iris: .*only 150 are available"):
        load_config({"datasets": ["shapes", "iris"], "data": {"iris": {"train": 1000, "val": None, "test": None}}})


def test_n_explain_beyond_every_test_split_is_refused_not_clipped():
    with pytest.raises(ConfigError, match=r"config\.method_params\.gradient\.n_explain: 100000 is more than any test split"):
        load_config({"method_params": {"gradient": {"n_explain": 100000}}})


def test_empty_matrix_is_refused():
    with pytest.raises(ConfigError, match=r"config\.methods"):
        load_config({"methods": []})
    with pytest.raises(ConfigError, match=r"config\.models\.image"):
        load_config({"models": {"image": []}})


def test_nested_command_line_overrides_are_read_as_yaml():
    """``--config "training={cnn: {epochs: 3}}"``: Snakemake passes the nested 3 as the string "3"."""
    overrides = cli_overrides((), {"training": {"cnn": {"epochs": "3"}}, "profile": "smoke"})
    cfg = load_config(overrides)
    assert cfg["training"]["cnn"]["epochs"] == 3
    with pytest.raises(ConfigError, match=r"config\.training\.cnn\.epochs: expected an integer"):
        load_config(cli_overrides((), {"training": {"cnn": {"epochs": "3.5"}}}))


def test_configfile_overrides_merge_in_order(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("seed: 3\ntraining: {cnn: {epochs: 2}}\n")
    second.write_text("seed: 4\n")
    assert cli_overrides([first, second], {"threads": 1}) == {"seed": 4, "training": {"cnn": {"epochs": 2}},
                                                                "threads": 1}
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match="bad.yaml: expected a mapping"):
        cli_overrides([tmp_path / "bad.yaml"])


def _plan(*config: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--quiet", "--config", *config],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_snakemake_plans_a_valid_nested_override_and_refuses_a_bad_one():
    good = _plan("profile=smoke", "training={cnn: {epochs: 3}}")
    assert good.returncode == 0, good.stderr[-2000:]
    bad = _plan("profile=smoke", "training={cnn: {lr: .inf}}")
    assert bad.returncode != 0
    assert "config.training.cnn.lr" in bad.stdout + bad.stderr
