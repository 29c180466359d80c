"""Constraint objects and schemas: what a parameter may be, said once, checked by one function.

In the spirit of scikit-learn's `_param_validation`. `dgnlib.params` re-exports every name here; notebooks and
schemas use them through it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ParamError(ValueError):
    """One or more parameters are invalid; the message lists every problem, one per line."""


# ---------------------------------------------------------------------------------------------------------------
# JSON values


def json_problem(value: Any, where: str = "value") -> str | None:
    """Why `value` is not plain JSON data (None, bool, int, float, str, list, dict with str keys), or None."""
    if value is None or isinstance(value, (bool, str, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} is {value!r}, not a finite number"
    if isinstance(value, list):
        return next((p for i, v in enumerate(value) if (p := json_problem(v, f"{where}[{i}]"))), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has the key {key!r} ({type(key).__name__}); keys must be strings"
            if problem := json_problem(item, f"{where}[{key!r}]"):
                return problem
        return None
    return f"{where} is a {type(value).__name__} ({value!r}); only JSON values (numbers, strings, lists, dicts) work"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bound(low: Any, high: Any, closed: str = "both") -> str:
    """Text of an interval: 'at least 1', 'in (0, 1)', 'at most 5'."""
    if low is not None and high is not None:
        left = "[" if closed in ("both", "left") else "("
        right = "]" if closed in ("both", "right") else ")"
        return f"in {left}{low}, {high}{right}"
    if low is not None:
        return f"at least {low}" if closed in ("both", "left") else f"greater than {low}"
    if high is not None:
        return f"at most {high}" if closed in ("both", "right") else f"less than {high}"
    return ""


def _within(value: float, low: Any, high: Any, closed: str) -> bool:
    if low is not None and (value < low or (value == low and closed not in ("both", "left"))):
        return False
    return not (high is not None and (value > high or (value == high and closed not in ("both", "right"))))


# ---------------------------------------------------------------------------------------------------------------
# Constraints


class Constraint:
    """What a parameter's value must be: `ok(value)` decides, `describe()` says it in words."""

    def ok(self, value: Any) -> bool:
        """Whether `value` satisfies the constraint."""
        raise NotImplementedError

    def describe(self) -> str:
        """The constraint as a noun phrase: 'an integer, at least 1'."""
        raise NotImplementedError

    def wants_number(self) -> bool:
        """Whether a number is expected (used for the YAML `1e-3` hint)."""
        return False


@dataclass(frozen=True)
class Int(Constraint):
    """An integer (not a bool) in [min, max], optionally a multiple of `multiple_of`."""

    min: int | None = None
    max: int | None = None
    multiple_of: int | None = None

    def ok(self, value: Any) -> bool:
        """See the class docstring."""
        return (_is_int(value) and _within(value, self.min, self.max, "both")
                and (self.multiple_of is None or value % self.multiple_of == 0))

    def describe(self) -> str:
        """See Constraint.describe."""
        text = " ".join(p for p in ("an integer", _bound(self.min, self.max)) if p)
        return f"{text}, a multiple of {self.multiple_of}" if self.multiple_of else text

    def wants_number(self) -> bool:
        """See Constraint.wants_number."""
        return True


@dataclass(frozen=True)
class Float(Constraint):
    """A real number (an int is accepted, a bool is not) in the interval given by low, high and `closed`."""

    low: float | None = None
    high: float | None = None
    closed: str = "both"  # both | left | right | neither

    def ok(self, value: Any) -> bool:
        """See the class docstring."""
        return _is_number(value) and math.isfinite(value) and _within(value, self.low, self.high, self.closed)

    def describe(self) -> str:
        """See Constraint.describe."""
        return " ".join(p for p in ("a number", _bound(self.low, self.high, self.closed)) if p)

    def wants_number(self) -> bool:
        """See Constraint.wants_number."""
        return True


