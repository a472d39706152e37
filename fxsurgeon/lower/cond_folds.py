"""What an ONNX If on a run-time predicate gives without a torch.cond, where its branches show it.

A branch runs only under its outcome of the predicate, so inside the then-branch the
predicate *is* true and inside the else-branch it *is* false (ONNX's ``cond`` is one bool
element): a branch that reads the predicate itself reads that constant (`assumed`). TF's
``a and b`` on a tensor ``a`` (autograph's ``tf.cond(a, lambda: b, lambda: a)``) so
becomes ``tf.cond(a, b, False)``, and with ``b`` a Python constant both branches give
constants. Then each output of the If is, exactly (`fold_output`):

* the same constant from both branches: that constant (``p ? c : c``);
* one-element bool constants true in the then-branch and false in the else-branch: the
  predicate itself (``p ? True : False``), its negation the other way round;
* the same value of the graph around the If, passed through by both branches: that value.

Anything else is left to the torch.cond: different constants of other kinds, a constant
against a computed value, branches of different ranks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from .values import Const, Sym, Value


def assumed(cond: Value, outcome: bool) -> Const | None:
    """The predicate `cond` as the constant it is inside the branch `outcome` runs: a
    bool tensor of its shape; None where its shape or dtype is not known to be one bool."""
    fake = cond.meta.get("val") if isinstance(cond, fx.Node) else None
    if not isinstance(fake, torch.Tensor) or fake.dtype != torch.bool:
        return None
    shape = tuple(fake.shape)
    if not all(isinstance(d, int) for d in shape) or fake.numel() != 1:
        return None
    return Const(torch.full(shape, outcome, dtype=torch.bool))


def within(values: list[Value], cond: Value, outcome: bool) -> list[Value]:
    """The If's outer `values` as the branch `outcome` sees them (`assumed`)."""
    known = assumed(cond, outcome)
    if known is None:
        return values
    return [known if v is cond else v for v in values]


class Captured:
    """A branch's inputs (the new graph's placeholders, one per operand) and the values its
    outputs have before they are written as tensors, recorded as it is lowered."""

    def __init__(self) -> None:
        self.inputs: list[fx.Node] = []
        self.outputs: list[Value] = []

    def finish(self, ctx, value: Any) -> Any:
        self.outputs = list(value) if isinstance(value, (tuple, list)) else [value]
        return value

    def operand(self, value: Value) -> int | None:
        """The index of the operand a branch output passes through unchanged, else None."""
        if isinstance(value, fx.Node) and value in self.inputs:
            return self.inputs.index(value)
        return None


def fold_output(
    ctx, cond: Value, then: Captured, other: Captured, index: int, operands: list[fx.Node]
) -> Value | None:
    """Output `index` of the If, where both branches give it from what they know now (see
    the module doc); None where it takes the torch.cond."""
    a, b = _static(then.outputs[index]), _static(other.outputs[index])
    if isinstance(a, Const) and isinstance(b, Const):
        if a.is_weight or b.is_weight:
            return None
        x, y = a.value, b.value
        if x.dtype != y.dtype or x.shape != y.shape:
            return None
        if torch.equal(x, y):
            return Const(x.clone())
        if x.dtype == torch.bool and x.numel() == 1:  # then != else: p or not p
            pred = ctx.tensor(cond)
            if not bool(x.reshape(-1)[0]):
                pred = ctx.call(torch.logical_not, pred)
            if tuple(pred.meta["val"].shape) != tuple(x.shape):
                pred = ctx.call(torch.reshape, pred, tuple(x.shape))
            return pred
        return None
    k = then.operand(then.outputs[index])
    if k is not None and k == other.operand(other.outputs[index]):
        return operands[k]
    return None


def _static(value: Value) -> Value:
    if isinstance(value, Sym) and value.is_static:
        return value.to_const()
    return value
