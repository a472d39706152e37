"""Rewriting: tracing a rule's replacement into the model graph in place of a match."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import fx

from ..errors import PatternError
from .canon import canonicalize
from .ir import _Compiled
from .matcher import Match
from .rule import RULE_FILE_KEY, RULE_KEY, RewriteHook, _where

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


def _origin(anchor: fx.Node, created: Sequence[fx.Node], hops: int = 8) -> str | None:
    """The ONNX node a replacement is said to come from (its TF scope names the layer,
    `params/names.py`): the anchor's, or where tf2onnx named the anchor itself (no
    scope: ``MatMul__425``, a piece of an Einsum), that of the nearest node upstream
    of it, inside what the rewrite replaces, that has a TF scope (the ``mha/Softmax``
    of an attention whose products tf2onnx wrote). The replaced region ends at the
    values the replacement reads (its inputs: q, k, v, the mask)."""
    name = anchor.meta.get("fxsurgeon.onnx_node")
    if name is None or "/" in str(name):
        return name
    inputs = {arg for node in created for arg in node.all_input_nodes}
    seen, frontier = {anchor}, [anchor]
    for _ in range(hops):
        following = []
        for node in frontier:
            for arg in node.all_input_nodes:
                if arg in seen or arg in inputs or arg.op in ("placeholder", "get_attr"):
                    continue
                seen.add(arg)
                scope = arg.meta.get("fxsurgeon.onnx_node")
                if scope is not None and "/" in str(scope):
                    return str(scope)
                following.append(arg)
        frontier = following
    return str(name)


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
    origin = _origin(anchor, tracer.created)
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
