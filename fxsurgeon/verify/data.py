"""The small records and constants the verifier passes around: input specs, cases, outputs,
tolerances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_TINY = float(np.finfo(np.float32).tiny)
_LOW_PRECISION = ("float16", "bfloat16")
_DEFAULT_TOL = {  # dtype -> (atol, rtol) for the element-wise rule
    "float64": (1e-7, 0.0),
    "float32": (1e-5, 0.0),
    "float16": (1e-3, 1e-3),
    "bfloat16": (1e-2, 1.6e-2),
}
_FP64_MULTIPLIER = 3.0
_FP64_FLOOR = 1e-5
_DEFAULT_VOCAB = 100
# ONNX ops that carry integer indices through unchanged (for finding the
# embedding table an ids input indexes).
# Their first operand is the data: a Slice or Gather of it (LayoutLMv3's ``bbox[:, :, 0]``)
# holds its values, a Clip bounds them.
_INDEX_PRESERVING_OPS = frozenset(
    {"Cast", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Expand", "Transpose"}
    | {"Slice", "Gather", "Split", "Clip"}
)
#: ops an index goes through at any operand on its way to a Gather: Keras 3's Embedding
#: wraps negative ids as ``where(ids < 0, ids + rows, ids)``, which tf2onnx writes with
#: Mul/Add by the condition's 0/1 casts; the table's rows still bound the input ids. A
#: difference of two coordinates (a box's width) or a clamp of one (``clip_by_value``
#: as Min and Max) is read by a table too; Concat joins indices
_INDEX_SELECTING_OPS = frozenset({"Add", "Mul", "Where", "Sub", "Min", "Max", "Concat"})


# --------------------------------------------------------------------------- data


@dataclass
class _Spec:
    """One input of a signature: name, shape (None = dynamic dim), numpy dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype


@dataclass
class _Case:
    """The inputs of one case, in signature order; ``names`` None when unknown."""

    names: list[str] | None
    arrays: list[np.ndarray]
    batch: int | None

    def shapes(self) -> dict[str, tuple[int, ...]]:
        names = self.names or [f"input{i}" for i in range(len(self.arrays))]
        return {n: tuple(a.shape) for n, a in zip(names, self.arrays, strict=True)}


@dataclass
class _Out:
    """One flattened output: its name (None when positional), values and dtype name."""

    name: str | None
    array: np.ndarray
    dtype: str


def _shape_text(shape: Sequence[int | None] | None) -> str:
    if shape is None:
        return "-"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    return f"{value:.2e}"
