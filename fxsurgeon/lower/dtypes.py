"""Half precision: float32 that the ONNX graph pins becomes the dtype of what it meets.

An ONNX graph is typed: a mask or position ids become floats by ``Cast(to=FLOAT)``, a fill is
``ConstantOfShape(float32)``. Lowered as written, these stay float32 after the user's
``.to(torch.bfloat16)`` or ``.half()`` (which converts parameters and buffers, never the
dtype argument of a call), and type promotion then turns the half activations they are added
to back into float32: LayerNorm, Linear or SDPA next get mixed dtypes. A native PyTorch module
writes ``mask.to(inputs_embeds.dtype)`` and fills with ``torch.finfo(dtype).min`` instead.

The rule (`follow_activation_dtype`, run on the finished graph), by dataflow over the nodes'
dtypes in the analysed (float32) graph:

* an *activation* is a float value computed from a float graph input, a parameter, or a
  module call with floating parameters: what ``.half()`` makes half;
* a *pinned* value is a float32 value computed from non-float values only (a Cast of an int
  or bool, ``torch.full``/``arange`` with ``dtype=torch.float32``), possibly with
  constants and Python numbers, or a Cast to float32 of a constant (a float64 table that
  tf2onnx casts): it stays float32 under ``.half()``;
* a *constant* is a float buffer that is no parameter (``.half()`` converts it too), or a value
  computed from constants only.

Where a pinned value meets an activation in an op with a float result (``scores + mask``,
``mask * x``, a Linear of a mask, ``mask.type_as(q)``), it is converted to the activation's
run-time dtype: `follow_dtype`, saturating to that dtype's finite range, so a fill of
-1e8 or float32's min becomes ``finfo(half).min`` where native code writes it, not -inf (and
never ``0 * -inf = NaN`` later). Where a pinned value meets a constant, the constant follows
the pinned value (float32), as native rotary code writes ``inv_freq.float()``: position
arithmetic stays exact. Comparisons (a bool result) are left to type promotion.

Only values whose analysed dtypes are equal are joined, so in the analysed dtype every
`follow_dtype` call is the identity: a float32 model computes bitwise what it did. A float32
Cast of a float64 input is an activation's cast, not a pin, and stays a real cast, unless the
value was computed from a float32 activation cast to another float dtype (Keras 3 promotes a
kernel times a float64 NumPy mask to float64, then casts the product back; a ``mixed_float16``
layer casts its input and variables to float16 and a float32 layer casts them back): that cast
returns to the activation's run-time dtype (`_round_trips`), as the detour came from it. The
branches of a torch.cond are rewritten by the same rule, each operand keeping the kind it has
outside; Loop bodies are not rewritten.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from enum import Enum
from typing import Any, cast

import torch
from torch import fx, nn

from .control_flow import run_cond, size_branch

__all__ = ["follow_dtype", "follow_activation_dtype"]


def follow_dtype(value, like):
    """``value`` in ``like``'s dtype, its finite values saturated to that dtype's range
    when that range is narrower (a float32 fill of -1e8 in half is finfo(half).min, not
    -inf). The identity when the dtypes are the same. It reads only torch, so model.py carries a copy of it
    (codegen/subgraphs.py)."""
    if value.dtype == like.dtype:
        return value
    info = torch.finfo(like.dtype)
    if info.max < torch.finfo(value.dtype).max:  # narrowing: saturate, no overflow to inf
        value = value.clamp(info.min, info.max)
    return value.to(like.dtype)


class _Kind(Enum):
    ACTIVATION = "activation"
    PINNED = "pinned"
    CONSTANT = "constant"


# ops whose float result does not depend on their float operands' dtypes agreeing
_NO_MEETING = {operator.getitem}


def follow_activation_dtype(gm: fx.GraphModule, example_inputs) -> int:
    """Rewrite `gm` in place by the rule of the module docstring; the number of operands
    converted. `example_inputs` give the dtypes of the inputs (their sizes do not matter)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    fakes = [mode.from_tensor(x) if isinstance(x, torch.Tensor) else x for x in example_inputs]
    # in eval mode: a BatchNorm in training mode would update its running statistics (the
    # model's state) when the examples run
    training = {m: m.training for m in gm.modules()}
    gm.eval()
    try:
        return _rewrite(gm, fakes, mode, list(example_inputs))
    finally:
        for module, flag in training.items():
            module.training = flag


