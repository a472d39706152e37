"""Atoms and expressions: a node's value written as Python."""

from __future__ import annotations

import builtins
import heapq
import operator
from collections import defaultdict
from typing import Any

import torch
from torch import fx

from .helpers import _inputs, _relative, _within
from .literals import (
    _AS_METHOD,
    _BINARY,
    _UNARY,
    _attr_chain,
    _function_text,
    _is_identifier,
    _literal,
)
from .output import _INT32_MAX, CodegenError
from .records import _Call, _Constant


class _Expressions:
    """Atoms and expressions: a node's value written as Python."""

    # ------------------------------------------------------------------ atoms

    def atom(self: Any, node: fx.Node) -> str:
        if node in self.expr:
            return self.expr[node]
        if node.op == "get_attr":
            target = str(node.target)
            if self.gen.is_state(target) or self.gen.is_subgraph(target):
                if not _within(target, self.owner):
                    raise CodegenError(f"{self.owner_class} reads {target} from outside its block")
                return _attr_chain("self", _relative(target, self.owner))
            if target not in self._constant_attrs:
                attr = f"const_{len(self.constants)}"
                self._constant_attrs[target] = attr
                self.constants.append(_Constant(attr, self.gen._fetch(target)))
            return f"self.{self._constant_attrs[target]}"
        raise CodegenError(f"node {node.format_node()} is used before it is computed")

    def render(self: Any, arg: Any, *, index: bool = False) -> str:
        if isinstance(arg, fx.Node):
            return self.atom(arg)
        if isinstance(arg, tuple) and not isinstance(arg, torch.Size):
            if index and arg:
                return ", ".join(self.render(a, index=True) for a in arg) + (
                    "," if len(arg) == 1 else ""
                )
            inner = ", ".join(self.render(a) for a in arg)
            return f"({inner},)" if len(arg) == 1 else f"({inner})"
        if isinstance(arg, list):
            return f"[{', '.join(self.render(a) for a in arg)}]"
        if isinstance(arg, dict):
            return "{" + ", ".join(f"{_literal(k)}: {self.render(v)}" for k, v in arg.items()) + "}"
        if isinstance(arg, slice):
            if not index:
                return f"slice({self.render(arg.start)}, {self.render(arg.stop)}, {self.render(arg.step)})"
            return self._slice(arg)
        if arg is Ellipsis:
            return "..."
        text = _literal(arg)
        return text

    def _slice(self: Any, s: slice) -> str:
        start, stop, step = s.start, s.stop, s.step
        if step in (None, 1) and isinstance(start, int) and start == 0:
            start = None
        if step in (None, 1) and isinstance(stop, int) and stop >= _INT32_MAX:
            stop = None  # INT_MAX means "to the end" (no tensor dim is that long)
        if step == 1:
            step = None
        text = f"{'' if start is None else self.render(start)}:{'' if stop is None else self.render(stop)}"
        if step is not None:
            text += f":{self.render(step)}"
        return text

    @staticmethod
    def _operand(text: str) -> str:
        return f"({text})" if text.startswith("-") else text

    # ------------------------------------------------------------------ expressions

    def expression(self: Any, node: fx.Node) -> str:
        args, kwargs = node.args, node.kwargs
        if node.op == "call_module":
            rel = _relative(str(node.target), self.owner)
            return f"{_attr_chain('self', rel)}({self._call_args(args, kwargs)})"
        if node.op == "call_method":
            obj = self._operand(self.render(args[0]))
            return f"{obj}.{node.target}({self._call_args(args[1:], kwargs)})"
        target = node.target
        if target in _BINARY and len(args) == 2 and not kwargs:
            left, right = self.render(args[0]), self.render(args[1])
            if target is operator.pow or left.startswith("-"):
                left = self._operand(left)
            return f"{left} {_BINARY[target]} {right}"
        if target in _UNARY and len(args) == 1 and not kwargs:
            return f"{_UNARY[target]}{self._operand(self.render(args[0]))}"
        if target is operator.getitem and len(args) == 2 and not kwargs:
            obj = self._operand(self.render(args[0]))
            return f"{obj}[{self.render(args[1], index=True)}]"
        if (
            target is builtins.getattr
            and len(args) == 2
            and isinstance(args[1], str)
            and _is_identifier(args[1])
        ):
            return f"{self._operand(self.render(args[0]))}.{args[1]}"
        if target in _AS_METHOD and args and isinstance(args[0], fx.Node) and not kwargs:
            method, unpack = _AS_METHOD[target]
            rest = list(args[1:])
            if unpack and len(rest) == 1 and isinstance(rest[0], (tuple, list)) and rest[0]:
                rest = list(rest[0])
            if (
                target is torch.squeeze
                and len(rest) == 1
                and isinstance(rest[0], tuple)
                and len(rest[0]) == 1
            ):
                rest = [rest[0][0]]
            return f"{self.render(args[0])}.{method}({', '.join(self.render(a) for a in rest)})"
        helper = self.gen.helper(target)
        if helper is not None:  # run_loop, ...: copied into model.py
            return f"{helper}({self._call_args(args, kwargs)})"
        try:
            function = _function_text(target)
        except CodegenError as exc:
            raise CodegenError(f"node {node.format_node()} {exc}") from None
        return f"{function}({self._call_args(args, kwargs)})"

    def _call_args(self: Any, args: Any, kwargs: dict[str, Any]) -> str:
        parts = [self.render(a) for a in args]
        parts += [f"{k}={self.render(v)}" for k, v in kwargs.items()]
        return ", ".join(parts)

    # ------------------------------------------------------------------ statements

    def _units(self: Any) -> list[fx.Node | _Call]:
        """Nodes and block calls in an order where every block is one call."""
        found = self.gen.find_regions(self.nodes, self.owner)
        self.regions = [r for _, r in found]
        unit_of: dict[fx.Node, Any] = {}
        units: list[Any] = []
        for cls, region in found:
            call = _Call(cls, region)
            units.append(call)
            for n in region.nodes:
                unit_of[n] = call
        for n in self.nodes:
            if n not in unit_of and n.op != "get_attr":
                unit_of[n] = n
                units.append(n)
        position = {
            id(u): (
                min(self.gen.order[n] for n in u.region.nodes)
                if isinstance(u, _Call)
                else self.gen.order[u]
            )
            for u in units
        }
        deps: dict[int, set[int]] = {id(u): set() for u in units}
        users: dict[int, list[Any]] = defaultdict(list)
        by_id = {id(u): u for u in units}
        for u in units:
            nodes = u.region.nodes if isinstance(u, _Call) else [u]
            for n in nodes:
                for i in _inputs(n):
                    producer = unit_of.get(i)
                    if (
                        producer is not None
                        and producer is not u
                        and id(producer) not in deps[id(u)]
                    ):
                        deps[id(u)].add(id(producer))
                        users[id(producer)].append(u)
        ready = [(position[k], k) for k, d in deps.items() if not d]
        heapq.heapify(ready)
        ordered = []
        while ready:
            _, k = heapq.heappop(ready)
            ordered.append(by_id[k])
            for user in users[k]:
                deps[id(user)].discard(k)
                if not deps[id(user)]:
                    heapq.heappush(ready, (position[id(user)], id(user)))
        if len(ordered) != len(units):
            raise CodegenError(f"{self.owner_class}: the blocks form a cycle (internal error)")
        return ordered
