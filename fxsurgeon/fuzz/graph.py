"""The ONNX graph builder the blocks write into, and the case it makes."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

OPSET = 17
#: (batch, dynamic sequence length) of the two comparisons with onnxruntime.
CHECK_SIZES = ((1, 3), (4, 6))
NEAR_MISS = 0.4
_F32 = np.float32
_SQRT_2_OVER_PI = float(np.float32(math.sqrt(2 / math.pi)))
_SQRT_HALF = float(np.float32(math.sqrt(0.5)))
_SQRT_2 = float(np.float32(math.sqrt(2)))
_INT64_MAX = 2**63 - 1


# --------------------------------------------------------------------------- graphs


@dataclass
class _T:
    """A tensor of the graph being built: its name and shape.

    A dynamic dim is a string naming it: ``"N"`` (the batch), ``"S"`` (the
    input's sequence), or a fresh name for a size derived at run time, so
    two dims are the same only when their names are.
    """

    name: str
    shape: tuple[Any, ...]  # int, or str for a dynamic dim
    dtype: Any = _F32

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass
class FuzzCase:
    """One generated graph: the ONNX model and what its blocks are.

    ``blocks`` reads like ``["dense.tensordot", "gelu_tanh~c2=0.05"]`` (``~``
    marks a near miss); ``exact`` / ``near`` count the blocks per rule family
    they exercise.
    """

    seed: int
    model: Any
    blocks: list[str]
    exact: Counter = field(default_factory=Counter)
    near: Counter = field(default_factory=Counter)
    inputs: list[tuple[str, tuple[str | int, ...], Any]] = field(default_factory=list)
    vocab: int = 0  # rows of the embedding table ``ids`` index


class _Skip(Exception):  # noqa: N818 - control flow inside the generator
    """A block does not apply to the current tensor."""


class _Graph:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.inputs: list[Any] = []
        self.outputs: list[_T] = []
        self.input_specs: list[tuple[str, tuple, Any]] = []
        self.count = 0
        self.blocks: list[str] = []
        self.exact: Counter = Counter()
        self.near: Counter = Counter()
        self.mask: _T | None = None
        self.vocab = 0

    # -- names and constants ------------------------------------------------------
    def fresh(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, value: Any, dtype: Any = _F32, name: str | None = None) -> str:
        from onnx import numpy_helper

        name = name or self.fresh("const")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def ints(self, values: Sequence[int]) -> str:
        return self.const(list(values), np.int64, self.fresh("shape"))

    def weight(self, value: np.ndarray, role: str = "kernel") -> str:
        """A float initializer named like a tf2onnx variable read half of the time."""
        if self.rng.random() < 0.5:
            name = f"{self.fresh('layer')}/{role}/ReadVariableOp:0"
        else:
            name = self.fresh(role)
        return self.const(np.asarray(value, _F32), _F32, name)

    def randn(self, *shape: int, scale: float = 1.0) -> np.ndarray:
        return (self.rng.standard_normal(shape) * scale).astype(_F32)

    def op(self, op_type: str, inputs: Sequence[str], outputs: int = 1, **attrs: Any) -> Any:
        from onnx import helper

        names = [self.fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(
            helper.make_node(op_type, list(inputs), names, name=self.fresh(op_type), **attrs)
        )
        return names[0] if outputs == 1 else names

    def pick(self, options: Sequence[Any]) -> Any:
        return options[int(self.rng.integers(len(options)))]

    def integers(self, low: int, high: int) -> int:
        return int(self.rng.integers(low, high))

    def coin(self, p: float = 0.5) -> bool:
        return bool(self.rng.random() < p)

    def ordered(self, a: str, b: str) -> list[str]:
        """Both operands, in a random order (for commutative ops)."""
        return [a, b] if self.coin() else [b, a]

    def binary(self, op_type: str, a: str, b: str) -> str:
        if op_type in ("Add", "Mul"):
            return self.op(op_type, self.ordered(a, b))
        return self.op(op_type, [a, b])

    def scalar(self, value: float) -> str:
        """A float32 scalar constant, 0-d or [1] (tf2onnx writes both)."""
        return self.const(value if self.coin() else [value])

    def extra_output(self, name: str, dtype: Any = _F32) -> None:
        """A graph output reading an intermediate: a user outside any pattern."""
        self.outputs.append(_T(name, (), dtype))

    # -- shapes --------------------------------------------------------------------
    def shape_prefix(self, x: _T, keep: int) -> str:
        """An int64 1-D tensor holding ``x.shape[:keep]`` at run time, tf2onnx style."""
        shape = self.op("Shape", [x.name])
        int32 = self.coin()
        if int32:
            shape = self.op("Cast", [shape], to=6)  # INT32, as tf2onnx does
        style = self.pick(("slice", "gather"))
        if style == "slice":
            part = self.op(
                "Slice",
                [shape, self.ints([0]), self.ints([keep]), self.ints([0])],
            )
            if int32:
                part = self.op("Cast", [part], to=7)
            return part
        items = []
        for i in range(keep):
            item = self.op("Gather", [shape, self.const(i, np.int64)], axis=0)
            item = self.op("Unsqueeze", [item, self.ints([0])])
            items.append(self.op("Cast", [item], to=7) if int32 else item)
        return items[0] if keep == 1 else self.op("Concat", items, axis=0)

    def reshape(self, x: _T, keep: int, tail: Sequence[int]) -> _T:
        """Reshape to ``x.shape[:keep] + tail``: zeros, a shape chain, or -1 for one dynamic dim."""
        lead = list(x.shape[:keep])
        dynamic = [i for i, d in enumerate(lead) if not isinstance(d, int)]
        styles = ["chain", "zeros"]
        if len(dynamic) == 1 and -1 not in tail:
            styles.append("minus_one")
        style = self.pick(styles)
        if style == "zeros":
            target = self.ints([0] * keep + list(tail))
        elif style == "minus_one":
            target = self.ints([d if isinstance(d, int) else -1 for d in lead] + list(tail))
        else:
            target = self.op("Concat", [self.shape_prefix(x, keep), self.ints(tail)], axis=0)
        out = self.op("Reshape", [x.name, target])
        return _T(out, tuple(lead) + _resolve_tail(self, x, keep, tail))

    def block(self, tag: str, family: str, near: bool) -> None:
        self.blocks.append(tag)
        (self.near if near else self.exact)[family] += 1


def _resolve_tail(g: _Graph, x: _T, keep: int, tail: Sequence[int]) -> tuple[int | str, ...]:
    if -1 not in tail:
        return tuple(tail)
    rest = x.shape[keep:]
    known = math.prod(d for d in tail if d != -1)
    if not all(isinstance(d, int) for d in rest):
        return tuple(g.fresh("dyn") if d == -1 else d for d in tail)
    return tuple(math.prod(rest) // known if d == -1 else d for d in tail)  # type: ignore[arg-type]


def _static(x: _T, axis: int) -> bool:
    return isinstance(x.shape[axis], int)