@dataclass(frozen=True)
class Str(Constraint):
    """A string (non-empty unless `empty`)."""

    empty: bool = False

    def ok(self, value: Any) -> bool:
        """See the class docstring."""
        return isinstance(value, str) and (self.empty or bool(value))

    def describe(self) -> str:
        """See Constraint.describe."""
        return "a string" if self.empty else "a non-empty string"


@dataclass(frozen=True)
class Folder(Str):
    """The path of an existing folder, relative to the repository root unless absolute; empty for the default."""

    empty: bool = True

    def describe(self) -> str:
        """See Constraint.describe."""
        return "the path of an existing folder" + (" (empty for the default)" if self.empty else "")

    def missing(self, value: str, root: Path) -> str | None:
        """Why `value` names no folder under `root` ('... does not exist'), or None when it does (or is empty)."""
        if not value:
            return None
        path = Path(value) if Path(value).is_absolute() else Path(root) / value
        if path.is_dir():
            return None
        return f"names no folder: {path} {'is a file' if path.exists() else 'does not exist'}"


@dataclass(frozen=True)
class Bool(Constraint):
    """True or False (not 0 or 1)."""

    def ok(self, value: Any) -> bool:
        """See the class docstring."""
        return isinstance(value, bool)

    def describe(self) -> str:
        """See Constraint.describe."""
        return "true or false"


class Choice(Constraint):
    """One of the given values."""

    def __init__(self, *values: Any) -> None:
        self.values = tuple(values)

    def ok(self, value: Any) -> bool:
        """See the class docstring."""
        return any(type(value) is type(v) and value == v for v in self.values)

    def describe(self) -> str:
        """See Constraint.describe."""
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class _List(Constraint):
    """A list whose items each satisfy `item`, with length, order and distinctness conditions."""

    item: Constraint
    noun: str
    min_len: int = 1
    max_len: int | None = None
    increasing: bool = False
    distinct: bool = False

    def ok(self, value: Any) -> bool:
        """See the class docstring."""
        if not isinstance(value, list) or len(value) < self.min_len:
            return False
        if self.max_len is not None and len(value) > self.max_len:
            return False
        if not all(self.item.ok(v) for v in value):
            return False
        if self.increasing and any(b <= a for a, b in zip(value, value[1:])):
            return False
        return not (self.distinct and len(set(value)) != len(value))  # items are checked scalars: hashable

    def describe(self) -> str:
        """See Constraint.describe."""
        if self.max_len is not None and self.max_len == self.min_len:
            size = f"exactly {self.min_len}"
        else:
            size = f"at least {self.min_len}" if self.min_len > 1 else ("any number of" if not self.min_len else "")
        order = "distinct increasing " if self.increasing else ("distinct " if self.distinct else "")
        text = f"a list of {size + ' ' if size else ''}{order}{self.noun}"
        item = self.item.describe()
        detail = item.split(" ", 2)[2] if item.startswith(("an integer ", "a number ")) else ""
        return f"{text} (each {detail})" if detail else text


def IntList(min_len: int = 1, *, max_len: int | None = None, increasing: bool = False, distinct: bool = False,
            min: int | None = None, max: int | None = None) -> Constraint:  # noqa: A002 (sklearn-style names)
    """A list of integers, each in [min, max]."""
    return _List(Int(min=min, max=max), "integers", min_len, max_len, increasing, distinct)


def FloatList(min_len: int = 1, *, max_len: int | None = None, increasing: bool = False, distinct: bool = False,
              low: float | None = None, high: float | None = None, closed: str = "both") -> Constraint:
    """A list of numbers, each in the given interval."""
    return _List(Float(low=low, high=high, closed=closed), "numbers", min_len, max_len, increasing, distinct)


def StrList(choices: Sequence[str] | None = None, *, distinct: bool = False, min_len: int = 1) -> Constraint:
    """A list of strings, each one of `choices` when given."""
    item = Choice(*choices) if choices else Str()
    noun = "names" if choices else "strings"
    return _List(item, noun, min_len, None, False, distinct)


