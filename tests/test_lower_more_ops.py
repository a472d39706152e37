"""ArgMax/ArgMin, GatherElements, GatherND (onnx2torch's module), DepthToSpace, IsInf, PReLU,
LayerNormalization, InstanceNormalization and LRN lowered to plain torch, against onnxruntime:
several attribute combinations, dynamic dims run at two sizes, nothing of onnx2torch or of
fxsurgeon's converters left; learned scales and slopes end up nn.Parameters; what cannot be
expressed is refused naming the node and op (or kept, with the reason); RoiAlign is kept;
one graph per lowering through model.py (codegen) and back."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from onnx_cases import (
    assert_lowered,
    assert_module_matches_ort,
    init,
    make_model,
    run_ort,
    tensor_info,
)
from test_codegen_control_flow import check_everywhere
from torch import nn

import fxsurgeon
from fxsurgeon.errors import InputError
from fxsurgeon.lower.coverage import coverage_rows
from fxsurgeon.pipeline import report_of
from fxsurgeon.tensorflow import from_onnx

F32, I64 = np.float32, np.int64
rng = np.random.default_rng(23)


def rnd(*shape):
    return rng.standard_normal(shape).astype(F32)


def check(model: onnx.ModelProto, cases: list[list[np.ndarray]], atol: float = 1e-5):
    """Optimize once; nothing kept; every case (shapes the optimize did not see) equals ORT."""
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)
    for inputs in cases:
        assert_module_matches_ort(optimized, model, inputs, atol)
    return optimized


def unchecked_model(nodes, inputs, outputs, initializers=(), opset=17) -> onnx.ModelProto:
    """A model the ONNX checker would refuse (an invalid attribute), to see the refusal."""
    graph = helper.make_graph(list(nodes), "case", list(inputs), list(outputs), list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def one_op(op, inputs, out_elem=TensorProto.FLOAT, initializers=(), opset=17, **attrs):
    names = [i.name for i in inputs] + [t.name for t in initializers]
    node = helper.make_node(op, names, ["y"], name=f"{op.lower()}_0", **attrs)
    out = helper.make_tensor_value_info("y", out_elem, None)
    return make_model([node], inputs, [out], initializers, opset=opset)


def parameters_equal_to(module: nn.Module, value: np.ndarray) -> list[nn.Parameter]:
    flat = torch.from_numpy(value).reshape(-1)
    return [
        p
        for p in module.parameters()
        if p.numel() == flat.numel() and torch.equal(p.detach().reshape(-1), flat)
    ]


# -- ArgMax / ArgMin -------------------------------------------------------------------------


def ties(*shape):
    return rng.integers(0, 3, shape).astype(F32)  # many equal extrema: the index rule shows


@pytest.mark.parametrize("select_last", [0, 1])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
def test_arg_extremum_matches_onnxruntime(op, axis, keepdims, select_last):
    x = tensor_info("x", F32, ["N", 4, "W"])
    model = one_op(
        op, [x], TensorProto.INT64, axis=axis, keepdims=keepdims, select_last_index=select_last
    )
    check(model, [[ties(2, 4, 5)], [ties(3, 4, 2)]])


@pytest.mark.parametrize("keepdims", [0, 1])
def test_arg_extremum_of_opset_11_matches_onnxruntime(keepdims):
    x = tensor_info("x", F32, ["N", 6])
    model = one_op("ArgMax", [x], TensorProto.INT64, opset=11, axis=1, keepdims=keepdims)
    optimized = check(model, [[ties(3, 6)], [ties(5, 6)]])
    assert "OnnxArgExtremumOld" in report_of(optimized).lowered


def test_arg_extremum_with_an_axis_out_of_range_is_kept_with_the_reason():
    x = tensor_info("x", F32, [2, 3])
    node = helper.make_node("ArgMax", ["x"], ["y"], name="argmax_0", axis=4)
    model = unchecked_model(
        [node], [x], [helper.make_tensor_value_info("y", TensorProto.INT64, [2])]
    )
    optimized = fxsurgeon.optimize(from_onnx(model))
    (reason,) = report_of(optimized).unconverted["OnnxArgExtremum"]
    assert "axis 4 out of range for a 2-D input" in reason


# -- GatherElements --------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_gather_elements_counts_negative_indices_from_the_end(axis):
    data = tensor_info("data", F32, ["N", 4, 5])
    index_shape: list = ["N", 4, 5]
    index_shape[axis] = 3 if axis not in (0,) else "M"
    indices = tensor_info("indices", I64, index_shape)
    model = one_op("GatherElements", [data, indices], axis=axis)

    def case(n, m=2):
        sizes = [n, 4, 5]
        length = sizes[axis]
        shape = list(sizes)
        shape[axis] = m if axis == 0 else 3
        return [rnd(*sizes), rng.integers(-length, length, shape).astype(I64)]

    check(model, [case(2), case(3, 5)])


def test_gather_elements_with_constant_indices_matches_onnxruntime():
    data = tensor_info("data", F32, ["N", 6])
    table = init("indices", np.array([[-1, 0, 5], [-6, 2, -3]], dtype=I64))
    model = one_op("GatherElements", [data], initializers=[table], axis=1)
    check(model, [[rnd(2, 6)]])


def test_gather_elements_out_of_range_raises_not_wraps():
    data = tensor_info("data", F32, ["N", 4])
    indices = tensor_info("indices", I64, ["N", 2])
    model = one_op("GatherElements", [data, indices], axis=1)
    optimized = fxsurgeon.optimize(from_onnx(model))
    bad = torch.tensor([[0, 4], [1, 2]])
    with pytest.raises(RuntimeError, match="out of bounds"):
        optimized(torch.from_numpy(rnd(2, 4)), bad)


# -- GatherND (onnx2torch's OnnxGatherND) ----------------------------------------------------


def with_onnx2torch_gather_nd(converted):
    """fxsurgeon's converter replaces onnx2torch's GatherND: put onnx2torch's module back."""
    from onnx2torch.node_converters.gather import OnnxGatherND

    from fxsurgeon.frontdoor.converters.nd_index import OnnxGatherNDSpec

    swapped = 0
    for name, module in list(converted.named_children()):
        if isinstance(module, OnnxGatherNDSpec):
            new = OnnxGatherND(batch_dims=module.batch_dims)
            new.onnx_mapping = getattr(module, "onnx_mapping", None)
            setattr(converted, name, new)
            swapped += 1
    assert swapped == 1
    return converted


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_onnx2torch_gather_nd_is_lowered(depth):
    data = tensor_info("data", F32, [3, 4, 5])
    indices = tensor_info("indices", I64, ["Q", depth])
    model = one_op("GatherND", [data, indices], opset=13)
    converted = with_onnx2torch_gather_nd(from_onnx(model))
    optimized = fxsurgeon.optimize(converted)
    assert report_of(optimized).lowered.get("OnnxGatherND") == 1
    assert_lowered(optimized)
    for q in (2, 6):
        idx = np.stack([rng.integers(-s, s, q) for s in (3, 4, 5)[:depth]], axis=-1)
        assert_module_matches_ort(optimized, model, [rnd(3, 4, 5), idx.astype(I64)])


