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
* **Ifs on a constant predicate** (`inline_constant_ifs`, on the TF graph before tf2onnx).
  Autograph makes a Python ``if`` on a tensor a ``tf.cond`` even when the tensor is known
  at trace time (DeBERTa's ``torch_gather``: ``if gather_axis != tf.rank(x) - 1``, then
  ``if pre_roll != 0``), and grappler folds the predicate to a constant but keeps the If.
  The branch then computes at run time what is static (a ``tf.roll`` of ``range(rank)``
  by the cond's output: the perm of a Transpose, which ONNX takes as a constant only). An
  If whose predicate is a constant is replaced by the body of the branch it takes, its
  arguments the If's inputs, and the If an ``IdentityN`` of the body's results (the names
  its readers use stay); grappler runs again, and so on while a predicate folds (one If's
  output is the next one's predicate). Only in a graph or function body where an If has
  a branch that computes such a perm (a Transpose whose perm is no constant of the body,
  there or in a branch of an If it holds): elsewhere Ifs on a constant stay Ifs, the ONNX
  side picks their branch (fxsurgeon/lower/control_flow.py), and grappler, run over their
  inlined bodies, would fold weight-free constants the doors then see anew (inlining
  Swin's window-mask Ifs gave door B 1700 more trainable values).
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


def inline_constant_ifs(graph_def: Any) -> bool:
    """Replace, in place, each If of ``graph_def`` whose predicate is a constant by the
    branch it takes (the module docstring); whether any was."""
    tf = import_tensorflow()
    from tensorflow.python.framework.function_def_to_graph import function_def_to_graph_def

    functions = {f.signature.name: f for f in graph_def.library.function}
    constants = {n.name: n for n in graph_def.node if n.op == "Const"}
    needed = _transposes_under_an_if(graph_def.node, functions)
    taken = [(node, _taken_branch(node, constants, functions)) for node in graph_def.node]
    taken = taken if needed else []
    taken = [(node, f) for node, f in taken if f is not None and node.attr["Tout"].list.type]
    inlined = bool(taken)
    if taken:
        with tf.Graph().as_default():
            tf.import_graph_def(graph_def, name="")  # the library, for the bodies' call ops
            for node, function in taken:
                body, flat = function_def_to_graph_def(function)
                _inline(graph_def, node, function, body, flat)
    for function in graph_def.library.function:  # Ifs in branch and loop bodies
        while _inline_in_function(function, functions):
            inlined = True
    return inlined


def _inline_in_function(outer: Any, functions: dict[str, Any]) -> bool:
    """Inline the first If of the FunctionDef ``outer`` whose predicate is a constant of
    ``outer``; whether there was one. Both bodies name tensors alike (``node:arg:index``,
    an argument by its name), so the branch's nodes are copied under the If's name, its
    arguments the If's inputs, and the If's readers read the branch's results."""
    if not _transposes_under_an_if(outer.node_def, functions):
        return False
    constants = {n.name: n for n in outer.node_def if n.op == "Const"}
    for at, node in enumerate(outer.node_def):
        branch = _taken_branch(node, constants, functions)
        if branch is None:
            continue
        prefix = f"{node.name}/inlined/"
        data = [i for i in node.input if not i.startswith("^")][1:]
        arguments = {a.name: data[k] for k, a in enumerate(branch.signature.input_arg)}

        def renamed(name: str, arguments: dict[str, str] = arguments, prefix: str = prefix) -> str:
            control = name.startswith("^")
            bare = name.lstrip("^")
            if bare in arguments:
                found = arguments[bare]
                return f"^{found.split(':')[0]}" if control else found
            return f"^{prefix}{bare}" if control else prefix + bare

        copies = []
        for inner in branch.node_def:
            added = type(inner)()
            added.CopyFrom(inner)
            added.name = prefix + inner.name
            del added.input[:]
            added.input.extend(renamed(i) for i in inner.input)
            copies.append(added)
        results = {
            f"{node.name}:output:{k}": renamed(branch.ret[o.name])
            for k, o in enumerate(branch.signature.output_arg)
        }
        controls = [i for i in node.input if i.startswith("^")]
        node.op = "NoOp"  # kept for readers of ^If: after the branch's nodes
        node.ClearField("attr")
        del node.input[:]
        node.input.extend([*controls, *(f"^{c.name}" for c in copies)])
        for reader in outer.node_def:
            for k, name in enumerate(reader.input):
                reader.input[k] = results.get(name, name)
        for key, value in outer.ret.items():
            outer.ret[key] = results.get(value, value)
        for offset, added in enumerate(copies):
            outer.node_def.insert(at + offset, added)
        return True
    return False


def _taken_branch(node: Any, constants: dict[str, Any], functions: dict[str, Any]) -> Any:
    """The branch function ``node`` takes when it is an If on one of ``constants``."""
    if node.op not in _IFS:
        return None
    predicate = constants.get(node.input[0].split(":")[0])
    if predicate is None:
        return None
    value = import_tensorflow().make_ndarray(predicate.attr["value"].tensor)
    return functions.get(node.attr[_BRANCHES[0] if value else _BRANCHES[1]].func.name)


def _transposes_under_an_if(nodes: Any, functions: dict[str, Any]) -> bool:
    """Whether an If among ``nodes`` has a branch that computes a perm (`_computes_a_perm`)."""
    return any(
        node.op in _IFS
        and any(
            node.attr[b].func.name in functions
            and _computes_a_perm(functions[node.attr[b].func.name], functions)
            for b in _BRANCHES
        )
        for node in nodes
    )


def _computes_a_perm(function: Any, functions: dict[str, Any]) -> bool:
    """Whether ``function`` transposes by a perm that is no constant of its body, or holds
    an If one of whose branches does."""
    constants = {n.name for n in function.node_def if n.op == "Const"}
    return any(
        node.op == "Transpose" and node.input[1].split(":")[0] not in constants
        for node in function.node_def
    ) or _transposes_under_an_if(function.node_def, functions)


def _inline(graph_def: Any, node: Any, function: Any, body: Any, flat: dict[str, str]) -> None:
    """Add ``body``'s nodes under ``node``'s name, its arguments Identities of ``node``'s
    inputs, and make ``node`` the IdentityN of the body's results."""
    prefix = f"{node.name}/inlined/"
    arguments = [a.name for a in function.signature.input_arg]
    data = [i for i in node.input if not i.startswith("^")]
    control = [i for i in node.input if i.startswith("^")]

    def renamed(name: str) -> str:
        return f"^{prefix}{name[1:]}" if name.startswith("^") else prefix + name

    for inner in body.node:
        added = graph_def.node.add()
        added.CopyFrom(inner)
        added.name = prefix + inner.name
        del added.input[:]
        if inner.name in arguments:  # an argument: the If's input after the predicate
            added.op = "Identity"
            added.ClearField("attr")
            added.attr["T"].type = inner.attr["dtype"].type
            added.input.extend([data[1 + arguments.index(inner.name)], *control])
        else:
            added.input.extend(renamed(i) for i in inner.input)
    results = [
        renamed(flat.get(function.ret[o.name], function.ret[o.name]))
        for o in function.signature.output_arg
    ]
    types = list(node.attr["Tout"].list.type)
    node.op = "IdentityN"
    node.ClearField("attr")
    node.attr["T"].list.type.extend(types)
    del node.input[:]
    node.input.extend(results)


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