@dataclass(frozen=True)
class Optional(Constraint):
    """None, or a value satisfying `inner`."""

    inner: Constraint

    def ok(self, value: Any) -> bool:
        """See the class docstring."""
        return value is None or self.inner.ok(value)

    def describe(self) -> str:
        """See Constraint.describe."""
        return f"None or {self.inner.describe()}"

    def wants_number(self) -> bool:
        """See Constraint.wants_number."""
        return self.inner.wants_number()


@dataclass(frozen=True)
class Dict(Constraint):
    """A mapping with string keys (from `keys` when given) whose values satisfy `values` (any JSON value if None)."""

    keys: tuple[str, ...] | None = None
    values: Constraint | None = None

    def ok(self, value: Any) -> bool:
        """See the class docstring."""
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return False
        if self.keys is not None and not set(value) <= set(self.keys):
            return False
        return self.values is None or all(self.values.ok(v) for v in value.values())

    def describe(self) -> str:
        """See Constraint.describe."""
        keys = f" with keys among {', '.join(self.keys)}" if self.keys else ""
        values = f" whose values are each {self.values.describe()}" if self.values else ""
        return f"a mapping{keys}{values}"


@dataclass(frozen=True)
class Rule:
    """A check across parameters: `holds(values)` must be true; `names` are shown with their values on failure."""

    names: tuple[str, ...]
    message: str
    holds: Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class Schema:
    """The parameters of one notebook (name -> constraint, in the parameters cell's order) and its rules."""

    params: dict[str, Constraint]
    rules: list[Rule] = field(default_factory=list)

    def problems(self, values: Mapping[str, Any], stem: str, *, where: str = "", complete: bool = True,
                 rules: bool = True, root: Path | None = None) -> list[str]:
        """Every problem with `values` as one message each (empty when all is well); `complete`: all names needed.

        With `root` (the repository root), a `Folder` parameter must also name a folder that exists.
        """
        head = f"{where}: {stem}" if where else stem
        errors = []
        for name in values:
            if name not in self.params:
                close = difflib.get_close_matches(str(name), list(self.params), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                errors.append(f"{head}: no parameter '{name}'{hint}; its parameters are: {', '.join(self.params)}")
        bad = set()
        for name, constraint in self.params.items():
            if name not in values:
                if complete:
                    errors.append(f"{head}: parameter '{name}' is missing")
                    bad.add(name)
                continue
            message = check_value(constraint, values[name])
            if message is None and root is not None and isinstance(constraint, Folder):
                message = constraint.missing(values[name], root)
            if message:
                errors.append(f"{head}: parameter '{name}' {message}")
                bad.add(name)
        for rule in self.rules if rules else []:
            if bad.intersection(rule.names) or not all(n in values for n in rule.names):
                continue
            if not rule.holds(values):
                shown = ", ".join(f"{n}={values[n]!r}" for n in rule.names)
                errors.append(f"{head}: {rule.message}; got {shown}")
        return errors

    def check(self, values: Mapping[str, Any], stem: str, *, where: str = "", complete: bool = True,
              root: Path | None = None) -> None:
        """Raise ParamError listing every problem with `values` (see `problems`)."""
        if errors := self.problems(values, stem, where=where, complete=complete, root=root):
            raise ParamError("\n".join(errors))


def check_value(constraint: Constraint, value: Any) -> str | None:
    """'must be ...; got ...' when `value` breaks `constraint` (or is not JSON data); None when it is fine."""
    if problem := json_problem(value):
        return f"must be {constraint.describe()}; got {problem}"
    if constraint.ok(value):
        return None
    return f"must be {constraint.describe()}; got {value!r}{number_hint(value, constraint)}"


def number_hint(value: Any, constraint: Constraint) -> str:
    """Advice for a number that YAML read as a string (`1e-3`)."""
    if not (isinstance(value, str) and constraint.wants_number() and "e" in value.lower()):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    written = f"{number:.1e}".replace("e-0", "e-").replace("e+0", "e+")
    return f" (YAML reads {value} as a string: write it with a decimal point, e.g. {written})"