def test_gather_nd_with_a_dynamic_index_depth_is_kept_with_the_reason():
    data = tensor_info("data", F32, [3, 4])
    indices = tensor_info("indices", I64, ["Q", "K"])
    node = helper.make_node("GatherND", ["data", "indices"], ["y"], name="gnd")
    model = unchecked_model([node], [data, indices], [tensor_info("y", F32, ["Q"])], opset=13)
    optimized = fxsurgeon.optimize(with_onnx2torch_gather_nd(from_onnx(model)))
    (reason,) = report_of(optimized).unconverted["OnnxGatherND"]
    assert "index depth" in reason and "static" in reason


# -- DepthToSpace ----------------------------------------------------------------------------


@pytest.mark.parametrize("blocksize", [2, 3])
@pytest.mark.parametrize("mode", ["DCR", "CRD", None])
def test_depth_to_space_matches_onnxruntime(mode, blocksize):
    channels = 2 * blocksize * blocksize
    x = tensor_info("x", F32, ["N", channels, "H", "W"])
    attrs = {"blocksize": blocksize} if mode is None else {"blocksize": blocksize, "mode": mode}
    model = one_op("DepthToSpace", [x], opset=13, **attrs)
    check(model, [[rnd(2, channels, 3, 4)], [rnd(1, channels, 5, 2)]], atol=0)


