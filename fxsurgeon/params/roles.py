"""What each weight constant is used as: its consumers, their roles, and the permutes folded into
it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .names import _use_scope
from .records import _Use

# (function, argument position) -> attribute of the module twin.
_ROLES: dict[Any, dict[int, str]] = {
    F.linear: {1: "weight", 2: "bias"},
    F.layer_norm: {2: "weight", 3: "bias"},
    F.conv1d: {1: "weight", 2: "bias"},
    F.conv2d: {1: "weight", 2: "bias"},
    F.conv3d: {1: "weight", 2: "bias"},
    F.conv_transpose1d: {1: "weight", 2: "bias"},
    F.conv_transpose2d: {1: "weight", 2: "bias"},
    F.conv_transpose3d: {1: "weight", 2: "bias"},
    F.batch_norm: {1: "running_mean", 2: "running_var", 3: "weight", 4: "bias"},
    F.embedding: {1: "weight"},
}
_BUFFER_ROLES = {"running_mean", "running_var"}
_STRUCTURAL = "structural constant: folded from constants (no initializer of its own)"


def _absorb_permutes(node: fx.Node) -> tuple[fx.Node, tuple[int, ...]]:
    """Follow single-user transposes after a get_attr; return the end and the permutation."""
    rank = len(node.meta.get("fxs_shape", ()))
    perm = tuple(range(rank))
    end = node
    while len(end.users) == 1:
        user = next(iter(end.users))
        step = _permutation_of(user, rank)
        if step is None or user.args[0] is not end:
            break
        perm = tuple(perm[i] for i in step)
        end = user
    return end, perm


def _permutation_of(node: fx.Node, rank: int) -> tuple[int, ...] | None:
    target, args = node.target, node.args
    if (
        node.op == "call_function"
        and target in (torch.t,)
        or (node.op == "call_method" and target == "t")
    ):
        return (1, 0) if rank == 2 else None
    if (node.op == "call_function" and target is torch.permute) or (
        node.op == "call_method" and target == "permute"
    ):
        dims = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else args[1:]
        return tuple(d % rank for d in dims) if len(dims) == rank else None  # type: ignore[misc, operator]
    if (node.op == "call_function" and target is torch.transpose) or (
        node.op == "call_method" and target == "transpose"
    ):
        a, b = (d % rank for d in args[1:3])  # type: ignore[operator]
        perm = list(range(rank))
        perm[a], perm[b] = perm[b], perm[a]  # type: ignore[index]
        return tuple(perm)
    return None


def _consumer_role(end: fx.Node) -> tuple[fx.Node | None, str | None]:
    if len(end.users) != 1:
        return None, None
    user = next(iter(end.users))
    roles = _ROLES.get(user.target) if user.op == "call_function" else None
    if not roles:
        return user, None
    positions = [i for i, a in enumerate(user.args) if a is end]
    if len(positions) != 1 or positions[0] not in roles:
        return user, None
    return user, roles[positions[0]]


def _unit_reshape(
    end: fx.Node, perm: tuple[int, ...], value: torch.Tensor
) -> tuple[fx.Node, torch.Tensor] | None:
    """The single reshape of an unpermuted constant that only adds or drops dims of size 1
    (``[1, C, 1, 1] -> [C]`` in front of F.batch_norm), and the value it reads."""
    if len(end.users) != 1 or perm != tuple(range(len(perm))):
        return None
    user = next(iter(end.users))
    if user.op != "call_function" or user.target is not torch.reshape or user.args[0] is not end:
        return None
    shape = user.args[1] if len(user.args) == 2 else None
    if not isinstance(shape, (tuple, list)) or not all(
        isinstance(d, int) and d >= 0 for d in shape
    ):
        return None
    if [d for d in shape if d != 1] != [d for d in value.shape if d != 1]:
        return None
    return user, value.reshape(tuple(shape))


def _keeps_tf_shape(variable_map, initializer: str, raw_shape: tuple[int, ...]) -> bool:
    """The initializer holds a TF variable in its own shape (GPT-2's ``[1, n]`` bias read
    as ``[n]``): it is stored so, TF's layout known, and the reshape stays in the graph."""
    from .layout import _tf_layout  # roles -> layout -> tf_match -> roles: import when called

    origins = (variable_map or {}).get(initializer) or []
    return any(_tf_layout(o)[1] == raw_shape for o in origins)


def _collect_uses(
    gm: fx.GraphModule,
    variable_map=None,
    outputs: tuple[str, ...] = (),
    variables: frozenset[str] = frozenset(),
) -> list[_Use]:
    """Every read of a floating-point weight constant, with its role where a consumer has one.

    A role consumer reading a constant through a reshape of unit dims only
    (``[1, C, 1, 1] -> [C]`` in front of F.batch_norm) reads it in that shape:
    the use takes the role and the reshaped value, unless the TF variable is
    held in the initializer's own shape (`_keeps_tf_shape`).
    """
    uses = []
    for node in list(gm.graph.nodes):
        if node.op != "get_attr" or "fxsurgeon.initializer" not in node.meta:
            continue
        value = _fetch(gm, node.target)
        if not value.is_floating_point():
            continue
        end, perm = _absorb_permutes(node)
        consumer, role = _consumer_role(end)
        seen = value.permute(perm) if perm != tuple(range(value.dim())) else value
        raw_shape = tuple(value.shape)
        initializer = node.meta["fxsurgeon.initializer"]
        unit = _unit_reshape(end, perm, value) if role is None else None
        if (
            unit is not None
            and _consumer_role(unit[0])[1] is not None
            and not _keeps_tf_shape(variable_map, initializer, raw_shape)
        ):
            end, seen = unit  # read as that shape: stored so, with the consumer's role
            perm, raw_shape = tuple(range(seen.dim())), tuple(seen.shape)
            consumer, role = _consumer_role(end)
        uses.append(
            _Use(
                get_attr=node,
                end=end,
                perm=perm,
                value=seen,
                raw_shape=raw_shape,
                initializer=initializer,
                scope=_use_scope(node, initializer, outputs, variables),
                consumer=consumer,
                role=role,
            )
        )
    return uses


def _fetch(gm: nn.Module, target: str) -> torch.Tensor:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
