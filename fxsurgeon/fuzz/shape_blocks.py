"""Blocks of shape and data movement, elementwise math, gather and pad, written the tf2onnx way."""

from __future__ import annotations

import math

import numpy as np

from .graph import _F32, _INT64_MAX, _T, _Graph, _Skip, _static


def _split(g: _Graph, t: _T, heads: int, head_dim: int) -> _T:
    """[N, S, H*D] -> [N, S, H, D] with Shape/Gather/Unsqueeze/Concat, as tf2onnx writes it."""
    return g.reshape(t, 2, [heads, head_dim])


def _block_reshape(g: _Graph, x: _T, near: bool) -> _T:
    options = ["noop_chain", "flatten"]
    static_tail = [i for i in range(1, x.rank) if _static(x, i)]
    if x.rank >= 3 and _static(x, -1) and _static(x, -2):
        options.append("merge")
    if _static(x, -1) and x.shape[-1] % 2 == 0 and x.rank < 5:
        options.append("split")
    if x.rank >= 2 and static_tail:
        options.append("double")
    if near and x.rank == 3 and _static(x, 1) and _static(x, 2):
        options = ["swap_like"]  # [N, S, C] -> [0, C, -1]: a shape-preserving look-alike
    variant = g.pick(options)
    if variant == "noop_chain":
        if g.coin() or not all(isinstance(d, int) for d in x.shape[1:]):
            target = g.op("Shape", [x.name])
        else:
            target = g.op(
                "Concat", [g.shape_prefix(x, 1), g.ints([d for d in x.shape[1:]])], axis=0
            )
        y = _T(g.op("Reshape", [x.name, target]), x.shape)
        g.block("reshape.noop", "reshape_noop", near=False)
        return y
    if variant == "flatten":
        axis = int(g.integers(1, x.rank)) if x.rank > 1 else 1
        y = g.op("Flatten", [x.name], axis=axis)
        lead = x.shape[:axis]
        tail = x.shape[axis:]
        first = math.prod(lead) if all(isinstance(d, int) for d in lead) else g.fresh("dyn")
        second = math.prod(tail) if all(isinstance(d, int) for d in tail) else g.fresh("dyn")
        g.block("reshape.flatten", "reshape", near=False)
        return _T(y, (first, second))
    if variant == "merge":
        y = g.reshape(x, x.rank - 2, [x.shape[-2] * x.shape[-1]])
    elif variant == "split":
        y = g.reshape(x, x.rank - 1, [2, x.shape[-1] // 2])
    elif variant == "double":
        inner = g.reshape(x, 1, [-1]) if all(_static(x, i) for i in range(1, x.rank)) else x
        y = g.reshape(inner, 1, [d for d in x.shape[1:]]) if inner is not x else x
        if y is x:
            raise _Skip
    else:  # swap_like
        s, c = x.shape[1], x.shape[2]
        y = _T(g.op("Reshape", [x.name, g.ints([0, c, -1])]), (x.shape[0], c, s))
        g.block("reshape~swap_like", "reshape_noop", near=True)
        return y
    g.block(f"reshape.{variant}", "reshape", near=False)
    return y


def _block_transpose(g: _Graph, x: _T, near: bool) -> _T:
    if x.rank < 2:
        raise _Skip
    rest = list(range(1, x.rank))

    def perm() -> list[int]:
        return [0, *(int(i) for i in g.rng.permutation(rest))]

    p = perm()
    if g.coin(0.2):
        p = list(range(x.rank))  # the identity, as tf2onnx sometimes leaves it
    first = g.op("Transpose", [x.name], perm=p)
    shape = tuple(x.shape[i] for i in p)
    y, variant = first, "single"
    if g.coin(0.7):
        q = [p.index(i) for i in range(x.rank)] if g.coin() else perm()
        y = g.op("Transpose", [first], perm=q)
        shape = tuple(shape[i] for i in q)
        variant = "pair"
        if near:
            g.extra_output(first)
            variant = "extra_user"
    g.block(
        f"transpose{'~' if variant == 'extra_user' else '.'}{variant}",
        "permute",
        near and variant == "extra_user",
    )
    return _T(y, shape)


def _block_cast(g: _Graph, x: _T, near: bool) -> _T:
    variant = g.pick(("noop", "float64_round_trip", "float64_math"))
    if variant == "noop":
        y = g.op("Cast", [x.name], to=1)
    else:
        wide = g.op("Cast", [x.name], to=11)  # DOUBLE
        if variant == "float64_math":
            wide = g.op("Mul", [wide, g.const(1.25, np.float64)])
        y = g.op("Cast", [wide], to=1)
    g.block(f"cast.{variant}", "cast", near=False)
    return _T(y, x.shape)


def _block_slice(g: _Graph, x: _T, near: bool) -> _T:
    axes = [i for i in range(1, x.rank)]
    if not axes:
        raise _Skip
    axis = int(g.pick(axes))
    dim = x.shape[axis]
    if not isinstance(dim, int):
        step = int(g.pick((1, 1, 2, 2, -1)))
        start = int(g.pick((0, 1, -2)))
        end = int(g.pick((_INT64_MAX, -1, 2**31 - 1)))
        if step < 0:  # tf2onnx's masked end for a negative stride is -1e9, never INT_MAX
            start, end = int(g.pick((-1, 1))), int(g.pick((-(10**9), -_INT64_MAX - 1)))
        new: int | str = g.fresh("dyn")
    else:
        if dim < 2:
            raise _Skip
        step = int(g.pick((1, 1, 2, -1)))
        for _ in range(10):
            start = int(g.integers(-dim, dim))
            end = int(g.pick((int(g.integers(-dim, dim + 1)), _INT64_MAX, -_INT64_MAX - 1)))
            new = (
                len(range(*slice(start, end, step).indices(dim)))
                if end > -dim - 1 or step < 0
                else 0
            )
            if step < 0 and end == -_INT64_MAX - 1:
                new = len(range(*slice(start, None, step).indices(dim)))
            if new:
                break
        else:
            raise _Skip
    inputs = [x.name, g.ints([start]), g.ints([end]), g.ints([axis if g.coin() else axis - x.rank])]
    if step != 1 or g.coin():
        inputs.append(g.ints([step]))
    y = g.op("Slice", inputs)
    shape = list(x.shape)
    shape[axis] = new
    g.block(f"slice.step{step}", "slice", near=False)
    return _T(y, tuple(shape))


def _block_unsqueeze(g: _Graph, x: _T, near: bool) -> _T:
    if x.rank >= 5:
        raise _Skip
    axis = int(g.integers(1, x.rank + 1))
    up = g.op("Unsqueeze", [x.name, g.ints([axis if g.coin() else axis - x.rank - 1])])
    shape = list(x.shape)
    shape.insert(axis, 1)
    if g.coin(0.7):
        mid = g.op(g.pick(("Relu", "Tanh", "Sigmoid")), [up])
        y = g.op("Squeeze", [mid, g.ints([axis])])
        g.block("squeeze.round_trip", "squeeze", near=False)
        return _T(y, x.shape)
    g.block("squeeze.unsqueeze", "squeeze", near=False)
    return _T(up, tuple(shape))


def _block_concat(g: _Graph, x: _T, near: bool) -> _T:
    axis = int(g.integers(0, x.rank))
    other = g.op(g.pick(("Sigmoid", "Neg", "Tanh")), [x.name])  # never equal to x
    y = g.op("Concat", [x.name, other] if g.coin() else [other, x.name], axis=axis)
    shape = list(x.shape)
    shape[axis] = 2 * shape[axis] if isinstance(shape[axis], int) else g.fresh("dyn")
    g.block("concat", "concat", near=False)
    return _T(y, tuple(shape))


def _block_reduce(g: _Graph, x: _T, near: bool) -> _T:
    axes = [i for i in range(1, x.rank) if _static(x, i)]
    if not axes or x.rank < 2:
        raise _Skip
    axis = int(g.pick(axes)) if g.coin(0.85) else 0
    keep = g.coin() or axis == 0
    if not keep and x.rank == 2:
        keep = True
    op = g.pick(("ReduceMean", "ReduceSum", "ReduceMax"))
    if op == "ReduceSum":  # opset 13+: axes as an input
        y = g.op(op, [x.name, g.ints([axis])], keepdims=int(keep))
    else:
        y = g.op(op, [x.name], axes=[axis], keepdims=int(keep))
    shape = list(x.shape)
    if keep:
        shape[axis] = 1
    else:
        del shape[axis]
    g.block(f"reduce.{op}", "reduce", near=False)
    return _T(y, tuple(shape))


def _block_softmax(g: _Graph, x: _T, near: bool) -> _T:
    axis = int(g.integers(1, x.rank)) if x.rank > 1 else 0
    op = g.pick(("Softmax", "LogSoftmax"))
    y = g.op(op, [x.name], axis=axis if g.coin() else axis - x.rank)
    g.block(f"softmax.{op}", "softmax", near=False)
    return _T(y, x.shape)


def _broadcast_shape(g: _Graph, x: _T) -> tuple[int, ...]:
    """A constant shape that broadcasts to x without changing its shape."""
    options: list[tuple[int, ...]] = [(), (1,)]
    if _static(x, -1):
        options += [(x.shape[-1],), (1, x.shape[-1])]
    if x.rank >= 2 and _static(x, -2):
        options.append((x.shape[-2], 1))
    return tuple(g.pick(options))


def _block_elementwise(g: _Graph, x: _T, near: bool) -> _T:
    kind = g.pick(("unary", "binary_const", "binary_swapped", "self", "pow", "where", "clip"))
    if kind == "unary":
        op = g.pick(
            ("Relu", "Sigmoid", "Tanh", "Neg", "Abs", "Erf", "exp", "sqrt", "recip", "LeakyRelu")
        )
        if op == "exp":
            y = g.op("Exp", [g.op("Mul", [x.name, g.scalar(0.3)])])
        elif op == "sqrt":
            y = g.op("Sqrt", [g.op("Add", [g.op("Abs", [x.name]), g.scalar(0.5)])])
        elif op == "recip":
            y = g.op("Reciprocal", [g.op("Add", [g.op("Abs", [x.name]), g.scalar(1.0)])])
        elif op == "LeakyRelu":
            y = g.op("LeakyRelu", [x.name], alpha=0.2)
        else:
            y = g.op(op, [x.name])
        tag = op
    elif kind in ("binary_const", "binary_swapped"):
        op = g.pick(("Add", "Sub", "Mul", "Div"))
        shape = _broadcast_shape(g, x)
        value = g.rng.uniform(0.5, 2.0, shape) * g.rng.choice([-1.0, 1.0], shape)
        const = g.const(value.astype(_F32))
        if kind == "binary_const":
            y = g.op(op, [x.name, const])
        elif op == "Div":  # const / (|x| + 1)
            y = g.op("Div", [const, g.op("Add", [g.op("Abs", [x.name]), g.scalar(1.0)])])
        else:
            y = g.op(op, [const, x.name])
        tag = f"{op}{list(shape)}"
    elif kind == "self":
        op = g.pick(("Mul", "Add", "Sub", "Max", "Min"))
        other = g.op(g.pick(("Tanh", "Sigmoid", "Relu")), [x.name])
        y = g.op(op, [x.name, other] if g.coin() else [other, x.name])
        tag = f"self_{op}"
    elif kind == "pow":
        y = g.op("Pow", [x.name, g.scalar(float(g.pick((2.0, 3.0))))])
        tag = "pow"
    elif kind == "where":
        positive = g.op("Greater", [x.name, g.scalar(0.0)])
        y = g.op("Where", [positive, x.name, g.op("Mul", [x.name, g.scalar(0.1)])])
        tag = "where"
    else:
        y = g.op("Clip", [x.name, g.const(-1.0), g.const(1.0)])
        tag = "clip"
    g.block(f"elementwise.{tag}", "elementwise", near=False)
    return _T(y, x.shape)


def _block_matmul_activations(g: _Graph, x: _T, near: bool) -> _T:
    if x.rank < 3:
        raise _Skip
    perm = list(range(x.rank))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    xt = g.op("Transpose", [x.name], perm=perm)
    scaled = g.op("Mul", [x.name, g.scalar(0.5)])
    y = g.op("MatMul", [scaled, xt])
    g.block("matmul~activations", "linear", near=True)
    return _T(y, (*x.shape[:-1], x.shape[-2]))


def _block_gather(g: _Graph, x: _T, near: bool) -> _T:
    if x.rank < 2:
        raise _Skip
    axis = int(g.integers(1, x.rank))
    dim = x.shape[axis]
    size = dim if isinstance(dim, int) else 2  # dynamic dims are at least 2 here
    if g.coin() or not isinstance(dim, int):  # a scalar index: BERT's pooler takes token 0
        index = int(g.integers(-size, size)) if isinstance(dim, int) else int(g.pick((0, -1)))
        y = g.op("Gather", [x.name, g.const(index, np.int64)], axis=axis)
        shape = x.shape[:axis] + x.shape[axis + 1 :]
        tag = "scalar"
    else:
        count = int(g.integers(1, min(size, 3) + 1))
        positions = g.rng.choice(size, count, replace=False)  # no repeats: no equal rows
        indices = [int(p) - size if g.coin() else int(p) for p in positions]
        y = g.op("Gather", [x.name, g.const(indices, np.int64)], axis=axis)
        shape = x.shape[:axis] + (len(indices),) + x.shape[axis + 1 :]
        tag = "vector"
    if not shape or len(shape) < 2:
        raise _Skip
    g.block(f"gather.{tag}", "gather", near=False)
    return _T(y, shape)


def _block_expand(g: _Graph, x: _T, near: bool) -> _T:
    if x.rank >= 4:
        raise _Skip
    axis = int(g.integers(1, x.rank + 1))
    up = g.op("Unsqueeze", [x.name, g.ints([axis])])
    reps = int(g.pick((2, 3)))
    target = [1] * (x.rank + 1)
    target[axis] = reps
    y = g.op("Expand", [up, g.ints(target)])
    # copies that differ, or a later norm over them divides rounding noise by ~0
    offsets = (0.5 * np.arange(reps) - 0.3).astype(_F32).reshape([reps] + [1] * (x.rank - axis))
    y = g.op("Add", [y, g.const(offsets)])
    shape = list(x.shape)
    shape.insert(axis, reps)
    g.block("expand", "expand", near=False)
    return _T(y, tuple(shape))


def _block_split(g: _Graph, x: _T, near: bool) -> _T:
    axes = [i for i in range(1, x.rank) if _static(x, i) and x.shape[i] >= 2]
    if not axes:
        raise _Skip
    axis = int(g.pick(axes))
    size = x.shape[axis]
    first = int(g.integers(1, size))
    a, b = g.op("Split", [x.name, g.ints([first, size - first])], outputs=2, axis=axis)
    y = g.op("Concat", [g.op("Tanh", [b]), a], axis=axis)
    g.block("split", "split", near=False)
    return _T(y, x.shape)


def _block_pad(g: _Graph, x: _T, near: bool) -> _T:
    axes = [i for i in range(1, x.rank) if _static(x, i)]
    if not axes:
        raise _Skip
    axis = int(g.pick(axes))
    before, after = int(g.integers(0, 3)), int(g.integers(1, 3))
    pads = [0] * (2 * x.rank)
    pads[axis], pads[x.rank + axis] = before, after
    mode = g.pick(("constant", "constant", "reflect", "edge"))
    if mode == "reflect" and x.shape[axis] <= max(before, after):
        mode = "edge"
    if mode == "edge" and x.shape[axis] < 2:
        mode = "constant"  # edge copies of a single value: rows of equal values
    inputs = [x.name, g.ints(pads)]
    if mode == "constant" and g.coin():
        inputs.append(g.const(0.5))
    y = g.op("Pad", inputs, mode=mode)
    shape = list(x.shape)
    shape[axis] = x.shape[axis] + before + after
    g.block(f"pad.{mode}", "pad", near=False)
    return _T(y, tuple(shape))


def _block_fill_concat(g: _Graph, x: _T, near: bool) -> _T:
    """``tf.concat([tf.fill(.., v), x, tf.fill(.., v)], axis)``: fills Expanded to x's run-time
    dims but the axis (a Pad, lower/pads.py). Near misses: the two sides' values differ
    (0.0 and -0.0 too), or one fill is not uniform."""
    axis = int(g.integers(1, x.rank)) if x.rank > 1 else 0
    value = float(g.pick((0.0, 0.0, 1.5, -2.0)))
    values = [value, value]
    uniform = [True, True]
    if near:
        if g.coin():
            values[1] = -value if value == 0.0 else value + 1.0
        else:
            uniform[g.integers(0, 2)] = False
    pieces = []
    for side in range(2):
        extent = int(g.integers(1, 3))
        dims = [g.op("Shape", [x.name], start=i, end=i + 1) for i in range(x.rank)]
        dims[axis] = g.ints([extent])
        target = g.op("Concat", dims, axis=0)
        if uniform[side]:
            fill = np.full([1] * x.rank, values[side], _F32)
        else:
            fill = np.full([1] * x.rank, values[side], _F32).repeat(extent, axis=axis)
            fill += (0.25 * np.arange(extent, dtype=_F32)).reshape(fill.shape)
        pieces.append((g.op("Expand", [g.const(fill), target]), extent))
    (pre, before), (post, after) = pieces
    y = g.op("Concat", [pre, x.name, post], axis=axis)
    shape = list(x.shape)
    size = x.shape[axis]
    shape[axis] = size + before + after if isinstance(size, int) else g.fresh("dyn")
    g.block("fill_concat", "fill_concat", near=near)
    return _T(y, tuple(shape))
