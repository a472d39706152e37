"""Weight constants that tf2onnx folded from a Concat of TF variables, split back.

``tf.concat([self.iou_token, self.mask_tokens], 0)`` (SAM's mask decoder) reads two
variables and nothing else, so tf2onnx folds it into one initializer: its rows are the
variables' values, one after another. No variable equals that constant, so it stayed a
buffer and the two variables were lost. The fold is invertible: with the TF model in hand
(``source.tf_variables``), an unmatched float constant that is, along one axis, a run of
slabs each holding (in order, after an axis permutation) a TF variable that no
initializer holds, becomes ``torch.cat`` of one constant per slab along that axis, and
each slab is matched to its variable like any other weight (`complete_variable_map`'s
`PermutedOrigin`). Declined: a run that does not cover the whole axis, a single slab (the
plain permuted case), a slab that equals no free variable, a slab of one repeated value
(zeros match every fresh layer).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import fx

from ..source import TFVariable
from .roles import _fetch
from .tf_match import PermutedOrigin, _permutation_to

#: The synthetic initializer name of slab ``i`` of ``initializer`` along ``axis``.
PART_NAME = "{initializer}[part {index} on axis {axis}]"


def split_concatenated(
    gm: fx.GraphModule, variable_map, source: Any, tf_values: Mapping[str, torch.Tensor]
):
    """`variable_map` with an entry for each slab split off (the module docstring); `gm`'s
    folded constants are rewritten in place as ``torch.cat`` of their slabs."""
    if variable_map is None or not tf_values:
        return variable_map
    held = {o.variable.name for origins in variable_map.values() for o in origins}
    free = [
        (variable, tf_values[variable.name])
        for variable in getattr(source, "tf_variables", ()) or ()
        if variable.name not in held
        and variable.name in tf_values
        and tf_values[variable.name].is_floating_point()
        and tf_values[variable.name].numel() > 1
    ]
    if not free:
        return variable_map
    completed = dict(variable_map)
    for node in list(gm.graph.nodes):
        initializer = node.meta.get("fxsurgeon.initializer") if node.op == "get_attr" else None
        if initializer is None or completed.get(initializer):
            continue
        value = _fetch(gm, str(node.target))
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        found = _slabs(value, free)
        if found is None:
            continue
        axis, slabs = found
        parts = []
        with gm.graph.inserting_before(node):
            for index, (start, length, variable, perm) in enumerate(slabs):
                name = PART_NAME.format(initializer=initializer, index=index, axis=axis)
                parts.append(_part(gm, node, value.narrow(axis, start, length), index, name))
                completed[name] = [PermutedOrigin(variable, f"permuted{perm}", perm)]
            joined = gm.graph.call_function(torch.cat, (parts, axis))
        joined.meta.update({k: v for k, v in node.meta.items() if k != "fxsurgeon.initializer"})
        node.replace_all_uses_with(joined)
        gm.graph.erase_node(node)
        used = {variable.name for _, _, variable, _ in slabs}
        free = [(v, t) for v, t in free if v.name not in used]
    return completed


def _slabs(value: torch.Tensor, free: list[tuple[TFVariable, torch.Tensor]]):
    """``(axis, [(start, length, variable, perm), ...])`` covering `value` along one axis
    with two or more free variables, or None."""
    for axis in range(value.dim()):
        size = value.shape[axis]
        inner = value.numel() // size if size else 0
        if size < 2 or inner == 0:
            continue
        start = 0
        slabs: list[tuple[int, int, TFVariable, tuple[int, ...]]] = []
        while start < size:
            piece = _next_slab(value, axis, start, inner, free, slabs)
            if piece is None:
                break
            slabs.append(piece)
            start += piece[1]
        if start == size and len(slabs) > 1:
            return axis, slabs
    return None


def _next_slab(value, axis: int, start: int, inner: int, free, taken):
    used = {variable.name for _, _, variable, _ in taken}
    for variable, tf_value in free:
        if variable.name in used or tf_value.numel() % inner:
            continue
        length = tf_value.numel() // inner
        if length == 0 or start + length > value.shape[axis]:
            continue
        slab = value.narrow(axis, start, length)
        flat = slab.reshape(-1)
        if bool((flat == flat[0]).all()) or tf_value.dtype != slab.dtype:
            continue
        perm = _permutation_to(tf_value, slab.contiguous())
        if perm is not None:
            return start, length, variable, perm
    return None


def _part(gm: fx.GraphModule, node: fx.Node, slab: torch.Tensor, index: int, name: str):
    """A get_attr of a new constant holding `slab`, tagged as initializer `name`."""
    owner, _, attr = str(node.target).rpartition(".")
    holder = gm.get_submodule(owner) if owner else gm
    attr_name = f"{attr}_part{index}"
    while hasattr(holder, attr_name):
        attr_name += "_"
    holder.register_buffer(attr_name, slab.clone())
    target = f"{owner}.{attr_name}" if owner else attr_name
    part = gm.graph.get_attr(target)
    part.meta["fxsurgeon.initializer"] = name
    part.meta["fxs_shape"] = tuple(slab.shape)
    part.meta["fxs_dtype"] = slab.dtype
    return part
