"""Comparing outputs: pairing them by name, tolerances, and the error figures."""

from __future__ import annotations

import math
from dataclasses import replace
from itertools import zip_longest

import numpy as np

from .data import _DEFAULT_TOL, _FP64_FLOOR, _FP64_MULTIPLIER, _TINY, _fmt, _Out, _shape_text
from .results import OutputResult

# --------------------------------------------------------------------------- comparing


def _match_outputs(cand: list[_Out], ref: list[_Out]) -> list[tuple[str, int | None, int | None]]:
    """(name, model index, reference index): by name when both sides name the same set."""
    cand_names = [o.name or "" for o in cand]
    ref_names = [o.name or "" for o in ref]
    if all(cand_names) and all(ref_names) and sorted(cand_names) == sorted(ref_names):
        return [(n, cand_names.index(n), i) for i, n in enumerate(ref_names)]
    pairs = []
    for i, (c, r) in enumerate(zip_longest(cand, ref)):
        name = (r.name if r is not None else None) or (c.name if c is not None else None)
        pairs.append(
            (name or f"output{i}", i if c is not None else None, i if r is not None else None)
        )
    return pairs


def _compare(
    name: str,
    case: int,
    batch: int | None,
    cand: _Out | None,
    ref: _Out | None,
    atol: float | None,
    rtol: float | None,
    fp64: tuple[_Out, _Out] | None,
    scale_atol: bool = False,
) -> OutputResult:
    """Compare one output; ``fp64`` is (reference in float64, reference at the model's precision)."""
    default_atol, default_rtol = _default_tolerance([o.dtype for o in (cand, ref) if o is not None])
    if fp64 is not None:  # the fp64 rule: atol is the floor, no rtol
        default_atol, default_rtol = _FP64_FLOOR, 0.0
    use_atol = default_atol if atol is None else atol
    use_rtol = default_rtol if rtol is None or fp64 is not None else rtol
    result = OutputResult(
        output=name,
        case=case,
        batch=batch,
        shape=tuple(cand.array.shape) if cand is not None else None,
        ref_shape=tuple(ref.array.shape) if ref is not None else None,
        dtype=cand.dtype if cand is not None else None,
        ref_dtype=ref.dtype if ref is not None else None,
        max_abs=math.inf,
        max_rel=math.inf,
        mse=math.inf,
        worst_index=None,
        atol=use_atol,
        rtol=use_rtol,
        passed=False,
    )
    if cand is None or ref is None:
        side = "the model" if cand is None else "the reference"
        return replace(result, message=f"output {name!r} is missing from {side}")
    if cand.array.shape != ref.array.shape:
        message = (
            f"shape mismatch for output {name!r}: model {_shape_text(cand.array.shape)} "
            f"vs reference {_shape_text(ref.array.shape)}"
        )
        hint = _layout_hint(cand.array.shape, ref.array.shape)
        return replace(result, message=message + (f"; {hint}" if hint else ""))

    a = cand.array.astype(np.float64)
    b = ref.array.astype(np.float64)
    diff = _abs_diff(a, b)
    if not diff.size:
        return replace(result, max_abs=0.0, max_rel=0.0, mse=0.0, passed=True)
    if scale_atol and fp64 is None and use_atol:
        use_atol *= _scale(b)
        result = replace(result, atol=use_atol)
    excess = diff - use_rtol * np.abs(b)
    worst = tuple(int(i) for i in np.unravel_index(np.argmax(excess), diff.shape))
    result = replace(
        result,
        max_abs=float(diff.max()),
        max_rel=float((diff / np.maximum(np.abs(b), _TINY)).max()),
        mse=float(np.mean(diff**2)),
        worst_index=worst,
    )
    if fp64 is not None:
        ref64, ref_low = fp64
        error = _rmse(a, ref64.array)
        yardstick = _rmse(ref_low.array, ref64.array)
        budget = _FP64_MULTIPLIER * yardstick + use_atol
        passed = error <= budget  # False for NaN
        message = (
            f"{cand.dtype} output {name!r}: rmse vs the float64 reference {_fmt(error)} is over "
            f"{_FP64_MULTIPLIER:g} x the reference's own {cand.dtype} rmse {_fmt(yardstick)} "
            f"+ floor = {_fmt(budget)}"
        )
        return replace(
            result,
            passed=passed,
            rule="fp64",
            fp64_error=error,
            fp64_budget=budget,
            message="" if passed else message,
        )
    passed = bool(excess.max() <= use_atol)
    message = (
        f"output {name!r}: max abs diff {_fmt(result.max_abs)} at index {list(worst)} "
        f"(model {a[worst]:.6g}, reference {b[worst]:.6g}) exceeds atol {_fmt(use_atol)}"
        + (f" + rtol {_fmt(use_rtol)} * |ref|" if use_rtol else "")
    )
    return replace(result, passed=passed, message="" if passed else message)


def _scale(values: np.ndarray) -> float:
    """max(1, max |finite value|): what a scaled tolerance is relative to."""
    finite = np.abs(values[np.isfinite(values)])
    return max(1.0, float(finite.max())) if finite.size else 1.0


def _default_tolerance(dtypes: list[str]) -> tuple[float, float]:
    """The (atol, rtol) of the least precise floating dtype; exact for integers and bools."""
    floats = [d for d in dtypes if d in _DEFAULT_TOL]
    if not floats:
        return 0.0, 0.0
    return max((_DEFAULT_TOL[d] for d in floats), key=lambda tol: tol[0])


def _abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b|, 0 where equal (matching infs, NaN in both), inf where only one is NaN."""
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
    diff = np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, diff)
    return np.where(np.isnan(diff), math.inf, diff)


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return math.inf
    if not a.size:
        return 0.0
    return float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def _layout_hint(cand: tuple[int, ...], ref: tuple[int, ...]) -> str:
    """Say when two shapes look like the same tensor in NCHW and NHWC layouts."""
    rank = len(ref)
    if rank != len(cand) or sorted(cand) != sorted(ref):
        return ""
    if rank >= 3:
        to_first = (0, rank - 1, *range(1, rank - 1))  # channels-last -> channels-first
        to_last = (0, *range(2, rank), 1)
        if tuple(ref[p] for p in to_first) == tuple(cand):
            return (
                f"the model's output looks channels-first (NCHW-like) and the reference's "
                f"channels-last (NHWC-like): model.permute{to_last} would match; not compared"
            )
        if tuple(ref[p] for p in to_last) == tuple(cand):
            return (
                f"the model's output looks channels-last (NHWC-like) and the reference's "
                f"channels-first (NCHW-like): model.permute{to_first} would match; not compared"
            )
    return "same sizes in another order (a layout permutation?); not compared"
