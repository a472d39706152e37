"""Differential fuzzer: random tf2onnx-style ONNX graphs, optimized, against onnxruntime.

Every graph is made from a seed (``generate(seed)``): one or two graph inputs
with a dynamic batch dim (sometimes a dynamic sequence dim too, a float
``attention_mask`` or int64 token ``ids``), then one to four *blocks* written
the way tf2onnx writes TensorFlow, each drawn at random:

* ``dense``: MatMul + Add, TF's Tensordot sandwich (Reshape -> MatMul -> Add ->
  Reshape through Shape/Cast/Slice/Concat), Gemm;
* ``layer_norm``: the moments form (ReduceMean or GlobalAveragePool, Sub, Mul,
  Add eps, Sqrt, Reciprocal, Mul gamma, Neg/Sub beta) and the RMS form;
* ``gelu_tanh``, ``gelu_erf``: the tanh approximation; erf with Mul or Div and
  the front door's ``1 - Erf(-x / sqrt 2)``;
* ``attention``: three dense layers, head split (Reshape + Transpose, k^T by one
  or two Transposes), MatMul, Mul/Div scale, the +1e-9 shift, an additive
  padding mask from ``attention_mask`` or a constant, GPT-2's Range-based causal
  band, Softmax, MatMul, head merge;
* ``reshape``: Shape -> Gather -> Unsqueeze -> Concat -> Reshape chains, Flatten,
  shape-preserving and double reshapes; ``transpose`` pairs; ``cast`` (to float32,
  a round trip through float64); ``slice``; ``squeeze``/``unsqueeze``;
  ``concat``; ``reduce``; ``softmax``; ``elementwise`` ops with constants of
  every broadcastable shape and swapped operands; MatMul of two activations.

With probability 0.4 a block is a *near miss* of the fusion it resembles: a
perturbed constant (0.05 for 0.044715, 0.8 for sqrt(2/pi), a tolerance-edge
perturbation), an intermediate with a user outside the pattern (it becomes a
graph output), swapped or re-associated operands, gamma/bias/eps of the wrong
shape, a reduction over another axis, a weight computed at run time, a Softmax
on another axis, a mask of odd rank. A near miss must either be left alone or
be rewritten into something equal: never change the numbers.

Each graph is converted with ``fxsurgeon.tensorflow.from_onnx``, optimized, and
compared with onnxruntime on the original ONNX at two input sizes (batch 1 and
4, dynamic sequence 3 and 6). The outcome is one of

* ``pass``: every output has the reference's shape and dtype, and is within
  ``1e-5 * max(1, max |reference|)`` of it (float32 rounding relative to the
  output's scale: a fused kernel sums in another order than onnxruntime). A
  graph that amplifies rounding (a norm over values that nearly cancel) may
  instead pass the float64 judge: run in float64 by onnx's reference
  evaluator, the model's error must be at most that tolerance plus
  `JUDGE_FACTOR` (4) times onnxruntime's own float32 error; the summary
  counts these passes apart;
* ``error``: optimize raised a clear ``FxSurgeonError`` (counted by kind): an
  honest "cannot", never wrong numbers;
* ``mismatch``: a silent numeric change (or shape/dtype change): a bug;
* ``crash``: any other exception, in optimize or in running its result: a bug;
* ``invalid``: onnxruntime rejects the generated graph: a bug of the fuzzer.

The generator avoids graphs whose result is rounding noise in any float32
implementation (a norm over exact copies: Expand copies get distinct offsets,
Gather indices do not repeat, Concat never joins x with Relu(x)), and stays in
tf2onnx's vocabulary where onnxruntime departs from the ONNX spec (a Slice with
a negative step ends at -1e9, never at INT_MAX, which onnxruntime reads as
"to the start" and the spec as "nothing").

Near misses whose rule did not fire are counted as declines (an estimate: the
report of ``optimize`` says which rules fired, per graph). A seed reproduces a
graph exactly: ``python -m fxsurgeon fuzz --seed N --count 1`` re-runs graph
N; ``--save DIR`` writes the ONNX files of failures; a mismatch is bisected
(`fxsurgeon.bisect` against onnxruntime) to name the rule or the lowering.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FuzzCase",
    "FuzzOutcome",
    "FuzzSummary",
    "add_parser",
    "check",
    "fuzz",
    "fuzz_command",
    "generate",
]

OPSET = 17
#: (batch, dynamic sequence length) of the two comparisons with onnxruntime.
CHECK_SIZES = ((1, 3), (4, 6))
NEAR_MISS = 0.4
_F32 = np.float32
_SQRT_2_OVER_PI = float(np.float32(math.sqrt(2 / math.pi)))
_SQRT_HALF = float(np.float32(math.sqrt(0.5)))
_SQRT_2 = float(np.float32(math.sqrt(2)))
_INT64_MAX = 2**63 - 1


# --------------------------------------------------------------------------- graphs


@dataclass
class _T:
    """A tensor of the graph being built: its name and shape.

    A dynamic dim is a string naming it: ``"N"`` (the batch), ``"S"`` (the
    input's sequence), or a fresh name for a size derived at run time, so
    two dims are the same only when their names are.
    """

    name: str
    shape: tuple[Any, ...]  # int, or str for a dynamic dim
    dtype: Any = _F32

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass
class FuzzCase:
    """One generated graph: the ONNX model and what its blocks are.

    ``blocks`` reads like ``["dense.tensordot", "gelu_tanh~c2=0.05"]`` (``~``
    marks a near miss); ``exact`` / ``near`` count the blocks per rule family
    they exercise.
    """

    seed: int
    model: Any
    blocks: list[str]
    exact: Counter = field(default_factory=Counter)
    near: Counter = field(default_factory=Counter)
    inputs: list[tuple[str, tuple[str | int, ...], Any]] = field(default_factory=list)
    vocab: int = 0  # rows of the embedding table ``ids`` index


class _Skip(Exception):  # noqa: N818 - control flow inside the generator
    """A block does not apply to the current tensor."""


class _Graph:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.inputs: list[Any] = []
        self.outputs: list[_T] = []
        self.input_specs: list[tuple[str, tuple, Any]] = []
        self.count = 0
        self.blocks: list[str] = []
        self.exact: Counter = Counter()
        self.near: Counter = Counter()
        self.mask: _T | None = None
        self.vocab = 0

    # -- names and constants ------------------------------------------------------
    def fresh(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, value: Any, dtype: Any = _F32, name: str | None = None) -> str:
        from onnx import numpy_helper

        name = name or self.fresh("const")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def ints(self, values: Sequence[int]) -> str:
        return self.const(list(values), np.int64, self.fresh("shape"))

    def weight(self, value: np.ndarray, role: str = "kernel") -> str:
        """A float initializer named like a tf2onnx variable read half of the time."""
        if self.rng.random() < 0.5:
            name = f"{self.fresh('layer')}/{role}/ReadVariableOp:0"
        else:
            name = self.fresh(role)
        return self.const(np.asarray(value, _F32), _F32, name)

    def randn(self, *shape: int, scale: float = 1.0) -> np.ndarray:
        return (self.rng.standard_normal(shape) * scale).astype(_F32)

    def op(self, op_type: str, inputs: Sequence[str], outputs: int = 1, **attrs: Any) -> Any:
        from onnx import helper

        names = [self.fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(
            helper.make_node(op_type, list(inputs), names, name=self.fresh(op_type), **attrs)
        )
        return names[0] if outputs == 1 else names

    def pick(self, options: Sequence[Any]) -> Any:
        return options[int(self.rng.integers(len(options)))]

    def integers(self, low: int, high: int) -> int:
        return int(self.rng.integers(low, high))

    def coin(self, p: float = 0.5) -> bool:
        return bool(self.rng.random() < p)

    def ordered(self, a: str, b: str) -> list[str]:
        """Both operands, in a random order (for commutative ops)."""
        return [a, b] if self.coin() else [b, a]

    def binary(self, op_type: str, a: str, b: str) -> str:
        if op_type in ("Add", "Mul"):
            return self.op(op_type, self.ordered(a, b))
        return self.op(op_type, [a, b])

    def scalar(self, value: float) -> str:
        """A float32 scalar constant, 0-d or [1] (tf2onnx writes both)."""
        return self.const(value if self.coin() else [value])

    def extra_output(self, name: str, dtype: Any = _F32) -> None:
        """A graph output reading an intermediate: a user outside any pattern."""
        self.outputs.append(_T(name, (), dtype))

    # -- shapes --------------------------------------------------------------------
    def shape_prefix(self, x: _T, keep: int) -> str:
        """An int64 1-D tensor holding ``x.shape[:keep]`` at run time, tf2onnx style."""
        shape = self.op("Shape", [x.name])
        int32 = self.coin()
        if int32:
            shape = self.op("Cast", [shape], to=6)  # INT32, as tf2onnx does
        style = self.pick(("slice", "gather"))
        if style == "slice":
            part = self.op(
                "Slice",
                [shape, self.ints([0]), self.ints([keep]), self.ints([0])],
            )
            if int32:
                part = self.op("Cast", [part], to=7)
            return part
        items = []
        for i in range(keep):
            item = self.op("Gather", [shape, self.const(i, np.int64)], axis=0)
            item = self.op("Unsqueeze", [item, self.ints([0])])
            items.append(self.op("Cast", [item], to=7) if int32 else item)
        return items[0] if keep == 1 else self.op("Concat", items, axis=0)

    def reshape(self, x: _T, keep: int, tail: Sequence[int]) -> _T:
        """Reshape to ``x.shape[:keep] + tail``: zeros, a shape chain, or -1 for one dynamic dim."""
        lead = list(x.shape[:keep])
        dynamic = [i for i, d in enumerate(lead) if not isinstance(d, int)]
        styles = ["chain", "zeros"]
        if len(dynamic) == 1 and -1 not in tail:
            styles.append("minus_one")
        style = self.pick(styles)
        if style == "zeros":
            target = self.ints([0] * keep + list(tail))
        elif style == "minus_one":
            target = self.ints([d if isinstance(d, int) else -1 for d in lead] + list(tail))
        else:
            target = self.op("Concat", [self.shape_prefix(x, keep), self.ints(tail)], axis=0)
        out = self.op("Reshape", [x.name, target])
        return _T(out, tuple(lead) + _resolve_tail(self, x, keep, tail))

    def block(self, tag: str, family: str, near: bool) -> None:
        self.blocks.append(tag)
        (self.near if near else self.exact)[family] += 1


def _resolve_tail(g: _Graph, x: _T, keep: int, tail: Sequence[int]) -> tuple[int | str, ...]:
    if -1 not in tail:
        return tuple(tail)
    rest = x.shape[keep:]
    known = math.prod(d for d in tail if d != -1)
    if not all(isinstance(d, int) for d in rest):
        return tuple(g.fresh("dyn") if d == -1 else d for d in tail)
    return tuple(math.prod(rest) // known if d == -1 else d for d in tail)  # type: ignore[arg-type]


def _static(x: _T, axis: int) -> bool:
    return isinstance(x.shape[axis], int)


# --------------------------------------------------------------------------- blocks


def _dense_core(g: _Graph, x: _T, out_features: int, *, near: bool) -> tuple[_T, str]:
    """One Dense layer on the last dim; returns the result and its variant tag."""
    if x.rank < 2 or not _static(x, -1):
        raise _Skip
    c = x.shape[-1]
    w = g.randn(c, out_features, scale=1 / math.sqrt(c))
    b = g.randn(out_features, scale=0.1)
    options = ["matmul"]
    if x.rank >= 3:
        options.append("tensordot")
    if x.rank == 2:
        options.append("gemm")
    if near:
        options = ["extra_user", "weight_runtime", "weight_3d"]
        if x.rank >= 3:
            options.append("tensordot_flat_out")
        if x.rank >= 3 and _static(x, -2) and x.shape[-2] > 1:
            options.append("bias_rows")
        if x.rank == 2:
            options += ["bias_rank", "gemm_alpha"]
        if x.rank == 3 and _static(x, 1) and x.shape[1] % 2 == 0:
            options.append("flat_wrong")
    variant = g.pick(options)
    lead = x.shape[:-1]
    out_shape = (*lead, out_features)
    if variant == "gemm" or variant == "gemm_alpha":
        trans_b = g.coin()
        weight = g.weight(w.T.copy() if trans_b else w)
        attrs: dict[str, Any] = {"transB": int(trans_b)}
        if variant == "gemm_alpha":
            attrs["alpha"] = g.pick((0.5, 2.0))
            attrs["beta"] = g.pick((1.0, 0.5))
        y = g.op("Gemm", [x.name, weight, g.weight(b, "bias")], **attrs)
        return _T(y, out_shape), variant
    if variant == "tensordot":
        flat = g.op("Reshape", [x.name, g.ints([-1, c])])
        mm = g.op("MatMul", [flat, g.weight(w)])
        added = g.binary("Add", mm, g.weight(b, "bias"))
        target = g.op("Concat", [g.shape_prefix(x, x.rank - 1), g.ints([out_features])], axis=0)
        return _T(g.op("Reshape", [added, target]), out_shape), variant
    if variant == "tensordot_flat_out":  # Tensordot whose last Reshape flattens [.., S, O]
        if not all(isinstance(d, int) for d in x.shape[1:-1]):
            raise _Skip
        flat = g.op("Reshape", [x.name, g.ints([-1, c])])
        added = g.binary("Add", g.op("MatMul", [flat, g.weight(w)]), g.weight(b, "bias"))
        width = math.prod(x.shape[1:-1]) * out_features  # type: ignore[arg-type]
        y = g.op("Reshape", [added, g.ints([-1, width])])
        return _T(y, (x.shape[0], width)), variant
    if variant == "weight_3d":  # a batched constant [2, C, O]: no linear layer
        w3 = g.randn(2, c, out_features, scale=1 / math.sqrt(c))
        up = g.op("Unsqueeze", [x.name, g.ints([-3])])  # [.., 1, R, C] @ [2, C, O]
        mm = g.op("MatMul", [up, g.weight(w3)])
        y = g.op("ReduceSum", [mm, g.ints([-3])], keepdims=0)
        return _T(y, out_shape), variant
    if variant == "flat_wrong":  # [N, S, C] -> [-1, 2C]: rows of two tokens, not a Tensordot
        s = x.shape[1]
        w2 = g.randn(2 * c, out_features, scale=1 / math.sqrt(2 * c))
        flat = g.op("Reshape", [x.name, g.ints([-1, 2 * c])])
        mm = g.op("MatMul", [flat, g.weight(w2)])
        added = g.binary("Add", mm, g.weight(b, "bias"))
        y = g.op("Reshape", [added, g.ints([-1, s // 2, out_features])])
        return _T(y, (x.shape[0], s // 2, out_features)), variant
    weight = g.weight(w)
    if variant == "weight_runtime":  # the weight is computed: not a constant
        weight = g.op("Mul", [weight, g.scalar(1.5)])
    mm = g.op("MatMul", [x.name, weight])
    bias = b
    if variant == "bias_rows":
        bias = g.randn(x.shape[-2], out_features, scale=0.1)
    elif variant == "bias_rank":
        bias = b.reshape(1, 1, out_features)
    elif g.coin(0.2):
        bias = b.reshape(1, out_features)  # GPT-2's Conv1D bias
    y = g.binary("Add", mm, g.weight(bias, "bias"))
    if variant == "extra_user":
        g.extra_output(mm)
    if variant == "bias_rank":  # [1, N, O]: back to [N, O]
        y = g.op("Squeeze", [y, g.ints([0])])
    return _T(y, out_shape), variant


def _block_dense(g: _Graph, x: _T, near: bool) -> _T:
    y, variant = _dense_core(g, x, int(g.pick((3, 4, 5, 8))), near=near)
    # onnx2torch makes a Gemm with constant weights an nn.Linear: no rule is needed
    family = "gemm" if variant.startswith("gemm") else "linear"
    g.block(f"dense{'~' if near else '.'}{variant}", family, near)
    return y


def _reduce_last(g: _Graph, x: str, kind: str, axis: int = -1) -> str:
    if kind == "gap":
        return g.op("GlobalAveragePool", [x])
    return g.op("ReduceMean", [x], axes=[axis], keepdims=1)


def _block_layer_norm(g: _Graph, x: _T, near: bool) -> _T:
    if x.rank < 2 or not _static(x, -1) or x.shape[-1] < 2:
        raise _Skip
    c = x.shape[-1]
    rms = g.coin(0.25)
    family = "rms_norm" if rms else "layer_norm"
    options = ["plain"]
    if near:
        options = ["eps_vector", "gamma_scalar", "extra_user"]
        if x.rank >= 3 and _static(x, -2) and x.shape[-2] > 1:
            options += ["gamma_rows", "other_axis"]
        options += ["pow4"] if rms else ["var_of_x", "rsqrt_pow"]
        if x.rank == 4 and not rms:
            options.append("gap_rank4")
    variant = g.pick(options)
    gamma_value = (1 + 0.1 * g.rng.standard_normal(c)).astype(_F32)
    if variant == "gamma_scalar":
        gamma_value = gamma_value[:1]
    elif variant == "gamma_rows":
        gamma_value = (1 + 0.1 * g.rng.standard_normal((x.shape[-2], c))).astype(_F32)
    gamma = g.weight(gamma_value, "gamma")
    eps_value = float(g.pick((1e-12, 1e-6, 1e-5, 1e-3)))
    eps = g.const(np.full(c, eps_value)) if variant == "eps_vector" else g.scalar(eps_value)
    axis = -2 if variant == "other_axis" else -1
    if rms:
        if variant != "pow4" and g.coin():
            square = g.op("Mul", [x.name, x.name])  # tf.square as tf2onnx writes it
        else:
            square = g.op("Pow", [x.name, g.scalar(4.0 if variant == "pow4" else 2.0)])
        ms = g.op("ReduceMean", [square], axes=[axis], keepdims=1)
        inv = g.op("Reciprocal", [g.op("Sqrt", [g.binary("Add", ms, eps)])])
        if variant == "extra_user":
            g.extra_output(inv)
        y = g.binary("Mul", gamma, g.binary("Mul", x.name, inv))
        g.block(f"rms_norm{'~' if near else '.'}{variant}", family, near)
        return _T(y, x.shape)
    kind = "gap" if x.rank == 3 and axis == -1 and g.coin() else "mean"
    if variant == "gap_rank4":  # GlobalAveragePool of a 4-D tensor: over two dims
        kind = "gap"
    mean = _reduce_last(g, x.name, kind, axis)
    if variant == "var_of_x":
        var = _reduce_last(g, g.op("Mul", [x.name, x.name]), kind, axis)
    else:
        d = g.op("Sub", [x.name, mean])
        var = _reduce_last(g, g.op("Mul", [d, d]), kind, axis)
    if variant == "rsqrt_pow":
        inv = g.op("Pow", [g.binary("Add", var, eps), g.scalar(-0.5)])
    else:
        inv = g.op("Reciprocal", [g.op("Sqrt", [g.binary("Add", var, eps)])])
    s = g.binary("Mul", inv, gamma)
    xs = g.binary("Mul", x.name, s)
    ms = g.binary("Mul", mean, s)
    if variant == "extra_user":
        g.extra_output(g.pick((s, ms, mean)))
    if g.coin(0.3):  # beta all zero: TF drops the Add, the Sub becomes Neg
        y = g.binary("Add", xs, g.op("Neg", [ms]))
        tag = "no_beta"
    else:
        beta = g.weight(g.randn(c, scale=0.1), "beta")
        y = g.binary("Add", xs, g.op("Sub", [beta, ms]))
        tag = "beta"
    g.block(f"layer_norm{'~' if near else '.'}{variant if near else tag}", family, near)
    return _T(y, x.shape)


def _block_gelu_tanh(g: _Graph, x: _T, near: bool) -> _T:
    c1, c2, half, one, power = _SQRT_2_OVER_PI, float(np.float32(0.044715)), 0.5, 1.0, 3.0
    variant = "exact"
    cube_x = x.name
    if near:
        variant = g.pick(
            (
                "c2=0.05",
                "c1=0.8",
                "half=0.4",
                "pow2",
                "extra_user",
                "other_x",
                "assoc",
                "edge",
                "inside_tol",
            )
        )
        if variant == "c2=0.05":
            c2 = 0.05
        elif variant == "c1=0.8":
            c1 = 0.8
        elif variant == "half=0.4":
            half = 0.4
        elif variant == "pow2":
            power = 2.0
        elif variant == "other_x":
            cube_x = g.op("Relu", [x.name])
        elif variant == "edge":  # just outside the engine's 1e-4 relative tolerance
            c2 = float(np.float32(0.044715 * (1 + 2e-4)))
        elif variant == "inside_tol":  # a constant off by less than the engine's tolerance
            factor = 1 + float(g.pick((-9e-5, 9e-5)))
            which = g.pick(("c1", "c2", "half", "one"))
            variant = f"inside_tol_{which}"
            c1 = c1 * factor if which == "c1" else c1
            c2 = c2 * factor if which == "c2" else c2
            half = half * factor if which == "half" else half
            one = one * factor if which == "one" else one
    x3 = g.op("Pow", [cube_x, g.scalar(power)])
    inner = g.binary("Add", cube_x, g.binary("Mul", g.scalar(c2), x3))
    t = g.op("Tanh", [g.binary("Mul", g.scalar(c1), inner)])
    if variant == "extra_user":
        g.extra_output(t)
    onep = g.binary("Add", g.scalar(one), t)
    if variant == "assoc":  # 0.5 * (x * (1 + tanh)): another association
        y = g.binary("Mul", g.scalar(half), g.binary("Mul", x.name, onep))
    else:
        y = g.binary("Mul", g.binary("Mul", g.scalar(half), x.name), onep)
    g.block(f"gelu_tanh{'~' if near else '.'}{variant}", "gelu_tanh", near)
    return _T(y, x.shape)


def _block_gelu_erf(g: _Graph, x: _T, near: bool) -> _T:
    form = g.pick(("mul", "div", "erfc"))
    variant = form
    k = _SQRT_HALF
    if near:
        variant = g.pick(("k=0.7", "div_wrong", "extra_user", "erfc_swapped"))
    if variant == "k=0.7":
        k = 0.7
    if form == "erfc" or variant == "erfc_swapped":
        erf = g.op("Erf", [g.binary("Mul", g.op("Neg", [x.name]), g.scalar(k))])
        if variant == "erfc_swapped":
            bracket = g.op("Sub", [erf, g.scalar(1.0)])
        else:
            bracket = g.op("Sub", [g.scalar(1.0), erf])
    else:
        if form == "div" or variant == "div_wrong":
            arg = g.op("Div", [x.name, g.scalar(_SQRT_HALF if variant == "div_wrong" else _SQRT_2)])
        else:
            arg = g.binary("Mul", x.name, g.scalar(k))
        erf = g.op("Erf", [arg])
        bracket = g.binary("Add", g.scalar(1.0), erf)
    if variant == "extra_user":
        g.extra_output(erf)
    y = g.binary("Mul", g.binary("Mul", g.scalar(0.5), x.name), bracket)
    g.block(f"gelu_erf{'~' if near else '.'}{variant}", "gelu_erf", near)
    return _T(y, x.shape)


def _mask_input(g: _Graph, x: _T) -> _T:
    """The float ``attention_mask`` input [N, S] (one per graph)."""
    if g.mask is None:
        from onnx import TensorProto, helper

        if x.shape[0] != "N" or x.shape[1] not in ("S",) and not _static(x, 1):
            raise _Skip  # the mask must be [N, S] of the graph's own dims
        dims = ["N", x.shape[1]]
        g.inputs.append(helper.make_tensor_value_info("attention_mask", TensorProto.FLOAT, dims))
        g.input_specs.append(("attention_mask", tuple(dims), _F32))
        g.mask = _T("attention_mask", ("N", x.shape[1]))
    elif g.mask.shape[1] != x.shape[1]:
        raise _Skip
    return g.mask


def _causal_band(g: _Graph, w: str) -> str:
    """GPT-2's band [1, 1, Sq, Sk], band[i, j] = i >= j - Sk + Sq, as tf2onnx writes it."""
    shape = g.op("Cast", [g.op("Shape", [w])], to=6)
    nd = g.op(
        "Squeeze", [g.op("Slice", [shape, g.ints([2]), g.ints([3]), g.ints([0])]), g.ints([0])]
    )
    ns = g.op(
        "Squeeze", [g.op("Slice", [shape, g.ints([3]), g.ints([4]), g.ints([0])]), g.ints([0])]
    )
    zero, one = g.const(0, np.int32), g.const(1, np.int32)
    rows = g.op("Unsqueeze", [g.op("Range", [zero, nd, one]), g.ints([1])])
    begin, end = g.const([0, 0], np.int32), g.const([10**9, 10**9], np.int32)
    axes, steps = g.const([0, 1], np.int32), g.const([1, 1], np.int32)
    rows = g.op("Slice", [rows, begin, end, axes, steps])  # TF's masked strided slice
    cols = g.op("Add", [g.op("Sub", [g.op("Range", [zero, ns, one]), ns]), nd])
    band = g.op("Cast", [g.op("GreaterOrEqual", [rows, cols])], to=1)
    dims = [
        g.const([1], np.int32),
        g.const([1], np.int32),
        g.op("Unsqueeze", [nd, g.ints([0])]),
        g.op("Unsqueeze", [ns, g.ints([0])]),
    ]
    target = g.op("Cast", [g.op("Concat", dims, axis=0)], to=7)
    return g.op("Reshape", [band, target])


def _block_attention(g: _Graph, x: _T, near: bool) -> _T:
    if x.rank != 3 or not _static(x, -1):
        raise _Skip
    heads, head_dim = int(g.pick((1, 2, 3))), int(g.pick((2, 3, 4)))
    width = heads * head_dim
    dynamic_seq = not _static(x, 1)
    masks = ["none", "shift", "padding", "const"]
    if dynamic_seq:
        masks += ["causal", "causal_padding"]
    mask_kind = g.pick(masks)
    if mask_kind == "const" and dynamic_seq:
        mask_kind = "shift"
    variant = mask_kind
    if near:
        variant = g.pick(
            (
                "softmax_axis",
                "scale_tensor",
                "extra_user",
                "div_scale",
                "mask_first",
                "scale_inside_tol",
            )
        )

    def heads_of(t: _T) -> _T:
        return g.reshape(t, 1, [-1, heads, head_dim]) if g.coin() else _split(g, t, heads, head_dim)

    q, _ = _dense_core(g, x, width, near=False)
    k, _ = _dense_core(g, x, width, near=False)
    v, _ = _dense_core(g, x, width, near=False)
    qh = g.op("Transpose", [heads_of(q).name], perm=[0, 2, 1, 3])
    if g.coin():
        kt = g.op("Transpose", [heads_of(k).name], perm=[0, 2, 3, 1])
    else:
        kt = g.op("Transpose", [heads_of(k).name], perm=[0, 2, 1, 3])
        kt = g.op("Transpose", [kt], perm=[0, 1, 3, 2])
    vh = g.op("Transpose", [heads_of(v).name], perm=[0, 2, 1, 3])
    scores = g.op("MatMul", [qh, kt])
    scale = 1 / math.sqrt(head_dim) if g.coin(0.7) else float(g.pick((0.3, 1.0, 0.125)))
    if variant == "scale_inside_tol":  # 1/sqrt(D), off by less than the engine's tolerance
        scale = (1 + float(g.pick((-9e-5, 9e-5)))) / math.sqrt(head_dim)
    if variant == "div_scale":
        w = g.op("Div", [scores, g.scalar(math.sqrt(head_dim))])
    elif variant == "scale_tensor":
        factors = (scale * (1 + 0.1 * g.rng.standard_normal((1, heads, 1, 1)))).astype(_F32)
        w = g.op("Mul", [scores, g.const(factors)])
    elif variant != "mask_first":
        w = g.binary("Mul", scores, g.scalar(scale))
    else:
        w = scores
    term = None
    if mask_kind in ("padding", "causal_padding"):
        mask = _mask_input(g, x)
        m4 = g.op("Unsqueeze", [mask.name, g.ints([1, 2])])
        term = g.binary("Mul", g.op("Sub", [g.scalar(1.0), m4]), g.scalar(-10000.0))
        if g.coin():
            term = g.binary("Add", g.scalar(1e-9), term)
    elif mask_kind == "const":
        s = x.shape[1]
        dims = g.pick(((1, 1, s, s), (s, s), (1, heads, 1, s), (1, 1, 1, s)))
        term = g.const(g.randn(*dims, scale=2.0))
    elif mask_kind == "shift":
        term = g.scalar(1e-9)
    if mask_kind.startswith("causal"):
        band = _causal_band(g, w)
        hidden = g.binary("Mul", g.scalar(10000.0), g.op("Sub", [g.scalar(1.0), band]))
        # HF TFGPT2: (w * band - hidden) + mask, or with no mask TF's folding of
        # stable_softmax's +1e-9: w * band + (1e-9 - hidden). The other association of
        # either is not what tf2onnx writes; no rule takes it (a near miss).
        gpt2 = term is not None
        if term is None:
            term = g.scalar(1e-9)
        if near and variant == "extra_user" and g.coin():
            gpt2 = not gpt2
            variant = "causal_other_association"
        if gpt2:
            logits = g.binary("Add", g.op("Sub", [g.binary("Mul", w, band), hidden]), term)
        else:
            logits = g.binary("Add", g.binary("Mul", w, band), g.op("Sub", [term, hidden]))
    else:
        logits = g.binary("Add", w, term) if term is not None else w
    if variant == "mask_first":  # (scores + mask) * scale
        logits = g.binary("Mul", logits, g.scalar(scale))
    probs = g.op("Softmax", [logits], axis=2 if variant == "softmax_axis" else g.pick((-1, 3)))
    if variant == "extra_user":
        g.extra_output(probs)
    out = g.op("MatMul", [probs, vh])
    merged = _T(
        g.op("Transpose", [out], perm=[0, 2, 1, 3]), (x.shape[0], x.shape[1], heads, head_dim)
    )
    y = g.reshape(merged, 2, [width])
    g.block(f"attention{'~' if near else '.'}{variant}", "sdpa", near)
    return y


def _split(g: _Graph, t: _T, heads: int, head_dim: int) -> _T:
    """[N, S, H*D] -> [N, S, H, D] with Shape/Gather/Unsqueeze/Concat, as tf2onnx writes it."""
    return g.reshape(t, 2, [heads, head_dim])


def _block_reshape(g: _Graph, x: _T, near: bool) -> _T:
    options = ["noop_chain", "flatten"]
    static_tail = [i for i in range(1, x.rank) if _static(x, i)]
    if x.rank >= 3 and _static(x, -1) and _static(x, -2):
        options.append("merge")
    if _static(x, -1) and x.shape[-1] % 2 == 0 and x.rank < 5:
        options.append("split")
    if x.rank >= 2 and static_tail:
        options.append("double")
    if near and x.rank == 3 and _static(x, 1) and _static(x, 2):
        options = ["swap_like"]  # [N, S, C] -> [0, C, -1]: a shape-preserving look-alike
    variant = g.pick(options)
    if variant == "noop_chain":
        if g.coin() or not all(isinstance(d, int) for d in x.shape[1:]):
            target = g.op("Shape", [x.name])
        else:
            target = g.op(
                "Concat", [g.shape_prefix(x, 1), g.ints([d for d in x.shape[1:]])], axis=0
            )
        y = _T(g.op("Reshape", [x.name, target]), x.shape)
        g.block("reshape.noop", "reshape_noop", near=False)
        return y
    if variant == "flatten":
        axis = int(g.integers(1, x.rank)) if x.rank > 1 else 1
        y = g.op("Flatten", [x.name], axis=axis)
        lead = x.shape[:axis]
        tail = x.shape[axis:]
        first = math.prod(lead) if all(isinstance(d, int) for d in lead) else g.fresh("dyn")
        second = math.prod(tail) if all(isinstance(d, int) for d in tail) else g.fresh("dyn")
        g.block("reshape.flatten", "reshape", near=False)
        return _T(y, (first, second))
    if variant == "merge":
        y = g.reshape(x, x.rank - 2, [x.shape[-2] * x.shape[-1]])
    elif variant == "split":
        y = g.reshape(x, x.rank - 1, [2, x.shape[-1] // 2])
    elif variant == "double":
        inner = g.reshape(x, 1, [-1]) if all(_static(x, i) for i in range(1, x.rank)) else x
        y = g.reshape(inner, 1, [d for d in x.shape[1:]]) if inner is not x else x
        if y is x:
            raise _Skip
    else:  # swap_like
        s, c = x.shape[1], x.shape[2]
        y = _T(g.op("Reshape", [x.name, g.ints([0, c, -1])]), (x.shape[0], c, s))
        g.block("reshape~swap_like", "reshape_noop", near=True)
        return y
    g.block(f"reshape.{variant}", "reshape", near=False)
    return y


def _block_transpose(g: _Graph, x: _T, near: bool) -> _T:
    if x.rank < 2:
        raise _Skip
    rest = list(range(1, x.rank))

    def perm() -> list[int]:
        return [0, *(int(i) for i in g.rng.permutation(rest))]

    p = perm()
    if g.coin(0.2):
        p = list(range(x.rank))  # the identity, as tf2onnx sometimes leaves it
    first = g.op("Transpose", [x.name], perm=p)
    shape = tuple(x.shape[i] for i in p)
    y, variant = first, "single"
    if g.coin(0.7):
        q = [p.index(i) for i in range(x.rank)] if g.coin() else perm()
        y = g.op("Transpose", [first], perm=q)
        shape = tuple(shape[i] for i in q)
        variant = "pair"
        if near:
            g.extra_output(first)
            variant = "extra_user"
    g.block(
        f"transpose{'~' if variant == 'extra_user' else '.'}{variant}",
        "permute",
        near and variant == "extra_user",
    )
    return _T(y, shape)


def _block_cast(g: _Graph, x: _T, near: bool) -> _T:
    variant = g.pick(("noop", "float64_round_trip", "float64_math"))
    if variant == "noop":
        y = g.op("Cast", [x.name], to=1)
    else:
        wide = g.op("Cast", [x.name], to=11)  # DOUBLE
        if variant == "float64_math":
            wide = g.op("Mul", [wide, g.const(1.25, np.float64)])
        y = g.op("Cast", [wide], to=1)
    g.block(f"cast.{variant}", "cast", near=False)
    return _T(y, x.shape)


def _block_slice(g: _Graph, x: _T, near: bool) -> _T:
    axes = [i for i in range(1, x.rank)]
    if not axes:
        raise _Skip
    axis = int(g.pick(axes))
    dim = x.shape[axis]
    if not isinstance(dim, int):
        step = int(g.pick((1, 1, 2, 2, -1)))
        start = int(g.pick((0, 1, -2)))
        end = int(g.pick((_INT64_MAX, -1, 2**31 - 1)))
        if step < 0:  # tf2onnx's masked end for a negative stride is -1e9, never INT_MAX
            start, end = int(g.pick((-1, 1))), int(g.pick((-(10**9), -_INT64_MAX - 1)))
        new: int | str = g.fresh("dyn")
    else:
        if dim < 2:
            raise _Skip
        step = int(g.pick((1, 1, 2, -1)))
        for _ in range(10):
            start = int(g.integers(-dim, dim))
            end = int(g.pick((int(g.integers(-dim, dim + 1)), _INT64_MAX, -_INT64_MAX - 1)))
            new = (
                len(range(*slice(start, end, step).indices(dim)))
                if end > -dim - 1 or step < 0
                else 0
            )
            if step < 0 and end == -_INT64_MAX - 1:
                new = len(range(*slice(start, None, step).indices(dim)))
            if new:
                break
        else:
            raise _Skip
    inputs = [x.name, g.ints([start]), g.ints([end]), g.ints([axis if g.coin() else axis - x.rank])]
    if step != 1 or g.coin():
        inputs.append(g.ints([step]))
    y = g.op("Slice", inputs)
    shape = list(x.shape)
    shape[axis] = new
    g.block(f"slice.step{step}", "slice", near=False)
    return _T(y, tuple(shape))


def _block_unsqueeze(g: _Graph, x: _T, near: bool) -> _T:
    if x.rank >= 5:
        raise _Skip
    axis = int(g.integers(1, x.rank + 1))
    up = g.op("Unsqueeze", [x.name, g.ints([axis if g.coin() else axis - x.rank - 1])])
    shape = list(x.shape)
    shape.insert(axis, 1)
    if g.coin(0.7):
        mid = g.op(g.pick(("Relu", "Tanh", "Sigmoid")), [up])
        y = g.op("Squeeze", [mid, g.ints([axis])])
        g.block("squeeze.round_trip", "squeeze", near=False)
        return _T(y, x.shape)
    g.block("squeeze.unsqueeze", "squeeze", near=False)
    return _T(up, tuple(shape))


def _block_concat(g: _Graph, x: _T, near: bool) -> _T:
    axis = int(g.integers(0, x.rank))
    other = g.op(g.pick(("Sigmoid", "Neg", "Tanh")), [x.name])  # never equal to x
    y = g.op("Concat", [x.name, other] if g.coin() else [other, x.name], axis=axis)
    shape = list(x.shape)
    shape[axis] = 2 * shape[axis] if isinstance(shape[axis], int) else g.fresh("dyn")
    g.block("concat", "concat", near=False)
    return _T(y, tuple(shape))


def _block_reduce(g: _Graph, x: _T, near: bool) -> _T:
    axes = [i for i in range(1, x.rank) if _static(x, i)]
    if not axes or x.rank < 2:
        raise _Skip
    axis = int(g.pick(axes)) if g.coin(0.85) else 0
    keep = g.coin() or axis == 0
    if not keep and x.rank == 2:
        keep = True
    op = g.pick(("ReduceMean", "ReduceSum", "ReduceMax"))
    if op == "ReduceSum":  # opset 13+: axes as an input
        y = g.op(op, [x.name, g.ints([axis])], keepdims=int(keep))
    else:
        y = g.op(op, [x.name], axes=[axis], keepdims=int(keep))
    shape = list(x.shape)
    if keep:
        shape[axis] = 1
    else:
        del shape[axis]
    g.block(f"reduce.{op}", "reduce", near=False)
    return _T(y, tuple(shape))


def _block_softmax(g: _Graph, x: _T, near: bool) -> _T:
    axis = int(g.integers(1, x.rank)) if x.rank > 1 else 0
    op = g.pick(("Softmax", "LogSoftmax"))
    y = g.op(op, [x.name], axis=axis if g.coin() else axis - x.rank)
    g.block(f"softmax.{op}", "softmax", near=False)
    return _T(y, x.shape)


def _broadcast_shape(g: _Graph, x: _T) -> tuple[int, ...]:
    """A constant shape that broadcasts to x without changing its shape."""
    options: list[tuple[int, ...]] = [(), (1,)]
    if _static(x, -1):
        options += [(x.shape[-1],), (1, x.shape[-1])]
    if x.rank >= 2 and _static(x, -2):
        options.append((x.shape[-2], 1))
    return tuple(g.pick(options))


def _block_elementwise(g: _Graph, x: _T, near: bool) -> _T:
    kind = g.pick(("unary", "binary_const", "binary_swapped", "self", "pow", "where", "clip"))
    if kind == "unary":
        op = g.pick(
            ("Relu", "Sigmoid", "Tanh", "Neg", "Abs", "Erf", "exp", "sqrt", "recip", "LeakyRelu")
        )
        if op == "exp":
            y = g.op("Exp", [g.op("Mul", [x.name, g.scalar(0.3)])])
        elif op == "sqrt":
            y = g.op("Sqrt", [g.op("Add", [g.op("Abs", [x.name]), g.scalar(0.5)])])
        elif op == "recip":
            y = g.op("Reciprocal", [g.op("Add", [g.op("Abs", [x.name]), g.scalar(1.0)])])
        elif op == "LeakyRelu":
            y = g.op("LeakyRelu", [x.name], alpha=0.2)
        else:
            y = g.op(op, [x.name])
        tag = op
    elif kind in ("binary_const", "binary_swapped"):
        op = g.pick(("Add", "Sub", "Mul", "Div"))
        shape = _broadcast_shape(g, x)
        value = g.rng.uniform(0.5, 2.0, shape) * g.rng.choice([-1.0, 1.0], shape)
        const = g.const(value.astype(_F32))
        if kind == "binary_const":
            y = g.op(op, [x.name, const])
        elif op == "Div":  # const / (|x| + 1)
            y = g.op("Div", [const, g.op("Add", [g.op("Abs", [x.name]), g.scalar(1.0)])])
        else:
            y = g.op(op, [const, x.name])
        tag = f"{op}{list(shape)}"
    elif kind == "self":
        op = g.pick(("Mul", "Add", "Sub", "Max", "Min"))
        other = g.op(g.pick(("Tanh", "Sigmoid", "Relu")), [x.name])
        y = g.op(op, [x.name, other] if g.coin() else [other, x.name])
        tag = f"self_{op}"
    elif kind == "pow":
        y = g.op("Pow", [x.name, g.scalar(float(g.pick((2.0, 3.0))))])
        tag = "pow"
    elif kind == "where":
        positive = g.op("Greater", [x.name, g.scalar(0.0)])
        y = g.op("Where", [positive, x.name, g.op("Mul", [x.name, g.scalar(0.1)])])
        tag = "where"
    else:
        y = g.op("Clip", [x.name, g.const(-1.0), g.const(1.0)])
        tag = "clip"
    g.block(f"elementwise.{tag}", "elementwise", near=False)
    return _T(y, x.shape)


def _block_matmul_activations(g: _Graph, x: _T, near: bool) -> _T:
    if x.rank < 3:
        raise _Skip
    perm = list(range(x.rank))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    xt = g.op("Transpose", [x.name], perm=perm)
    scaled = g.op("Mul", [x.name, g.scalar(0.5)])
    y = g.op("MatMul", [scaled, xt])
    g.block("matmul~activations", "linear", near=True)
    return _T(y, (*x.shape[:-1], x.shape[-2]))


def _block_gather(g: _Graph, x: _T, near: bool) -> _T:
    if x.rank < 2:
        raise _Skip
    axis = int(g.integers(1, x.rank))
    dim = x.shape[axis]
    size = dim if isinstance(dim, int) else 2  # dynamic dims are at least 2 here
    if g.coin() or not isinstance(dim, int):  # a scalar index: BERT's pooler takes token 0
        index = int(g.integers(-size, size)) if isinstance(dim, int) else int(g.pick((0, -1)))
        y = g.op("Gather", [x.name, g.const(index, np.int64)], axis=axis)
        shape = x.shape[:axis] + x.shape[axis + 1 :]
        tag = "scalar"
    else:
        count = int(g.integers(1, min(size, 3) + 1))
        positions = g.rng.choice(size, count, replace=False)  # no repeats: no equal rows
        indices = [int(p) - size if g.coin() else int(p) for p in positions]
        y = g.op("Gather", [x.name, g.const(indices, np.int64)], axis=axis)
        shape = x.shape[:axis] + (len(indices),) + x.shape[axis + 1 :]
        tag = "vector"
    if not shape or len(shape) < 2:
        raise _Skip
    g.block(f"gather.{tag}", "gather", near=False)
    return _T(y, shape)


def _block_expand(g: _Graph, x: _T, near: bool) -> _T:
    if x.rank >= 4:
        raise _Skip
    axis = int(g.integers(1, x.rank + 1))
    up = g.op("Unsqueeze", [x.name, g.ints([axis])])
    reps = int(g.pick((2, 3)))
    target = [1] * (x.rank + 1)
    target[axis] = reps
    y = g.op("Expand", [up, g.ints(target)])
    # copies that differ, or a later norm over them divides rounding noise by ~0
    offsets = (0.5 * np.arange(reps) - 0.3).astype(_F32).reshape([reps] + [1] * (x.rank - axis))
    y = g.op("Add", [y, g.const(offsets)])
    shape = list(x.shape)
    shape.insert(axis, reps)
    g.block("expand", "expand", near=False)
    return _T(y, tuple(shape))


def _block_split(g: _Graph, x: _T, near: bool) -> _T:
    axes = [i for i in range(1, x.rank) if _static(x, i) and x.shape[i] >= 2]
    if not axes:
        raise _Skip
    axis = int(g.pick(axes))
    size = x.shape[axis]
    first = int(g.integers(1, size))
    a, b = g.op("Split", [x.name, g.ints([first, size - first])], outputs=2, axis=axis)
    y = g.op("Concat", [g.op("Tanh", [b]), a], axis=axis)
    g.block("split", "split", near=False)
    return _T(y, x.shape)


def _block_pad(g: _Graph, x: _T, near: bool) -> _T:
    axes = [i for i in range(1, x.rank) if _static(x, i)]
    if not axes:
        raise _Skip
    axis = int(g.pick(axes))
    before, after = int(g.integers(0, 3)), int(g.integers(1, 3))
    pads = [0] * (2 * x.rank)
    pads[axis], pads[x.rank + axis] = before, after
    mode = g.pick(("constant", "constant", "reflect", "edge"))
    if mode == "reflect" and x.shape[axis] <= max(before, after):
        mode = "edge"
    if mode == "edge" and x.shape[axis] < 2:
        mode = "constant"  # edge copies of a single value: rows of equal values
    inputs = [x.name, g.ints(pads)]
    if mode == "constant" and g.coin():
        inputs.append(g.const(0.5))
    y = g.op("Pad", inputs, mode=mode)
    shape = list(x.shape)
    shape[axis] = x.shape[axis] + before + after
    g.block(f"pad.{mode}", "pad", near=False)
    return _T(y, tuple(shape))


_BLOCKS: dict[str, tuple[Callable[[_Graph, _T, bool], _T], float]] = {
    "dense": (_block_dense, 3.0),
    "layer_norm": (_block_layer_norm, 2.5),
    "gelu_tanh": (_block_gelu_tanh, 2.0),
    "gelu_erf": (_block_gelu_erf, 1.5),
    "attention": (_block_attention, 2.5),
    "reshape": (_block_reshape, 1.5),
    "transpose": (_block_transpose, 1.5),
    "cast": (_block_cast, 0.5),
    "slice": (_block_slice, 1.0),
    "unsqueeze": (_block_unsqueeze, 0.7),
    "concat": (_block_concat, 0.7),
    "reduce": (_block_reduce, 0.7),
    "softmax": (_block_softmax, 0.5),
    "elementwise": (_block_elementwise, 1.5),
    "matmul_activations": (_block_matmul_activations, 0.4),
    "gather": (_block_gather, 0.5),
    "expand": (_block_expand, 0.4),
    "split": (_block_split, 0.4),
    "pad": (_block_pad, 0.4),
}


def _start(g: _Graph) -> _T:
    """The graph input(s) and the first float tensor."""
    from onnx import TensorProto, helper

    kind = g.pick(("x2", "x3", "x3", "x3_dynamic", "x4", "ids"))
    c = int(g.pick((4, 6, 8)))
    if kind == "ids":
        vocab = int(g.pick((5, 11)))
        g.inputs.append(helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "S"]))
        g.input_specs.append(("ids", ("N", "S"), np.int64))
        table = g.weight(g.randn(vocab, c), "embeddings")
        y = g.op("Gather", [table, "ids"], axis=0)
        g.vocab = vocab
        g.blocks.append("embedding")
        return _T(y, ("N", "S", c))
    if kind == "x2":
        dims: list[Any] = ["N", c]
    elif kind == "x3":
        dims = ["N", int(g.pick((2, 3, 4))), c]
    elif kind == "x3_dynamic":
        dims = ["N", "S", c]
    else:
        dims = ["N", int(g.pick((2, 3))), int(g.pick((2, 3))), c]
    g.inputs.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, dims))
    g.input_specs.append(("x", tuple(dims), _F32))
    return _T("x", tuple(dims))


