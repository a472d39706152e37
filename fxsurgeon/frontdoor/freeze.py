"""tf2onnx's ``from_function``, redone so that every TF variable survives as an initializer.

`convert_function` turns a traced ``tf.function`` into ONNX the way
``tf2onnx.convert.from_function`` does (freeze, grappler, tf2onnx's handlers
and ONNX optimizers), with eight differences, each general:

* **Assignments are dataflow.** A variable assigned in the call (PixelCNN's
  ``kernel.assign(kernel * mask)``) cannot be frozen as it is; the reads after
  the assignment read its value instead (`fxsurgeon.frontdoor.assigns`).
* **Captures are not inputs.** ``from_function`` lists every non-resource
  tensor the function captures (an eager constant: a sinusoidal table, rotary
  ``inv_freq``, Keras ``Normalization`` statistics) as a graph input. Only the
  signature's own inputs are inputs here; freezing makes the captures constants.
* **XLA-only calls are inlined.** Keras runs some ops (grouped ``Conv2D`` on
  CPU) as a ``tf.function(jit_compile=True)``, which freezes into a
  ``(Stateful)PartitionedCall`` with ``_XlaMustCompile`` / ``_noinline`` that
  tf2onnx cannot convert. Those attributes are dropped and grappler's function
  optimizer inlines the call like any other.
* **Variables stay opaque to constant folding.** Once frozen, a variable is a
  ``Const``, and four folders combine it with other constants: grappler
  (Keras 3 BatchNormalization's ``rsqrt(var + eps) * gamma`` becomes one
  tensor, and that scale is multiplied into the preceding Conv kernel), tf2onnx's
  TF-side folding, its ``rewrite_constant_fold`` of TF ops (a masked kernel
  ``kernel * mask``) and its ONNX ``fold_constants``. Here grappler sees the
  variables as placeholders, and the three tf2onnx folders fold a value computed
  from a variable only through value-preserving ops (`VALUE_PRESERVING_TF`,
  `VALUE_PRESERVING_ONNX`: layout changes, which `LAYOUTS` maps back; the
  rewriter through none). So each variable is an initializer of its own, and
  arithmetic on it is ONNX nodes.
* **Branch arguments know their shapes.** Those grappler declares of unknown
  rank take the shapes of the If's inputs (`tf_control.refine_branch_shapes`).
* **Ifs on a constant predicate are their branch** (`tf_control.inline_constant_ifs`).
* **StopGradient is kept** as an Identity the optimizers leave, and listed in the model's
  metadata (`fxsurgeon.frontdoor.stop_gradients`): door A detaches there, as TF stops.
* **Captured lookup tables are their contents.** A table the function captures
  (Keras' IntegerLookup) is read now and given to tf2onnx as ``initialized_tables``;
  a numeric lookup is plain ONNX ops (`fxsurgeon.frontdoor.tf_tables`).
* **Optimizers** are chosen by the caller (`export` leaves out the ones that
  merge or fold weights).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import onnx

from .._compat import import_tensorflow
from ..errors import InputError
from .assigns import resolve_assigns
from .static_dims import TRACE_ERRORS, trace_failure
from .stop_gradients import keeping_stop_gradients, protecting_optimizers, record_stop_gradients
from .tf_control import inline_constant_ifs, refine_branch_shapes
from .tf_tables import captured_tables, name_tables

#: TF ops whose output holds the values of their first input (possibly reshaped or permuted).
VALUE_PRESERVING_TF = frozenset({"Identity", "Reshape", "Squeeze", "ExpandDims", "Transpose"})
#: TF ops whose output does not depend on the values of their inputs.
SHAPE_ONLY_TF = frozenset({"Shape", "ShapeN", "Size", "Rank"})
#: ONNX ops that only move the values of their first input around.
VALUE_PRESERVING_ONNX = frozenset(
    {"Identity", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Flatten"}
)
#: Function attributes that keep grappler from inlining a call (XLA-compiled functions).
_NO_INLINE_ATTRS = ("_XlaMustCompile", "_noinline")


def convert_function(
    function: Any, specs: list[Any], *, opset: int, optimizers: Mapping[str, Any]
) -> onnx.ModelProto:
    """ONNX for ``function`` traced on ``specs`` (see the module docstring)."""
    tf = import_tensorflow()
    from tf2onnx import tf_loader
    from tf2onnx.convert import _convert_common, tensor_names_from_structed

    try:
        concrete = function.get_concrete_function(*specs)
    except TRACE_ERRORS as exc:  # the model's Python, traced on the specs
        raise InputError(trace_failure(exc, specs)) from exc
    captured = {internal.name for _, internal in concrete.graph.captures}
    variables = {
        internal.name.split(":")[0]
        for external, internal in concrete.graph.captures
        if external.dtype == tf.resource
    }
    input_names = [t.name for t in concrete.inputs if t.name not in captured]
    output_names = [t.name for t in concrete.outputs if t.dtype != tf.resource]
    renames = tensor_names_from_structed(concrete, input_names, output_names)
    tables = captured_tables(concrete, tf)  # the contents of the lookups' tables, read now

    with tf.device("/cpu:0"):
        graph_def = _frozen(concrete).graph.as_graph_def(add_shapes=True)
        graph_def = tf_loader.fix_freezing_errors_part2(graph_def)
        _allow_inlining(graph_def)
        variable_consts = {n.name for n in graph_def.node if n.op == "Const"} & variables
        keys = _variable_keys(
            tf.make_ndarray(n.attr["value"].tensor)
            for n in graph_def.node
            if n.name in variable_consts
        )
        graph_def = _optimize_with_opaque(graph_def, variable_consts, input_names, output_names)
        while inline_constant_ifs(graph_def):  # a folded predicate may fold the next one's
            graph_def = _optimize_with_opaque(graph_def, variable_consts, input_names, output_names)
        refine_branch_shapes(graph_def)
        initialized_tables = name_tables(graph_def, tables)
        with (
            _folding_spares_variables(variable_consts, keys, optimizers) as chosen,
            keeping_stop_gradients(lambda node: _holds_variable(node, keys), graph_def) as stops,
        ):
            proto, _ = _convert_common(
                graph_def,
                name=concrete.name,
                continue_on_error=True,
                opset=opset,
                input_names=input_names,
                output_names=output_names,
                tensors_to_rename=renames,
                optimizers=protecting_optimizers(chosen),
                initialized_tables=initialized_tables,
            )
    record_stop_gradients(proto, stops)
    return proto


def _frozen(concrete: Any) -> Any:
    """TF's ``convert_variables_to_constants_v2(concrete, lower_control_flow=False,
    aggressive_inlining=True)``, its variable assignments first rewritten as dataflow
    (`resolve_assigns`: a frozen variable is a constant, which no op can assign)."""
    from tensorflow.python.framework import convert_to_constants as freezing

    data = freezing._FunctionConverterDataInEager(
        func=concrete, lower_control_flow=False, aggressive_inlining=True
    )
    resolve_assigns(data.graph_def)
    graph_def, converted = freezing._replace_variables_by_constants(converter_data=data)
    return freezing._construct_concrete_function(concrete, graph_def, converted)


def _allow_inlining(graph_def: Any) -> None:
    """Drop the XLA-only no-inline attributes from every function and call node."""
    for function in graph_def.library.function:
        for attr in _NO_INLINE_ATTRS:
            if attr in function.attr:
                del function.attr[attr]
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    for node in nodes:
        for attr in _NO_INLINE_ATTRS:
            if attr in node.attr:
                del node.attr[attr]


def _optimize_with_opaque(
    graph_def: Any, opaque: set[str], input_names: list[str], output_names: list[str]
) -> Any:
    """tf2onnx's grappler pass with the ``opaque`` constants seen as placeholders."""
    tf = import_tensorflow()
    from tf2onnx import tf_loader

    originals = {}
    for node in graph_def.node:
        if node.name not in opaque:
            continue
        originals[node.name] = type(node)()
        originals[node.name].CopyFrom(node)
        tensor = node.attr["value"].tensor
        dtype, shape = tensor.dtype, tensor.tensor_shape
        node.op = "Placeholder"
        node.ClearField("attr")
        node.attr["dtype"].type = dtype
        node.attr["shape"].shape.CopyFrom(shape)
    with tf.Graph().as_default() as graph, tf_loader.tf_session(graph=graph):
        tf.import_graph_def(graph_def, name="")
        optimized = tf_loader.tf_optimize(input_names, output_names, graph_def)
    for node in optimized.node:
        if node.name in originals:
            node.CopyFrom(originals[node.name])
    return optimized


