"""Global pools, Pad with computed pads, and graph outputs of multi-output nodes, against
onnxruntime, through both doors: ``from_onnx`` and the bare ``optimize(onnx2torch.convert(m))``.

* GlobalMaxPool / GlobalAveragePool-22 / GlobalLpPool (onnx2torch has no converter) lower
  to ``torch.amax`` / ``torch.mean`` / a p-norm over every dim after batch and channel;
* Pad whose pads are computed from sizes stays symbolic (``F.pad`` with size nodes);
  Pad-18's ``axes`` (also after a skipped ``constant_value``, which onnx2torch passes by
  keyword), negative pads, the reflect/edge/wrap modes; a run-time constant_value is kept
  as a module and says why;
* a graph output that is one output of a Split is that output, not the Split's tuple.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from onnx_cases import assert_lowered, init, run_ort, tensor_info

import fxsurgeon
from fxsurgeon._compat import import_onnx2torch
from fxsurgeon.pipeline import report_of
from fxsurgeon.tensorflow import from_onnx

F32, I64 = np.float32, np.int64
rng = np.random.default_rng(5)


def rnd(*shape):
    return rng.standard_normal(shape).astype(F32)


def model_of(nodes, inputs, outputs, initializers=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "case", list(inputs), list(outputs), list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset <= 18 else 10
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def both_doors(model: onnx.ModelProto):
    """The module optimized through from_onnx, and through the bare onnx2torch call."""
    yield fxsurgeon.optimize(from_onnx(model))
    yield fxsurgeon.optimize(import_onnx2torch().convert(model))


def check(model: onnx.ModelProto, *input_sets, lowered: bool = True):
    """Both doors agree with onnxruntime on every input set (sizes differ between sets)."""
    modules = list(both_doors(model))
    for module in modules:
        if lowered:
            assert_lowered(module)
        for inputs in input_sets:
            expected = run_ort(model, inputs)
            with torch.no_grad():
                got = module(*(torch.from_numpy(i) for i in inputs))
            got = list(got) if isinstance(got, (tuple, list)) else [got]
            assert len(got) == len(expected)
            for g, e in zip(got, expected, strict=True):
                assert isinstance(g, torch.Tensor), type(g)
                assert g.shape == e.shape, (g.shape, e.shape)
                np.testing.assert_allclose(g.numpy(), e, atol=1e-5, rtol=1e-5)
    return modules


def targets(module) -> set:
    return {n.target for n in module.graph.nodes if n.op == "call_function"}


# -- global pools ----------------------------------------------------------------------------


# GlobalLpPool-22 is not in onnxruntime (the oracle): its opset-2 form is tested
POOLS = [
    ("GlobalMaxPool", 17),
    ("GlobalMaxPool", 22),
    ("GlobalAveragePool", 22),
    ("GlobalLpPool", 17),
]


@pytest.mark.parametrize("op, opset", POOLS)
@pytest.mark.parametrize("rank", [3, 4])
def test_global_pools_match_onnxruntime(op, rank, opset):
    attrs = {"p": 3} if op == "GlobalLpPool" else {}
    dims = ["N", 3, "L"] if rank == 3 else ["N", 3, "H", 5]
    model = model_of(
        [helper.make_node(op, ["x"], ["y"], **attrs)],
        [tensor_info("x", F32, dims)],
        [tensor_info("y", F32, None)],
        opset=opset,
    )
    shapes = [(2, 3, 7), (1, 3, 4)] if rank == 3 else [(2, 3, 4, 5), (3, 3, 6, 5)]
    modules = check(model, *([rnd(*s)] for s in shapes))
    expected = {"GlobalMaxPool": torch.amax, "GlobalAveragePool": torch.mean}.get(op, torch.sum)
    for module in modules:
        assert expected in targets(module)


# -- Pad ---------------------------------------------------------------------------------------


def computed_pad_model(mode: str) -> onnx.ModelProto:
    """x [N, C, L]: pad L at the end up to at least 8, ``max(-(L - 8), 0)``, as tf2onnx
    writes Keras's size-matching pads: the pads are shape arithmetic."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "two"], ["length"], axis=0),
        helper.make_node("Sub", ["length", "eight"], ["over"]),
        helper.make_node("Neg", ["over"], ["short"]),
        helper.make_node("Max", ["short", "zero"], ["end"]),
        helper.make_node("Concat", ["zeros5", "end"], ["pads"], axis=0),
        helper.make_node("Pad", ["x", "pads"], ["y"], mode=mode),
    ]
    inits = [init("two", np.array([2], I64)), init("eight", np.array([8], I64))]
    inits += [init("zero", np.array([0], I64)), init("zeros5", np.zeros(5, I64))]
    return model_of(
        nodes, [tensor_info("x", F32, ["N", 3, "L"])], [tensor_info("y", F32, None)], inits
    )


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pads_computed_from_sizes_stay_symbolic(mode):
    model = computed_pad_model(mode)
    modules = check(model, [rnd(2, 3, 5)], [rnd(1, 3, 7)], [rnd(2, 3, 9)])
    for module in modules:
        pads = [n for n in module.graph.nodes if n.target is torch.nn.functional.pad]
        assert len(pads) == 1
        assert any(isinstance(a, torch.fx.Node) for a in pads[0].args[1]), pads[0].args


