"""What a constant's readers prove about it, for the dataflow rule (`dataflow.py`).

* `is_size_arithmetic`: whole numbers combined only with the input's sizes (a float
  target size over ``Cast(Shape(x))``): shape arithmetic, no weight.
* `is_zero`: a value provably all zeros, so a product with it reads nothing of the other
  operand (Keras ConvLSTM's zero kernel for its initial state).
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx

from ..lower import follow_dtype

SIZE_ARITHMETIC = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv,
    torch.add, torch.sub, torch.mul, torch.div, torch.true_divide, torch.maximum, torch.minimum,
}  # fmt: skip


def is_size_arithmetic(v: torch.Tensor, end: fx.Node) -> bool:
    """Every element of `v` is whole, and each reader of `end` (past a read for its dtype
    alone) combines it with a value computed from the input's sizes only."""
    if not bool((v == v.round()).all()):
        return False
    readers = [u for u in end.users if not (u.target is follow_dtype and u.args[0] is not end)]
    for user in readers:
        if user.op != "call_function" or user.target not in SIZE_ARITHMETIC:
            return False
        others = [a for a in user.args[:2] if a is not end]
        if len(others) != 1 or not _from_sizes(others[0], end):
            return False
    return bool(readers)


def _from_sizes(value: object, end: fx.Node) -> bool:
    """`value` is computed from sizes (``x.size(i)``, ``x.shape``) and numbers alone."""
    if not isinstance(value, fx.Node):
        return isinstance(value, (int, float))
    stack, seen = [value], set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.op == "call_method" and node.target == "size":
            continue
        if node.op == "call_function" and node.target is getattr:
            if node.args[1] in ("shape", "device", "dtype"):
                continue
            return False
        if node.op not in ("call_function", "call_method") or node is end:
            return False
        inputs = node.all_input_nodes
        if node.target is follow_dtype:  # the second operand gives only the dtype
            inputs = [node.args[0]] if isinstance(node.args[0], fx.Node) else []
        stack.extend(inputs)
    return True


#: products whose output is zero when one of their first two operands is all zeros
PRODUCTS = {
    operator.mul, torch.mul, torch.matmul, operator.matmul, F.linear,
    torch.conv1d, torch.conv2d, torch.conv3d, F.conv1d, F.conv2d, F.conv3d,
}  # fmt: skip
#: ops that keep an all-zero input all zero (layout, reductions, casts)
_KEEP_ZERO = {
    torch.permute, torch.reshape, torch.transpose, torch.squeeze, torch.unsqueeze,
    torch.flatten, torch.sum, torch.mean, operator.neg, torch.neg, operator.getitem,
    "permute", "reshape", "view", "transpose", "squeeze", "unsqueeze", "flatten", "sum",
    "mean", "contiguous", "expand", "to", "float",
}  # fmt: skip
_ZEROS = {torch.zeros, torch.zeros_like, "new_zeros"}


def is_zero(node: fx.Node, depth: int = 0) -> bool:
    """`node` is provably all zeros: ``torch.full(size, 0)``, ``zeros``, ``zeros_like``,
    through layout ops, sums, means, casts and products with zeros (Keras ConvLSTM's
    initial state: ``sum(zeros_like(x))`` convolved with a zero kernel)."""
    if depth > 16 or node.op not in ("call_function", "call_method"):
        return False
    if node.target in _ZEROS:
        return True
    if node.target is torch.full:
        fill = node.args[1] if len(node.args) > 1 else node.kwargs.get("fill_value")
        return isinstance(fill, (int, float)) and not isinstance(fill, bool) and fill == 0
    if node.target in PRODUCTS:
        return any(isinstance(a, fx.Node) and is_zero(a, depth + 1) for a in node.args[:2])
    if node.target in _KEEP_ZERO or node.target is follow_dtype:
        first = node.args[0] if node.args else None
        return isinstance(first, fx.Node) and is_zero(first, depth + 1)
    return False
