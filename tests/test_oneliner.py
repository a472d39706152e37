"""The one-liner: ``fxsurgeon.optimize(onnx2torch.convert(onnx_model))`` with no other
argument, dynamic dims decided by analysis, forced dims reported with their node."""

from __future__ import annotations

import copy
import functools

import numpy as np
import onnx
import pytest
import torch
import zoo
from onnx import TensorProto, helper, numpy_helper

import fxsurgeon
from fxsurgeon._compat import import_onnx2torch
from fxsurgeon.pipeline import SOURCE_KEY, count_onnx2torch_modules

ATOL = 1e-5
MODELS = ["vit_tiny", "bert_tiny", "gpt2_tiny", "keras_cnn"]


@functools.cache
def bare(name: str) -> torch.fx.GraphModule:
    return import_onnx2torch().convert(zoo.export(name))


def input_cases(name: str):
    """Batch 1 and 3; text models at sequence lengths 3, 6 and 11 (the analysis
    hints 5, so 3 and 11 were never seen during optimize)."""
    model = zoo.build(name)
    for batch in (1, 3):
        for seq_len in (3, 6, 11) if model.text else (None,):
            kwargs = {"seq_len": seq_len} if seq_len else {}
            yield model.make_inputs(batch, seed=batch, **kwargs)


def ordered(name: str, inputs: dict) -> list[torch.Tensor]:
    proto = zoo.export(name)
    return [torch.from_numpy(inputs[i.name]) for i in proto.graph.input]


def materialized(model) -> torch.fx.GraphModule:
    """The optimized GraphModule, of a LazyOptimized once it has been called."""
    return model.optimized if isinstance(model, fxsurgeon.LazyOptimized) else model


@pytest.mark.parametrize("name", MODELS)
def test_bare_call_matches_tensorflow_at_every_size(name):
    gm = bare(name)
    model = fxsurgeon.optimize(gm)
    # eager when the GraphModule carries its SourceInfo (input specs), lazy without
    assert isinstance(model, fxsurgeon.LazyOptimized) == (gm.meta.get(SOURCE_KEY) is None)
    for inputs in input_cases(name):
        expected = zoo.build(name).tf_outputs(inputs)
        with torch.no_grad():
            got = model(*ordered(name, inputs))
        got = list(got) if isinstance(got, (tuple, list)) else [got]
        for g, e in zip(got, expected, strict=True):
            assert tuple(g.shape) == e.shape
            assert float(np.abs(g.numpy() - e).max()) <= ATOL
    assert count_onnx2torch_modules(model) == {}
    assert fxsurgeon.report_of(model).dynamic_dims  # batch (and sequence) left dynamic
    compiled = torch.compile(materialized(model), fullgraph=True, backend="eager")
    inputs = next(iter(input_cases(name)))
    with torch.no_grad():
        torch.testing.assert_close(
            compiled(*ordered(name, inputs)), model(*ordered(name, inputs)), atol=0, rtol=0
        )


@pytest.mark.parametrize("name", MODELS)
def test_bare_call_parameter_count_equals_tensorflow(name):
    model = fxsurgeon.optimize(bare(name))
    model(*ordered(name, next(iter(input_cases(name)))))
    assert sum(p.numel() for p in model.parameters()) == zoo.build(name).trainable_params


def test_modelproto_and_path_are_accepted(tmp_path):
    proto = zoo.export("bert_tiny")
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    inputs = next(iter(input_cases("bert_tiny")))
    expected = zoo.build("bert_tiny").tf_outputs(inputs)
    for source in (proto, str(path)):
        model = fxsurgeon.optimize(source)
        assert not isinstance(model, fxsurgeon.LazyOptimized)  # specs known: eager
        report = fxsurgeon.report_of(model)
        assert any(d.endswith("[1]") for d in report.dynamic_dims)  # sequence stays dynamic
        with torch.no_grad():
            got = model(*ordered("bert_tiny", inputs))
        got = list(got) if isinstance(got, (tuple, list)) else [got]
        assert float(np.abs(got[0].numpy() - expected[0]).max()) <= ATOL


