"""Lowering: every onnx2torch module becomes a plain torch call.

One table (`LOWERINGS`) maps each onnx2torch class, and each torch.nn module
class that onnx2torch emits, to a function that writes what the ONNX node
means as native torch calls in a new graph. The function sees its inputs as
one of three kinds of value:

* `Const`: a tensor known now (an initializer, or folded from constants);
* `Sym`: a small integer tensor whose elements are Python ints or graph nodes
  that evaluate to ints at run time (``x.size(0)``). This is where the
  tf2onnx shape arithmetic (Shape -> Cast -> Gather -> Unsqueeze -> Concat)
  lives: it becomes Python int arithmetic, never a tensor;
* an `fx.Node` of the new graph: a tensor computed at run time.

Constant-only subgraphs fold into `Const`; weights (float initializers with
more than one element) stay graph constants so that later passes can turn
them into parameters. The canonical form every later pattern is written
against: arithmetic as `operator` calls (``x * 0.5``), everything else as
``torch.*``/``torch.nn.functional.*`` functions with static arguments as
Python literals.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .errors import LoweringError
from .shapes import dtype_of, shape_of

__all__ = ["Const", "Sym", "LOWERINGS", "lower_graph", "LoweringResult", "is_onnx2torch_module"]

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


@dataclass
class Const:
    """A tensor known at optimize time. `initializer` names its ONNX origin."""

    value: torch.Tensor
    initializer: str | None = None

    @property
    def is_weight(self) -> bool:
        """Weights stay in the graph (they become parameters); the rest folds."""
        return (
            self.value.is_floating_point()
            and self.value.numel() > 1
            and self.initializer is not None
        )


@dataclass
class Sym:
    """A 0-d or 1-d integer tensor whose elements are ints or int-valued nodes."""

    items: list
    scalar: bool = False
    dtype: torch.dtype = torch.int64

    @property
    def is_static(self) -> bool:
        return all(isinstance(i, int) for i in self.items)

    def to_const(self) -> Const:
        value = torch.tensor(self.items, dtype=self.dtype)
        return Const(value.reshape(()) if self.scalar else value)


Value = Any  # Const | Sym | fx.Node | list


def is_onnx2torch_module(module: nn.Module) -> bool:
    return type(module).__module__.startswith("onnx2torch")


class LoweringContext:
    """What a lowering function may use to write into the new graph."""

    def __init__(self, graph: fx.Graph, root: nn.Module, anchor: fx.Node):
        self.graph = graph
        self.root = root
        self.anchor = anchor  # a placeholder, for the device of created tensors
        self.node: fx.Node | None = None  # the original node being lowered
        self.rule = "lower"
        self.initializer_of: Callable[[str], str | None] = lambda name: None
        self._size_cache: dict[tuple[fx.Node, int], fx.Node] = {}
        self._const_count = 0
        self._const_cache: dict[int, str] = {}

    # -- writing nodes -------------------------------------------------------
    def call(self, target: Callable, *args, **kwargs) -> fx.Node:
        node = self.graph.call_function(target, tuple(args), kwargs)
        self._tag(node)
        return node

    def method(self, name: str, *args, **kwargs) -> fx.Node:
        node = self.graph.call_method(name, tuple(args), kwargs)
        self._tag(node)
        return node

    def _tag(self, node: fx.Node) -> None:
        if self.node is not None:
            node.meta["fxsurgeon.rule"] = self.rule
            node.meta["fxsurgeon.onnx_node"] = str(self.node.target)

    # -- turning values into graph arguments -----------------------------------
    def tensor(self, value: Value) -> fx.Node:
        """A graph node holding `value` as a tensor."""
        if isinstance(value, fx.Node):
            return value
        if isinstance(value, Sym):
            if value.is_static:
                return self.tensor(value.to_const())
            node = self.call(
                torch.tensor, list(value.items), dtype=value.dtype, device=self.device()
            )
            return self.call(torch.reshape, node, ()) if value.scalar else node
        if isinstance(value, Const):
            return self.constant(value)
        raise LoweringError(f"cannot use {type(value).__name__} as a tensor")

    def operand(self, value: Value, other_shape: tuple | None = None) -> Any:
        """Like `tensor`, but a one-element constant that broadcasting does not
        widen becomes a Python scalar (``x * 0.5`` rather than a buffer)."""
        scalar = self.scalar_of(value, other_shape)
        return scalar if scalar is not None else self.tensor(value)

    def scalar_of(self, value: Value, other_shape: tuple | None) -> int | float | None:
        if isinstance(value, Sym) and value.scalar and len(value.items) == 1:
            item = value.items[0]
            return item if other_shape is not None else None
        if not isinstance(value, Const) or value.value.numel() != 1 or other_shape is None:
            return None
        if value.value.dim() > len(other_shape) or value.value.dtype == torch.bool:
            return None
        return value.value.item()

    def constant(self, const: Const) -> fx.Node:
        """A get_attr for a constant; one buffer per distinct tensor object."""
        key = id(const.value)
        name = self._const_cache.get(key)
        if name is None:
            base = "weights" if const.is_weight else "consts"
            if not hasattr(self.root, base):
                self.root.add_module(base, nn.Module())
            holder = getattr(self.root, base)
            name = f"c{self._const_count}"
            self._const_count += 1
            holder.register_buffer(name, const.value)
            name = f"{base}.{name}"
            self._const_cache[key] = name
        node = self.graph.get_attr(name)
        node.meta["fxs_shape"] = tuple(const.value.shape)
        node.meta["fxs_dtype"] = const.value.dtype
        if const.initializer is not None:
            node.meta["fxsurgeon.initializer"] = const.initializer
        if self.node is not None:
            node.meta["fxsurgeon.onnx_node"] = str(self.node.target)
        return node

    def device(self) -> fx.Node:
        return self.graph.call_function(getattr, (self.anchor, "device"))

    def size(self, x: fx.Node, dim: int) -> int | fx.Node:
        """x.shape[dim] as an int when static, else a ``x.size(dim)`` node."""
        shape = shape_of(x)
        if shape is None:
            raise LoweringError(f"no shape known for {x.format_node()}")
        dim = dim % len(shape)
        if shape[dim] is not None:
            return shape[dim]
        key = (x, dim)
        if key not in self._size_cache:
            node = self.graph.call_method("size", (x, dim))
            self._size_cache[key] = node
        return self._size_cache[key]


# ---------------------------------------------------------------------------
# Helpers on values
# ---------------------------------------------------------------------------


def const_ints(value: Value, what: str) -> list[int]:
    """Static integer contents of a value (axes, starts, pads, ...)."""
    if isinstance(value, Sym) and value.is_static:
        return list(value.items)
    if isinstance(value, Const):
        return [int(v) for v in value.value.reshape(-1).tolist()]
    raise LoweringError(f"{what} must be known at optimize time, got a run-time value")


def rank_of(x: fx.Node) -> int:
    shape = shape_of(x)
    if shape is None:
        raise LoweringError(f"no shape known for {x.format_node()}")
    return len(shape)


def _sym_from_const(value: Const) -> Sym | None:
    """Integer constants with few elements take part in shape arithmetic."""
    v = value.value
    if v.is_floating_point() or v.dtype == torch.bool or v.dim() > 1 or v.numel() > 16:
        return None
    return Sym([int(i) for i in v.reshape(-1).tolist()], scalar=v.dim() == 0, dtype=v.dtype)


def as_sym(value: Value) -> Sym | None:
    if isinstance(value, Sym):
        return value
    if isinstance(value, Const):
        return _sym_from_const(value)
    return None


def set_meta(node: Any, like: fx.Node) -> Any:
    """Copy the original node's recorded shape onto the node that replaces it."""
    if isinstance(node, fx.Node):
        for key in ("fxs_shape", "fxs_dtype"):
            if key in like.meta:
                node.meta[key] = like.meta[key]
    return node


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


