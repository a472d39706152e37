"""Variable assignments inside the exported call, resolved before freezing.

A model may assign a variable in its own ``call`` and read it afterwards (keras.io's
PixelCNN masks its kernel with ``kernel.assign(kernel * mask)`` before the convolution).
Freezing turns each variable into a constant, which an ``AssignVariableOp`` cannot take,
so TF's importer refuses the frozen graph. Within one call, TF's automatic control
dependencies order every op on a variable, and a read that follows an assignment reads
the assigned value. `resolve_assigns` writes that dataflow into the graph: each read
after an assignment becomes an ``Identity`` of the value the last preceding assignment
stored (``AssignAddVariableOp`` / ``AssignSubVariableOp`` store the previous value plus /
minus theirs), and the assignments are dropped. The variable itself stays: what it
held before the call is still read (by ``kernel * mask``), so it is still a weight.

What cannot be written as dataflow is refused with an `InputError` naming the op: an
assignment inside a loop body or a branch (a function of the graph: its value may feed
a later iteration), a read or an assignment not ordered against an assignment of the
same variable, and any other op on an assigned variable (``ResourceGather``).
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError

#: Assignment ops -> the TF op combining the previous value with theirs (None: replace it).
ASSIGN_OPS: dict[str, str | None] = {
    "AssignVariableOp": None,
    "AssignAddVariableOp": "AddV2",
    "AssignSubVariableOp": "Sub",
}


def resolve_assigns(graph_def: Any) -> None:
    """Rewrite the assignments of ``graph_def`` (a function's graph, its variables still
    resource placeholders) as dataflow, in place (see the module docstring)."""
    _refuse_nested_assigns(graph_def)
    nodes = {n.name: n for n in graph_def.node}
    assigns = [n for n in graph_def.node if n.op in ASSIGN_OPS]
    if not assigns:
        return
    by_variable: dict[str, list[Any]] = {}
    for node in assigns:
        by_variable.setdefault(_resource_root(node.input[0], nodes), []).append(node)
    users: dict[str, list[Any]] = {v: [] for v in by_variable}
    for node in graph_def.node:
        if node.op in ASSIGN_OPS or _is_resource_identity(node):
            continue
        for name in node.input:
            if not name.startswith("^") and _resource_root(name, nodes) in users:
                users[_resource_root(name, nodes)].append(node)
    ancestry = _Ancestry(nodes)
    for variable, ordered in by_variable.items():
        _resolve_variable(graph_def, variable, ordered, users[variable], ancestry)
    _drop_assigns(graph_def, {n.name for n in assigns})


def _resolve_variable(
    graph_def: Any, variable: str, assigns: list[Any], users: list[Any], ancestry: _Ancestry
) -> None:
    """Point every read of ``variable`` after one of its ``assigns`` at the value stored."""
    ordered = sorted(assigns, key=lambda a: sum(ancestry.precedes(b, a) for b in assigns))
    for first, second in zip(ordered, ordered[1:], strict=False):
        if not ancestry.precedes(first, second):
            raise InputError(
                f"{first.op} {first.name!r} and {second.op} {second.name!r} assign the "
                f"variable {variable!r} in no fixed order: the value read after them is unknown"
            )
    dtype = assigns[0].attr["dtype"].type
    values: list[str] = []  # values[i]: the variable's value after ordered[i]
    for i, node in enumerate(ordered):
        combine = ASSIGN_OPS[node.op]
        if combine is None:
            values.append(node.input[1])
            continue
        previous = values[i - 1] if i else _initial_read(graph_def, node, dtype)
        combined = graph_def.node.add(name=f"{node.name}/value", op=combine)
        combined.input.extend([previous, node.input[1]])
        combined.attr["T"].type = dtype
        values.append(combined.name)
    for user in users:
        if user.op != "ReadVariableOp":
            raise InputError(
                f"{user.op} {user.name!r} uses the variable {variable!r}, which the exported "
                "call assigns: only ReadVariableOp reads of an assigned variable are supported"
            )
        before = [ancestry.precedes(a, user) for a in ordered]
        for assign, is_before in zip(ordered, before, strict=True):
            if not is_before and not ancestry.precedes(user, assign):
                raise InputError(
                    f"ReadVariableOp {user.name!r} is not ordered against {assign.op} "
                    f"{assign.name!r} of the variable {variable!r}: the value it reads is unknown"
                )
        if any(before):
            last = max(i for i, b in enumerate(before) if b)
            controls = [n for n in user.input if n.startswith("^")]
            user.op = "Identity"
            user.ClearField("attr")
            user.attr["T"].type = dtype
            del user.input[:]
            user.input.extend([values[last], *controls])


def _initial_read(graph_def: Any, assign: Any, dtype: int) -> str:
    """A new read of ``assign``'s variable: its value before the call."""
    read = graph_def.node.add(name=f"{assign.name}/initial_value", op="ReadVariableOp")
    read.input.append(assign.input[0])
    read.attr["dtype"].type = dtype
    return read.name


