"""Graph and scope helpers shared by the generator's parts."""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Iterable
from typing import Any

import torch
from torch import fx

from .output import _SCOPE_KEY
from .records import _Region

# --------------------------------------------------------------------------- helpers


def _walk(arg: Any) -> Iterable[fx.Node]:
    """Every fx.Node inside an argument structure."""
    if isinstance(arg, fx.Node):
        yield arg
    elif isinstance(arg, (list, tuple)):
        for a in arg:
            yield from _walk(a)
    elif isinstance(arg, dict):
        for a in arg.values():
            yield from _walk(a)
    elif isinstance(arg, slice):
        yield from _walk((arg.start, arg.stop, arg.step))


def _inputs(node: fx.Node) -> list[fx.Node]:
    return list(_walk((node.args, node.kwargs)))


def _within(target: str, path: str) -> bool:
    return not path or target == path or target.startswith(path + ".")


def _relative(target: str, path: str) -> str:
    return target[len(path) + 1 :] if path else target


def _digest(tensor: torch.Tensor) -> str:
    """Digest of a tensor's dtype, shape and bytes (any dtype, 0-d and empty tensors included)."""
    data = tensor.detach().cpu().contiguous().reshape(-1)  # 0-d tensors cannot be viewed as bytes
    raw = data.view(torch.uint8).numpy().tobytes() if data.numel() else b""
    head = f"{data.dtype}{tuple(tensor.shape)}".encode()
    return hashlib.sha256(head + raw).hexdigest()[:16]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _main_input_first(region: _Region) -> list[int]:
    """Input positions with the residual stream first: a tensor shaped like the output."""
    indices = list(range(len(region.inputs)))
    tensors = [i for i in indices if _is_tensor_value(region.inputs[i])]
    tensors = [i for i in tensors if region.inputs[i].op != "get_attr"]
    if not tensors:
        return indices
    main = tensors[0]
    if len(region.outputs) == 1 and "fxs_shape" in region.outputs[0].meta:
        shape = region.outputs[0].meta["fxs_shape"]
        main = next((i for i in tensors if region.inputs[i].meta.get("fxs_shape") == shape), main)
    return [main] + [i for i in indices if i != main]


def _is_metadata(node: fx.Node) -> bool:
    """A read of a tensor's size, rank, device or dtype (no data)."""
    if node.op == "call_method":
        return node.target in ("size", "dim", "numel")
    return node.op == "call_function" and node.target is builtins.getattr


def _is_tensor_value(node: fx.Node) -> bool:
    """Whether a node computes a tensor (recorded shapes if any, else by what it calls)."""
    if "fxs_shape" in node.meta:
        return True
    if "fxs_multi" in node.meta or "fxs_dtype" in node.meta:
        return False
    if node.op == "call_method" and node.target in ("size", "dim", "numel", "tolist", "item"):
        return False
    return not (node.op == "call_function" and node.target in (builtins.getattr, len))


def _common_prefix(names: list[str]) -> str:
    first = names[0]
    end = len(first)
    for name in names[1:]:
        end = min(end, len(name))
        for i in range(end):
            if name[i] != first[i]:
                end = i
                break
    return first[:end]


def _scope(node: fx.Node) -> str | None:
    value = node.meta.get(_SCOPE_KEY)
    return value if isinstance(value, str) and value else None


def _scope_of(node: fx.Node, prefix: str) -> str | None:
    """The node's TF scope relative to ``prefix``, or None if it is not under it."""
    scope = _scope(node)
    if scope is None or not scope.startswith(prefix + "/"):
        return None
    return scope[len(prefix) + 1 :]


def _common_scope(nodes: list[fx.Node]) -> str | None:
    """The longest common TF scope (``a/b/c``) of the nodes, without their op names."""
    scopes = [_scope(n) for n in nodes]
    if not scopes or any(s is None for s in scopes):
        return None
    parts = [s.split("/")[:-1] for s in scopes if s]
    common = parts[0]
    for p in parts[1:]:
        k = 0
        while k < min(len(common), len(p)) and common[k] == p[k]:
            k += 1
        common = common[:k]
    return "/".join(common) or None


def _same(value: Any, default: Any) -> bool:
    if type(value) is not type(default) and not (
        isinstance(value, (int, float)) and isinstance(default, (int, float))
    ):
        return False
    try:
        return bool(value == default)
    except Exception:  # noqa: BLE001
        return False
