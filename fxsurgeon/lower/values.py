"""The values a lowering sees and makes: `Const`, `Sym`, graph nodes, and the `LoweringContext`
that builds the new graph.

Every node the context writes is run at once on fake tensors with symbolic
sizes (`fxsurgeon.shapes.SymbolicShapes`): ``node.meta["val"]`` holds the fake
value while lowering, and ``fxs_shape``/``fxs_dtype`` are read from it (None
for a dim that stays symbolic). So a lowering can ask for the shape of any
node it wrote, and ``ctx.size`` gives an int exactly when the analysis shows
the dim constant.
"""

from __future__ import annotations

import operator
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ..errors import LoweringError
from ..shapes import HintTooSmall, SymbolicShapes, shape_of

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


#: Calls the shape analysis does not run but asks for their output shapes:
#: ``torch.cond`` would trace both branches with dynamo, ``run_loop`` (loop.py) would
#: iterate over a symbolic trip count.
SHAPE_FUNCTIONS: dict[Callable[..., Any], Callable[..., Any]] = {}


#: an initializer tf2onnx named after the resource input of a TF variable read
_VARIABLE_READ = re.compile(r"(^|/)resource(:\d+)?$")


def names_a_variable(initializer: str | None) -> bool:
    """The initializer's name says tf2onnx froze a TF variable read into it
    (``attention/ReadVariableOp/resource:0``): a learned tensor, whatever its size."""
    return bool(initializer and _VARIABLE_READ.search(initializer))


@dataclass
class Const:
    """A tensor known at optimize time. `initializer` names its ONNX origin."""

    value: torch.Tensor
    initializer: str | None = None

    @property
    def is_weight(self) -> bool:
        """Weights stay in the graph (they become parameters); the rest folds. A
        one-element float folds (a formula's ``eps``, ``0.5``) unless its name says it
        is a TF variable (a learned scalar: it stays a tensor, `params` decides)."""
        return (
            self.value.is_floating_point()
            and self.initializer is not None
            and (self.value.numel() > 1 or names_a_variable(self.initializer))
        )


@dataclass
class Sym:
    """A 0-d or 1-d integer tensor whose elements are ints or int-valued nodes."""

    items: list
    scalar: bool = False
    dtype: torch.dtype = torch.int64

    @property
    def is_static(self) -> bool:
        return all(isinstance(i, int) for i in self.items)

    def to_const(self) -> Const:
        value = torch.tensor(self.items, dtype=self.dtype)
        return Const(value.reshape(()) if self.scalar else value)


@dataclass
class SymArray:
    """An integer tensor of rank 2 or more whose elements are ints or int-valued nodes,
    as a numpy object array: tf2onnx writes ``tf.pad`` by computed amounts as
    ``Reshape(Transpose(Concat(Unsqueeze(Sym), ...)), [-1])``, a (rank, 2) matrix of
    sizes. Only the lowerings named in `SYM_ARRAY_OPS` take one (they rearrange its
    elements; a Reshape back to rank 1 gives a `Sym`); any other op gets it as a tensor
    (`LoweringContext.tensor`), so no lowering written for `Sym` sees a rank it does not
    expect."""

    items: np.ndarray  # dtype object, ndim >= 2
    dtype: torch.dtype = torch.int64

    @property
    def is_static(self) -> bool:
        return all(isinstance(i, int) for i in self.items.flat)


#: The onnx2torch module classes whose lowerings take a `SymArray` (shape_ops.py).
SYM_ARRAY_OPS = frozenset(
    {
        "OnnxShape",
        "OnnxCast",
        "OnnxCopyIdentity",
        "Identity",
        "OnnxUnsqueezeStaticAxes",
        "OnnxUnsqueezeDynamicAxes",
        "OnnxSqueezeStaticAxes",
        "OnnxSqueezeDynamicAxes",
        "OnnxConcat",
        "OnnxReshape",
        "OnnxTranspose",
    }
)


def sym_or_array(items: np.ndarray, dtype: torch.dtype) -> Sym | SymArray:
    """Elements in an array of any rank: a `Sym` for rank 0 or 1, else a `SymArray`."""
    if items.ndim >= 2:
        return SymArray(items, dtype)
    return Sym(list(items.reshape(-1).tolist()), scalar=items.ndim == 0, dtype=dtype)