def _rewrite(
    gm: fx.GraphModule,
    fakes: list,
    mode,
    real: list | Callable[[], list | None] | None = None,
    entry: list[_Kind | None] | None = None,
) -> int:
    """`real`: input values (or a function giving them) for a graph fake tensors cannot
    run. `entry`: the kinds of a branch's operands in the graph that calls it (a float32
    value pinned there is pinned in the branch too); graph inputs are activations."""
    vals = _dtypes(gm, fakes, mode, real)
    if vals is None:
        return 0
    converted = 0
    _fills_as_literals(gm, vals)
    kinds: dict[fx.Node, _Kind] = {}
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for i, node in enumerate(inputs):
        if vals.get(node) is not None and vals[node].is_floating_point:
            outside = entry[i] if entry is not None and i < len(entry) else None
            kinds[node] = outside or _Kind.ACTIVATION
    widened: dict[fx.Node, fx.Node] = {}
    operands = _Operands(gm, real)
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in (torch.cond, size_branch):
            converted += _branches(gm, node, mode, kinds, operands)
        kind = kinds.get(node) if node.op == "placeholder" else _kind_of(gm, node, vals, kinds)
        if kind is None:
            continue
        kinds[node] = kind
        converted += _round_trips(node, vals, kinds, widened)
        converted += _join(gm, node, vals, kinds)
        if kind is _Kind.CONSTANT:
            kinds[node] = _wide_scalars(node, vals)
    for node in gm.graph.nodes:
        node.meta.pop("val", None)
    gm.graph.lint()
    gm.recompile()
    return converted


def _dtypes(gm: fx.GraphModule, fakes: list, mode, real) -> dict[fx.Node, torch.dtype] | None:
    """The dtype of every node that gives one tensor, by fake-tensor propagation (the fake
    values stay in ``meta["val"]`` for the torch.cond branches until the rewrite ends). A
    module kept as onnx2torch wrote it may not run on fake tensors: then the example inputs
    are run (as the pipeline's pattern checks run them) and their results' dtypes read."""
    from torch.fx.passes.fake_tensor_prop import FakeTensorProp

    try:
        with torch.no_grad():
            FakeTensorProp(gm, mode).propagate_dont_convert_inputs(*fakes)
    except Exception:  # noqa: BLE001 - an op fake tensors cannot run
        real = real() if callable(real) else real
        if not _run_examples(gm, real or [_zeros(f) for f in fakes], mode):
            return None
    nodes = gm.graph.nodes
    return {n: n.meta["val"].dtype for n in nodes if isinstance(n.meta.get("val"), torch.Tensor)}


def _run_examples(gm: fx.GraphModule, inputs: list, mode) -> bool:
    """Run `gm` on `inputs`, each node's result kept as a fake value. A torch.cond runs
    the branch its predicate picks (`run_cond`, as optimize's result runs it): eager
    torch.cond traces both, and the branch the data does not take may not run on that data
    (a Reshape by a size the data makes 0, LED's global attention without global tokens)."""

    def _fake(value):
        return mode.from_tensor(value) if isinstance(value, torch.Tensor) else value

    def keep(node: fx.Node, result) -> None:
        node.meta["val"] = fx.node.map_aggregate(result, _fake)

    try:
        with torch.no_grad():
            _Eager(gm, keep).run(*inputs)
    except Exception:  # noqa: BLE001 - the graph cannot run here: leave it as it is
        return False
    return True


class _Eager(fx.Interpreter):
    """Runs a graph as optimize's result runs it (a torch.cond runs the branch its
    predicate picks: `run_cond`), handing each node's result to `seen`."""

    def __init__(self, gm: fx.GraphModule, seen: Callable[[fx.Node, Any], None]):
        super().__init__(gm)
        self.seen = seen

    def run_node(self, node):
        result = super().run_node(node)
        self.seen(node, result)
        return result

    def call_function(self, target, args, kwargs):
        return super().call_function(run_cond if target is torch.cond else target, args, kwargs)


def _zeros(fake):
    """A real tensor shaped as `fake` (a subgraph's operand; only the dtypes are read)."""
    if not isinstance(fake, torch.Tensor):
        return fake
    shape = [int(d) for d in fake.shape]
    return torch.zeros(shape, dtype=fake.dtype, device="cpu")


def _branches(gm: fx.GraphModule, node: fx.Node, mode, kinds, values: _Operands) -> int:
    """The rule inside the branches of the torch.cond `node`, their operands' dtypes and
    kinds known: an operand pinned outside (a float32 fill made before the If) is pinned
    inside, so it follows the activation it meets there. A branch that fake tensors cannot
    run (a size read from the data: Longformer's count of global tokens) runs on the
    operands' values in the example run."""
    branches: Any = node.args[1:3]
    operands: Any = node.args[3]
    fakes = [o.meta.get("val") if isinstance(o, fx.Node) else o for o in operands]
    entry = [kinds.get(o) if isinstance(o, fx.Node) else None for o in operands]
    converted = 0
    for branch in branches:
        sub = _attr(gm, str(branch.target))
        if isinstance(sub, fx.GraphModule):
            converted += _rewrite(sub, fakes, mode, lambda: values.of(operands), entry)
    return converted


