"""Sizes that depend on the data: NonZero by the spec, and a Squeeze of such a size.

TF's ``tf.boolean_mask`` (TFBartForSequenceClassification's sentence vector, the state at
each row's last <eos>) exports as NonZero -> Transpose -> Squeeze -> Gather -> Reshape to
(batch, -1, d) -> Slice [:, -1:] -> Squeeze. Checked against onnxruntime, eager and compiled.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from onnx_cases import (
    assert_lowered,
    assert_matches_ort,
    assert_module_matches_ort,
    init,
    make_model,
    run_ort,
    tensor_info,
)

F32, I64 = np.float32, np.int64
rng = np.random.default_rng(5)
EOS = 2


def test_non_zero_is_the_spec_layout_rank_by_count():
    """[rank, N] int64 (onnx2torch's module returns [N, rank]); lowered, and compiled in one
    graph (torch.compile captures the data-dependent count)."""
    model = make_model(
        [helper.make_node("NonZero", ["x"], ["y"])],
        [tensor_info("x", F32, ["N", 5])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
    )
    for n in (3, 4):
        x = (rng.random((n, 5)) < 0.4).astype(F32) * rnd(n, 5)
        optimized = assert_matches_ort(model, [x])
    assert_lowered(optimized)
    compiled = torch.compile(optimized, fullgraph=True, backend="eager")
    assert_module_matches_ort(compiled, model, [x])


def rnd(*shape):
    return rng.standard_normal(shape).astype(F32)


def eos_vector_model():
    """h[b, last eos of row b, :] the way tf2onnx writes TF BART's boolean_mask + [:, -1]."""
    nodes = [
        helper.make_node("Equal", ["ids", "eos"], ["is_eos"]),
        helper.make_node("Reshape", ["is_eos", "flat"], ["mask"]),
        helper.make_node("NonZero", ["mask"], ["where"]),
        helper.make_node("Transpose", ["where"], ["where_t"], perm=[1, 0]),
        helper.make_node("Squeeze", ["where_t", "axis1"], ["picks"]),
        helper.make_node("Reshape", ["h", "rows"], ["h_rows"]),
        helper.make_node("Gather", ["h_rows", "picks"], ["kept"], axis=0),
        helper.make_node("Shape", ["ids"], ["ids_shape"]),
        helper.make_node("Slice", ["ids_shape", "zero", "one"], ["batch"]),
        helper.make_node("Concat", ["batch", "minus_one", "width"], ["target"], axis=0),
        helper.make_node("Reshape", ["kept", "target"], ["per_row"]),
        helper.make_node("Slice", ["per_row", "minus_one", "big", "one"], ["last"]),
        helper.make_node("Squeeze", ["last", "axis1"], ["y"]),
    ]
    inits = [
        init("eos", np.array(EOS, I64)),
        init("flat", np.array([-1], I64)),
        init("axis1", np.array([1], I64)),
        init("rows", np.array([-1, 4], I64)),
        init("zero", np.array([0], I64)),
        init("one", np.array([1], I64)),
        init("minus_one", np.array([-1], I64)),
        init("width", np.array([4], I64)),
        init("big", np.array([2**62], I64)),
    ]
    return make_model(
        nodes,
        [tensor_info("ids", I64, ["B", "S"]), tensor_info("h", F32, ["B", "S", 4])],
        [tensor_info("y", F32, None)],
        inits,
    )


def eos_ids(batch: int, length: int, per_row: int = 2) -> np.ndarray:
    ids = rng.integers(3, 50, (batch, length)).astype(I64)
    for row in ids:
        row[rng.choice(length, per_row, replace=False)] = EOS
    return ids


def test_the_eos_vector_is_right_eager_and_compiled():
    """The last Squeeze's dim is a size of the data: inductor kept it for torch.squeeze
    ((batch, 1, d) out, silently). Now it is asserted 1 and dropped by a reshape: the same
    shape and values as onnxruntime, eager and compiled by inductor."""
    model = eos_vector_model()
    cases = [[eos_ids(b, s), rnd(b, s, 4)] for b, s in ((3, 6), (2, 9))]
    optimized = assert_matches_ort(model, cases[0])
    assert_module_matches_ort(optimized, model, cases[1])
    assert_lowered(optimized)
    torch._dynamo.reset()
    try:
        compiled = torch.compile(optimized, fullgraph=True, backend="inductor")
        for case in cases:
            assert_module_matches_ort(compiled, model, case)
    finally:
        torch._dynamo.reset()


def test_a_row_without_eos_is_an_error_as_in_onnxruntime():
    """No <eos> at all: the slice is empty and ONNX's Squeeze of a 0-size dim fails in
    onnxruntime; the lowering's assert fails, naming the node, instead of a wrong shape."""
    model = eos_vector_model()
    optimized = assert_matches_ort(model, [eos_ids(2, 5), rnd(2, 5, 4)])
    ids = rng.integers(3, 50, (2, 5)).astype(I64)
    h = rnd(2, 5, 4)
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime's own error type
        run_ort(model, [ids, h])
    with pytest.raises(RuntimeError, match="Squeeze of dim 1, whose size depends on the data"):
        optimized(torch.from_numpy(ids), torch.from_numpy(h))