# -- shape and casting ---------------------------------------------------------


@lowering("OnnxShape")
def _shape(ctx, mod, node, args):
    (x,) = args
    if isinstance(x, Const):
        shape = list(x.value.shape)
    elif isinstance(x, Sym):
        shape = [] if x.scalar else [len(x.items)]
    else:
        shape = [ctx.size(x, i) for i in range(rank_of(x))]
    start, end = mod._start, mod._end
    return Sym(shape[start:end])


@lowering("OnnxCast")
def _cast(ctx, mod, node, args):
    (x,) = args
    dtype = mod.torch_dtype
    if isinstance(x, Sym) and not dtype.is_floating_point and dtype != torch.bool:
        return Sym(list(x.items), x.scalar, dtype)
    if isinstance(x, Const):
        return Const(x.value.to(dtype))
    x = ctx.tensor(x)
    if dtype_of(x) == dtype:
        return x
    return ctx.method("to", x, dtype)


@lowering("OnnxCopyIdentity", "Identity", "Dropout", "OnnxDropoutDynamic")
def _identity(ctx, mod, node, args):
    return args[0]


@lowering("OnnxConstant")
def _constant(ctx, mod, node, args):
    value = mod.value
    if not isinstance(value, torch.Tensor):
        value = torch.tensor(value)
    return Const(value.clone())


# -- shape arithmetic and data movement ------------------------------------------


@lowering("OnnxGather")
def _gather(ctx, mod, node, args):
    data, indices = args
    axis = mod._axis
    sym, idx = as_sym(data), as_sym(indices)
    if isinstance(data, Sym) and idx is not None and idx.is_static and axis == 0:
        picked = [data.items[i] for i in idx.items]
        return Sym(picked, scalar=idx.scalar, dtype=data.dtype)
    if isinstance(data, Const) and isinstance(indices, Const):
        return Const(_onnx_gather(data.value, indices.value, axis))
    if sym is not None and isinstance(data, Sym):
        data = ctx.tensor(data)
    x = ctx.tensor(data)
    rank = rank_of(x)
    axis = axis % rank
    if idx is not None and idx.is_static and idx.scalar:
        return ctx.call(torch.select, x, axis, idx.items[0])
    index = ctx.tensor(indices)
    if axis == 0:
        return ctx.call(operator.getitem, x, index)
    return ctx.call(operator.getitem, x, (slice(None),) * axis + (index,))


def _onnx_gather(data: torch.Tensor, indices: torch.Tensor, axis: int) -> torch.Tensor:
    axis = axis % data.dim()
    return data[(slice(None),) * axis + (indices.long(),)]


@lowering("OnnxUnsqueezeStaticAxes", "OnnxUnsqueezeDynamicAxes")
def _unsqueeze(ctx, mod, node, args):
    x = args[0]
    axes = const_ints(args[1], "Unsqueeze axes") if len(args) > 1 else list(mod._axes)
    if isinstance(x, Sym) and x.scalar and axes in ([0], [-1]):
        return Sym(list(x.items), scalar=False, dtype=x.dtype)
    if isinstance(x, Const):
        return Const(_unsqueeze_tensor(x.value, axes))
    x = ctx.tensor(x)
    out_rank = rank_of(x) + len(axes)
    for axis in sorted(a % out_rank for a in axes):
        x = ctx.call(torch.unsqueeze, x, axis)
    return x


def _unsqueeze_tensor(value: torch.Tensor, axes: list[int]) -> torch.Tensor:
    out_rank = value.dim() + len(axes)
    for axis in sorted(a % out_rank for a in axes):
        value = value.unsqueeze(axis)
    return value