def generate(seed: int) -> FuzzCase:
    """The graph of ``seed``: the same seed gives the same ONNX model, always."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    g = _Graph(rng)
    x = _start(g)
    names = list(_BLOCKS)
    weights = np.array([_BLOCKS[n][1] for n in names])
    wanted = int(rng.choice([1, 2, 3, 4], p=[0.2, 0.35, 0.3, 0.15]))
    made, tries = 0, 0
    while made < wanted and tries < 40:
        tries += 1
        name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        near = bool(rng.random() < NEAR_MISS)
        state = (len(g.nodes), len(g.initializers), len(g.outputs), len(g.blocks), g.count)
        try:
            y = _BLOCKS[name][0](g, x, near)
        except _Skip:
            del g.nodes[state[0] :], g.initializers[state[1] :], g.outputs[state[2] :]
            del g.blocks[state[3] :]
            continue
        if len(y.shape) > 5 or any(d == 0 for d in y.shape) or (y.rank == 0):
            raise AssertionError(f"fuzz generator made a bad shape {y.shape} in {name}")
        x = y
        made += 1
        if made < wanted and rng.random() < 0.1:
            g.extra_output(x.name)
    outputs = [helper.make_tensor_value_info(x.name, TensorProto.FLOAT, None)]
    seen = {x.name}
    for extra in g.outputs:
        if extra.name not in seen:
            seen.add(extra.name)
            outputs.append(helper.make_tensor_value_info(extra.name, TensorProto.FLOAT, None))
    graph = helper.make_graph(g.nodes, f"fuzz_{seed}", g.inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    _output_types(model)
    return FuzzCase(seed, model, list(g.blocks), g.exact, g.near, list(g.input_specs), g.vocab)


def _output_types(model: Any) -> None:
    """Give every graph output the type ONNX shape inference finds (the checker wants one)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - check() reports the invalid graph
        return
    known = {v.name: v for v in list(inferred.value_info) + list(inferred.output)}
    for output in model.graph.output:
        value = known.get(output.name)
        if value is not None and value.type.tensor_type.HasField("shape"):
            output.CopyFrom(value)


