"""SAME auto_pad on dynamic sizes (tf2onnx's ``padding="same"`` where H or W is unknown):
Conv, MaxPool (onnx2torch refuses its auto_pad) and AveragePool with strides > 1 against
onnxruntime, optimized ONCE and run at odd and even sizes it never saw, SAME_UPPER and
SAME_LOWER, uneven kernels and strides, a strided 1x1 kernel (the pad's max); nothing kept, one graph
under torch.compile across sizes, and a Keras model with dynamic sides against TF."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper
from onnx_cases import assert_lowered, assert_module_matches_ort, init, make_model, tensor_info

import fxsurgeon
from fxsurgeon.tensorflow import from_onnx

F32 = np.float32
rng = np.random.default_rng(5)
SIZES = ((2, 9, 12), (1, 16, 7), (3, 5, 5), (1, 2, 3))


def rnd(*shape):
    return rng.standard_normal(shape).astype(F32)


def _one(op, auto_pad, **attrs):
    inputs = ["x"]
    inits = []
    if op == "Conv":
        k = attrs["kernel_shape"]
        inits = [init("w", rnd(4, 3, *k)), init("b", rnd(4))]
        inputs += ["w", "b"]
    node = helper.make_node(op, inputs, ["y"], auto_pad=auto_pad, **attrs)
    return make_model(
        [node], [tensor_info("x", F32, ["N", 3, "H", "W"])], [tensor_info("y", F32, None)], inits
    )


CASES = [
    ("Conv", {"kernel_shape": [3, 3], "strides": [2, 2]}),
    # onnxruntime has no dilated Conv with SAME auto_pad, and pads a dilated MaxPool as if
    # undilated (4 outputs of 9 at stride 2, the spec's ceil(9 / 2) = 5): not compared
    ("Conv", {"kernel_shape": [4, 2], "strides": [2, 3]}),
    ("Conv", {"kernel_shape": [1, 1], "strides": [2, 2]}),  # reach 1 < stride 2
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2]}),
    ("MaxPool", {"kernel_shape": [2, 3], "strides": [2, 1]}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2]}),
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2], "count_include_pad": 1}),
]


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("op, attrs", CASES, ids=[f"{o}-{i}" for i, (o, _) in enumerate(CASES)])
def test_same_padding_on_dynamic_sizes_matches_onnxruntime(op, attrs, auto_pad):
    model = _one(op, auto_pad, **attrs)
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)
    for n, h, w in SIZES:
        assert_module_matches_ort(optimized, model, [rnd(n, 3, h, w)], atol=1e-5)


def test_strided_same_conv_and_pool_compile_in_one_graph_across_sizes():
    nodes = [
        helper.make_node(
            "Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"
        ),
        helper.make_node(
            "MaxPool", ["c"], ["y"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"
        ),
    ]
    model = make_model(
        nodes,
        [tensor_info("x", F32, ["N", 3, "H", "W"])],
        [tensor_info("y", F32, None)],
        [init("w", rnd(4, 3, 3, 3))],
    )
    optimized = fxsurgeon.optimize(from_onnx(model))
    torch._dynamo.reset()
    compiled = torch.compile(optimized, fullgraph=True, backend="eager", dynamic=True)
    for n, h, w in SIZES:
        x = rnd(n, 3, h, w)
        assert_module_matches_ort(compiled, model, [x], atol=1e-5)


def test_max_pool_with_indices_beyond_three_spatial_dims_is_refused():
    """MaxPool's Indices output is converted (tests/test_converters_pool_pad.py) for 1 to 3
    spatial dims, torch's pools; a 4-D window is refused with the node and op named."""
    node = helper.make_node(
        "MaxPool",
        ["x"],
        ["y", "i"],
        name="pool",
        kernel_shape=[2, 2, 2, 2],
        strides=[2, 2, 2, 2],
        auto_pad="SAME_UPPER",
    )
    model = make_model(
        [node],
        [tensor_info("x", F32, ["N", 3, 4, 4, 4, 4])],
        [tensor_info("y", F32, None), tensor_info("i", np.int64, None)],
    )
    with pytest.raises(fxsurgeon.errors.InputError, match=r"'pool' \(op MaxPool\).*spatial dims"):
        from_onnx(model)


def test_keras_strided_same_layers_on_dynamic_sides_match_tf():
    from fxsurgeon._compat import import_tensorflow

    import_tensorflow()
    keras = pytest.importorskip("tf_keras")
    from fxsurgeon.examples import randomize_variables

    x = keras.Input((None, None, 3), name="image")
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="c1")(x)
    h = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="p1")(h)
    h = keras.layers.AveragePooling2D(2, strides=2, padding="same", name="p2")(h)
    y = keras.layers.Conv2D(2, 1, strides=2, padding="same", name="c2")(h)
    model = keras.Model(x, y)
    randomize_variables(model, 0)
    optimized = fxsurgeon.optimize(
        fxsurgeon.from_onnx(fxsurgeon.export_onnx(model), tf_model=model)
    )
    assert_lowered(optimized)
    for side in (15, 16, 23):
        xv = rnd(2, side, side + 3, 3)
        with torch.no_grad():
            got = optimized(torch.from_numpy(xv)).numpy()
        np.testing.assert_allclose(got, model(xv).numpy(), atol=1e-5, rtol=0)


def test_model_py_carries_the_size_arithmetic(tmp_path):
    """The pads are int arithmetic on x.size(d) (sym_max for the strided 1x1 kernel):
    model.py, a clean process and torch.compile give the same bits at every size."""
    from test_codegen_control_flow import check_everywhere

    nodes = [
        helper.make_node(
            "Conv", ["x", "w"], ["c"], kernel_shape=[1, 1], strides=[2, 2], auto_pad="SAME_UPPER"
        ),
        helper.make_node(
            "AveragePool", ["c"], ["y"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER"
        ),
    ]
    model = make_model(
        nodes,
        [tensor_info("x", F32, ["N", 3, "H", "W"])],
        [tensor_info("y", F32, None)],
        [init("w", rnd(4, 3, 1, 1))],
    )
    optimized = fxsurgeon.optimize(from_onnx(model))
    source = check_everywhere(
        optimized, [(torch.from_numpy(rnd(*s[:1], 3, *s[1:])),) for s in SIZES], tmp_path
    )
    assert "sym_max" in source
