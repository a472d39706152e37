"""Parameters: every TF variable back as one named ``nn.Parameter`` (or buffer).

onnx2torch bakes every initializer into a buffer ``initializers.onnx_initializer_N``
(one per *use*). This pass, run after fusion, decides for each weight constant
of the graph what it was in TensorFlow and rebuilds the model around that:

* trainable TF variable      -> ``nn.Parameter`` (requires_grad=True);
* non-trainable TF variable  -> persistent buffer (BatchNorm moving mean/var);
* anything else              -> structural constant: a non-persistent buffer.

One parameter per TF variable: the uses of one initializer share it, and an
initializer that tf2onnx merged from several equal variables is split back,
each use taking the variable whose name scope matches its own. A transpose of
a weight (``F.linear(x, w.t())``) is folded into the stored layout, so a Dense
kernel ``[in, out]`` is stored Linear-style ``[out, in]``.

Consumers with a module twin become modules (``F.linear`` -> ``nn.Linear``,
``F.layer_norm`` -> ``nn.LayerNorm``, convolutions, BatchNorm, embedding),
placed in a hierarchy rebuilt from the TF name scopes, so ``state_dict`` keys
read ``vit.encoder.layer_0.attention.attention.query.weight``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .errors import FxSurgeonError
from .nn import KerasBatchNorm
from .source import LAYOUTS

__all__ = [
    "restore_parameters",
    "parameter_origins",
    "ParameterOrigin",
    "torch_name",
    "TF_NAMES_KEY",
]

TF_NAMES_KEY = "fxsurgeon.tf_names"

# (function, argument position) -> attribute of the module twin.
_ROLES: dict[Any, dict[int, str]] = {
    F.linear: {1: "weight", 2: "bias"},
    F.layer_norm: {2: "weight", 3: "bias"},
    F.conv1d: {1: "weight", 2: "bias"},
    F.conv2d: {1: "weight", 2: "bias"},
    F.conv3d: {1: "weight", 2: "bias"},
    F.batch_norm: {1: "running_mean", 2: "running_var", 3: "weight", 4: "bias"},
    F.embedding: {1: "weight"},
}
_BUFFER_ROLES = {"running_mean", "running_var"}
_STRUCTURAL = "structural constant (no TF variable holds it)"

# TF leaf names -> torch attribute names.
_LEAF_RENAMES = {
    "kernel": "weight",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
    "embeddings": "weight",
}

# Scope components that name TF ops, not layers (dropped from derived names).
_OP_COMPONENTS = re.compile(
    r"^(ReadVariableOp.*|Tensordot.*|MatMul.*|BiasAdd.*|Conv2D.*|Conv1D.*|Conv3D.*|"
    r"batchnorm|FusedBatchNorm.*|mul.*|add.*|sub.*|Reshape.*|transpose.*|Cast.*|"
    r"embedding_lookup.*|GatherV2.*|Gather.*|Identity.*|convolution.*|Squeeze.*|ExpandDims.*|"
    r"BatchNorm.*|Gemm.*|Conv.*)$"
)


@dataclass(frozen=True)
class ParameterOrigin:
    """Where a parameter/buffer of the optimized model came from.

    ``tf_name`` is the TF variable (or, without a TF model, the ONNX
    initializer); ``perm`` the axis permutation with
    ``torch_value == tf_value.permute(perm)`` (None when unknown, e.g. no TF
    model to compare with); ``onnx_initializer`` the ONNX tensor.
    """

    tf_name: str
    onnx_initializer: str
    perm: tuple[int, ...] | None
    trainable: bool


def parameter_origins(module: fx.GraphModule) -> dict[str, ParameterOrigin]:
    """Every parameter/buffer name of an optimized model -> its TF variable (and layout)."""
    origins = getattr(module, "meta", {}).get(TF_NAMES_KEY)
    if origins is None:
        raise ValueError("this module was not made by fxsurgeon.optimize")
    return dict(origins)


@dataclass
class _Use:
    get_attr: fx.Node
    end: fx.Node  # the node whose value the consumer sees (after absorbed permutes)
    perm: tuple[int, ...]  # end value == initializer value.permute(perm)
    value: torch.Tensor  # what the consumer sees: the initializer permuted by `perm`
    raw_shape: tuple[int, ...]  # the initializer's own shape
    initializer: str
    scope: str
    consumer: fx.Node | None = None
    role: str | None = None


@dataclass
class _Variable:
    key: tuple
    name: str  # dotted torch name
    tf_name: str
    initializer: str
    kind: str  # "parameter" | "buffer"
    uses: list[_Use] = field(default_factory=list)
    module_class: Any = None


def torch_name(tf_name: str, drop_prefix: str = "") -> str:
    """``tf_vi_t/vit/encoder/layer_._0/attention/query/kernel:0`` -> ``vit.encoder.layer_0.attention.query.weight``."""
    name = tf_name.split(":")[0]
    if drop_prefix and name.startswith(drop_prefix + "/"):
        name = name[len(drop_prefix) + 1 :]
    parts = [_identifier(p) for p in name.split("/") if p]
    if parts:
        parts[-1] = _LEAF_RENAMES.get(parts[-1], parts[-1])
    return ".".join(parts)


def _identifier(part: str) -> str:
    part = re.sub(r"[^0-9a-zA-Z_]+", "_", part.replace(".", ""))
    part = re.sub(r"_+", "_", part).strip("_") or "_"
    return f"_{part}" if part[0].isdigit() else part


def _common_prefix(names: list[str]) -> str:
    """The first scope component, when every name shares it (the model's own scope)."""
    firsts = {n.split("/")[0] for n in names if "/" in n}
    if len(firsts) == 1 and all("/" in n for n in names):
        return firsts.pop()
    return ""


def _absorb_permutes(node: fx.Node) -> tuple[fx.Node, tuple[int, ...]]:
    """Follow single-user transposes after a get_attr; return the end and the permutation."""
    rank = len(node.meta.get("fxs_shape", ()))
    perm = tuple(range(rank))
    end = node
    while len(end.users) == 1:
        user = next(iter(end.users))
        step = _permutation_of(user, rank)
        if step is None or user.args[0] is not end:
            break
        perm = tuple(perm[i] for i in step)
        end = user
    return end, perm


def _permutation_of(node: fx.Node, rank: int) -> tuple[int, ...] | None:
    target, args = node.target, node.args
    if (
        node.op == "call_function"
        and target in (torch.t,)
        or (node.op == "call_method" and target == "t")
    ):
        return (1, 0) if rank == 2 else None
    if (node.op == "call_function" and target is torch.permute) or (
        node.op == "call_method" and target == "permute"
    ):
        dims = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else args[1:]
        return tuple(d % rank for d in dims) if len(dims) == rank else None
    if (node.op == "call_function" and target is torch.transpose) or (
        node.op == "call_method" and target == "transpose"
    ):
        a, b = (d % rank for d in args[1:3])
        perm = list(range(rank))
        perm[a], perm[b] = perm[b], perm[a]
        return tuple(perm)
    return None


def _consumer_role(end: fx.Node) -> tuple[fx.Node | None, str | None]:
    if len(end.users) != 1:
        return None, None
    user = next(iter(end.users))
    roles = _ROLES.get(user.target) if user.op == "call_function" else None
    if not roles:
        return user, None
    positions = [i for i, a in enumerate(user.args) if a is end]
    if len(positions) != 1 or positions[0] not in roles:
        return user, None
    return user, roles[positions[0]]


def _scope_of(use_node: fx.Node) -> str:
    """The TF scope of the ONNX node that used a constant, op components dropped.

    onnx2torch names modules after the ONNX node with ``.`` made ``/``
    (``layer_._0`` -> ``layer_/_0``); `_scope_parts` splits TF names the same way.
    """
    onnx_node = use_node.meta.get("fxsurgeon.onnx_node", "")
    parts = [p for p in onnx_node.split("/") if p]
    while parts and _OP_COMPONENTS.match(parts[-1]):
        parts.pop()
    return "/".join(parts)


def _scope_parts(name: str) -> list[str]:
    """``a/layer_._0/query/kernel:0`` -> ``[a, layer_, _0, query, kernel]`` (the split onnx2torch makes)."""
    return [p for p in name.split(":")[0].replace(".", "/").split("/") if p]


_CALL_SUFFIX = re.compile(r"_\d+$")


def _scope_score(variable_name: str, scope: str, model_name: str = "") -> int:
    """How well a variable's layer scope matches the scope of one use: the longest
    run of equal consecutive components, wherever it sits in either name.

    Variable names may lack the model's own scope (``dense_b/kernel:0`` used in
    ``twin/dense_b/MatMul``), so the run is not anchored at the start. Keras 3
    enters every layer's name scope with a call suffix (layer ``hidden_1``
    runs under ``mlp_1/hidden_1_1``): when the use's first component is the
    model name plus such a suffix, one suffix is stripped from each component.
    """
    layer = _scope_parts(variable_name)[:-1]
    used = _scope_parts(scope)
    if model_name and used and _CALL_SUFFIX.sub("", used[0]) == model_name != used[0]:
        used = [_CALL_SUFFIX.sub("", p) for p in used]
    best = 0
    run = [0] * (len(used) + 1)
    for a in layer:
        previous = run
        run = [0] * (len(used) + 1)
        for j, b in enumerate(used, start=1):
            if a == b:
                run[j] = previous[j - 1] + 1
                best = max(best, run[j])
    return best


def _collect_uses(gm: fx.GraphModule) -> list[_Use]:
    uses = []
    for node in list(gm.graph.nodes):
        if node.op != "get_attr" or "fxsurgeon.initializer" not in node.meta:
            continue
        value = _fetch(gm, node.target)
        if not value.is_floating_point():
            continue
        end, perm = _absorb_permutes(node)
        consumer, role = _consumer_role(end)
        uses.append(
            _Use(
                get_attr=node,
                end=end,
                perm=perm,
                value=value.permute(perm) if perm != tuple(range(value.dim())) else value,
                raw_shape=tuple(value.shape),
                initializer=node.meta["fxsurgeon.initializer"],
                scope=_scope_of(node),
                consumer=consumer,
                role=role,
            )
        )
    return uses


def _fetch(gm: nn.Module, target: str) -> torch.Tensor:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass
class ParameterReport:
    trainable: int = 0
    origins: dict[str, ParameterOrigin] = field(default_factory=dict)
    not_trainable: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def restore_parameters(gm: fx.GraphModule, source: Any) -> ParameterReport:
    """Rebuild `gm` (in place; `optimize` owns it) around named parameters."""
    report = ParameterReport()
    uses = _collect_uses(gm)
    variable_map = getattr(source, "variable_map", None)
    tf_values = _tf_values(source)
    momenta = _keras_momenta(source)
    model_name = str(getattr(getattr(source, "tf_model", None), "name", "") or "")

    variables = _assign_variables(uses, variable_map, report, model_name)
    _name_variables(variables, model_name)
    for var in variables.values():
        stored, perm = _storage(var, variable_map)
        tf_value = tf_values.get(var.tf_name)
        if perm is not None and tf_value is not None and not _equal(tf_value.permute(perm), stored):
            raise FxSurgeonError(
                f"params phase: {var.name} does not equal TF variable {var.tf_name} permuted by "
                f"{perm} (the variable map does not describe this initializer)"
            )
        report.origins[var.name] = ParameterOrigin(
            var.tf_name, var.initializer, perm, var.kind == "parameter"
        )
        tensor: torch.Tensor = nn.Parameter(stored) if var.kind == "parameter" else stored
        _install(gm, var.name, tensor)
        for use in var.uses:
            _rewire(gm, use, var, stored, perm, variable_map)

    # Consumers whose weights are all parameters of one scope become modules.
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in _ROLES:
            _modularize(gm, node, momenta, report)

    gm.graph.eliminate_dead_code()
    _hide_structural_constants(gm, report)
    _drop_unused(gm)
    gm.graph.lint()
    gm.recompile()
    report.trainable = sum(p.numel() for p in gm.parameters() if p.requires_grad)
    gm.meta[TF_NAMES_KEY] = report.origins
    _report_missing_variables(source, report)
    return report


def _assign_variables(
    uses: list[_Use], variable_map, report: ParameterReport, model_name: str = ""
) -> dict[tuple, _Variable]:
    """Group uses into variables: by TF variable when known, else by initializer and scope.

    An initializer that holds several equal TF variables (tf2onnx's
    ``merge_duplication`` keeps one of them) is split back: each use takes the
    variable whose layer scope best matches its own (`_scope_score`). A tie is
    a guess, and the report says so.
    """
    variables: dict[tuple, _Variable] = {}
    split_initializers: dict[str, set[str]] = defaultdict(set)
    for use in uses:
        if variable_map is not None:
            origins = variable_map.get(use.initializer) or []
            if not origins:
                continue  # structural constant
            scores = [_scope_score(o.variable.name, use.scope, model_name) for o in origins]
            best = origins[scores.index(max(scores))]
            ties = {
                o.variable.name for o, sc in zip(origins, scores, strict=True) if sc == max(scores)
            }
            if len(ties) > 1:
                report.notes.append(
                    f"initializer {use.initializer} holds {len(ties)} equal TF variables "
                    f"({', '.join(sorted(ties))}) and its use in {use.scope or '?'} matches "
                    f"none better than another: took {best.variable.name}"
                )
            key = ("tf", best.variable.name)
            kind = "parameter" if best.variable.trainable else "buffer"
            tf_name = best.variable.name
        else:
            if not _looks_like_variable(use):
                continue
            kind = "buffer" if use.role in _BUFFER_ROLES else "parameter"
            key = ("onnx", use.initializer, use.scope)
            split_initializers[use.initializer].add(use.scope)
            tf_name = use.initializer
        var = variables.get(key)
        if var is None:
            var = variables[key] = _Variable(key, "", tf_name, use.initializer, kind)
        var.uses.append(use)
    for initializer, scopes in split_initializers.items():
        if len(scopes) > 1:
            report.notes.append(
                f"initializer {initializer} is used in {len(scopes)} scopes ({', '.join(sorted(scopes))}) "
                f"and no TF model says whether they share one variable: split into {len(scopes)} parameters"
            )
    return variables


def _origin(variable_map, initializer: str, tf_name: str):
    """The `InitializerOrigin` saying how ``initializer`` holds the TF variable ``tf_name``."""
    for origin in (variable_map or {}).get(initializer, ()):
        if origin.variable.name == tf_name:
            return origin
    return None


def _tf_layout(origin) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(L, shape): the initializer holds ``tf_value.permute(L)`` (of that shape), maybe reshaped."""
    shape = tuple(origin.variable.shape)
    perm = LAYOUTS[origin.layout] or tuple(range(len(shape)))
    return perm, tuple(shape[i] for i in perm)


def _storage(var: _Variable, variable_map) -> tuple[torch.Tensor, tuple[int, ...] | None]:
    """The value to store for a variable, and its permutation of the TF value (None: unknown).

    The first use's layout is stored (a transpose in front of ``F.linear``
    folds into a Linear-style ``[out, in]`` weight). An initializer that holds
    the TF value in another shape (tf2onnx folds an ``ExpandDims``: ViT's
    ``cls_token`` ``[1, 1, 32]`` arrives as ``[1, 1, 1, 32]``) is stored in
    TF's shape and reshaped where it is used, unless a module consumer
    (a depthwise Conv's ``[C*M, 1, H, W]``) needs the ONNX shape.
    """
    first = var.uses[0]
    value = first.value.detach().clone().contiguous()
    origin = _origin(variable_map, first.initializer, var.tf_name) if var.key[0] == "tf" else None
    if origin is None:
        return value, None
    layout, laid_shape = _tf_layout(origin)
    if first.raw_shape == laid_shape:
        return value, tuple(layout[i] for i in first.perm)
    if any(u.role is not None for u in var.uses):
        return value, None
    raw = first.value.permute(_inverse(first.perm))
    return raw.reshape(laid_shape).detach().clone().contiguous(), layout


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.equal(a.to(b.dtype), b))


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(perm.index(i) for i in range(len(perm)))


def _is_identity(perm: tuple[int, ...]) -> bool:
    return perm == tuple(range(len(perm)))


def _steps_for(
    use: _Use, var: _Variable, stored: torch.Tensor, perm: tuple[int, ...] | None, variable_map
) -> list[tuple[str, tuple[int, ...]]] | None:
    """The ``permute``/``reshape`` steps that turn the stored tensor into what `use` needs.

    With ``stored == tf.permute(perm)``, a use of an initializer holding
    ``tf.permute(L)`` (maybe reshaped), seen through its own permutation,
    needs: permute to ``L``, reshape to the initializer's shape, permute.
    Without a TF layout, only uses of the first use's initializer can be
    derived (by undoing the first use's permutation); None when not derivable.
    """
    origin = _origin(variable_map, use.initializer, var.tf_name) if perm is not None else None
    if origin is not None:
        layout, laid_shape = _tf_layout(origin)
        to_layout = tuple(perm.index(i) for i in layout)
        if laid_shape == use.raw_shape:
            steps = [("permute", tuple(to_layout[j] for j in use.perm))]
        else:
            steps = [("permute", to_layout), ("reshape", use.raw_shape), ("permute", use.perm)]
    elif use.initializer == var.uses[0].initializer and tuple(stored.shape) == tuple(
        var.uses[0].value.shape
    ):
        first_perm = var.uses[0].perm
        inverse = _inverse(first_perm)
        steps = [("permute", tuple(inverse[p] for p in use.perm))]
    else:
        return None
    out, shape = [], tuple(stored.shape)
    for kind, arg in steps:
        if kind == "permute" and not _is_identity(arg):
            out.append((kind, arg))
            shape = tuple(shape[i] for i in arg)
        elif kind == "reshape" and arg != shape:
            out.append((kind, arg))
            shape = arg
    return out


def _looks_like_variable(use: _Use) -> bool:
    """Without a TF model: a tf2onnx variable read, or a weight onnx2torch built into a module."""
    name = use.initializer
    return "ReadVariableOp" in name or use.role is not None or "/kernel" in name or "/bias" in name


def _name_variables(variables: dict[tuple, _Variable], model_name: str = "") -> None:
    names = [v.tf_name for v in variables.values() if v.key[0] == "tf"]
    prefix = _model_prefix(names, model_name)
    scope_prefix = _common_prefix([v.key[2] for v in variables.values() if v.key[0] == "onnx"])
    taken: set[str] = set()
    for var in variables.values():
        if var.key[0] == "tf":
            name = torch_name(var.tf_name, prefix)
        else:
            base = torch_name(var.key[2], scope_prefix) or "param"
            role = next((u.role for u in var.uses if u.role), None) or "weight"
            name = f"{base}.{role}"
        # the module twin needs its role attribute, whatever TF called the leaf
        role = next((u.role for u in var.uses if u.role), None)
        if role is not None:
            name = f"{name.rsplit('.', 1)[0]}.{role}" if "." in name else role
        var.name = _unique(name, taken)


def _model_prefix(names: list[str], model_name: str) -> str:
    """The model's own scope in front of every variable name (Hugging Face's
    ``tf_bert_model/...``), to leave out of torch names. A Keras functional
    model's variables carry no such scope, and a lone layer's name
    (``shared/kernel``) is kept."""
    prefix = _common_prefix(names)
    if not prefix:
        return ""
    if model_name:
        return prefix if prefix == model_name else ""
    return prefix if all(len(_scope_parts(n)) > 2 for n in names) else ""


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        candidate = f"{name}_{n}"
        n += 1
    taken.add(candidate)
    return candidate


def _install(root: nn.Module, dotted: str, tensor: torch.Tensor) -> None:
    path, _, attr = dotted.rpartition(".")
    module = _ensure_module(root, path)
    if isinstance(tensor, nn.Parameter):
        module.register_parameter(attr, tensor)
    else:
        module.register_buffer(attr, tensor)


def _ensure_module(root: nn.Module, path: str) -> nn.Module:
    module = root
    for part in path.split(".") if path else []:
        child = module._modules.get(part)
        if child is None:
            child = nn.Module()
            module.add_module(part, child)
        module = child
    return module


def _rewire(
    gm: fx.GraphModule,
    use: _Use,
    var: _Variable,
    stored: torch.Tensor,
    perm: tuple[int, ...] | None,
    variable_map,
) -> None:
    """Point the use at the parameter, permuted/reshaped where this use needs another layout."""
    steps = _steps_for(use, var, stored, perm, variable_map)
    if steps is None:  # cannot happen with value-matched variables; fail where it shows
        raise FxSurgeonError(
            f"params phase: cannot derive the use {use.get_attr.format_node()} of {var.tf_name} "
            f"(initializer {use.initializer}) from the stored {var.name}"
        )
    with gm.graph.inserting_before(use.get_attr):
        new = gm.graph.get_attr(var.name)
    new.meta.update(use.get_attr.meta)
    new.meta["fxs_shape"] = tuple(stored.shape)
    replacement, shape = new, tuple(stored.shape)
    for kind, arg in steps:
        with gm.graph.inserting_after(replacement):
            if kind == "permute":
                replacement = gm.graph.call_function(torch.permute, (replacement, arg))
                shape = tuple(shape[i] for i in arg)
            else:
                replacement = gm.graph.call_function(torch.reshape, (replacement, arg))
                shape = arg
        replacement.meta["fxs_shape"] = shape
        replacement.meta["fxsurgeon.rule"] = "params"
    if shape != tuple(use.value.shape):
        raise FxSurgeonError(
            f"params phase: {var.name} {tuple(stored.shape)} rearranged to {shape} for "
            f"{use.get_attr.format_node()}, which needs {tuple(use.value.shape)}"
        )
    use.end.replace_all_uses_with(replacement)
    use.end = replacement


def _tf_values(source: Any) -> dict[str, torch.Tensor]:
    model = getattr(source, "tf_model", None)
    if model is None:
        return {}
    values = {}
    for variable in getattr(model, "variables", []):
        name = getattr(variable, "path", None) or variable.name
        for key in {name, variable.name}:
            values[key] = torch.from_numpy(variable.numpy().copy())
    return values


def _keras_momenta(source: Any) -> dict[str, float]:
    """moving_mean variable name -> Keras momentum, for each BatchNormalization layer."""
    model = getattr(source, "tf_model", None)
    if model is None:
        return {}
    momenta = {}
    layers = getattr(model, "_flatten_layers", None)
    candidates = list(layers()) if callable(layers) else list(getattr(model, "layers", []))
    for layer in candidates:
        mean = getattr(layer, "moving_mean", None)
        if mean is not None and hasattr(layer, "momentum"):
            for key in {getattr(mean, "path", None), mean.name}:
                if key:
                    momenta[key] = float(layer.momentum)
    return momenta


def _modularize(
    gm: fx.GraphModule, node: fx.Node, momenta: dict[str, float], report: ParameterReport
) -> None:
    roles = _ROLES[node.target]
    params = {}
    for position, role in roles.items():
        arg = node.args[position] if position < len(node.args) else node.kwargs.get(role)
        if arg is None:
            continue
        if not (
            isinstance(arg, fx.Node) and arg.op == "get_attr" and arg.target.endswith("." + role)
        ):
            return
        params[role] = arg
    paths = {str(a.target).rsplit(".", 1)[0] for a in params.values()}
    if len(paths) != 1 or "weight" not in params and "running_mean" not in params:
        return
    path = paths.pop()
    holder = gm.get_submodule(path)
    tensors = {role: getattr(holder, role) for role in params}
    module = _make_module(node, tensors, momenta, report.origins.get(f"{path}.running_mean"))
    if module is None:
        return
    module.to_empty(device=next(iter(tensors.values())).device)  # built on "meta": no init cost
    if isinstance(module, KerasBatchNorm):
        module.num_batches_tracked.zero_()
    existing = _adopt(holder, module, tensors)
    if existing is None:
        return
    parent_path, _, leaf = path.rpartition(".")
    parent = gm.get_submodule(parent_path) if parent_path else gm
    parent._modules[leaf] = existing
    data = node.args[0]
    with gm.graph.inserting_before(node):
        call = gm.graph.call_module(path, (data,))
    call.meta.update(node.meta)
    node.replace_all_uses_with(call)
    gm.graph.erase_node(node)


def _adopt(
    holder: nn.Module, module: nn.Module, tensors: dict[str, torch.Tensor]
) -> nn.Module | None:
    """Give `module` the holder's tensors; keep any other children the holder had."""
    if isinstance(holder, type(module)):
        return holder  # a shared layer applied again
    if type(holder) is not nn.Module:
        return None
    own = set(holder._parameters) | set(holder._buffers)
    if own - set(tensors):
        return None  # the scope holds other tensors too: leave them loose
    for role, tensor in tensors.items():
        if isinstance(tensor, nn.Parameter):
            module._parameters[role] = tensor
        else:
            module._buffers[role] = tensor
    for name, child in holder._modules.items():
        module.add_module(name, child)
    return module


def _make_module(
    node: fx.Node, tensors: dict[str, torch.Tensor], momenta, mean_origin
) -> nn.Module | None:
    args = node.args
    weight = tensors.get("weight")
    if node.target is F.linear:
        out_f, in_f = weight.shape
        return nn.Linear(in_f, out_f, bias="bias" in tensors, device="meta")
    if node.target is F.layer_norm:
        shape, eps = args[1], args[4] if len(args) > 4 else node.kwargs.get("eps", 1e-5)
        return nn.LayerNorm(
            tuple(shape), eps=eps, elementwise_affine=True, bias="bias" in tensors, device="meta"
        )
    if node.target in (F.conv1d, F.conv2d, F.conv3d):
        stride, padding, dilation, groups = (list(args[3:7]) + [1, 0, 1, 1][len(args[3:7]) :])[:4]
        cls = {F.conv1d: nn.Conv1d, F.conv2d: nn.Conv2d, F.conv3d: nn.Conv3d}[node.target]
        out_c, in_per_group, *kernel = weight.shape
        return cls(
            in_per_group * groups,
            out_c,
            tuple(kernel),
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias="bias" in tensors,
            device="meta",
        )
    if node.target is F.batch_norm:
        if not {"weight", "bias", "running_mean", "running_var"} <= set(tensors):
            return None
        momentum = args[6] if len(args) > 6 else 0.1
        if mean_origin is not None and mean_origin.tf_name in momenta:
            momentum = 1.0 - momenta[mean_origin.tf_name]
        eps = args[7] if len(args) > 7 else 1e-5
        return KerasBatchNorm(tensors["weight"].shape[0], eps=eps, momentum=momentum, device="meta")
    if node.target is F.embedding:
        return nn.Embedding(*weight.shape, device="meta")
    return None


def _hide_structural_constants(gm: fx.GraphModule, report: ParameterReport) -> None:
    """Constants that were no TF variable become non-persistent buffers under ``constants``."""
    holder = nn.Module()
    count = 0
    for node in gm.graph.nodes:
        if node.op != "get_attr" or node.target in report.origins:
            continue
        top = str(node.target).split(".")[0]
        if top not in ("weights", "consts"):
            continue
        tensor = _fetch(gm, node.target)
        name = f"c{count}"
        count += 1
        holder.register_buffer(name, tensor, persistent=False)
        node.target = f"constants.{name}"
        initializer = node.meta.get("fxsurgeon.initializer")
        if initializer and tensor.is_floating_point() and tensor.numel() > 1:
            report.not_trainable.setdefault(initializer, _STRUCTURAL)
    for name in ("weights", "consts"):
        if hasattr(gm, name):
            delattr(gm, name)
    if count:
        gm.add_module("constants", holder)


def _drop_unused(gm: fx.GraphModule) -> None:
    used = {n.target for n in gm.graph.nodes if n.op in ("get_attr", "call_module")}
    for name, module in list(gm.named_modules()):
        for attr in list(module._parameters) + list(module._buffers):
            full = f"{name}.{attr}" if name else attr
            if full not in used and not _owned_by_called_module(full, used):
                module._parameters.pop(attr, None)
                module._buffers.pop(attr, None)


def _owned_by_called_module(full: str, used: set) -> bool:
    return any(full.startswith(f"{target}.") for target in used)


def _report_missing_variables(source: Any, report: ParameterReport) -> None:
    """List every TF variable that came back as nothing, and the constants it went into.

    TensorFlow's graph optimizer folds arithmetic on variables into constants
    before tf2onnx sees the graph (Keras 3's BatchNormalization: gamma and the
    moving variance become one ``batchnorm/mul`` scale). Such a constant is a
    structural constant here; the folded variables cannot be trained.
    """
    variables = getattr(source, "tf_variables", ()) or ()
    model_name = str(getattr(getattr(source, "tf_model", None), "name", "") or "")
    found = {o.tf_name for o in report.origins.values()}
    constants = [name for name, why in report.not_trainable.items() if why == _STRUCTURAL]
    folded_into: dict[str, list[str]] = defaultdict(list)
    for variable in variables:
        if variable.name in found:
            continue
        suspects = [c for c in constants if _scope_score(variable.name, c, model_name) > 0]
        for constant in suspects:
            folded_into[constant].append(variable.name)
        where = (
            f"folded away before or by tf2onnx; constants left in its layer: {', '.join(suspects)}"
            if suspects
            else "unused, or folded away before or by tf2onnx"
        )
        what = "trainable" if variable.trainable else "non-trainable"
        report.not_trainable[variable.name] = (
            f"{what} TF variable held by no ONNX initializer ({where}): "
            "it cannot come back as a parameter"
        )
    for constant, names in folded_into.items():
        report.not_trainable[constant] = (
            f"{_STRUCTURAL}; in the layer of the folded TF variables {', '.join(names)}"
        )
