"""The pattern engine: rewrite rules written as plain PyTorch functions.

A rule is a `Rule`: a ``pattern`` function, a ``replacement`` function with the
same parameters, an optional ``check``, a unique ``name``, the ``phase`` it
runs in and a one-line ``note`` saying where the variant comes from::

    def pattern(x):
        return 0.5 * x * (1.0 + torch.tanh(0.7978845608 * (x + 0.044715 * x**3)))

    def replacement(x):
        return F.gelu(x, approximate="tanh")

    gelu_tanh_1 = Rule("gelu_tanh_1", pattern, replacement, note="tf2onnx, HF gelu_new")

How a pattern matches (see `_Matcher`):

* Parameters are wildcards. They match any graph node or any Python literal
  (an epsilon, a shape tuple); annotate one ``float``/``int``/``tuple`` to
  accept literals only, or ``torch.Tensor`` for graph nodes only. A wildcard
  used twice must see the same node (or an equal literal) both times.
* Literal numbers written in the pattern match with a relative tolerance of
  1e-6 (TensorFlow bakes float32 approximations: 0.044714998 for 0.044715,
  off by 3.5e-8), never exactly. Float32 rounding is at most 6e-8 relative;
  the tolerance leaves room for a few ulps of float32 arithmetic and no more,
  since a rewrite turns the graph's constant into the math's: 1e-4 let
  ``0.50004 * x * (...)`` become GELU, changing outputs by 1e-4 relative (the
  fuzzer's find, fxsurgeon/fuzz.py). Integers (dims, shapes) match exactly.
* The pattern is traced with ``torch.fx.symbolic_trace`` and normalised by
  the same canonical form as the lowered model (`canonicalize`): ``torch.mul``,
  ``x.mul(...)`` and ``x * y`` are all ``operator.mul``, ``x.reshape(a, b)`` is
  ``torch.reshape(x, (a, b))``, reduction dims are compared modulo the rank.
* Matching starts at the node the pattern returns and walks inputs. ``+`` and
  ``*`` are commutative: both operand orders are tried, with backtracking.
* A computed (non-wildcard) node of the match other than the output may have
  no user outside the match: the rewrite would duplicate or lose its value.

``check(match)`` sees a `Match` (bound values, shapes, constant tensors) and
returns ``None`` to accept or a string saying why it declines. It may store
extra values (``match["heads"] = 4``) for replacement parameters that the
pattern does not have.

The replacement is called with the bound values: graph nodes arrive as fx
proxies, literals as themselves, so ``x.shape[-1]`` of a static dim is a plain
``int`` and Python code on literals (``if scale == 1.0``) runs at rewrite
time. What it computes is inserted before the match output, normalised,
tagged ``node.meta["fxsurgeon.rule"]``, and takes the output's place.

Rules run in ordered phases (`PHASES`); each phase repeats sweeps over the
graph until no rule fires, at most ``max_sweeps`` times, else
`ConvergenceError`. New nodes get shapes at once: the replacement's result
takes the shape of what it replaces, intermediates are run on meta tensors
(`infer_shapes`); where that fails, the phase ends by recording shapes again
on the example inputs (`propagate_shapes`), so later rules and phases see
the shape of every node.

Pattern files are Python code and are executed when loaded: load them only
from paths you trust (`load_rules` loads the built-in ``fxsurgeon.patterns``
and the paths you name, nothing else).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.resources
import importlib.util
import inspect
import math
import operator
import os
import re
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx
from torch.fx.operator_schemas import normalize_function

from .errors import ConvergenceError, PatternError
from .shapes import ExampleInputs, propagate_shapes

__all__ = [
    "PHASES",
    "Rule",
    "Match",
    "PatternReport",
    "RuleStats",
    "apply_rules",
    "load_rules",
    "canonicalize",
    "DEBUG_ENV",
    "PATTERNS_KEY",
    "RewriteHook",
]

#: The phases, in the order they run (each a bounded fixed point):
#: ``prepare`` undoes export noise the fusions should not see (transpose pairs,
#: no-op reshapes and casts); ``fuse`` writes linear layers, norms and
#: activations; ``attention`` finds scaled dot-product attention in what is
#: left; ``tidy`` merges what the fusions left adjacent (reshape of reshape).
PHASES: tuple[str, ...] = ("prepare", "fuse", "attention", "tidy")

#: Set to 1 to get the debug report of `apply_rules(debug=True)`.
DEBUG_ENV = "FXSURGEON_DEBUG_PATTERNS"

PATTERNS_KEY = "fxsurgeon.patterns"  # optimized.meta[...]: the PatternReport

#: ``apply_rules(on_rewrite=hook)``: ``hook(rule, match, result, created)`` runs after
#: every rewrite, once ``result`` has taken the place of the match output and before
#: the dead match is erased (``match.nodes`` are still in the graph, ``created`` are
#: the new nodes; the GraphModule's code is stale: run ``gm.graph`` with an
#: ``fx.Interpreter``). It returns None to keep the rewrite, or a reason to undo it:
#: the graph is put back as it was and the rule does not try that node again in
#: this phase. It may raise to stop the run, leaving the rewrite in place.
RewriteHook = Callable[["Rule", "Match", fx.Node, list[fx.Node]], "str | None"]
RULE_KEY = "fxsurgeon.rule"
RULE_FILE_KEY = "fxsurgeon.rule_file"
DEFAULT_MAX_SWEEPS = 20
REL_TOL = 1e-6  # relative; float32 rounding is 6e-8 (see the module docstring)


# ---------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------


@dataclass(eq=False)
class Rule:
    """One rewrite: ``pattern(*wildcards)`` -> ``replacement(*wildcards)``.

    Args:
        name: unique among all loaded rules; ``gelu_tanh_1``. Its family is the
            name without the trailing ``_<number>`` (``gelu_tanh``).
        pattern: a function of the wildcards returning what to find.
        replacement: a function taking the same parameters (and any extra
            values `check` stored) returning what to put instead.
        check: ``check(match) -> str | None``; a string declines the match
            and says why (shown by the debug report).
        phase: one of `PHASES` (or a tuple of them).
        note: where this variant comes from ("tf2onnx, HF TFViT gelu_new").
        override: this user rule replaces the built-in rule of the same name.
    """

    name: str
    pattern: Callable[..., Any]
    replacement: Callable[..., Any]
    check: Callable[[Match], str | None] | None = None
    phase: str | tuple[str, ...] = "fuse"
    note: str = ""
    override: bool = False
    file: str = field(default="", compare=False)  # set by the loader

    def __post_init__(self) -> None:
        where = self.where
        if not isinstance(self.name, str) or not re.fullmatch(
            r"[A-Za-z_][A-Za-z0-9_.\-]*", self.name
        ):
            raise PatternError(f"{where}: rule name must be a plain identifier, got {self.name!r}")
        for what in ("pattern", "replacement"):
            if not callable(getattr(self, what)):
                raise PatternError(f"{where}: rule {self.name!r}: {what} must be a function")
        if self.check is not None and not callable(self.check):
            raise PatternError(f"{where}: rule {self.name!r}: check must be a function or None")
        for phase in self.phases:
            if phase not in PHASES:
                raise PatternError(
                    f"{where}: rule {self.name!r}: unknown phase {phase!r} (phases: {', '.join(PHASES)})"
                )
        pattern_params = _parameters(self.pattern, self.name, "pattern")
        extra = [
            p
            for p in _parameters(self.replacement, self.name, "replacement")
            if p not in pattern_params
        ]
        if extra and self.check is None:
            raise PatternError(
                f"{where}: rule {self.name!r}: the replacement takes {', '.join(extra)} which the "
                "pattern does not bind; add a check that sets them (match[name] = value)"
            )

    @property
    def phases(self) -> tuple[str, ...]:
        return (self.phase,) if isinstance(self.phase, str) else tuple(self.phase)

    @property
    def family(self) -> str:
        return re.sub(r"_\d+$", "", self.name)

    @property
    def where(self) -> str:
        """``file:line`` of the pattern function."""
        code = getattr(self.pattern, "__code__", None)
        if code is None:
            return self.file or "<unknown>"
        return f"{code.co_filename}:{code.co_firstlineno}"


def _parameters(fn: Callable, rule: str, what: str) -> list[str]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise PatternError(f"rule {rule!r}: cannot read the {what}'s parameters: {exc}") from exc
    names = []
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise PatternError(
                f"{_where(fn)}: rule {rule!r}: the {what} may not take *args or **kwargs"
            )
        names.append(p.name)
    return names


def _where(fn: Callable) -> str:
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code else repr(fn)


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


# ---------------------------------------------------------------------------
# Compiled patterns
# ---------------------------------------------------------------------------

_LITERAL_ANNOTATIONS = {float: "literal", int: "literal", bool: "literal", tuple: "literal"}
_NODE_ANNOTATIONS = ("Tensor", "torch.Tensor", "fx.Node", "Node")


@dataclass
class _Compiled:
    rule: Rule
    graph: fx.Graph
    output: fx.Node
    wildcards: dict[str, str]  # name -> "any" | "node" | "literal"
    size: int  # computed (non-wildcard) nodes
    replacement_params: list[str]
    extras: list[str]

    @property
    def anchor_key(self) -> tuple[str, Any]:
        return (self.output.op, self.output.target)


def compile_rule(rule: Rule) -> _Compiled:
    """Trace and normalise a rule's pattern; PatternError (file:line) if it cannot be."""
    cached = rule.__dict__.get("_compiled")
    if cached is not None and cached[0] is rule.pattern:
        return cached[1]
    compiled = _compile(rule)
    rule.__dict__["_compiled"] = (rule.pattern, compiled)
    return compiled


