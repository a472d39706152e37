"""Inputs: the reference's signature, given cases, and generated cases (masks, token ids within the
embedding tables).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fxsurgeon.errors import InputError

from .data import (
    _DEFAULT_VOCAB,
    _INDEX_PRESERVING_OPS,
    _INDEX_SELECTING_OPS,
    _Case,
    _shape_text,
    _Spec,
)
from .references import _is_leaf_value
from .running import _to_numpy
from .signatures import _spec_names

# --------------------------------------------------------------------------- inputs


def _given_cases(inputs: Any, specs: list[_Spec] | None) -> list[_Case]:
    """Turn ``inputs`` (one case or a list of cases) into checked ``_Case``s."""
    if _is_case(inputs):
        raw = [inputs]
    elif isinstance(inputs, (list, tuple)) and inputs and all(_is_case(c) for c in inputs):
        raw = list(inputs)
    else:
        raise InputError(
            "inputs must be a dict name -> array, a tuple/list of arrays, or a list of such "
            f"(one per case); got {type(inputs).__name__}"
        )
    return [_one_case(c, specs) for c in raw]


def _is_case(obj: Any) -> bool:
    if _is_leaf_value(obj):
        return True
    if isinstance(obj, Mapping):
        return all(_is_leaf_value(v) for v in obj.values())
    return isinstance(obj, (list, tuple)) and all(_is_leaf_value(v) for v in obj)


def _one_case(raw: Any, specs: list[_Spec] | None) -> _Case:
    expected = _spec_names(specs)
    if isinstance(raw, Mapping):
        given = list(raw)
        if specs is not None:
            if set(given) != set(expected):
                missing = [n for n in expected if n not in raw]
                unknown = [n for n in given if n not in expected]
                raise InputError(
                    f"wrong input names: the reference expects {expected}, given {given} "
                    f"(missing {missing}, unexpected {unknown})"
                )
            given = expected
        names: list[str] | None = given
        values = [raw[n] for n in given]
    else:
        values = [raw] if _is_leaf_value(raw) else list(raw)
        if specs is not None and len(values) != len(specs):
            raise InputError(
                f"input count mismatch: the reference takes {len(specs)} inputs {expected}, "
                f"given {len(values)}"
            )
        names = expected if specs is not None else None
    arrays = [_to_numpy(v)[0] for v in values]
    if specs is not None:
        for spec, array in zip(specs, arrays, strict=True):
            _check_shape(spec, array.shape)
        arrays = [a.astype(s.dtype, copy=False) for s, a in zip(specs, arrays, strict=True)]
    batch = next((a.shape[0] for a in arrays if a.ndim), None)
    return _Case(names, arrays, batch)


def _check_shape(spec: _Spec, shape: tuple[int, ...]) -> None:
    fits = len(shape) == len(spec.shape) and all(
        want is None or want == got for want, got in zip(spec.shape, shape, strict=True)
    )
    if not fits:
        raise InputError(
            f"input {spec.name!r}: shape {tuple(shape)} does not match the reference "
            f"signature {_shape_text(spec.shape)}"
        )


def _generate_cases(
    specs: list[_Spec],
    batch_sizes: Sequence[int],
    seed: int,
    ranges: dict[str, tuple[float, float]],
    bounds: dict[str, int],
    seq_len: int,
) -> list[_Case]:
    unknown = sorted(set(ranges) - set(_spec_names(specs)))
    if unknown:
        raise InputError(
            f"input_ranges names unknown inputs {unknown}; inputs are {_spec_names(specs)}"
        )
    rng = np.random.default_rng(seed)
    cases: list[_Case] = []
    seen: set[tuple[tuple[int, ...], ...]] = set()
    for batch in batch_sizes:
        shapes = tuple(
            tuple(
                (batch if axis == 0 else seq_len) if dim is None else dim
                for axis, dim in enumerate(spec.shape)
            )
            for spec in specs
        )
        if shapes in seen:  # static dim 0: every batch size gives the same case
            continue
        seen.add(shapes)
        arrays = [
            _generate(
                spec, shape, rng, ranges.get(spec.name), bounds.get(spec.name, _DEFAULT_VOCAB)
            )
            for spec, shape in zip(specs, shapes, strict=True)
        ]
        case_batch = (
            batch
            if any(s.shape[:1] == (None,) for s in specs)
            else next((s[0] for s in shapes if s), None)
        )
        cases.append(_Case(_spec_names(specs), arrays, case_batch))
    return cases


def _generate(
    spec: _Spec,
    shape: tuple[int, ...],
    rng: np.random.Generator,
    value_range: tuple[float, float] | None,
    vocab: int,
) -> np.ndarray:
    kind = spec.dtype.kind
    if value_range is None and "mask" in spec.name.lower():
        return _make_mask(shape, rng).astype(spec.dtype)
    if kind == "f":
        if value_range is not None:
            return rng.uniform(value_range[0], value_range[1], shape).astype(spec.dtype)
        return rng.standard_normal(shape).astype(spec.dtype)
    if kind in "iu":
        low, high = value_range if value_range is not None else (0, vocab)
        return rng.integers(int(low), int(high), shape).astype(spec.dtype)
    if kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    raise InputError(
        f"cannot make values for input {spec.name!r} of dtype {spec.dtype}; pass inputs="
    )


def _make_mask(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """0/1 along the last axis: ones then zeros, at least one 1 per row, some zeros."""
    if not shape:
        return np.ones((), np.int64)
    length = shape[-1]
    rows = math.prod(shape[:-1])
    lengths = rng.integers(1, length + 1, rows) if length else np.zeros(rows, np.int64)
    if rows and length > 1:
        lengths[0] = rng.integers(1, length)  # the first row is padded
    return (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64).reshape(shape)


# --------------------------------------------------------------------------- embedding tables


def _index_bounds(specs: list[_Spec], owners: list[Any]) -> dict[str, int]:
    """Input name -> number of rows of the embedding table(s) the integer input indexes."""
    int_names = [s.name for s in specs if s.dtype.kind in "iu"]
    bounds: dict[str, int] = {}
    tables: list[tuple[str, int]] = []
    for owner in owners:
        if owner is None:
            continue
        if hasattr(owner, "graph") and hasattr(owner.graph, "initializer"):
            for name, size in _onnx_index_bounds(owner).items():
                bounds.setdefault(name, size)
        else:
            tables += _embedding_tables(owner)
    for name in int_names:
        if name not in bounds and tables:
            bounds[name] = _pick_table(name, tables)
    return bounds


def _onnx_index_bounds(model: Any) -> dict[str, int]:
    """Follow each graph input through index-preserving ops, and the arithmetic that
    selects or wraps an index (Add, Mul, Where's branches), into Gather(data=initializer)."""
    graph = model.graph
    sizes = {t.name: list(t.dims) for t in graph.initializer}
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, position))
    bounds: dict[str, int] = {}
    for graph_input in graph.input:
        frontier, seen, found = [graph_input.name], set(), []
        while frontier:
            tensor = frontier.pop()
            if tensor in seen:
                continue
            seen.add(tensor)
            for node, position in consumers.get(tensor, []):
                if node.op_type == "Gather" and position == 1 and node.input[0] in sizes:
                    dims = sizes[node.input[0]]
                    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                    if dims:
                        found.append(dims[axis])
                elif _carries_index(node, position):
                    frontier.extend(node.output)
        if found:
            bounds[graph_input.name] = min(found)
    return bounds