def test_depth_to_space_of_opset_1_is_dcr():
    x = tensor_info("x", F32, [1, 8, 2, 3])
    check(one_op("DepthToSpace", [x], opset=11, blocksize=2), [[rnd(1, 8, 2, 3)]], atol=0)


def test_depth_to_space_with_an_unknown_mode_is_refused_naming_node_and_op():
    x = tensor_info("x", F32, [1, 8, 2, 3])
    node = helper.make_node("DepthToSpace", ["x"], ["y"], name="d2s", blocksize=2, mode="RCD")
    model = unchecked_model([node], [x], [tensor_info("y", F32, [1, 2, 4, 6])], opset=13)
    with pytest.raises(InputError, match=r"'d2s' \(op DepthToSpace\).*'RCD'"):
        from_onnx(model)


# -- IsInf -----------------------------------------------------------------------------------


@pytest.mark.parametrize("negative", [0, 1, None])
@pytest.mark.parametrize("positive", [0, 1, None])
def test_is_inf_detects_the_signs_asked_for(positive, negative):
    attrs = {}
    if positive is not None:
        attrs["detect_positive"] = positive
    if negative is not None:
        attrs["detect_negative"] = negative
    x = tensor_info("x", F32, ["N", 5])
    model = one_op("IsInf", [x], TensorProto.BOOL, **attrs)
    values = np.array([np.inf, -np.inf, np.nan, 0.0, -3.5, 1e38], dtype=F32)
    check(model, [[rng.choice(values, (2, 5))], [rng.choice(values, (7, 5))]], atol=0)


# -- PReLU -----------------------------------------------------------------------------------


SLOPES = {
    "per_channel": [3, 1, 1],
    "per_channel_4d": [1, 3, 1, 1],
    "one": [1],
    "last_dim": [5],
    "last_two": [4, 5],
    "full": [3, 4, 5],
}


@pytest.mark.parametrize("slope_shape", list(SLOPES))
def test_prelu_broadcasts_the_slope_from_the_trailing_dims(slope_shape):
    slope = rng.uniform(0.05, 0.5, SLOPES[slope_shape]).astype(F32)
    x = tensor_info("x", F32, ["N", 3, 4, 5])
    model = one_op("PRelu", [x], initializers=[init("slope", slope)])
    optimized = check(model, [[rnd(2, 3, 4, 5)], [rnd(5, 3, 4, 5)]])
    if slope.size > 1:  # one value is a formula constant for the parameters pass (dataflow.py)
        assert parameters_equal_to(optimized, slope), "the slope is not an nn.Parameter"


def test_prelu_slope_over_the_last_dim_is_not_per_channel():
    """X [N, 3, 4, 3] with a slope [3]: ONNX broadcasts it over the last dim; onnx2torch's
    module reads it per channel (dim 1) because the sizes happen to agree."""
    slope = np.array([0.1, 0.2, 0.7], dtype=F32)
    x = tensor_info("x", F32, ["N", 3, 4, 3])
    model = one_op("PRelu", [x], initializers=[init("slope", slope)])
    inputs = [rnd(2, 3, 4, 3)]
    check(model, [inputs])
    converted = from_onnx(model)
    with torch.no_grad():
        theirs = converted(torch.from_numpy(inputs[0])).numpy()
    assert not np.allclose(theirs, run_ort(model, inputs)[0])  # the onnx2torch bug


def test_prelu_with_a_run_time_slope_matches_onnxruntime():
    x = tensor_info("x", F32, ["N", 3, 4])
    slope = tensor_info("slope", F32, [3, 1])
    model = one_op("PRelu", [x, slope])
    check(model, [[rnd(2, 3, 4), rnd(3, 1)], [rnd(6, 3, 4), rnd(3, 1)]])


# -- LayerNormalization ----------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("axis", "scale_shape"), [(-1, [8]), (-2, [5, 8]), (1, [5, 8]), (-2, [8])])
@pytest.mark.parametrize("epsilon", [None, 1e-3])
def test_layer_norm_matches_onnxruntime(axis, scale_shape, bias, epsilon):
    scale = rng.uniform(0.5, 1.5, scale_shape).astype(F32)
    inits = [init("scale", scale)]
    if bias:
        inits.append(init("bias", rnd(*scale_shape)))
    attrs = {"axis": axis} | ({} if epsilon is None else {"epsilon": epsilon})
    x = tensor_info("x", F32, ["N", 5, 8])
    model = one_op("LayerNormalization", [x], initializers=inits, **attrs)
    optimized = check(model, [[rnd(2, 5, 8)], [rnd(4, 5, 8)]])
    assert parameters_equal_to(optimized, scale), "the scale is not an nn.Parameter"