def _variable_dependent(graph: Any, variable_consts: set[str]) -> tuple[set[str], set[str]]:
    """(tensors holding a variable's values, tensors computed from a variable) of ``graph``."""
    valued: set[str] = set()
    mixed: set[str] = set()
    ops = list(graph.get_operations())
    changed = True
    while changed:  # graph order need not be topological; iterate to the fixed point
        changed = False
        for op in ops:
            outputs = [t.name for t in op.outputs]
            if op.type in SHAPE_ONLY_TF or not outputs:
                continue
            inputs = [t.name for t in op.inputs]
            if op.type == "Const" and op.name in variable_consts:
                target = valued
            elif op.type in VALUE_PRESERVING_TF and inputs and inputs[0] in valued:
                target = mixed if any(i in mixed for i in inputs) else valued
            elif any(i in valued or i in mixed for i in inputs):
                target = mixed
            else:
                continue
            new = [t for t in outputs if t not in target]
            if new:
                target.update(new)
                changed = True
    return valued, mixed - valued


def _variable_keys(values: Iterator[np.ndarray]) -> set[tuple[str, int, bytes]]:
    """Order-free keys of the variables' float values (any layout of one matches)."""
    keys = set()
    for value in values:
        if np.issubdtype(value.dtype, np.floating):
            keys.add(_order_free_key(value))
    return keys


