"""Drawing a graph from a seed: the block table and the graph's start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .attention_blocks import _block_attention_forms
from .fusion_blocks import (
    _block_attention,
    _block_dense,
    _block_gelu_erf,
    _block_gelu_tanh,
    _block_layer_norm,
)
from .graph import _F32, _T, NEAR_MISS, OPSET, FuzzCase, _Graph, _Skip
from .shape_blocks import (
    _block_cast,
    _block_concat,
    _block_elementwise,
    _block_expand,
    _block_fill_concat,
    _block_gather,
    _block_matmul_activations,
    _block_pad,
    _block_reduce,
    _block_reshape,
    _block_slice,
    _block_softmax,
    _block_split,
    _block_transpose,
    _block_unsqueeze,
)

_BLOCKS: dict[str, tuple[Callable[[_Graph, _T, bool], _T], float]] = {
    "dense": (_block_dense, 3.0),
    "layer_norm": (_block_layer_norm, 2.5),
    "gelu_tanh": (_block_gelu_tanh, 2.0),
    "gelu_erf": (_block_gelu_erf, 1.5),
    "attention": (_block_attention, 2.5),
    "attention_forms": (_block_attention_forms, 2.0),
    "reshape": (_block_reshape, 1.5),
    "transpose": (_block_transpose, 1.5),
    "cast": (_block_cast, 0.5),
    "slice": (_block_slice, 1.0),
    "unsqueeze": (_block_unsqueeze, 0.7),
    "concat": (_block_concat, 0.7),
    "reduce": (_block_reduce, 0.7),
    "softmax": (_block_softmax, 0.5),
    "elementwise": (_block_elementwise, 1.5),
    "matmul_activations": (_block_matmul_activations, 0.4),
    "gather": (_block_gather, 0.5),
    "expand": (_block_expand, 0.4),
    "split": (_block_split, 0.4),
    "pad": (_block_pad, 0.4),
    "fill_concat": (_block_fill_concat, 0.4),
}


def _start(g: _Graph) -> _T:
    """The graph input(s) and the first float tensor."""
    from onnx import TensorProto, helper

    kind = g.pick(("x2", "x3", "x3", "x3_dynamic", "x4", "ids"))
    c = int(g.pick((4, 6, 8)))
    if kind == "ids":
        vocab = int(g.pick((5, 11)))
        g.inputs.append(helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "S"]))
        g.input_specs.append(("ids", ("N", "S"), np.int64))
        table = g.weight(g.randn(vocab, c), "embeddings")
        y = g.op("Gather", [table, "ids"], axis=0)
        g.vocab = vocab
        g.blocks.append("embedding")
        return _T(y, ("N", "S", c))
    if kind == "x2":
        dims: list[Any] = ["N", c]
    elif kind == "x3":
        dims = ["N", int(g.pick((2, 3, 4))), c]
    elif kind == "x3_dynamic":
        dims = ["N", "S", c]
    else:
        dims = ["N", int(g.pick((2, 3))), int(g.pick((2, 3))), c]
    g.inputs.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, dims))
    g.input_specs.append(("x", tuple(dims), _F32))
    return _T("x", tuple(dims))


def generate(seed: int) -> FuzzCase:
    """The graph of ``seed``: the same seed gives the same ONNX model, always."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    g = _Graph(rng)
    x = _start(g)
    names = list(_BLOCKS)
    weights = np.array([_BLOCKS[n][1] for n in names])
    wanted = int(rng.choice([1, 2, 3, 4], p=[0.2, 0.35, 0.3, 0.15]))
    made, tries = 0, 0
    while made < wanted and tries < 40:
        tries += 1
        name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        near = bool(rng.random() < NEAR_MISS)
        state = (len(g.nodes), len(g.initializers), len(g.outputs), len(g.blocks), g.count)
        try:
            y = _BLOCKS[name][0](g, x, near)
        except _Skip:
            del g.nodes[state[0] :], g.initializers[state[1] :], g.outputs[state[2] :]
            del g.blocks[state[3] :]
            continue
        if len(y.shape) > 5 or any(d == 0 for d in y.shape) or (y.rank == 0):
            raise AssertionError(f"fuzz generator made a bad shape {y.shape} in {name}")
        x = y
        made += 1
        if made < wanted and rng.random() < 0.1:
            g.extra_output(x.name)
    outputs = [helper.make_tensor_value_info(x.name, TensorProto.FLOAT, None)]
    seen = {x.name}
    for extra in g.outputs:
        if extra.name not in seen:
            seen.add(extra.name)
            outputs.append(helper.make_tensor_value_info(extra.name, TensorProto.FLOAT, None))
    graph = helper.make_graph(g.nodes, f"fuzz_{seed}", g.inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    _output_types(model)
    return FuzzCase(seed, model, list(g.blocks), g.exact, g.near, list(g.input_specs), g.vocab)


def _output_types(model: Any) -> None:
    """Give every graph output the type ONNX shape inference finds (the checker wants one)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - check() reports the invalid graph
        return
    known = {v.name: v for v in list(inferred.value_info) + list(inferred.output)}
    for output in model.graph.output:
        value = known.get(output.name)
        if value is not None and value.type.tensor_type.HasField("shape"):
            output.CopyFrom(value)