def test_layer_norm_over_a_dynamic_dim_stays_symbolic():
    scale = rng.uniform(0.5, 1.5, [8]).astype(F32)
    x = tensor_info("x", F32, ["N", "T", 8])
    model = one_op("LayerNormalization", [x], initializers=[init("scale", scale)], axis=1)
    check(model, [[rnd(2, 3, 8)], [rnd(3, 7, 8)]])


def test_layer_norm_stash_type_double_matches_onnxruntime():
    x = tensor_info("x", F32, ["N", 6])
    inits = [init("scale", rnd(6)), init("bias", rnd(6))]
    model = one_op("LayerNormalization", [x], initializers=inits, stash_type=TensorProto.DOUBLE)
    optimized = check(model, [[rnd(3, 6) * 100], [rnd(5, 6)]])
    calls = [n for n in optimized.graph.nodes if n.op == "call_method" and n.target == "to"]
    assert calls[0].args[1] == torch.float64
    # back to the input's dtype, read at run time (float32 here; a .half() model's half)
    back = calls[1].args[1]
    assert back.target is getattr and back.args[1] == "dtype", back.format_node()
    assert back.args[0].op == "placeholder"


def test_layer_norm_of_half_precision_computes_in_the_stash_type():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["N", 6])
    inits = [init("scale", rnd(6).astype(np.float16)), init("bias", rnd(6).astype(np.float16))]
    model = one_op("LayerNormalization", [x], TensorProto.FLOAT16, initializers=inits)
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)
    for n in (2, 5):
        inputs = [(rnd(n, 6) * 10).astype(np.float16)]
        (want,) = run_ort(model, inputs)
        with torch.no_grad():
            got = optimized(torch.from_numpy(inputs[0])).numpy()
        assert got.dtype == np.float16
        np.testing.assert_allclose(got.astype(F32), want.astype(F32), atol=4e-3, rtol=0)


def test_layer_norm_with_a_run_time_scale_matches_onnxruntime():
    x = tensor_info("x", F32, ["N", 4])
    scale, bias = tensor_info("scale", F32, [4]), tensor_info("bias", F32, [4])
    model = one_op("LayerNormalization", [x, scale, bias])
    check(model, [[rnd(2, 4), rnd(4), rnd(4)], [rnd(5, 4), rnd(4), rnd(4)]])


@pytest.mark.parametrize("kind", ["OnnxLayerNorm", "LayerNorm"])
def test_onnx2torchs_layer_norm_modules_are_lowered(kind):
    """fxsurgeon's converter replaces onnx2torch's LayerNormalization (which drops stash_type);
    the modules onnx2torch makes are lowered all the same."""
    from onnx2torch.node_converters.layer_norm import OnnxLayerNorm

    from fxsurgeon.frontdoor.converters.spec_ops import OnnxLayerNormSpec

    scale, bias = rng.uniform(0.5, 1.5, [5, 8]).astype(F32), rnd(5, 8)
    x = tensor_info("x", F32, ["N", 5, 8])
    inits = [init("scale", scale), init("bias", bias)]
    model = one_op("LayerNormalization", [x], initializers=inits, axis=-2)
    converted = from_onnx(model)
    (node,) = [n for n in converted.graph.nodes if n.op == "call_module"]
    spec = converted.get_submodule(node.target)
    assert isinstance(spec, OnnxLayerNormSpec)
    if kind == "OnnxLayerNorm":
        new: nn.Module = OnnxLayerNorm(axis=-2, epsilon=spec.epsilon)
    else:
        new = nn.LayerNorm([5, 8], eps=spec.epsilon)
        with torch.no_grad():
            new.weight.copy_(torch.from_numpy(scale))
            new.bias.copy_(torch.from_numpy(bias))
        node.args = node.args[:1]
    setattr(converted, str(node.target), new)
    converted.recompile()
    optimized = fxsurgeon.optimize(converted)
    assert report_of(optimized).lowered.get(kind) == 1
    assert_lowered(optimized)
    for n in (2, 3):
        assert_module_matches_ort(optimized, model, [rnd(n, 5, 8)])


