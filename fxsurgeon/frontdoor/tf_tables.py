"""Static hash tables captured by the traced function, exported as their contents.

Keras' IntegerLookup and StringLookup (and ``tf.lookup.StaticHashTable``) read a table
resource that the traced function captures: in the frozen graph it is a ``Placeholder`` of
dtype resource feeding ``LookupTableFindV2``. tf2onnx finds the contents of a table only
through a ``shared_name`` (Keras 3's tables are anonymous: "Could not determine table
shared name"), and its handler maps only string <-> int64 tables (ai.onnx.ml's
CategoryMapper).

`captured_tables` reads each captured table that a lookup reads, eagerly, by
``LookupTableExportV2`` on the captured resource (its keys and values now, which is what
the frozen weights are too); `name_tables` turns each such placeholder into the
``HashTableV2`` node tf2onnx expects, its ``shared_name`` the placeholder's name, and
returns tf2onnx's ``initialized_tables``. TF knows no shape for what such a lookup returns:
`shape_outputs` gives the graph outputs computed from one the shape ONNX infers.

`CORRECTIONS` writes a lookup whose keys and values are both numeric in plain ONNX ops,
from TF's definition (the value of the key equal to ``x``, else the default): the hits
``Equal(x[..., None], keys)``, their ``ArgMax`` over the keys (keys are unique: at most one
hit), ``found = keys[index] == x``, ``Where(found, values[index], default)``. A string
table, an empty one, or one whose contents are unknown keeps tf2onnx's handler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto

from .tf_nodes import Handler
from .tf_nodes import const as _const

__all__ = ["CORRECTIONS", "captured_tables", "name_tables", "shape_outputs"]

LOOKUPS = ("LookupTableFindV2",)


def captured_tables(concrete: Any, tf: Any) -> dict[str, tuple[Any, Any, np.ndarray, np.ndarray]]:
    """Placeholder name -> (key dtype, value dtype, keys, values) of every captured resource
    that a lookup of ``concrete``'s graph reads as its table."""
    external = {internal.name: ext for ext, internal in concrete.graph.captures}
    tables: dict[str, tuple[Any, Any, np.ndarray, np.ndarray]] = {}
    for op in concrete.graph.get_operations():
        if op.type not in LOOKUPS:
            continue
        handle = op.inputs[0]
        while handle.op.type == "Identity":
            handle = handle.op.inputs[0]
        resource = external.get(handle.name)
        if resource is None or handle.op.type != "Placeholder":
            continue
        key_dtype, value_dtype = op.get_attr("Tin"), op.get_attr("Tout")
        try:
            keys, values = tf.raw_ops.LookupTableExportV2(
                table_handle=resource, Tkeys=key_dtype, Tvalues=value_dtype
            )
        except (tf.errors.OpError, TypeError, ValueError):  # not a table one can export
            continue  # tf2onnx's handler says why it cannot convert the lookup
        tables[handle.op.name] = (key_dtype, value_dtype, keys.numpy(), values.numpy())
    return tables


def name_tables(
    graph_def: Any, tables: dict[str, tuple[Any, Any, np.ndarray, np.ndarray]]
) -> dict[bytes, tuple[np.ndarray, np.ndarray]]:
    """Each table placeholder of ``graph_def`` as a ``HashTableV2`` named after it; tf2onnx's
    ``initialized_tables`` (shared name -> (keys, values))."""
    initialized: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
    for node in graph_def.node:
        if node.op != "Placeholder" or node.name not in tables:
            continue
        key_dtype, value_dtype, keys, values = tables[node.name]
        for attr in list(node.attr):
            del node.attr[attr]
        node.op = "HashTableV2"
        node.attr["shared_name"].s = node.name.encode()
        node.attr["key_dtype"].type = key_dtype.as_datatype_enum
        node.attr["value_dtype"].type = value_dtype.as_datatype_enum
        initialized[node.name.encode()] = (keys, values)
    return initialized


def _numeric_lookup(func: Handler) -> Handler:
    def handler(ctx: Any, node: Any, initialized_tables: Any = None, **kwargs: Any) -> None:
        from tf2onnx import utils

        table = node.inputs[0]
        while table.type == "Identity":
            table = table.inputs[0]
        name = table.get_attr_value("shared_name")
        contents = (initialized_tables or {}).get(name)
        dtypes = (ctx.get_dtype(node.input[1]), ctx.get_dtype(node.output[0]))
        if contents is None or TensorProto.STRING in dtypes or len(contents[0]) == 0:
            func(ctx, node, initialized_tables=initialized_tables, **kwargs)
            return
        keys, values = contents
        x, default = node.input[1], node.input[2]
        scope = {"op_name_scope": node.name}
        key_type, value_type = (utils.map_onnx_to_numpy_type(d) for d in dtypes)
        keys_c = ctx.make_const(utils.make_name("keys"), np.asarray(keys, key_type)).output[0]
        values_c = ctx.make_const(utils.make_name("values"), np.asarray(values, value_type))
        column = ctx.make_node("Unsqueeze", [x, _const(ctx, [-1])], **scope).output[0]
        hits = ctx.make_node("Equal", [column, keys_c], **scope).output[0]
        hits = ctx.make_node("Cast", [hits], attr={"to": TensorProto.INT32}, **scope).output[0]
        index = ctx.make_node("ArgMax", [hits], attr={"axis": -1, "keepdims": 0}, **scope)
        index = index.output[0]
        key = ctx.make_node("Gather", [keys_c, index], **scope).output[0]
        found = ctx.make_node("Equal", [key, x], **scope).output[0]
        value = ctx.make_node("Gather", [values_c.output[0], index], **scope).output[0]
        ctx.remove_node(node.name)
        ctx.make_node(
            "Where",
            [found, value, default],
            name=node.name,
            outputs=node.output,
            shapes=[ctx.get_shape(x)],
            dtypes=[dtypes[1]],
        )

    return handler


CORRECTIONS: dict[str, Callable[[Handler], Handler]] = {name: _numeric_lookup for name in LOOKUPS}


def shape_outputs(proto: Any) -> None:
    """Graph outputs without a shape take the one ONNX's shape inference gives them.

    TF knows no shape for what a lookup in a table placeholder returns, nor for what is
    computed from it, and tf2onnx writes such an output with no shape (which ONNX's checker
    refuses); the ops that compute it know it.
    """
    import onnx

    missing = {o.name for o in proto.graph.output if not o.type.tensor_type.HasField("shape")}
    if not missing:
        return
    inferred = onnx.shape_inference.infer_shapes(proto).graph.output
    for output, typed in zip(proto.graph.output, inferred, strict=True):
        if output.name in missing and typed.type.tensor_type.HasField("shape"):
            output.type.tensor_type.shape.CopyFrom(typed.type.tensor_type.shape)
