"""Compiled patterns: a Rule's pattern function traced once into a graph the matcher walks."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from ..errors import PatternError
from .canon import canonicalize
from .rule import Rule, _parameters

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