def _order_free_key(value: np.ndarray) -> tuple[str, int, bytes]:
    flat = np.sort(np.ascontiguousarray(value).reshape(-1))
    digest = hashlib.blake2b(flat.view(np.uint8).data, digest_size=16).digest()
    return (flat.dtype.str, flat.size, digest)


@contextlib.contextmanager
def _folding_spares_variables(
    variable_consts: set[str], keys: set[tuple[str, int, bytes]], optimizers: Mapping[str, Any]
) -> Iterator[dict[str, Any]]:
    """tf2onnx's constant folding (TF-side, its TF-op rewriter, ONNX-side), sparing values
    computed from variables.

    Yields the optimizer map to pass to tf2onnx, its ``fold_constants`` replaced.
    """
    from tf2onnx import tfonnx
    from tf2onnx.optimizer.const_fold_optimizer import ConstFoldOptimizer

    original = tfonnx.compute_const_folding_using_tf

    def compute_const_folding(graph: Any, const_node_values: Any, graph_outputs: Any) -> Any:
        values, shapes = original(graph, const_node_values, graph_outputs)
        _, mixed = _variable_dependent(graph, variable_consts)
        return {k: v for k, v in values.items() if k not in mixed}, shapes

    class FoldSparingVariables(ConstFoldOptimizer):
        """Folds no op but a layout change when a constant input holds a variable."""

        def _fold_node(self, node: Any, graph: Any) -> bool:
            if node.type not in VALUE_PRESERVING_ONNX and any(
                _holds_variable(inp, keys) for inp in node.inputs if inp is not None
            ):
                return False
            return super()._fold_node(node, graph)

    original_rewrite = tfonnx.rewrite_constant_fold

    def rewrite_constant_fold(g: Any, ops: Any) -> list[Any]:
        """tf2onnx's rewriter that folds TF ops (Mul, Add, Cast, ...) on constants,
        shown only the ops none of whose inputs holds a variable (it keeps each op's
        position in the list it is given, so the others go back where they were)."""
        ops = list(ops)
        spared = {
            i
            for i, op in enumerate(ops)
            if any(_holds_variable(inp, keys) for inp in op.inputs if inp is not None)
        }
        folded = iter(original_rewrite(g, [op for i, op in enumerate(ops) if i not in spared]))
        return [op if i in spared else next(folded) for i, op in enumerate(ops)]

    chosen = {
        name: FoldSparingVariables if name == "fold_constants" else factory
        for name, factory in optimizers.items()
    }
    tfonnx.compute_const_folding_using_tf = compute_const_folding
    tfonnx.rewrite_constant_fold = rewrite_constant_fold
    try:
        yield chosen
    finally:
        tfonnx.compute_const_folding_using_tf = original
        tfonnx.rewrite_constant_fold = original_rewrite


def _holds_variable(node: Any, keys: set[tuple[str, int, bytes]]) -> bool:
    if not node.is_const():
        return False
    value = node.get_tensor_value(as_list=False)
    value = np.asarray(value)
    if not np.issubdtype(value.dtype, np.floating) or value.size == 0:
        return False
    return _order_free_key(value) in keys
