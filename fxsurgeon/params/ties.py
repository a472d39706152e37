"""Ties without the TF model: which reads of weights are one parameter.

onnx2torch makes one buffer per use of an initializer, and fxsurgeon's export
keeps a separate initializer per read of a variable (a shared layer applied
twice reads its kernel twice). So reads are grouped by *value*: bitwise equal
tensors (same dtype, equal up to an axis permutation: `_digest`) are one candidate
variable. A group is
one parameter (a shared layer, tied input/output embeddings) unless its scopes
say otherwise: when every read plays the same role (same consumer, same
argument position) in layers that differ, the reads are equal variables of
different layers that tf2onnx merged (``merge_duplication``), and each layer
gets its own parameter, with a note.

Layers are compared up to Keras's call suffix (``shared`` and ``shared_1`` are
one layer applied twice), and a scope nested in another read's scope is that layer's
(``LayerNorm/batchnorm_1`` is inside ``LayerNorm``). Reads of ONE initializer are compared by the layer
that owns the variable, the innermost component of the reading scope:
``encoder/model.shared`` and ``decoder/model.shared`` are one embedding layer
called from two parents (a tied embedding), while ``dense_a`` and ``dense_b``
are two layers whose equal variables were merged. Equal values in distinct
initializers are compared by the whole scope. Tensors holding a single
repeated value (zeros, ones: initial values many layers share) split on any
scope difference, except where the scopes differ only in a parent layer that a tie of
random values proved to be one layer called twice (`_proven_calls`): a Siamese network's
embedding model applied to each image reads its one-channel BatchNorm's single-element
gamma under ``siamese/embedding_1/bn`` and ``siamese/embedding_3/bn``, and its conv
kernel under ``siamese/embedding_1/conv`` and ``siamese/embedding_3/conv``: the kernel's
tie shows ``embedding_1`` and ``embedding_3`` to be calls of one layer, so ``bn`` in
both is that layer's one sublayer.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import defaultdict

import torch

from .records import ParameterReport, _Use, _Variable

_CALL_SUFFIX = re.compile(r"^(.*[^_])_\d+$")


def _raw(use: _Use) -> torch.Tensor:
    inverse = tuple(use.perm.index(i) for i in range(len(use.perm)))
    return use.value.permute(inverse).contiguous()


def _digest(use: _Use) -> tuple:
    """A key equal for bitwise-equal values in any axis order (tf2onnx stores a kernel read
    with ``transpose_b`` transposed) and with any unit dims (its transpose optimizer stores
    a LayerNormalization gamma [C] read in a channels-first layout as [1, C, 1]): the dtype,
    the sorted shape without its 1s and the sorted elements."""
    raw = _raw(use)
    data = torch.sort(raw.detach().cpu().reshape(-1)).values.numpy().tobytes()
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    return (str(raw.dtype), tuple(sorted(d for d in raw.shape if d != 1)), digest)


def _layer(scope: str, exact: bool) -> str:
    if exact:
        return scope
    return "/".join(_CALL_SUFFIX.sub(r"\1", part) for part in scope.split("/"))


def _outermost(layers: set[str]) -> set[str]:
    """`layers` without those nested inside another of them: a scope below a layer's is that
    layer's own ops (ALBERT's one LayerNorm applied twice reads its gamma under
    ``LayerNorm`` and ``LayerNorm/batchnorm_1``), not another layer."""
    return {x for x in layers if not any(x.startswith(f"{o}/") for o in layers)}


def _enclosing(layer: str, outermost: set[str]) -> str:
    """The layer of `outermost` that `layer` is, or is nested in."""
    return next((o for o in outermost if layer == o or layer.startswith(f"{o}/")), layer)


def _reading(use: _Use) -> tuple:
    if not use.end.users:
        return ("none",)
    consumer = next(iter(use.end.users))
    positions = tuple(i for i, a in enumerate(consumer.args) if a is use.end)
    return (consumer.op, str(consumer.target), positions)


def _tie_groups(uses: list[_Use]) -> dict[int, tuple]:
    """id(use) -> the key (``("onnx", group, scope)``) of the variable it reads."""
    by_value: dict[tuple, list[_Use]] = defaultdict(list)
    for use in uses:
        if not use.value.is_floating_point():
            continue
        digest = _digest(use)
        n = 0  # equal sorted elements are not enough: one must be an axis permutation of the other
        while (digest, n) in by_value and _steps_by_value(
            _raw(by_value[digest, n][0]), _raw(use)
        ) is None:
            n += 1
        by_value[digest, n].append(use)
    keys: dict[int, tuple] = {}
    random = [(d, g) for d, g in by_value.items() if not _uniform(_raw(g[0]))]
    for digest, group in random:
        keys.update(_group_keys(digest, group, False, {}))
    tied = [g for _, g in random if len({keys[id(u)] for u in g}) == 1]
    calls = _proven_calls(tied)
    for digest, group in by_value.items():
        if _uniform(_raw(group[0])):
            keys.update(_group_keys(digest, group, True, calls))
    return keys


def _group_keys(digest: tuple, group: list[_Use], uniform: bool, calls: dict) -> dict:
    exact = {u.scope: _canonical(u.scope, calls) for u in group}
    layers = _outermost({_layer(exact[u.scope], uniform) for u in group})
    one_initializer = len({u.initializer for u in group}) == 1
    by_owner = one_initializer and not uniform
    owners = {layer.rsplit("/", 1)[-1] for layer in layers} if by_owner else layers
    readings = {_reading(u) for u in group}
    split = len(owners) > 1 and len(readings) == 1
    keys = {}
    for use in group:
        part = _enclosing(_layer(exact[use.scope], uniform), layers) if split else group[0].scope
        keys[id(use)] = ("onnx", digest, part)
    return keys


def _uniform(raw: torch.Tensor) -> bool:
    return raw.numel() == 0 or bool((raw == raw.reshape(-1)[0]).all())


def _proven_calls(groups: list[list[_Use]]) -> dict[str, str]:
    """Scope prefix -> its canonical form, for the parent layers that the reads of random
    (not uniform) values tied into one parameter show to be one layer called twice: two
    reads of one such value
    whose scopes differ in one component only, both that layer's name with a Keras call
    suffix (``m/embedding_1/conv`` and ``m/embedding_3/conv``: ``m/embedding_3`` ->
    ``m/embedding_1``). Equal random values are one variable (the tie rule above); a
    component that differs otherwise (``encoder`` and ``decoder`` reading one tied
    embedding) proves nothing about their other sublayers."""
    parent: dict[str, str] = {}

    def root(prefix: str) -> str:
        while parent.get(prefix, prefix) != prefix:
            prefix = parent[prefix]
        return prefix

    for group in groups:
        parts = sorted({tuple(u.scope.split("/")) for u in group})
        for a, b in itertools.combinations(parts, 2):
            differ = [i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y]
            if len(a) != len(b) or len(differ) != 1:
                continue
            i = differ[0]
            if _CALL_SUFFIX.sub(r"\1", a[i]) != _CALL_SUFFIX.sub(r"\1", b[i]):
                continue
            first, second = sorted((root("/".join(a[: i + 1])), root("/".join(b[: i + 1]))))
            parent[second] = first
    return {prefix: root(prefix) for prefix in parent}


def _canonical(scope: str, calls: dict[str, str]) -> str:
    """`scope` with its longest prefix that `_proven_calls` maps replaced by its canonical
    form."""
    parts = scope.split("/")
    for n in range(len(parts), 0, -1):
        prefix = "/".join(parts[:n])
        if prefix in calls:
            return "/".join([calls[prefix], *parts[n:]])
    return scope


def _untied_key(use: _Use, groups: dict[int, tuple]) -> tuple:
    """The variable key of `use`: ``("onnx", value digest, layer scope)``."""
    return groups[id(use)]


def _note_splits(variables: dict[tuple, _Variable], report: ParameterReport) -> None:
    """Say where one value became several parameters, and where reads were tied."""
    by_digest: dict[tuple, list[_Variable]] = defaultdict(list)
    for var in variables.values():
        if var.key[0] == "onnx":
            by_digest[var.key[1]].append(var)
    for group in by_digest.values():
        initializers = sorted({u.initializer for v in group for u in v.uses})
        if len(group) > 1:
            scopes = sorted(v.key[2] for v in group)
            report.notes.append(
                f"initializer {', '.join(initializers)} is read with the same role in "
                f"{len(scopes)} layers ({', '.join(scopes)}) and no TF model says whether they "
                f"share one variable: split into {len(scopes)} parameters"
            )
        elif len(initializers) > 1:
            report.notes.append(
                f"initializers {', '.join(initializers)} hold equal values read in "
                f"{', '.join(sorted({u.scope for u in group[0].uses}))}: one parameter (tied)"
            )


def _steps_by_value(stored: torch.Tensor, wanted: torch.Tensor) -> list | None:
    """Without a TF layout: the permutation (then reshape) of `stored` that equals `wanted`
    bitwise, for reads of one value tied by `ties.py` (a transposed copy of a tied table)."""
    import itertools

    if stored.numel() != wanted.numel() or stored.dim() > 5:
        return None
    for perm in itertools.permutations(range(stored.dim())):
        moved = stored.permute(perm)
        if torch.equal(moved.reshape(wanted.shape), wanted):
            return [("permute", perm), ("reshape", tuple(wanted.shape))]
    return None
