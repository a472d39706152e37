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

import itertools
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .nn import KerasBatchNorm

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
    value: torch.Tensor
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
    """The TF scope of the ONNX node that used a constant, op components dropped."""
    onnx_node = use_node.meta.get("fxsurgeon.onnx_node", "")
    parts = [p for p in onnx_node.replace("/_", "/").split("/") if p]
    while parts and _OP_COMPONENTS.match(parts[-1]):
        parts.pop()
    return "/".join(parts)


def _scope_score(variable_name: str, scope: str) -> int:
    """Length of the common leading run of scope components."""
    a = [p for p in variable_name.replace(".", "").split("/")]
    b = [p for p in scope.replace(".", "").split("/")]
    score = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        score += 1
    return score


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

    variables = _assign_variables(uses, variable_map, report)
    _name_variables(variables)
    for var in variables.values():
        value = var.uses[0].value.detach().clone().contiguous()
        perm = _perm_against_tf(value, tf_values.get(var.tf_name))
        report.origins[var.name] = ParameterOrigin(
            var.tf_name, var.initializer, perm, var.kind == "parameter"
        )
        tensor: torch.Tensor = nn.Parameter(value) if var.kind == "parameter" else value
        _install(gm, var.name, tensor)
        for use in var.uses:
            _rewire(gm, use, var, value)

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
    uses: list[_Use], variable_map, report: ParameterReport
) -> dict[tuple, _Variable]:
    """Group uses into variables: by TF variable when known, else by initializer and scope."""
    variables: dict[tuple, _Variable] = {}
    split_initializers: dict[str, set[str]] = defaultdict(set)
    for use in uses:
        if variable_map is not None:
            origins = variable_map.get(use.initializer) or []
            if not origins:
                continue  # structural constant
            best = max(origins, key=lambda o: _scope_score(o.variable.name, use.scope))
            ties = [
                o
                for o in origins
                if _scope_score(o.variable.name, use.scope)
                == _scope_score(best.variable.name, use.scope)
            ]
            if len(ties) > 1 and len({o.variable.name for o in ties}) > 1:
                report.notes.append(
                    f"initializer {use.initializer} holds {len(ties)} equal TF variables "
                    f"({', '.join(o.variable.name for o in ties)}); its use in {use.scope or '?'} took {best.variable.name}"
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


def _looks_like_variable(use: _Use) -> bool:
    """Without a TF model: a tf2onnx variable read, or a weight onnx2torch built into a module."""
    name = use.initializer
    return "ReadVariableOp" in name or use.role is not None or "/kernel" in name or "/bias" in name


def _name_variables(variables: dict[tuple, _Variable]) -> None:
    names = [v.tf_name for v in variables.values() if v.key[0] == "tf"]
    prefix = _common_prefix(names)
    taken: set[str] = set()
    for var in variables.values():
        if var.key[0] == "tf":
            name = torch_name(var.tf_name, prefix)
        else:
            scope_prefix = _common_prefix(
                [v.key[2] for v in variables.values() if v.key[0] == "onnx"]
            )
            base = torch_name(var.key[2], scope_prefix) or "param"
            role = next((u.role for u in var.uses if u.role), None) or "weight"
            name = f"{base}.{role}"
        # the module twin needs its role attribute, whatever TF called the leaf
        role = next((u.role for u in var.uses if u.role), None)
        if role is not None:
            name = f"{name.rsplit('.', 1)[0]}.{role}" if "." in name else role
        var.name = _unique(name, taken)


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


def _rewire(gm: fx.GraphModule, use: _Use, var: _Variable, stored: torch.Tensor) -> None:
    """Point the use at the parameter; re-permute where this use needs another layout."""
    with gm.graph.inserting_before(use.get_attr):
        new = gm.graph.get_attr(var.name)
    new.meta.update(use.get_attr.meta)
    new.meta["fxs_shape"] = tuple(stored.shape)
    first_perm = var.uses[0].perm
    replacement = new
    if use.perm != first_perm:
        # stored = init.permute(first); needed = init.permute(use.perm)
        inverse = [first_perm.index(i) for i in range(len(first_perm))]
        relative = tuple(inverse[p] for p in use.perm)
        with gm.graph.inserting_after(new):
            replacement = gm.graph.call_function(torch.permute, (new, relative))
    use.end.replace_all_uses_with(replacement)
    use.end = replacement


def _perm_against_tf(value: torch.Tensor, tf_value: torch.Tensor | None) -> tuple[int, ...] | None:
    """The permutation p with value == tf_value.permute(p), by comparing values."""
    if tf_value is None:
        return None
    rank = tf_value.dim()
    candidates = [tuple(range(rank)), tuple(reversed(range(rank)))]
    if rank <= 5:
        candidates += list(itertools.permutations(range(rank)))
    for perm in candidates:
        permuted = tf_value.permute(perm)
        if permuted.shape == value.shape and torch.equal(permuted, value):
            return perm
    return None


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
            report.not_trainable.setdefault(
                initializer, "structural constant (no TF variable holds it)"
            )
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
    variables = getattr(source, "tf_variables", ()) or ()
    found = {o.tf_name for o in report.origins.values()}
    for variable in variables:
        if variable.trainable and variable.name not in found:
            report.not_trainable[variable.name] = (
                "TF variable not present in the ONNX graph (unused, or folded by tf2onnx)"
            )
