"""Building modules: consumers with a module twin become modules in a hierarchy rebuilt from the TF
scopes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import FxSurgeonError
from ..nn import KerasBatchNorm
from .layout import _steps_for
from .records import ParameterReport, _Use, _Variable
from .roles import _ROLES, _STRUCTURAL, _fetch


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
            isinstance(arg, fx.Node) and arg.op == "get_attr" and arg.target.endswith("." + role)  # type: ignore[union-attr]
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
        module.num_batches_tracked.zero_()  # type: ignore[union-attr]
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
    if any(
        role in module._parameters and not isinstance(t, nn.Parameter)
        for role, t in tensors.items()
    ):
        # a weight TF does not train (a frozen layer) is a buffer: the module would read
        # its own parameter of that name instead, so the call stays functional
        return None
    for role, tensor in tensors.items():
        if isinstance(tensor, nn.Parameter):
            module._parameters[role] = tensor
        else:
            module._buffers[role] = tensor
    for name, child in holder._modules.items():
        module.add_module(name, child)
    return module


#: a convolution -> its module class and the arguments after the bias (names, defaults):
#: ``torch.conv2d(x, w, b, stride, padding, dilation, groups)``,
#: ``torch.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation)``
_PLAIN = (("stride", "padding", "dilation", "groups"), (1, 0, 1, 1))
_TRANSPOSED = (("stride", "padding", "output_padding", "groups", "dilation"), (1, 0, 0, 1, 1))
_CONVS = {
    F.conv1d: (nn.Conv1d, *_PLAIN),
    F.conv2d: (nn.Conv2d, *_PLAIN),
    F.conv3d: (nn.Conv3d, *_PLAIN),
    F.conv_transpose1d: (nn.ConvTranspose1d, *_TRANSPOSED),
    F.conv_transpose2d: (nn.ConvTranspose2d, *_TRANSPOSED),
    F.conv_transpose3d: (nn.ConvTranspose3d, *_TRANSPOSED),
}


def _make_module(
    node: fx.Node, tensors: dict[str, torch.Tensor], momenta, mean_origin
) -> nn.Module | None:
    args: Any = node.args
    weight: Any = tensors.get("weight")
    if node.target is F.linear:
        out_f, in_f = weight.shape
        return nn.Linear(in_f, out_f, bias="bias" in tensors, device="meta")
    if node.target is F.layer_norm:
        shape, eps = args[1], args[4] if len(args) > 4 else node.kwargs.get("eps", 1e-5)
        return nn.LayerNorm(
            tuple(shape),
            eps=eps,  # type: ignore[arg-type]
            elementwise_affine=True,
            bias="bias" in tensors,
            device="meta",
        )
    if node.target in _CONVS:
        cls, names, defaults = _CONVS[node.target]
        given = list(args[3 : 3 + len(names)])
        options = dict(zip(names, given + list(defaults[len(given) :]), strict=True))
        groups = options["groups"]
        if "output_padding" in options:  # transposed: weight [in, out / groups, *kernel]
            in_c, out_per_group, *kernel = weight.shape
            sizes = (in_c, out_per_group * groups)
        else:  # weight [out, in / groups, *kernel]
            out_c, in_per_group, *kernel = weight.shape
            sizes = (in_per_group * groups, out_c)
        return cls(*sizes, tuple(kernel), bias="bias" in tensors, device="meta", **options)
    if node.target is F.batch_norm:
        if not {"running_mean", "running_var"} <= set(tensors):
            return None
        momentum = args[6] if len(args) > 6 else 0.1
        if mean_origin is not None and mean_origin.tf_name in momenta:
            momentum = 1.0 - momenta[mean_origin.tf_name]
        eps = args[7] if len(args) > 7 else 1e-5
        # Keras center=False: no beta (torch's BatchNorm bias=False); scale=False and
        # center=False: neither (affine=False). A beta without gamma has no module
        # form (model.py could not rebuild it): that call stays functional.
        affine = {"weight", "bias"} & set(tensors)
        if affine == {"bias"}:
            return None
        channels = tensors["running_mean"].shape[0]
        module = KerasBatchNorm(
            channels, eps=eps, momentum=momentum, affine=bool(affine), device="meta"
        )
        if affine == {"weight"}:
            module.register_parameter("bias", None)
        return module
    if node.target is F.embedding:
        return nn.Embedding(*weight.shape, device="meta")  # type: ignore[misc]
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
                initializer, report.structural.get(initializer, _STRUCTURAL)
            )
    for name in ("weights", "consts"):
        if hasattr(gm, name):
            delattr(gm, name)
    if count:
        gm.add_module("constants", holder)


def _drop_unused(gm: fx.GraphModule, keep: Iterable[str] = ()) -> None:
    """Remove the parameters and buffers nothing reads, but those named in `keep`."""
    used = {n.target for n in gm.graph.nodes if n.op in ("get_attr", "call_module")} | set(keep)
    for name, module in list(gm.named_modules()):
        for attr in list(module._parameters) + list(module._buffers):
            full = f"{name}.{attr}" if name else attr
            if full not in used and not _owned_by_called_module(full, used):
                module._parameters.pop(attr, None)
                module._buffers.pop(attr, None)


def _owned_by_called_module(full: str, used: set) -> bool:
    return any(full.startswith(f"{target}.") for target in used)