@pytest.mark.parametrize(
    "pads, mode",
    [
        ([1, 0, -2, 0, 2, 1], "constant"),  # negative: crops
        ([0, 1, 2, 0, 0, 3], "reflect"),
        ([0, 0, 1, 0, 2, 2], "edge"),
    ],
)
def test_static_pads_by_the_spec(pads, mode):
    model = model_of(
        [helper.make_node("Pad", ["x", "pads", "value"], ["y"], mode=mode)],
        [tensor_info("x", F32, ["N", 4, "L"])],
        [tensor_info("y", F32, None)],
        [init("pads", np.array(pads, I64)), init("value", np.array(1.5, F32))],
    )
    check(model, [rnd(2, 4, 6)], [rnd(3, 4, 9)])


@pytest.mark.parametrize("skip_value", [False, True])
def test_pad_18_axes_input(skip_value):
    """Pad-18 pads only the dims named by ``axes`` (negative counts from the end); with
    constant_value skipped onnx2torch passes axes by keyword."""
    value = "" if skip_value else "value"
    model = model_of(
        [helper.make_node("Pad", ["x", "pads", value, "axes"], ["y"])],
        [tensor_info("x", F32, ["N", 3, "L"])],
        [tensor_info("y", F32, None)],
        [
            init("pads", np.array([1, 2, 3, 0], I64)),
            init("value", np.array(-2.0, F32)),
            init("axes", np.array([-1, 1], I64)),
        ],
        opset=18,
    )
    check(model, [rnd(2, 3, 4)], [rnd(1, 3, 6)])


def test_pad_19_wrap():
    model = model_of(
        [helper.make_node("Pad", ["x", "pads"], ["y"], mode="wrap")],
        [tensor_info("x", F32, ["N", 3, "L"])],
        [tensor_info("y", F32, None)],
        [init("pads", np.array([0, 0, 2, 0, 0, 1], I64))],
        opset=19,
    )
    check(model, [rnd(2, 3, 4)], [rnd(1, 3, 6)])


def test_pad_with_a_run_time_value_is_lowered_by_a_where():
    """F.pad takes its fill value as a number (onnx2torch passes the tensor, and fails on
    some inputs): a value computed at run time fills the padded positions by a Where."""
    model = model_of(
        [
            helper.make_node("ReduceMax", ["x"], ["top"], keepdims=0),
            helper.make_node("Pad", ["x", "pads", "top"], ["y"]),
        ],
        [tensor_info("x", F32, ["N", 3])],
        [tensor_info("y", F32, None)],
        [init("pads", np.array([0, 1, 0, 2], I64))],
    )
    for module in check(model, [rnd(2, 3)]):
        assert not report_of(module).unconverted
        assert any(n.target is torch.where for n in module.graph.nodes)


# -- graph outputs of multi-output nodes ------------------------------------------------------


