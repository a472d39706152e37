"""The canonical form shared by the model graph, patterns and replacements: one spelling per op."""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx

# ---------------------------------------------------------------------------
# Canonical form (shared by the model graph, patterns and replacements)
# ---------------------------------------------------------------------------

_FUNCTION_ALIASES: dict[Any, Any] = {
    torch.add: operator.add,
    torch.sub: operator.sub,
    torch.subtract: operator.sub,
    torch.mul: operator.mul,
    torch.multiply: operator.mul,
    torch.div: operator.truediv,
    torch.divide: operator.truediv,
    torch.true_divide: operator.truediv,
    torch.neg: operator.neg,
    torch.negative: operator.neg,
    torch.pow: operator.pow,
    torch.ge: torch.greater_equal,
    operator.ge: torch.greater_equal,
    torch.gt: torch.greater,
    operator.gt: torch.greater,
    torch.le: torch.less_equal,
    operator.le: torch.less_equal,
    torch.lt: torch.less,
    operator.lt: torch.less,
    F.relu: torch.relu,
    F.tanh: torch.tanh,
    F.sigmoid: torch.sigmoid,
    F.softmax: torch.softmax,
    F.log_softmax: torch.log_softmax,
}

_METHODS: dict[str, Any] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "true_divide": operator.truediv,
    "neg": operator.neg,
    "pow": operator.pow,
    "matmul": torch.matmul,
    "reshape": torch.reshape,
    "view": torch.reshape,
    "permute": torch.permute,
    "transpose": torch.transpose,
    "t": torch.t,
    "softmax": torch.softmax,
    "log_softmax": torch.log_softmax,
    "mean": torch.mean,
    "sum": torch.sum,
    "amax": torch.amax,
    "amin": torch.amin,
    "sqrt": torch.sqrt,
    "rsqrt": torch.rsqrt,
    "reciprocal": torch.reciprocal,
    "tanh": torch.tanh,
    "erf": torch.erf,
    "exp": torch.exp,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "unsqueeze": torch.unsqueeze,
    "squeeze": torch.squeeze,
    "flatten": torch.flatten,
    "ge": torch.greater_equal,
    "greater_equal": torch.greater_equal,
    "gt": torch.greater,
    "le": torch.less_equal,
    "lt": torch.less,
}

_REDUCTIONS = (torch.mean, torch.sum, torch.amax, torch.amin)
_SOFTMAX = (torch.softmax, torch.log_softmax)
_ARITHMETIC = (operator.add, operator.sub, operator.mul, operator.truediv, operator.pow)
COMMUTATIVE = (operator.add, operator.mul)

# target -> positions of dim arguments, compared modulo the input rank when matching.
_DIM_ARGS: dict[Any, tuple[int, ...]] = {
    torch.mean: (1,),
    torch.sum: (1,),
    torch.amax: (1,),
    torch.amin: (1,),
    torch.softmax: (1,),
    torch.log_softmax: (1,),
    torch.transpose: (1, 2),
    torch.permute: (1,),
    torch.squeeze: (1,),
    torch.select: (1,),
    torch.flatten: (1, 2),
}


def canonicalize(graph: fx.Graph, nodes: Iterable[fx.Node] | None = None) -> None:
    """Rewrite `nodes` (default: all) of `graph` in place into the canonical form.

    The lowered model is in this form already; patterns and replacements are
    brought to it so that every way of writing one computation matches alike.
    """
    for node in list(graph.nodes if nodes is None else nodes):
        if node.op in ("call_function", "call_method"):
            _canonicalize_node(node)


def _canonicalize_node(node: fx.Node) -> None:
    args, kwargs = list(node.args), dict(node.kwargs)
    if node.op == "call_method":
        target = _METHODS.get(str(node.target))
        if target is None:
            return
        if target in (torch.reshape, torch.permute) and len(args) > 2:
            args = [args[0], tuple(args[1:])]
        elif (
            target in (torch.reshape, torch.permute) and len(args) == 2 and isinstance(args[1], int)
        ):
            args = [args[0], (args[1],)]
        node.op = "call_function"
    elif node.target in _OPERATOR_COMPARISONS and all(_is_size(a) for a in args):
        return  # sizes compared as Python ints/SymInts: torch.greater & co take tensors only
    else:
        target = _FUNCTION_ALIASES.get(node.target, node.target)
    if target in _ARITHMETIC or target is operator.neg:
        if (
            kwargs.get("alpha", 1) != 1
            or kwargs.get("rounding_mode") is not None
            or kwargs.get("out") is not None
        ):
            return  # not plain arithmetic: leave the call as written
        kwargs.pop("alpha", None)
        kwargs.pop("rounding_mode", None)
        for i, name in enumerate(("input", "other")):
            if name in kwargs:
                args.insert(i, kwargs.pop(name))
    elif target in _REDUCTIONS:
        args, kwargs = _canonical_reduction(args, kwargs)
    elif target in _SOFTMAX:
        if "dim" in kwargs:
            args = [args[0], kwargs.pop("dim")]
        kwargs.pop("_stacklevel", None)
        args = args[:2]
        if kwargs.get("dtype", 0) is None:
            kwargs.pop("dtype")
    elif target in (torch.reshape, torch.permute) and len(args) == 2 and isinstance(args[1], list):
        args[1] = tuple(args[1])
    elif target is operator.getitem and len(args) == 2 and isinstance(args[1], slice):
        args[1] = (args[1],)
    elif kwargs and _python_functional(target):
        args, kwargs = _keywords_to_positional(target, args, kwargs)
    rank = _rank(args[0]) if args else None
    if rank is not None and target in _REDUCTIONS + _SOFTMAX and len(args) > 1:
        args[1] = _negative_dims(args[1], rank)
    node.target = target
    node.args = tuple(args)
    node.kwargs = kwargs