def _compile(rule: Rule) -> _Compiled:
    try:
        traced = fx.symbolic_trace(rule.pattern)
    except Exception as exc:
        raise PatternError(
            f"{rule.where}: rule {rule.name!r}: the pattern cannot be traced by torch.fx: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    graph = traced.graph
    graph.eliminate_dead_code()
    canonicalize(graph)
    outputs = [n for n in graph.nodes if n.op == "output"]
    result = outputs[0].args[0]
    if not isinstance(result, fx.Node) or result.op not in ("call_function", "call_method"):
        raise PatternError(
            f"{rule.where}: rule {rule.name!r}: the pattern must return one computed tensor "
            f"(a torch call or arithmetic), got {result!r}"
        )
    for node in graph.nodes:
        if node.op in ("get_attr", "call_module"):
            raise PatternError(
                f"{rule.where}: rule {rule.name!r}: patterns cannot hold tensor constants or "
                f"modules ({node.format_node()}); write Python numbers or take a wildcard"
            )
    wildcards = _wildcard_kinds(rule)
    size = sum(1 for n in graph.nodes if n.op in ("call_function", "call_method"))
    pattern_params = set(wildcards)
    replacement_params = _parameters(rule.replacement, rule.name, "replacement")
    extras = [p for p in replacement_params if p not in pattern_params]
    return _Compiled(rule, graph, result, wildcards, size, replacement_params, extras)


def _wildcard_kinds(rule: Rule) -> dict[str, str]:
    kinds = {}
    for p in inspect.signature(rule.pattern).parameters.values():
        annotation = p.annotation
        if annotation in _LITERAL_ANNOTATIONS or annotation in ("float", "int", "bool", "tuple"):
            kinds[p.name] = "literal"
        elif annotation is torch.Tensor or annotation in _NODE_ANNOTATIONS:
            kinds[p.name] = "node"
        else:
            kinds[p.name] = "any"
    return kinds


# ---------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------


class Match:
    """One place a rule's pattern matched; what `check` and the report see.

    ``match["x"]`` is the value bound to wildcard ``x``: an ``fx.Node`` or a
    Python literal. ``match["heads"] = 4`` stores an extra value for a
    replacement parameter the pattern does not have.
    """

    def __init__(
        self, rule: Rule, module: fx.GraphModule, anchor: fx.Node, nodes: dict, bindings: dict
    ):
        self.rule = rule
        self.module = module
        self.anchor = anchor  # the graph node the pattern's output matched
        self.nodes: list[fx.Node] = list(dict.fromkeys(nodes.values()))  # computed nodes matched
        self.bindings: dict[str, Any] = dict(bindings)

    def __getitem__(self, name: str) -> Any:
        try:
            return self.bindings[name]
        except KeyError:
            raise KeyError(
                f"rule {self.rule.name!r} has no wildcard or extra value {name!r}"
            ) from None

    def __setitem__(self, name: str, value: Any) -> None:
        self.bindings[name] = value

    def __contains__(self, name: str) -> bool:
        return name in self.bindings

    def node(self, name: str) -> fx.Node | None:
        value = self.bindings.get(name)
        return value if isinstance(value, fx.Node) else None

    def shape(self, name_or_node: str | fx.Node) -> tuple | None:
        """Recorded shape (None marks a dynamic dim), or None if not a node / unknown."""
        node = self._node(name_or_node)
        return node.meta.get("fxs_shape") if node is not None else None

    def dtype(self, name_or_node: str | fx.Node) -> torch.dtype | None:
        node = self._node(name_or_node)
        return node.meta.get("fxs_dtype") if node is not None else None

    def rank(self, name_or_node: str | fx.Node) -> int | None:
        shape = self.shape(name_or_node)
        return len(shape) if shape is not None else None

    def is_constant(self, name_or_node: str | fx.Node) -> bool:
        """True for a tensor stored in the module (a weight or constant ``get_attr``)."""
        node = self._node(name_or_node)
        return node is not None and node.op == "get_attr"

    def tensor(self, name_or_node: str | fx.Node) -> torch.Tensor | None:
        """The value of a constant (``get_attr``) node, else None."""
        node = self._node(name_or_node)
        if node is None or node.op != "get_attr":
            return None
        value: Any = self.module
        for part in str(node.target).split("."):
            value = getattr(value, part)
        return value

    def _node(self, name_or_node: str | fx.Node) -> fx.Node | None:
        if isinstance(name_or_node, fx.Node):
            return name_or_node
        return self.node(name_or_node)

    def __repr__(self) -> str:
        binds = ", ".join(f"{k}={_short(v)}" for k, v in self.bindings.items())
        return f"Match({self.rule.name} at %{self.anchor.name}: {binds})"


@dataclass
class _State:
    nodes: dict  # pattern node -> graph node
    binds: dict  # wildcard name -> value
    count: int = 0  # computed pattern nodes matched so far
    parent: fx.Node | None = None  # the pattern node whose arguments are being matched

    def copy(self) -> _State:
        return _State(dict(self.nodes), dict(self.binds), self.count, self.parent)


@dataclass
class _Miss:
    """Where the best partial match of a rule stopped (for the debug report)."""

    count: int
    pattern_node: str
    graph_value: str
    reason: str
    anchor: str


class _Matcher:
    """Backtracking matcher of one compiled pattern, anchored at a graph node."""

    def __init__(self, compiled: _Compiled, module: fx.GraphModule, debug: bool):
        self.c = compiled
        self.module = module
        self.debug = debug
        self.best: _Miss | None = None
        self._anchor: fx.Node | None = None

    def matches(self, anchor: fx.Node) -> Iterator[Match]:
        """Every complete match at `anchor` that passes the user and `check` tests."""
        self._anchor = anchor
        for state in self._node(self.c.output, anchor, _State({}, {})):
            reason = self._outside_users(state, anchor)
            if reason is not None:
                self._miss(state, self.c.output, anchor, reason)
                continue
            match = Match(self.c.rule, self.module, anchor, state.nodes, state.binds)
            reason = self._check(match)
            if reason is not None:
                self._miss(state, self.c.output, anchor, f"check declined: {reason}")
                continue
            missing = [p for p in self.c.extras if p not in match.bindings]
            if missing:
                raise PatternError(
                    f"{self.c.rule.where}: rule {self.c.rule.name!r}: the check accepted "
                    f"{anchor.format_node()} but did not set {', '.join(missing)} for the replacement"
                )
            yield match

    def _check(self, match: Match) -> str | None:
        check = self.c.rule.check
        if check is None:
            return None
        try:
            reason = check(match)
        except Exception as exc:
            raise PatternError(
                f"{_where(check)}: check of rule {self.c.rule.name!r} failed on "
                f"{match.anchor.format_node()}: {type(exc).__name__}: {exc}"
            ) from exc
        if reason is not None and not isinstance(reason, str):
            raise PatternError(
                f"{_where(check)}: check of rule {self.c.rule.name!r} must return None or a "
                f"reason (str), got {reason!r}"
            )
        return reason

    # -- walking ---------------------------------------------------------------
    def _value(self, p: Any, g: Any, state: _State) -> Iterator[_State]:
        if isinstance(p, fx.Node):
            yield from self._node(p, g, state)
        elif isinstance(p, (tuple, list)):
            if not isinstance(g, (tuple, list)) or len(g) != len(p):
                self._miss(state, p, g, f"expected a sequence of {len(p)}")
                return
            yield from self._sequence(list(zip(p, g, strict=True)), 0, state)
        elif isinstance(p, slice):
            if not isinstance(g, slice):
                self._miss(state, p, g, "expected a slice")
                return
            pairs = [(p.start, g.start), (p.stop, g.stop), (p.step, g.step)]
            yield from self._sequence(pairs, 0, state)
        elif isinstance(g, fx.Node):
            self._miss(
                state, p, g, f"the pattern has the constant {p!r} here, the graph computes a value"
            )
        elif literal_equal(p, g):
            yield state
        else:
            self._miss(state, p, g, f"constant {_short(g)} != {_short(p)}")

    def _sequence(self, pairs: list, i: int, state: _State) -> Iterator[_State]:
        if i == len(pairs):
            yield state
            return
        p, g = pairs[i]
        for s in self._value(p, g, state):
            yield from self._sequence(pairs, i + 1, s)

    def _node(self, p: fx.Node, g: Any, state: _State) -> Iterator[_State]:
        if p.op == "placeholder":
            yield from self._bind(p, g, state)
            return
        if not isinstance(g, fx.Node):
            self._miss(
                state,
                p,
                g,
                f"the pattern computes {_target_name(p)} here, the graph has a constant",
            )
            return
        if p in state.nodes:
            if state.nodes[p] is g:
                yield state
            else:
                self._miss(state, p, g, f"already matched %{state.nodes[p].name}")
            return
        if g.op != p.op or g.target != p.target:
            self._miss(state, p, g, f"{_target_name(g)} is not {_target_name(p)}")
            return
        pairs = _argument_pairs(p, g)
        if pairs is None:
            self._miss(state, p, g, "arguments differ in number or keywords")
            return
        dims = _DIM_ARGS.get(p.target, ())
        rank = _rank(g.args[0]) if g.args else None
        if dims and rank is not None:
            pairs = [
                (_dims_mod(pv, rank), _dims_mod(gv, rank)) if i in dims else (pv, gv)
                for i, (pv, gv) in enumerate(pairs)
            ]
        orders = [pairs]
        if p.target in COMMUTATIVE and len(pairs) == 2:
            orders.append([(pairs[0][0], pairs[1][1]), (pairs[1][0], pairs[0][1])])
        for order in orders:
            s = state.copy()
            s.nodes[p] = g
            s.count += 1
            s.parent = p
            for done in self._sequence(order, 0, s):
                yield dataclasses.replace(done, parent=state.parent)

    def _bind(self, p: fx.Node, g: Any, state: _State) -> Iterator[_State]:
        name = str(p.target)
        kind = self.c.wildcards.get(name, "any")
        if kind == "node" and not isinstance(g, fx.Node):
            self._miss(state, p, g, f"wildcard {name} takes a tensor, got the constant {_short(g)}")
            return
        if kind == "literal" and isinstance(g, fx.Node):
            self._miss(state, p, g, f"wildcard {name} takes a constant, got %{g.name}")
            return
        if name in state.binds:
            bound = state.binds[name]
            if not _same_binding(bound, g):
                self._miss(state, p, g, f"wildcard {name} is already {_short(bound)}")
                return
            yield state
            return
        s = state.copy()
        s.binds[name] = g
        yield s

    def _outside_users(self, state: _State, anchor: fx.Node) -> str | None:
        inside = set(state.nodes.values())
        for node in inside:
            if node is anchor:
                continue
            for user in node.users:
                if user not in inside:
                    return f"%{node.name} is also used outside the match, by %{user.name}"
        return None

    def _miss(self, state: _State, p: Any, g: Any, reason: str) -> None:
        if not self.debug or (self.best is not None and self.best.count >= state.count):
            return  # on a tie the first failure (the pattern's own operand order) is kept
        if isinstance(p, fx.Node):
            pattern_node = _format(p)
        elif state.parent is not None:
            pattern_node = f"{_short(p)} in {_format(state.parent)}"
        else:
            pattern_node = repr(p)
        self.best = _Miss(
            state.count,
            pattern_node,
            _format(g) if isinstance(g, fx.Node) else repr(g),
            reason,
            _format(self._anchor) if self._anchor is not None else "",
        )


def _argument_pairs(p: fx.Node, g: fx.Node) -> list | None:
    """(pattern arg, graph arg) pairs, positional args then kwargs in the pattern's order."""
    if len(p.args) == len(g.args) and p.kwargs.keys() == g.kwargs.keys():
        return list(zip(p.args, g.args, strict=True)) + [
            (p.kwargs[k], g.kwargs[k]) for k in p.kwargs
        ]
    if p.op != "call_function":
        return None
    pn, gn = _all_keywords(p), _all_keywords(g)
    if pn is None or gn is None or pn.keys() != gn.keys():
        return None
    return [(pn[k], gn[k]) for k in pn]


def _all_keywords(node: fx.Node) -> dict | None:
    """The call's arguments by parameter name, defaults filled in (torch schemas)."""
    stand_ins: dict[int, fx.Node] = {}

    def stand_in(n: fx.Node) -> torch.Tensor:
        tensor = torch.empty(0, device="meta")
        stand_ins[id(tensor)] = n
        return tensor

    args = fx.node.map_arg(node.args, stand_in)
    kwargs = fx.node.map_arg(node.kwargs, stand_in)
    if not callable(node.target):
        return None
    try:
        normalized = normalize_function(
            node.target, tuple(args), dict(kwargs), normalize_to_only_use_kwargs=True
        )
    except Exception:
        return None
    if normalized is None:
        return None

    def back(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and id(value) in stand_ins:
            return stand_ins[id(value)]
        if isinstance(value, (tuple, list)):
            return type(value)(back(v) for v in value)
        return value

    return {k: back(v) for k, v in normalized.kwargs.items()}


def _dims_mod(value: Any, rank: int) -> Any:
    if isinstance(value, bool) or rank == 0:
        return value
    if isinstance(value, int):
        return value % rank
    if (
        isinstance(value, tuple)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return tuple(v % rank for v in value)
    return value


def literal_equal(a: Any, b: Any, rel: float = REL_TOL) -> bool:
    """Pattern constants against graph constants: floats within `rel`, the rest exactly."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-30)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(literal_equal(x, y, rel) for x, y in zip(a, b, strict=True))
    if isinstance(a, slice) and isinstance(b, slice):
        return all(
            literal_equal(x, y, rel)
            for x, y in ((a.start, b.start), (a.stop, b.stop), (a.step, b.step))
        )
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:
        return False


def _same_binding(a: Any, b: Any) -> bool:
    if isinstance(a, fx.Node) or isinstance(b, fx.Node):
        return a is b
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same_binding(x, y) for x, y in zip(a, b, strict=True))
    return literal_equal(a, b)


def _target_name(node: fx.Node) -> str:
    if node.op == "call_method":
        return f".{node.target}()"
    if node.op == "call_function":
        target = node.target
        module = getattr(target, "__module__", None) or ""
        name = getattr(target, "__name__", str(target))
        if module == "_operator":
            module = "operator"
        if module.startswith("torch"):
            module = "F" if "functional" in module or module == "torch._C._nn" else "torch"
        return f"{module}.{name}" if module else name
    return f"{node.op} {node.target}"


def _format(node: fx.Node) -> str:
    return node.format_node() or f"%{node.name}"


def _short(value: Any) -> str:
    if isinstance(value, fx.Node):
        return f"%{value.name}"
    if isinstance(value, float):
        return f"{value:.7g}"  # float32 precision: what TF baked in
    if isinstance(value, tuple):
        return "(" + ", ".join(_short(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


# ---------------------------------------------------------------------------
# Rewriting
# ---------------------------------------------------------------------------


class _ShapedProxy(fx.Proxy):
    """A proxy whose static shape is known: ``x.shape[i]``/``x.size(i)``/``x.dim()``
    are Python ints where the recorded dim is static, ``x.size(i)`` nodes otherwise."""

    def _shape_meta(self) -> tuple | None:
        return self.node.meta.get("fxs_shape")

    @property
    def shape(self):  # type: ignore[override]
        shape = self._shape_meta()
        if shape is None:
            return self.tracer.create_proxy("call_function", getattr, (self, "shape"), {})
        return tuple(d if d is not None else self.size(i) for i, d in enumerate(shape))

    @property
    def ndim(self):  # type: ignore[override]
        return self.dim()

    def dim(self):  # type: ignore[override]
        shape = self._shape_meta()
        if shape is None:
            return self.tracer.create_proxy("call_method", "dim", (self,), {})
        return len(shape)

    def size(self, dim: int | None = None):  # type: ignore[override]
        shape = self._shape_meta()
        if dim is None:
            if shape is None:
                return self.tracer.create_proxy("call_method", "size", (self,), {})
            return self.shape
        if shape is not None and shape[dim] is not None:
            return shape[dim]
        rank = len(shape) if shape is not None else None
        index = dim % rank if rank else dim
        return self.tracer.create_proxy("call_method", "size", (self, index), {})


class _Recorder(fx.proxy.GraphAppendingTracer):
    """Appends to the model graph and remembers every node it made."""

    def __init__(self, graph: fx.Graph):
        super().__init__(graph)
        self.created: list[fx.Node] = []

    def create_node(self, *args, **kwargs) -> fx.Node:
        node = super().create_node(*args, **kwargs)
        self.created.append(node)
        return node

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ShapedProxy(node, self)


def _rewrite(compiled: _Compiled, match: Match, on_rewrite: RewriteHook | None = None) -> int | str:
    """Insert the replacement before the match output, take its place, drop the dead match.

    Returns how many new nodes have no shape (see `infer_shapes`), or the reason
    `on_rewrite` gave for undoing the rewrite (the graph is as it was before)."""
    rule, anchor = compiled.rule, match.anchor
    graph = anchor.graph
    tracer = _Recorder(graph)

    def as_proxy(value: Any) -> Any:
        if isinstance(value, fx.Node):
            return tracer.proxy(value)
        if isinstance(value, tuple):
            return tuple(as_proxy(v) for v in value)
        if isinstance(value, list):
            return [as_proxy(v) for v in value]
        return value

    arguments = {name: as_proxy(match.bindings[name]) for name in compiled.replacement_params}
    with graph.inserting_before(anchor):
        try:
            result = rule.replacement(**arguments)
        except Exception as exc:
            for node in reversed(tracer.created):
                if not node.users:
                    graph.erase_node(node)
            raise PatternError(
                f"{_where(rule.replacement)}: replacement of rule {rule.name!r} failed on "
                f"{anchor.format_node()}: {type(exc).__name__}: {exc}"
            ) from exc
    if isinstance(result, fx.Proxy):
        result = result.node
    if not isinstance(result, fx.Node):
        raise PatternError(
            f"{_where(rule.replacement)}: replacement of rule {rule.name!r} must return a tensor "
            f"computed from its arguments, got {result!r}"
        )
    canonicalize(graph, tracer.created)
    origin = anchor.meta.get("fxsurgeon.onnx_node")
    for node in tracer.created:
        node.meta[RULE_KEY] = rule.name
        node.meta[RULE_FILE_KEY] = rule.file
        if origin is not None:
            node.meta.setdefault("fxsurgeon.onnx_node", origin)
    if result in tracer.created:
        for key in ("fxs_shape", "fxs_dtype"):
            if key in anchor.meta:
                result.meta[key] = anchor.meta[key]
    unknown = infer_shapes(tracer.created)
    saved_uses = {user: (user.args, user.kwargs) for user in anchor.users}
    anchor.replace_all_uses_with(result)
    if on_rewrite is not None:
        reason = on_rewrite(rule, match, result, list(tracer.created))
        if reason is not None:  # undo: the users read the anchor again, the new nodes go
            for user, (args, kwargs) in saved_uses.items():
                user.args, user.kwargs = args, kwargs
            for node in reversed(tracer.created):
                if not node._erased and not node.users:
                    graph.erase_node(node)
            return reason
    _erase_dead(graph, match.nodes)
    return unknown


class _Unknown(Exception):
    pass


_SAMPLE_SIZES = (2, 3)  # what a dynamic dim stands for in the two meta runs


def infer_shapes(nodes: Sequence[fx.Node]) -> int:
    """Record ``fxs_shape`` for new nodes by running them on meta tensors, twice.

    A dynamic dim of an input is 2 in one run and 3 in the other; an output dim
    that differs between the runs is dynamic. Returns how many nodes it could
    not run (an input of unknown shape): for those, the phase ends with
    `propagate_shapes` on the example inputs.
    """
    unknown = 0
    for node in nodes:
        if (
            node._erased
            or "fxs_shape" in node.meta
            or node.op not in ("call_function", "call_method")
        ):
            continue
        try:
            first, second = (_meta_value(node, run, {}) for run in (0, 1))
        except Exception:
            unknown += 1
            continue
        if (
            isinstance(first, torch.Tensor)
            and isinstance(second, torch.Tensor)
            and first.dim() == second.dim()
        ):
            node.meta["fxs_shape"] = tuple(
                a if a == b else None for a, b in zip(first.shape, second.shape, strict=True)
            )
            node.meta["fxs_dtype"] = first.dtype
    return unknown


def _meta_value(node: Any, run: int, cache: dict, depth: int = 0) -> Any:
    if not isinstance(node, fx.Node):
        return node
    if node in cache:
        return cache[node]
    shape, dtype = node.meta.get("fxs_shape"), node.meta.get("fxs_dtype")
    if shape is not None and dtype is not None:
        value = torch.empty(
            [_SAMPLE_SIZES[run] if d is None else d for d in shape], dtype=dtype, device="meta"
        )
    elif depth > 8 or node.op not in ("call_function", "call_method"):
        raise _Unknown(node.name)
    else:
        args = fx.node.map_aggregate(node.args, lambda a: _meta_value(a, run, cache, depth + 1))
        kwargs = fx.node.map_aggregate(node.kwargs, lambda a: _meta_value(a, run, cache, depth + 1))
        if "device" in kwargs:
            kwargs = {**kwargs, "device": "meta"}
        if node.op == "call_method":
            value = getattr(args[0], str(node.target))(*args[1:], **kwargs)
        elif callable(node.target):
            value = node.target(*args, **kwargs)
        else:
            raise _Unknown(node.name)
    cache[node] = value
    return value


def _erase_dead(graph: fx.Graph, nodes: list[fx.Node]) -> None:
    alive = [n for n in nodes if not n._erased]
    changed = True
    while changed:
        changed = False
        for node in alive:
            if not node._erased and not node.users:
                graph.erase_node(node)
                changed = True


# ---------------------------------------------------------------------------
# Running phases
# ---------------------------------------------------------------------------


@dataclass
class RuleStats:
    """How one rule did: anchors tried, matches rewritten, time spent."""

    hits: int = 0
    attempts: int = 0
    seconds: float = 0.0


@dataclass
class PatternReport:
    """What `apply_rules` did: matches per rule, a per-rule table, debug notes."""

    matches: dict[str, int] = field(default_factory=dict)
    stats: dict[str, RuleStats] = field(default_factory=dict)
    sweeps: dict[str, int] = field(default_factory=dict)
    debug: list[str] = field(default_factory=list)
    rules: dict[str, Rule] = field(default_factory=dict)
    #: rule -> why an ``on_rewrite`` hook undid its rewrites (one entry per undone match)
    declined: dict[str, list[str]] = field(default_factory=dict)

    def table(self) -> str:
        """The per-rule hits/attempts/time table (tinygrad's TRACK_MATCH_STATS)."""
        lines = [f"{'rule':28} {'phase':10} {'hits':>5} {'attempts':>9} {'ms':>8}  file"]
        for name, s in self.stats.items():
            rule = self.rules.get(name)
            phase = ",".join(rule.phases) if rule else ""
            where = Path(rule.file).name if rule and rule.file else ""
            lines.append(
                f"{name:28} {phase:10} {s.hits:>5} {s.attempts:>9} {s.seconds * 1e3:>8.2f}  {where}"
            )
        lines.append("sweeps: " + ", ".join(f"{k}={v}" for k, v in self.sweeps.items()))
        return "\n".join(lines)


def debug_enabled(debug: bool | None = None) -> bool:
    if debug:
        return True
    return os.environ.get(DEBUG_ENV, "") not in ("", "0", "false", "False")


def apply_rules(
    gm: fx.GraphModule,
    rules: Sequence[Rule] | None = None,
    *,
    examples: ExampleInputs | None = None,
    phases: Sequence[str] = PHASES,
    max_sweeps: int = DEFAULT_MAX_SWEEPS,
    debug: bool | None = None,
    on_rewrite: RewriteHook | None = None,
) -> PatternReport:
    """Rewrite `gm` in place with `rules` (default: the built-ins), phase by phase.

    Args:
        gm: a canonical graph with shape meta (what `optimize` has after lowering).
        rules: rules to run, in priority order within each phase.
        examples: the two example input sets; with them, a phase that made
            nodes whose shape `infer_shapes` could not tell records shapes again.
        phases: which phases to run, in this order.
        max_sweeps: a phase that still rewrites after this many sweeps raises
            `ConvergenceError` naming the rules that fired in the last sweep.
        debug: explain, for each rule that matched nothing, its best partial
            match (also on with the environment variable FXSURGEON_DEBUG_PATTERNS=1).
        on_rewrite: a `RewriteHook` run after every rewrite (per-rule
            verification and bisection, ``fxsurgeon/verify.py``).
    """
    debug = debug_enabled(debug)
    rules = load_rules() if rules is None else list(rules)
    compiled = [compile_rule(r) for r in rules]
    report = PatternReport(rules={r.name: r for r in rules})
    for c in compiled:
        report.stats[c.rule.name] = RuleStats()
    matchers = {c.rule.name: _Matcher(c, gm, debug) for c in compiled}
    canonicalize(gm.graph)
    for phase in phases:
        in_phase = [c for c in compiled if phase in c.rule.phases]
        if not in_phase:
            continue
        report.sweeps[phase] = _run_phase(
            gm, phase, in_phase, matchers, report, examples, max_sweeps, on_rewrite
        )
    report.matches = {name: s.hits for name, s in report.stats.items() if s.hits}
    if debug:
        report.debug = _explain(compiled, matchers, report)
        sys.stderr.write("\n".join(report.debug + [report.table()]) + "\n")
    return report


def _run_phase(gm, phase, compiled, matchers, report, examples, max_sweeps, on_rewrite=None) -> int:
    graph = gm.graph
    unknown = 0  # new nodes whose shape `infer_shapes` could not tell
    undone: set[tuple[str, fx.Node]] = set()  # (rule, anchor) the hook rolled back: not again
    for sweep in range(1, max_sweeps + 1):
        fired: Counter[str] = Counter()
        for c in compiled:
            stats = report.stats[c.rule.name]
            start = time.perf_counter()
            key = c.anchor_key
            for node in list(graph.nodes):
                if node._erased or (node.op, node.target) != key:
                    continue
                if (c.rule.name, node) in undone:
                    continue
                stats.attempts += 1
                match = next(iter(matchers[c.rule.name].matches(node)), None)
                if match is None:
                    continue
                outcome = _rewrite(c, match, on_rewrite)
                if isinstance(outcome, str):  # the hook undid it
                    undone.add((c.rule.name, node))
                    report.declined.setdefault(c.rule.name, []).append(outcome)
                    continue
                unknown += outcome
                stats.hits += 1
                fired[c.rule.name] += 1
            stats.seconds += time.perf_counter() - start
        if not fired:
            if sweep > 1:
                gm.recompile()
            if unknown and examples is not None:  # shapes for the next phase
                propagate_shapes(gm, examples)
            return sweep
        graph.eliminate_dead_code()
    last = ", ".join(
        f"{name} x{n} ({Path(report.rules[name].file or '?').name})"
        for name, n in fired.most_common()
    )
    raise ConvergenceError(
        f"phase {phase!r} did not reach a fixed point in {max_sweeps} sweeps; "
        f"rules that fired in the last sweep: {last}"
    )


def _explain(compiled: list[_Compiled], matchers: dict, report: PatternReport) -> list[str]:
    lines = []
    for c in compiled:
        name = c.rule.name
        if report.stats[name].hits:
            continue
        best = matchers[name].best
        if best is None:
            lines.append(
                f"[{name}] no match: no {_target_name(c.output)} node to start from ({c.rule.where})"
            )
            continue
        lines.append(
            f"[{name}] no match; best partial match: reached {best.count}/{c.size} pattern nodes, "
            f"anchored at {best.anchor}\n"
            f"    stopped at pattern node  {best.pattern_node}\n"
            f"    against graph value      {best.graph_value}\n"
            f"    because: {best.reason}  ({c.rule.where})"
        )
    return lines


# ---------------------------------------------------------------------------
# Loading rules
# ---------------------------------------------------------------------------

BUILTIN_PACKAGE = "fxsurgeon.patterns"


def builtin_files() -> list[Path]:
    """The built-in pattern files, in their run order (``fxsurgeon.patterns.ORDER`` first)."""
    try:
        package = importlib.import_module(BUILTIN_PACKAGE)
        root = importlib.resources.files(BUILTIN_PACKAGE)
        order = list(getattr(package, "ORDER", ()))
        found = sorted(
            p.name for p in root.iterdir() if p.name.endswith(".py") and not p.name.startswith("_")
        )
        base = Path(str(root))
    except ModuleNotFoundError:  # a plain source checkout that is not installed
        base = Path(__file__).resolve().parent.parent / "patterns"
        order = []
        found = sorted(p.name for p in base.glob("*.py") if not p.name.startswith("_"))
    names = [f"{stem}.py" for stem in order if f"{stem}.py" in found]
    names += [name for name in found if name not in names]
    return [base / name for name in names]


def load_rules(
    paths: Iterable[str | os.PathLike] = (),
    *,
    builtins: bool = True,
    disable: Iterable[str] = (),
) -> list[Rule]:
    """The built-in rules plus the rules in `paths` (files or directories of ``*.py``).

    Every module-level `Rule` of a file is loaded, in file order. A user rule
    whose name is a built-in's replaces it only with ``override=True``; any
    other repeated name is a `PatternError` naming both files. `disable` takes
    rule names, families (``gelu_tanh`` for ``gelu_tanh_1``, ``gelu_tanh_2``)
    or built-in file names (``attention``).

    Pattern files are Python code executed on load: pass only paths you trust.
    """
    loaded_builtins: list[Rule] = []
    if builtins:
        for path in builtin_files():
            loaded_builtins += _rules_of_module(_import_builtin(path), path)
    _reject_duplicates(loaded_builtins)
    by_name = {r.name: i for i, r in enumerate(loaded_builtins)}
    merged = list(loaded_builtins)
    user_rules: list[Rule] = []
    seen: dict[str, Rule] = {}
    for path in _expand(paths):
        for rule in _rules_of_module(_load_file(path), path):
            if rule.name in seen:
                raise PatternError(_duplicate(rule, seen[rule.name]))
            seen[rule.name] = rule
            if rule.name in by_name:
                builtin = loaded_builtins[by_name[rule.name]]
                if not rule.override:
                    raise PatternError(
                        _duplicate(rule, builtin)
                        + "; set override=True on the user rule to replace the built-in"
                    )
                merged[by_name[rule.name]] = rule
            elif rule.override:
                raise PatternError(
                    f"{rule.where}: rule {rule.name!r} has override=True but there is no built-in rule of that name"
                )
            else:
                user_rules.append(rule)
    rules = user_rules + merged
    return _disable(rules, list(disable))


def _disable(rules: list[Rule], disable: list[str]) -> list[Rule]:
    if not disable:
        return rules
    known = (
        {r.name for r in rules}
        | {r.family for r in rules}
        | {Path(r.file).stem for r in rules if r.file}
    )
    unknown = [d for d in disable if d not in known]
    if unknown:
        raise PatternError(
            f"disable: no rule, family or pattern file named {', '.join(map(repr, unknown))} "
            f"(rules: {', '.join(sorted(r.name for r in rules))})"
        )
    off = set(disable)
    return [r for r in rules if not ({r.name, r.family, Path(r.file).stem} & off)]


def _duplicate(a: Rule, b: Rule) -> str:
    return f"two rules are named {a.name!r}: {b.where} ({b.file}) and {a.where} ({a.file})"


def _reject_duplicates(rules: list[Rule]) -> None:
    seen: dict[str, Rule] = {}
    for rule in rules:
        if rule.name in seen:
            raise PatternError(_duplicate(rule, seen[rule.name]))
        seen[rule.name] = rule


def _expand(paths: Iterable[str | os.PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
        elif path.is_file():
            files.append(path)
        else:
            raise PatternError(f"pattern file or directory not found: {path}")
    return files


def _import_builtin(path: Path):
    name = f"{BUILTIN_PACKAGE}.{path.stem}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name not in (name, BUILTIN_PACKAGE):
            raise _load_error(path, exc) from exc
        return _load_file(path)  # not importable as a package: load by path
    except Exception as exc:
        raise _load_error(path, exc) from exc


def _load_file(path: Path):
    """Execute a pattern file as a fresh module (it is code: trusted paths only)."""
    path = path.resolve()
    name = f"fxsurgeon_user_patterns.{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{abs(hash(str(path))):x}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PatternError(f"{path}: not a Python pattern file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise _load_error(path, exc) from exc
    return module


def _load_error(path: Path, exc: BaseException) -> PatternError:
    if isinstance(exc, PatternError):
        return exc
    if isinstance(exc, SyntaxError):
        return PatternError(
            f"{exc.filename or path}:{exc.lineno}: syntax error in pattern file: {exc.msg}"
        )
    line = "?"
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            line = str(frame.lineno)
    return PatternError(
        f"{path}:{line}: loading the pattern file failed: {type(exc).__name__}: {exc}"
    )


def _rules_of_module(module, path: Path) -> list[Rule]:
    rules = []
    for value in list(vars(module).values()):
        if isinstance(value, Rule) and value not in rules:
            value.file = str(path)
            rules.append(value)
    for rule in rules:
        compile_rule(rule)  # fail now, with file and line, if the pattern cannot be traced
    return rules