def test_layer_norm_with_its_mean_output_is_refused_naming_node_and_op():
    x = tensor_info("x", F32, ["N", 4])
    node = helper.make_node(
        "LayerNormalization", ["x", "scale"], ["y", "mean"], name="ln_stats", axis=-1
    )
    outs = [tensor_info("y", F32, None), tensor_info("mean", F32, None)]
    model = make_model([node], [x], outs, [init("scale", rnd(4))])
    with pytest.raises(InputError, match=r"'ln_stats' \(op LayerNormalization\).*Mean"):
        from_onnx(model)


# -- InstanceNormalization -------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [None, 1e-2])
@pytest.mark.parametrize("shape", [["N", 3, "L"], ["N", 3, "H", 4], ["N", 3, 2, "H", 3]])
def test_instance_norm_matches_onnxruntime(shape, epsilon):
    scale = rng.uniform(0.5, 1.5, [3]).astype(F32)
    inits = [init("scale", scale), init("bias", rnd(3))]
    attrs = {} if epsilon is None else {"epsilon": epsilon}
    model = one_op(
        "InstanceNormalization", [tensor_info("x", F32, shape)], initializers=inits, **attrs
    )

    def case(n, d):
        return [rnd(*[n if s == "N" else d if isinstance(s, str) else s for s in shape])]

    optimized = check(model, [case(2, 5), case(3, 2)])
    assert parameters_equal_to(optimized, scale), "the scale is not an nn.Parameter"


def test_instance_norm_of_a_2d_input_is_kept_with_the_reason():
    inits = [init("scale", rnd(3)), init("bias", rnd(3))]
    model = one_op("InstanceNormalization", [tensor_info("x", F32, [4, 3])], initializers=inits)
    optimized = fxsurgeon.optimize(from_onnx(model))
    (reason,) = report_of(optimized).unconverted["InstanceNorm1d"]
    assert "InstanceNormalization of a 2-D input" in reason and "onnxruntime refuses" in reason


def test_instance_norm_with_a_run_time_scale_matches_onnxruntime():
    names = [
        tensor_info("x", F32, ["N", 2, "L"]),
        tensor_info("s", F32, [2]),
        tensor_info("b", F32, [2]),
    ]
    model = one_op("InstanceNormalization", names)
    check(model, [[rnd(2, 2, 5), rnd(2), rnd(2)], [rnd(1, 2, 3), rnd(2), rnd(2)]])


# -- LRN -------------------------------------------------------------------------------------


