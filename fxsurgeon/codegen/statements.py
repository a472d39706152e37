"""Statements: a body's nodes written as assignments, block calls and the return."""

from __future__ import annotations

import builtins
import operator
from collections import defaultdict
from typing import Any

import torch
from torch import fx

from .helpers import _inputs, _relative, _walk
from .literals import (
    _FUNCTION_BASES,
    _SAME_VALUE_FUNCTIONS,
    _SAME_VALUE_METHODS,
    _attr_chain,
    _is_identifier,
    _snake,
)
from .records import _Call


class _Statements:
    """Statements: the body's nodes written as assignments, block calls and the return."""

    def emit(self: Any) -> list[str]:
        units = self._units()
        consumers: dict[fx.Node, list[int]] = defaultdict(list)
        for k, unit in enumerate(units):
            nodes = unit.region.inputs if isinstance(unit, _Call) else _inputs(unit)
            for n in nodes:
                consumers[n].append(k)
        return_nodes = list(_walk(self.returns))
        for n in return_nodes:
            consumers[n].append(len(units))
        last_use = {n: max(ks) for n, ks in consumers.items()}

        # Strong hints (the model's output names) beat reusing a dying operand's
        # name; weak ones (the parameter name of the block a value goes into) do not.
        strong: dict[fx.Node, str] = {}
        weak: dict[fx.Node, str] = {}
        if self.output_names:
            flat = self.returns if isinstance(self.returns, (list, tuple)) else [self.returns]
            for name, value in zip(self.output_names, flat, strict=False):
                if isinstance(value, fx.Node) and value.op != "placeholder":
                    strong.setdefault(value, name)
        for unit in units:
            if isinstance(unit, _Call):
                self.gen.class_source(unit.cls)
                for value, pname in zip(unit.region.inputs, unit.cls.param_names, strict=True):
                    if value.op in ("call_function", "call_method", "call_module"):
                        weak.setdefault(value, pname)
        self.strong, self.weak = strong, weak

        lines: list[str] = []
        for k, unit in enumerate(units):
            if isinstance(unit, _Call):
                lines.append(self._emit_call(unit, k, last_use))
            else:
                line = self._emit_node(unit, k, last_use)
                if line:
                    lines.append(line)
        lines.append(self._emit_return())
        return lines

    def _dies_here(self: Any, value: Any, k: int, last_use: dict[fx.Node, int]) -> bool:
        return (
            isinstance(value, fx.Node)
            and value in self.expr
            and value.op != "get_attr"
            and last_use.get(value) == k
            and _is_identifier(self.expr[value])
        )

    def _name(self: Any, node: fx.Node, inherit: fx.Node | None, default: str | None = None) -> str:
        if node in self.strong:
            return self.namer.fresh(self.strong[node])
        if inherit is not None:
            return self.expr[inherit]
        if node in self.weak:
            return self.namer.fresh(self.weak[node])
        return self.namer.fresh(default or self._base(node))

    def _base(self: Any, node: fx.Node) -> str:
        if node.op == "call_function" and node.target is operator.getitem and node.args:
            indexed = node.args[0]
            if isinstance(indexed, fx.Node) and indexed.op != "get_attr":
                source = self.expr.get(indexed)
                if source and _is_identifier(source):
                    return source
        if node.op == "call_module":
            parts = _relative(str(node.target), self.owner).split(".")
            for depth in range(1, len(parts) + 1):
                candidate = _snake("_".join(parts[-depth:]))
                if candidate not in self.namer.taken:
                    return candidate
            return _snake(parts[-1])
        return _base_name(node) or "x"

    def _emit_node(self: Any, node: fx.Node, k: int, last_use: dict[fx.Node, int]) -> str | None:
        if node.op == "placeholder" or node in self.expr:
            return None  # an input, or an element already unpacked from a tuple
        expr = self.expression(node)
        users = list(node.users)
        if not users:
            return expr
        unpack = self._unpack_targets(node)
        if unpack is not None:
            names = []
            for item in unpack:
                if item is None:
                    names.append("_")
                    continue
                name = self._name(item, None, _base_name(node) or "item")
                self.expr[item] = name
                names.append(name)
            self.expr[node] = "(" + ", ".join(names) + ")"
            return f"{', '.join(names)} = {expr}"
        inherit = None
        first: Any = node.args[0] if node.args else None
        same_value = (node.op == "call_function" and node.target in _SAME_VALUE_FUNCTIONS) or (
            node.op == "call_method" and node.target in _SAME_VALUE_METHODS
        )
        tensor_item = node.target is not operator.getitem or "fxs_shape" in getattr(
            first, "meta", {}
        )
        if same_value and tensor_item and self._dies_here(first, k, last_use):
            inherit = first
        name = self._name(node, inherit)
        self.expr[node] = name
        return f"{name} = {expr}"

    def _unpack_targets(self: Any, node: fx.Node) -> list[fx.Node | None] | None:
        """The getitem users of a node returning a tuple, one per element (None: unused)."""
        users = list(node.users)
        if not users or not all(
            u.op == "call_function"
            and u.target is operator.getitem
            and len(u.args) == 2
            and u.args[0] is node
            and isinstance(u.args[1], int)
            and u in self.members
            for u in users
        ):
            return None
        length = _tuple_length(node)
        if length is None:
            return None
        slots: list[fx.Node | None] = [None] * length
        for u in users:
            index: Any = u.args[1]
            if not 0 <= index < length or slots[index] is not None:
                return None
            slots[index] = u
        return slots

    def _emit_call(self: Any, call: _Call, k: int, last_use: dict[fx.Node, int]) -> str:
        cls, region = call.cls, call.region
        args = ", ".join(self.render(v) for v in region.inputs)
        target = _attr_chain("self", _relative(region.path, self.owner))
        names = []
        single = len(region.outputs) == 1
        for i, out in enumerate(region.outputs):
            inherit = None
            if single and region.inputs and self._dies_here(region.inputs[0], k, last_use):
                inherit = region.inputs[0]
            default = "hidden_states" if single else None
            if default is None:
                default = cls.return_names[i] if i < len(cls.return_names) else "out"
            name = self._name(out, inherit, default)
            self.expr[out] = name
            names.append(name)
        if not names:
            return f"{target}({args})"
        return f"{', '.join(names)} = {target}({args})"

    def _emit_return(self: Any) -> str:
        value = self.returns
        if isinstance(value, (list, tuple)):
            self.return_names = [self.render(v) for v in value]
            if not value:
                return "return ()"
            return "return " + ", ".join(self.return_names) + ("," if len(value) == 1 else "")
        text = self.render(value)
        self.return_names = [text]
        return f"return {text}"


