"""Declarative checks of configuration dataclasses: one rule per field, run when a config is made.

A config class carries a rule for every one of its fields as ``RULES`` and calls
:func:`check_fields` first thing in ``__post_init__``; cross-field conditions follow it there.
Each rule says what it accepts in words, so an error reads ``LocalConfig.lr_actor: got 'abc',
expected a finite number >= 0``::

    @dataclass(frozen=True)
    class LocalConfig:
        ...
        def __post_init__(self):
            check_fields(self, self.RULES)

    LOCAL_RULES = {"lr_actor": Real(low=0.0), "batch_size": Int(low=1),
                   "family": Choice(FAMILIES), "graph": Bool(), ...}
    LocalConfig.RULES = LOCAL_RULES

A subclass that adds fields inherits ``__post_init__`` and only extends the rules::

    SharedCriticConfig.RULES = {**DDPG_RULES, "feedback_rate": Real(low=0.0)}

A field without a rule is refused (:class:`MissingRule`, a programming error, not a user's), so
a new option cannot skip validation. Rules also normalise: an ``Int`` accepts ``1e5`` (a
float with an integral value, as JSON writes it) and stores ``100000``; ``Ints`` stores a tuple.
Rejected, whatever the rule: ``bool`` where a number is expected (``True`` is not 1 here),
strings where numbers are, NaN and infinities.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from leaky.core.errors import ConfigError


class MissingRule(TypeError):
    """A config dataclass has a field that its rules do not cover (a bug in leaky, not input)."""


class Rule:
    """Checks and normalises one value; :attr:`expected` says what it accepts."""

    expected = "a valid value"

    def __call__(self, value):
        """The value to store, or raise :class:`ValueError` (the caller names the field)."""
        raise NotImplementedError


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _bounds(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def _in_bounds(x, low, high, low_open, high_open) -> bool:
    if low is not None and (x <= low if low_open else x < low):
        return False
    if high is not None and (x >= high if high_open else x > high):
        return False
    return True


class Real(Rule):
    """A finite real number (an int is fine), optionally bounded; stored as a float."""

    def __init__(self, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open
        self.expected = "a finite number" + _bounds(low, high, low_open, high_open)

    def __call__(self, value):
        if not _is_number(value) or not math.isfinite(value) \
                or not _in_bounds(value, self.low, self.high, self.low_open, self.high_open):
            raise ValueError(self.expected)
        return float(value)


class Int(Rule):
    """An integer (or a float with an integral value, e.g. JSON's ``1e5``), optionally bounded."""

    def __init__(self, low: int | None = None, high: int | None = None):
        self.low, self.high = low, high
        self.expected = "an int" + _bounds(low, high, False, False)

    def __call__(self, value):
        if not _is_number(value) or not math.isfinite(value) or int(value) != value \
                or not _in_bounds(value, self.low, self.high, False, False):
            raise ValueError(self.expected)
        return int(value)


class Bool(Rule):
    """``True`` or ``False`` (JSON's ``true``/``false``), nothing else."""

    expected = "true or false"

    def __call__(self, value):
        if not isinstance(value, bool):
            try:
                import numpy as np

                if isinstance(value, np.bool_):
                    return bool(value)
            except ImportError:  # pragma: no cover
                pass
            raise ValueError(self.expected)
        return value


class Choice(Rule):
    """One of a fixed set of values (strings, as a rule)."""

    def __init__(self, options: Iterable):
        self.options = tuple(options)
        self.expected = f"one of {list(self.options)}"

    def __call__(self, value):
        if isinstance(value, bool) or value not in self.options:
            raise ValueError(self.expected)
        return value


class Text(Rule):
    """A non-empty string."""

    expected = "a non-empty string"

    def __call__(self, value):
        if not isinstance(value, str) or not value:
            raise ValueError(self.expected)
        return value


class Ints(Rule):
    """A sequence of ints, each >= ``low`` (layer widths), of at least ``min_len`` entries;
    stored as a tuple."""

    def __init__(self, low: int = 1, min_len: int = 0):
        self.item, self.min_len = Int(low=low), min_len
        self.expected = (f"{'one or more' if min_len else 'a list of'} ints >= {low}"
                         f"{' (layer sizes)' if low >= 1 else ''}")

    def __call__(self, value):
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
            raise ValueError(self.expected)
        items = tuple(value)
        if len(items) < self.min_len:
            raise ValueError(self.expected)
        try:
            return tuple(self.item(v) for v in items)
        except ValueError:
            raise ValueError(self.expected) from None


class Dict(Rule):
    """A dict (options handed on to another config, which checks them itself)."""

    expected = "a mapping of names to values"

    def __call__(self, value):
        if not isinstance(value, Mapping):
            raise ValueError(self.expected)
        return dict(value)


class Optional(Rule):
    """``None`` or what ``rule`` accepts."""

    def __init__(self, rule: Rule):
        self.rule = rule
        self.expected = f"{rule.expected} or null"

    def __call__(self, value):
        return None if value is None else self.rule(value)


def check_fields(config, rules: Mapping[str, Rule]) -> None:
    """Check (and normalise, in place) every field of the dataclass instance ``config``.

    Raises
    ------
    ConfigError
        ``<Class>.<field>: got <value>, expected <what the rule accepts>``, with the attributes
        ``owner``, ``field`` and ``value`` set, for the first field that fails.
    MissingRule
        When a field has no rule.
    """
    owner = type(config).__name__
    for f in dataclasses.fields(config):
        rule = rules.get(f.name)
        if rule is None:
            raise MissingRule(f"{owner}.{f.name} has no validation rule; add one to {owner}.RULES "
                              f"(leaky/core/validate.py)")
        value = getattr(config, f.name)
        try:
            checked = rule(value)
        except ValueError:
            raise config_error(owner, f.name, value, rule.expected) from None
        if checked is not value:
            object.__setattr__(config, f.name, checked)


def config_error(owner: str, field: str, value: Any, expected: str) -> ConfigError:
    """A :class:`ConfigError` ``owner.field: got value, expected …`` carrying its parts."""
    err = ConfigError(f"{owner}.{field}: got {_show(value)}, expected {expected}")
    err.owner, err.field, err.value, err.expected = owner, field, value, expected
    return err


def show(value) -> str:
    """``repr`` of a value for an error message, cut to 60 characters."""
    return _show(value)


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
