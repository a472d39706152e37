"""Cleanup: export noise that hides what the fusions look for, and what fusions leave behind.

    permute(permute(x, p), q)    -> permute(x, (p[q[0]], p[q[1]], ...)), or x if that is the identity
    permute(x, (0, 1, ..., n))   -> x
    reshape(x, s)                -> x              s is x's own shape
    x.to(dtype)                  -> x              x has that dtype already
    reshape(reshape(x, s), t)    -> reshape(x, t)  tidy phase only: earlier it would merge the
                                                   Tensordot reshapes that linear.py looks for
    reshape(reshape(x, s), t)    -> x              t is x's own shape (both ends: tf2onnx's
                                                   round trip through [1, -1, 1, 1, 1] of a
                                                   ConvNeXt LayerNorm's mean hides the norm)
    reshape(x, s).size(i)        -> s[i]           s[i] a size read (never -1 or 0 then)
    mean(x, D, keepdim).size(i)  -> x.size(i)      i not in D (sum, amax, amin too): read at the
                                                   source, a round trip or a LayerNorm's mean
                                                   has no size user outside the match

A reshape target is x's own shape when it has x's rank and every entry but at
most one is provably x's dim there (the same int, or ``x.size(i)``): the
element count then fixes the last one (a ``-1``, or a run-time size).
"""

from __future__ import annotations

import torch
from fxsurgeon.patterns import Match, Rule
from torch import fx

BOTH_ENDS = ("prepare", "tidy")
#: reductions that, with keepdim, keep their input's size on every dim they do not reduce
_REDUCTIONS = {torch.mean, torch.sum, torch.amax, torch.amin}


# -- permute(permute(x, p), q) -> permute(x, p o q) --------------------------------------------


def permute_permute_pattern(x, p: tuple, q: tuple):
    return torch.permute(torch.permute(x, p), q)


def permute_permute_replacement(x, p: tuple, q: tuple):
    n = len(p)
    perm = tuple(p[q[i] % n] % n for i in range(n))
    if perm == tuple(range(n)):
        return x
    return torch.permute(x, perm)


permute_permute = Rule(
    "permute_permute",
    permute_permute_pattern,
    permute_permute_replacement,
    phase=BOTH_ENDS,
    note="tf2onnx NHWC<->NCHW transposes around Conv; k^T of attention as two Transposes",
)


# -- permute(x, identity) -> x ---------------------------------------------------------------


def permute_identity_pattern(x, perm: tuple):
    return torch.permute(x, perm)


def permute_identity_replacement(x, perm: tuple):
    return x


def permute_identity_check(match: Match) -> str | None:
    perm = match["perm"]
    if tuple(d % len(perm) for d in perm) != tuple(range(len(perm))):
        return f"{perm} is not the identity"
    return None


permute_identity = Rule(
    "permute_identity",
    permute_identity_pattern,
    permute_identity_replacement,
    check=permute_identity_check,
    phase=BOTH_ENDS,
    note="tf2onnx Transpose with the identity permutation",
)


# -- reshape(x, shape of x) -> x ----------------------------------------------------------------


def reshape_noop_pattern(x, shape: tuple):
    return torch.reshape(x, shape)


def reshape_noop_replacement(x, shape: tuple):
    return x


def reshape_noop_check(match: Match) -> str | None:
    return same_shape(match, match["x"], match["shape"])


def same_shape(match: Match, x, target: tuple) -> str | None:
    """None if reshaping `x` to `target` provably keeps its shape, else why not."""
    shape = match.shape(x)
    if shape is None:
        return "the shape of the input is not known"
    if len(shape) != len(target):
        return f"target {target} has another rank than the input {shape}"
    unresolved = 0
    for i, (dim, item) in enumerate(zip(shape, target, strict=True)):
        if isinstance(item, int) and dim is not None and item == dim:
            continue
        if _is_size_of(item, x, i):
            continue
        if isinstance(item, int) and item != -1 and dim is not None:
            return f"dim {i}: {item} != {dim}"
        unresolved += 1
    if unresolved > 1:
        return f"{unresolved} dims of {target} are not provably those of the input {shape}"
    return None


def _is_size_of(item, x, dim: int) -> bool:
    """`item` reads x's size at `dim`: ``x.size(dim)``, or ``s.size(dim)`` of a value s that
    x keeps that size of (x a keepdim reduction of s over other dims, `size_read`)."""
    if not (
        getattr(item, "op", None) == "call_method"
        and item.target == "size"
        and len(item.args) == 2
        and isinstance(item.args[1], int)
    ):
        return False
    for _ in range(8):
        rank = len(x.meta.get("fxs_shape", (0,)))
        if item.args[0] is x:
            return item.args[1] % rank == dim
        kept = _kept_size_source(x, dim)
        if kept is None:
            return False
        x = kept
    return False


