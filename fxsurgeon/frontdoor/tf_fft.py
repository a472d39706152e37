"""TF's FFTs on the real/imaginary pair layout (`tf_pairs`), as real ONNX arithmetic.

tf2onnx has no handler for ``FFT2D``/``FFT3D``, the inverse FFTs or ``IRFFT``, and its
``FFT``/``RFFT``/``RFFT2D`` write their own layout (a leading real/imaginary axis) that only
its ``ComplexAbs`` reads: ``tf.abs(tf.signal.stft(...))`` did not export, nor the MFCCs'
DCT (an ``RFFT`` sliced, times a complex constant, its real part), nor GFNet's global filter
(``irfft(rfft(x) * w)``). Here every transform is one axis at a time, the 1/2/3 innermost:

* each axis is two MatMuls by ``cos`` and ``sin`` of ``2 pi (t k mod n) / n`` (the angle's
  integer part reduced exactly, so a long axis loses no precision), ``n`` the axis's
  run-time size, or the op's ``fft_length`` (the input cut to ``n``, or zero-padded: the
  kernel's rows stop where the input does); the inverse conjugates the kernel and divides
  by ``n`` (TF's, numpy's and ONNX's DFT);
* ``RFFT*``: the real input's last axis gives its ``n // 2 + 1`` first bins, the other axes
  a full complex FFT; ``IRFFT*``: the inverse FFTs of the outer axes, then the last axis's
  Hermitian inverse from its ``n // 2 + 1`` first bins, ``x_t = sum_k w_k (Re X_k cos -
  Im X_k sin) / n`` with ``w_k`` 1 for the bins that have no mirror (0 and, ``n`` even,
  ``n / 2``: their imaginary parts are ignored, as TF does) and 2 for the others;
* a pair with a zero imaginary part (`tf_pairs.real_valued`: FNet's ``fft2d`` of a cast) is
  transformed like RFFT's input, its last axis first, with half the products.
"""

from __future__ import annotations

import math
from typing import Any

from onnx import TensorProto

from .tf_pairs import (
    CONSUMERS,
    Graph,
    make_pair,
    numpy_type,
    pairs,
    real_type,
    real_valued,
    refuse,
)

#: inner axes each TF FFT op transforms, and its kind: complex to complex (forward or
#: inverse), real to complex, complex to real
_FFTS = {
    "FFT": (1, "forward"),
    "FFT2D": (2, "forward"),
    "FFT3D": (3, "forward"),
    "IFFT": (1, "inverse"),
    "IFFT2D": (2, "inverse"),
    "IFFT3D": (3, "inverse"),
    "RFFT": (1, "real"),
    "RFFT2D": (2, "real"),
    "RFFT3D": (3, "real"),
    "IRFFT": (1, "hermitian"),
    "IRFFT2D": (2, "hermitian"),
    "IRFFT3D": (3, "hermitian"),
}


def _fft(ctx: Any, node: Any, **kwargs: Any) -> None:
    axes, kind = _FFTS[node.type]
    x = node.input[0]
    if kind != "real" and x not in pairs(ctx):
        raise refuse(f"{node.name}: {node.type} of a complex tensor not made by a supported op")
    rank = ctx.get_rank(x) if kind == "real" else pairs(ctx)[x]
    if rank is None or rank < axes:
        raise refuse(f"{node.name}: {node.type} of a tensor of unknown or too small rank")
    real = real_type(ctx, x)
    g = Graph(ctx, node)
    if kind == "real":
        re, im = x, None
    else:
        re = g.part(x, 0)
        im = None if x in real_valued(ctx) else g.part(x, 1)
    lengths = None
    if kind in ("real", "hermitian"):  # fft_length, int32 in TF
        lengths = g("Cast", node.input[1], to=TensorProto.INT64)
    # the last axis first for a real input (RFFT's bins are there), last for IRFFT's output
    order = list(range(rank - axes, rank))
    if im is None and kind != "hermitian":
        order = order[::-1]
    for axis in order:
        n = None
        if lengths is not None:
            n = g("Gather", lengths, g.const(axis - rank + axes), axis=0)
        step = (
            kind
            if axis == rank - 1
            else {"real": "forward", "hermitian": "inverse"}.get(kind, kind)
        )
        perm = list(range(rank))
        perm[axis], perm[-1] = perm[-1], perm[axis]
        re, im = _transpose(g, re, perm), _transpose(g, im, perm)
        re, im = _dft_last(g, re, im, step, n, real)  # type: ignore[arg-type]
        re, im = _transpose(g, re, perm), _transpose(g, im, perm)
    if kind == "hermitian":
        node.type = "Identity"
        for key in list(node.attr):
            del node.attr[key]
        ctx.replace_inputs(node, [re])
        return
    assert im is not None
    make_pair(ctx, node, re, im, real)