class _Operands:
    """The values the torch.cond operands of `gm` take when `gm` runs on `real` (its
    example inputs), recorded on first use; None where unknown."""

    def __init__(self, gm: fx.GraphModule, real):
        self.gm, self.real = gm, real
        self.values: dict | None = None

    def of(self, operands) -> list | None:
        if self.values is None:
            self.values = self._record()
        found = [self.values.get(o) if isinstance(o, fx.Node) else o for o in operands]
        return None if any(v is None for v in found) else found

    def _record(self) -> dict:
        real = self.real() if callable(self.real) else self.real
        if real is None:
            return {}
        conds = [n for n in self.gm.graph.nodes if n.target in (torch.cond, size_branch)]
        wanted = {o for n in conds for o in cast(list, n.args[3]) if isinstance(o, fx.Node)}
        values: dict = {}

        def keep(node: fx.Node, result) -> None:
            if node in wanted:
                values[node] = result

        try:
            with torch.no_grad():
                _Eager(self.gm, keep).run(*real)
        except Exception:  # noqa: BLE001 - what ran before the failure is kept
            pass
        return values


def _wide_scalars(node: fx.Node, vals) -> _Kind:
    """A constant computed with a Python float that float16 cannot hold (``c * -1e8``):
    ``.half()`` makes the constant half and the product -inf, so the constant is taken in
    float32 (the fill's ONNX type) first, and the result is pinned."""
    limit = torch.finfo(torch.float16).max
    wide = [a for a in node.args if isinstance(a, float) and limit < abs(a) < float("inf")]
    if not wide or vals.get(node) != torch.float32:
        return _Kind.CONSTANT
    for operand in _tensor_args(node):
        if vals.get(operand) != torch.float32:
            continue
        with node.graph.inserting_before(node):
            pinned = node.graph.call_method("to", (operand, torch.float32))
        node.replace_input_with(operand, pinned)
    return _Kind.PINNED


def _fills_as_literals(gm: fx.GraphModule, vals) -> None:
    """A one-element float32 constant that float16 cannot hold (|v| > 65504: float32's min,
    -1e9) is a fill: ``.half()`` would round its buffer to -inf (and ``0 * -inf`` is NaN),
    so it becomes ``torch.full(shape, v, dtype=torch.float32)``, a pinned value (the same
    tensor, bitwise, in float32)."""
    device = None
    limit = torch.finfo(torch.float16).max
    for node in list(gm.graph.nodes):
        if node.op != "get_attr" or vals.get(node) != torch.float32:
            continue
        value = _attr(gm, str(node.target))
        if isinstance(value, nn.Parameter) or not isinstance(value, torch.Tensor):
            continue
        if value.numel() != 1 or not limit < abs(value.item()) < float("inf"):
            continue
        device = device or _input_device(gm)
        if device is None:
            return
        with gm.graph.inserting_before(node):
            full = gm.graph.call_function(
                torch.full,
                (tuple(value.shape), value.item()),
                {"dtype": torch.float32, "device": device},
            )
        full.meta["val"] = node.meta.get("val")  # a torch.cond operand's, for its branches
        node.replace_all_uses_with(full)
        gm.graph.erase_node(node)
        vals[full] = torch.float32
        _drop_if_unread(gm, str(node.target))


def _drop_if_unread(gm: fx.GraphModule, target: str) -> None:
    """The buffer goes with its last reader: no state dict entry ``.half()`` rounds to -inf."""
    if any(n.op == "get_attr" and n.target == target for n in gm.graph.nodes):
        return
    owner, _, name = target.rpartition(".")
    delattr(gm.get_submodule(owner) if owner else gm, name)


def _attr(gm: nn.Module, target: str):
    owner, _, name = target.rpartition(".")
    return getattr(gm.get_submodule(owner) if owner else gm, name)


def _input_device(gm: fx.GraphModule) -> fx.Node | None:
    """``x.device`` of the first graph input, after the inputs."""
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if not inputs:
        return None
    with gm.graph.inserting_after(inputs[-1]):
        return gm.graph.call_function(getattr, (inputs[0], "device"))


def _float32(node, vals) -> bool:
    return vals.get(node) == torch.float32


def _tensor_args(node: fx.Node) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), found.append)
    return list(dict.fromkeys(found))


def _is_cast(node: fx.Node, dtype: torch.dtype) -> bool:
    """``x.to(dtype)``, the form the Cast lowering writes (lower/shape_ops.py)."""
    return node.op == "call_method" and node.target == "to" and node.args[1:] == (dtype,)


def _float_params(module: nn.Module) -> list[str]:
    return [n for n, p in module.named_parameters() if p.is_floating_point()]