_OPERATOR_COMPARISONS = (operator.ge, operator.gt, operator.le, operator.lt)
# calls whose result is a size when their operands are sizes
_SIZE_ARITHMETIC = (
    operator.add,
    operator.sub,
    operator.mul,
    operator.floordiv,
    operator.mod,
    operator.neg,
    torch.sym_max,
    torch.sym_min,
)


def _is_size(value: Any) -> bool:
    """A Python number, or a node known to give one (an int or SymInt, never a tensor):
    ``x.size(d)``, its ``fake`` value, or arithmetic on such values. A node of unknown
    kind (a pattern's placeholder) is not."""
    if isinstance(value, (int, float)):
        return True
    if not isinstance(value, fx.Node):
        return False
    val = value.meta.get("val")
    if isinstance(val, (int, float, torch.SymInt, torch.SymFloat)):
        return True
    if isinstance(val, torch.Tensor) or "fxs_shape" in value.meta:
        return False
    if value.op == "call_method":
        return value.target == "size" and len(value.args) == 2
    if value.op == "call_function" and value.target in _SIZE_ARITHMETIC:
        return all(_is_size(a) for a in value.args)
    return False


def _python_functional(target: Any) -> bool:
    """Python-level ``torch.nn.functional`` functions: `__torch_function__` hands them
    to the tracer with keywords (``F.layer_norm(x, s, weight=w, ...)``); the canonical
    form, like the lowering, passes positional-or-keyword parameters by position."""
    return inspect.isfunction(target) and getattr(target, "__module__", "") == "torch.nn.functional"


def _keywords_to_positional(target: Callable, args: list, kwargs: dict) -> tuple[list, dict]:
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return args, kwargs
    given = len(args)
    for p in parameters[given:]:
        if p.kind is not p.POSITIONAL_OR_KEYWORD:
            break
        if p.name in kwargs:
            args.append(kwargs.pop(p.name))
        elif p.default is not p.empty and any(
            q.name in kwargs for q in parameters[len(args) + 1 :]
        ):
            args.append(p.default)
        else:
            break
    # Trailing arguments at their defaults say nothing: F.silu(x), not F.silu(x, False).
    while len(args) > given and _is_default(args[-1], parameters[len(args) - 1].default):
        args.pop()
    return args, kwargs


def _is_default(value: Any, default: Any) -> bool:
    if isinstance(value, fx.Node) or default is inspect.Parameter.empty:
        return False
    return type(value) is type(default) and value == default


def _canonical_reduction(args: list, kwargs: dict) -> tuple[list, dict]:
    if "dim" in kwargs:
        args = [args[0], kwargs.pop("dim"), *args[1:]]
    if len(args) > 2:
        kwargs.setdefault("keepdim", args[2])
        args = args[:2]
    if len(args) == 2:
        if isinstance(args[1], int):
            args[1] = (args[1],)
        elif isinstance(args[1], list):
            args[1] = tuple(args[1])
        kwargs.setdefault("keepdim", False)
    if kwargs.get("dtype", 0) is None:
        kwargs.pop("dtype")
    return args, kwargs


def _negative_dims(dims: Any, rank: int) -> Any:
    if isinstance(dims, bool):
        return dims
    if isinstance(dims, int):
        return dims % rank - rank if rank else dims
    if isinstance(dims, tuple) and all(isinstance(d, int) for d in dims):
        return tuple(sorted(_negative_dims(d, rank) for d in dims))
    return dims


def _rank(value: Any) -> int | None:
    if isinstance(value, fx.Node):
        shape = value.meta.get("fxs_shape")
        return len(shape) if shape is not None else None
    return None
