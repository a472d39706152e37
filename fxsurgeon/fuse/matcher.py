"""Matching a compiled pattern against the model graph: `Match` and the matcher that builds it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx
from torch.fx.operator_schemas import normalize_function

from ..errors import PatternError
from .canon import _DIM_ARGS, COMMUTATIVE, _rank
from .ir import _Compiled
from .rule import REL_TOL, Rule, _where

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
    """One value: the same node, two reads of one attribute, or equal literals."""
    if isinstance(a, fx.Node) and isinstance(b, fx.Node):
        return a is b or (a.op == b.op == "get_attr" and a.target == b.target)
    if isinstance(a, fx.Node) or isinstance(b, fx.Node):
        return False
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