def object_array(value: Any) -> np.ndarray | None:
    """The elements of a `Sym`, `SymArray` or small integer `Const` as an object array
    (ints and int nodes) in its shape; None for anything else."""
    if isinstance(value, SymArray):
        return value.items
    if isinstance(value, Sym):
        out = np.empty(len(value.items), dtype=object)
        out[:] = value.items
        return out.reshape(()) if value.scalar else out
    if isinstance(value, Const):
        v = value.value
        if v.is_floating_point() or v.dtype == torch.bool or v.numel() > 64:
            return None
        out = np.empty(v.numel(), dtype=object)
        out[:] = [int(i) for i in v.reshape(-1).tolist()]
        return out.reshape(tuple(v.shape))
    return None


Value = Any  # Const | Sym | SymArray | fx.Node | list


def is_onnx2torch_module(module: nn.Module) -> bool:
    return type(module).__module__.startswith("onnx2torch")


#: A lowered branch -> the fake values of its outputs, recorded as it was lowered
#: (control_flow.py). Running the branch again would not give them: ``torch.tensor``
#: on sizes pins its symbols when run, which the analysis avoids node by node.
BRANCH_OUTPUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


#: A lowered then-branch -> the fake values its torch.cond gives where the branches' sizes
#: differ (control_flow.py: unbacked symbols for the dims in which they differ).
COND_OUTPUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _cond_shapes(pred: Any, then_branch: Any, else_branch: Any, operands: Any) -> tuple:
    """What ``torch.cond`` gives, for the analysis: the then-branch's outputs as
    recorded when it was lowered on these operands (else run on the fake operands;
    torch.cond itself would trace both branches with dynamo), or `COND_OUTPUTS`'."""
    out = COND_OUTPUTS.get(then_branch, BRANCH_OUTPUTS.get(then_branch))
    if out is None:
        out = then_branch(*operands)
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


SHAPE_FUNCTIONS[torch.cond] = _cond_shapes


