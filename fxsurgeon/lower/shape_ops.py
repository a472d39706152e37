"""Lowerings of ONNX shape ops: Shape, Cast, Constant, (Un)Squeeze, Concat, Reshape, Flatten,
Transpose, Tile, Expand, ConstantOfShape, Range.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols
from torch.utils._sympy.functions import FloorDiv

from ..errors import LoweringError
from ..shapes import dtype_of, shape_of
from . import sym_math
from .data_sizes import read_int, shape_items
from .pads import pad_of_fills
from .table import lowering
from .values import Const, Sym, SymArray, as_sym, const_ints, object_array, rank_of, sym_or_array

# -- shape and casting ---------------------------------------------------------


@lowering("OnnxShape")
def _shape(ctx, mod, node, args):
    (x,) = args
    if isinstance(x, Const):
        shape = list(x.value.shape)
    elif isinstance(x, Sym):
        shape = [] if x.scalar else [len(x.items)]
    elif isinstance(x, SymArray):
        shape = list(x.items.shape)
    else:
        shape = [ctx.size(x, i) for i in range(rank_of(x))]
    start, end = mod._start, mod._end
    return Sym(shape[start:end])


@lowering("OnnxCast")
def _cast(ctx, mod, node, args):
    (x,) = args
    dtype = mod.torch_dtype
    if isinstance(x, Sym):
        cast = sym_math.cast(ctx, x, dtype)
        if cast is not None:
            return cast
    if isinstance(x, SymArray) and not dtype.is_floating_point and dtype != torch.bool:
        return SymArray(x.items, dtype)  # integer to integer: the same elements
    if isinstance(x, Const) and not x.is_weight:
        return Const(x.value.to(dtype))
    # a weight stays read and is cast at run time: folded, the cast copy would be a
    # structural constant and its TF variable lost (a kernel cast for a float64 mask)
    x = ctx.tensor(x)
    if dtype_of(x) == dtype:
        return x
    return ctx.method("to", x, dtype)


@lowering("OnnxCopyIdentity", "Identity", "Dropout", "OnnxDropoutDynamic")
def _identity(ctx, mod, node, args):
    return args[0]


@lowering("OnnxStopGradient")
def _stop_gradient(ctx, mod, node, args):
    """A ``tf.stop_gradient`` the export recorded (fxsurgeon/frontdoor/stop_gradients.py): a
    tensor, or a weight, detached; sizes and structural constants carry no gradient."""
    (x,) = args
    if isinstance(x, fx.Node) or (isinstance(x, Const) and x.is_weight):
        return ctx.method("detach", ctx.tensor(x))
    return x


@lowering("OnnxConstant")
def _constant(ctx, mod, node, args):
    value = mod.value
    if not isinstance(value, torch.Tensor):
        value = torch.tensor(value)
    return Const(value.clone())


@lowering("OnnxUnsqueezeStaticAxes", "OnnxUnsqueezeDynamicAxes")
def _unsqueeze(ctx, mod, node, args):
    x = args[0]
    axes = const_ints(args[1], "Unsqueeze axes") if len(args) > 1 else list(mod._axes)
    if isinstance(x, Sym) and x.scalar and axes in ([0], [-1]):
        return Sym(list(x.items), scalar=False, dtype=x.dtype)
    if isinstance(x, (Sym, SymArray)) and not x.is_static:
        # sizes stay elements: a row of a (rank, 2) pads matrix (SymArray)
        items = object_array(x)
        out_rank = items.ndim + len(axes)
        return sym_or_array(np.expand_dims(items, tuple(a % out_rank for a in axes)), x.dtype)
    if isinstance(x, (Sym, SymArray)):
        x = Const(torch.tensor(object_array(x).tolist(), dtype=x.dtype))
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
    if isinstance(x, SymArray):
        items = x.items
        dims = [a % items.ndim for a in axes] or [i for i, d in enumerate(items.shape) if d == 1]
        return sym_or_array(np.squeeze(items, tuple(dims)), x.dtype)
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
    asserted = [_assert_unit(ctx, x, d) for d in dims]  # every dim, no short cut
    if not any(asserted):
        return ctx.call(torch.squeeze, x, dims)
    kept = [ctx.size(x, d) for d in range(len(shape)) if d not in dims]
    return ctx.call(torch.reshape, x, tuple(kept))


def _assert_unit(ctx, x, dim: int) -> bool:
    """ONNX Squeeze's axes are 1 (else an error); torch.squeeze skips a dim that is not. A
    size that depends on the data (after NonZero) is neither known 1 nor known not: compiled,
    torch.squeeze then keeps the dim (TFBartForSequenceClassification's eos vector came out
    (batch, 1, labels) under inductor). Such a size gets a run-time assert that it is 1, which
    the analysis and torch.compile learn, and the caller drops it by a reshape to the other
    sizes (after the assert, inductor still kept the dim of torch.squeeze, and could not lay
    out select(dim, 0)); True when it did so."""
    value = x.meta.get("val")
    size = value.shape[dim] if isinstance(value, torch.Tensor) else None
    if not isinstance(size, torch.SymInt) or not free_unbacked_symbols(size):
        return False
    is_one = ctx.call(operator.eq, ctx.size(x, dim), 1)
    ctx.graph.shapes.run(torch._check, (size == 1,), {}, ctx.graph.where, "Squeeze")
    where = ctx.node.target if ctx.node is not None else "?"
    # aten._assert_scalar, not torch._assert: torch.compile keeps it as a run-time assert
    # on the data-dependent size (torch._assert would ask it to guard on the data)
    ctx.call(
        torch.ops.aten._assert_scalar,
        is_one,
        f"Squeeze of dim {dim}, whose size depends on the data, needs it to be 1 "
        f"(ONNX node {where})",
    )
    return True


@lowering("OnnxConcat")
def _concat(ctx, mod, node, args):
    if any(isinstance(a, SymArray) for a in args):
        parts = [object_array(a) for a in args]
        if all(p is not None for p in parts):
            dtype = next(a.dtype for a in args if isinstance(a, SymArray))
            return sym_or_array(np.concatenate(parts, axis=mod.axis), dtype)
        args = [ctx.tensor(a) if isinstance(a, SymArray) else a for a in args]
    syms = [as_sym(a) for a in args]
    if all(s is not None and not s.scalar for s in syms) and any(isinstance(a, Sym) for a in args):
        return Sym([item for s in syms for item in s.items], dtype=syms[0].dtype)
    if all(isinstance(a, Const) for a in args) and not any(a.is_weight for a in args):
        return Const(torch.cat([a.value for a in args], dim=mod.axis))
    # a Concat that reads a weight stays a torch.cat of its operands: folded, the weights
    # would become one structural constant and their TF variables would be lost
    padded = pad_of_fills(ctx, args, mod.axis)
    if padded is not None:
        return padded
    return ctx.call(torch.cat, [ctx.tensor(a) for a in args], dim=mod.axis)


#: what a shape argument may be (`shape_items`)
_SHAPE_VECTOR = (
    "a constant, a shape computation or an integer tensor of a length known now (its "
    "elements read from the data)"
)


@lowering("OnnxReshape")
def _reshape(ctx, mod, node, args):
    data, shape = args
    target = shape_items(ctx, shape)
    if target is None:
        raise LoweringError(f"Reshape target shape must be {_SHAPE_VECTOR}")
    items = list(target.items)
    if isinstance(data, Const) and target.is_static:
        # a reshaped weight is still that initializer's tensor (params match it by value)
        shape = _resolve_zeros(items, list(data.value.shape))
        return Const(data.value.reshape(shape), initializer=data.initializer)
    if isinstance(data, Sym) and target.is_static:
        reshaped = _reshape_sym(data, items)
        if reshaped is not None:
            return reshaped
    if isinstance(data, SymArray) and target.is_static:
        # ONNX: 0 copies the input dim (allowzero=0); numpy resolves the -1
        shape = _resolve_zeros(items, list(data.items.shape))
        return sym_or_array(data.items.reshape(shape), data.dtype)
    x = ctx.tensor(data)
    in_shape = shape_of(x)
    # ONNX: 0 copies the input dim (allowzero=0, the only form tf2onnx emits).
    items = [ctx.size(x, i) if (isinstance(v, int) and v == 0) else v for i, v in enumerate(items)]
    items = _one_dynamic_to_minus_one(items)
    if in_shape is not None and tuple(in_shape) == tuple(items):
        return x
    if -1 in items:
        items = _inferred_by_data(ctx, x, items)
    out = ctx.call(torch.reshape, x, tuple(items))
    out_shape = shape_of(out)
    if -1 in items and out_shape is not None and out_shape[items.index(-1)] is not None:
        # the analysis shows the -1 static: write that size
        items[items.index(-1)] = out_shape[items.index(-1)]
        ctx.graph.erase_node(out)
        items = _one_dynamic_to_minus_one(items)
        if tuple(in_shape) == tuple(items):
            return x
        out = ctx.call(torch.reshape, x, tuple(items))
    return out


def _inferred_by_data(ctx, x: fx.Node, items: list) -> list:
    """ONNX infers a Reshape's -1 as the element count over the product of the other sizes,
    which must not be 0. Where that product depends on the data (a size read by
    `shape_items`, an If's unbacked output dim), torch's reshape would guard on it being
    nonzero. So the -1 is written as that quotient of sizes where the analysis divides it
    exactly (the product's factors are the input's: Longformer's (B * H, -1, D) of a
    (B, H, n, D)): an assert that the product is nonzero would be checked by torch.compile
    where its size is read, also when an If's other branch runs (Longformer's count of
    global tokens is 0 then). Else the product gets that run-time assert, which the analysis
    and torch.compile learn (as `_assert_unit`)."""
    others = [i for i in items if not (isinstance(i, int) and i == -1)]
    product: Any = 1
    for size in others:
        product = product * (size.meta.get("val") if isinstance(size, fx.Node) else size)
    if not isinstance(product, torch.SymInt) or not free_unbacked_symbols(product):
        return items
    count = _product(ctx, [ctx.size(x, d) for d in range(rank_of(x))])
    quotient = ctx.call(operator.floordiv, count, _product(ctx, others))
    value = quotient.meta.get("val")
    if not (isinstance(value, torch.SymInt) and value.node.expr.has(FloorDiv)):
        return [quotient if (isinstance(i, int) and i == -1) else i for i in items]
    nonzero = ctx.call(operator.ne, _product(ctx, others), 0)
    ctx.graph.shapes.run(torch._check, (product != 0,), {}, ctx.graph.where, "Reshape")
    where = ctx.node.target if ctx.node is not None else "?"
    ctx.call(
        torch.ops.aten._assert_scalar,
        nonzero,
        f"Reshape with -1 needs the other sizes' product, which depends on the data, to be "
        f"nonzero (ONNX node {where})",
    )
    return items


def _reshape_sym(data: Sym, items: list[int]) -> Sym | None:
    """A shape computation reshaped to rank 0 or 1 stays one: its elements, in order
    (a batch size as ``[B]`` for an Expand). None for a rank the `Sym` cannot hold."""
    count = len(data.items)
    if len(items) > 1 or (0 in items and data.scalar):
        return None  # rank 2 or more; 0 copying a dim the scalar does not have
    shape = _resolve_zeros(items, [count])
    if shape == [] and count == 1:
        return Sym(list(data.items), scalar=True, dtype=data.dtype)
    if shape in ([-1], [count]):
        return Sym(list(data.items), dtype=data.dtype)
    raise LoweringError(f"Reshape of {count} element(s) to {items}")


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
    if isinstance(x, SymArray):
        perm = mod.perm or list(range(x.items.ndim))[::-1]
        return SymArray(np.ascontiguousarray(np.transpose(x.items, perm)), x.dtype)
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
    reps = shape_items(ctx, repeats)
    if reps is None:
        raise LoweringError(f"Tile repeats must be {_SHAPE_VECTOR}")
    if isinstance(x, Const) and reps.is_static and not x.is_weight:  # a weight stays read
        return Const(x.value.repeat(reps.items))
    x = ctx.tensor(x)
    if all(isinstance(r, int) and r == 1 for r in reps.items):
        return x
    return ctx.method("repeat", x, *reps.items)


@lowering("OnnxExpand")
def _expand(ctx, mod, node, args):
    x, shape = args
    target = shape_items(ctx, shape)
    if target is None:
        raise LoweringError(f"Expand shape must be {_SHAPE_VECTOR}")
    if isinstance(x, Const) and target.is_static and not x.is_weight:
        out = torch.broadcast_shapes(tuple(x.value.shape), tuple(target.items))
        return Const(x.value.expand(out).clone())
    x = ctx.tensor(x)
    in_shape = shape_of(x)
    out_rank = max(len(in_shape), len(target.items))
    padded_in = (1,) * (out_rank - len(in_shape)) + tuple(in_shape)
    padded_t = [1] * (out_rank - len(target.items)) + list(target.items)
    sizes = []
    offset = out_rank - len(in_shape)
    undecided = []  # (dim, target size) where either side may be the 1 that broadcasts
    for k, (d_in, d_t) in enumerate(zip(padded_in, padded_t, strict=True)):
        if isinstance(d_t, int) and d_t == 1:
            sizes.append(-1 if d_in != 1 else 1)
        elif d_in == 1:
            sizes.append(d_t)
        elif d_in is None and not isinstance(d_t, int):
            if not _same_symbol(x, k - offset, d_t):
                undecided.append((k, d_t))
            sizes.append(-1)  # the analysis proves them the same size, or see below
        else:
            sizes.append(-1)  # equal sizes, or the target broadcasts to the input
    if not (all(s == -1 for s in sizes) and len(in_shape) == out_rank):
        x = ctx.method("expand", x, *sizes)
    for k, d_t in undecided:
        x = _broadcast_dim(ctx, x, k, d_t)
    return x


def _broadcast_dim(ctx, x: fx.Node, dim: int, target: Any) -> fx.Node:
    """ONNX's broadcast of `x`'s dim `dim` against the size `target` where the analysis
    cannot tell which side is the 1 (two sizes read from the data: GAT's ``tf.repeat``
    broadcasts its repeat counts to the segment count). The size is `target` unless
    `target` is 1, and the rows are read by index, each row i from ``min(i, dim - 1)``
    (row 0 everywhere where `x`'s dim is the 1, the identity where the sizes agree):
    ``expand``, which torch.compile takes as "the unbacked size is not 1" plus a run-time
    assert of equality, would fail where the data makes it 1. Sizes that do not broadcast
    (neither 1, not equal: an error in ONNX) fail a run-time assert."""
    size = ctx.size(x, dim)
    out = ctx.call(torch.sym_ite, ctx.call(operator.eq, target, 1), size, target)
    apart = ctx.call(
        operator.mul, ctx.call(operator.sub, size, 1), ctx.call(operator.sub, size, out)
    )
    where = ctx.node.target if ctx.node is not None else "?"
    ctx.call(
        torch.ops.aten._assert_scalar,
        ctx.call(operator.eq, apart, 0),
        f"Expand of dim {dim}: sizes that do not broadcast (ONNX node {where})",
    )
    rows = ctx.call(torch.arange, out, device=ctx.device())
    rows = ctx.method("clamp_max", rows, ctx.call(operator.sub, size, 1))
    return ctx.call(torch.index_select, x, dim, rows)


def _same_symbol(x: fx.Node, dim: int, size: Any) -> bool:
    """Whether dim `dim` of `x` and the size node `size` are one symbol of the analysis."""
    fake = x.meta.get("val")
    other = size.meta.get("val") if isinstance(size, fx.Node) else None
    if not isinstance(fake, torch.Tensor) or not isinstance(other, torch.SymInt):
        return False
    mine = fake.shape[dim]
    return isinstance(mine, torch.SymInt) and mine.node.expr == other.node.expr


@lowering("OnnxConstantOfShape")
def _constant_of_shape(ctx, mod, node, args):
    (shape,) = args
    target = shape_items(ctx, shape)
    value = mod.value if hasattr(mod, "value") else torch.tensor([0.0])
    fill = value.reshape(-1)[0].item()
    if target is None:  # e.g. a size read from tensor values of a length not known now
        raise LoweringError(f"ConstantOfShape's shape must be {_SHAPE_VECTOR}")
    if target.is_static:
        return Const(torch.full(tuple(target.items), fill, dtype=value.dtype))
    return ctx.call(torch.full, tuple(target.items), fill, dtype=value.dtype, device=ctx.device())


@lowering("OnnxRange")
def _range(ctx, mod, node, args):
    """ONNX Range: start + i * delta for i < max(ceil((limit - start) / delta), 0), so
    bounds against the step's sign give an empty tensor (torch.arange raises). With
    integer bounds (an int `Sym`, or a float one holding integers: a length cast to
    float) this is torch.arange over the same ints, the length staying a SymInt."""
    if all(isinstance(a, Const) for a in args):
        values = [a.value.item() for a in args]
        return Const(_arange(*values, dtype=args[0].value.dtype))
    bounds = [sym_math.sym_operand(a) or read_int(ctx, a) for a in args]
    if any(b is None or not b.scalar for b in bounds):
        raise LoweringError("Range with run-time bounds that are not integers known to be exact")
    dtype = bounds[0].dtype  # a bound read from a computed tensor has that tensor's dtype
    if any(b.dtype != dtype for b in bounds):
        raise LoweringError("Range with bounds of different types")
    start, limit, delta = (b.items[0] for b in bounds)
    if delta == 0:
        raise LoweringError("Range with a zero delta")
    if all(isinstance(v, int) for v in (start, limit, delta)):
        return Const(_arange(start, limit, delta, dtype=dtype))
    if not isinstance(delta, int):
        raise LoweringError("Range with a run-time delta (its sign decides the length)")
    # past the start against the step's sign is empty: clamp the limit to the start
    # where the analysis cannot show it is on the step's side for every size
    side = operator.ge if delta > 0 else operator.le
    if sym_math.decide(side, limit, start) is not True:
        limit = ctx.call(torch.sym_max if delta > 0 else torch.sym_min, limit, start)
    return ctx.call(torch.arange, start, limit, delta, dtype=dtype, device=ctx.device())


def _arange(start, limit, delta, dtype: torch.dtype) -> torch.Tensor:
    """torch.arange with ONNX's empty result for bounds against the step's sign."""
    if (limit - start) * delta <= 0:
        return torch.empty(0, dtype=dtype)
    return torch.arange(start, limit, delta, dtype=dtype)
