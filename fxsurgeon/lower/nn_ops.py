"""Lowerings of ONNX nn ops: MatMul, Gemm, reductions, softmax, activations, convolution, pooling,
normalisation, padding, Sequential.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import LoweringError
from ..frontdoor import PAD_MODES
from ..shapes import shape_of
from .pads import emit_pad
from .shape_ops import _arith, _one_dynamic_to_minus_one
from .table import LOWERINGS, lowering
from .values import Const, Sym, const_ints, rank_of

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


@lowering("OnnxGlobalPoolSpec")
def _global_pool(ctx, mod, node, args):
    """GlobalMaxPool/AveragePool/LpPool: over every dim after batch and channel, kept."""
    x = ctx.tensor(args[0])
    dims = tuple(range(2 - rank_of(x), 0))
    if mod.kind == "max":
        return ctx.call(torch.amax, x, dims, keepdim=True)
    if mod.kind == "avg":
        return ctx.call(torch.mean, x, dims, keepdim=True)
    powered = ctx.call(operator.pow, ctx.call(torch.abs, x), mod.p)
    total = ctx.call(torch.sum, powered, dims, keepdim=True)
    return ctx.call(operator.pow, total, 1.0 / mod.p)


_REDUCTIONS = {
    "ReduceMean": torch.mean,
    "ReduceSum": torch.sum,
    "ReduceMax": torch.amax,
    "ReduceMin": torch.amin,
    "ReduceProd": torch.prod,
}
# shape arithmetic (a 1-D Sym reduced over its only axis): Tensordot's Prod of dims
_SYM_REDUCTIONS = {
    "ReduceSum": operator.add,
    "ReduceProd": operator.mul,
    "ReduceMax": max,
    "ReduceMin": min,
}


@lowering("OnnxReduceStaticAxes", "OnnxReduceSumStaticAxes", "OnnxReduceSumDynamicAxes")
def _reduce(ctx, mod, node, args):
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
    if name != "OnnxReduceStaticAxes" and not axes and mod._noop_with_empty_axes:
        return args[0] if isinstance(args[0], Sym) else ctx.tensor(args[0])  # the spec's no-op
    if op in _COMPOSED_REDUCTIONS and not isinstance(args[0], Sym):
        return _composed_reduce(ctx, op, ctx.tensor(args[0]), axes, keepdim)
    fn = _REDUCTIONS.get(op)
    if fn is None:
        raise LoweringError(f"{op} is not lowered")
    if isinstance(args[0], Sym) and op in _SYM_REDUCTIONS:
        return _reduce_sym(ctx, _SYM_REDUCTIONS[op], args[0], axes, keepdim)
    x = ctx.tensor(args[0])
    rank = rank_of(x)
    dims = tuple(sorted(a % rank - rank for a in axes)) if axes else tuple(range(-rank, 0))
    if fn is not torch.prod:
        return ctx.call(fn, x, dims, keepdim=keepdim)
    for dim in sorted((d + rank for d in dims), reverse=True):  # torch.prod: one dim at a time
        x = ctx.call(torch.prod, x, dim, keepdim=keepdim)
    return x


#: ONNX reductions that are a sum between an elementwise op before and one after
_COMPOSED_REDUCTIONS = {
    "ReduceSumSquare": ("square", None),  # sum(x * x)
    "ReduceL1": (torch.abs, None),  # sum(|x|)
    "ReduceL2": ("square", torch.sqrt),  # sqrt(sum(x * x))
    "ReduceLogSum": (None, torch.log),  # log(sum(x))
    "ReduceLogSumExp": (None, None),  # log(sum(exp(x))): torch.logsumexp
}


def _composed_reduce(ctx, op: str, x, axes, keepdim: bool):
    """ReduceSumSquare / L1 / L2 / LogSum / LogSumExp over `axes` (all dims when empty), as
    ONNX defines them; tf2onnx writes TF's ``l2_normalize`` (Keras UnitNormalization) and
    the variance of a training-mode FusedBatchNorm with ReduceSumSquare."""
    rank = rank_of(x)
    dims = tuple(sorted(a % rank - rank for a in axes)) if axes else tuple(range(-rank, 0))
    if op == "ReduceLogSumExp":
        return ctx.call(torch.logsumexp, x, dims, keepdim=keepdim)
    before, after = _COMPOSED_REDUCTIONS[op]
    if before == "square":
        x = ctx.call(operator.mul, x, x)
    elif before is not None:
        x = ctx.call(before, x)
    total = ctx.call(torch.sum, x, dims, keepdim=keepdim)
    return total if after is None else ctx.call(after, total)


def _reduce_sym(ctx, op, sym: Sym, axes, keepdim: bool) -> Sym:
    if axes and (sym.scalar or any(a not in (0, -1) for a in axes)):
        raise LoweringError("a shape value reduced over an axis it does not have")
    if sym.scalar:
        return sym
    acc = sym.items[0]
    for item in sym.items[1:]:
        acc = _arith(ctx, op, acc, item)
    return Sym([acc], scalar=not keepdim, dtype=sym.dtype)


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


@lowering("OnnxEinsum")
def _einsum(ctx, mod, node, args):
    """A two-operand einsum that is a Dense layer's product is written as ``torch.matmul``,
    which the linear rules know; any other stays ``torch.einsum``.

    The form (`dense_contraction`): one operand ``w`` is written ``C + N`` and the other
    ``x`` ends with ``C`` in the same order; the output is the rest of ``x`` then ``N``
    (``...td,dnh->...tnh``, ``btnh,nhd->btd``; either operand order). With one letter each
    in ``C`` and ``N`` that is ``x @ w`` for any ``w``. With more, ``w`` must be a constant
    (a Dense kernel of several axes): it is stored as the matrix ``[prod(C), prod(N)]``
    (the same values in the same order: row-major reshape), ``x``'s ``C`` axes are
    flattened into one, and the product's last axis is split back into ``N``'s sizes,
    which is the einsum's sum term for term."""
    if len(args) == 2:
        form = dense_contraction(mod.equation)
        if form is not None:
            swap, contracted, new = form
            x, w = (args[1], args[0]) if swap else (args[0], args[1])
            if contracted == new == 1:
                return ctx.call(torch.matmul, ctx.tensor(x), ctx.tensor(w))
            if isinstance(w, Const):
                return _dense_einsum(ctx, ctx.tensor(x), w, contracted)
        if _is_batched_product(mod.equation):
            # ``<P>qd,<P>kd-><P>qk`` (attention scores): the same batch axes on both sides
            right = ctx.call(torch.transpose, ctx.tensor(args[1]), -2, -1)
            return ctx.call(torch.matmul, ctx.tensor(args[0]), right)
    return ctx.call(torch.einsum, mod.equation, *[ctx.tensor(a) for a in args])


