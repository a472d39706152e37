"""Each lowering against onnxruntime, at several batch sizes, plus the lowering contract:
no onnx2torch module left, no tensor built for shape arithmetic, no host sync."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper
from onnx_cases import assert_matches_ort, init, make_model, tensor_info

from fxsurgeon.pipeline import count_onnx2torch_modules, report_of

F32, I64 = np.float32, np.int64
rng = np.random.default_rng(0)


def x_of(*shape):
    return rng.standard_normal(shape).astype(F32)


def shape_chain_reshape():
    """tf2onnx's dynamic reshape: Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Cast", ["s"], ["s32"], to=6),
        helper.make_node("Gather", ["s32", "zero"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "axes0"], ["b1"]),
        helper.make_node("Concat", ["b1", "tail"], ["target32"], axis=0),
        helper.make_node("Cast", ["target32"], ["target"], to=7),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = [
        init("zero", np.array(0, np.int32)),
        init("axes0", np.array([0], I64)),
        init("tail", np.array([-1, 4], np.int32)),
    ]
    model = make_model(
        nodes, [tensor_info("x", F32, ["N", 3, 8])], [tensor_info("y", F32, ["N", 6, 4])], inits
    )
    return model, lambda b: [x_of(b, 3, 8)]


def single(
    op, attrs=None, inputs=("x",), x_shape=("N", 4, 6), inits=(), out_dtype=F32, x_dtype=F32
):
    def build():
        node = helper.make_node(op, list(inputs), ["y"], **(attrs or {}))
        model = make_model(
            [node], [tensor_info("x", x_dtype, x_shape)], [tensor_info("y", out_dtype, None)], inits
        )
        concrete = [d if isinstance(d, int) else None for d in x_shape]

        def make(b):
            shape = [b if d is None else d for d in concrete]
            if x_dtype is F32:
                return [x_of(*shape)]
            return [rng.integers(0, 5, shape).astype(x_dtype)]

        return model, make

    return build


def tensordot_prod_of_dims():
    """tf2onnx's Tensordot over a dynamic batch: Reshape(x, [ReduceProd(Shape(x)[:-1]), C])."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Slice", ["s", "start", "end"], ["lead"]),
        helper.make_node("ReduceProd", ["lead"], ["rows"], keepdims=1),
        helper.make_node("Concat", ["rows", "tail"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["y"]),
    ]
    inits = [
        init("start", np.array([0], I64)),
        init("end", np.array([-1], I64)),
        init("tail", np.array([6], I64)),
        init("w", x_of(6, 5)),
    ]
    model = make_model(
        nodes, [tensor_info("x", F32, ["N", "H", 6])], [tensor_info("y", F32, None)], inits
    )
    return model, lambda b: [x_of(b, b + 2, 6)]


def slice_to_a_run_time_end():
    """ConvBERT's slice: the end is computed from a dynamic dim (L - 1), a start from it too."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "one"], ["l"], axis=0),
        helper.make_node("Unsqueeze", ["l", "axes0"], ["l1"]),
        helper.make_node("Sub", ["l1", "one1"], ["end"]),
        helper.make_node("Sub", ["l1", "three"], ["start"]),
        helper.make_node("Slice", ["x", "start", "end", "axes2"], ["y"]),
    ]
    inits = [
        init("one", np.array(1, I64)),
        init("axes0", np.array([0], I64)),
        init("one1", np.array([1], I64)),
        init("three", np.array([3], I64)),
        init("axes2", np.array([2], I64)),
    ]
    model = make_model(
        nodes, [tensor_info("x", F32, ["N", "L", "L"])], [tensor_info("y", F32, None)], inits
    )
    return model, lambda b: [x_of(b, b + 3, b + 3)]


def pad_with_a_run_time_value():
    """Pad whose constant_value is computed (the input's max): F.pad takes a number, so
    the pad is built with 0 and the padded positions take the value through a Where."""
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
        helper.make_node("Pad", ["x", "pads", "m"], ["y"], mode="constant"),
    ]
    inits = [init("pads", np.array([0, 1, -1, 0, 2, 1], I64))]
    model = make_model(
        nodes, [tensor_info("x", F32, ["N", 4, 6])], [tensor_info("y", F32, None)], inits
    )
    return model, lambda b: [x_of(b, 4, 6)]


def split_uneven():
    nodes = [
        helper.make_node("Split", ["x", "s"], ["a", "b"], axis=2),
        helper.make_node("Sub", ["b", "a2"], ["y"]),
    ]
    nodes.insert(1, helper.make_node("Tile", ["a", "r"], ["a2"]))
    inits = [init("s", np.array([2, 4], I64)), init("r", np.array([1, 1, 2], I64))]
    model = make_model(
        nodes, [tensor_info("x", F32, ["N", 4, 6])], [tensor_info("y", F32, ["N", 4, 4])], inits
    )
    return model, lambda b: [x_of(b, 4, 6)]