@lowering("OnnxSqueezeStaticAxes", "OnnxSqueezeDynamicAxes")
def _squeeze(ctx, mod, node, args):
    x = args[0]
    if len(args) > 1 and args[1] is not None:
        axes = const_ints(args[1], "Squeeze axes")
    else:
        axes = list(getattr(mod, "axes", None) or [])
    if isinstance(x, Sym) and not x.scalar and len(x.items) == 1 and axes in ([], [0], [-1]):
        return Sym(list(x.items), scalar=True, dtype=x.dtype)
    if isinstance(x, Const):
        value = x.value
        dims = (
            [a % value.dim() for a in axes]
            if axes
            else [i for i, d in enumerate(value.shape) if d == 1]
        )
        return Const(value.squeeze(tuple(dims)) if dims else value)
    x = ctx.tensor(x)
    shape = shape_of(x)
    if axes:
        dims = tuple(sorted(a % len(shape) for a in axes))
    else:
        dims = tuple(i for i, d in enumerate(shape) if d == 1)
        if any(d is None for d in shape):
            raise LoweringError("Squeeze without axes on a tensor with dynamic dims")
    return ctx.call(torch.squeeze, x, dims)


@lowering("OnnxConcat")
def _concat(ctx, mod, node, args):
    syms = [as_sym(a) for a in args]
    if all(s is not None and not s.scalar for s in syms) and any(isinstance(a, Sym) for a in args):
        return Sym([item for s in syms for item in s.items], dtype=syms[0].dtype)
    if all(isinstance(a, Const) for a in args):
        return Const(torch.cat([a.value for a in args], dim=mod.axis))
    return ctx.call(torch.cat, [ctx.tensor(a) for a in args], dim=mod.axis)


@lowering("OnnxReshape")
def _reshape(ctx, mod, node, args):
    data, shape = args
    target = as_sym(shape)
    if target is None:
        raise LoweringError("Reshape target shape must be a shape computation or a constant")
    items = list(target.items)
    if isinstance(data, Const) and target.is_static:
        return Const(data.value.reshape(_resolve_zeros(items, list(data.value.shape))))
    if isinstance(data, Sym):
        data = ctx.tensor(data)
    x = ctx.tensor(data)
    in_shape = shape_of(x)
    # ONNX: 0 copies the input dim (allowzero=0, the only form tf2onnx emits).
    items = [ctx.size(x, i) if (isinstance(v, int) and v == 0) else v for i, v in enumerate(items)]
    out_shape = shape_of(node)
    if out_shape is not None and len(out_shape) == len(items):
        # a -1 whose size the shape run saw as static is that size
        items = [
            d if (isinstance(v, int) and v == -1 and d is not None) else v
            for v, d in zip(items, out_shape, strict=True)
        ]
    items = _one_dynamic_to_minus_one(items)
    if in_shape is not None and tuple(in_shape) == tuple(items):
        return x
    return ctx.call(torch.reshape, x, tuple(items))


def _resolve_zeros(items: list[int], shape: list[int]) -> list[int]:
    return [shape[i] if v == 0 else v for i, v in enumerate(items)]


def _one_dynamic_to_minus_one(items: list) -> list:
    """[s0, 197, 768] -> [-1, 197, 768]: one run-time size can be inferred."""
    dynamic = [i for i, v in enumerate(items) if not isinstance(v, int)]
    if len(dynamic) == 1 and -1 not in items:
        items = list(items)
        items[dynamic[0]] = -1
    return items


