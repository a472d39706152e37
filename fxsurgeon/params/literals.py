"""One-element TF variables that the lowering wrote into the graph as Python numbers.

The lowering makes a one-element constant operand that broadcasting does not
widen a Python scalar (``x + 0.5`` rather than a buffer), a learned one-element
variable too (a ``Dense(1)`` bias: ``score + -0.0025``). With the TF model, a
trainable one-element variable that no weight constant holds any more is found
back as such a literal: a float argument of an elementwise arithmetic node in
the variable's layer scope (`_scope_score` > 0) equal to the variable's value
in its dtype. Every such literal becomes a read of one new parameter, held in
TF's shape and read as a 0-d tensor (which promotes like the Python number it
replaces). Without the TF model a one-element constant stays a constant of a
formula (`dataflow.py`): nothing tells a learned scalar from ``eps``, except
the role a layer gives it (below).

One-feature biases (`absorb_one_feature_biases`, both front doors). A linear,
convolution or transposed convolution module with one output feature and no bias, whose output is read only
by an add of a one-element number (a Python literal, or the 0-d read of a one-element
parameter that `restore_literals` made), is a layer with that number as its bias:
``Dense(1)`` is ``x @ W + b`` with ``b`` of shape ``[1]``, which tf2onnx writes as an
Add and the lowering as ``score + -0.0025`` (after a transposed convolution, after the crop
of its SAME padding: a crop of the spatial dims commutes with a per-channel bias). The module takes the bias (the same
``nn.Parameter`` where there was one) and the add goes: exactly the rule that gives
a vector constant added after a product the bias role (``linear_bias_1``), applied
where the vector has one element. It is the layer's learned bias through either
door, as ``dataflow.py`` says of a one-element tensor in a weight role.

One-element norms (`one_element_norm_weights`, both front doors, before the weights are
collected). A LayerNormalization over one feature (Keras's over a one-feature series)
has one-element gamma and beta, which the lowering writes as Python literals and the
layer_norm rule then applies after the fused call: ``layer_norm(x, (1,)) * 1.02 +
0.03``. A number that scales or shifts a layer norm over one element is that layer's
learned tensor (`dataflow.py`: the scale of a norm over one feature), however little
its gradient (x - mean(x) is 0 there, so only beta moves the output): the number goes
back into the call as a one-element constant in the weight or bias role, and the
weights phase then treats it as any other gamma or beta (a parameter, named after the
layer, an ``nn.LayerNorm`` with the rest).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .modules import _install
from .names import _model_prefix, _scope_of, _scope_score, torch_name
from .records import ParameterOrigin, ParameterReport

_ARITHMETIC = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.rsub,
    torch.maximum,
    torch.minimum,
}
_ARITHMETIC_METHODS = {"add", "sub", "mul", "div", "rsub"}


def restore_literals(
    gm: fx.GraphModule, source: Any, report: ParameterReport, tf_values: Mapping[str, torch.Tensor]
) -> None:
    """Give each trainable one-element TF variable that became literals a parameter (see above)."""
    model_name = str(getattr(getattr(source, "tf_model", None), "name", "") or "")
    found = {o.tf_name for o in report.origins.values()}
    prefix = _model_prefix(sorted(found), model_name)
    for variable in getattr(source, "tf_variables", ()) or ():
        if not variable.trainable or variable.name in found:
            continue
        value = tf_values.get(variable.name)
        if value is None:
            continue
        if value.numel() != 1 or not value.is_floating_point():
            continue
        number = float(value.reshape(-1)[0])
        sites = [
            (node, i)
            for node in gm.graph.nodes
            if _is_arithmetic(node) and _scope_score(variable.name, _scope_of(node), model_name)
            for i, arg in enumerate(node.args)
            if type(arg) is float and arg == number
        ]
        if not sites:
            continue
        name = _free_name(gm, torch_name(variable.name, prefix))
        _install(gm, name, nn.Parameter(value.detach().clone()))
        report.origins[name] = ParameterOrigin(
            variable.name, "", tuple(range(value.dim())), trainable=True
        )
        for node, i in sites:
            with gm.graph.inserting_before(node):
                read = gm.graph.get_attr(name)
                scalar = gm.graph.call_function(torch.reshape, (read, ()))
            read.meta["fxs_shape"], scalar.meta["fxs_shape"] = tuple(value.shape), ()
            scalar.meta["fxsurgeon.rule"] = "params"
            node.args = tuple(scalar if j == i else a for j, a in enumerate(node.args))


def _is_arithmetic(node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in _ARITHMETIC
    return node.op == "call_method" and node.target in _ARITHMETIC_METHODS


def _free_name(gm: fx.GraphModule, name: str) -> str:
    """`name`, or ``path_leaf`` beside it where the path is a module twin (an nn.Linear
    without bias must not get one: the graph adds it) or already holds the leaf."""
    path, _, leaf = name.rpartition(".")
    try:
        holder = gm.get_submodule(path) if path else gm
    except AttributeError:
        return name
    if type(holder) is nn.Module and not hasattr(holder, leaf):
        return name
    parent, _, last = path.rpartition(".")
    candidate, n = f"{parent + '.' if parent else ''}{last}_{leaf}", 1
    while _exists(gm, candidate):
        candidate, n = f"{parent + '.' if parent else ''}{last}_{leaf}_{n}", n + 1
    return candidate


def _exists(gm: fx.GraphModule, dotted: str) -> bool:
    obj: Any = gm
    for part in dotted.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


_BIASED = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
_ADDS = {operator.add, torch.add}


def absorb_one_feature_biases(gm: fx.GraphModule, report: ParameterReport) -> int:
    """Move the added number of each bias-free one-feature layer into its bias (see above)."""
    absorbed, moved = 0, []
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or len(node.users) != 1:
            continue
        module = gm.get_submodule(str(node.target))
        if not isinstance(module, _BIASED) or module.bias is not None:
            continue
        features = module.out_features if isinstance(module, nn.Linear) else module.out_channels
        if features != 1 or not module.weight.dtype.is_floating_point:
            continue
        read = node
        while not isinstance(module, nn.Linear) and _spatial_crop(next(iter(read.users))):
            read = next(iter(read.users))  # a SAME transposed convolution's crop
        add = next(iter(read.users))
        if add.op != "call_function" or add.target not in _ADDS or add.kwargs or len(add.args) != 2:
            continue
        other = add.args[1] if add.args[0] is read else add.args[0]
        if other is read:
            continue
        bias = _one_feature_bias(gm, other, module.weight, report)
        if bias is None:
            continue
        parameter, origin_name = bias
        module.bias = parameter
        name = f"{node.target}.bias"
        if origin_name is not None:
            report.origins[name] = report.origins.pop(origin_name)
            moved.append(origin_name)
        else:
            scope = _scope_of(add)
            report.origins[name] = ParameterOrigin(scope or name, "", (0,), trainable=True)
        add.replace_all_uses_with(read)
        gm.graph.erase_node(add)
        absorbed += 1
    if absorbed:
        gm.graph.eliminate_dead_code()
    for target in moved:  # its read went with the add: the module holds it now
        path, _, leaf = target.rpartition(".")
        delattr(gm.get_submodule(path) if path else gm, leaf)
    return absorbed


def _spatial_crop(node: fx.Node) -> bool:
    """Whether ``node`` is the only reader's ``x[:, :, a:b, ...]``: a crop of the spatial
    dims of a convolution's output, which a per-channel bias commutes with."""
    if node.op != "call_function" or node.target is not operator.getitem or len(node.users) != 1:
        return False
    index = node.args[1]
    whole = slice(None, None, None)
    return (
        isinstance(index, tuple)
        and len(index) >= 2
        and index[0] == whole
        and index[1] == whole
        and all(isinstance(i, slice) for i in index)
    )


