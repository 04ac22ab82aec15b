"""Exceptions of leaky: each says what was wrong and what was expected."""


class LeakyError(Exception):
    """Base class of every error leaky raises on purpose."""


class ConfigError(LeakyError, ValueError):
    """An invalid configuration value (``NetworkConfig``, critic or learner options)."""


class InputError(LeakyError, ValueError):
    """An array given to the library has the wrong shape, dtype or non-finite values."""


class DivergenceError(LeakyError, FloatingPointError):
    """Voltages or weights became non-finite during training."""


class TraceError(LeakyError, OSError):
    """A trace file is corrupt, truncated, foreign or cannot be written."""


def describe(x) -> str:
    """Short description of an array-like for error messages: type, shape and dtype."""
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is None:
        return f"{type(x).__name__} {x!r}"[:80]
    return f"{type(x).__module__.split('.')[0]}.{type(x).__name__} of shape {tuple(shape)} and dtype {dtype}"