CASES = {
    "split_uneven": split_uneven,
    "pad_with_a_run_time_value": pad_with_a_run_time_value,
    "shape_chain_reshape": shape_chain_reshape,
    "reshape_zero_copies_dim": single(
        "Reshape", inputs=("x", "t"), inits=[init("t", np.array([0, -1], I64))]
    ),
    "slice_negative_and_step": single(
        "Slice",
        inputs=("x", "s", "e", "a", "st"),
        inits=[
            init("s", np.array([-1, 1], I64)),
            init("e", np.array([-100, 6], I64)),
            init("a", np.array([1, 2], I64)),
            init("st", np.array([-1, 2], I64)),
        ],
    ),
    # a negative step on a dynamic dim (the batch): a flip, then a slice of the flipped dim
    "slice_reverse_dynamic_dim": single(
        "Slice",
        inputs=("x", "s", "e", "a", "st"),
        inits=[
            init("s", np.array([-1], I64)),
            init("e", np.array([-(2**63)], I64)),
            init("a", np.array([0], I64)),
            init("st", np.array([-1], I64)),
        ],
    ),
    "slice_negative_step_from_1_dynamic_dim": single(
        "Slice",
        inputs=("x", "s", "e", "a", "st"),
        inits=[
            init("s", np.array([3], I64)),
            init("e", np.array([-(10**9)], I64)),
            init("a", np.array([0], I64)),
            init("st", np.array([-2], I64)),
        ],
    ),
    "slice_negative_step_to_0_dynamic_dim": single(
        "Slice",
        inputs=("x", "s", "e", "a", "st"),
        inits=[
            init("s", np.array([-1, 0], I64)),
            init("e", np.array([0, 6], I64)),
            init("a", np.array([0, 2], I64)),
            init("st", np.array([-1, 1], I64)),
        ],
    ),
    "slice_to_int64_max": single(
        "Slice",
        inputs=("x", "s", "e", "a"),
        inits=[
            init("s", np.array([1], I64)),
            init("e", np.array([2**63 - 1], I64)),
            init("a", np.array([-1], I64)),
        ],
    ),
    "gather_scalar_axis1": single(
        "Gather", {"axis": 1}, inputs=("x", "i"), inits=[init("i", np.array(-1, I64))]
    ),
    "gather_vector_axis2": single(
        "Gather",
        {"axis": 2},
        inputs=("x", "i"),
        inits=[init("i", np.array([[0, 5], [-2, 1]], I64))],
    ),
    "unsqueeze_negative_axes": single(
        "Unsqueeze", inputs=("x", "a"), inits=[init("a", np.array([-1, 1], I64))]
    ),
    "squeeze_axes": single(
        "Squeeze",
        inputs=("x", "a"),
        x_shape=("N", 1, 6, 1),
        inits=[init("a", np.array([-1, 1], I64))],
    ),
    "transpose": single("Transpose", {"perm": [2, 0, 1]}),
    "expand_broadcast": single(
        "Expand",
        inputs=("x", "s"),
        x_shape=("N", 1, 6),
        inits=[init("s", np.array([2, 1, 5, 1], I64))],
    ),
    "tile": single("Tile", inputs=("x", "r"), inits=[init("r", np.array([1, 2, 3], I64))]),
    "reduce_mean_keepdims": single("ReduceMean", {"axes": [1, -1], "keepdims": 1}),
    "reduce_sum_axes_input": single(
        "ReduceSum", {"keepdims": 0}, inputs=("x", "a"), inits=[init("a", np.array([1], I64))]
    ),
    "reduce_prod_two_axes": single("ReduceProd", {"axes": [0, 2], "keepdims": 0}),
    "reduce_prod_keepdims": single("ReduceProd", {"axes": [-1, 1], "keepdims": 1}),
    "tensordot_prod_of_dims": tensordot_prod_of_dims,
    "slice_to_a_run_time_end": slice_to_a_run_time_end,
    "softmax_axis1": single("Softmax", {"axis": 1}),
    "flatten_axis2": single("Flatten", {"axis": 2}, x_shape=("N", 2, 3, 4)),
    "flatten_axis_last": single("Flatten", {"axis": -1}, x_shape=("N", 2, 3)),
    "average_pool": single(
        "AveragePool",
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1},
        x_shape=("N", 3, 8, 8),
    ),
    "global_average_pool_rank3": single("GlobalAveragePool"),
    "integer_div_truncates": single(
        "Div", inputs=("x", "d"), x_dtype=I64, out_dtype=I64, inits=[init("d", np.array([-3], I64))]
    ),
    "pow_scalar": single("Pow", inputs=("x", "p"), inits=[init("p", np.array(3.0, F32))]),
    "cast_to_int": single("Cast", {"to": 7}, out_dtype=I64),
    "where_with_constants": single(
        "Where",
        inputs=("c", "x", "z"),
        inits=[init("c", rng.random((4, 6)) > 0.5), init("z", np.array(-1.0, F32))],
    ),
    "gemm_trans_b": single(
        "Gemm",
        {"transB": 1, "alpha": 0.5, "beta": 2.0},
        inputs=("x", "w", "c"),
        x_shape=("N", 6),
        inits=[init("w", x_of(3, 6)), init("c", x_of(3))],
    ),
    "matmul_broadcast": single("MatMul", inputs=("x", "w"), inits=[init("w", x_of(6, 5))]),
    "conv_pads_strides": single(
        "Conv",
        {"pads": [1, 0, 1, 0], "strides": [2, 1]},
        inputs=("x", "w", "b"),
        x_shape=("N", 3, 8, 8),
        inits=[init("w", x_of(4, 3, 3, 3)), init("b", x_of(4))],
    ),
    "conv_asymmetric_pads": single(
        "Conv",
        {"pads": [0, 0, 1, 2]},
        inputs=("x", "w"),
        x_shape=("N", 3, 6, 6),
        inits=[init("w", x_of(2, 3, 2, 2))],
    ),
    "batchnorm": single(
        "BatchNormalization",
        {"epsilon": 1e-3},
        inputs=("x", "g", "b", "m", "v"),
        x_shape=("N", 4, 5, 5),
        inits=[
            init("g", x_of(4)),
            init("b", x_of(4)),
            init("m", x_of(4)),
            init("v", np.abs(x_of(4)) + 0.5),
        ],
    ),
    "max_pool": single(
        "MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}, x_shape=("N", 3, 8, 8)
    ),
    "pad_constant": single(
        "Pad", inputs=("x", "p"), inits=[init("p", np.array([0, 1, 0, 0, 2, 3], I64))]
    ),
    "erf": single("Erf"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_lowering_matches_onnxruntime(name):
    model, make = CASES[name]()
    optimized = None
    for batch in (1, 2, 5):
        optimized = assert_matches_ort(model, make(batch))
    assert count_onnx2torch_modules(optimized) == {}
    assert report_of(optimized).unconverted == {}


def test_shape_arithmetic_builds_no_tensor_and_keeps_the_batch_dynamic():
    model, make = shape_chain_reshape()
    optimized = assert_matches_ort(model, make(3))
    code = optimized.code
    for forbidden in (".item()", ".cpu()", ".numpy()", ".tolist()", "torch.tensor", "getattr"):
        assert forbidden not in code, code
    reshapes = [n for n in optimized.graph.nodes if n.target is torch.reshape]
    assert len(reshapes) == 1
    assert reshapes[0].args[1] == (-1, 6, 4)  # the one run-time size became -1


def test_constant_subgraphs_fold_into_constants():
    nodes = [
        helper.make_node("Mul", ["two", "three"], ["six"]),
        helper.make_node("Sqrt", ["six"], ["r"]),
        helper.make_node("Mul", ["x", "r"], ["y"]),
    ]
    model = make_model(
        nodes,
        [tensor_info("x", F32, ["N", 4])],
        [tensor_info("y", F32, ["N", 4])],
        [init("two", np.array(2.0, F32)), init("three", np.array(3.0, F32))],
    )
    optimized = assert_matches_ort(model, [x_of(2, 4)])
    ops = [n for n in optimized.graph.nodes if n.op == "call_function"]
    assert len(ops) == 1 and ops[0].args[1] == pytest.approx(np.sqrt(6.0))
    assert report_of(optimized).folded == 2
    assert not list(optimized.buffers())


def test_input_module_is_not_modified():
    from fxsurgeon.tensorflow import from_onnx

    model, make = CASES["conv_pads_strides"]()
    converted = from_onnx(model)
    code_before = converted.code
    state_before = {k: v.clone() for k, v in converted.state_dict().items()}
    nodes_before = [(n.op, n.target, n.args, dict(n.meta)) for n in converted.graph.nodes]
    import fxsurgeon

    fxsurgeon.optimize(converted)
    assert converted.code == code_before
    assert [(n.op, n.target, n.args) for n in converted.graph.nodes] == [
        n[:3] for n in nodes_before
    ]
    assert all("fxs_shape" not in n.meta for n in converted.graph.nodes)
    state_after = converted.state_dict()
    assert state_after.keys() == state_before.keys()
    assert all(torch.equal(state_after[k], v) for k, v in state_before.items())


def test_a_negative_step_from_before_the_last_element_of_a_dynamic_dim_is_reported():
    """ONNX clamps such a start to [0, n - 1], which needs n: kept, and the report says why."""
    from fxsurgeon.tensorflow import from_onnx

    node = helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"], name="rev")
    inits = [
        init("s", np.array([-3], I64)),
        init("e", np.array([-(10**9)], I64)),
        init("a", np.array([0], I64)),
        init("st", np.array([-1], I64)),
    ]
    model = make_model(
        [node], [tensor_info("x", F32, ["N", 4])], [tensor_info("y", F32, None)], inits
    )
    import fxsurgeon

    (reason,) = report_of(fxsurgeon.optimize(from_onnx(model))).unconverted["OnnxSlice"]
    assert reason.startswith("rev: Slice with step -1 from start -3 on a dynamic dim")