@pytest.mark.parametrize(
    "outputs", [("t", "a"), ("b", "t"), ("a", "b"), ("b", "a"), ("b",)], ids=str
)
def test_a_graph_output_of_a_split_is_its_own_output(outputs):
    """onnx2torch returns the Split's whole tuple for a graph output (and one value for
    two outputs of one Split); optimize returns the ONNX graph's outputs, in its order."""
    model = model_of(
        [
            helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
            helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=1),
        ],
        [tensor_info("x", F32, ["N", 5])],
        [tensor_info(name, F32, None) for name in outputs],
        [init("sizes", np.array([2, 3], I64))],
    )
    check(model, [rnd(2, 5)], [rnd(4, 5)])


# -- a computation kept only for its size --------------------------------------------------


def test_a_computation_read_only_for_its_size_is_dropped():
    """tf2onnx peels a Keras RNN's first step to size its outputs' buffer: its MatMul is
    read only by a Shape. The batch there is the one read before (the loop's trip count
    there), so the peeled step dies and only the real MatMul is left (keras_masked_lstm:
    1 Linear, not 3)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["x_shape"]),
        helper.make_node("Gather", ["x_shape", "zero"], ["rows"], axis=0),
        helper.make_node("Concat", ["rows", "four"], ["rows_by_four"], axis=0),
        helper.make_node("ConstantOfShape", ["rows_by_four"], ["zeros_before"]),
        helper.make_node("MatMul", ["x", "w_peeled"], ["peeled"]),
        helper.make_node("Shape", ["peeled"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Concat", ["batch", "four"], ["size"], axis=0),
        helper.make_node("ConstantOfShape", ["size"], ["zeros"]),
        helper.make_node("MatMul", ["x", "w"], ["xw"]),
        helper.make_node("Add", ["xw", "zeros"], ["sum"]),
        helper.make_node("Add", ["sum", "zeros_before"], ["y"]),
    ]
    inits = [init("w_peeled", rnd(3, 4)), init("w", rnd(3, 4))]
    inits += [init("zero", np.array([0], I64)), init("four", np.array([4], I64))]
    model = model_of(nodes, [tensor_info("x", F32, ["N", 3])], [tensor_info("y", F32, None)], inits)
    for module in check(model, [rnd(2, 3)], [rnd(5, 3)]):
        products = [
            n for n in module.graph.nodes if n.target in (torch.matmul, torch.nn.functional.linear)
        ]
        assert len(products) == 1, module.code


# -- MaxPool with its Indices output ---------------------------------------------------------


@pytest.mark.parametrize(
    "dims, attrs",
    [
        (["N", 3, "H", "W"], {"kernel_shape": [2, 2], "strides": [2, 2]}),  # SegNet's pool
        (["N", 2, "H", "W"], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 1, 1, 0]}),
        (["N", 2, "H", "W"], {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
        (["N", 2, "H", "W"], {"kernel_shape": [2, 3], "strides": [1, 2], "storage_order": 1}),
        (["N", 2, "H", "W"], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
        (["N", 2, "H", "W"], {"kernel_shape": [2, 2], "dilations": [2, 2]}),
        (["N", 3, "W"], {"kernel_shape": [3], "strides": [2], "pads": [1, 0]}),
        (["N", 2, "D", "H", 5], {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2]}),
    ],
)
def test_max_pool_indices_match_onnxruntime(dims, attrs):
    """onnx2torch converts no MaxPool whose Indices output is read (TF's
    max_pool_with_argmax, SegNet's unpooling). fxsurgeon's converter gives each max's
    position in the flattened input as the spec counts it (padding not counted;
    storage_order 1: column-major over the spatial dims), through both doors, every size
    dynamic; the indices then address the input (a gather by them gives the values)."""
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], **attrs)
    model = model_of(
        [node],
        [tensor_info("x", F32, dims)],
        [tensor_info("y", F32, None), tensor_info("i", I64, None)],
        opset=12,
    )
    small = [{"N": 2, "H": 7, "W": 9, "D": 4}.get(d, d) for d in dims]
    large = [{"N": 1, "H": 10, "W": 8, "D": 6}.get(d, d) for d in dims]
    check(model, [rnd(*small)], [rnd(*large)])
    if attrs.get("storage_order", 0) == 0:  # row-major positions read the values back
        x = rnd(*small)
        values, indices = run_ort(model, [x])
        np.testing.assert_array_equal(x.reshape(-1)[indices.reshape(-1)], values.reshape(-1))
