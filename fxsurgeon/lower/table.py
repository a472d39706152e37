"""The lowering table: onnx2torch class name -> the function that writes it as plain torch calls."""

from __future__ import annotations

from collections.abc import Callable

from torch import fx, nn

from .values import LoweringContext, Value

# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------

LowerFn = Callable[[LoweringContext, nn.Module, fx.Node, list], Value]
LOWERINGS: dict[str, LowerFn] = {}


def lowering(*class_names: str):
    def register(fn: LowerFn) -> LowerFn:
        for name in class_names:
            LOWERINGS[name] = fn
        return fn

    return register