def _kind_of(gm, node, vals, kinds) -> _Kind | None:
    dtype = vals.get(node)
    if dtype is None and _gives_floats(node):  # sort, topk, split: the kind of their items
        seen = {kinds.get(a) for a in _tensor_args(node)}
        if _Kind.ACTIVATION in seen or (
            node.op == "call_module" and _float_params(gm.get_submodule(node.target))
        ):
            return _Kind.ACTIVATION
        return next((k for k in (_Kind.PINNED, _Kind.CONSTANT) if k in seen), None)
    if dtype is None or not dtype.is_floating_point:
        return None
    if node.op == "get_attr":
        owner, _, name = str(node.target).rpartition(".")
        holder = gm.get_submodule(owner) if owner else gm
        return _Kind.ACTIVATION if name in holder._parameters else _Kind.CONSTANT
    if node.op == "call_module" and _float_params(gm.get_submodule(node.target)):
        return _Kind.ACTIVATION
    seen = {kinds.get(a) for a in _tensor_args(node)}
    if _Kind.ACTIVATION in seen:
        return _Kind.ACTIVATION
    if _is_cast(node, torch.float32):  # a constant the graph casts (a float64 table): pinned
        return _Kind.PINNED
    if _Kind.PINNED in seen or (_Kind.CONSTANT not in seen and dtype == torch.float32):
        return _Kind.PINNED if dtype == torch.float32 else None
    return _Kind.CONSTANT if _Kind.CONSTANT in seen else None


def _round_trips(node: fx.Node, vals, kinds, widened: dict[fx.Node, fx.Node]) -> int:
    """Record in `widened` the float32 activation each activation of another float dtype
    was cast from (float64 widened for arithmetic; float16 or bfloat16, the compute dtype
    of a Keras mixed-precision layer); a float32 cast of one becomes a cast to that
    activation's run-time dtype."""
    if kinds[node] is not _Kind.ACTIVATION or node.op not in ("call_function", "call_method"):
        return 0
    source = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
    dtype = vals.get(node)
    if dtype is not None and dtype.is_floating_point and dtype != torch.float32:
        if source is not None and _is_cast(node, dtype) and _float32(source, vals):
            widened[node] = source
        else:  # arithmetic on a cast value: from the first such operand
            origin = next((widened[a] for a in _tensor_args(node) if a in widened), None)
            if origin is not None:
                widened[node] = origin
        return 0
    if source is not None and _is_cast(node, torch.float32) and source in widened:
        with node.graph.inserting_before(node):
            node.args = (source, node.graph.call_function(getattr, (widened[source], "dtype")))
        return 1
    return 0


def _gives_floats(node: fx.Node) -> bool:
    """Whether `node` gives several values (a tuple or list), a float tensor among them."""
    val = node.meta.get("val")
    return isinstance(val, (tuple, list)) and any(
        isinstance(v, torch.Tensor) and v.is_floating_point() for v in val
    )


def _join(gm, node, vals, kinds) -> int:
    """Convert the operands of `node` that meet values of another kind (module docstring)."""
    if node.op not in ("call_function", "call_method", "call_module"):
        return 0
    if node.target in _NO_MEETING or kinds.get(node) is None:
        return 0
    args = [a for a in _tensor_args(node) if _float32(a, vals)]
    pinned = [a for a in args if kinds.get(a) is _Kind.PINNED]
    if not pinned:
        return 0
    if node.op == "call_method" and node.target == "type_as":
        return _type_as(node, vals, kinds)
    like = next((a for a in args if kinds.get(a) is _Kind.ACTIVATION), None)
    if like is None and kinds.get(node) is _Kind.ACTIVATION and node.op == "call_module":
        like = _first_parameter(gm, node)
    if like is not None:
        return _replace(node, pinned, like)
    constants = [a for a in args if kinds.get(a) is _Kind.CONSTANT]
    return _replace(node, constants, pinned[0])


def _type_as(node, vals, kinds) -> int:
    """``pinned.type_as(activation)``: the saturating conversion."""
    value, like = node.args[0], node.args[1]
    if kinds.get(value) is not _Kind.PINNED or kinds.get(like) is not _Kind.ACTIVATION:
        return 0
    if vals.get(value) != vals.get(like):
        return 0
    node.target, node.op, node.args = follow_dtype, "call_function", (value, like)
    return 1


def _first_parameter(gm, node) -> fx.Node:
    """A get_attr of the module's first floating parameter, before `node`."""
    name = _float_params(gm.get_submodule(node.target))[0]
    with gm.graph.inserting_before(node):
        return gm.graph.get_attr(f"{node.target}.{name}")


def _replace(node: fx.Node, operands: list[fx.Node], like: fx.Node) -> int:
    for operand in operands:
        with node.graph.inserting_before(node):
            follow = node.graph.call_function(follow_dtype, (operand, like))
        node.replace_input_with(operand, follow)
    return len(operands)
