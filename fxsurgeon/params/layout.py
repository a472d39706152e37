"""Stored layouts: how a TF variable is permuted into the torch layout its consumer wants."""

from __future__ import annotations

import torch

from ..source import LAYOUTS
from .records import _Use, _Variable
from .tf_match import _origin
from .ties import _steps_by_value


def _tf_layout(origin) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(L, shape): the initializer holds ``tf_value.permute(L)`` (of that shape), maybe reshaped."""
    shape = tuple(origin.variable.shape)
    perm = getattr(origin, "perm", None) or LAYOUTS[origin.layout] or tuple(range(len(shape)))
    return perm, tuple(shape[i] for i in perm)


def _storage(var: _Variable, variable_map) -> tuple[torch.Tensor, tuple[int, ...] | None]:
    """The value to store for a variable, and its permutation of the TF value (None: unknown).

    The first use's layout is stored (a transpose in front of ``F.linear``
    folds into a Linear-style ``[out, in]`` weight). An initializer that holds
    the TF value in another shape (tf2onnx folds an ``ExpandDims``: ViT's
    ``cls_token`` ``[1, 1, 32]`` arrives as ``[1, 1, 1, 32]``) is stored in
    TF's shape and reshaped where it is used, unless a module consumer
    (a depthwise Conv's ``[C*M, 1, H, W]``) needs the ONNX shape.
    """
    first = var.uses[0]
    value = first.value.detach().clone().contiguous()
    origin = _origin(variable_map, first.initializer, var.tf_name) if var.key[0] == "tf" else None
    if origin is None:
        return value, None
    layout, laid_shape = _tf_layout(origin)
    if first.raw_shape == laid_shape:
        return value, tuple(layout[i] for i in first.perm)
    if any(u.role is not None for u in var.uses):
        return value, None
    raw = first.value.permute(_inverse(first.perm))
    return raw.reshape(laid_shape).detach().clone().contiguous(), layout


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.equal(a.to(b.dtype), b))


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(perm.index(i) for i in range(len(perm)))


def _is_identity(perm: tuple[int, ...]) -> bool:
    return perm == tuple(range(len(perm)))


def _steps_for(
    use: _Use, var: _Variable, stored: torch.Tensor, perm: tuple[int, ...] | None, variable_map
) -> list[tuple[str, tuple[int, ...]]] | None:
    """The ``permute``/``reshape`` steps that turn the stored tensor into what `use` needs.

    With ``stored == tf.permute(perm)``, a use of an initializer holding
    ``tf.permute(L)`` (maybe reshaped), seen through its own permutation,
    needs: permute to ``L``, reshape to the initializer's shape, permute.
    Without a TF layout, only uses of the first use's initializer can be
    derived (by undoing the first use's permutation); None when not derivable.
    """
    origin = _origin(variable_map, use.initializer, var.tf_name) if perm is not None else None
    if origin is not None:
        layout, laid_shape = _tf_layout(origin)
        to_layout = tuple(perm.index(i) for i in layout)  # type: ignore[union-attr]
        if laid_shape == use.raw_shape:
            steps = [("permute", tuple(to_layout[j] for j in use.perm))]
        else:
            steps = [("permute", to_layout), ("reshape", use.raw_shape), ("permute", use.perm)]
    elif use.initializer == var.uses[0].initializer and tuple(stored.shape) == tuple(
        var.uses[0].value.shape
    ):
        first_perm = var.uses[0].perm
        inverse = _inverse(first_perm)
        steps = [("permute", tuple(inverse[p] for p in use.perm))]
    else:
        steps = _steps_by_value(stored, use.value)  # type: ignore[assignment]
        if steps is None:
            return None
    out, shape = [], tuple(stored.shape)
    for kind, arg in steps:
        if kind == "permute" and not _is_identity(arg):
            out.append((kind, arg))
            shape = tuple(shape[i] for i in arg)
        elif kind == "reshape" and arg != shape:
            out.append((kind, arg))
            shape = arg
    return out