def _dense_einsum(ctx, x: fx.Node, w: Const, contracted: int) -> fx.Node:
    inner = w.value.shape[:contracted]
    outer = tuple(int(d) for d in w.value.shape[contracted:])
    matrix = Const(w.value.reshape(inner.numel(), -1), initializer=w.initializer)
    if contracted > 1:
        x = ctx.call(torch.flatten, x, -contracted)
    y = ctx.call(torch.matmul, x, ctx.tensor(matrix))
    if len(outer) == 1:
        return y
    lead = [ctx.size(y, i) for i in range(rank_of(y) - 1)]
    return ctx.call(torch.reshape, y, tuple(_one_dynamic_to_minus_one(lead + list(outer))))


def _is_batched_product(equation: str) -> bool:
    """``<P>qd,<P>kd-><P>qk``: both operands with the same batch letters (or ``...``) in the
    same order, a product over their last axis, the output the batch then q then k, every
    letter once per operand: ``matmul(a, b.transpose(-2, -1))`` (matmul broadcasts the batch
    axes as einsum does)."""
    inputs, _, out = equation.replace(" ", "").partition("->")
    parts = inputs.split(",")
    if len(parts) != 2 or not out:
        return False
    a, b = parts
    if len(a) < 2 or len(b) < 2 or a[:-2] != b[:-2] or a[-1] != b[-1]:
        return False
    batch, q, k, d = a[:-2], a[-2], b[-2], a[-1]
    letters = batch.replace("...", "")
    if not (q + k + d).isalpha() or not (letters == "" or letters.isalpha()):
        return False
    return out == batch + q + k and len(set(letters + q + k + d)) == len(letters) + 3


