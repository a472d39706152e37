"""The real/imaginary pair layout of TF complex tensors in the export (`tf_complex`, `tf_fft`).

ONNX has no complex type that runtimes run, so a TF complex tensor of shape ``S`` is written
as a float tensor of shape ``[*S, 2]`` (real, imaginary on the last axis). A handler that
makes a pair tensor calls `make_pair` (or `check_consumers`), which records the tensor and
every complex tensor computed from it, and refuses, naming the node and op, a consumer that
the pair layout would compute wrong (`CONSUMERS` names those it computes right) instead of
letting it run on the pair as if it were real numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto

from .tf_nodes import const

#: complex ONNX types and the real type of their parts
COMPLEX: dict[int, int] = {
    TensorProto.COMPLEX64: TensorProto.FLOAT,
    TensorProto.COMPLEX128: TensorProto.DOUBLE,
}
#: the ONNX opset these handlers are written for (Unsqueeze and ReduceSum take axes inputs)
OPSET = 13

#: op type -> whether it gives a complex tensor, from its node, for each op whose handler
#: takes complex inputs as pairs (`tf_complex` and `tf_fft` fill it)
CONSUMERS: dict[str, Callable[[Any], bool]] = {}

#: the refusals of this export: tf2onnx logs a handler's exception and goes on, so
#: `fxsurgeon.frontdoor.tf_handlers.corrected_handlers` raises them when the export ends
REFUSED: list[str] = []


def refuse(message: str) -> ValueError:
    if message not in REFUSED:
        REFUSED.append(message)
    return ValueError(message)


def pairs(ctx: Any) -> dict[str, int | None]:
    """The tensors of ``ctx`` written as pairs, each with its TF rank (`check_consumers`
    reads it before any handler wrote the tensor: tf2onnx's own handlers keep TF's shapes)."""
    found: dict[str, int | None] = ctx.__dict__.setdefault("_fxsurgeon_complex_pairs", {})
    return found


def real_valued(ctx: Any) -> set[str]:
    """The pair tensors of ``ctx`` made with a zero imaginary part (an FFT of one needs half
    the products for its first axis)."""
    found: set[str] = ctx.__dict__.setdefault("_fxsurgeon_real_valued_pairs", set())
    return found


def check_consumers(ctx: Any, output: str) -> None:
    """Record ``output`` and the complex tensors computed from it as pairs; refuse a complex
    tensor read by an op that the pair layout would compute wrong."""
    found = pairs(ctx)
    found.setdefault(output, ctx.get_rank(output))
    for consumer in ctx.find_output_consumers(output):
        kind = consumer.type
        if kind not in CONSUMERS:
            raise refuse(
                f"{consumer.name}: {kind} of a complex tensor cannot be exported (complex "
                f"tensors are written as real/imaginary pairs; supported: "
                f"{', '.join(sorted(CONSUMERS))})"
            )
        if CONSUMERS[kind](consumer) and consumer.output[0] not in found:
            check_consumers(ctx, consumer.output[0])


def is_complex(ctx: Any, name: str) -> bool:
    """Whether the tensor ``name`` is complex in TF: a pair already, or of a complex type."""
    return name in pairs(ctx) or ctx.get_dtype(name) in COMPLEX


def real_type(ctx: Any, name: str) -> int:
    """The ONNX type of the parts of the complex tensor ``name`` (written or not yet)."""
    dtype: int = ctx.get_dtype(name)
    return COMPLEX.get(dtype, dtype)


def numpy_type(real: int) -> Any:
    return np.float32 if real == TensorProto.FLOAT else np.float64


class Graph:
    """Nodes in ``ctx``, named under ``node``'s scope: ``g("Mul", a, b)`` is the output name."""

    def __init__(self, ctx: Any, node: Any) -> None:
        self.ctx = ctx
        self.scope = {"op_name_scope": node.name}

    def __call__(self, op: str, *inputs: str, **attr: Any) -> str:
        output: str = self.ctx.make_node(op, list(inputs), attr=attr, **self.scope).output[0]
        return output

    def const(self, value: Any, dtype: Any = np.int64) -> str:
        return const(self.ctx, value, dtype)

    def part(self, x: str, index: int) -> str:
        """The real (0) or imaginary (1) part of the pair tensor ``x``."""
        return self("Gather", x, self.const(index), axis=-1)


def parts(g: Graph, node: Any, x: str) -> tuple[str, str]:
    """The real and imaginary parts of the complex input ``x`` of ``node``: of a pair tensor,
    or the two constants of a complex constant (folded by TF: not written as a pair)."""
    if x in pairs(g.ctx):
        return g.part(x, 0), g.part(x, 1)
    if g.ctx.is_const(x):
        value = np.asarray(g.ctx.get_tensor_value(x, as_list=False))
        dtype = numpy_type(real_type(g.ctx, x))
        return g.const(value.real, dtype), g.const(value.imag, dtype)
    raise refuse(f"{node.name}: {node.type} of a complex tensor not made by a supported op")


def finish(
    ctx: Any, node: Any, op: str, inputs: list[str], real: int, shape: Any, **attr: Any
) -> None:
    """Make ``node`` the ONNX ``op`` on ``inputs``: a pair tensor of float type ``real``."""
    node.type = op
    for key in list(node.attr):
        del node.attr[key]
    for key, value in attr.items():
        node.set_attr(key, value)
    ctx.replace_inputs(node, inputs)
    ctx.set_dtype(node.output[0], real)
    ctx.set_shape(node.output[0], None if shape is None else [*shape, 2])


def make_pair(ctx: Any, node: Any, re: str, im: str, real: int, zero: bool = False) -> None:
    """Make ``node`` the pair of ``re`` and ``im`` (of one shape, TF's shape of ``node``;
    ``zero``: ``im`` is zeros)."""
    if zero:
        real_valued(ctx).add(node.output[0])
    g = Graph(ctx, node)
    last = g.const([-1])
    joined = [g("Unsqueeze", x, last) for x in (re, im)]
    shape = ctx.get_shape(node.output[0])
    check_consumers(ctx, node.output[0])
    finish(ctx, node, "Concat", joined, real, shape, axis=-1)