def _matmul_model(x_dims=(None, None)) -> onnx.ModelProto:
    """y = x @ W with x [None, None]: the MatMul forces x's dim 1 to 4."""
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "W")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["y"], name="the_matmul"),
            helper.make_node("Relu", ["y"], ["z"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_dims))],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, 3])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_source_info_means_eager_and_only_its_absence_lazy():
    """A GraphModule with a SourceInfo (input specs) is optimized at once; one
    without, and without example inputs, becomes a LazyOptimized that optimizes
    on its first call and then holds the parameters."""
    converted = fxsurgeon.from_onnx(_matmul_model((None, 4)))
    eager = fxsurgeon.optimize(converted)
    assert isinstance(eager, torch.fx.GraphModule)
    assert count_onnx2torch_modules(eager) == {}
    stripped = copy.deepcopy(converted)
    stripped.meta.pop(SOURCE_KEY)
    lazy = fxsurgeon.optimize(stripped)
    assert isinstance(lazy, fxsurgeon.LazyOptimized)
    assert not list(lazy.parameters())
    x = torch.randn(3, 4)
    torch.testing.assert_close(lazy(x), eager(x), atol=0, rtol=0)
    assert sum(p.numel() for p in lazy.parameters()) == 12  # W, 4 x 3
    assert not isinstance(
        fxsurgeon.optimize(stripped, example_inputs=(x,)), fxsurgeon.LazyOptimized
    )


def test_forced_dim_is_reported_with_its_node():
    """Without a record of the ONNX inputs, the first call's sizes are the hints:
    the MatMul forces dim 1 (hinted 4), and the report names it and the node."""
    gm = copy.deepcopy(import_onnx2torch().convert(_matmul_model()))
    gm.meta.pop(SOURCE_KEY, None)
    model = fxsurgeon.optimize(gm)
    model(torch.randn(3, 4))  # the lazy module materialises on its first call
    report = fxsurgeon.report_of(model)
    name = next(n.name for n in gm.graph.nodes if n.op == "placeholder")
    assert report.dynamic_dims == [f"{name}[0]"]
    assert len(report.forced_dims) == 1
    assert f"{name} dim 1 is fixed to 4" in report.forced_dims[0]
    assert "OnnxMatMul" in report.forced_dims[0]
    for batch in (1, 2, 7):
        x = torch.randn(batch, 4)
        w = torch.arange(12, dtype=torch.float32).reshape(4, 3)
        torch.testing.assert_close(model(x), torch.relu(x @ w))


def test_example_inputs_give_ranks_and_dtypes_only():
    """Optimised with batch 2, the model runs at other batch sizes; the forced dim is
    reported, not silently specialised by the example."""
    gm = import_onnx2torch().convert(_matmul_model())
    model = fxsurgeon.optimize(gm, example_inputs=(torch.randn(2, 4),))
    name = next(n.name for n in gm.graph.nodes if n.op == "placeholder")
    report = fxsurgeon.report_of(model)
    assert report.dynamic_dims == [f"{name}[0]"]
    assert f"{name} dim 1 is fixed to 4" in report.forced_dims[0]
    for batch in (1, 5, 9):
        assert model(torch.randn(batch, 4)).shape == (batch, 3)