def dense_contraction(equation: str) -> tuple[bool, int, int] | None:
    """``(swap, len(C), len(N))`` when ``equation`` is a Dense product (`_einsum`): the
    operand written ``C + N`` is the second (``swap`` False) or the first; None otherwise.
    Every letter appears once per operand, no letter is summed away except ``C``, and
    only ``x`` may hold an ellipsis."""
    inputs, arrow, out = equation.replace(" ", "").partition("->")
    parts = inputs.split(",")
    if not arrow or len(parts) != 2:
        return None
    for swap, (a, b) in ((False, parts), (True, parts[::-1])):
        form = _dense_form(a, b, out)
        if form is not None:
            return (swap, *form)
    return None


def _dense_form(a: str, b: str, out: str) -> tuple[int, int] | None:
    if not b.isalpha():  # the kernel: letters only, no ellipsis
        return None
    letters = a.replace("...", "")
    if not letters.isalpha() or len(set(letters)) != len(letters) or len(set(b)) != len(b):
        return None
    if len(set(out.replace("...", ""))) != len(out.replace("...", "")):
        return None
    shared = [c for c in b if c in letters]
    k = len(shared)
    if k == 0 or k == len(b) or b[:k] != "".join(shared) or not letters.endswith(b[:k]):
        return None
    if any(c in out for c in shared) or out != a[: len(a) - k] + b[k:]:
        return None
    return k, len(b) - k


# -- convolution, pooling, normalisation ------------------------------------------------


def _param(ctx, mod: nn.Module, name: str) -> Const:
    """A module's parameter/buffer as a weight constant, named for its origin."""
    tensor = getattr(mod, name)
    qualified = f"{ctx.node.target}.{name}"
    origin = ctx.initializer_of(qualified) or qualified
    return Const(tensor.detach().clone(), initializer=origin)


def admit_windows(ctx, x: fx.Node, kernel, strides, dilations, pads) -> None:
    """A sliding window (Conv, pooling) needs its input at least one window long; the
    analysis's hints must give at least two outputs (hints avoid 0 and 1, which torch
    would specialise): ``in + pads >= d * (k - 1) + 1 + s`` per spatial dim. `pads` is
    the total padding per spatial dim. When the hints give less, the analysis restarts
    with larger ones (`SymbolicShapes.admit`); no size is fixed by this."""
    fake = x.meta.get("val")
    if not isinstance(fake, torch.Tensor):
        return
    spatial = fake.shape[fake.dim() - len(kernel) :]
    where = f"{ctx.graph.where}: a window of {tuple(kernel)} on dims {tuple(spatial)}"
    for size, k, s, d, p in zip(spatial, kernel, strides, dilations, pads, strict=True):
        ctx.graph.shapes.admit(size, d * (k - 1) + 1 + s - p, where)


