"""Permutes sunk below elementwise ops (fxsurgeon/fuse/sink.py): a GELU that tf2onnx's
transpose optimiser split with one Transpose per branch (Whisper's encoder convolutions)
fuses, the result equal to onnxruntime's; other permutations are left where they are."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import helper
from onnx_cases import init, make_model, run_ort, tensor_info
from torch import fx

import fxsurgeon
from fxsurgeon.fuse.sink import sink_permutes
from fxsurgeon.tensorflow import from_onnx

F32 = np.float32


def split_gelu(perm_a=(0, 2, 1), perm_b=(0, 2, 1), extra_user=False):
    """y = Transpose(0.5 x) * (1 - Erf(Transpose(-x * 0.70710677))), x [B, C, T]."""
    nodes = [
        helper.make_node("Mul", ["x", "half"], ["h"]),
        helper.make_node("Transpose", ["h"], ["th"], perm=list(perm_a)),
        helper.make_node("Neg", ["x"], ["n"]),
        helper.make_node("Mul", ["n", "inv_sqrt2"], ["s"]),
        helper.make_node("Transpose", ["s"], ["ts"], perm=list(perm_b)),
        helper.make_node("Erf", ["ts"], ["e"]),
        helper.make_node("Sub", ["one", "e"], ["c"]),
        helper.make_node("Mul", ["th", "c"], ["y"]),
    ]
    outputs = [tensor_info("y", F32, None)]
    if extra_user:  # the permuted half read elsewhere too
        nodes.append(helper.make_node("Add", ["th", "th"], ["z"]))
        outputs.append(tensor_info("z", F32, None))
    inits = [
        init("half", np.array(0.5, F32)),
        init("inv_sqrt2", np.array(0.70710677, F32)),
        init("one", np.array(1.0, F32)),
    ]
    shape = ["B", 4, "T"] if perm_a == perm_b else ["B", 4, 4]  # T == C: both layouts meet
    return make_model(nodes, [tensor_info("x", F32, shape)], outputs, inits)


def optimized_and_checked(model, sizes=((2, 5), (3, 7))):
    optimized = fxsurgeon.optimize(from_onnx(model))
    rng = np.random.default_rng(0)
    for b, t in sizes:
        x = rng.standard_normal((b, 4, t)).astype(F32)
        with torch.no_grad():
            got = optimized(torch.from_numpy(x))
        got = got if isinstance(got, (list, tuple)) else [got]
        for g, w in zip(got, run_ort(model, [x]), strict=True):
            np.testing.assert_allclose(g.numpy(), w, rtol=0, atol=1e-6)
    return optimized


def gelus(gm) -> int:
    return sum(1 for n in gm.graph.nodes if n.target is F.gelu)


def test_a_gelu_split_by_two_equal_permutes_fuses():
    optimized = optimized_and_checked(split_gelu())
    assert gelus(optimized) == 1
    assert sum(1 for n in optimized.graph.nodes if n.target is torch.permute) == 1


@pytest.mark.parametrize(
    "form", [dict(perm_b=(0, 1, 2)), dict(extra_user=True)], ids=["other_perm", "shared"]
)
def test_permutes_that_differ_or_are_read_elsewhere_stay(form):
    sizes = ((2, 4), (3, 4)) if "perm_b" in form else ((2, 5), (3, 7))
    assert gelus(optimized_and_checked(split_gelu(**form), sizes)) == 0


def test_sinking_keeps_values_and_numbers_in_place():
    def f(x, y):
        a = torch.permute(x, (1, 0))
        b = torch.permute(y, (1, 0))
        return torch.exp(2.0 - a) * b

    gm = fx.symbolic_trace(f)
    x, y = torch.randn(3, 4), torch.randn(3, 4)
    want = f(x, y)
    assert sink_permutes(gm) == 3  # sub, exp, mul
    assert [n.target for n in gm.graph.nodes if n.op == "call_function"][-1] is torch.permute
    assert torch.equal(gm(x, y), want)
