"""TF variables: listing a model's variables, and mapping ONNX initializers back to them."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..source import (
    LAYOUTS,
    InitializerOrigin,
    TFVariable,
    variable_names,
)
from .converters import TORCH_GATE_ORDER, torch_weights

# --------------------------------------------------------------------------- variables


def tf_variables_of(model: Any) -> list[tuple[TFVariable, Any]]:
    """Every variable of a Keras model or loaded SavedModel, with its TF object, once each.

    Trainable means what the model trains: a Keras model's ``trainable_variables``,
    which leaves out the variables of a layer set ``trainable = False`` (Whisper's
    frozen position table) though each keeps ``tf.Variable.trainable`` True. Without
    that list (a SavedModel), the variable's own flag. Names are `variable_names`'
    (unique)."""
    variables = getattr(model, "variables", None)
    if variables is None:
        serving = getattr(model, "signatures", {}).get("serving_default")
        variables = serving.variables if serving is not None else ()
    listed = getattr(model, "trainable_variables", None)
    trained = {id(v) for v in listed} if listed is not None else None
    seen: set[int] = set()
    once = []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            once.append(v)
    out = []
    for name, v in zip(variable_names(once), once, strict=True):
        trainable = bool(v.trainable) if trained is None else id(v) in trained
        out.append((TFVariable(name, tuple(int(d) for d in v.shape), trainable), v))
    return out


READ_VARIABLES_KEY = "fxsurgeon.tf_variables_read"


def record_read_variables(proto: onnx.ModelProto, model: Any, concrete: Any) -> None:
    """Write into ``proto``'s metadata the names of ``model``'s variables that the traced
    function ``concrete`` reads on the way to an output, so that a variable no initializer
    holds can be told apart: read and folded away, or read by no output (training-only, an
    unused layer, a layer output the model does not return).

    Read means captured by the function *and* on a data path to one of its outputs
    (`_ops_reaching_outputs`): a nested model computes its own pooler although the outer
    model returns only the sequence (HF VisionEncoderDecoder's ViT encoder); tf2onnx then
    prunes the pooler, and its variables are as unread as a training-only one."""
    reaching = _ops_reaching_outputs(concrete.graph)
    captured = {
        id(external) for external, internal in concrete.graph.captures if internal.op in reaching
    }
    read = []
    for variable, tf_variable in tf_variables_of(model):
        handles = [tf_variable, getattr(tf_variable, "_value", None)]
        if any(id(getattr(h, "handle", None)) in captured for h in handles if h is not None):
            read.append(variable.name)
    entry = proto.metadata_props.add()
    entry.key, entry.value = READ_VARIABLES_KEY, json.dumps(sorted(read))


def name_variable_initializers(proto: onnx.ModelProto, model: Any, concrete: Any) -> None:
    """Name each initializer that holds a captured variable of ``model`` as it is traced
    under a name with no TF scope after that variable (its `tf_variables_of` name).

    TF names a variable's capture after the scope it is first read in
    (``model/dense/MatMul/ReadVariableOp/resource:0``): a Keras layer's, which names the
    parameter. A function loaded by ``tf.saved_model.load`` (and a ``tf.Module`` that
    reads its variables outside any name scope) captures them as bare numbers
    (``904:0``): without the rename the ONNX file holds nothing of the layer, and the
    variable's own name (``encoder_block/attention/query/kernel:0``) is the only one left.
    A scoped name is kept, and so is a name another tensor of the graph already has."""
    by_handle = {}
    for variable, tf_variable in tf_variables_of(model):
        for h in (tf_variable, getattr(tf_variable, "_value", None)):
            if h is not None and getattr(h, "handle", None) is not None:
                by_handle[id(h.handle)] = variable.name
    renames = {}
    for external, internal in concrete.graph.captures:
        if "/" not in internal.name and id(external) in by_handle:
            renames[internal.name] = by_handle[id(external)]
    graph = proto.graph
    taken = {t.name for t in graph.initializer} | {i.name for i in graph.input}
    taken |= {o for n in graph.node for o in n.output}
    renames = {
        old: new
        for old, new in renames.items()
        if old in {t.name for t in graph.initializer} and new not in taken
    }
    if renames:
        _rename_tensors(graph, renames)


def _rename_tensors(graph: onnx.GraphProto, renames: dict[str, str]) -> None:
    """Rename initializers and every read of them, in subgraphs too (an outer name a
    subgraph reads is the same tensor unless the subgraph defines it itself)."""
    for tensor in graph.initializer:
        tensor.name = renames.get(tensor.name, tensor.name)
    for value in graph.value_info:
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                own = {t.name for t in sub.initializer} | {i.name for i in sub.input}
                own |= {o for n in sub.node for o in n.output}
                _rename_tensors(sub, {k: v for k, v in renames.items() if k not in own})


def _ops_reaching_outputs(graph: Any) -> set[Any]:
    """The operations of a TF graph whose results flow into ``graph.outputs`` by data edges
    (control edges order side effects; no value, so no gradient, flows along them). A call
    of a nested function counts whole: each of its inputs is taken as read."""
    reached: set[Any] = set()
    stack = [t.op for t in graph.outputs]
    while stack:
        op = stack.pop()
        if op in reached:
            continue
        reached.add(op)
        stack.extend(t.op for t in op.inputs)
    return reached


def read_variables(proto: onnx.ModelProto) -> frozenset[str] | None:
    """The names `record_read_variables` wrote, or None (not exported by fxsurgeon)."""
    for entry in proto.metadata_props:
        if entry.key == READ_VARIABLES_KEY:
            return frozenset(json.loads(entry.value))
    return None


def map_initializers_to_variables(
    onnx_model: onnx.ModelProto, tf_model: Any
) -> dict[str, list[InitializerOrigin]]:
    """ONNX initializer name -> the TF variables whose value it holds, matched by value.

    An initializer holds a variable when its elements, in order, equal the
    variable's after one of the `LAYOUTS` permutations (tf2onnx keeps Dense
    kernels as they are and turns Conv kernels HWIO -> OIHW), whatever its
    shape. Only floating-point tensors are compared, exactly. Several origins
    for one initializer mean the variables had equal values (ambiguous);
    initializers equal to no variable are structural constants and absent.
    """
    index: dict[tuple[str, bytes], list[tuple[InitializerOrigin, np.ndarray]]] = {}
    for variable, tf_variable in tf_variables_of(tf_model):
        value = np.asarray(tf_variable.numpy())
        if not np.issubdtype(value.dtype, np.floating):
            continue
        seen: list[np.ndarray] = []
        for layout, perm in LAYOUTS.items():
            if perm is not None and len(perm) != value.ndim:
                continue
            arranged = np.ascontiguousarray(value if perm is None else value.transpose(perm))
            if any(np.array_equal(arranged.ravel(), s.ravel()) for s in seen):
                continue  # e.g. a [1, n] kernel is the same transposed
            seen.append(arranged)
            key = (arranged.dtype.str, _digest(arranged))
            index.setdefault(key, []).append((InitializerOrigin(variable, layout), arranged))
    out: dict[str, list[InitializerOrigin]] = {}
    for name, value in _float_tensors(onnx_model):
        value = np.ascontiguousarray(value)
        candidates = index.get((value.dtype.str, _digest(value)), ())
        origins = [
            o for o, arranged in candidates if np.array_equal(arranged.ravel(), value.ravel())
        ]
        if origins:
            out[name] = origins
    return out


def _float_tensors(onnx_model: onnx.ModelProto):
    """(name, array) of each float initializer, and of each torch-layout weight that the
    lowering makes from a recurrent node's W, R, B (tf2onnx reorders their gates, so the
    initializers themselves equal no TF variable)."""
    floats = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)
    initializers = {t.name: t for t in onnx_model.graph.initializer if t.data_type in floats}
    for name, tensor in initializers.items():
        yield name, numpy_helper.to_array(tensor)
    for node in onnx_model.graph.node:
        if node.op_type not in TORCH_GATE_ORDER:
            continue
        names = [*node.input[1:4], "", "", ""][:3]
        if not all(n in initializers for n in names[:2]) or (
            names[2] and names[2] not in initializers
        ):
            continue
        w, r, b = (numpy_helper.to_array(initializers[n]) if n else None for n in names)
        hidden = next(a.i for a in node.attribute if a.name == "hidden_size")
        slots = (names[0], names[1], names[2] or None)
        for piece, tensor in torch_weights(node.op_type, hidden, w, r, b, slots):
            yield piece, tensor.numpy()


def _digest(array: np.ndarray) -> bytes:
    return hashlib.blake2b(array.reshape(-1).view(np.uint8).data, digest_size=16).digest()