def _as_tuple(value, n: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


@lowering("Conv1d", "Conv2d", "Conv3d")
def _conv(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    if not isinstance(mod.padding, str):
        pads = [2 * p for p in mod.padding]
        admit_windows(ctx, x, mod.kernel_size, mod.stride, mod.dilation, pads)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(mod.kernel_size)]
    weight = ctx.tensor(_param(ctx, mod, "weight"))
    bias = ctx.tensor(_param(ctx, mod, "bias")) if mod.bias is not None else None
    padding = mod.padding if isinstance(mod.padding, str) else tuple(mod.padding)
    return ctx.call(
        fn, x, weight, bias, tuple(mod.stride), padding, tuple(mod.dilation), mod.groups
    )


@lowering("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")
def _conv_transpose(ctx, mod, node, args):
    """The module's own call, F.conv_transposeNd with its attributes (onnx2torch builds
    it from ConvTranspose's pads, strides, dilations, group and output_padding)."""
    if mod.padding_mode != "zeros":
        raise LoweringError(f"ConvTranspose with padding_mode {mod.padding_mode!r}")
    x = ctx.tensor(args[0])
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
    weight = ctx.tensor(_param(ctx, mod, "weight"))
    bias = ctx.tensor(_param(ctx, mod, "bias")) if mod.bias is not None else None
    return ctx.call(
        fn[len(mod.kernel_size)],
        x,
        weight,
        bias,
        tuple(mod.stride),
        tuple(mod.padding),
        tuple(mod.output_padding),
        mod.groups,
        tuple(mod.dilation),
    )


@lowering("BatchNorm1d", "BatchNorm2d", "BatchNorm3d")
def _batch_norm(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    stats = [ctx.tensor(_param(ctx, mod, n)) for n in ("running_mean", "running_var")]
    weight = ctx.tensor(_param(ctx, mod, "weight"))
    bias = ctx.tensor(_param(ctx, mod, "bias"))
    return ctx.call(F.batch_norm, x, *stats, weight, bias, False, mod.momentum, mod.eps)


@lowering("MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d")
def _pool(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    spatial = int(type(mod).__name__[-2])  # MaxPool2d -> 2
    kernel, stride = _as_tuple(mod.kernel_size, spatial), _as_tuple(mod.stride, spatial)
    pads = [2 * p for p in _as_tuple(mod.padding, spatial)]
    dilation = _as_tuple(getattr(mod, "dilation", 1), spatial)
    if not mod.ceil_mode:
        admit_windows(ctx, x, kernel, stride, dilation, pads)
    if isinstance(mod, nn.MaxPool1d):
        # torch's max_pool1d pins a symbolic length to its example (its kernel reads the
        # concrete size); max_pool2d over a unit height is the same op and stays symbolic
        rows = ctx.call(torch.unsqueeze, x, -2)
        pooled = ctx.call(
            F.max_pool2d,
            rows,
            (1, *kernel),
            (1, *stride),
            (0, *_as_tuple(mod.padding, 1)),
            (1, *dilation),
            ceil_mode=mod.ceil_mode,
        )
        return ctx.call(torch.squeeze, pooled, -2)
    if isinstance(mod, (nn.MaxPool2d, nn.MaxPool3d)):
        fn = {2: F.max_pool2d, 3: F.max_pool3d}[spatial]
        return ctx.call(
            fn, x, mod.kernel_size, mod.stride, mod.padding, mod.dilation, ceil_mode=mod.ceil_mode
        )
    if spatial == 3:
        return avg_pool3d(
            ctx, x, mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode, mod.count_include_pad
        )
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d}[spatial]
    return ctx.call(
        fn, x, mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode, mod.count_include_pad
    )


def avg_pool3d(ctx, x, kernel, stride, padding=0, ceil_mode=False, count_include_pad=True):
    """``F.avg_pool3d`` as two ``F.avg_pool2d``: over (H, W) with D folded into the
    channels, then over D with W' folded in. torch has no CPU avg_pool3d kernel for bfloat16
    or half (a ``.to(torch.bfloat16)`` copy failed). A window is a box and its divisor the
    product of its per-axis counts (padding counted or not, ceil_mode's clipped ends), so
    its mean is the mean over D of the means over (H, W), a rounding apart. The channels
    must be static (the unfold back); where they are not, ``F.avg_pool3d`` stays."""
    kernel, stride, padding = (_as_tuple(v, 3) for v in (kernel, stride, padding))
    channels = (shape_of(x) or (None, None))[1]
    if channels is None:
        args = (kernel, stride, padding, ceil_mode, count_include_pad)
        return ctx.call(F.avg_pool3d, x, *args)
    y = ctx.call(torch.flatten, x, 1, 2)  # [N, C * D, H, W]
    y = ctx.call(F.avg_pool2d, y, kernel[1:], stride[1:], padding[1:], ceil_mode, count_include_pad)
    y = ctx.call(torch.unflatten, y, 1, (channels, -1))  # [N, C, D, H', W']
    y = ctx.call(torch.flatten, ctx.call(torch.movedim, y, 4, 2), 1, 2)  # [N, C * W', D, H']
    y = ctx.call(
        F.avg_pool2d,
        y,
        (kernel[0], 1),
        (stride[0], 1),
        (padding[0], 0),
        ceil_mode,
        count_include_pad,
    )
    y = ctx.call(torch.unflatten, y, 1, (channels, -1))  # [N, C, W', D', H']
    return ctx.call(torch.movedim, y, 2, 4)


@lowering("OnnxPadStatic", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "ZeroPad2d")
def _pad(ctx, mod, node, args):
    x = ctx.tensor(args[0])
    if isinstance(mod, nn.modules.padding._ConstantPadNd):
        return ctx.call(F.pad, x, tuple(mod.padding), "constant", mod.value)
    # OnnxPadStatic already holds F.pad's (last dim first) order and mode names.
    value = mod.constant_value if mod.mode == "constant" else None
    return ctx.call(F.pad, x, tuple(mod.pads), mod.mode, value)


@lowering("OnnxPadDynamic", "OnnxPadSpec")
def _pad_dynamic(ctx, mod, node, args):
    """Pad with its pads as an input (Pad-11 on): static, or computed from sizes (a Sym
    of size nodes, kept symbolic); ``axes`` (Pad-18) names the padded dims."""
    x = ctx.tensor(args[0])
    rank = rank_of(x)
    pads = _pad_amounts(args[1])
    given = args[2] if len(args) > 2 else None
    value = _pad_value(given)
    axes = list(range(rank))
    if len(args) > 3 and args[3] is not None:
        axes = const_ints(args[3], "Pad axes")
    if len(pads) != 2 * len(axes):
        raise LoweringError(f"{len(pads)} pads for {len(axes)} axes (the spec wants twice)")
    if any(not -rank <= a < rank for a in axes):
        raise LoweringError(f"Pad axes {axes} out of range for a {rank}-D input")
    full = [0] * (2 * rank)
    for i, axis in enumerate(axes):
        full[axis % rank], full[rank + axis % rank] = pads[i], pads[len(axes) + i]
    mode = PAD_MODES.get(mod.mode, mod.mode)  # OnnxPadSpec holds ONNX's names
    if value is None and mode == "constant":
        return _pad_with_tensor(ctx, x, full, ctx.tensor(given))
    return emit_pad(ctx, x, full, mode, 0.0 if value is None else value)


def _pad_amounts(value) -> list:
    """Pad amounts: ints, or int nodes of the shape arithmetic (sizes stay symbolic)."""
    if isinstance(value, Sym):
        return list(value.items)
    return const_ints(value, "Pad pads")


def _pad_value(value) -> float | None:
    """Pad's constant_value as a number (absent means 0); None when computed at run time."""
    if value is None:
        return 0.0
    if isinstance(value, Sym) and value.is_static and len(value.items) == 1:
        return value.items[0]
    if isinstance(value, Const) and value.value.numel() == 1:
        return value.value.item()
    return None


def _pad_with_tensor(ctx, x: fx.Node, pads: list, value: fx.Node) -> fx.Node:
    """Constant Pad whose value is computed at run time (F.pad takes a number; onnx2torch
    passes the tensor and fails): x padded with 0, then Where(a padded all-True mask of x,
    that, value): the kept elements are x's, every added one is the value."""
    padded = emit_pad(ctx, x, pads, "constant", 0.0)
    if padded is x:
        return x
    inside = emit_pad(ctx, ctx.call(torch.ones_like, x, dtype=torch.bool), pads, "constant", False)
    return ctx.call(torch.where, inside, padded, ctx.method("type_as", value, x))


@lowering("Sequential")
def _sequential(ctx, mod, node, args):
    value = args[0]
    for child in mod:
        fn = LOWERINGS.get(type(child).__name__)
        if fn is None:
            raise LoweringError(f"no lowering for {type(child).__name__} inside Sequential")
        value = fn(ctx, child, node, [value])
    return value