def _kept_size_source(r, i: int):
    """The input of `r` whose size at `i` is r's: r a keepdim reduction that does not
    reduce dim `i`; else None."""
    if getattr(r, "op", None) != "call_function" or r.target not in _REDUCTIONS:
        return None
    x, dims = r.args[0], r.args[1] if len(r.args) > 1 else r.kwargs.get("dim")
    keep = r.args[2] if len(r.args) > 2 else r.kwargs.get("keepdim", False)
    rank = len(r.meta.get("fxs_shape") or ())
    dims = (dims,) if isinstance(dims, int) else dims
    if keep is not True or not rank or not isinstance(x, fx.Node):
        return None
    if not isinstance(dims, (tuple, list)) or not all(isinstance(d, int) for d in dims):
        return None
    if not -rank <= i < rank or i % rank in {d % rank for d in dims}:
        return None
    if len(x.meta.get("fxs_shape") or ()) != rank:
        return None
    return x


reshape_noop = Rule(
    "reshape_noop",
    reshape_noop_pattern,
    reshape_noop_replacement,
    check=reshape_noop_check,
    phase=BOTH_ENDS,
    note="tf2onnx Tensordot output reshape once the matmul is 3-D; shape-preserving Reshape",
)


# -- x.to(dtype of x) -> x -------------------------------------------------------------------------


def cast_noop_pattern(x, dtype):
    return x.to(dtype)


def cast_noop_replacement(x, dtype):
    return x


def cast_noop_check(match: Match) -> str | None:
    have = match.dtype("x")
    if not isinstance(match["dtype"], torch.dtype) or have != match["dtype"]:
        return f"casts {have} to {match['dtype']}"
    return None


cast_noop = Rule(
    "cast_noop",
    cast_noop_pattern,
    cast_noop_replacement,
    check=cast_noop_check,
    phase=BOTH_ENDS,
    note="tf2onnx Cast to the type a tensor already has",
)


# -- reshape(reshape(x, s), t) -> reshape(x, t) ------------------------------------------------------


def reshape_reshape_pattern(x, inner: tuple, outer: tuple):
    return torch.reshape(torch.reshape(x, inner), outer)


def reshape_reshape_replacement(x, inner: tuple, outer: tuple):
    return torch.reshape(x, outer)


reshape_reshape = Rule(
    "reshape_reshape",
    reshape_reshape_pattern,
    reshape_reshape_replacement,
    phase="tidy",
    note="attention head merge reshape followed by what is left of a Tensordot flatten",
)


# -- reshape(x, s).size(i) -> s[i]; mean(x, D, keepdim).size(i) -> x.size(i), i not in D ----------


def size_read_pattern(r, i: int):
    return r.size(i)


def size_read_replacement(r, i: int, entry, source):
    return entry if source is None else source.size(i)


def size_read_check(match: Match) -> str | None:
    """A size read from a value that states it: a Reshape's output has its target's sizes
    (an entry that is a size read, never -1 or 0), a keepdim reduction has its input's size
    on every dim it does not reduce. Read at the source, the value has no size users left
    that would keep it out of a match (a LayerNorm's mean, a round-trip reshape)."""
    r, i = match.node("r"), match["i"]
    if r is None or r.op != "call_function" or not isinstance(i, int):
        return "not a size of a call"
    match["entry"] = match["source"] = None
    if r.target is torch.reshape:
        target = r.args[1] if len(r.args) > 1 else None
        if not isinstance(target, (tuple, list)) or not -len(target) <= i < len(target):
            return "the reshape's target is not a tuple holding that dim"
        entry = target[i]
        if not isinstance(entry, fx.Node) or entry.op != "call_method" or entry.target != "size":
            return f"the target's entry {entry!r} is not a size read (it may be -1 or 0)"
        match["entry"] = entry
        return None
    source = _kept_size_source(r, i)
    if source is not None:
        match["source"] = source
        return None
    return "not a size of a reshape or a keepdim reduction"


size_read = Rule(
    "size_read",
    size_read_pattern,
    size_read_replacement,
    check=size_read_check,
    phase=BOTH_ENDS,
    note="tf2onnx on dynamic sides: a size read back from a Reshape or a keepdim ReduceMean",
)


# -- reshape(reshape(x, s), t) -> x, t the shape of x ---------------------------------------------


def reshape_round_trip_pattern(x, inner: tuple, outer: tuple):
    return torch.reshape(torch.reshape(x, inner), outer)


def reshape_round_trip_replacement(x, inner: tuple, outer: tuple):
    return x


def reshape_round_trip_check(match: Match) -> str | None:
    # reshapes keep the row-major order: reshape(reshape(x, s), t) = reshape(x, t), and that
    # is x when t is x's own shape
    return same_shape(match, match["x"], match["outer"])


reshape_round_trip = Rule(
    "reshape_round_trip",
    reshape_round_trip_pattern,
    reshape_round_trip_replacement,
    check=reshape_round_trip_check,
    phase=BOTH_ENDS,
    note="tf2onnx: Reshape to another rank and back (ConvNeXt LayerNorm's mean, 1x1 spatial)",
)
