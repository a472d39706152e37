"""A Concat of two inputs (pix2pix's discriminator on the input image and its target) needs
every dim but the joined one equal, which only the Concat states. When the hints of the two
inputs differ there (one input's sides were scaled to multiples of 16 by a U-Net path), the
analysis refused the Concat and kept it as an onnx2torch module. `needs_equal` gives
`broadcast_hints` the operands of a ``torch.cat`` one by one, each with its joined dim as 1
(never paired), so the analysis restarts with hints that make the other dims equal; the joined
dim keeps its hint (the operands may differ there)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper

from fxsurgeon.shapes.relations import needs_equal
from fxsurgeon.shapes.symbolic import HintTooSmall, InputSignature, SymbolicShapes
from tests.onnx_cases import (
    assert_lowered,
    assert_module_matches_ort,
    make_model,
    optimize_onnx,
    tensor_info,
)

F32 = np.float32


def _shapes(hints_a, hints_b):
    dims = (None, 3, None, None)
    return SymbolicShapes(
        [
            InputSignature("a", torch.float32, dims, hints_a),
            InputSignature("b", torch.float32, dims, hints_b),
        ]
    )


def _cat_request(shapes: SymbolicShapes, dim: int) -> dict:
    a, b = shapes.fake_inputs
    with pytest.raises(HintTooSmall) as info:
        shapes.run(torch.cat, ([a, b],), {"dim": dim}, "concat", "cat")
    return info.value.hints


def test_cat_hints_make_the_other_dims_equal():
    # joined on H: W must agree (b's W raised to a's), H may differ and keeps its hint
    hints = _cat_request(_shapes((2, 3, 10, 10), (2, 3, 5, 5)), dim=2)
    assert hints == {("b", 3): 10}


def test_cat_never_pairs_the_joined_dim():
    # joined on W, H agrees: the differing W hints are no contradiction, nothing restarts
    shapes = _shapes((2, 3, 5, 10), (2, 3, 5, 4))
    a, b = shapes.fake_inputs
    out = shapes.run(torch.cat, ([a, b],), {"dim": 3}, "concat", "cat")
    assert shapes.env.size_hint(out.shape[3].node.expr) == 14
    # and needs_equal hides the joined dim (negative dims too); other calls keep their args
    x, y = torch.zeros(2, 3, 4), torch.zeros(2, 5, 4)
    assert needs_equal(torch.cat, ([x, y],), {"dim": -2}) == [(2, 1, 4), (2, 1, 4)]
    assert needs_equal(torch.cat, ([x, y], 1), {}) == [(2, 1, 4), (2, 1, 4)]
    assert needs_equal(torch.stack, ([x, x],), {}) == [x, x]
    assert needs_equal(torch.add, (x, y), {"alpha": 2}) == [x, y, 2]


def test_cat_of_static_sizes_that_differ_is_left_to_the_op():
    # C differs as constants (3 vs 4) on a non-joined dim: no hints fix it; the op's error stands
    shapes = SymbolicShapes(
        [
            InputSignature("a", torch.float32, (None, 3, None), (2, 3, 5)),
            InputSignature("b", torch.float32, (None, 4, None), (2, 4, 5)),
        ]
    )
    a, b = shapes.fake_inputs
    with pytest.raises(RuntimeError):
        shapes.run(torch.cat, ([a, b],), {"dim": 2}, "concat", "cat")


def test_concat_of_inputs_after_a_multiple_of_4_lowers():
    """a [N, 3, H, W] -> SpaceToDepth(4) (sides multiples of 4: hints scaled) -> DepthToSpace
    back; Concat([a', b], channels) with b [N, 2, H2, W2]: H2 = H and W2 = W by contract."""
    nodes = [
        helper.make_node("SpaceToDepth", ["a"], ["s"], blocksize=4),
        helper.make_node("DepthToSpace", ["s"], ["d"], blocksize=4, mode="DCR"),
        helper.make_node("Concat", ["d", "b"], ["y"], axis=1),
    ]
    model = make_model(
        nodes,
        [tensor_info("a", F32, ["N", 3, "H", "W"]), tensor_info("b", F32, ["N", 2, "H2", "W2"])],
        [tensor_info("y", F32, None)],
    )
    optimized = optimize_onnx(model)
    assert_lowered(optimized)
    rng = np.random.default_rng(0)
    for side in (8, 12):
        feeds = [
            rng.standard_normal((2, 3, side, side + 4)).astype(F32),
            rng.standard_normal((2, 2, side, side + 4)).astype(F32),
        ]
        assert_module_matches_ort(optimized, model, feeds, atol=0)
