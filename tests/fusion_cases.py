"""Helpers of the fusion-family tests (test_fusion_*.py): ONNX graphs written with
onnx.helper the way tf2onnx writes them, optimized, counted and compared with
onnxruntime; small Keras / HF models exported and compared with TensorFlow."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import helper
from onnx_cases import init, make_model, run_ort, tensor_info
from torch import fx

import fxsurgeon
from fxsurgeon.tensorflow import export_onnx, from_onnx

rng = np.random.default_rng(0)


def node(op: str, inputs, output: str, **attrs) -> onnx.NodeProto:
    return helper.make_node(op, list(inputs), [output], name=output, **attrs)


def f32(value) -> np.ndarray:
    return np.asarray(value, dtype=np.float32)


def graph(nodes, inputs: dict, outputs, consts: dict) -> onnx.ModelProto:
    """A checked opset-17 model; `outputs` are names (shapes inferred), `consts` name -> value
    (float32, but int64 arrays stay int64)."""
    model = make_model(
        nodes,
        [tensor_info(n, np.float32, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in outputs],
        [
            init(n, v if getattr(v, "dtype", None) == np.int64 else f32(v))
            for n, v in consts.items()
        ],
    )
    return model


def optimized(model: onnx.ModelProto) -> fx.GraphModule:
    return fxsurgeon.optimize(from_onnx(model))


def matches(module: fx.GraphModule) -> dict[str, int]:
    return fxsurgeon.report_of(module).matches


def family_count(module: fx.GraphModule, prefix: str) -> int:
    return sum(n for rule, n in matches(module).items() if rule.startswith(prefix))


def fused(module: fx.GraphModule, target, module_class=None) -> list:
    """The calls of `target`, or of modules of `module_class` (the parameters pass turns
    F.layer_norm with weights into nn.LayerNorm): fx nodes or the modules."""
    found = []
    for n in module.graph.nodes:
        if n.op == "call_function" and n.target is target:
            found.append(n)
        elif n.op == "call_module" and module_class is not None:
            sub = module.get_submodule(n.target)
            if isinstance(sub, module_class):
                found.append(sub)
    return found


def calls(module: fx.GraphModule, target, module_class=None) -> int:
    return len(fused(module, target, module_class))


def assert_matches_ort(module: fx.GraphModule, model: onnx.ModelProto, scale: float = 1.0):
    """Outputs on random inputs (dynamic dims 4, then 3) against onnxruntime, <= 1e-5."""
    feeds = []
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        shape = [d.dim_value if d.dim_value else (4 if i == 0 else 3) for i, d in enumerate(dims)]
        feeds.append((rng.standard_normal(shape) * scale).astype(np.float32))
    expected = run_ort(model, feeds)
    with torch.no_grad():
        got = module(*(torch.from_numpy(f) for f in feeds))
    got = got if isinstance(got, (tuple, list)) else [got]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g.numpy(), e, atol=1e-5, rtol=0)


def keras_vs_tf(model, inputs: list[np.ndarray]) -> tuple[fx.GraphModule, float]:
    """Export a Keras model, optimize it; the module and its max abs diff vs TensorFlow."""
    module = fxsurgeon.optimize(from_onnx(export_onnx(model), tf_model=model))
    expected = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    with torch.no_grad():
        got = module(*(torch.from_numpy(i) for i in inputs))
    got = got if isinstance(got, (tuple, list)) else [got]
    assert len(got) == len(expected)
    return module, max(
        float(np.abs(g.numpy() - np.asarray(e)).max()) for g, e in zip(got, expected, strict=True)
    )
