"""Reading the canonical graph for attention recognition: constants, shapes, dtypes,
index arithmetic over the sequence lengths, and the causal band test.

Split from ``_attention_scores.py`` (which walks the scores): these helpers only read
the graph, never mutate it.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx

#: Slices of the row index with a stop at least this are no-ops (TF writes 10**9).
HUGE_STOP = 10**6

# --------------------------------------------------------------------------- constants


def scalar(value: Any, module: fx.GraphModule) -> float | None:
    """A Python number or a one-element constant tensor, as a float; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, fx.Node) and value.op == "get_attr":
        tensor = constant(value, module)
        if isinstance(tensor, torch.Tensor) and tensor.numel() == 1 and not tensor.is_complex():
            return float(tensor.reshape(()).item())
    return None


def constant(node: fx.Node, module: fx.GraphModule) -> Any:
    value: Any = module
    for part in str(node.target).split("."):
        value = getattr(value, part)
    return value


def shape(node: Any) -> tuple | None:
    return node.meta.get("fxs_shape") if isinstance(node, fx.Node) else None


def node_dtype(node: Any) -> torch.dtype | None:
    return node.meta.get("fxs_dtype") if isinstance(node, fx.Node) else None


def band_condition(node: fx.Node) -> fx.Node | None:
    """The boolean condition of a 0/1 float band (bool -> float, reshaped), else None."""
    n = node
    while n.op == "call_function" and n.target in (torch.reshape, torch.unsqueeze):
        n = n.args[0]
    if n.op == "call_method" and n.target == "to" and node_dtype(n.args[0]) is torch.bool:
        return n.args[0]
    return None


def _name(value: Any) -> str:
    return f"%{value.name}" if isinstance(value, fx.Node) else repr(value)


# --------------------------------------------------------------------------- causal triangles


def _linear(value: Any, lengths: dict) -> dict | None:
    """`value` as {atom: coef} ("1" for the constant), atoms the lengths Lq/Lk; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return {"1": value}
    if not isinstance(value, fx.Node):
        return None
    if value.op == "call_method" and value.target == "size" and len(value.args) == 2:
        atom = lengths.get((value.args[0], value.args[1]))
        return {atom: 1} if atom is not None else None
    if value.op == "call_function" and value.target in (operator.add, operator.sub):
        a, b = (_linear(x, lengths) for x in value.args)
        if a is None or b is None:
            return None
        sign = 1 if value.target is operator.add else -1
        return _plus(a, {k: sign * c for k, c in b.items()})
    return None


def _plus(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, c in b.items():
        out[k] = out.get(k, 0) + c
    return {k: c for k, c in out.items() if c != 0}


def _index(node: Any, lengths: dict) -> tuple[str, dict, dict] | None:
    """(axis, length, offset) of arange(0, length) + offset as a row [L, 1] or a column [L]."""
    if not isinstance(node, fx.Node) or node.op != "call_function":
        return None
    t, args = node.target, node.args
    if t is torch.arange and len(args) == 3 and args[0] == 0 and args[2] == 1:
        length = _linear(args[1], lengths)
        dtype = node.kwargs.get("dtype")
        if length is None or (dtype is not None and dtype.is_floating_point):
            return None
        return "col", length, {}
    if t is torch.unsqueeze and len(args) == 2 and args[1] in (1, -1):
        inner = _index(args[0], lengths)
        return ("row", inner[1], inner[2]) if inner and inner[0] == "col" else None
    if t is operator.getitem and isinstance(args[1], tuple) and len(args[1]) == 1:
        (s,) = args[1]
        if not isinstance(s, slice):
            return None
        whole = s.stop is None or (isinstance(s.stop, int) and s.stop >= HUGE_STOP)
        if s.start in (None, 0) and s.step in (None, 1) and whole:
            return _index(args[0], lengths)
        return None
    if t in (operator.add, operator.sub):
        a, b = args
        left = _index(a, lengths)
        if left is not None:
            shift = _linear(b, lengths)
            if shift is None:
                return None
            sign = 1 if t is operator.add else -1
            return left[0], left[1], _plus(left[2], {k: sign * c for k, c in shift.items()})
        right = _index(b, lengths) if t is operator.add else None
        shift = _linear(a, lengths)
        if right is None or shift is None:
            return None
        return right[0], right[1], _plus(right[2], shift)
    return None


def is_causal(cond: fx.Node, lengths: dict, same: bool, static: tuple, module) -> bool:
    """Whether the boolean `cond` is the lower triangle i >= j at every (equal) length.

    `lengths` maps (node, dim) of a size() to "Lq"/"Lk"; `same` says Lq == Lk is proven;
    `static` is (Lq, Lk) as ints or None.
    """
    if not same:
        return False
    if cond.op == "get_attr":
        value = constant(cond, module)
        if not isinstance(value, torch.Tensor) or value.dim() < 2 or None in static:
            return False
        if any(d != 1 for d in value.shape[:-2]) or tuple(value.shape[-2:]) != static:
            return False
        triangle = torch.ones(static, dtype=torch.bool).tril()
        return bool(torch.equal(value.reshape(static).to(torch.bool), triangle))
    if cond.op != "call_function" or len(cond.args) != 2:
        return False
    a, b = cond.args
    ops = {
        torch.greater_equal: (a, b, 0),  # i + ra >= j + cb
        torch.less_equal: (b, a, 0),
        torch.greater: (a, b, 1),  # integers: i + ra > j + cb  <=>  i >= j + cb - ra + 1
        torch.less: (b, a, 1),
    }
    if cond.target not in ops:
        return False
    row_node, col_node, strict = ops[cond.target]
    row, col = _index(row_node, lengths), _index(col_node, lengths)
    if row is None or col is None or row[0] != "row" or col[0] != "col":
        return False

    def norm(form: dict) -> dict:  # Lk -> Lq (proven equal); static lengths -> numbers
        out: dict = {}
        for k, c in form.items():
            k = "Lq" if k == "Lk" else k
            if k == "Lq" and static[0] is not None:
                k, c = "1", c * static[0]
            out = _plus(out, {k: c})
        return out

    offset = norm(_plus(col[2], {k: -c for k, c in row[2].items()}))
    offset = _plus(offset, {"1": strict})
    return not offset and norm(row[1]) == norm({"Lq": 1}) and norm(col[1]) == norm({"Lk": 1})


# --------------------------------------------------------------------------- the whole