class ShapedGraph(fx.Graph):
    """An fx.Graph that runs every node it creates on fake tensors (see module doc)."""

    def __init__(self, shapes: SymbolicShapes):
        super().__init__()
        self.shapes = shapes
        self.root: nn.Module | None = None
        self.where = "input"  # the onnx2torch node being lowered, for the forced-dims report

    def create_node(self, op, target, args=None, kwargs=None, name=None, type_expr=None):
        node = super().create_node(op, target, args, kwargs, name, type_expr)
        if op not in ("placeholder", "output"):
            self.evaluate(node)
        return node

    def evaluate(self, node: fx.Node) -> None:
        values: Any = fx.node.map_arg((node.args, node.kwargs), lambda n: n.meta.get("val"))
        args, kwargs = values
        target: Any = node.target
        fn: Callable[..., Any]
        if node.op == "get_attr":
            fn, args = self._fetch, (target,)
        elif node.op == "call_method":
            if not isinstance(args[0], torch.Tensor):  # e.g. the output of a kept module
                raise LoweringError(f"no shape known for the input of {node.format_node()}")
            fn = getattr(type(args[0]), target)  # x.size(1) as Tensor.size(x, 1)
        elif node.op == "call_module":
            fn = self.root.get_submodule(target)  # type: ignore[union-attr]
        elif target is operator.getitem and args[0] is None:
            return  # an output of a module kept as is: its shape stays unknown
        elif target in SHAPE_FUNCTIONS:  # a call whose shapes are worked out, not run
            fn = SHAPE_FUNCTIONS[target]
        elif target is torch.tensor and any(isinstance(i, torch.SymInt) for i in args[0]):
            # sizes become data (a Sym as a tensor): running torch.tensor on the symbols
            # would pin them to their example values; the data is unknown, the shape is not
            fn, args = torch.empty, ((len(args[0]),),)
        else:
            fn = target
        op = getattr(node.target, "__name__", str(node.target))
        try:
            value = self.shapes.run(fn, args, kwargs, self.where, op)
        except HintTooSmall:
            raise  # the analysis restarts with hints inside the op's domain
        except Exception as exc:
            if node.op == "call_module":  # a module kept as is: its shape stays unknown
                return
            raise LoweringError(
                f"shape analysis of {node.format_node()} failed: {type(exc).__name__}: {exc}"
            ) from exc
        self.record(node, value)

    def record(self, node: fx.Node, value: Any) -> None:
        node.meta["val"] = value
        self._describe(node, value)

    def _describe(self, node: fx.Node, value: Any) -> None:
        """``fxs_shape``/``fxs_dtype`` for a tensor, ``fxs_multi`` for a tuple of them;
        ``fxs_dims``, each dim as an int or a sympy expression of the input dims' symbols
        (what the fake value knew, for rules that compare sizes: Lk >= Lq)."""
        if isinstance(value, torch.Tensor):
            node.meta["fxs_shape"] = self.shapes.shape(value)
            node.meta["fxs_dtype"] = value.dtype
            node.meta["fxs_dims"] = self.shapes.expressions(value)
        elif isinstance(value, (tuple, list)):
            node.meta["fxs_multi"] = [self._element(v) for v in value]

    def _element(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return (self.shapes.shape(value), value.dtype)
        if isinstance(value, (tuple, list)):
            return [self._element(v) for v in value]
        return None

    def _fetch(self, target: str) -> Any:
        obj: Any = self.root
        for part in target.split("."):
            obj = getattr(obj, part)
        return self.shapes.fake(obj) if isinstance(obj, torch.Tensor) else obj

    def refresh(self) -> None:
        """Re-read every shape (later ops may have forced earlier symbols), drop fake values."""
        for node in self.nodes:
            self._describe(node, node.meta.pop("val", None))


class LoweringContext:
    """What a lowering function may use to write into the new graph."""

    def __init__(self, graph: ShapedGraph, root: nn.Module, anchor: fx.Node):
        self.graph = graph
        graph.root = root
        self.root = root
        self.anchor = anchor  # a placeholder, for the device of created tensors
        self._node: fx.Node | None = None  # the original node being lowered
        self.rule = "lower"
        self.initializer_of: Callable[[str], str | None] = lambda name: None
        self._size_cache: dict[tuple[fx.Node, int], fx.Node] = {}
        self._size_by_expr: dict[Any, fx.Node] = {}  # the first read of each size
        self._size_reads: list[tuple[fx.Node, Any]] = []
        self._const_count = 0
        self._const_cache: dict[int, str] = {}

    @property
    def node(self) -> fx.Node | None:
        return self._node

    @node.setter
    def node(self, node: fx.Node | None) -> None:
        self._node = node
        if node is not None:
            self.graph.where = str(node.target)

    # -- writing nodes -------------------------------------------------------
    def call(self, target: Callable, *args, **kwargs) -> fx.Node:
        node = self.graph.call_function(target, tuple(args), kwargs)
        self._tag(node)
        return node

    def method(self, name: str, *args, **kwargs) -> fx.Node:
        node = self.graph.call_method(name, tuple(args), kwargs)
        self._tag(node)
        return node

    def _tag(self, node: fx.Node) -> None:
        if self.node is not None:
            node.meta["fxsurgeon.rule"] = self.rule
            node.meta["fxsurgeon.onnx_node"] = str(self.node.target)

    # -- turning values into graph arguments -----------------------------------
    def tensor(self, value: Value) -> fx.Node:
        """A graph node holding `value` as a tensor."""
        if isinstance(value, fx.Node):
            return value
        if isinstance(value, Sym):
            if value.is_static:
                return self.tensor(value.to_const())
            node = self.call(
                torch.tensor, list(value.items), dtype=value.dtype, device=self.device()
            )
            return self.call(torch.reshape, node, ()) if value.scalar else node
        if isinstance(value, SymArray):
            if value.is_static:
                return self.constant(Const(torch.tensor(value.items.tolist(), dtype=value.dtype)))
            return self.call(
                torch.tensor, value.items.tolist(), dtype=value.dtype, device=self.device()
            )
        if isinstance(value, Const):
            return self.constant(value)
        raise LoweringError(f"cannot use {type(value).__name__} as a tensor")

    def operand(self, value: Value, other_shape: tuple | None = None) -> Any:
        """Like `tensor`, but a one-element constant that broadcasting does not
        widen becomes a Python scalar (``x * 0.5`` rather than a buffer)."""
        scalar = self.scalar_of(value, other_shape)
        return scalar if scalar is not None else self.tensor(value)

    def scalar_of(self, value: Value, other_shape: tuple | None) -> int | float | None:
        if isinstance(value, Sym) and value.scalar and len(value.items) == 1:
            item = value.items[0]
            return item if other_shape is not None else None
        if not isinstance(value, Const) or value.value.numel() != 1 or other_shape is None:
            return None
        if value.is_weight:
            return None  # a learned scalar stays a tensor
        if value.value.dim() > len(other_shape) or value.value.dtype == torch.bool:
            return None
        return value.value.item()

    def constant(self, const: Const) -> fx.Node:
        """A get_attr for a constant; one buffer per distinct tensor object."""
        key = id(const.value)
        name = self._const_cache.get(key)
        if name is None:
            base = "weights" if const.is_weight else "consts"
            if not hasattr(self.root, base):
                self.root.add_module(base, nn.Module())
            holder = getattr(self.root, base)
            name = f"c{self._const_count}"
            self._const_count += 1
            holder.register_buffer(name, const.value)
            name = f"{base}.{name}"
            self._const_cache[key] = name
        node = self.graph.get_attr(name)  # ShapedGraph records its shape and dtype
        if const.initializer is not None:
            node.meta["fxsurgeon.initializer"] = const.initializer
        if self.node is not None:
            node.meta["fxsurgeon.onnx_node"] = str(self.node.target)
        return node

    def device(self) -> fx.Node:
        return self.graph.call_function(getattr, (self.anchor, "device"))

    def out_shape(self, *values: Value) -> tuple | None:
        """The broadcast shape of `values` (None for symbolic dims), or None if unknown."""
        shapes = []
        for value in values:
            if isinstance(value, fx.Node) and isinstance(value.meta.get("val"), torch.Tensor):
                shapes.append(value.meta["val"].shape)
            elif isinstance(value, Const):
                shapes.append(value.value.shape)
            elif isinstance(value, Sym):
                shapes.append(() if value.scalar else (len(value.items),))
            else:
                return None
        analysis = self.graph.shapes
        out = analysis.run(torch.broadcast_shapes, shapes, {}, self.graph.where, "broadcast")
        return tuple(analysis.static(d) for d in out)

    def size(self, x: fx.Node, dim: int) -> int | fx.Node:
        """x.shape[dim] as an int when the analysis shows it constant, else a
        ``x.size(dim)`` node."""
        value = x.meta.get("val")
        if not isinstance(value, torch.Tensor):
            raise LoweringError(f"no shape known for {x.format_node()}")
        dim = dim % value.dim()
        static = self.graph.shapes.static(value.shape[dim])
        if static is not None:
            return static
        key = (x, dim)
        if key not in self._size_cache:
            size = value.shape[dim]
            assert isinstance(size, torch.SymInt)  # not static (above)
            node = self.graph.call_method("size", (x, dim))
            self._size_by_expr.setdefault(self.graph.shapes.env.replace(size.node.expr), node)
            self._size_reads.append((node, self.graph.shapes.env.replace(size.node.expr)))
            self._size_cache[key] = node
        return self._size_cache[key]

    def share_sizes_of_dead_ends(self) -> None:
        """A tensor read only for its sizes (tf2onnx's peeled first loop step, computed to
        allocate the loop's output) has them read where the analysis shows the same size
        was read first, so the computation dies. A tensor that is used otherwise keeps its
        own reads: each block of a repeated structure reads its own sizes (codegen finds
        the blocks by that)."""
        for node, expr in self._size_reads:
            first = self._size_by_expr[expr]
            tensor = node.args[0]
            if first is node or not isinstance(tensor, fx.Node):
                continue
            if all(u.op == "call_method" and u.target == "size" for u in tensor.users):
                node.replace_all_uses_with(first)
                self.graph.erase_node(node)


# ---------------------------------------------------------------------------
# Helpers on values
# ---------------------------------------------------------------------------


def const_ints(value: Value, what: str) -> list[int]:
    """Static integer contents of a value (axes, starts, pads, ...)."""
    if isinstance(value, Sym) and value.is_static:
        return list(value.items)
    if isinstance(value, Const):
        return [int(v) for v in value.value.reshape(-1).tolist()]
    raise LoweringError(f"{what} must be known at optimize time, got a run-time value")


def rank_of(x: fx.Node) -> int:
    shape = shape_of(x)
    if shape is None:
        raise LoweringError(f"no shape known for {x.format_node()}")
    return len(shape)


def _sym_from_const(value: Const) -> Sym | None:
    """Integer constants with few elements take part in shape arithmetic."""
    v = value.value
    if v.is_floating_point() or v.dtype == torch.bool or v.dim() > 1 or v.numel() > 16:
        return None
    return Sym([int(i) for i in v.reshape(-1).tolist()], scalar=v.dim() == 0, dtype=v.dtype)


def as_sym(value: Value) -> Sym | None:
    if isinstance(value, Sym):
        return value
    if isinstance(value, Const):
        return _sym_from_const(value)
    return None
