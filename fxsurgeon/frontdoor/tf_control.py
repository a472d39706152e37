"""tf2onnx's wiring of TF control-flow functions (If branches, loop bodies), corrected.

* **A branch that returns one tensor twice.** tf2onnx renames every node of a branch
  function into the If's scope (``controlflow.prefix_graph``) and points the branch's
  outputs at the renamed tensors, but only the first output naming a tensor: a branch
  that returns the same tensor twice (Hugging Face Funnel's ``if pooling_flag:``, whose
  not-taken side returns the hidden states as several of the cond's outputs) keeps the
  old name for the others, a tensor no node makes, and the If fails to convert ("cannot
  find node by output id"). Every output naming the tensor is renamed alike, each
  after the first through an ``Identity`` of its own (an ONNX graph's outputs are
  distinct names).
* **Branch arguments of unknown rank** (`refine_branch_shapes`, on the TF graph before
  tf2onnx). tf2onnx builds each branch function with the shapes its arguments declare
  (``_output_shapes``); grappler's region-specialised branches declare unknown ranks,
  and then no op of the branch knows its input's rank: Funnel's pooling branch
  (``if pooling_flag:`` over a dynamic sequence length) reached tf2onnx's AvgPool, which
  cannot pad an input of unknown rank. A branch argument is the If's input after the
  predicate, so its declared shape is refined by the shapes of those inputs (for a
  branch that several Ifs call, the most specific shape covering all of theirs); a
  declared shape that contradicts it is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._compat import import_tensorflow


def _prefix_every_output(original: Callable[[Any, str], None]) -> Callable[[Any, str], None]:
    """``prefix_graph`` that renames each repeated output of ``g`` as its first occurrence
    and gives it an ``Identity`` of its own."""

    def prefix_graph(g: Any, scope: str) -> None:
        before = list(g.outputs)
        original(g, scope)
        for j, name in enumerate(before):
            first = before.index(name)
            if first != j:  # ONNX names each output of a graph once
                copy = g.make_node("Identity", [g.outputs[first]], op_name_scope=scope)
                g.outputs[j] = copy.output[0]

    return prefix_graph


#: TF ops whose branch functions take the op's inputs after the first (the predicate)
_IFS = frozenset({"If", "StatelessIf"})
_BRANCHES = ("then_branch", "else_branch")


def refine_branch_shapes(graph_def: Any) -> None:
    """Refine, in place, the declared argument shapes of the branches of ``graph_def``'s
    Ifs by the shapes of the Ifs' inputs (the module docstring)."""
    functions = {f.signature.name: f for f in graph_def.library.function}
    calls: dict[str, list[Any]] = {}
    for node in graph_def.node:
        if node.op in _IFS:
            for attr in _BRANCHES:
                if node.attr[attr].func.name in functions:
                    calls.setdefault(node.attr[attr].func.name, []).append(node.name)
    if not any(_declared_shapes(functions[f]) for f in calls):
        return
    tf = import_tensorflow()
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(graph_def, name="")
    for name, callers in calls.items():
        declared = _declared_shapes(functions[name])
        inputs = [graph.get_operation_by_name(c).inputs[1:] for c in callers]
        for i, proto in declared.items():
            shape = inputs[0][i].shape
            for other in inputs[1:]:
                shape = shape.most_specific_common_supertype([other[i].shape])
            own = tf.TensorShape(proto)
            if shape is not None and own.is_compatible_with(shape):
                proto.CopyFrom(own.merge_with(shape).as_proto())


def _declared_shapes(function: Any) -> dict[int, Any]:
    """Argument index -> the shape proto a function declares for it, where not fully known."""
    out = {}
    for i in range(len(function.signature.input_arg)):
        if i not in function.arg_attr or "_output_shapes" not in function.arg_attr[i].attr:
            continue
        shapes = function.arg_attr[i].attr["_output_shapes"].list.shape
        if len(shapes) == 1 and (shapes[0].unknown_rank or any(d.size < 0 for d in shapes[0].dim)):
            out[i] = shapes[0]
    return out


def corrections() -> list[tuple[dict[str, Any], str, Any]]:
    """(module namespace, name, corrected function) of each correction, to patch in."""
    from tf2onnx.onnx_opset import controlflow

    return [(controlflow.__dict__, "prefix_graph", _prefix_every_output(controlflow.prefix_graph))]
