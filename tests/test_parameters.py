"""Parameters are declared once on each class (nnxai.params) and checked by one validator.

Generated from the declarations of every implemented method and every metric, so a new class inherits
these tests: each profile's config block is valid; each declared parameter, mutated in type, finiteness,
range, choice or emptiness, and each block with a key missing or unknown, is refused with an error that
names the key; the declarations give the JSON schema and the help text.
"""

from __future__ import annotations

import math

import jsonschema
import pytest

from nnxai import registry
from nnxai.config import load_config, method_params
from nnxai.metrics import metrics
from nnxai.params import Param, ParamError, check_params, params_schema

PROFILES = ("smoke", "default", "paper")
SMOKE = load_config({"profile": "smoke"})


def method_blocks() -> list:
    return [pytest.param(registry.get(m), method_params(SMOKE, m), id=m) for m in registry.implemented_ids()]


def metric_blocks() -> list:
    return [pytest.param(cls, SMOKE["metric_params"].get(mid, {}), id=mid) for mid, cls in metrics().items()]


BLOCKS = method_blocks() + metric_blocks()


def mutations(param: Param) -> list:
    """Values the declaration must refuse."""
    bad: list = [{"a": 1}] + ([] if param.nullable else [None])
    if param.choices is not None:
        return bad + ["no-such-choice", 3.5]
    if param.kind == "int":
        bad += [2.5, True, "3", float("nan")]
    elif param.kind == "float":
        bad += [math.nan, math.inf, -math.inf, "0.5", True]
    elif param.kind == "list":
        bad += ["x", 3]
        if param.min_items:
            bad.append([])
    elif param.kind == "bool":
        bad += [1, "yes"]
    elif param.kind == "str":
        bad += ["", 3]
    if param.kind in ("int", "float"):
        if param.low is not None:
            bad.append(param.low - (0 if param.low_open else 1))
        if param.high is not None:
            bad.append(param.high + (0 if param.high_open else 1))
    if param.kind == "mapping":
        bad = ["x", 3, [1]]
    return bad


def test_every_class_declares_its_parameters_with_help():
    for param in BLOCKS:
        cls = param.values[0]
        assert isinstance(cls.parameters, dict)
        assert tuple(cls.parameters) == tuple(cls.param_names)
        for name, declared in cls.parameters.items():
            assert isinstance(declared, Param), f"{cls.__name__}.{name}"
            assert len(declared.help) > 10, f"{cls.__name__}.{name} has no help text"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_is_valid(profile):
    cfg = load_config({"profile": profile})
    for method_id in registry.implemented_ids():
        registry.get(method_id).checked_params(method_params(cfg, method_id))


@pytest.mark.parametrize("cls, block", BLOCKS)
def test_a_missing_or_unknown_key_is_named(cls, block):
    with pytest.raises(ParamError, match="unknown.*not_a_parameter"):
        cls(**{**block, "not_a_parameter": 1})
    for name, declared in cls.parameters.items():
        if declared.required:
            with pytest.raises(ParamError, match=f"missing.*{name}"):
                cls(**{k: v for k, v in block.items() if k != name})


@pytest.mark.parametrize("cls, block", BLOCKS)
def test_every_bad_value_is_refused_naming_the_key(cls, block):
    cls(**block)   # the profile's values are valid
    for name, declared in cls.parameters.items():
        for value in mutations(declared):
            with pytest.raises(ParamError, match=rf"\.{name}\b") as err:
                cls(**{**block, name: value})
            assert repr(value)[:10] in str(err.value) or "items" in str(err.value), str(err.value)


@pytest.mark.parametrize("cls, block", BLOCKS)
def test_the_schema_agrees_with_the_validator(cls, block):
    schema = params_schema(cls.parameters)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(block, schema)
    for name, declared in cls.parameters.items():
        for value in mutations(declared):
            if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
                continue   # JSON has neither NaN nor a bool/int distinction the validator draws
            if declared.kind == "int" and isinstance(value, float) and value.is_integer():
                continue
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate({**block, name: value}, schema)


def test_check_params_names_owner_key_value_and_allowed():
    declared = {"steps": Param("int", "number of steps", low=1)}
    with pytest.raises(ParamError, match=r"method 'x'\.steps: 0 is out of range, expected >= 1"):
        check_params("method 'x'", declared, {"steps": 0})
    with pytest.raises(ParamError, match=r"steps: expected an integer >= 1, got 2\.0"):
        check_params("method 'x'", declared, {"steps": 2.0})
