"""Subgraphs (If branches, Loop bodies): their free names, and converting them with onnx2torch."""

from __future__ import annotations

import contextvars

import onnx
from onnx import helper

# The opset imports of the model being converted (set by `convert`), so that a
# subgraph is converted at the same opset as its enclosing model.
OPSETS: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("opsets", default=None)


def _opsets() -> list:
    """The opsets of the model being converted: set by `convert` here, and by the
    onnx2torch hook (onnx2torch_hook.py) for a plain ``onnx2torch.convert``."""
    opsets = OPSETS.get()
    if opsets:
        return list(opsets)
    return [helper.make_opsetid("", onnx.defs.onnx_opset_version())]


def free_names(graph: onnx.GraphProto) -> set[str]:
    """Names `graph` reads that it neither defines nor takes as inputs (outer-scope values)."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    defined |= {t.name for t in graph.sparse_initializer}
    read: set[str] = set()
    for node in graph.node:
        read |= {name for name in node.input if name}
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                read |= free_names(attr.g)
            for sub in attr.graphs:
                read |= free_names(sub)
        defined |= set(node.output)
    read |= {o.name for o in graph.output}
    return read - defined


def convert_subgraph(graph: onnx.GraphProto, outer: list[str], enclosing):
    """`graph` as a GraphModule whose inputs are `graph`'s own inputs, then `outer`."""
    from ..._compat import import_onnx2torch

    onnx2torch = import_onnx2torch()
    value_info = dict(enclosing.value_info)
    for value in enclosing.proto.input:
        value_info[value.name] = value
    initializers = enclosing.initializers
    inputs = list(graph.input)
    for name in outer:
        if name in value_info:
            info = onnx.ValueInfoProto()
            info.CopyFrom(value_info[name])
            inputs.append(info)
        elif name in initializers:
            array = initializers[name].to_numpy()
            elem = helper.np_dtype_to_tensor_dtype(array.dtype)
            inputs.append(helper.make_tensor_value_info(name, elem, list(array.shape)))
        else:
            inputs.append(helper.make_empty_tensor_value_info(name))
    nodes, outputs = list(graph.node), []
    produced = {name for node in nodes for name in node.output}
    for output in graph.output:
        out = onnx.ValueInfoProto()
        out.CopyFrom(output)
        if output.name not in produced:  # the branch returns a value it did not compute
            out.name = f"{output.name}__fxs_identity"
            nodes.append(helper.make_node("Identity", [output.name], [out.name]))
        outputs.append(out)
    sub = helper.make_graph(
        nodes,
        graph.name or "branch",
        inputs,
        outputs,
        list(graph.initializer),
        value_info=list(graph.value_info),
    )
    model = helper.make_model(sub, opset_imports=_opsets())
    gm = onnx2torch.convert(model, attach_onnx_mapping=True)
    gm.eval()
    return gm
