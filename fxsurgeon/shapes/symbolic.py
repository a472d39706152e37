"""Symbolic shapes: which dims are static, decided by analysis, not by trial runs.

Every input dim that is not known to be a constant becomes a fresh symbol of a
torch ``ShapeEnv`` (no duck sizing: two dims are the same only when the graph
says so, e.g. by broadcasting them). The lowering (fxsurgeon/lower/) runs each
native op it writes on fake tensors whose sizes are those symbols
(`SymbolicShapes.run`), so every new node knows its shape as ``SymInt``s.

A dim is static when its symbol has been replaced by a constant, i.e. when an
op forced it (a Reshape to a constant size, a MatMul with a weight, a broadcast
with a static dim). The node that first forced a symbol is recorded in
`SymbolicShapes.forced` and lands in the report. Nothing here runs the model
on real data: the hints (2 for batch, 5 for other dims, or the sizes of given
example tensors) only decide the branches torch's meta functions take, each of
which is a guard of the ShapeEnv (``s0 != 1``), never a specialisation.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch._dispatch.python import enable_python_dispatcher
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext

from ..errors import InputError
from .relations import (
    Tie,
    bound_hints,
    broadcast_hints,
    equation_ties,
    linear_tie,
    multiple_hints,
    needs_equal,
)

# The hints of symbolic dims that come without an example: batch and others.
BATCH_HINT = 2
OTHER_HINT = 5


@dataclass(frozen=True)
class InputSignature:
    """One graph input: rank, dtype, and each dim either fixed (int) or symbolic (None)."""

    name: str
    dtype: torch.dtype
    dims: tuple[int | None, ...]
    hints: tuple[int, ...]

    @classmethod
    def from_spec(cls, spec: Any) -> InputSignature:
        """From an `InputSpec` (ONNX input): its None dims become symbols."""
        hints = tuple(
            d if d is not None else (BATCH_HINT if i == 0 else OTHER_HINT)
            for i, d in enumerate(spec.shape)
        )
        return cls(spec.name, spec.dtype, tuple(spec.shape), hints)

    @classmethod
    def from_tensor(cls, name: str, tensor: torch.Tensor) -> InputSignature:
        """From an example tensor: only its rank and dtype count; every dim is symbolic.

        Its sizes are the hints; 0 and 1 would be specialised by torch, so they
        are hinted as 2 (the hint never becomes a constraint)."""
        hints = tuple(max(int(d), 2) for d in tensor.shape)
        return cls(name, tensor.dtype, (None,) * tensor.dim(), hints)


@dataclass
class ForcedDim:
    """An input dim that the graph forces to a constant, and the node that did it."""

    input: str
    dim: int
    value: int
    node: str  # the onnx2torch node (module path and class) being lowered
    op: str  # the native op whose shape rule forced it

    def __str__(self) -> str:
        return (
            f"input {self.input} dim {self.dim} is fixed to {self.value} by node "
            f"{self.node} ({self.op})"
        )


class HintTooSmall(Exception):  # noqa: N818 - a request to restart, not an error of the model
    """The hints put a size below what an op needs (a window longer than its input).

    The model is only defined at sizes that admit the op, so the hint was a bad
    example, not a fact: the analysis restarts (`SymbolicShapes.restart`) with
    `hints`, (input name, dim) -> hint, which admit it. Hints only choose the
    branches guards take; no dim is fixed by this."""

    def __init__(self, hints: dict[tuple[str, int], int], why: str):
        super().__init__(f"hints {hints} admit {why}")
        self.hints = hints
        self.why = why


@dataclass
class SymbolicShapes:
    """The ShapeEnv, the fake inputs, and what forced which dim."""

    inputs: list[InputSignature]
    env: ShapeEnv = field(init=False)
    mode: FakeTensorMode = field(init=False)
    fake_inputs: list[torch.Tensor] = field(init=False)
    forced: list[ForcedDim] = field(default_factory=list)
    subgraph: bool = False  # an If branch's or Loop body's view (`with_inputs`): no restart
    #: input dims known from the start to equal a sum of others (`learned_ties`)
    ties: tuple[Tie, ...] = ()
    #: a pass made only to learn ties (`learned_ties`); its graph is thrown away, so a value
    #: whose shape the analysis cannot state may take fresh symbols (`unknown_like`)
    learning: bool = False
    #: an If on sizes whose branches' sizes never agree may be a Python branch (control_flow)
    size_branches: bool = False

    def __post_init__(self) -> None:
        self._tie_hints()
        self.env = ShapeEnv(duck_shape=False)
        self.mode = FakeTensorMode(shape_env=self.env, allow_non_fake_inputs=True)
        self.mode.cache_enabled = False  # `run` keeps results by sizes; the mode's cache only costs
        self.fake_inputs = []
        self._symbols: dict[Any, tuple[str, int]] = {}
        self._memo: dict[Any, Any] = {}  # see run
        for sig in self.inputs:
            dynamic = [DimDynamic.STATIC if d is not None else DimDynamic.DYNAMIC for d in sig.dims]
            context: Any = StatelessSymbolicContext(dynamic_sizes=dynamic)
            real = torch.empty(sig.hints, dtype=sig.dtype)
            fake = self.mode.from_tensor(real, symbolic_context=context)
            for i, size in enumerate(fake.shape):
                if isinstance(size, torch.SymInt):
                    self._symbols[size.node.expr] = (sig.name, i)
            self.fake_inputs.append(fake)
        sizes = {
            (sig.name, i): size
            for sig, fake in zip(self.inputs, self.fake_inputs, strict=True)
            for i, size in enumerate(fake.shape)
        }
        with self.mode:
            for key, terms, constant in self.ties:
                torch._check(sizes[key] == constant + sum(c * sizes[k] for c, k in terms))

    def _tie_hints(self) -> None:
        """Give the tied dim of each tie the hint its sum gives (the guard needs them equal)."""
        hints = {(sig.name, i): h for sig in self.inputs for i, h in enumerate(sig.hints)}
        for key, terms, constant in self.ties:
            hints[key] = constant + sum(c * hints[k] for c, k in terms)
        self.inputs = [
            dataclasses.replace(
                sig, hints=tuple(hints[(sig.name, i)] for i in range(len(sig.hints)))
            )
            for sig in self.inputs
        ]

    def learned_ties(self) -> tuple[Tie, ...]:
        """The input dims the graph so far has shown equal to another input dim, or to a sum
        of others, as ties ``(dim, ((coefficient, dim), ...), constant)``.

        The analysis goes through the graph in order, so an op that broadcasts two dims
        together (a padding mask's length with the token length, in the attention scores)
        ties them only from that op on: an If before it sees two independent sizes and a
        predicate (``Shape(ids)[1] < Shape(mask)[1]``) it cannot decide. Every input the
        model accepts satisfies every op of the graph, so the equality holds at the If too:
        a restart with these ties (`restart`) knows it from the start. On a key/value cache
        the mask's length is the cache's plus the new tokens' (OPT's causal-mask If has a
        branch of each): a linear sum of input dims, with integer coefficients, is a tie."""
        first: dict[Any, tuple[str, int]] = {}  # what a dim reduces to -> the first such dim
        ties: list[Tie] = []
        for symbol, key in self._symbols.items():
            value = self.env.replace(symbol)
            if value.is_number:
                continue  # forced to a constant: reported as forced, not a tie
            if value in first:  # (both may reduce to a symbol no input has: a learning pass's)
                ties.append((key, ((1, first[value]),), 0))
                continue
            first[value] = key
            if not value.is_Symbol:
                tie = linear_tie(self._symbols, key, value)
                if tie is not None:
                    ties.append(tie)
        return tuple(sorted(ties + equation_ties(self.env, self._symbols, {t[0] for t in ties})))

    def with_inputs(self, fake_inputs: Sequence[torch.Tensor]) -> SymbolicShapes:
        """The same analysis (ShapeEnv, symbols, forced dims) for a subgraph whose
        inputs are `fake_inputs`, values of this one (an If branch)."""
        sub = copy.copy(self)
        sub.fake_inputs = list(fake_inputs)
        sub.subgraph = True
        return sub

    # -- hints -----------------------------------------------------------------------
    def admit(self, size: Any, bound: int, why: str) -> None:
        """Make sure the hints give ``size >= bound``, an op's precondition on a size.

        `size` is a size of a fake value; when its hint is below `bound`, the hints
        of the input dims it follows are doubled (together) until it is not, and
        `HintTooSmall` asks for a restart with them. A size that follows no input
        dim alone (a constant, a size computed from data) is left to the op."""
        found = self._input_hints(size)
        if found is None:
            return
        hints = bound_hints(found[0], found[1], bound)
        if hints is not None:
            self._restart_with(hints, why)

    def admit_multiple(self, size: Any, factor: int, why: str) -> None:
        """Make sure the hints give a ``size`` that is a multiple of ``factor``, an op's
        precondition (SpaceToDepth's sides and its block size).

        When the hint is not one, the hints of the input dims `size` follows are multiplied
        (together) by the smallest ``m`` that makes it one, and `HintTooSmall` asks for a
        restart with them; a size that follows no input dim alone, or that no ``m`` up to
        ``4 * factor`` makes a multiple, is left to the op (which then refuses it)."""
        found = self._input_hints(size)
        if found is None or factor <= 1:
            return
        hints = multiple_hints(found[0], found[1], factor)
        if hints is not None:
            self._restart_with(hints, why)

    def admit_broadcast(self, values: Sequence, why: str) -> None:
        """After an op refused `values` (its operands: tensors or shapes), make sure the
        hints do not contradict broadcasting them (`broadcast_hints`: a key/value cache
        step's mask length against the cached plus the new tokens', hinted 5 against 5 + 5):
        `HintTooSmall` asks for a restart with hints that satisfy the equality (hints only
        pick a point of the domain; the op's guard then ties the dims). Sizes no hints
        above 1 make equal are left to the op's own error."""
        hints = broadcast_hints(self.env, self._symbols, values)
        if hints:
            self._restart_with(hints, why)

    def _input_hints(self, size: Any):
        """(the expression of `size`, its symbols' hints) when `size` follows input dims alone."""
        if not isinstance(size, torch.SymInt):
            return None
        expr = self.env.replace(size.node.expr)
        known = {s: self.env.backed_var_to_val.get(s) for s in expr.free_symbols}
        if not known or any(s not in self._symbols or v is None for s, v in known.items()):
            return None
        return expr, {s: int(v) for s, v in known.items() if v is not None}

    def _restart_with(self, hints: dict, why: str) -> None:
        """`HintTooSmall` for `hints` (symbol -> hint) unless they are the hints now."""
        if all(hints[s] == self.env.backed_var_to_val[s] for s in hints):
            return
        new = {self._symbols[s]: int(v) for s, v in hints.items()}
        raise HintTooSmall(new, why)

    def unknown_like(self, value: torch.Tensor) -> torch.Tensor:
        """A fake tensor of `value`'s dtype and rank whose every dim is a fresh symbol (hinted
        as `value`'s): what a learning pass gives for a value whose sizes it cannot state
        (an If whose branches differ in shape), so that the ops after it still relate their
        other sizes to each other and to the inputs' (where they tie input dims)."""
        hints = [
            int(self.env.size_hint(d.node.expr)) if isinstance(d, torch.SymInt) else d
            for d in value.shape
        ]
        context: Any = StatelessSymbolicContext(dynamic_sizes=[DimDynamic.DYNAMIC] * len(hints))
        return self.mode.from_tensor(
            torch.empty([max(h, 2) for h in hints], dtype=value.dtype), symbolic_context=context
        )

    def fresh_int(self, hint: int) -> torch.SymInt:
        """A new symbol hinted `hint`, for an int not stated in the input dims (`_fresh_symbol`)."""
        return _fresh_symbol(self.env, hint)

    def data_size(self) -> torch.SymInt:
        """A new unbacked symbol (>= 0) for a size the data decides (where a data-decided If's
        branches differ): nothing guards on it; an op's needs become run-time asserts."""
        with self.mode:
            size = self.env.create_unbacked_symint()
            torch._check(size >= 0)
        return size

    def restart(
        self,
        hints: dict[tuple[str, int], int],
        ties: tuple | None = None,
        learning: bool | None = None,
    ) -> None:
        """Start the analysis afresh (new ShapeEnv, symbols, nothing forced) with
        `hints` for the input dims it names (`HintTooSmall`), and `ties` (None: the
        ties it has) between input dims known equal from the start (`learned_ties`);
        `learning` (None: as it is) marks a pass made only to learn ties."""
        if learning is not None:
            self.learning = learning
        inputs = []
        for sig in self.inputs:
            new = tuple(hints.get((sig.name, i), h) for i, h in enumerate(sig.hints))
            inputs.append(dataclasses.replace(sig, hints=new))
        self.inputs = inputs
        self.forced = []
        if ties is not None:
            self.ties = tuple(ties)
        self.__post_init__()

    # -- running ops -------------------------------------------------------------
    def run(self, fn: Any, args: Sequence, kwargs: dict, where: str, op: str) -> Any:
        """``fn(*args, **kwargs)`` on fake values; notes any input dim it forced. A call on
        the same sizes as an earlier one (the next layer's) gives the earlier result: a native
        op's fake result depends only on its inputs' sizes, strides and dtypes, and its guards
        hold already. Ops run with the Python dispatcher on, as under torch.export: a composite
        op whose C++ kernel reads concrete sizes (``torch.lstm``, ``constant_pad_nd``) then
        takes its symbolic decomposition, not pinning the dims it reads to their examples."""
        key = _memo_key((fn, args, kwargs))
        if key is not None and key in self._memo:
            return _fresh(self.mode, self._memo[key])
        symbols = len(self.env.var_to_range)
        # a failing meta function is our LoweringError, not an ERROR log line of torch's
        with _quiet(_FAKE_LOG), self.mode, enable_python_dispatcher():
            try:
                result = fn(*args, **kwargs)
            except Exception:
                if not isinstance(fn, torch.nn.Module):  # a kept module's inputs need not
                    self.admit_broadcast(needs_equal(fn, args, kwargs), f"{where} ({op})")
                raise
        self._note_forced(where, op)
        # a call that read data (``.item()``, nonzero) made fresh unbacked symbols: another
        # call on a tensor of the same sizes reads other data, so it is not kept
        if key is not None and len(self.env.var_to_range) == symbols:
            self._memo[key] = result
        return result

    def fake(self, tensor: torch.Tensor) -> torch.Tensor:
        """A constant of the graph: its sizes are its own, never symbols."""
        return self.mode.from_tensor(tensor, static_shapes=True)

    def _note_forced(self, where: str, op: str) -> None:
        if len(self.forced) == len(self._symbols):
            return
        known = {(f.input, f.dim) for f in self.forced}
        for symbol, (name, dim) in self._symbols.items():
            if (name, dim) in known:
                continue
            value = self.env.replace(symbol)
            if value.is_number:
                self.forced.append(ForcedDim(name, dim, int(value), where, op))

    # -- reading shapes ------------------------------------------------------------
    def static(self, size: Any) -> int | None:
        """A size as an int when the analysis shows it constant, else None."""
        if isinstance(size, int):
            return size
        if isinstance(size, torch.SymInt):
            expr = self.env.replace(size.node.expr)
            return int(expr) if expr.is_number else None
        return None

    def expressions(self, value: torch.Tensor) -> tuple:
        """Each size of `value` as an int or a sympy expression of input dims' symbols
        (sizes: nonnegative integers to sympy), as far as the analysis has reduced it."""
        return tuple(
            self.env.replace(d.node.expr) if isinstance(d, torch.SymInt) else int(d)
            for d in value.shape
        )

    def shape(self, value: Any) -> tuple[int | None, ...] | None:
        if not isinstance(value, torch.Tensor):
            return None
        return tuple(self.static(d) for d in value.shape)

    def free_dims(self) -> dict[tuple[str, int], bool]:
        """For each symbolic input dim: True if no guard ties it to an equation
        (then any size the meta rules accept works)."""
        tied: set = set()
        for guard in self.env.guards:
            expr = guard.expr
            if type(expr).__name__ == "Equality":
                tied |= expr.free_symbols
        result = {}
        for symbol, key in self._symbols.items():
            value = self.env.replace(symbol)
            result[key] = not value.is_number and not (value.free_symbols & tied)
        return result

    def example_inputs(self, bump: int = 0, *, every: bool = False) -> tuple[torch.Tensor, ...]:
        """Real inputs that satisfy the analysis: forced dims at their value,
        free symbolic dims at hint + `bump` (with `every`, all symbolic dims
        that are not forced: dims of one role then stay equal across inputs,
        as an encoder's and a decoder's batch must). Integer inputs are ones
        (valid token ids and masks), floats seeded normal."""
        free = {key: True for key in self._symbols.values()} if every else self.free_dims()
        forced = {(f.input, f.dim): f.value for f in self.forced}
        out = []
        for sig in self.inputs:
            shape = []
            for i, (dim, hint) in enumerate(zip(sig.dims, sig.hints, strict=True)):
                if dim is not None:
                    shape.append(dim)
                elif (sig.name, i) in forced:
                    shape.append(forced[(sig.name, i)])
                else:
                    shape.append(hint + bump if free.get((sig.name, i)) else hint)
            generator = torch.Generator().manual_seed(1234)
            if sig.dtype.is_floating_point:
                out.append(torch.randn(shape, generator=generator).to(sig.dtype))
            else:
                out.append(torch.ones(shape, dtype=sig.dtype))
        return tuple(out)


_FRESH = itertools.count(1)  # names of `fresh_int`'s symbols: a subgraph's view shares the env


def _fresh(mode: Any, result: Any) -> Any:
    """A kept result as new fake tensors of the same sizes and strides: a fake tensor
    remembers what was read from it (``item()`` gives the same unbacked symbol again),
    and two nodes given one result read two tensors' data."""
    if isinstance(result, torch.Tensor):
        with mode:
            return torch.ops.aten.alias.default(result)
    if type(result) in (tuple, list):
        return type(result)(_fresh(mode, r) for r in result)
    return result  # (a structseq of torch.return_types: as it was kept)


def _fresh_symbol(env: ShapeEnv, hint: int) -> torch.SymInt:
    """A new symbol of ``env`` hinted ``hint`` (its value at the input hints). Any int, 0
    and 1 included: nothing specialises it, and no input dim follows it, so nothing it
    meets forces an input dim."""
    # imported here: torch._dynamo at `import fxsurgeon` would cost every import its
    # start-up and probe for TensorFlow (fxsurgeon.load must work where it is absent)
    from torch._dynamo.source import ConstantSource

    source = ConstantSource(f"fxs_int_{next(_FRESH)}")
    symbol = env.create_symbol(
        hint, source, DimDynamic.DYNAMIC, positive=None, do_not_specialize_zero_one=True
    )
    value = env.create_symintnode(symbol, hint=hint)
    assert isinstance(value, torch.SymInt)  # a symbol, not a number: it is fresh
    return value


_FAKE_LOG = logging.getLogger("torch._subclasses.fake_tensor")


@contextlib.contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


_LITERALS = (int, float, bool, str, type(None), torch.dtype, torch.device, torch.layout)


def _memo_key(value: Any) -> Any:
    """A hashable description of a call's function and arguments by sizes,
    strides and dtypes (symbols as their current expressions), or None when
    one of them is not described so (a module, a fake tensor holding data)."""
    if isinstance(value, torch.Tensor):
        if getattr(value, "constant", None) is not None:
            return None
        sizes = tuple(_memo_key(d) for d in value.shape)
        strides = tuple(_memo_key(d) for d in value.stride())
        return ("tensor", sizes, strides, value.dtype, value.device)
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        return ("sym", type(value), value.node.expr)
    if isinstance(value, _LITERALS):
        return (type(value), value)
    if isinstance(value, (tuple, list)):
        items = tuple(_memo_key(v) for v in value)
        return None if None in items else (type(value), items)
    if isinstance(value, dict):
        items = tuple((k, _memo_key(v)) for k, v in sorted(value.items()))
        return None if any(v is None for _, v in items) else ("dict", items)
    if isinstance(value, slice):
        return _memo_key(("slice", value.start, value.stop, value.step))
    if value is Ellipsis:
        return "..."
    if callable(value) and not isinstance(value, torch.nn.Module) and _stable(value):
        return ("fn", value)
    return None


def _stable(fn: Any) -> bool:
    """A function that names the same computation every time it is seen: a
    module-level function or builtin, or a method of a class (not a closure)."""
    if getattr(fn, "__closure__", None):
        return False
    name = getattr(fn, "__qualname__", "")
    return "<lambda>" not in name and "<locals>" not in name


def signatures(
    names: Sequence[str], specs: Sequence | None, example_inputs: Sequence | None
) -> list[InputSignature]:
    """Input signatures from example tensors (ranks/dtypes only) or ONNX input specs."""
    if example_inputs is not None:
        tensors = list(example_inputs)
        if len(tensors) != len(names):
            raise InputError(
                f"the model takes {len(names)} inputs ({', '.join(names)}), "
                f"got {len(tensors)} example inputs"
            )
        return [InputSignature.from_tensor(n, t) for n, t in zip(names, tensors, strict=True)]
    if specs is None:
        raise InputError("no input signature: give example inputs or a model with ONNX input specs")
    if len(specs) != len(names):
        raise InputError(
            f"the model takes {len(names)} inputs ({', '.join(names)}), "
            f"its ONNX input specs name {len(specs)}"
        )
    return [InputSignature.from_spec(s) for s in specs]
