"""The errors fxsurgeon raises. Each says where: which file, node or rule."""

from __future__ import annotations

__all__ = [
    "FxSurgeonError",
    "InputError",
    "LoweringError",
    "PatternError",
    "ConvergenceError",
]


class FxSurgeonError(Exception):
    """Base class of every error fxsurgeon raises on purpose."""


class InputError(FxSurgeonError, ValueError):
    """The input is not what fxsurgeon can work on (wrong type, corrupt file, bad reference)."""


class LoweringError(FxSurgeonError):
    """An onnx2torch module could not be written as torch calls; names the node."""


class PatternError(FxSurgeonError):
    """A pattern file or rule is malformed; names the file, line and rule."""


class ConvergenceError(FxSurgeonError):
    """A rewrite phase did not reach a fixed point; names the rules that fired last."""
