"""Parameters declared once, on the class that takes them (scikit-learn's ``_parameter_constraints``).

A method or metric lists its hyperparameters as a class variable::

    class IntegratedGradients(ReferenceAttribution):
        parameters = {**ReferenceAttribution.parameters,
                      "n_steps": Int("points of the Riemann sum of Eq. (5)", low=1)}

From these declarations come, with no second list anywhere:

- the one validator, :func:`check_params`, that ``__init__`` and the config check call before any work
  (an unknown or missing name, a wrong type, a non-finite float, a value out of range or not among the
  choices: a :class:`ParamError` naming the owner, the key, the value and what is allowed);
- the JSON schema of the method's config block (:func:`params_schema`), part of ``nnxai config --schema``;
- the parameter lines of ``nnxai methods --help`` / ``nnxai params ID`` and of the docs (:func:`describe`).

There are no defaults: every value comes from the config of the active profile (STYLE.md, habit 5).  A
parameter declared ``required=False`` may be left out (a composite method's ``local_params`` overrides).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


class ParamError(ValueError):
    """A parameter value is missing, unknown, of the wrong type or out of range; the message says which."""


@dataclass(frozen=True)
class Param:
    """One declared parameter.

    Parameters
    ----------
    kind : {"int", "float", "str", "bool", "list", "mapping", "union"}
    help : str
        What the parameter does, with the paper's symbol or equation where there is one.
    low, high : float, optional
        Bounds of a number (or of each item of a list of numbers); ``low_open`` / ``high_open`` exclude them.
    choices : tuple or callable, optional
        The allowed values (a callable returns them, read when checked: e.g. implemented method ids).
    item : Param, optional
        The declaration of each item of a ``list``.
    min_items, max_items : int, optional
        Length bounds of a ``list``.
    required : bool
        Whether the config must give it.
    unique : bool
        The items of a ``list`` must be distinct.
    nullable : bool
        ``null`` (``None``) is allowed too, with the meaning the help text gives it.
    fields : mapping of str to Param, optional
        A ``mapping`` that is a closed block: exactly these keys (the required ones), each checked.
    values, keys : optional
        A ``mapping`` with open keys: each value checked against ``values``; ``keys`` are its allowed keys
        (a tuple, or a callable returning them).
    options : tuple of Param, optional
        A ``union``: the value satisfies one of the options (``methods: all`` or a list of ids).
    pattern : str, optional
        A ``str`` must match this regular expression in full.
    at_most : {"train", "test"}, optional
        An ``int`` that counts inputs of that split: the config check refuses a value above the largest
        such split of the run (a count the method would otherwise cut to the split without a word).
    """

    kind: str
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | Callable[[], Sequence] | None = None
    item: "Param | None" = None
    min_items: int | None = None
    max_items: int | None = None
    required: bool = True
    unique: bool = False
    nullable: bool = False
    fields: "Mapping[str, Param] | None" = None
    values: "Param | None" = None
    keys: tuple | Callable[[], Sequence] | None = None
    options: "tuple[Param, ...] | None" = None
    pattern: str | None = None
    at_most: str | None = None

    def allowed_choices(self) -> tuple:
        return tuple(self.choices()) if callable(self.choices) else tuple(self.choices or ())

    # -- checking ------------------------------------------------------------------------------------
    def check(self, value: Any, where: str) -> Any:
        """``value`` if it satisfies the declaration, else :class:`ParamError` naming ``where``."""
        if value is None and self.nullable:
            return None
        if self.kind == "list":
            if not isinstance(value, (list, tuple)):
                raise ParamError(f"{where}: expected a list ({self.allowed()}), got {value!r}")
            n = len(value)
            if (self.min_items is not None and n < self.min_items) or (self.max_items is not None and n > self.max_items):
                raise ParamError(f"{where}: expected {self.allowed()}, got {n} items {value!r}")
            items = [self.item.check(v, f"{where}[{k}]") for k, v in enumerate(value)] if self.item else list(value)
            if self.unique and len({repr(v) for v in items}) != len(items):
                raise ParamError(f"{where}: items must be distinct, got {value!r}")
            return items
        if self.kind == "union":
            for option in self.options or ():
                try:
                    return option.check(value, where)
                except ParamError:
                    continue
            raise ParamError(f"{where}: expected {self.allowed()}, got {value!r}")
        if self.kind == "mapping":
            return self._check_mapping(value, where)
        if self.choices is not None:
            allowed = self.allowed_choices()
            if isinstance(value, bool) and not any(isinstance(c, bool) for c in allowed) or value not in allowed:
                raise ParamError(f"{where}: {value!r} is not one of {', '.join(map(repr, allowed))}")
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ParamError(f"{where}: expected true or false, got {value!r}")
            return value
        if self.kind == "str":
            if not isinstance(value, str) or not value:
                raise ParamError(f"{where}: expected a non-empty string, got {value!r}")
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                raise ParamError(f"{where}: {value!r} is not {self.allowed()}")
            return value
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParamError(f"{where}: expected an integer {self._range()}, got {value!r}".replace("  ", " "))
        elif self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ParamError(f"{where}: expected a number {self._range()}, got {value!r}".replace("  ", " "))
            if not math.isfinite(value):
                raise ParamError(f"{where}: expected a finite number {self._range()}, got {value!r}".replace("  ", " "))
        else:
            raise TypeError(f"unknown parameter kind {self.kind!r}")
        if not self._in_range(value):
            raise ParamError(f"{where}: {value!r} is out of range, expected {self._range()}")
        return value

    def _check_mapping(self, value: Any, where: str) -> dict:
        if not isinstance(value, Mapping):
            raise ParamError(f"{where}: expected {self.allowed()}, got {value!r}")
        if self.fields is not None:
            return check_params(where, self.fields, value)
        allowed = self.allowed_keys()
        out = {}
        for key, item in value.items():
            if allowed is not None and key not in allowed:
                raise ParamError(f"{where}: unknown key {key!r}; allowed: {', '.join(map(str, allowed))}")
            out[key] = self.values.check(item, f"{where}.{key}") if self.values is not None else item
        return out

    def allowed_keys(self) -> tuple | None:
        """The keys an open mapping may have (``None``: any)."""
        if self.keys is None:
            return None
        return tuple(self.keys()) if callable(self.keys) else tuple(self.keys)

    def _in_range(self, v: float) -> bool:
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            return False
        if self.high is not None and (v >= self.high if self.high_open else v > self.high):
            return False
        return True

    def _range(self) -> str:
        lo = "" if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        hi = "" if self.high is None else f"{'<' if self.high_open else '<='} {self.high:g}"
        return " and ".join(p for p in (lo, hi) if p)

    def allowed(self, resolve: bool = True) -> str:
        """What the parameter takes, in words (for messages, ``--help`` and the docs).  ``resolve=False``
        names a callable ``choices`` instead of calling it (a class's docstring is written while the
        registries it would read may still be loading)."""
        return self._allowed(resolve) + (", or null" if self.nullable else "")

    def _allowed(self, resolve: bool = True) -> str:
        if self.kind == "union":
            return " or ".join(o.allowed(resolve) for o in self.options or ())
        if self.kind == "mapping":
            if self.fields is not None:
                return "a mapping of " + ", ".join(self.fields)
            return "a mapping" + ("" if self.values is None else f" of {self.values.allowed(resolve)}")
        if self.pattern is not None:
            return f"a string matching {self.pattern}"
        if self.choices is not None and callable(self.choices) and not resolve:
            return f"one of {getattr(self.choices, '__name__', 'the registered values').replace('_', ' ')}()"
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.allowed_choices()))
        if self.kind == "list":
            size = ("" if self.min_items is None else f">= {self.min_items}") + (
                "" if self.max_items is None else f"{', ' if self.min_items is not None else ''}<= {self.max_items}")
            inner = self.item.allowed(resolve) if self.item else "values"
            return f"list of {inner}" + (f" ({size} items)" if size else "")
        name = {"int": "integer", "float": "number", "str": "string", "bool": "true/false"}[self.kind]
        return f"{name} {self._range()}".strip()

    # -- export --------------------------------------------------------------------------------------
    def schema(self) -> dict:
        """JSON schema of the value (enums read now from a callable ``choices``)."""
        out = self._schema()
        if self.nullable:
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
            elif "type" in out:
                out["type"] = [out["type"], "null"]
            else:
                out = {"anyOf": [out, {"type": "null"}]}
        return out

    def _schema(self) -> dict:
        out: dict[str, Any] = {"description": self.help}
        if self.kind == "union":
            out["anyOf"] = [o.schema() for o in self.options or ()]
            return out
        if self.kind == "mapping" and self.fields is not None:
            return {**out, **params_schema(self.fields)}
        if self.kind == "mapping":
            out["type"] = "object"
            if self.values is not None:
                out["additionalProperties"] = self.values.schema()
            if self.keys is not None:
                out["propertyNames"] = {"enum": list(self.allowed_keys())}
            return out
        if self.choices is not None:
            out["enum"] = list(self.allowed_choices())
            return out
        if self.kind == "list":
            out["type"] = "array"
            if self.item is not None:
                out["items"] = self.item.schema()
            if self.min_items is not None:
                out["minItems"] = self.min_items
            if self.max_items is not None:
                out["maxItems"] = self.max_items
            if self.unique:
                out["uniqueItems"] = True
            return out
        out["type"] = {"int": "integer", "float": "number", "str": "string", "bool": "boolean",
                       "mapping": "object"}[self.kind]
        if self.low is not None:
            out["exclusiveMinimum" if self.low_open else "minimum"] = self.low
        if self.high is not None:
            out["exclusiveMaximum" if self.high_open else "maximum"] = self.high
        if self.kind == "str":
            out["minLength"] = 1
            if self.pattern is not None:
                out["pattern"] = f"^(?:{self.pattern})$"
        return out


def Int(help: str, low: int | None = None, high: int | None = None, **kw: Any) -> Param:
    return Param("int", help, low=low, high=high, **kw)


def Float(help: str, low: float | None = None, high: float | None = None, **kw: Any) -> Param:
    return Param("float", help, low=low, high=high, **kw)


def Choice(help: str, choices: Sequence | Callable[[], Sequence], **kw: Any) -> Param:
    return Param("str", help, choices=choices if callable(choices) else tuple(choices), **kw)


def Str(help: str, **kw: Any) -> Param:
    """A free, non-empty string (a layer name, ...)."""
    return Param("str", help, **kw)


def Bool(help: str, **kw: Any) -> Param:
    return Param("bool", help, **kw)


def List(help: str, item: Param, min_items: int | None = 1, max_items: int | None = None, **kw: Any) -> Param:
    return Param("list", help, item=item, min_items=min_items, max_items=max_items, **kw)


def Overrides(help: str, **kw: Any) -> Param:
    """A mapping of values that replace another block's (optional: a composite's ``local_params``)."""
    return Param("mapping", help, **kw)


def Block(help: str, fields: Mapping[str, Param], **kw: Any) -> Param:
    """A nested block with exactly these keys (each declared)."""
    return Param("mapping", help, fields=dict(fields), **kw)


def MappingOf(help: str, values: Param | None = None, keys: Sequence | Callable[[], Sequence] | None = None,
              **kw: Any) -> Param:
    """A mapping whose keys are among ``keys`` (any when ``None``) and whose values satisfy ``values``."""
    return Param("mapping", help, values=values, keys=keys if keys is None or callable(keys) else tuple(keys), **kw)


def OneOf(help: str, *options: Param, **kw: Any) -> Param:
    """A value that satisfies one of ``options``."""
    return Param("union", help, options=tuple(options), **kw)


# Shared declarations, used by many classes.
N_EXPLAIN = Int("how many seeded test inputs are explained (the same inputs for every method; all of a "
                "smaller test split)", low=1, at_most="test")
BATCH_SIZE = Int("inputs per batch of the method's computation", low=1)


def check_params(owner: str, declared: Mapping[str, Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """The checked parameter values: every required name given, no unknown name, every value valid.

    Raises
    ------
    ParamError
        Naming ``owner`` and the key (``owner.key``), the value and what is allowed.
    """
    if not isinstance(given, Mapping):
        raise ParamError(f"{owner}: parameters must be a mapping of {sorted(declared)}, got {given!r}")
    unknown = sorted(set(given) - set(declared))
    missing = sorted(n for n, p in declared.items() if p.required and n not in given)
    if unknown or missing:
        raise ParamError(f"{owner}: parameters {sorted(declared)} expected"
                         + (f"; unknown {unknown}" if unknown else "")
                         + (f"; missing {missing} (set them in configs/)" if missing else ""))
    return {name: declared[name].check(value, f"{owner}.{name}") for name, value in given.items()}


def params_schema(declared: Mapping[str, Param]) -> dict:
    """JSON schema of one config block holding these parameters."""
    return {"type": "object", "additionalProperties": False,
            "required": [n for n, p in declared.items() if p.required],
            "properties": {n: p.schema() for n, p in declared.items()}}


def describe(declared: Mapping[str, Param], resolve: bool = True) -> list[str]:
    """One line per parameter: ``name: allowed — help`` (for ``--help`` and the docs; see
    :meth:`Param.allowed` for ``resolve``)."""
    return [f"{name}: {p.allowed(resolve)}{'' if p.required else ' (optional)'} — {p.help}"
            for name, p in declared.items()]




class Declared:
    """Base of every class with declared parameters (methods, metrics): ``parameters`` lists them,
    ``param_names`` is derived, ``__init__`` only checks and stores them in ``self.params`` (scikit-learn's
    estimator contract).  Subclasses name themselves in messages through :meth:`owner_name`."""

    parameters: ClassVar[dict[str, Param]] = {}
    param_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        cls.param_names = tuple(cls.parameters)
        if cls.__doc__ and cls.parameters and "Declared parameters" not in cls.__doc__:
            # The docs come from the declarations too (help(), Sphinx): one source for every parameter.
            # Callable choices are named, not called: the registry they read may be importing this class.
            lines = "\n".join(f"    - {line}" for line in describe(cls.parameters, resolve=False))
            cls.__doc__ = f"{cls.__doc__.rstrip()}\n\n    Declared parameters\n    -------------------\n{lines}\n"

    def __init__(self, **params: Any):
        self.params = self.checked_params(params)

    @classmethod
    def owner_name(cls) -> str:
        """How messages name the class (``method 'lrp'``, ``metric 'roar'``)."""
        return cls.__name__

    @classmethod
    def checked_params(cls, params: Mapping[str, Any], owner: str | None = None) -> dict[str, Any]:
        """``params`` checked against :attr:`parameters` and :meth:`check_combination`; a :class:`ParamError`
        names ``owner`` (default: :meth:`owner_name`), the key, the value and what is allowed."""
        checked = check_params(owner or cls.owner_name(), cls.parameters, params)
        try:
            cls.check_combination(checked)
        except ParamError as err:
            if owner is None:
                raise
            raise ParamError(f"{owner}: {err}") from None   # the config key first (the class's own words after)
        return checked

    @classmethod
    def check_combination(cls, params: dict[str, Any]) -> None:
        """Constraints between parameters that no single declaration states (raise :class:`ParamError`)."""
