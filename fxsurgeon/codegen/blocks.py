"""Repeated blocks: the canonical order and encoding that tell two regions are the same block."""

from __future__ import annotations

import hashlib
import heapq
import math
from typing import Any

from torch import fx

from .helpers import _digest, _inputs, _relative, _scope_of, _within
from .literals import _function_text
from .output import CodegenError
from .records import _Region


class _BlockKeys:
    """Repeated blocks: the canonical order and encoding that tell two regions are the same block."""

    def _canonical(self: Any, path: str, members: set[fx.Node], scope: str | None) -> _Region:
        """The region's nodes in an instance-independent order, and its encoding."""
        structural: dict[fx.Node, str] = {}
        for node in sorted(members, key=self.order.__getitem__):
            parts = [node.op, repr(self._target_key(node, path))]
            parts.append(
                repr(self._encode_arg((node.args, node.kwargs), path, members, structural, None))
            )
            structural[node] = hashlib.sha256("\0".join(parts).encode()).hexdigest()

        def key(n: fx.Node) -> tuple:
            relative = _scope_of(n, scope) if scope else None
            return (relative or "", structural[n], self.order[n])

        pending = {n: sum(1 for i in set(_inputs(n)) if i in members) for n in members}
        ready = [(key(n), n) for n, count in pending.items() if count == 0]
        heapq.heapify(ready)
        ordered: list[fx.Node] = []
        while ready:
            _, node = heapq.heappop(ready)
            ordered.append(node)
            for user in node.users:
                if user in pending and user in members:
                    pending[user] -= 1
                    if pending[user] == 0:
                        heapq.heappush(ready, (key(user), user))
        index = {n: i for i, n in enumerate(ordered)}
        inputs: list[fx.Node] = []
        encoded: list[Any] = []
        for node in ordered:
            encoded.append(
                (
                    node.op,
                    self._target_key(node, path),
                    self._encode_arg((node.args, node.kwargs), path, members, index, inputs),
                )
            )
        outputs = [n for n in ordered if any(u not in members for u in n.users)]
        encoded.append(("outputs", tuple(index[n] for n in outputs)))
        encoded.append(("inputs", len(inputs)))
        encoding = tuple(encoded)
        digest = hashlib.sha256(repr(encoding).encode()).hexdigest()[:16]
        return _Region(path, ordered, inputs, outputs, encoding, digest, scope)

    def _target_key(self: Any, node: fx.Node, path: str) -> Any:
        if node.op == "call_module":
            return ("module", _relative(str(node.target), path), self.signature(str(node.target)))
        if node.op == "call_function":
            try:
                return ("function", _function_text(node.target))
            except CodegenError:
                return ("function?", repr(node.target))
        return ("method", str(node.target))

    def _encode_arg(
        self: Any,
        arg: Any,
        path: str,
        members: set[fx.Node],
        index: dict[fx.Node, Any],
        inputs: list[fx.Node] | None,
    ) -> Any:
        if isinstance(arg, fx.Node):
            if arg in members:
                return ("node", index[arg])
            if arg.op == "get_attr":
                target = str(arg.target)
                if self.is_state(target) and _within(target, path):
                    return ("self", _relative(target, path))
                if not self.is_state(target) and not self.is_subgraph(target):
                    tensor = self._fetch(target)
                    return ("const", str(tensor.dtype), tuple(tensor.shape), _digest(tensor))
            if inputs is None:
                return ("input",)
            if arg not in inputs:
                inputs.append(arg)
            return ("input", inputs.index(arg))
        if isinstance(arg, (list, tuple)):
            return (
                type(arg).__name__,
                tuple(self._encode_arg(a, path, members, index, inputs) for a in arg),
            )
        if isinstance(arg, dict):
            return (
                "dict",
                tuple(
                    (k, self._encode_arg(v, path, members, index, inputs)) for k, v in arg.items()
                ),
            )
        if isinstance(arg, slice):
            return (
                "slice",
                self._encode_arg((arg.start, arg.stop, arg.step), path, members, index, inputs),
            )
        if isinstance(arg, float):
            return ("float", arg.hex() if math.isfinite(arg) else repr(arg))
        return (type(arg).__name__, repr(arg))
