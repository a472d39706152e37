"""ONNX Resize ``mode=cubic`` by its definition, for the forms torch's bicubic is not.

``F.interpolate(mode="bicubic")`` is Keys' kernel with ``a = -0.75``, taps outside the
input clamped to its edge, over exactly two dims. TensorFlow's bicubic (``tf.image.resize``,
Keras ``Resizing(interpolation="bicubic")``) is ``a = -0.5`` with the taps outside the
input dropped and the others renormalised (tf2onnx: ``cubic_coeff_a=-0.5``,
``exclude_outside=1``). ONNX defines cubic Resize for any ``a``, either edge rule and any
number of dims, one dim at a time: an output coordinate ``x`` maps to ``x_in`` by the
coordinate transform; with ``x0 = floor(x_in)`` and ``t = x_in - x0`` the four taps
``x0 - 1 .. x0 + 2`` weigh ``W(1 + t), W(t), W(1 - t), W(2 - t)`` (onnxruntime's
``GetCubicCoeffs``), ``W(d) = ((a + 2) d - (a + 3)) d^2 + 1`` for ``d <= 1`` and
``((a d - 5 a) d + 8 a) d - 4 a`` for ``1 < d < 2``. With ``exclude_outside`` a tap
outside ``[0, in)`` weighs 0 and the weights are divided by their sum; the index is then
clamped into the input (the edge pixel, weight 0 or not).

`cubic_resize` writes that with ``call(fn, *args)``: the converter's module calls the
functions, the lowering (``fxsurgeon/lower/resize.py``) records them as graph nodes, so
sizes may be run-time ints (``x.size(2)``) there.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch

Call = Callable[..., Any]
#: coordinate transforms this module computes: (x_out, scale, in, out) -> x_in
TRANSFORMS = ("half_pixel", "align_corners", "asymmetric")


def _coordinates(call: Call, positions: Any, transform: str, n_in: Any, n_out: Any, scale: Any):
    if transform == "align_corners":
        last = call(torch.sym_max, call(operator.sub, n_out, 1), 1)  # 0 where out is 1
        span = call(operator.truediv, call(operator.sub, n_in, 1), last)
        return call(operator.mul, positions, span)
    if transform == "asymmetric":
        return call(operator.truediv, positions, scale)
    shifted = call(operator.add, positions, 0.5)
    return call(operator.sub, call(operator.truediv, shifted, scale), 0.5)  # half_pixel


def _kernel(call: Call, d: Any, a: float, near: bool) -> Any:
    if near:  # ((a + 2) d - (a + 3)) d d + 1
        inner = call(operator.sub, call(operator.mul, d, a + 2), a + 3)
        return call(operator.add, call(operator.mul, call(operator.mul, inner, d), d), 1.0)
    inner = call(operator.sub, call(operator.mul, d, a), 5 * a)  # ((a d - 5a) d + 8a) d - 4a
    inner = call(operator.add, call(operator.mul, inner, d), 8 * a)
    return call(operator.sub, call(operator.mul, inner, d), 4 * a)


def cubic_axis(call: Call, x: Any, dim: int, n_in: Any, n_out: Any, scale: Any, how: dict) -> Any:
    """`x` resized along `dim` (rank known, `dim` negative) from `n_in` to `n_out`."""
    positions = call(torch.arange, n_out, dtype=torch.float32, device=how["device"])
    coords = _coordinates(call, positions, how["transform"], n_in, n_out, scale)
    low = call(torch.floor, coords)
    t = call(operator.sub, coords, low)
    low = how["method"]("long", low)
    dists = [
        call(operator.add, t, 1.0),
        t,
        call(operator.sub, 1.0, t),
        call(operator.sub, 2.0, t),
    ]
    weights = [_kernel(call, d, how["a"], near=k in (1, 2)) for k, d in enumerate(dists)]
    taps = [call(operator.add, low, k - 1) for k in range(4)]
    if how["exclude_outside"]:
        weights = [
            call(
                torch.where,
                call(operator.and_, call(operator.ge, i, 0), call(operator.lt, i, n_in)),
                w,
                0.0,
            )
            for i, w in zip(taps, weights, strict=True)
        ]
        total = call(
            operator.add,
            call(operator.add, weights[0], weights[1]),
            call(operator.add, weights[2], weights[3]),
        )
        weights = [call(operator.truediv, w, total) for w in weights]
    last = call(operator.sub, n_in, 1)
    view = (-1,) + (1,) * (-dim - 1)  # the weights broadcast along `dim`
    out = None
    for index, weight in zip(taps, weights, strict=True):
        index = call(torch.clamp, index, 0, last)
        picked = call(torch.index_select, x, dim, index)
        term = call(operator.mul, picked, call(torch.reshape, weight, view))
        out = term if out is None else call(operator.add, out, term)
    return out


def cubic_resize(call: Call, x: Any, spatial: list[tuple[Any, Any, Any]], how: dict) -> Any:
    """`x` (N, C, *spatial) resized by ONNX's cubic: `spatial` holds (in, out, scale) per
    dim; `how`: ``a``, ``exclude_outside``, ``transform``, ``device``, ``method`` (calls a
    tensor method: ``method("long", t)``)."""
    rank = len(spatial)
    for k, (n_in, n_out, scale) in enumerate(spatial):
        x = cubic_axis(call, x, k - rank, n_in, n_out, scale, how)
    return x


def eager(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The `call` of the converter's module: run it."""
    return fn(*args, **kwargs)


def eager_method(name: str, tensor: torch.Tensor, *args: Any) -> Any:
    return getattr(tensor, name)(*args)