def _one_feature_bias(
    gm: fx.GraphModule, other: Any, weight: torch.Tensor, report: ParameterReport
) -> tuple[nn.Parameter, str | None] | None:
    """The bias parameter ``other`` is, with the origin name it had; None if it is not one."""
    if type(other) is float:
        return nn.Parameter(torch.tensor([other], dtype=weight.dtype)), None
    if not isinstance(other, fx.Node) or len(other.users) != 1:
        return None
    if other.op != "call_function" or other.target is not torch.reshape or other.args[1:] != ((),):
        return None
    read = other.args[0]
    if not isinstance(read, fx.Node) or read.op != "get_attr" or len(read.users) != 1:
        return None
    target = str(read.target)
    param = gm.get_parameter(target) if target in dict(gm.named_parameters()) else None
    if param is None or param.numel() != 1 or param.dtype != weight.dtype:
        return None
    if tuple(param.shape) != (1,) or target not in report.origins:
        return None
    return param, target


def one_element_norm_weights(gm: fx.GraphModule) -> int:
    """Move the numbers that scale and shift an affine-free layer norm over one element
    into its weight and bias slots as constants (see above); how many moved."""
    moved = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not F.layer_norm or node.kwargs:
            continue
        args = list(node.args) + [None] * (5 - len(node.args))
        shape = args[1]
        if not isinstance(shape, (tuple, list)) or not all(isinstance(d, int) for d in shape):
            continue  # a normalized shape of run-time sizes is not known to be one element
        if math.prod(shape) != 1 or args[3] is not None:
            continue
        dtype = node.meta.get("fxs_dtype", torch.float32)
        out = node
        for slot, op, leaf in ((2, operator.mul, "weight"), (3, operator.add, "bias")):
            if args[slot] is not None or len(out.users) != 1:
                continue
            user = next(iter(out.users))
            number = _number_operand(user, out, op)
            if number is None:
                if slot == 2:
                    continue  # no scale: beta may still follow
                break
            args[slot] = _one_element_constant(gm, node, number, tuple(shape), dtype, leaf)
            user.replace_all_uses_with(out)
            gm.graph.erase_node(user)
            moved += 1
        node.args = tuple(args)
    return moved