def test_relu6_from_onnx2torch_is_accepted_and_lowered():
    graph = helper.make_graph(
        [helper.make_node("Clip", ["x", "lo", "hi"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        [
            numpy_helper.from_array(np.array(0, np.float32), "lo"),
            numpy_helper.from_array(np.array(6, np.float32), "hi"),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    gm = import_onnx2torch().convert(proto)
    assert any(type(m).__name__ == "ReLU6" for m in gm.modules())
    model = fxsurgeon.optimize(gm)
    x = torch.linspace(-3, 9, 12).reshape(3, 4)
    torch.testing.assert_close(model(x), torch.clamp(x, 0, 6))
    assert count_onnx2torch_modules(materialized(model)) == {}
    assert fxsurgeon.report_of(model).unconverted == {}


def test_foreign_torch_module_is_still_refused():
    """A GraphModule without the record of its conversion is checked module by module."""
    gm = copy.deepcopy(import_onnx2torch().convert(_matmul_model()))
    gm.meta.pop(SOURCE_KEY, None)
    gm.add_module("extra", torch.nn.Hardshrink())  # onnx2torch never emits nn.Hardshrink
    out = next(n for n in gm.graph.nodes if n.op == "output")
    with gm.graph.inserting_before(out):
        extra = gm.graph.call_module("extra", (out.args[0],))
    out.args = (extra,)
    gm.recompile()
    with pytest.raises(fxsurgeon.InputError, match="not made by onnx2torch"):
        fxsurgeon.optimize(gm)


def _cross_reshape_model() -> onnx.ModelProto:
    """Reshape enc [b, n, 8] to [batch of dec, -1, 2, 4], as a decoder's
    cross-attention reshapes the encoder's keys with its own batch size: the
    target is data computed from dec's Shape, so the analysis sees a fresh
    symbol, not dec's batch, and cannot know that the two batches must agree."""
    nodes = [
        helper.make_node("Shape", ["dec"], ["dec_shape"]),
        helper.make_node("Gather", ["dec_shape", "zero"], ["dec_batch"], axis=0),
        helper.make_node("Unsqueeze", ["dec_batch", "axes0"], ["dec_batch_1"]),
        helper.make_node("Concat", ["dec_batch_1", "rest"], ["target"], axis=0),
        helper.make_node("Reshape", ["enc", "target"], ["heads"], name="cross_reshape"),
        helper.make_node("ReduceSum", ["dec", "axes1"], ["pooled"], keepdims=1),
        helper.make_node("Unsqueeze", ["pooled", "axes1"], ["pooled_4d"]),
        helper.make_node("Reshape", ["pooled_4d", "pool_shape"], ["pooled_heads"]),
        helper.make_node("Add", ["heads", "pooled_heads"], ["summed"]),
        helper.make_node("MatMul", ["summed", "W"], ["projected"]),
        helper.make_node("Add", ["projected", "bias"], ["out"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array([0], np.int64), "axes0"),
        numpy_helper.from_array(np.array([1], np.int64), "axes1"),
        numpy_helper.from_array(np.array([-1, 2, 4], np.int64), "rest"),
        numpy_helper.from_array(np.array([0, 1, 2, 4], np.int64), "pool_shape"),
        numpy_helper.from_array(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3), "W"),
        numpy_helper.from_array(np.array([0.5, -0.25, 1.0], np.float32), "bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "cross",
        [
            helper.make_tensor_value_info("enc", TensorProto.FLOAT, ["b", "n", 8]),
            helper.make_tensor_value_info("dec", TensorProto.FLOAT, ["c", "m", 8]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["c", None, 2, 3])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_example_inputs_keep_dims_the_graph_relates_through_data(monkeypatch):
    """When the analysis calls one input's dims free and another's tied, bumping
    only the free ones breaks a relation that the graph states as data (the
    batches of enc and dec): the second example set is run first, and when it
    fails every dim of the inputs is bumped together, so the pattern phases get
    two sets the model runs on, differing in every dynamic dim."""
    from fxsurgeon.pipeline import _analysis, _examples
    from fxsurgeon.shapes.symbolic import SymbolicShapes

    def misjudged(self):  # dec's dims free, enc's tied
        return {key: key[0] == self.inputs[-1].name for key in self._symbols.values()}

    monkeypatch.setattr(SymbolicShapes, "free_dims", misjudged)
    converted = fxsurgeon.from_onnx(_cross_reshape_model())
    shapes = _analysis(converted, None)
    free_only = shapes.example_inputs(bump=2)
    with pytest.raises(RuntimeError, match="invalid for input of size"):
        converted(*free_only)  # the set the analysis alone would give
    examples = _examples(shapes, None, converted)
    converted(*examples.second)
    for first, second in zip(examples.first, examples.second, strict=True):
        assert first.shape[:2] != second.shape[:2]
        assert all(a != b for a, b in zip(first.shape[:2], second.shape[:2], strict=True))

    model = fxsurgeon.optimize(converted)
    assert count_onnx2torch_modules(model) == {}
    w = torch.linspace(-1, 1, 12).reshape(4, 3)
    for batch, n, m in ((1, 3, 2), (3, 6, 4), (5, 2, 7)):
        enc, dec = torch.randn(batch, n, 8), torch.randn(batch, m, 8)
        summed = enc.reshape(batch, -1, 2, 4) + dec.sum(1, keepdim=True).reshape(batch, 1, 2, 4)
        want = summed @ w + torch.tensor([0.5, -0.25, 1.0])
        torch.testing.assert_close(model(enc, dec), want)