# --------------------------------------------------------------------------- checking


@dataclass
class FuzzOutcome:
    """The verdict on one graph: ``status`` is pass / error / mismatch / crash / invalid."""

    seed: int
    status: str
    blocks: list[str]
    kind: str = ""  # the error's class and first words, for counting
    message: str = ""
    fired: dict[str, int] = field(default_factory=dict)
    declined: Counter = field(default_factory=Counter)
    unfused: Counter = field(default_factory=Counter)
    diagnosis: str = ""
    seconds: float = 0.0
    judged: bool = False  # passed by the float64 judge (see `check`)

    @property
    def bad(self) -> bool:
        """A silent numeric change, a crash or an invalid graph: what the fuzzer hunts."""
        return self.status in ("mismatch", "crash", "invalid")

    @property
    def repro(self) -> str:
        return f"python -m fxsurgeon fuzz --seed {self.seed} --count 1"


def _feeds(case: FuzzCase, batch: int, seq: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feeds = {}
    for name, dims, dtype in case.inputs:
        shape = tuple(batch if d == "N" else seq if d == "S" else int(d) for d in dims)
        if name == "ids":
            feeds[name] = rng.integers(0, case.vocab, shape).astype(np.int64)
        elif name == "attention_mask":
            lengths = rng.integers(1, shape[1] + 1, shape[0])
            feeds[name] = (np.arange(shape[1])[None, :] < lengths[:, None]).astype(_F32)
        else:
            feeds[name] = rng.standard_normal(shape).astype(dtype)
    return feeds


#: block family -> the rules whose matches count one per block of that family
_FAMILY_RULES = {
    "linear": ("linear_matmul", "linear_gemm"),  # one per Dense; bias/tensordot come along
    "layer_norm": ("layer_norm_",),
    "rms_norm": ("rms_norm_",),
    "gelu_tanh": ("gelu_tanh_",),
    "gelu_erf": ("gelu_erf_",),
    "sdpa": ("sdpa_",),
    "reshape_noop": ("reshape_noop",),
    "permute": ("permute_",),
}


def _family_counts(fired: dict[str, int]) -> Counter:
    """Rule matches by the family names the blocks use."""
    out: Counter = Counter()
    for rule, n in fired.items():
        for family, prefixes in _FAMILY_RULES.items():
            if rule.startswith(prefixes):
                out[family] += n
    return out


def check(
    case: FuzzCase,
    *,
    patterns: Sequence[str] | None = None,
    diagnose: bool = True,
) -> FuzzOutcome:
    """Optimize the case's graph and compare it with onnxruntime at `CHECK_SIZES`."""
    import onnx
    import onnxruntime as ort

    from .errors import FxSurgeonError
    from .optimize import optimize, report_of
    from .frontdoor import from_onnx
    from .verify import verify

    start = time.perf_counter()
    outcome = FuzzOutcome(case.seed, "pass", list(case.blocks))
    try:
        onnx.checker.check_model(case.model, full_check=True)
        session = ort.InferenceSession(
            case.model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        rng = np.random.default_rng([case.seed, 7])
        feeds = [_feeds(case, batch, seq, rng) for batch, seq in CHECK_SIZES]
        output_names = [o.name for o in session.get_outputs()]
        expected = [dict(zip(output_names, session.run(None, f), strict=True)) for f in feeds]
    except Exception as exc:  # noqa: BLE001 - any rejection of the graph is the generator's fault
        outcome.status, outcome.kind = "invalid", type(exc).__name__
        outcome.message = f"the generated graph is not valid ONNX: {type(exc).__name__}: {exc}"
        outcome.seconds = time.perf_counter() - start
        return outcome
    converted = None
    try:
        converted = from_onnx(case.model)
        optimized = optimize(converted, patterns=patterns)
        outcome.fired = dict(report_of(optimized).matches)
        report = verify(optimized, expected, inputs=feeds, scale_atol=True)
    except FxSurgeonError as exc:
        outcome.status, outcome.kind = "error", _error_kind(exc)
        outcome.message = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - anything else is a bug to report
        outcome.status, outcome.kind = "crash", type(exc).__name__
        outcome.message = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
    else:
        problems = [r.message for r in report.results if not r.passed]
        problems += [
            f"output {r.output!r}: dtype {r.dtype}, onnxruntime gives {r.ref_dtype}"
            for r in report.results
            if r.passed and r.dtype != r.ref_dtype
        ]
        shapes_ok = all(r.shape == r.ref_shape and r.dtype == r.ref_dtype for r in report.results)
        if problems and shapes_ok and _float64_judge(case, optimized, feeds, expected):
            outcome.judged = True
            problems = []
        if problems:
            outcome.status, outcome.kind = "mismatch", "mismatch"
            outcome.message = "; ".join(problems[:3])
            if diagnose and converted is not None:
                outcome.diagnosis = _diagnose(converted, case, feeds, expected, patterns)
    fired = _family_counts(outcome.fired)
    if outcome.status != "pass":  # nothing was fused or declined: optimize did not finish
        outcome.seconds = time.perf_counter() - start
        return outcome
    for family, n in case.near.items():
        left = max(0, case.exact[family] + n - fired[family])
        outcome.declined[family] += min(n, left)
    for family, n in case.exact.items():
        if family in ("linear", "layer_norm", "rms_norm", "gelu_tanh", "gelu_erf", "sdpa"):
            outcome.unfused[family] += max(0, n - fired[family])
    outcome.seconds = time.perf_counter() - start
    return outcome


#: A float32 result passes the float64 judge when its max error against the float64
#: truth is at most the fp32 tolerance plus this many times onnxruntime's own error.
JUDGE_FACTOR = 4.0


def _float64_judge(case: FuzzCase, optimized: Any, feeds: list, expected: list) -> bool:
    """True when the optimized model is about as close to exact arithmetic as onnxruntime.

    Some graphs amplify float32 rounding (a norm over values that nearly cancel,
    LogSoftmax then LayerNorm): two correct float32 implementations then differ
    by more than 1e-5 x scale. The graph is run once more in float64 (onnx's
    reference evaluator on a float64 copy) as the truth; the model passes when,
    for every output, ``max |model - truth| <= tol + JUDGE_FACTOR * max |ort - truth|``.
    A real change of the numbers (a wrong constant, a dropped term) is orders of
    magnitude over onnxruntime's own error and still fails.
    """
    import torch
    from onnx.reference import ReferenceEvaluator

    try:
        evaluator = ReferenceEvaluator(_float64_model(case.model))
        names = [o.name for o in case.model.graph.output]
        order = [name for name, _, _ in case.inputs]
        for feed, ort_out in zip(feeds, expected, strict=True):
            wide = {k: v.astype(np.float64) if v.dtype == _F32 else v for k, v in feed.items()}
            truth = dict(zip(names, evaluator.run(None, wide), strict=True))
            with torch.no_grad():
                got = optimized(*(torch.from_numpy(feed[n]) for n in order))
            got = list(got) if isinstance(got, (list, tuple)) else [got]
            for name, value in zip(names, got, strict=True):
                ref, exact = ort_out[name].astype(np.float64), truth[name].astype(np.float64)
                mine = value.detach().numpy().astype(np.float64)
                finite = np.abs(ref[np.isfinite(ref)])
                tol = 1e-5 * max(1.0, float(finite.max()) if finite.size else 1.0)
                if _max_error(mine, exact) > tol + JUDGE_FACTOR * _max_error(ref, exact):
                    return False
    except Exception:  # noqa: BLE001 - no judgement: the mismatch stands
        return False
    return True


def _max_error(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return math.inf
    with np.errstate(invalid="ignore"):
        diff = np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, np.abs(a - b))
    return float(np.nan_to_num(diff, nan=math.inf).max()) if diff.size else 0.0


def _float64_model(model: Any) -> Any:
    """A copy of the fuzz graph computing in float64 (initializers, inputs, outputs, Casts)."""
    import onnx
    from onnx import TensorProto, numpy_helper

    wide = onnx.ModelProto()
    wide.CopyFrom(model)
    graph = wide.graph
    for i, tensor in enumerate(graph.initializer):
        if tensor.data_type == TensorProto.FLOAT:
            value = numpy_helper.to_array(tensor).astype(np.float64)
            graph.initializer[i].CopyFrom(numpy_helper.from_array(value, tensor.name))
    for value in list(graph.input) + list(graph.output):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.DOUBLE
    del graph.value_info[:]
    for node in graph.node:
        for attribute in node.attribute:
            if (
                node.op_type == "Cast"
                and attribute.name == "to"
                and attribute.i == TensorProto.FLOAT
            ):
                attribute.i = TensorProto.DOUBLE
    return wide


def _error_kind(exc: BaseException) -> str:
    """The error's class and the first words of its reason (node names left out), for counting."""
    first = str(exc).split("\n")[0]
    if "while lowering" in first:  # "while lowering %node = ...: reason"
        first = first.rsplit(": ", 1)[-1]
    elif "failed at node" in first:  # "...failed at node %n = ...(...): RuntimeError: reason"
        first = "running the model failed: " + first.rsplit("): ", 1)[-1]
    words = " ".join(first.split()[:10])
    return f"{type(exc).__name__}: {words}"


def _diagnose(converted: Any, case: FuzzCase, feeds: list, expected: list, patterns: Any) -> str:
    """Which rewrite (or the lowering) broke the graph, by `fxsurgeon.bisect` against onnxruntime."""
    from .bisect import bisect

    try:
        result = bisect(converted, expected, inputs=feeds, patterns=patterns)
    except Exception as exc:  # noqa: BLE001 - the diagnosis must not hide the finding
        return f"bisect failed: {type(exc).__name__}: {exc}"
    text = result.message
    if result.rewrite is not None:
        text += "\n" + result.rewrite.describe()
    return text


# --------------------------------------------------------------------------- running


@dataclass
class FuzzSummary:
    """Counts over a fuzz run; ``bad`` holds the outcomes that are bugs."""

    outcomes: list[FuzzOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def bad(self) -> list[FuzzOutcome]:
        return [o for o in self.outcomes if o.bad]

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def table(self) -> str:
        n = len(self.outcomes)
        seeds = f"seeds {self.outcomes[0].seed}..{self.outcomes[-1].seed}" if n else "no seeds"
        lines = [f"fxsurgeon fuzz: {n} graphs ({seeds}) in {self.seconds:.1f} s"]
        fired: Counter = Counter()
        declined: Counter = Counter()
        unfused: Counter = Counter()
        blocks: Counter = Counter()
        for o in self.outcomes:
            fired.update(o.fired)
            declined.update(o.declined)
            unfused.update(o.unfused)
            blocks.update(b.split(".")[0].split("~")[0] for b in o.blocks)
        judged = sum(1 for o in self.outcomes if o.judged)
        lines.append(
            f"  passed                      {self.count('pass')}"
            + (f" ({judged} by the float64 judge)" if judged else "")
        )
        lines.append(f"  clear errors (FxSurgeonError) {self.count('error')}")
        kinds = Counter(o.kind for o in self.outcomes if o.status == "error")
        lines += [f"      {k}  x{v}" for k, v in kinds.most_common()]
        lines.append(f"  silent numeric changes      {self.count('mismatch')}")
        lines.append(f"  crashes                     {self.count('crash')}")
        lines.append(f"  invalid graphs (fuzzer bug) {self.count('invalid')}")
        near = sum(len([b for b in o.blocks if "~" in b]) for o in self.outcomes)
        lines.append(
            f"  near misses {near}, declined (rule did not fire) ~{sum(declined.values())}: "
            + ", ".join(f"{k}={v}" for k, v in sorted(declined.items()))
        )
        lines.append(
            "  exact forms left unfused: "
            + (", ".join(f"{k}={v}" for k, v in sorted(unfused.items()) if v) or "none")
        )
        lines.append("  blocks: " + ", ".join(f"{k}={v}" for k, v in sorted(blocks.items())))
        lines.append("  rules fired: " + ", ".join(f"{k}={v}" for k, v in sorted(fired.items())))
        for o in self.bad:
            lines.append(
                f"  {o.status.upper()} seed {o.seed} {o.blocks}: {o.message.splitlines()[0] if o.message else ''}"
            )
            lines.append(f"      reproduce: {o.repro}")
        return "\n".join(lines)


def fuzz(
    seeds: Iterable[int],
    *,
    patterns: Sequence[str] | None = None,
    diagnose: bool = True,
    progress: Callable[[FuzzOutcome], None] | None = None,
) -> FuzzSummary:
    """Generate and check the graph of every seed."""
    import warnings

    summary = FuzzSummary()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in seeds:
            try:
                case = generate(seed)
            except Exception as exc:  # noqa: BLE001 - a generator bug, reported like the rest
                outcome = FuzzOutcome(seed, "invalid", [], type(exc).__name__)
                outcome.message = f"generate({seed}) failed: {traceback.format_exc(limit=4)}"
            else:
                outcome = check(case, patterns=patterns, diagnose=diagnose)
            summary.outcomes.append(outcome)
            if progress is not None:
                progress(outcome)
    summary.seconds = time.perf_counter() - start
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fxsurgeon fuzz`` (for the ``fxsurgeon`` command line's subparser)."""
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--count", type=int, default=200, help="how many graphs (default 200)")
    parser.add_argument("--save", metavar="DIR", help="write the ONNX of every bad graph here")
    parser.add_argument(
        "--patterns", action="append", default=[], metavar="FILE", help="user pattern file"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per graph")


def add_parser(commands: Any) -> None:
    """Register ``fuzz`` on the ``fxsurgeon`` command line's subparsers (fxsurgeon/cli.py)."""
    parser = commands.add_parser(
        "fuzz",
        help="differential fuzzer: random tf2onnx-style graphs, optimized, vs onnxruntime",
        description=DESCRIPTION,
    )
    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """The handler of ``fxsurgeon fuzz`` (the Namespace `add_parser`'s options make)."""
    return fuzz_command(args)


DESCRIPTION = (
    "Random tf2onnx-style ONNX graphs (near misses of every built-in pattern included), "
    "optimized and compared with onnxruntime at two batch sizes. Exit status 1 when a graph "
    "changed its numbers silently, crashed, or was invalid."
)


def fuzz_command(argv: Sequence[str] | argparse.Namespace | None = None) -> int:
    """``fxsurgeon fuzz [--seed N] [--count K] [--save DIR] [-v]``: 0 when no graph is bad.

    ``argv`` is the command line after ``fuzz`` (or the Namespace the ``fxsurgeon``
    parser made with `add_parser`).
    """
    if isinstance(argv, argparse.Namespace):
        args = argv
    else:
        parser = argparse.ArgumentParser(prog="fxsurgeon fuzz", description=DESCRIPTION)
        add_arguments(parser)
        args = parser.parse_args(list(argv) if argv is not None else None)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def progress(o: FuzzOutcome) -> None:
        if args.verbose or o.bad or args.count == 1:
            print(f"seed {o.seed}: {o.status} {o.kind} {o.blocks} ({o.seconds:.2f} s)")
            if o.bad or args.count == 1:
                if o.message:
                    print("    " + o.message.replace("\n", "\n    "))
                if o.diagnosis:
                    print("    " + o.diagnosis.replace("\n", "\n    "))
                print(f"    reproduce: {o.repro}")
            sys.stdout.flush()

    seeds = range(args.seed, args.seed + args.count)
    summary = fuzz(seeds, patterns=args.patterns or None, progress=progress)
    if args.save:
        folder = Path(args.save)
        folder.mkdir(parents=True, exist_ok=True)
        import onnx

        for o in summary.bad:
            onnx.save(generate(o.seed).model, str(folder / f"fuzz_{o.seed}.onnx"))
    print(summary.table())
    return 1 if summary.bad else 0


if __name__ == "__main__":
    raise SystemExit(fuzz_command())
