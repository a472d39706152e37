"""Causal triangles built from ``Range`` by analysis: a condition normalised to one form.

A mask condition (a boolean, or a 0/1 band) over Range-derived row and column indices is
read into the canonical form

    a * t_q + b * t_k + c  >= 0   (or > 0)

t_q the position along the scores' query axis (-2 from the right), t_k along the key
axis (-1), a and b integers, c a number or a size expression (a cache length). Every
step is exact, so the form holds at every length, never at an example:

* indices: ``arange(start, end, step)`` is start + step * t for t < ceil((end - start) /
  step) (ONNX Range; the length is kept to compare with Lq or Lk), its sizes read as the
  lowering's size expressions (``fxs_dims``; the sizes of q and k as Lq, Lk);
* arithmetic: ``+``, ``-``, negation, a product by a number; broadcasting adds the
  coefficients of one axis (the same length, else declined);
* casts: to int32/int64 (of integers only: a cast truncates a fraction), or to
  float32/float64; a number compared is one float32 holds. Float32 holds every integer
  to 2**24, int32 to 2**31: with factors of at most `_MAX_FACTOR` (16) the values here
  stay exact at every length whose [Lq, Lk] condition (which the model itself builds)
  fits in memory (L < 2**20: 2**40 elements). Narrower types are declined;
* comparisons ``x >= y``, ``x > y``, ``x <= y``, ``x < y`` (operands swapped as needed:
  ``x <= y`` is ``y - x >= 0``), logical not (``not(f >= 0)`` is ``-f > 0``), ``1 - x``
  and ``Where(c, 1, 0)`` of a 0/1 value, any cast of one (0 and 1 are exact everywhere);
* layout ops that move the two axes without mixing them: unsqueeze, permute, transpose,
  whole slices, expand, and reshapes that keep an axis' extent and the product of the
  extents before it (row-major: such an axis keeps its index).

With integer t, f >= 0 for f = m * (t_q - t_k) + c, m > 0, is t_q - t_k >= ceil(-c / m)
(f > 0: floor(-c / m) + 1). The lower triangle aligned at the first key is that bound
at 0, and at the last key (over a cache: i + Lk - Lq >= j) at Lq - Lk; both are decided
exactly on the size expressions, and only where the indices run over Lq and Lk. Anything
else (an upper triangle, a band, a strict triangle, an index against a constant, a form
the walk cannot read) is None: the condition stays a mask.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import sympy
import torch
from fxsurgeon.patterns._attention_graph import (
    HUGE_STOP,
    _constant_alignment,
    _is_cast,
    _number,
    _sliced_constant,
    constant,
    scalar,
)
from torch import fx

#: Integer dtypes an index may be cast to (they hold every length that fits in memory).
_INTS = (torch.int32, torch.int64)
#: Float dtypes that hold every integer index exactly at runnable lengths (see above).
_FLOATS = (torch.float32, torch.float64)
_DEPTH = 64
#: The largest factor an index is multiplied by (see the module's note on exactness).
_MAX_FACTOR = 16

_COMPARE = {  # target -> (operands swapped, strict): x >= y is x - y >= 0
    torch.greater_equal: (False, False),
    torch.ge: (False, False),
    operator.ge: (False, False),
    torch.greater: (False, True),
    torch.gt: (False, True),
    operator.gt: (False, True),
    torch.less_equal: (True, False),
    torch.le: (True, False),
    operator.le: (True, False),
    torch.less: (True, True),
    torch.lt: (True, True),
    operator.lt: (True, True),
}
_ADD = (operator.add, torch.add)
_SUB = (operator.sub, torch.sub)
_NEG = (operator.neg, torch.neg)
_MUL = (operator.mul, torch.mul)


@dataclass(frozen=True)
class Form:
    """sum(coef * t_axis) + const: `axes` maps an axis, counted from the right (-1 the
    last), to (coef, the index's length); `const` a sympy expression."""

    axes: tuple  # ((axis, coef, length), ...), sorted by axis
    const: Any

    def scaled(self, k: Any) -> Form:
        return Form(tuple((a, c * k, n) for a, c, n in self.axes if c * k != 0), self.const * k)


def _plus(x: Form, y: Form) -> Form | None:
    axes = {a: (c, n) for a, c, n in x.axes}
    for a, c, n in y.axes:
        if a in axes:
            c0, n0 = axes[a]
            if sympy.simplify(n0 - n) != 0:
                return None  # two indices of different lengths on one axis
            c = c0 + c
        axes[a] = (c, n)
    kept = tuple(sorted((a, c, n) for a, (c, n) in axes.items() if c != 0))
    return Form(kept, x.const + y.const)


@dataclass
class Sizes:
    """How size values read: `lengths` maps (node, dim) of a size() to "Lq"/"Lk" (the
    attention's own bookkeeping), `atoms` maps "Lq"/"Lk" to their expressions."""

    lengths: dict
    atoms: dict
    module: fx.GraphModule

    def of(self, value: Any, depth: int = 0) -> Any:
        """A Python-int-valued graph value (an int, a size(), arithmetic of them) as a
        sympy expression, else None."""
        if isinstance(value, bool) or depth > _DEPTH:
            return None
        if isinstance(value, int):
            return sympy.Integer(value)
        if not isinstance(value, fx.Node):
            return None
        t, args = value.target, value.args
        if value.op == "call_method" and t == "size" and len(args) == 2:
            atom = self.lengths.get((args[0], args[1]))
            if atom is not None:
                return self.atoms[atom]
            dims = args[0].meta.get("fxs_dims") if isinstance(args[0], fx.Node) else None
            if (
                dims is None
                or not isinstance(args[1], int)
                or not -len(dims) <= args[1] < len(dims)
            ):
                return None
            return sympy.sympify(dims[args[1]])
        if value.op != "call_function" or value.kwargs:
            return None
        parts = [self.of(a, depth + 1) for a in args]
        if any(p is None for p in parts):
            return None
        if t is operator.add and len(parts) == 2:
            return parts[0] + parts[1]
        if t is operator.sub and len(parts) == 2:
            return parts[0] - parts[1]
        if t is operator.mul and len(parts) == 2:
            return parts[0] * parts[1]
        if t is operator.neg and len(parts) == 1:
            return -parts[0]
        if t is operator.floordiv and len(parts) == 2:
            return sympy.floor(parts[0] / parts[1])
        if t is torch.sym_max and len(parts) == 2:
            return sympy.Max(*parts)
        if t is torch.sym_min and len(parts) == 2:
            return sympy.Min(*parts)
        return None


def _rank(node: Any) -> int | None:
    if not isinstance(node, fx.Node):
        return None
    for key in ("fxs_shape", "fxs_dims"):
        known = node.meta.get(key)
        if known is not None:
            return len(known)
    return None


def _dims(node: Any) -> tuple | None:
    return node.meta.get("fxs_dims") if isinstance(node, fx.Node) else None


def _moved(node: fx.Node) -> tuple[fx.Node, Any] | None:
    """A layout op that moves axes without mixing them, as (input, map) with map(axis)
    giving where an input axis (from the right) lands, None where it is not kept whole;
    else None."""
    t, args = node.target, node.args
    x = args[0] if args else None
    if not isinstance(x, fx.Node) or node.op not in ("call_function", "call_method"):
        return None
    if node.op == "call_method" and t in ("expand", "expand_as") or t is torch.broadcast_to:
        return x, lambda a: a  # right-aligned broadcasting keeps every axis' place
    if t is torch.unsqueeze and len(args) == 2 and type(args[1]) is int:
        rank = _rank(x)
        if rank is None:
            return None
        at = args[1] % (rank + 1)
        return x, lambda a: a if rank + a >= at else a - 1
    if (
        t in (torch.permute, torch.transpose)
        or node.op == "call_method"
        and t
        in (
            "permute",
            "transpose",
        )
    ):
        rank = _rank(x)
        perm = _permutation(node, rank)
        if perm is None or rank is None:
            return None
        return x, lambda a: perm.index(rank + a) - rank
    if t is operator.getitem and _whole(args[1]):
        return x, lambda a: a
    if t is torch.reshape or node.op == "call_method" and t in ("reshape", "view"):
        before, after = _dims(x), _dims(node)
        if before is None or after is None:
            return None
        return x, lambda a: _kept_axis(before, after, a)
    return None


def _permutation(node: fx.Node, rank: int | None) -> list | None:
    args = node.args
    if rank is None:
        return None
    if node.target in (torch.transpose, "transpose"):
        if len(args) != 3 or not all(type(d) is int for d in args[1:]):
            return None
        perm = list(range(rank))
        i, j = args[1] % rank, args[2] % rank
        perm[i], perm[j] = perm[j], perm[i]
        return perm
    dims = args[1] if len(args) == 2 else args[1:]
    if not isinstance(dims, (tuple, list)) or sorted(d % rank for d in dims) != list(range(rank)):
        return None
    return [d % rank for d in dims]


def _whole(index: Any) -> bool:
    """Whether ``x[index]`` is x itself: a tuple of slices from 0, step 1, to the end
    (None, or a stop >= `HUGE_STOP`, TF's 10**9), optionally after an Ellipsis."""
    items = index if isinstance(index, tuple) else (index,)
    if items and items[0] is Ellipsis:
        items = items[1:]
    for s in items:
        if not isinstance(s, slice) or s.start not in (None, 0) or s.step not in (None, 1):
            return False
        if not (s.stop is None or (type(s.stop) is int and s.stop >= HUGE_STOP)):
            return False
    return True


def _kept_axis(before: tuple, after: tuple, axis: int) -> int | None:
    """Where a reshape from `before` to `after` (size expressions) puts axis `axis` (from
    the right) of its input: the output axis with the same extent and the same product of
    extents before it (row-major, its index is kept), else None."""
    at = len(before) + axis
    prefix = sympy.Mul(*[sympy.sympify(d) for d in before[:at]])
    for k in range(len(after)):
        same = sympy.simplify(sympy.sympify(after[k]) - sympy.sympify(before[at])) == 0
        if same and sympy.simplify(sympy.Mul(*map(sympy.sympify, after[:k])) - prefix) == 0:
            return k - len(after)
    return None


def _through(node: fx.Node, inner: Form) -> Form | None:
    """`inner` (the form of the layout op's input) as the form of `node`, else None."""
    found = _moved(node)
    if found is None:
        return None
    place = found[1]
    axes = []
    for a, c, n in inner.axes:
        b = place(a)
        if b is None or b >= 0:
            return None
        axes.append((b, c, n))
    return Form(tuple(sorted(axes)), inner.const)


def _cast_dtype(node: fx.Node) -> torch.dtype | None | bool:
    """The dtype a cast makes (False: not a cast)."""
    if node.op == "call_method" and node.target == "to" and len(node.args) == 2:
        return node.args[1] if isinstance(node.args[1], torch.dtype) else False
    named = {
        "float": torch.float32,
        "double": torch.float64,
        "long": torch.int64,
        "int": torch.int32,
    }
    if node.op == "call_method" and node.target in named and len(node.args) == 1:
        return named[str(node.target)]
    return None if _is_cast(node) else False  # follow_dtype: a float dtype, unknown here


def affine(value: Any, sizes: Sizes, depth: int = 0) -> Form | None:
    """An integer-valued tensor (or number) of Range-derived indices as a `Form`, else None."""
    if depth > _DEPTH:
        return None
    known = sizes.of(value)
    if known is not None:
        return Form((), known)
    if isinstance(value, float):  # compared in float32 with an integer tensor
        exact = math.isfinite(value) and float(torch.tensor(value, dtype=torch.float32)) == value
        return Form((), sympy.Rational(value)) if exact else None
    if not isinstance(value, fx.Node):
        return None
    if value.op == "get_attr":
        tensor = constant(value, sizes.module)
        number = scalar(value, sizes.module)
        if number is None or tensor.dtype not in _INTS + _FLOATS or not math.isfinite(number):
            return None  # (a narrower type would round the indices it meets)
        return Form((), sympy.Rational(number))
    t, args = value.target, value.args
    if t is torch.arange and value.op == "call_function":
        return _arange(value, sizes)
    if t is torch.tensor and len(args) == 1 and isinstance(args[0], (list, tuple)):
        dtype = value.kwargs.get("dtype")  # a size as a tensor [1]: ``torch.tensor([n])``
        known = sizes.of(args[0][0]) if len(args[0]) == 1 else None
        return Form((), known) if known is not None and dtype in _INTS + _FLOATS else None
    if t in _ADD or t in _SUB:
        if len(args) != 2 or value.kwargs:
            return None
        x, y = (affine(a, sizes, depth + 1) for a in args)
        if x is None or y is None:
            return None
        return _plus(x, y if t in _ADD else y.scaled(-1))
    if t in _NEG and len(args) == 1 and not value.kwargs:
        x = affine(args[0], sizes, depth + 1)
        return None if x is None else x.scaled(-1)
    if t in _MUL and len(args) == 2 and not value.kwargs:
        x, y = (affine(a, sizes, depth + 1) for a in args)
        if x is None or y is None or (x.axes and y.axes):
            return None
        if not x.axes and not y.axes:
            return Form((), x.const * y.const)
        form, k = (x, y.const) if x.axes else (y, x.const)
        return form.scaled(k) if k.is_number and abs(k) <= _MAX_FACTOR else None
    dtype = _cast_dtype(value)
    if dtype is not False:
        inner = affine(args[0], sizes, depth + 1) if dtype in _INTS + _FLOATS else None
        if inner is None or dtype in _INTS and not _integral(inner):
            return None  # a cast to an integer truncates a fraction
        return inner
    found = _moved(value)
    if found is not None:
        inner = affine(found[0], sizes, depth + 1)
        return None if inner is None else _through(value, inner)
    return None


def _integral(form: Form) -> bool:
    return all(c.is_integer for _, c, _ in form.axes) and bool(form.const.is_integer)


def _arange(node: fx.Node, sizes: Sizes) -> Form | None:
    """``arange(start, end, step)``: start + step * t, t < ceil((end - start) / step)."""
    args = list(node.args)
    bounds = {1: [0, args[0], 1], 2: [args[0], args[1], 1], 3: args}.get(len(args))
    dtype = node.kwargs.get("dtype")
    if bounds is None or (dtype is not None and dtype not in _INTS + _FLOATS):
        return None
    start, end, step = (sizes.of(b) for b in bounds)
    if start is None or end is None or step is None or not step.is_integer or step == 0:
        return None
    length = sympy.ceiling((end - start) / step)
    return Form(((-1, step, length),), start)


@dataclass(frozen=True)
class Condition:
    """A 0/1 value that is [form > 0] (`strict`) or [form >= 0]."""

    form: Form
    strict: bool

    def negated(self) -> Condition:  # not(f >= 0) is -f > 0; not(f > 0) is -f >= 0
        return Condition(self.form.scaled(-1), not self.strict)


def condition(node: Any, sizes: Sizes, depth: int = 0) -> Condition | None:
    """A boolean or 0/1 tensor as a `Condition` over index forms, else None."""
    if not isinstance(node, fx.Node) or depth > _DEPTH:
        return None
    t, args = node.target, node.args
    if node.op == "call_function" and t in _COMPARE and len(args) == 2 and not node.kwargs:
        swapped, strict = _COMPARE[t]
        x, y = (affine(a, sizes, depth + 1) for a in (args[::-1] if swapped else args))
        if x is None or y is None:
            return None
        form = _plus(x, y.scaled(-1))
        return None if form is None else Condition(form, strict)
    if t is torch.logical_not and len(args) == 1 and not node.kwargs:
        inner = condition(args[0], sizes, depth + 1)
        return None if inner is None else inner.negated()
    module = sizes.module
    if t in _SUB and len(args) == 2 and not node.kwargs and scalar(args[0], module) == 1.0:
        inner = condition(args[1], sizes, depth + 1)  # 1 - x of a 0/1 value x
        return None if inner is None else inner.negated()
    if t is torch.where and len(args) == 3 and not node.kwargs:
        ends = (_number(args[1], module), _number(args[2], module))
        if ends not in ((1.0, 0.0), (0.0, 1.0)):
            return None
        inner = condition(args[0], sizes, depth + 1)
        return inner if inner is None or ends == (1.0, 0.0) else inner.negated()
    if node.op == "call_method" and t == "bool" and len(args) == 1:
        return condition(args[0], sizes, depth + 1)
    if node.op in ("call_function", "call_method") and _cast_dtype(node) is not False:
        return condition(args[0], sizes, depth + 1)  # 0 and 1 are exact in every dtype
    found = _moved(node)
    if found is None:
        return None
    inner = condition(found[0], sizes, depth + 1)
    if inner is None:
        return None
    form = _through(node, inner.form)
    return None if form is None else Condition(form, inner.strict)


def alignment(cond: fx.Node, sizes: Sizes, top: bool, bottom: bool) -> str | None:
    """ "top" when `cond` (broadcast to the scores) is the lower triangle j <= i at every
    length (allowed where `top`: Lq == Lk proven), "bottom" when it is i + Lk - Lq >= j
    (allowed where `bottom`: Lk >= Lq proven), decided on the canonical form; else None."""
    found = condition(cond, sizes)
    if found is None:
        return None
    axes = {a: (c, n) for a, c, n in found.form.axes}
    if set(axes) != {-2, -1}:
        return None
    (a, nq), (b, nk) = axes[-2], axes[-1]
    lq, lk = sizes.atoms["Lq"], sizes.atoms["Lk"]
    if not (a.is_number and a > 0 and sympy.simplify(a + b) == 0):
        return None  # not m * (t_q - t_k): an upper triangle, a diagonal band or another
    if sympy.simplify(nq - lq) != 0 or sympy.simplify(nk - lk) != 0:
        return None  # indices over other lengths than the scores'
    for name, allowed, target in (("top", top, 0), ("bottom", bottom, lq - lk)):
        u = sympy.simplify(-found.form.const / a - target)  # t_q - t_k >= target + ceil(u)
        if allowed and u.is_number and (-1 <= u < 0 if found.strict else -1 < u <= 0):
            return name
    return None


def causal_alignment(
    cond: fx.Node,
    lengths: dict,
    same: bool,
    static: tuple,
    module: fx.GraphModule,
    longer: bool,
    node: fx.Node | None = None,
) -> str | None:
    """The triangle's alignment: "top" when the boolean `cond` is the lower triangle
    i >= j at every (equal) length (`same` says Lq == Lk is proven; `lengths` maps (node,
    dim) of a size() to "Lq"/"Lk", `static` is (Lq, Lk) as ints or None); "bottom" when it
    is the triangle aligned at the last key, i + Lk - Lq >= j (GPT-2's band ``i >= j - Lk +
    Lq`` over a key/value cache: the new queries after the cached keys), which `longer`
    (Lk >= Lq proven, so row 0 sees key 0) makes keep a visible key in every row; else
    None. A constant triangle (or a slice of one) is read by `_constant_alignment`; any
    other condition by its canonical form (`alignment`), `node` (a 0/1 band whose
    condition `cond` is) read whole, so that the layout ops between them are followed."""
    found = _sliced_constant(cond, module)
    if found is not None:
        return _constant_alignment(*found, lengths, static, same, longer)
    atoms = {}
    for k, atom in enumerate(("Lq", "Lk")):
        exprs = []
        for (n, axis), name in lengths.items():
            dims = _dims(n)
            if name == atom and dims is not None and -len(dims) <= axis < len(dims):
                exprs.append(sympy.sympify(dims[axis]))
        if static[k] is not None:
            atoms[atom] = sympy.Integer(static[k])
        elif exprs:
            atoms[atom] = exprs[0]
        else:
            atoms[atom] = sympy.Symbol(atom, integer=True, nonnegative=True)
    if same:
        atoms["Lk"] = atoms["Lq"]
    top = same or sympy.simplify(atoms["Lq"] - atoms["Lk"]) == 0
    sizes = Sizes(lengths, atoms, module)
    return alignment(node if node is not None else cond, sizes, top, longer)