def _carries_index(node: Any, position: int) -> bool:
    """Whether operand `position` of `node` flows into its output as an index: the data
    of an index-preserving op, any operand of Add/Mul, a branch (not the condition) of Where."""
    if node.op_type in _INDEX_PRESERVING_OPS:
        return position == 0
    if node.op_type == "Where":
        return position > 0
    return node.op_type in _INDEX_SELECTING_OPS


def _embedding_tables(owner: Any) -> list[tuple[str, int]]:
    """(name, rows) of the embedding tables of a torch module or Keras model."""
    if isinstance(owner, torch.nn.Module):
        return [
            (n, m.num_embeddings)
            for n, m in owner.named_modules()
            if isinstance(m, torch.nn.Embedding)
        ]
    tables = []
    for weight in getattr(owner, "weights", None) or []:
        name = str(getattr(weight, "path", None) or getattr(weight, "name", ""))
        shape = tuple(weight.shape)
        if "embedding" in name.lower() and len(shape) == 2:
            tables.append((name, int(shape[0])))
    return tables


def _pick_table(input_name: str, tables: list[tuple[str, int]]) -> int:
    """The rows of the tables whose name matches the input's kind (word, type, position)."""
    kinds = {"type": ("type", "segment"), "position": ("position",)}

    def kind_of(name: str) -> str:
        lowered = name.lower()
        return next((k for k, words in kinds.items() if any(w in lowered for w in words)), "word")

    wanted = kind_of(input_name)
    matching = [size for name, size in tables if kind_of(name) == wanted]
    return min(matching or [size for _, size in tables])
