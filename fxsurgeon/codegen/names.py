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
        return new

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
    graph = fx.Graph()
    value_map: dict[fx.Node, fx.Node] = {}
    graph.output(graph.graph_copy(gm.graph, value_map))
    for node in graph.nodes:
        if node.op in ("call_module", "get_attr"):
            node.target = new_path(str(node.target))
    renamed_gm = fx.GraphModule(root, graph)
    # GraphModule copies only what the graph uses: give it every member, classes kept
    renamed_gm._modules = dict(root._modules)
    renamed_gm._parameters = dict(root._parameters)
    renamed_gm._buffers = dict(root._buffers)
    renamed_gm._non_persistent_buffers_set = set(root._non_persistent_buffers_set)
    renamed_gm.training = gm.training
    keys = {k: new_path(k) for k in gm.state_dict(keep_vars=True)}
    renamed_gm.meta = dict(gm.meta)
    keys.update({k: new_path(k) for k, _ in gm.named_modules(remove_duplicate=False) if k})
    renamed_gm.meta[RENAMED_KEY] = {k: v for k, v in keys.items() if k != v}
    origins = gm.meta.get(_TF_NAMES_KEY)
    if isinstance(origins, dict):
        renamed_gm.meta[_TF_NAMES_KEY] = {new_path(k): v for k, v in origins.items()}
    return renamed_gm