@lowering("OnnxFlatten", "Flatten")
def _flatten(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    if isinstance(mod, nn.Flatten):
        return ctx.call(torch.flatten, x, mod.start_dim, mod.end_dim)
    # ONNX Flatten(axis) is always 2-D: [prod(d[:axis]), prod(d[axis:])].
    rank = rank_of(x)
    axis = mod.axis + rank if mod.axis < 0 else mod.axis
    if axis == 0 or axis == rank:
        return ctx.call(torch.reshape, x, (1, -1) if axis == 0 else (-1, 1))
    if axis > 1:
        x = ctx.call(torch.flatten, x, 0, axis - 1)
    return ctx.call(torch.flatten, x, 1) if rank - axis > 1 else x


def _product(ctx, items: list) -> int | fx.Node:
    result: int | fx.Node = 1
    for item in items:
        result = _arith(ctx, operator.mul, result, item)
    return result


def _arith(ctx, op, a, b):
    if isinstance(a, int) and isinstance(b, int):
        return _int_op(op, a, b)
    if op is operator.mul and (a == 1 or b == 1):
        return b if a == 1 else a
    node = ctx.call(op, a, b)
    return node


def _int_op(op, a: int, b: int) -> int:
    if op is operator.floordiv:  # ONNX integer Div truncates toward zero
        return int(a / b) if (a < 0) != (b < 0) else a // b
    return op(a, b)


@lowering("OnnxTranspose")
def _transpose(ctx, mod, node, args):
    (x,) = args
    if isinstance(x, Const):
        perm = mod.perm or list(range(x.value.dim()))[::-1]
        if not x.is_weight:
            return Const(x.value.permute(perm).contiguous())
    x = ctx.tensor(x)
    perm = list(mod.perm) if mod.perm is not None else list(range(rank_of(x)))[::-1]
    if perm == list(range(len(perm))):
        return x
    return ctx.call(torch.permute, x, tuple(perm))


@lowering("OnnxTile")
def _tile(ctx, mod, node, args):
    x, repeats = args
    reps = as_sym(repeats)
    if reps is None:
        raise LoweringError("Tile repeats must be known at optimize time or a shape computation")
    if isinstance(x, Const) and reps.is_static:
        return Const(x.value.repeat(reps.items))
    x = ctx.tensor(x)
    if all(isinstance(r, int) and r == 1 for r in reps.items):
        return x
    return ctx.method("repeat", x, *reps.items)


@lowering("OnnxExpand")
def _expand(ctx, mod, node, args):
    x, shape = args
    target = as_sym(shape)
    if target is None:
        raise LoweringError("Expand shape must be known at optimize time or a shape computation")
    if isinstance(x, Const) and target.is_static:
        out = torch.broadcast_shapes(tuple(x.value.shape), tuple(target.items))
        return Const(x.value.expand(out).clone())
    x = ctx.tensor(x)
    in_shape = shape_of(x)
    out_rank = max(len(in_shape), len(target.items))
    padded_in = (1,) * (out_rank - len(in_shape)) + tuple(in_shape)
    padded_t = [1] * (out_rank - len(target.items)) + list(target.items)
    sizes = []
    for d_in, d_t in zip(padded_in, padded_t, strict=True):
        if isinstance(d_t, int) and d_t == 1:
            sizes.append(-1 if d_in != 1 else 1)
        elif d_in == 1:
            sizes.append(d_t)
        elif d_in is None and not isinstance(d_t, int):
            raise LoweringError("Expand of a dynamic dim to a dynamic size")
        else:
            sizes.append(-1)  # equal sizes, or the target broadcasts to the input
    if all(s == -1 for s in sizes) and len(in_shape) == out_rank:
        return x
    return ctx.method("expand", x, *sizes)


@lowering("OnnxSlice", "OnnxSliceV9")
def _slice(ctx, mod, node, args):
    if type(mod).__name__ == "OnnxSliceV9":
        raise LoweringError("Slice-1..9 (attributes form) is not lowered yet")
    data, starts, ends = args[:3]
    axes = args[3] if len(args) > 3 else None
    steps = args[4] if len(args) > 4 else None
    starts = const_ints(starts, "Slice starts")
    ends = const_ints(ends, "Slice ends")
    axes = const_ints(axes, "Slice axes") if axes is not None else list(range(len(starts)))
    steps = const_ints(steps, "Slice steps") if steps is not None else [1] * len(starts)
    if isinstance(data, Sym) and not data.scalar:
        (start, end, step) = _onnx_slice_bounds(len(data.items), starts[0], ends[0], steps[0])
        return Sym(
            data.items[start:end:step] if step > 0 else _neg_step(data.items, start, end, step),
            dtype=data.dtype,
        )
    if isinstance(data, Const) and not data.is_weight:
        return Const(_slice_tensor(data.value, starts, ends, axes, steps))
    x = ctx.tensor(data)
    shape = shape_of(x)
    index: list = [slice(None)] * len(shape)
    flips = []
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        axis %= len(shape)
        dim = shape[axis]
        if step < 0:
            if dim is None:
                raise LoweringError("Slice with a negative step on a dynamic dim")
            s, e, st = _onnx_slice_bounds(dim, start, end, step)
            kept = list(range(s, e, st))
            flips.append((axis, kept))
            continue
        index[axis] = _python_slice(dim, start, end, step)
    out = x
    if any(s != slice(None) for s in index):
        while index and index[-1] == slice(None):
            index.pop()
        out = ctx.call(operator.getitem, out, tuple(index))
    for axis, kept in flips:
        out = ctx.call(torch.index_select, out, axis, ctx.tensor(Const(torch.tensor(kept))))
    return out


def _onnx_slice_bounds(dim: int, start: int, end: int, step: int) -> tuple[int, int, int]:
    """ONNX Slice semantics for one axis of known length (start, end clamped)."""
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start = min(max(start, 0), dim)
        end = min(max(end, 0), dim)
    else:
        start = min(max(start, 0), dim - 1)
        end = min(max(end, -1), dim - 1)
    return start, end, step


def _neg_step(items: list, start: int, end: int, step: int) -> list:
    return [items[i] for i in range(start, end, step)]


def _python_slice(dim: int | None, start: int, end: int, step: int) -> slice:
    """A Python slice with the meaning of ONNX's start/end for step > 0.

    For step > 0 Python's slice clamps exactly like ONNX, negative indices
    included, so dynamic dims need no size at all.
    """
    s = None if start == 0 or start <= -(2**31) else start
    e = None if end >= 2**31 - 1 else end  # INT32/INT64 max: "to the end"
    if dim is not None:
        s0, e0, _ = _onnx_slice_bounds(dim, start, end, step)
        s = None if s0 == 0 else s0
        e = None if e0 == dim else e0
    return slice(s, e, None if step == 1 else step)


def _slice_tensor(value, starts, ends, axes, steps):
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        axis %= value.dim()
        s, e, st = _onnx_slice_bounds(value.shape[axis], start, end, step)
        value = value.index_select(axis, torch.tensor(list(range(s, e, st)), dtype=torch.long))
    return value


@lowering("OnnxConstantOfShape")
def _constant_of_shape(ctx, mod, node, args):
    (shape,) = args
    target = as_sym(shape)
    value = mod.value if hasattr(mod, "value") else torch.tensor([0.0])
    fill = value.reshape(-1)[0].item()
    if target.is_static:
        return Const(torch.full(tuple(target.items), fill, dtype=value.dtype))
    return ctx.call(torch.full, tuple(target.items), fill, dtype=value.dtype, device=ctx.device())


@lowering("OnnxRange")
def _range(ctx, mod, node, args):
    start, limit, delta = (as_sym(a) for a in args)
    if any(s is None for s in (start, limit, delta)):
        if all(isinstance(a, Const) for a in args):
            return Const(torch.arange(*(a.value.item() for a in args), dtype=args[0].value.dtype))
        raise LoweringError("Range with float run-time bounds")
    values = [s.items[0] for s in (start, limit, delta)]
    if all(isinstance(v, int) for v in values):
        return Const(torch.arange(*values, dtype=start.dtype))
    return ctx.call(torch.arange, *values, dtype=start.dtype, device=ctx.device())


# -- elementwise math ------------------------------------------------------------------

_BINARY = {torch.add: operator.add, torch.sub: operator.sub, torch.mul: operator.mul}


@lowering("OnnxBinaryMathOperation", "OnnxPow")
def _binary(ctx, mod, node, args):
    a, b = args
    if getattr(mod, "broadcast", None) == 1 and getattr(mod, "axis", None) is not None:
        raise LoweringError("old-style (opset < 7) broadcasting is not lowered")
    if type(mod).__name__ == "OnnxPow":
        op = operator.pow
    else:
        fn = mod.math_op_function
        op = _BINARY.get(fn, operator.truediv)
    sa, sb = as_sym(a), as_sym(b)
    if sa is not None and sb is not None and (isinstance(a, Sym) or isinstance(b, Sym)):
        return _sym_binary(ctx, op, sa, sb)
    if isinstance(a, Const) and isinstance(b, Const) and not (a.is_weight or b.is_weight):
        return Const(_eval_binary(op, a.value, b.value))
    a_node = a if isinstance(a, fx.Node) else None
    b_node = b if isinstance(b, fx.Node) else None
    integer = (dtype_of(a_node or b_node) or torch.float32) in (torch.int32, torch.int64)
    if op is operator.truediv and integer:
        return ctx.call(torch.div, ctx.tensor(a), ctx.tensor(b), rounding_mode="trunc")
    out_shape = shape_of(node)
    lhs = ctx.operand(a, out_shape if _same_shape(b, out_shape) else None)
    rhs = ctx.operand(b, out_shape if _same_shape(a, out_shape) else None)
    if not isinstance(lhs, fx.Node) and not isinstance(rhs, fx.Node):
        lhs = ctx.tensor(a)
    return ctx.call(op, lhs, rhs)


def _same_shape(value, out_shape) -> bool:
    """True if `value` alone already has the output's shape (so the other
    operand, if a one-element constant, may become a Python scalar)."""
    if out_shape is None:
        return False
    if isinstance(value, fx.Node):
        return shape_of(value) == out_shape
    if isinstance(value, Const):
        return tuple(value.value.shape) == tuple(out_shape)
    return False


def _eval_binary(op, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if op is operator.truediv and not a.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return op(a, b)


def _sym_binary(ctx, op, a: Sym, b: Sym) -> Sym:
    if op is operator.truediv:
        op = operator.floordiv
    n = max(len(a.items), len(b.items))
    if len(a.items) not in (1, n) or len(b.items) not in (1, n):
        raise LoweringError("shape arithmetic with incompatible lengths")
    items = []
    for i in range(n):
        x = a.items[i if len(a.items) > 1 else 0]
        y = b.items[i if len(b.items) > 1 else 0]
        if op is operator.pow and not (isinstance(x, int) and isinstance(y, int)):
            raise LoweringError("run-time Pow in shape arithmetic")
        items.append(_arith(ctx, op, x, y))
    return Sym(items, scalar=a.scalar and b.scalar, dtype=a.dtype)


_UNARY_BY_CLASS = {
    "OnnxSqrt": torch.sqrt,
    "OnnxReciprocal": torch.reciprocal,
    "OnnxErf": torch.erf,
    "ReLU": torch.relu,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "OnnxNot": torch.logical_not,
}


@lowering(*_UNARY_BY_CLASS, "OnnxFunction", "OnnxNeg")
def _unary(ctx, mod, node, args):
    (x,) = args
    name = type(mod).__name__
    if name == "OnnxNeg":
        fn = operator.neg
    elif name == "OnnxFunction":
        fn = mod.function
    else:
        fn = _UNARY_BY_CLASS[name]
    if isinstance(x, Const) and not x.is_weight:
        return Const(fn(x.value))
    return ctx.call(fn, ctx.tensor(x))


@lowering("OnnxCompare", "OnnxLogical")
def _compare(ctx, mod, node, args):
    fn = getattr(mod, "compare_function", None) or mod.logic_op_function
    a, b = args
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(fn(a.value, b.value))
    return ctx.call(fn, ctx.tensor(a), ctx.tensor(b))


@lowering("OnnxWhere")
def _where(ctx, mod, node, args):
    if all(isinstance(a, Const) for a in args):
        return Const(torch.where(*(a.value for a in args)))
    cond, a, b = args
    out_shape = shape_of(node)
    return ctx.call(
        torch.where,
        ctx.tensor(cond),
        ctx.operand(a, out_shape) if isinstance(b, fx.Node) else ctx.tensor(a),
        ctx.operand(b, out_shape) if isinstance(a, fx.Node) else ctx.tensor(b),
    )


@lowering("OnnxMinMax")
def _min_max(ctx, mod, node, args):
    # onnx2torch keeps the reduction it stacks the operands for: torch.amin for Min, amax for Max.
    if mod._operator in (torch.amin, torch.min, torch.minimum):
        fn = torch.minimum
    elif mod._operator in (torch.amax, torch.max, torch.maximum):
        fn = torch.maximum
    else:
        raise LoweringError(f"OnnxMinMax with an unknown operator {mod._operator!r}")
    out = ctx.tensor(args[0])
    for other in args[1:]:
        out = ctx.call(fn, out, ctx.tensor(other))
    return out


@lowering("OnnxClip")
def _clip(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    low, high = mod.min_val, mod.max_val
    low = low.item() if isinstance(low, torch.Tensor) else low
    high = high.item() if isinstance(high, torch.Tensor) else high
    return ctx.call(torch.clamp, x, low, high)


# -- linear algebra, reductions, activations --------------------------------------------


@lowering("OnnxMatMul")
def _matmul(ctx, mod, node, args):
    a, b = args
    if isinstance(a, Const) and isinstance(b, Const) and not (a.is_weight or b.is_weight):
        return Const(torch.matmul(a.value, b.value))
    return ctx.call(torch.matmul, ctx.tensor(a), ctx.tensor(b))


@lowering("OnnxGemm")
def _gemm(ctx, mod, node, args):
    a, b = (ctx.tensor(v) for v in args[:2])
    if mod.trans_a:
        a = ctx.call(torch.transpose, a, 0, 1)
    if mod.trans_b:
        b = ctx.call(torch.transpose, b, 0, 1)
    out = ctx.call(torch.matmul, a, b)
    if mod.alpha != 1.0:
        out = ctx.call(operator.mul, out, mod.alpha)
    if len(args) > 2 and args[2] is not None:
        c = ctx.tensor(args[2])
        if mod.beta != 1.0:
            c = ctx.call(operator.mul, c, mod.beta)
        out = ctx.call(operator.add, out, c)
    return out


@lowering("Linear")
def _linear(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    weight = ctx.tensor(_param(ctx, mod, "weight"))
    bias = ctx.tensor(_param(ctx, mod, "bias")) if mod.bias is not None else None
    return ctx.call(F.linear, x, weight, bias)


@lowering("OnnxGlobalAveragePoolWithKnownInputShape", "OnnxGlobalAveragePool")
def _global_avg_pool(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    dims = tuple(range(2 - rank_of(x), 0))  # trailing dims, written negative
    return ctx.call(torch.mean, x, dims, keepdim=True)


_REDUCTIONS = {
    "ReduceMean": torch.mean,
    "ReduceSum": torch.sum,
    "ReduceMax": torch.amax,
    "ReduceMin": torch.amin,
    "ReduceProd": None,
}


@lowering("OnnxReduceStaticAxes", "OnnxReduceSumStaticAxes", "OnnxReduceSumDynamicAxes")
def _reduce(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    name = type(mod).__name__
    if name == "OnnxReduceStaticAxes":
        op, axes, keepdim = mod.operation_type, mod.axes, mod.keepdims
    elif name == "OnnxReduceSumStaticAxes":
        op, axes, keepdim = "ReduceSum", mod._axes, bool(mod._keepdims)
    else:
        op, keepdim = "ReduceSum", bool(mod._keepdims)
        axes = (
            const_ints(args[1], "ReduceSum axes") if len(args) > 1 and args[1] is not None else None
        )
        if not axes and mod._noop_with_empty_axes:
            return x
    fn = _REDUCTIONS.get(op)
    if fn is None:
        raise LoweringError(f"{op} is not lowered")
    rank = rank_of(x)
    dims = tuple(sorted(a % rank - rank for a in axes)) if axes else tuple(range(-rank, 0))
    return ctx.call(fn, x, dims, keepdim=keepdim)


@lowering("Softmax", "LogSoftmax")
def _softmax(ctx, mod, node, args):
    fn = torch.softmax if isinstance(mod, nn.Softmax) else torch.log_softmax
    x = ctx.tensor(args[0])
    return ctx.call(fn, x, mod.dim % rank_of(x) - rank_of(x))


@lowering("OnnxSoftmaxV1V11")
def _softmax_v1(ctx, mod, node, args):
    # Softmax-1/11: coerce to 2-D at `axis`, softmax over the flattened tail.
    x = ctx.tensor(args[0])
    shape = shape_of(x)
    axis = mod.axis % len(shape)
    fn = torch.log_softmax if mod.is_log else torch.softmax
    if axis == len(shape) - 1:
        return ctx.call(fn, x, -1)
    flat = ctx.call(torch.flatten, x, axis)
    out = ctx.call(fn, flat, -1)
    return ctx.call(
        torch.reshape,
        out,
        tuple(_one_dynamic_to_minus_one([ctx.size(x, i) for i in range(len(shape))])),
    )


@lowering("LeakyReLU")
def _leaky_relu(ctx, mod, node, args):
    return ctx.call(F.leaky_relu, ctx.tensor(args[0]), mod.negative_slope)


# ONNX activation ops onnx2torch writes as torch.nn modules, with ONNX's semantics:
# Elu/Celu(alpha), Selu (onnx2torch refuses non-default alpha/gamma; torch's constants are
# the same float32 values), Softplus = log(1 + exp(x)) (torch's threshold 20 returns x
# where that is x in float32), Softsign, Clip(0, 6) as ReLU6, HardSwish = x * relu6(x + 3) / 6.
_ACTIVATION_MODULES = {
    "ELU": lambda mod: (F.elu, (mod.alpha,) if mod.alpha != 1.0 else ()),
    "CELU": lambda mod: (F.celu, (mod.alpha,) if mod.alpha != 1.0 else ()),
    "SELU": lambda mod: (F.selu, ()),
    "Softplus": lambda mod: (F.softplus, ()),
    "Softsign": lambda mod: (F.softsign, ()),
    "ReLU6": lambda mod: (F.relu6, ()),
    "Hardswish": lambda mod: (F.hardswish, ()),
}


@lowering(*_ACTIVATION_MODULES)
def _activation_module(ctx, mod, node, args):
    name = type(mod).__name__
    if name == "Softplus" and (mod.beta != 1.0 or mod.threshold != 20.0):
        raise LoweringError(f"Softplus with beta {mod.beta}, threshold {mod.threshold}")
    fn, extra = _ACTIVATION_MODULES[name](mod)
    return ctx.call(fn, ctx.tensor(args[0]), *extra)


@lowering("OnnxHardSigmoid")
def _hard_sigmoid(ctx, mod, node, args):
    """ONNX HardSigmoid: clamp(alpha * x + beta, 0, 1); torch's hardsigmoid is alpha 1/6,
    beta 1/2 (Keras/ONNX default alpha is 0.2: that one stays an exact clamp)."""
    x = ctx.tensor(args[0])
    if abs(mod.alpha - 1 / 6) <= 1e-7 and mod.beta == 0.5:
        return ctx.call(F.hardsigmoid, x)
    scaled = ctx.call(operator.add, ctx.call(operator.mul, x, float(mod.alpha)), float(mod.beta))
    return ctx.call(torch.clamp, scaled, 0.0, 1.0)


@lowering("OnnxEinsum")
def _einsum(ctx, mod, node, args):
    return ctx.call(torch.einsum, mod.equation, *(ctx.tensor(a) for a in args))


@lowering("OnnxSplit", "OnnxSplit13")
def _split(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    shape = shape_of(x)
    axis = mod.axis % len(shape)
    if len(args) > 1 and args[1] is not None:
        sizes = const_ints(args[1], "Split sizes")
    elif getattr(mod, "split", None):
        sizes = list(mod.split)
    else:
        if shape[axis] is None:
            raise LoweringError("even Split of a dynamic dim")
        sizes = [shape[axis] // mod.num_splits] * mod.num_splits
    parts = ctx.call(torch.split, x, sizes, axis)
    return [ctx.call(operator.getitem, parts, i) for i in range(len(sizes))]


# -- convolution, pooling, normalisation ------------------------------------------------


def _param(ctx, mod: nn.Module, name: str) -> Const:
    """A module's parameter/buffer as a weight constant, named for its origin."""
    tensor = getattr(mod, name)
    qualified = f"{ctx.node.target}.{name}"
    origin = ctx.initializer_of(qualified) or qualified
    return Const(tensor.detach().clone(), initializer=origin)


@lowering("Conv1d", "Conv2d", "Conv3d")
def _conv(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(mod.kernel_size)]
    weight = ctx.tensor(_param(ctx, mod, "weight"))
    bias = ctx.tensor(_param(ctx, mod, "bias")) if mod.bias is not None else None
    padding = mod.padding if isinstance(mod.padding, str) else tuple(mod.padding)
    return ctx.call(
        fn, x, weight, bias, tuple(mod.stride), padding, tuple(mod.dilation), mod.groups
    )


@lowering("BatchNorm1d", "BatchNorm2d", "BatchNorm3d")
def _batch_norm(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    stats = [ctx.tensor(_param(ctx, mod, n)) for n in ("running_mean", "running_var")]
    weight = ctx.tensor(_param(ctx, mod, "weight"))
    bias = ctx.tensor(_param(ctx, mod, "bias"))
    return ctx.call(F.batch_norm, x, *stats, weight, bias, False, mod.momentum, mod.eps)


@lowering("OnnxBatchNorm")
def _batch_norm_dynamic(ctx, mod, node, args):
    x, weight, bias, mean, var = (ctx.tensor(a) for a in args)
    return ctx.call(F.batch_norm, x, mean, var, weight, bias, False, mod.momentum, mod.epsilon)


@lowering("MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d")
def _pool(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    spatial = int(type(mod).__name__[-2])  # MaxPool2d -> 2
    if isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[spatial]
        return ctx.call(
            fn, x, mod.kernel_size, mod.stride, mod.padding, mod.dilation, ceil_mode=mod.ceil_mode
        )
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[spatial]
    return ctx.call(
        fn, x, mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode, mod.count_include_pad
    )


@lowering("OnnxPadStatic", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "ZeroPad2d")
def _pad(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    if isinstance(mod, nn.modules.padding._ConstantPadNd):
        return ctx.call(F.pad, x, tuple(mod.padding), "constant", mod.value)
    # OnnxPadStatic already holds F.pad's (last dim first) order and mode names.
    value = mod.constant_value if mod.mode == "constant" else None
    return ctx.call(F.pad, x, tuple(mod.pads), mod.mode, value)


@lowering("OnnxPadDynamic")
def _pad_dynamic(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    pads = const_ints(args[1], "Pad pads")
    value = args[2].value.item() if len(args) > 2 and isinstance(args[2], Const) else 0.0
    if len(args) > 3 and args[3] is not None:
        raise LoweringError("Pad with an axes input is not lowered")
    return _emit_pad(ctx, x, pads, mod.mode, value)


def _emit_pad(ctx, x: fx.Node, pads: list[int], mode: str, value: float | None) -> fx.Node:
    """ONNX pads [b0, b1, ..., e0, e1, ...] -> F.pad's (last dim first) pairs."""
    rank = rank_of(x)
    begins, ends = pads[: len(pads) // 2], pads[len(pads) // 2 :]
    torch_pads: list[int] = []
    for axis in reversed(range(rank)):
        torch_pads += [begins[axis], ends[axis]]
    while torch_pads[-2:] == [0, 0]:
        torch_pads = torch_pads[:-2]
    if not torch_pads:
        return x
    mode = {"edge": "replicate"}.get(mode, mode)
    if mode != "constant":
        torch_pads = _non_constant_pads(torch_pads, rank, mode)
    return ctx.call(F.pad, x, tuple(torch_pads), mode, value if mode == "constant" else None)


def _non_constant_pads(torch_pads: list[int], rank: int, mode: str) -> list[int]:
    """F.pad's reflect/replicate take the last 1, 2 or 3 dims of a 2-3, 3-4 or 4-5-D
    tensor (rank - 1 or rank - 2 dims) and nothing else: pad the list with zero pairs
    up to such a length (zero padding of a dim changes nothing)."""
    padded = len(torch_pads) // 2
    dims = max(padded, rank - 2, 1)
    if dims > 3 or dims not in (rank - 1, rank - 2):
        raise LoweringError(
            f"{mode} padding of {padded} trailing dim(s) of a {rank}-D tensor: F.pad pads "
            "only the last 1-3 dims, never the first"
        )
    return torch_pads + [0, 0] * (dims - padded)


@lowering("Sequential")
def _sequential(ctx, mod, node, args):
    value = args[0]
    for child in mod:
        fn = LOWERINGS.get(type(child).__name__)
        if fn is None:
            raise LoweringError(f"no lowering for {type(child).__name__} inside Sequential")
        value = fn(ctx, child, node, [value])
        if isinstance(value, fx.Node) and "fxs_shape" not in value.meta:
            _probe_shape(value)
    return value


def _probe_shape(node: fx.Node) -> None:
    """Shapes of intermediate nodes inside one lowering are not recorded; the
    few lowerings that chain (Sequential) only need the rank, which F.pad
    keeps."""
    src = node.args[0] if node.args else None
    if isinstance(src, fx.Node) and "fxs_shape" in src.meta:
        node.meta["fxs_shape"] = tuple(None for _ in src.meta["fxs_shape"])
        node.meta["fxs_dtype"] = src.meta.get("fxs_dtype")


# ---------------------------------------------------------------------------
# The pass
# ---------------------------------------------------------------------------


@dataclass
class LoweringResult:
    module: fx.GraphModule
    lowered: dict[str, int] = field(default_factory=dict)  # class name -> count
    unconverted: dict[str, list[str]] = field(default_factory=dict)  # class -> node names
    folded: int = 0


def _const_module_value(module: nn.Module, args: list) -> Value:
    with torch.no_grad():
        result = module(*[a.value if isinstance(a, Const) else a for a in args])
    if isinstance(result, (tuple, list)):
        return [Const(r) for r in result]
    return Const(result)


def lower_graph(
    gm: fx.GraphModule,
    initializer_of: Callable[[str], str | None] | None = None,
) -> LoweringResult:
    """Lower every onnx2torch module of `gm` (which must carry shape meta).

    `initializer_of` names the ONNX initializer behind a buffer or module
    parameter of `gm` (``SourceInfo.initializer_of``); without it the tensor's
    own name stands in. Returns a new GraphModule; `gm` is not modified.
    Modules without a lowering are copied as they are and listed in
    ``unconverted``.
    """
    initializer_of = initializer_of or (lambda name: None)
    graph = fx.Graph()
    root = nn.Module()
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    env: dict[fx.Node, Value] = {}
    result = LoweringResult(module=None)  # type: ignore[arg-type]
    anchor = None
    shared_weights: dict[str, torch.Tensor] = {}

    for node in placeholders:
        new = graph.placeholder(node.name)
        set_meta(new, node)
        env[node] = new
        anchor = anchor or new
    ctx = LoweringContext(graph, root, anchor)
    ctx.initializer_of = initializer_of

    def lookup(arg):
        return fx.node.map_arg(arg, lambda n: env[n]) if not isinstance(arg, fx.Node) else env[arg]

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            continue
        ctx.node = node
        try:
            if node.op == "get_attr":
                tensor = _fetch_attr(gm, node.target)
                initializer = initializer_of(node.target) or node.target
                # onnx2torch makes a buffer for every use of an initializer:
                # uses of one initializer share one tensor here.
                tensor = shared_weights.setdefault(initializer, tensor.detach().clone())
                env[node] = Const(tensor, initializer=initializer)
            elif node.op == "call_module":
                env[node] = _lower_module(ctx, gm, node, [lookup(a) for a in node.args], result)
            elif node.op == "call_function" and node.target is operator.getitem:
                env[node] = _getitem(ctx, lookup(node.args[0]), node.args[1], node)
            elif node.op == "output":
                graph.output(fx.node.map_aggregate(lookup(node.args[0]), _materialize(ctx)))
            else:
                raise LoweringError(f"unexpected node kind {node.op!r}")
        except LoweringError as exc:
            raise LoweringError(f"while lowering {node.format_node()}: {exc}") from exc
        value = env.get(node)
        if isinstance(value, fx.Node):
            set_meta(value, node)

    module = fx.GraphModule(root, graph)
    module.graph.eliminate_dead_code()
    module.recompile()
    result.module = module
    return result


def _materialize(ctx):
    def convert(value):
        if isinstance(value, (Const, Sym)):
            return ctx.tensor(value)
        return value

    return convert


def _getitem(ctx, value, index, node):
    if isinstance(value, list):
        return value[index]
    return ctx.call(operator.getitem, ctx.tensor(value), index)


def _lower_module(ctx, gm, node, args, result: LoweringResult) -> Value:
    module = gm.get_submodule(node.target)
    name = type(module).__name__
    ctx.rule = f"lower:{name}"
    fn = LOWERINGS.get(name)
    reason = "no lowering for this module class"
    if fn is not None:
        try:
            value = fn(ctx, module, node, args)
        except LoweringError as exc:
            reason = str(exc)
        else:
            result.lowered[name] = result.lowered.get(name, 0) + 1
            if isinstance(value, (Const, Sym)):
                result.folded += 1  # known at optimize time: no node at run time
            return value
    if args and all(isinstance(a, (Const, type(None))) for a in args):
        result.folded += 1
        result.lowered[name] = result.lowered.get(name, 0) + 1
        return _const_module_value(module, args)
    # Keep the module as it is and say so in the report.
    result.unconverted.setdefault(name, []).append(f"{node.target}: {reason}")
    target = str(node.target).replace(".", "_")
    ctx.root.add_module(target, copy.deepcopy(module))
    return ctx.graph.call_module(
        target, tuple(ctx.tensor(a) if a is not None else None for a in args)
    )


def _fetch_attr(gm: nn.Module, target: str) -> torch.Tensor:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