def _drop_assigns(graph_def: Any, dropped: set[str]) -> None:
    """Remove the ``dropped`` nodes; a control edge from one becomes edges from its own
    control inputs (the order it kept without it)."""
    controls = {n.name: list(n.input) for n in graph_def.node if n.name in dropped}

    def kept_controls(name: str) -> list[str]:
        if name[1:] not in controls:
            return [name]
        inherited = [i for i in controls[name[1:]] if i.startswith("^")]
        return [c for i in inherited for c in kept_controls(i)]

    kept = [n for n in graph_def.node if n.name not in dropped]
    for node in kept:
        inputs: list[str] = []
        for name in node.input:
            for replaced in kept_controls(name) if name.startswith("^") else [name]:
                if replaced not in inputs or not replaced.startswith("^"):
                    inputs.append(replaced)
        del node.input[:]
        node.input.extend(inputs)
    del graph_def.node[:]
    graph_def.node.extend(kept)


class _Ancestry:
    """Whether one node runs before another: an ancestor by data or control edges."""

    def __init__(self, nodes: dict[str, Any]) -> None:
        self._nodes = nodes
        self._ancestors: dict[str, set[str]] = {}

    def precedes(self, first: Any, second: Any) -> bool:
        return first.name in self._of(second.name)

    def _of(self, name: str) -> set[str]:
        if name not in self._ancestors:
            seen: set[str] = set()
            stack = [_node_name(i) for i in self._nodes[name].input]
            while stack:
                current = stack.pop()
                if current in seen or current not in self._nodes:
                    continue
                seen.add(current)
                stack.extend(_node_name(i) for i in self._nodes[current].input)
            self._ancestors[name] = seen
        return self._ancestors[name]


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def _is_resource_identity(node: Any) -> bool:
    from tensorflow.core.framework import types_pb2

    return (
        node.op == "Identity" and "T" in node.attr and node.attr["T"].type == types_pb2.DT_RESOURCE
    )


def _resource_root(tensor: str, nodes: dict[str, Any]) -> str:
    """The node a resource tensor comes from, through ``Identity`` ops (inlined calls)."""
    node = nodes.get(_node_name(tensor))
    while node is not None and _is_resource_identity(node):
        node = nodes.get(_node_name(node.input[0]))
    return node.name if node is not None else _node_name(tensor)


def _refuse_nested_assigns(graph_def: Any) -> None:
    """An assignment inside a function that the graph calls (a loop body or a branch that
    inlining kept) cannot be written as the graph's dataflow."""
    functions = {f.signature.name: f for f in graph_def.library.function}
    called: list[str] = []
    pending = [n for n in graph_def.node]
    while pending:
        node = pending.pop()
        for attr in node.attr.values():
            names = [attr.func.name] + [f.name for f in attr.list.func]
            for name in names:
                if name in functions and name not in called:
                    called.append(name)
                    pending.extend(functions[name].node_def)
    for name in called:
        for node in functions[name].node_def:
            if node.op in ASSIGN_OPS:
                raise InputError(
                    f"{node.op} {node.name!r} in {name!r} assigns a variable inside a loop body "
                    "or a branch: its value may feed a later iteration, which a frozen graph "
                    "cannot hold; assign outside the control flow"
                )
