"""Trainability from dataflow: is a floating-point constant a learned tensor or part of a formula?

Without the TF model nothing names the variables (tf2onnx calls an initializer
after the op that reads it: ``.../Gather/resource:0``, ``const_fold_opt__697``),
so the decision is made from how the graph reads the tensor and what it holds.

The rule. A floating-point initializer is a **weight** (an ``nn.Parameter``)
when computation reads it as data: a MatMul/Gemm/Conv operand, a Gather table,
an operand of an Add/Mul on the activation path (biases, scales, position
embeddings), a Concat/Tile/Expand source joined to activations (class tokens),
a recurrent weight. It is **structural** (a non-persistent buffer) only when it
provably is not a learned value:

* it is not floating point (shape and index tensors);
* it has one element: a constant of a formula (``eps``, ``0.5``, ``sqrt(d)``,
  a mask fill such as ``-1e4`` or the dtype's minimum), unless a layer reads it
  in a weight role (`roles.py`): the bias of a linear or convolution with one
  output feature (a Keras ``Dense(1)``), the scale of a norm over one feature.
  There the one element is that layer's learned tensor, as any other size is;
  and unless the file says it is a TF variable: tf2onnx names a frozen variable
  read after its resource input (``attention/ReadVariableOp/resource:0``), which
  no formula's constant is (those are ``Const``/``y`` nodes or folded values).
  That is a learned scalar (Keras ``Attention``'s ``scale``, a temperature);
* it holds an infinity or NaN, or only values of magnitude >= 1e4 (a mask
  fill broadcast to a shape, tf2onnx's ``±1e9`` clamp bounds of a slice);
* it is a causal triangle: two values, laid out as a lower or upper triangle
  over its last two axes (the same in every leading slice);
* it is a selection kernel: a convolution's kernel whose every element is 0 or 1,
  each output channel holding exactly one 1 (tf2onnx writes
  ``tf.image.extract_patches`` as a Conv that copies each patch position to a
  channel); a learned kernel is never one;
* it is a weight's mask: every element 0 or 1, and every reader multiplies it into a
  value computed from constants alone, no graph input (PixelCNN's causal mask times
  its kernel, a pruning mask). A learned factor of a learned tensor is redundant with
  it (their product is one learned tensor), and a 0/1 one is a sparsity pattern;
* it is a range: at least three elements along one axis forming an exact
  arithmetic progression (position ids), or a geometric one (rotary
  frequencies ``base ** (-2i/d)``);
* it is a sinusoidal position table: along one axis (the positions, at least
  four), every column is a sinusoid ``a sin(w p) + b cos(w p)``, which is what
  ``c(p+1) + c(p-1) = 2 cos(w) c(p)`` says for each run of non-zero rows (a
  padding row is zeros; at most two rows outside runs of three go unchecked),
  within float32's rounding of the arguments; its
  values lie in [-1, 1], reach beyond 1/2, and at least one column oscillates
  (``cos w < 1``). Whether the halves are sines then cosines or interleaved,
  and how the frequencies are spaced, does not matter: the recurrence is the
  property every such layout shares, and a learned table breaks it at once;
* it is size arithmetic in float: every element a whole number, and every reader an
  elementwise ``+ - * /`` (or max/min) whose other operand is computed from the input's
  sizes alone (``tf.image.resize``'s antialias scale, the target size over
  ``Cast(Shape(x))``). A learned tensor is not whole-valued, nor divided by sizes;
* no computation reads it as data: its every reader is a comparison, the
  condition of a ``where``, or a product (mul, matmul, linear, conv) with a value
  provably all zeros (Keras ConvLSTM's zero kernel for its initial state convolves
  ``sum(zeros_like(x))``: zero whatever the kernel holds), or, followed through the
  float values computed from it, every path ends in such a reader or in an integer or
  boolean value (a sort's or argsort's indices: the keras.io MAE's fixed noise, negated
  and tiled, is read only for its order), so no output depends on it differentiably;
* it is the all-zero hidden-hidden bias ``b_hh`` of an LSTM or simple RNN
  (``torch.lstm``/``rnn_tanh``/``rnn_relu`` with biases): there ``b_ih`` and
  ``b_hh`` enter only as their sum, so a zero ``b_hh`` adds nothing the learned
  ``b_ih`` cannot (tf2onnx writes Keras's one bias into ``b_ih``, zeros into
  ``b_hh``). A GRU's ``b_hn`` sits inside the reset gate and always counts.

Everything else is a weight. A learned tensor that happens to look like a
formula constant (a learned scalar tf2onnx folded or renamed, a weight trained
into an exact range) is told apart only by the TF model (`tf_match.py` matches
variables by value).
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx

from ..lower import names_a_variable
from .value_proofs import PRODUCTS, is_size_arithmetic, is_zero

_COMPARISONS = {  # torch's long names are other objects than the short ones
    torch.eq,
    torch.ne,
    torch.lt,
    torch.le,
    torch.gt,
    torch.ge,
    torch.not_equal,
    torch.less,
    torch.less_equal,
    torch.greater,
    torch.greater_equal,
    operator.eq,
    operator.ne,
    operator.lt,
    operator.le,
    operator.gt,
    operator.ge,
}
_COMPARISON_METHODS = {"eq", "ne", "lt", "le", "gt", "ge"}
_COMPARISON_METHODS |= {"not_equal", "less", "less_equal", "greater", "greater_equal"}
_FILL_MAGNITUDE = 1e4
#: the reason for a tensor no output depends on differentiably; a copy of a tensor that is
#: read as data elsewhere (tf2onnx duplicates a codebook for its distances) is still that
#: tensor (`tf_match._assign_variables` ties it)
NOT_READ_AS_DATA = (
    "structural constant: read only by comparisons, as a where condition or in a product "
    "with zeros (or through them, or for its order: no output depends on it differentiably)"
)


def structural_reason(
    value: torch.Tensor, end: fx.Node, role: str | None = None, initializer: str = ""
) -> str | None:
    """Why `value` (read at `end`, in `role` of a layer if any, held by the ONNX
    `initializer` if known) is a structural constant; None when it is a weight."""
    if not value.is_floating_point():
        return "structural constant: not floating point (a shape or index tensor)"
    if value.numel() <= 1 and role is None and not names_a_variable(initializer):
        return "structural constant: one element, a constant of a formula (eps, a scale, a fill)"
    v = value.detach().to(torch.float64)
    if not torch.isfinite(v).all():
        return "structural constant: holds inf or NaN (a mask fill)"
    if bool((v.abs() >= _FILL_MAGNITUDE).all()):
        return (
            "structural constant: every element has magnitude >= 1e4 (a mask fill or a clamp bound)"
        )
    if _is_triangle(v):
        return "structural constant: a causal triangle over the last two axes"
    if _is_selection_kernel(v, end):
        return "structural constant: a 0/1 convolution kernel selecting one input per channel"
    if _is_weight_mask(v, end):
        return "structural constant: a 0/1 mask multiplied into a weight (no input reaches it)"
    if _is_range(v):
        return (
            "structural constant: an exact arithmetic or geometric range (positions, frequencies)"
        )
    if _is_sinusoid_table(v):
        return "structural constant: a sinusoidal position table (sin/cos of position x frequency)"
    if is_size_arithmetic(v, end):
        return "structural constant: whole numbers combined only with the input's sizes"
    if not _read_as_data(end):
        return NOT_READ_AS_DATA
    if _is_summed_recurrent_bias(end) and not bool(v.any()):
        return "structural constant: the zero b_hh of an LSTM/RNN, summed with its learned b_ih"
    return None


_SUMMED_BIAS_RECURRENCES = {torch.lstm, torch.rnn_tanh, torch.rnn_relu}


def _is_summed_recurrent_bias(end: fx.Node) -> bool:
    """`end` is read only as a ``b_hh`` (4th of each direction's 4) of a recurrence whose
    two biases enter as a sum: ``torch.lstm(x, hx, params, has_biases, ...)``."""
    if not end.users:
        return False
    for user in end.users:
        if user.op != "call_function" or user.target not in _SUMMED_BIAS_RECURRENCES:
            return False
        params = user.args[2] if len(user.args) > 3 else None
        if not isinstance(params, (list, tuple)) or user.args[3] is not True:
            return False
        if len(params) % 4 or end in user.args[:2] or end in user.args[3:]:
            return False
        if any(p is end and i % 4 != 3 for i, p in enumerate(params)):
            return False
    return True


_CONVOLUTIONS = {F.conv1d, F.conv2d, F.conv3d}


def _is_selection_kernel(v: torch.Tensor, end: fx.Node) -> bool:
    """`v` is read as the kernel of a convolution and copies one input element to each
    output channel: all 0 or 1, one 1 per output channel (its first axis)."""
    if v.dim() < 3 or not bool(((v == 0) | (v == 1)).all()):
        return False
    if not bool((v.reshape(v.shape[0], -1).sum(dim=1) == 1).all()):
        return False
    return bool(end.users) and all(
        u.op == "call_function" and u.target in _CONVOLUTIONS and u.args[1:2] == (end,)
        for u in end.users
    )


_MULTIPLIES = {operator.mul, torch.mul}


def _is_weight_mask(v: torch.Tensor, end: fx.Node) -> bool:
    """`v` is all 0 or 1 and every reader of `end` multiplies it into a value that no
    graph input reaches (the module docstring's weight mask)."""
    if v.numel() < 2 or not bool(((v == 0) | (v == 1)).all()) or not end.users:
        return False
    for user in end.users:
        if user.op != "call_function" or user.target not in _MULTIPLIES or len(user.args) != 2:
            return False
        others = [a for a in user.args if a is not end]
        if len(others) != 1 or not isinstance(others[0], fx.Node) or _reads_input(others[0]):
            return False
    return True


def _reads_input(node: fx.Node) -> bool:
    """Whether a graph input (a placeholder) is among `node`'s ancestors; past
    `_FOLLOW_LIMIT` nodes it counts as one (the safe answer: activations)."""
    stack, seen = [node], {node}
    while stack:
        current = stack.pop()
        if current.op == "placeholder" or len(seen) > _FOLLOW_LIMIT:
            return True
        for parent in current.all_input_nodes:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return False


def _is_triangle(v: torch.Tensor) -> bool:
    if v.dim() < 2 or min(v.shape[-2:]) < 2:
        return False
    values = torch.unique(v)
    if values.numel() != 2:
        return False
    high = (v == values[1]).reshape(-1, *v.shape[-2:])
    if not bool((high == high[0]).all()):
        return False
    square = high[0]
    rows, cols = square.shape
    ones = torch.ones(rows, cols, dtype=torch.bool)
    for candidate in (square, ~square):
        counts = candidate.sum(dim=1)
        nonfull = [i for i in range(rows) if 0 < int(counts[i]) < cols]
        if not nonfull:
            continue
        i = nonfull[0]
        k_lower = int(counts[i]) - i - 1
        k_upper = cols - int(counts[i]) - i
        if torch.equal(candidate, torch.tril(ones, k_lower)) or torch.equal(
            candidate, torch.triu(ones, k_upper)
        ):
            return True
    return False


def _is_range(v: torch.Tensor) -> bool:
    long = [d for d, size in enumerate(v.shape) if size > 1]
    if len(long) != 1 or v.shape[long[0]] < 3:
        return False
    seq = v.reshape(-1)
    steps = seq[1:] - seq[:-1]
    if bool((steps == steps[0]).all()) and float(steps[0]) != 0.0:
        return _exact_arithmetic(seq)
    if bool((seq > 0).all()) or bool((seq < 0).all()):
        ratios = seq[1:] / seq[:-1]
        return bool(torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-6, atol=0.0)) and (
            float(ratios[0]) != 1.0
        )
    return False


_SINUSOID_MIN_ROWS = 4
# float32 rounds an argument p*w (|w| <= 1) by up to p * 2**-24; the three-term
# residual sums three such errors, each scaled by at most 2: allow 8 ulps per row
_ARG_ULP = 2.0**-24


def _is_sinusoid_table(v: torch.Tensor) -> bool:
    """Every column a sinusoid of the row index, along either axis (module docstring)."""
    table = v.squeeze()
    if table.dim() != 2 or float(table.abs().max()) > 1.0 + 1e-6:
        return False
    if float(table.abs().max()) < 0.5:
        return False
    return any(_columns_are_sinusoids(t) for t in (table, table.T))


def _columns_are_sinusoids(table: torch.Tensor) -> bool:
    rows = table.shape[0]
    if rows < _SINUSOID_MIN_ROWS:
        return False
    nonzero = table.ne(0).any(dim=1).tolist()
    runs, start = [], None
    for i, flag in enumerate([*nonzero, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i))
            start = None
    # a run of one or two rows (fairseq's row 0 before its zero padding row)
    # has no three-term relation to check: at most two such rows are allowed
    if sum(end - begin for begin, end in runs if end - begin < 3) > 2:
        return False
    runs = [(begin, end) for begin, end in runs if end - begin >= 3]
    if sum(end - begin for begin, end in runs) < _SINUSOID_MIN_ROWS:
        return False
    oscillates = False
    for begin, end in runs:
        c = table[begin:end]
        middle, outer = c[1:-1], c[2:] + c[:-2]
        norm = (middle * middle).sum(dim=0)
        k = torch.where(norm > 0, (outer * middle).sum(dim=0) / norm.clamp_min(1e-300), 2.0)
        if bool((k.abs() > 2.0 + 1e-6).any()):
            return False
        residual = (outer - k * middle).abs()
        positions = torch.arange(begin + 1, end - 1, dtype=table.dtype).unsqueeze(1)
        if bool((residual > 8 * _ARG_ULP * (positions + 2) + 1e-6).any()):
            return False
        oscillates = oscillates or bool((k < 2.0 - 1e-3).any())
    return oscillates


def _exact_arithmetic(seq: torch.Tensor) -> bool:
    """The elements are start + i * step exactly (as the stored dtype rounds them)."""
    start, step = seq[0], seq[1] - seq[0]
    expected = start + step * torch.arange(seq.numel(), dtype=seq.dtype)
    return bool(torch.equal(expected, seq))


_FOLLOW_LIMIT = 64  # float values followed from a constant before it counts as data


def _read_as_data(end: fx.Node) -> bool:
    """Whether a float value computed from `end` reaches an output or a reader other than a
    comparison or a where's condition: integer and boolean values (indices of a sort,
    argsort, argmax; shapes) carry no derivative. Past `_FOLLOW_LIMIT` values, or at a
    value of unknown dtype, it does (the safe answer: a weight)."""
    stack, seen = [end], {end}
    while stack:
        node = stack.pop()
        for user in node.users:
            if user in seen or _reads_no_data(user, node):
                continue
            seen.add(user)
            if user.op not in ("call_function", "call_method") or len(seen) > _FOLLOW_LIMIT:
                return True
            dtype = user.meta.get("fxs_dtype")
            if isinstance(dtype, torch.dtype) and not dtype.is_floating_point:
                continue  # an integer or boolean value: no derivative flows on
            if dtype is None and not _is_tuple_of_values(user):
                return True
            stack.append(user)
    return False


def _reads_no_data(user: fx.Node, read: fx.Node) -> bool:
    if user.op == "call_function" and user.target in _COMPARISONS:
        return True
    if user.target in PRODUCTS and any(
        a is not read and is_zero(a) for a in user.args[:2] if isinstance(a, fx.Node)
    ):
        return True  # a product with zeros: zero whatever `read` holds, and no gradient
    if user.op == "call_method" and user.target in _COMPARISON_METHODS:
        return True
    return (
        user.op == "call_function"
        and user.target is torch.where
        and user.args[0] is read
        and all(a is not read for a in user.args[1:])
    )


def _is_tuple_of_values(node: fx.Node) -> bool:
    """A call that returns several values (``torch.sort``: values, indices), each taken by
    a getitem: followed to them, each with its own dtype."""
    return bool(node.users) and all(
        u.op == "call_function" and u.target is operator.getitem for u in node.users
    )


def inner_reader(end: fx.Node) -> fx.Node | None:
    """The placeholder of a loop body or ``If`` branch that receives `end`, when `end`'s
    only reader is that loop or conditional (a recurrence kept as an ONNX ``Loop`` gets
    its weights as loop operands): what reads the weight is inside. None otherwise."""
    from ..lower import run_cond, run_loop, run_while, run_while_tensors, size_branch  # noqa: I001

    if len(end.users) != 1:
        return None
    user = next(iter(end.users))
    body_node: object
    if user.op != "call_function" or len(user.args) < 4:
        return None
    if user.target is run_loop:  # run_loop(body, steps, carried, scans, *values)
        body_node, index = user.args[0], _position(user.args[4:], end)
        offset = 2  # the body's placeholders: iteration, condition, then the values
    elif user.target is run_while:  # run_while(body, trip, go, carried, scans, *values)
        body_node, index, offset = user.args[0], _position(user.args[5:], end), 2
    elif user.target is run_while_tensors:  # run_while_tensors(body, trip, go, carried, *values)
        body_node, index, offset = user.args[0], _position(user.args[4:], end), 2
    elif user.target in (torch.cond, run_cond, size_branch) and isinstance(
        user.args[3], list | tuple
    ):
        body_node, index, offset = user.args[1], _position(user.args[3], end), 0
    else:
        return None
    if index is None or not isinstance(body_node, fx.Node) or body_node.op != "get_attr":
        return None
    from .roles import _fetch

    root = user.graph.owning_module
    body = _fetch(root, str(body_node.target)) if root is not None else None
    if not isinstance(body, fx.GraphModule):
        return None
    placeholders = [n for n in body.graph.nodes if n.op == "placeholder"]
    if offset + index >= len(placeholders):
        return None
    return placeholders[offset + index]


def _position(values, end: fx.Node) -> int | None:
    positions = [i for i, v in enumerate(values) if v is end]
    return positions[0] if len(positions) == 1 else None


def reading_kind(end: fx.Node) -> str:
    """A word for how the graph reads a weight, for its name: weight, bias, scale, token, table."""
    from .roles import _ROLES  # roles -> names -> here: import when called

    if (inner := inner_reader(end)) is not None:
        return reading_kind(inner)
    # a body's placeholder may also go to its outputs as it is (loop-carried): not a read
    users = [u for u in end.users if u.op != "output" or end.op != "placeholder"]
    user = users[0] if users else None
    while user is not None and len(users) == 1 and user.args and user.args[0] is end:
        if _splits(user):  # pieces of one tensor (a GRU's two biases): the first one's reader
            user = next((u for u in user.users if u.target is operator.getitem), None)
            if user is None:
                break
        elif not _reshapes(user):
            break
        end, user = user, next(iter(user.users), None)
        users = list(end.users)
    if user is None or user.op not in ("call_function", "call_method"):
        return "weight"
    if (
        user.target in _RECURRENCES
        and len(user.args) > 7
        and isinstance(user.args[2], list | tuple)
    ):
        return _recurrent_name(end, user.args[2], user.args[3] is True, user.args[7] is True)
    positions = [i for i, a in enumerate(user.args) if a is end]
    role = _ROLES.get(user.target, {}).get(positions[0]) if len(positions) == 1 else None
    if role is not None:
        return role
    target = user.target
    name = getattr(target, "__name__", str(target))
    if name in ("addmm", "baddbmm", "addmv", "addbmm") and user.args and user.args[0] is end:
        return "bias"
    if name in ("embedding", "index_select") or target is torch.nn.functional.embedding:
        return "weight"
    if name in ("cat", "concat", "tile", "expand", "repeat", "broadcast_to", "expand_as"):
        return "token"
    if name in ("add", "iadd", "sub") or target in (operator.add, operator.sub):
        one_axis = sum(1 for s in end.meta.get("fxs_shape", ()) if s != 1) <= 1
        return "bias" if one_axis or _adds_to_a_product(user, end) else "embedding"
    if name in ("mul", "imul") or target is operator.mul:
        return "scale"
    return "weight"


_PRODUCTS = {"linear", "matmul", "einsum", "bmm", "mm", "conv1d", "conv2d", "conv3d"}


def _adds_to_a_product(add: fx.Node, end: fx.Node) -> bool:
    """`end` is added to a weighted product's output, perhaps rearranged: a bias of several
    axes (Keras's EinsumDense ``[heads, head_dim]``), not a table added to activations."""
    other = next((a for a in add.args if isinstance(a, fx.Node) and a is not end), None)
    while other is not None and _reshapes(other):
        other = other.args[0] if isinstance(other.args[0], fx.Node) else None
    if other is None or other.op != "call_function":
        return False
    if getattr(other.target, "__name__", "") not in _PRODUCTS:
        return False
    return any(_rearranged_constant(a) for a in other.all_input_nodes)


def _rearranged_constant(node: fx.Node) -> bool:
    while _reshapes(node) and isinstance(node.args[0], fx.Node):
        node = node.args[0]
    return node.op == "get_attr"


_RECURRENCES = {torch.lstm, torch.gru, torch.rnn_tanh, torch.rnn_relu}


def _recurrent_name(end: fx.Node, params, has_biases: bool, bidirectional: bool) -> str:
    """torch's own name for an element of a recurrence's flat weights (as ``nn.LSTM``
    names it): ``weight_ih_l0``, ``bias_hh_l0_reverse``, ..."""
    per = 4 if has_biases else 2
    i = next(i for i, p in enumerate(params) if p is end)
    group, piece = divmod(i, per)
    layer, direction = divmod(group, 2 if bidirectional else 1)
    kind = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")[piece]
    return f"{kind}_l{layer}" + ("_reverse" if direction else "")


_RESHAPES = {"reshape", "view", "squeeze", "unsqueeze", "flatten", "permute", "t", "transpose"}


def _reshapes(node: fx.Node) -> bool:
    """An op that only rearranges its input's elements (a weight read through it keeps its kind)."""
    return _call_name(node) in _RESHAPES


def _splits(node: fx.Node) -> bool:
    """An op that cuts its input into pieces (read through ``getitem``)."""
    return _call_name(node) in ("split", "unbind", "chunk")


def _call_name(node: fx.Node) -> str:
    """The function's or method's name of a call node; "" for any other node."""
    if node.op == "call_method":
        return str(node.target)
    return getattr(node.target, "__name__", "") if node.op == "call_function" else ""
