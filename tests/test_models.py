"""The spine on every test model: nothing of onnx2torch left, outputs equal to
TensorFlow, torch.compile(fullgraph=True) with no graph break, no host sync,
and every TF trainable variable back as a parameter."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import zoo

import fxsurgeon
from fxsurgeon.pipeline import count_onnx2torch_modules, report_of
from fxsurgeon.source import SOURCE_META_KEY

MODELS = [name for name in zoo.TINY if name != "keras3_cnn"]
ATOL = 1e-5


@functools.cache
def optimized(name: str) -> torch.fx.GraphModule:
    return fxsurgeon.optimize(zoo.convert(name))


def torch_inputs(name: str, inputs: dict[str, np.ndarray]) -> list[torch.Tensor]:
    specs = zoo.convert(name).meta[SOURCE_META_KEY].input_specs
    return [torch.from_numpy(inputs[spec.name]) for spec in specs]


def input_cases(name: str):
    """Batch sizes 1, 2 and 5; two sequence lengths for text models."""
    model = zoo.build(name)
    for batch in (1, 2, 5):
        if model.text:
            for seq_len in (4, 9):
                yield model.make_inputs(batch, seed=batch, seq_len=seq_len)
        else:
            yield model.make_inputs(batch, seed=batch)


def max_diff_vs_tf(name: str, module: torch.nn.Module) -> float:
    worst = 0.0
    for inputs in input_cases(name):
        expected = zoo.build(name).tf_outputs(inputs)
        with torch.no_grad():
            got = module(*torch_inputs(name, inputs))
        got = list(got) if isinstance(got, (tuple, list)) else [got]
        assert len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            assert tuple(g.shape) == e.shape
            worst = max(worst, float(np.abs(g.numpy() - e).max()))
    return worst


@pytest.mark.parametrize("name", MODELS)
def test_no_onnx2torch_module_remains(name):
    module = optimized(name)
    assert count_onnx2torch_modules(zoo.convert(name))  # there were some
    assert count_onnx2torch_modules(module) == {}
    assert not any(type(m).__module__.startswith("onnx2torch") for _, m in module.named_modules())
    assert report_of(module).unconverted == {}


@pytest.mark.parametrize("name", MODELS)
def test_outputs_match_tensorflow_at_several_batch_sizes(name):
    assert max_diff_vs_tf(name, optimized(name)) <= ATOL


@pytest.mark.parametrize("name", MODELS)
def test_code_has_no_host_sync(name):
    code = optimized(name).code
    for forbidden in (".item()", ".cpu()", ".numpy()", ".tolist()"):
        assert forbidden not in code


@pytest.mark.parametrize("name", MODELS)
def test_compiles_with_fullgraph_and_no_graph_break(name):
    module = optimized(name)
    inputs = torch_inputs(name, zoo.build(name).make_inputs(2, seed=0))
    explanation = torch._dynamo.explain(module)(*inputs)
    assert explanation.graph_break_count == 0
    assert explanation.graph_count == 1
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True)
    assert max_diff_vs_tf(name, compiled) <= ATOL


@pytest.mark.parametrize("name", MODELS)
def test_trainable_parameters_equal_tensorflow(name):
    module = optimized(name)
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert trainable == zoo.build(name).trainable_params
    assert report_of(module).trainable_after == trainable


def test_a_layer_the_exported_graph_never_reads_comes_back_unread_and_said():
    """A TF layer the exported function never reads comes back as parameters that no
    output depends on (as in TF: the count matches), each named in the report's notes."""
    from fxsurgeon._compat import import_tensorflow
    from fxsurgeon.examples import randomize_variables

    tf = import_tensorflow()
    import keras

    class TwoHeads(keras.Model):
        def __init__(self):
            super().__init__()
            self.used = keras.layers.Dense(4, name="used")
            self.spare = keras.layers.Dense(3, name="spare")

        def call(self, x):
            return self.used(x)

    model = TwoHeads()
    model(np.zeros((1, 5), np.float32))
    model.spare.build((None, 5))
    randomize_variables(model, 0)
    proto = fxsurgeon.export_onnx(model, [tf.TensorSpec((None, 5), tf.float32)])
    module = fxsurgeon.optimize(fxsurgeon.from_onnx(proto, tf_model=model))
    report = report_of(module)
    assert report.trainable_after == (5 * 4 + 4) + (5 * 3 + 3)
    unread = {o.tf_name: n for n, o in fxsurgeon.parameter_origins(module).items() if not o.read}
    assert set(unread) == {v.path for v in model.spare.trainable_variables}
    assert all(any(name in note for note in report.notes) for name in unread.values())
    assert not report.not_trainable
    x = np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32)
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    assert np.abs(got - model(x).numpy()).max() <= ATOL


def test_optimize_leaves_the_input_module_unchanged():
    converted = zoo.convert("bert_tiny")
    code = converted.code
    nodes = [(n.op, n.target, n.args, n.kwargs) for n in converted.graph.nodes]
    state = {k: v.clone() for k, v in converted.state_dict().items()}
    fxsurgeon.optimize(converted)
    assert converted.code == code
    assert [(n.op, n.target, n.args, n.kwargs) for n in converted.graph.nodes] == nodes
    after = converted.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], v) for k, v in state.items())


def test_report_counts_the_change():
    report = report_of(optimized("vit_tiny"))
    assert report.nodes_after < report.nodes_before
    assert sum(report.onnx2torch_before.values()) > 100 and report.onnx2torch_after == {}
    assert report.lowered["OnnxReshape"] > 0 and report.folded > 0
    assert "left as is" not in report.table()


@pytest.mark.slow
def test_seed_vit_base_end_to_end():
    name = "vit_base"
    converted = zoo.convert(name)
    module = optimized(name)
    report = report_of(module)
    print(
        f"\nViT-Base: fx nodes {report.nodes_before} -> {report.nodes_after}; "
        f"onnx2torch modules {sum(report.onnx2torch_before.values())} -> 0; timings {report.timings}"
    )
    assert count_onnx2torch_modules(converted) and count_onnx2torch_modules(module) == {}
    assert sum(p.numel() for p in module.parameters() if p.requires_grad) == zoo.VIT_BASE_TRAINABLE
    assert max_diff_vs_tf(name, module) <= ATOL
    inputs = torch_inputs(name, zoo.build(name).make_inputs(2, seed=0))
    assert torch._dynamo.explain(module)(*inputs).graph_break_count == 0