def _tuple_length(node: fx.Node) -> int | None:
    multi = node.meta.get("fxs_multi")
    if isinstance(multi, list):
        return len(multi)
    value = node.meta.get("val")
    if isinstance(value, (list, tuple)):
        return len(value)
    if node.op == "call_function" and node.target in (torch.split, torch.functional.split):
        sizes = node.args[1] if len(node.args) > 1 else node.kwargs.get("split_size_or_sections")
        if isinstance(sizes, (list, tuple)):
            return len(sizes)
    if node.op == "call_function" and node.target is torch.chunk and len(node.args) > 1:
        return node.args[1] if isinstance(node.args[1], int) else None
    return None


def _base_name(node: fx.Node) -> str | None:
    if node.op == "placeholder":
        return str(node.target)
    if node.op == "get_attr":
        return str(node.target).rpartition(".")[2]
    if node.op == "call_method":
        if node.target == "size" and len(node.args) == 2 and node.args[1] == 0:
            return "batch_size"
        return str(node.target)
    if node.op == "call_function":
        target = node.target
        if target is operator.getitem and node.args and isinstance(node.args[0], fx.Node):
            source = node.args[0]
            if source.op == "get_attr":  # weight[ids]: an embedding lookup
                owner = str(source.target).rpartition(".")[0]
                return owner.rpartition(".")[2] or "item"
            return _base_name(source)
        if target is builtins.getattr and len(node.args) == 2 and isinstance(node.args[1], str):
            return node.args[1]
        if target in _FUNCTION_BASES:
            return _FUNCTION_BASES[target]
        name = getattr(target, "__name__", None)
        return name.strip("_") if name else None
    return None
