"""When may ONNX Loop's condition be ignored? An analysis of the body's condition.

A Loop runs while ``i < M`` and its condition holds. Converting it to a loop of
exactly ``M`` steps is right only when the condition provably holds at every
step that decides whether another step runs: the initial condition (for
``M >= 1``) and the body's condition after steps ``0 .. M - 2``. The condition
a body may yield at its last step does not matter.

tf2onnx writes a Keras RNN's ``while`` as a Loop whose condition is
``counter < T and time + 1 < T``, with ``M = T`` and ``time`` a loop-carried
value that starts at 0 and grows by 1. This module proves such conditions by
dataflow over the ONNX names: integer values are affine forms in the step
number ``i`` and the trip count ``M`` (``{"1": c, "i": a, "M": b}``); a
loop-carried value is an induction variable when the body adds a constant to it
(or passes it through); comparisons become linear constraints that are checked
over the whole region ``M >= 2, 0 <= i <= M - 2`` (or at the static ``M``).
Anything it cannot read makes the proof fail: the caller then refuses the node.

A while loop (no ``M``; tf_keras's RNN over a masked input of dynamic length) runs
until its condition fails. When the body's condition contains ``c + i < X`` (or
``<=``) for a run-time value ``X`` that the loop does not change (an outer value, or a
loop-carried one the body passes through), the loop stops at the latest after step
``X - c``: the trip count is ``M = X - offset`` (`trip_name`, `trip_offset`), the
smallest such bound over the conjuncts. The proof then goes on as for a Loop with that
``M`` (``X`` is ``M + offset``), and the initial condition must moreover be false
whenever ``M <= 0``, so that the loop runs exactly ``max(M, 0)`` steps. A Loop whose
condition bounds the counter below its own M (``tf.foldl``: ``counter + 1 < n`` with
``M = n``) runs fewer steps, by the same offset rule (`_bind_early_stop`).
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper

from .scope import free_names as free_outer_names

Affine = dict  # {"1": number, "i": number, "M": number}
_PASS = {"Cast", "Identity", "Squeeze", "Unsqueeze", "Reshape", "Flatten"}
_CMP = {"Less": (False, True), "Greater": (True, True), "LessOrEqual": (False, False)}
_CMP["GreaterOrEqual"] = (True, False)  # (swap operands, strict)


class Unproven(Exception):
    """The condition is not shown to hold; the message says where the proof stopped."""


def _affine(c=0, i=0, m=0) -> Affine:
    return {"1": c, "i": i, "M": m}


def _add(a: Affine, b: Affine, sign: int = 1) -> Affine:
    return {k: a[k] + sign * b[k] for k in a}


def _is_const(a: Affine) -> bool:
    return a["i"] == 0 and a["M"] == 0


class _Scope:
    """The names of one graph: constants, producers, and names bound by the analysis."""

    def __init__(self, graph: onnx.GraphProto, parent: _Scope | None = None):
        self.parent = parent
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.bound: dict[str, object] = {}
        # The graph's own inputs: never read as the enclosing graph's values of the same name.
        self.inputs = {i.name for i in graph.input}

    def const(self, name: str):
        if name in self.consts:
            return self.consts[name]
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        if node is None and self.parent is not None:
            return self.parent.const(name)
        return None


class LoopBound:
    """Proves that a Loop node's condition can be ignored (`check`), or says why not."""

    def __init__(self, loop: onnx.NodeProto, outer: onnx.GraphProto, body: onnx.GraphProto):
        self.loop = loop
        self.outer = _Scope(outer)
        self.body = _Scope(body, self.outer)
        self.body_graph = body
        self.static_m: int | None = None
        self.m_root: str | None = None
        #: a while loop's trip count is the value named `trip_name` minus `trip_offset`
        self.trip_name: str = loop.input[0] if loop.input else ""
        self.trip_offset = 0

    # -- the trip count ----------------------------------------------------------------
    def _root(self, scope: _Scope, name: str) -> str:
        """`name` with value-preserving ops (Cast, Squeeze, ...) walked back."""
        node = scope.producer.get(name)
        while node is not None and _passes(node):
            name = node.input[0]
            node = scope.producer.get(name)
        return name

    def _bind_trip_count(self) -> None:
        m = self.loop.input[0]
        if not m:
            self._bind_while_bound()
            return
        root = self._root(self.outer, m)
        value = self.outer.const(root)
        if value is not None:
            self.static_m = int(value.reshape(-1)[0])
        self.m_root = root

    def _bind_while_bound(self) -> None:
        """A while loop: its trip count from a bound ``c + i < X`` of its condition."""
        if len(self.loop.input) < 2 or not self.loop.input[1]:
            raise Unproven("the Loop has no trip count M and no initial condition")
        why = []
        for root in self._bound_candidates():
            try:
                self._try_bound(root)
                return
            except Unproven as exc:
                why.append(str(exc))
        self.m_root, self.trip_offset = None, 0
        raise Unproven(
            "the Loop has no trip count M (a while loop), and its condition bounds no step "
            "counter by a value the loop does not change" + "".join(f"; {w}" for w in why)
        )

    def _bound_candidates(self) -> list[str]:
        """Run-time values the loop does not change: the initial values of the loop-carried
        values the body passes through, and the outer values it reads (their roots)."""
        inputs = [i.name for i in self.body_graph.input][2:]
        outputs = [o.name for o in self.body_graph.output][1:]
        names = [
            self.loop.input[2 + k]
            for k, name in enumerate(inputs)
            if k < len(outputs) and self._root(self.body, outputs[k]) == name
        ]
        names += sorted(free_outer_names(self.body_graph))
        roots: list[str] = []
        for name in names:
            root = self._root(self.outer, name)
            if name and root not in roots and self.outer.const(root) is None:
                roots.append(root)
        return roots

    def _try_bound(self, root: str) -> None:
        """Take `root` as the bound X, find the offset, check the initial condition."""
        self.m_root, self.static_m, self.trip_offset = root, None, 0
        self.body.bound = {}
        self._bind_body()
        offsets = []  # X - offset steps run: c + i < X stops after step X - c
        for d, strict in self._bool(self.body, self.body_graph.output[0].name):
            if d["i"] == 1 and d["M"] == -1 and float(d["1"]).is_integer():
                offsets.append(int(d["1"]) - (1 if strict else 2))
        if not offsets:
            raise Unproven(f"no conjunct of the condition is `counter < {root!r}`")
        self.trip_offset = max(offsets)  # the conjunct that fails first
        self.body.bound = {}
        self._check_no_step_at_zero()
        self.trip_name = root

    def _check_no_step_at_zero(self) -> None:
        """The initial condition is false for every M <= 0 (M = the bound minus the offset)."""
        for d, strict in self._bool(self.outer, self.loop.input[1]):
            # false for every M <= 0: d >= 0 (> 0 if not strict) there
            if d["i"] == 0 and d["M"] <= 0 and (d["1"] >= 0 if strict else d["1"] > 0):
                return
        raise Unproven("the initial condition may hold where the bound gives no step")

    def _bind_early_stop(self) -> None:
        """A Loop whose condition ends it before its M: ``tf.foldl`` counts from 1 (the
        first element is the initial value), so ``counter + 1 < n`` ends its ``M = n`` loop
        after n - 1 steps. A conjunct ``c + i - M < 0`` (``c + i < 0`` for a static M, whose
        value the affine form holds) is first false after step ``M - c``: the loop runs
        ``M - offset`` steps, ``offset = c - 1`` (``c - 2`` for ``<=``), the largest over the
        conjuncts. Then M stands for the steps run (the Loop's M is ``M + offset``), and the
        proof goes on as for any Loop; with a dynamic M, the initial condition must be false
        where no step runs, as for a while loop."""
        try:
            conjuncts = self._bool(self.body, self.body_graph.output[0].name)
        except Unproven:
            return  # check() says why
        static = self.static_m
        offsets = [0]
        for d, strict in conjuncts:
            by_m = d["M"] == (0 if static is not None else -1)
            if d["i"] == 1 and by_m and float(d["1"]).is_integer():
                c = int(d["1"]) + (static or 0)
                offsets.append(c - (1 if strict else 2))
        offset = max(offsets)
        if static is not None:
            offset = min(offset, static - 1)  # step 0 runs whatever the body's condition
        if offset <= 0:
            return
        self.trip_offset = offset
        if static is not None:
            self.static_m = static - offset
        elif len(self.loop.input) < 2 or not self.loop.input[1]:
            raise Unproven(
                f"the condition ends the Loop {offset} step(s) before its M, and with no "
                "initial condition a step runs even where that leaves none"
            )
        else:
            self._check_no_step_at_zero()
        self.body.bound = {}
        self._bind_body()

    # -- values --------------------------------------------------------------------------
    def value(self, scope: _Scope, name: str):
        """An Affine, or a list of constraints (a boolean: their conjunction)."""
        if name in scope.bound:
            return scope.bound[name]
        if scope is self.outer and self._root(scope, name) == self.m_root:
            if self.static_m is not None:
                return _affine(self.static_m + self.trip_offset)
            return _affine(self.trip_offset, m=1)  # X = M + offset (0 but for a while loop)
        if name in scope.inputs:
            raise Unproven(f"{name!r} is a run-time input (not a constant or induction variable)")
        const = scope.const(name)
        if const is not None:
            return self._from_const(const, name)
        node = scope.producer.get(name)
        if node is None:
            if scope.parent is not None:
                return self.value(scope.parent, name)
            raise Unproven(f"{name!r} is a run-time value")
        return self._node(scope, node)

    def _from_const(self, array, name):
        if array.size != 1:
            raise Unproven(f"{name!r} is not a scalar")
        item = array.reshape(-1)[0].item()
        if isinstance(item, bool):
            if not item:
                raise Unproven(f"{name!r} is a constant false")
            return []
        return _affine(item)

    def _node(self, scope: _Scope, node: onnx.NodeProto):
        op, args = node.op_type, node.input
        if _passes(node):
            return self.value(scope, args[0])
        if op == "And":
            return self._bool(scope, args[0]) + self._bool(scope, args[1])
        if op in _CMP:
            swap, strict = _CMP[op]
            a, b = (self._int(scope, n) for n in args)
            a, b = (b, a) if swap else (a, b)
            return [(_add(a, b, -1), strict)]  # a - b < 0 (or <= 0)
        if op in ("Add", "Sub"):
            return _add(
                self._int(scope, args[0]), self._int(scope, args[1]), 1 if op == "Add" else -1
            )
        if op == "Mul":
            a, b = (self._int(scope, n) for n in args)
            if not _is_const(a):
                a, b = b, a
            if not _is_const(a):
                raise Unproven(f"{node.name!r} multiplies two non-constant values")
            return {k: a["1"] * v for k, v in b.items()}
        raise Unproven(f"the condition goes through a {op} node ({node.name!r})")

    def _int(self, scope, name) -> Affine:
        value = self.value(scope, name)
        if not isinstance(value, dict):
            raise Unproven(f"{name!r} is a boolean where a number is expected")
        return value

    def _bool(self, scope, name) -> list:
        value = self.value(scope, name)
        if not isinstance(value, list):
            raise Unproven(f"{name!r} is a number where a boolean is expected")
        return value

    # -- the body's inputs -----------------------------------------------------------------
    def _bind_body(self) -> None:
        inputs = [i.name for i in self.body_graph.input]
        outputs = [o.name for o in self.body_graph.output]
        self.body.bound[inputs[0]] = _affine(i=1)
        # The body's condition input is the condition of the step before (or the initial one):
        # true by induction, since the proof shows each of them true.
        self.body.bound[inputs[1]] = []
        for k, name in enumerate(inputs[2:]):
            initial = self.loop.input[2 + k]
            try:
                start = self._int(self.outer, initial)
                step = self._step(name, outputs[1 + k])
            except Unproven:
                continue  # not an induction variable: reading it fails the proof
            self.body.bound[name] = _add(start, _affine(i=step))

    def _step(self, name: str, out: str) -> int | float:
        """What each step adds to the carried value `name` (its body output is `out`)."""
        out = self._root(self.body, out)
        if out == name:
            return 0
        node = self.body.producer.get(out)
        if node is None or node.op_type != "Add" or name not in node.input:
            raise Unproven(f"{name!r} is not an induction variable")
        other = node.input[1] if node.input[0] == name else node.input[0]
        const = self.body.const(other)
        if const is None or const.size != 1:
            raise Unproven(f"{name!r} grows by a run-time value")
        return const.reshape(-1)[0].item()

    # -- the proof -----------------------------------------------------------------------------
    def check(self) -> None:
        """Returns when the condition provably holds wherever it matters; else raises Unproven."""
        self._bind_trip_count()
        self._bind_body()
        if self.loop.input[0]:
            self._bind_early_stop()
        if len(self.loop.input) > 1 and self.loop.input[1]:
            for d, strict in self._bool(self.outer, self.loop.input[1]):
                self._holds(d, strict, first=True)
        cond_out = self.body_graph.output[0].name
        for d, strict in self._bool(self.body, cond_out):
            self._holds(d, strict, first=False)

    def _holds(self, d: Affine, strict: bool, first: bool) -> None:
        """``d < 0`` (or ``<= 0``) at the initial condition (``first``: i absent, M >= 1) or
        after every step i with 0 <= i <= M - 2."""
        if first and d["i"]:
            raise Unproven("the initial condition reads the step number")
        ok = (lambda v: v < 0) if strict else (lambda v: v <= 0)
        if self.static_m is not None:
            m = self.static_m
            ends = [0] if first else [0, m - 2]
            if not first and m < 2:
                return
            if first and m < 1:
                return
            if all(ok(d["1"] + d["M"] * m + d["i"] * i) for i in ends):
                return
        else:
            # Write M = i + low + k with k, i >= 0 (low: 1 for the initial condition, 2 after a
            # step): d = (c + low*b) + (a + b)*i + b*k is negative for all i, k >= 0 iff the
            # constant part is and the slopes are not positive.
            low = 1 if first else 2
            c, a, b = d["1"], d["i"], d["M"]
            if ok(c + low * b) and a + b <= 0 and b <= 0:
                return
        where = "initially" if first else "after some step"
        raise Unproven(f"the condition {_show(d, strict)} may be false {where}")


def _passes(node: onnx.NodeProto) -> bool:
    """Whether `node` gives its (scalar) input's value unchanged: a Cast to a number type, an
    Identity, a Squeeze/Unsqueeze/Reshape."""
    if node.op_type not in _PASS or not node.input:
        return False
    if node.op_type != "Cast":
        return True
    to = next(a.i for a in node.attribute if a.name == "to")
    return to != onnx.TensorProto.BOOL


def _show(d: Affine, strict: bool) -> str:
    terms = " + ".join(f"{v}*{k}" if k != "1" else f"{v}" for k, v in d.items() if v)
    return f"{terms or 0} {'<' if strict else '<='} 0"