def _transpose(g: Graph, x: str | None, perm: list[int]) -> str | None:
    """``x`` with two axes swapped by ``perm`` (itself when it swaps none, or ``x`` is None)."""
    if x is None or perm == sorted(perm):
        return x
    return g("Transpose", x, perm=perm)


def _dft_last(
    g: Graph, re: str, im: str | None, kind: str, n: str | None, real: int
) -> tuple[str, str | None]:
    """The DFT of ``re + i im`` (``im`` None: zero) over the last axis, of period ``n`` (None:
    the axis's size): ``y_k = sum_t x_t e^(-+2 pi i t k / n)``, the kind's bins (module
    docstring); ``kind`` "hermitian" gives the real ``x_t`` only."""
    np_real = numpy_type(real)
    if n is not None:  # the input cut to its first n (TF: n // 2 + 1 for the inverse) terms
        keep = n
        if kind == "hermitian":
            keep = g("Add", g("Div", n, g.const(2)), g.const(1))
        ends = g("Unsqueeze", keep, g.const([0]))
        re = g("Slice", re, g.const([0]), ends, g.const([-1]))
        if im is not None:
            im = g("Slice", im, g.const([0]), ends, g.const([-1]))
    size = g("Gather", g("Shape", re), g.const(-1), axis=0)
    if n is None:
        n = size
    count = {"real": g("Add", g("Div", n, g.const(2)), g.const(1))}.get(kind, n)
    rows = g("Unsqueeze", g("Range", g.const(0), size, g.const(1)), g.const([1]))
    cols = g("Unsqueeze", g("Range", g.const(0), count, g.const(1)), g.const([0]))
    tk = g("Mod", g("Mul", rows, cols), n, fmod=0)  # exact reduction
    n_real = g("Cast", n, to=real)
    angle = g("Mul", g("Cast", tk, to=real), g("Div", g.const(2 * math.pi, np_real), n_real))
    cos, sin = g("Cos", angle), g("Sin", angle)
    if kind == "hermitian":  # w_k / n: 1 for bins 0 and n / 2 (no mirror), else 2
        alone = g("Or", g("Equal", rows, g.const(0)), g("Equal", g("Mul", rows, g.const(2)), n))
        weight = g("Div", g("Sub", g.const(2.0, np_real), g("Cast", alone, to=real)), n_real)
        signal = g("MatMul", re, g("Mul", cos, weight))
        if im is not None:
            signal = g("Sub", signal, g("MatMul", im, g("Mul", sin, weight)))
        return signal, None
    inverse = kind == "inverse"  # e^(+i theta) / n
    re_cos, re_sin = g("MatMul", re, cos), g("MatMul", re, sin)
    if im is None:  # a real input
        y_re, y_im = re_cos, re_sin if inverse else g("Neg", re_sin)
    elif inverse:
        im_cos, im_sin = g("MatMul", im, cos), g("MatMul", im, sin)
        y_re, y_im = g("Sub", re_cos, im_sin), g("Add", im_cos, re_sin)
    else:
        im_cos, im_sin = g("MatMul", im, cos), g("MatMul", im, sin)
        y_re, y_im = g("Add", re_cos, im_sin), g("Sub", im_cos, re_sin)
    if inverse:
        return g("Div", y_re, n_real), g("Div", y_im, n_real)
    return y_re, y_im


#: the handlers of the FFTs (tf2onnx's own write another layout)
ADDED = {name: _fft for name in _FFTS}
CONSUMERS.update(
    {
        name: lambda node: _FFTS[node.type][1] != "hermitian"
        for name, (_, kind) in _FFTS.items()
        if kind != "real"
    }
)
