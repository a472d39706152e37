"""Control flow in model.py: subgraphs (torch.cond branches, loop bodies) and the runtime helpers.

optimize lowers ONNX If and Loop (`fxsurgeon.lower.control_flow`, `fxsurgeon.lower.loop`) to
calls that take a GraphModule as an argument, ``torch.cond(pred, if_then_1, if_else_1, operands)``
and ``run_loop(loop_body_1, steps, carried, scans, *values)``, read by ``get_attr`` nodes, and to
small functions that unpack their results (``_first``, ``_item``). model.py writes them so:

* each subgraph (a module of the tree that is itself a GraphModule) becomes a class of its own,
  generated as the top-level model is (its module tree, its constants, its repeated blocks, the
  subgraphs nested in it), instantiated where the GraphModule sits (``self.if_then_1 =
  IfThen1()``, so the state dict keys are the same) and passed where the graph passed it:
  ``torch.cond(pred, self.if_then_1, self.if_else_1, (x, w))``;
* the fxsurgeon functions those calls need (`runtime_helpers`) are copied into model.py: their
  own source, type annotations dropped (they name fxsurgeon's imports), checked to use nothing
  but torch, math, operator and builtins. model.py still imports nothing of fxsurgeon, and the
  copy is the very code the GraphModule runs;
* optimize's graph calls `run_cond` (``fxsurgeon.lower.control_flow``): the same branch, run
  directly when eager (eager torch.cond runs through torch._dynamo), torch.cond itself under
  torch.compile. A graph that still calls torch.cond gets run_cond in model.py too.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn

from .output import CodegenError

#: The names model.py gives the copied helpers; no variable of the generated code may take them.
HELPER_NAMES = (
    "run_cond",
    "run_loop",
    "run_while",
    "run_while_tensors",
    "_first",
    "_item",
    "compare_sizes",
    "follow_dtype",
    "size_branch",
    "negate_size",
)


def runtime_helpers() -> dict[int, tuple[str, Callable[..., Any], Callable[..., Any]]]:
    """id(function) -> (its name in model.py, the function, the function model.py carries a
    copy of), for the functions lowerings put in graphs that model.py cannot import."""
    from ..lower import control_flow, dtypes, loop, while_loop

    table: dict[int, tuple[str, Callable[..., Any], Callable[..., Any]]] = {
        id(torch.cond): ("run_cond", torch.cond, control_flow.run_cond)
    }
    functions: tuple[Callable[..., Any], ...] = (
        control_flow.run_cond,
        loop.run_loop,
        while_loop.run_while,
        while_loop.run_while_tensors,
        control_flow._first,
        control_flow._item,
        control_flow.compare_sizes,
        dtypes.follow_dtype,
        control_flow.size_branch,
        control_flow.negate_size,
    )
    for function in functions:
        table[id(function)] = (function.__name__, function, function)
    assert {name for name, _, _ in table.values()} == set(HELPER_NAMES)
    return table


def subgraph_paths(graph: fx.Graph, modules: dict[str, nn.Module]) -> list[str]:
    """Paths of the GraphModules this graph reads as values (``get_attr``: the subgraphs it
    passes to torch.cond or run_loop) or calls (``call_module``). Those nested in them are
    theirs."""
    reads = {str(n.target) for n in graph.nodes if n.op in ("get_attr", "call_module")}
    return sorted(p for p in reads if isinstance(modules.get(p), fx.GraphModule))


def subgraph_role(graph: fx.Graph, path: str) -> str:
    """What the graph does with the subgraph at ``path``, in words, for its class docstring."""
    users = [u for n in graph.nodes if n.op == "get_attr" and n.target == path for u in n.users]
    targets = {u.target for u in users}
    names = {getattr(t, "__name__", "") for t in targets}
    if names & {"cond", "size_branch"}:
        position = next(u.args.index(n) for u in users for n in u.args if _reads(n, path))
        branch = "true" if position == 1 else "false"
        return f"The {branch} branch of a torch.cond (an ONNX If): operands -> outputs."
    loops = names & {"run_loop", "run_while", "run_while_tensors"}
    if loops:
        return (
            f"The body of an ONNX Loop, run by {min(loops)}.\n\n"
            "(step, condition, *carried, *outer) -> (condition, *carried, *scans)"
        )
    return "A subgraph the model calls."


def _reads(node: Any, path: str) -> bool:
    return isinstance(node, fx.Node) and node.op == "get_attr" and node.target == path


def function_source(function: Callable[..., Any], allowed: set[str]) -> str:
    """The source of a module-level function, its type annotations removed, for model.py.

    Raises CodegenError if it reads a global other than builtins and ``allowed``.
    """
    source = textwrap.dedent(inspect.getsource(function))
    tree = ast.parse(source)
    definition = tree.body[0]
    if not isinstance(definition, ast.FunctionDef):
        raise CodegenError(f"cannot copy {function.__qualname__} into model.py: not a function")
    raw = source.encode()  # ast's columns count UTF-8 bytes
    spans: list[tuple[int, int]] = []
    offsets = _line_offsets(raw)

    def start(node: ast.AST) -> int:
        return offsets[node.lineno - 1] + node.col_offset  # type: ignore[attr-defined]

    def end(node: ast.AST) -> int:
        line, col = getattr(node, "end_lineno", None), getattr(node, "end_col_offset", None)
        assert line is not None and col is not None  # parsed source has positions
        return offsets[line - 1] + col

    for node in ast.walk(definition):
        if isinstance(node, ast.arg) and node.annotation is not None:
            spans.append((start(node) + len(node.arg.encode()), end(node.annotation)))
        elif isinstance(node, ast.AnnAssign):
            if node.value is None:
                raise CodegenError(f"cannot copy {function.__qualname__}: a bare annotation")
            spans.append((end(node.target), end(node.annotation)))
    returns = definition.returns
    if returns is not None:
        arrow = raw.rindex(b"->", 0, start(returns))
        spans.append((len(raw[:arrow].rstrip()), end(returns)))
    for first, last in sorted(spans, reverse=True):
        raw = raw[:first] + raw[last:]
    source = raw.decode()
    missing = _globals_read(ast.parse(source)) - allowed - set(dir(builtins))
    if missing:
        raise CodegenError(
            f"cannot copy {function.__qualname__} into model.py: it uses {sorted(missing)} "
            f"from {function.__module__}"
        )
    return source


def _line_offsets(raw: bytes) -> list[int]:
    offsets, total = [], 0
    for line in raw.splitlines(keepends=True):
        offsets.append(total)
        total += len(line)
    return offsets


def _globals_read(tree: ast.AST) -> set[str]:
    """Names read but never bound in ``tree`` (bindings anywhere count: a conservative check
    for functions, which bind their locals before reading them)."""
    defined: set[str] = set()
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else defined).add(node.id)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
    return used - defined
