"""Module, parameter and buffer names model.py can write: `with_identifier_names`.

An ONNX graph names things after its nodes (``model_1/conv1_relu/Relu6``), and
modules that optimize leaves keep those names. model.py writes every member as
``self.<name>``, so each name component must be a Python identifier. Two kinds
of component are kept as they are: identifiers, and decimal indices (``layer.0``,
the names ``nn.ModuleList`` gives; model.py indexes them). Every other
component is rewritten, deterministically: snake case with runs of other
characters as one ``_`` (``model_1_conv1_relu_relu6``), ``x_`` before a leading
digit, ``_`` after a keyword, and ``_1``, ``_2``... after a name a sibling
already has (members keep their order; unchanged names are reserved first).
"""

from __future__ import annotations

import keyword
from typing import Any

from torch import fx, nn

from .literals import _snake

#: ``gm.meta`` key of the renaming made by `with_identifier_names`: old -> new module path
#: or state key.
RENAMED_KEY = "fxsurgeon.codegen_renamed"
_TF_NAMES_KEY = "fxsurgeon.tf_names"


def _keeps(name: str) -> bool:
    return (name.isidentifier() and not keyword.iskeyword(name)) or name.isdecimal()


def _member_names(module: nn.Module) -> list[str]:
    return [*module._parameters, *module._buffers, *module._modules]


def _renames(module: nn.Module) -> dict[str, str]:
    """old -> new for the direct members of ``module`` whose names need a change."""
    names = _member_names(module)
    taken = {n for n in names if _keeps(n)}
    out: dict[str, str] = {}
    for name in names:
        if _keeps(name) or name in out:
            continue
        base = _snake(name)
        base = f"{base}_" if keyword.iskeyword(base) else base
        new, i = base, 0
        while new in taken or hasattr(nn.Module, new):
            i += 1
            new = f"{base}_{i}"
        taken.add(new)
        out[name] = new
    return out


def _with_graph(members: nn.Module, graph: fx.Graph, rename: Any) -> fx.GraphModule:
    """A GraphModule with the members of ``members`` (classes kept) running a copy of
    ``graph`` whose module and attribute targets are ``rename(target)``."""
    copied = fx.Graph()
    copied.output(copied.graph_copy(graph, {}))
    for node in copied.nodes:
        if node.op in ("call_module", "get_attr"):
            node.target = rename(str(node.target))
    made = fx.GraphModule(members, copied)
    # GraphModule copies only what the graph uses: give it every member, classes kept
    made._modules = dict(members._modules)
    made._parameters = dict(members._parameters)
    made._buffers = dict(members._buffers)
    made._non_persistent_buffers_set = set(members._non_persistent_buffers_set)
    made.training = members.training
    return made


def with_identifier_names(gm: fx.GraphModule) -> fx.GraphModule:
    """``gm``, or a copy (sharing its tensors) whose member names model.py can write.

    The copy's ``meta`` has the renamed state keys under `RENAMED_KEY` and the
    parameter origins (``fxsurgeon.tf_names``) under the new names. ``gm``
    itself is never changed.
    """
    plans = {path: _renames(m) for path, m in gm.named_modules(remove_duplicate=False)}
    if not any(plans.values()):
        return gm
    copies: dict[int, nn.Module] = {}

    def rebuilt(module: nn.Module, path: str) -> nn.Module:
        if id(module) in copies:
            return copies[id(module)]
        plan = plans.get(path, {})
        new = module.__class__.__new__(module.__class__)
        new.__dict__ = dict(module.__dict__)
        new._parameters = {plan.get(k, k): v for k, v in module._parameters.items()}
        new._buffers = {plan.get(k, k): v for k, v in module._buffers.items()}
        new._non_persistent_buffers_set = {
            plan.get(k, k) for k in module._non_persistent_buffers_set
        }
        copies[id(module)] = new
        new._modules = {
            plan.get(k, k): rebuilt(c, f"{path}.{k}" if path else k) if c is not None else None
            for k, c in module._modules.items()
        }
        if isinstance(module, fx.GraphModule) and _renamed_under(path):
            # a subgraph (a torch.cond branch, a loop body): its own graph names its members
            prefix = new_path(path) + "."
            new = _with_graph(
                new, module.graph, lambda t: new_path(f"{path}.{t}").removeprefix(prefix)
            )
            copies[id(module)] = new
        return new

    def _renamed_under(path: str) -> bool:
        return any(plan and (p == path or p.startswith(path + ".")) for p, plan in plans.items())

    def new_path(dotted: str) -> str:
        parts, owner, out = dotted.split("."), "", []
        for part in parts:
            renamed = plans.get(owner, {}).get(part, part)
            out.append(renamed)
            owner = f"{owner}.{part}" if owner else part
        return ".".join(out)

    root = nn.Module()  # the new root's members, renamed, in gm's order
    plan = plans[""]
    for key, param in gm._parameters.items():
        root._parameters[plan.get(key, key)] = param
    for key, value in gm._buffers.items():
        root._buffers[plan.get(key, key)] = value
    root._non_persistent_buffers_set = {plan.get(k, k) for k in gm._non_persistent_buffers_set}
    for key, child in gm._modules.items():
        root._modules[plan.get(key, key)] = rebuilt(child, key) if child is not None else None
    renamed_gm = _with_graph(root, gm.graph, new_path)
    renamed_gm.training = gm.training
    keys = {k: new_path(k) for k in gm.state_dict(keep_vars=True)}
    renamed_gm.meta = dict(gm.meta)
    keys.update({k: new_path(k) for k, _ in gm.named_modules(remove_duplicate=False) if k})
    renamed_gm.meta[RENAMED_KEY] = {k: v for k, v in keys.items() if k != v}
    origins = gm.meta.get(_TF_NAMES_KEY)
    if isinstance(origins, dict):
        renamed_gm.meta[_TF_NAMES_KEY] = {new_path(k): v for k, v in origins.items()}
    return renamed_gm