def lrn_by_the_spec(x: np.ndarray, size: int, alpha=1e-4, beta=0.75, bias=1.0) -> np.ndarray:
    """LRN as https://onnx.ai/onnx/operators/onnx__LRN.html writes it (onnxruntime has only
    odd sizes of 4-D inputs; onnx.reference's LRN loops over the batch instead of the
    channels)."""
    channels = x.shape[1]
    square_sum = np.zeros_like(x, dtype=np.float64)
    for c in range(channels):
        begin = max(0, c - (size - 1) // 2)
        end = min(channels - 1, c + -(-(size - 1) // 2))
        square_sum[:, c] = (x[:, begin : end + 1].astype(np.float64) ** 2).sum(axis=1)
    return (x / (bias + alpha / size * square_sum) ** beta).astype(x.dtype)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("attrs", [{}, {"alpha": 0.01, "beta": 0.5, "bias": 2.0}])
@pytest.mark.parametrize("shape", [["N", 7, "H", "W"], ["N", 6, "L"]])
def test_lrn_matches_the_spec(size, attrs, shape):
    model = one_op("LRN", [tensor_info("x", F32, shape)], size=size, **attrs)
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)
    for n, d in ((2, 3), (1, 5)):
        x = 3 * rnd(*[n if s == "N" else d if isinstance(s, str) else s for s in shape])
        with torch.no_grad():
            got = optimized(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, lrn_by_the_spec(x, size, **attrs), atol=1e-6, rtol=0)
        if size % 2 and len(shape) == 4:  # what onnxruntime runs
            assert_module_matches_ort(optimized, model, [x], atol=1e-6)


def test_lrn_of_an_even_size_differs_from_onnx2torchs_module():
    """onnx2torch converts LRN to nn.LocalResponseNorm, whose window is mirrored for an even
    size (channels c - size//2 .. c + (size-1)//2; the spec's c - (size-1)//2 .. c + size//2)."""
    model = one_op("LRN", [tensor_info("x", F32, ["N", 7, 3, 3])], size=4)
    x = 3 * rnd(2, 7, 3, 3)
    with torch.no_grad():
        theirs = from_onnx(model)(torch.from_numpy(x)).numpy()
        ours = fxsurgeon.optimize(from_onnx(model))(torch.from_numpy(x)).numpy()
    assert np.abs(theirs - lrn_by_the_spec(x, 4)).max() > 1e-3
    np.testing.assert_allclose(ours, lrn_by_the_spec(x, 4), atol=1e-6, rtol=0)


# -- RoiAlign --------------------------------------------------------------------------------


def test_roi_align_is_kept_and_the_coverage_says_why():
    inputs = [
        tensor_info("x", F32, [1, 2, 8, 8]),
        tensor_info("rois", F32, [3, 4]),
        tensor_info("batch", I64, [3]),
    ]
    model = one_op("RoiAlign", inputs, opset=16, output_height=2, output_width=2)
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert list(report_of(optimized).unconverted) == ["OnnxRoiAlign"]
    (status,) = [s for name, _, s in coverage_rows() if name == "OnnxRoiAlign"]
    assert "torchvision.ops.roi_align" in status and "model.py" in status


# -- model.py --------------------------------------------------------------------------------


def _prelu_model():
    slope = init("slope", rng.uniform(0.05, 0.5, [3, 1, 1]).astype(F32))
    return one_op("PRelu", [tensor_info("x", F32, ["N", 3, 4, 5])], initializers=[slope]), [
        (2, 3, 4, 5)
    ]


CODEGEN = {
    "argmax_last": lambda: (
        one_op(
            "ArgMax",
            [tensor_info("x", F32, ["N", 4])],
            TensorProto.INT64,
            axis=1,
            select_last_index=1,
        ),
        [(3, 4)],
    ),
    "gather_elements": lambda: (
        one_op(
            "GatherElements",
            [tensor_info("d", F32, ["N", 4]), tensor_info("i", I64, ["N", 2])],
            axis=1,
        ),
        [(3, 4), "index"],
    ),
    "depth_to_space": lambda: (
        one_op("DepthToSpace", [tensor_info("x", F32, ["N", 8, "H", 3])], opset=13, blocksize=2),
        [(2, 8, 4, 3)],
    ),
    "is_inf": lambda: (
        one_op("IsInf", [tensor_info("x", F32, ["N", 3])], TensorProto.BOOL, detect_negative=0),
        [(2, 3)],
    ),
    "prelu": _prelu_model,
    "layer_norm": lambda: (
        one_op(
            "LayerNormalization",
            [tensor_info("x", F32, ["N", "T", 6])],
            initializers=[init("scale", rnd(6)), init("bias", rnd(6))],
            axis=1,  # over [T, 6]: a symbolic normalized shape in model.py
        ),
        [(2, 5, 6)],
    ),
    "instance_norm": lambda: (
        one_op(
            "InstanceNormalization",
            [tensor_info("x", F32, ["N", 3, "L"])],
            initializers=[init("scale", rnd(3)), init("bias", rnd(3))],
        ),
        [(2, 3, 5)],
    ),
    "lrn_even": lambda: (one_op("LRN", [tensor_info("x", F32, ["N", 5, 3])], size=4), [(2, 5, 3)]),
}


@pytest.mark.parametrize("name", list(CODEGEN))
def test_model_py_round_trip(name, tmp_path):
    """model.py written, ruff-clean, loaded here, in a process without fxsurgeon/onnx2torch/onnx,
    and compiled: bitwise the optimized graph's outputs at two batch sizes."""
    model, shapes = CODEGEN[name]()
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)

    def inputs(batch):
        return tuple(
            torch.from_numpy(rng.integers(-4, 4, (batch, 2)))
            if s == "index"
            else torch.from_numpy(rnd(batch, *s[1:]))
            for s in shapes
        )

    source = check_everywhere(optimized, [inputs(3), inputs(5)], tmp_path)
    assert "import torchvision" not in source