def _number_operand(user: fx.Node, read: fx.Node, op: Any) -> float | None:
    """The Python number `user` (``read * n`` / ``read + n``, either order) combines
    with `read`, else None."""
    if user.op != "call_function" or user.target is not op or user.kwargs or len(user.args) != 2:
        return None
    other = user.args[1] if user.args[0] is read else user.args[0]
    if isinstance(other, bool) or not isinstance(other, (int, float)):
        return None
    return float(other)


def _one_element_constant(
    gm: fx.GraphModule, norm: fx.Node, number: float, shape: tuple, dtype: torch.dtype, leaf: str
) -> fx.Node:
    """A get_attr of ``number`` in `shape`, read where `norm` is, marked as a constant
    of the file (the weights phase looks at those only) in `norm`'s scope."""
    if not hasattr(gm, "weights"):
        gm.add_module("weights", nn.Module())
    holder = gm.get_submodule("weights")
    name, n = "norm_one", 0
    while hasattr(holder, f"{name}_{n}"):
        n += 1
    holder.register_buffer(f"{name}_{n}", torch.full(shape, number, dtype=dtype))
    with gm.graph.inserting_before(norm):
        read = gm.graph.get_attr(f"weights.{name}_{n}")
    scope = str(norm.meta.get("fxsurgeon.onnx_node", ""))
    read.meta.update(
        {
            "fxs_shape": shape,
            "fxs_dtype": dtype,
            "fxsurgeon.onnx_node": scope,
            "fxsurgeon.initializer": f"{scope}:{leaf}",
        }
    )
    return read
