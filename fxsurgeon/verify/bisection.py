"""Find the first rewrite that breaks a converted model: ``fxsurgeon.bisect``.

When the optimized model differs from its reference (TensorFlow, the ONNX
graph, or by default the lowered model before any fusion), `bisect` replays
``optimize`` on the converted GraphModule, letting only the first ``k`` rule
applications happen, and compares each partly fused model with the reference
on the same inputs. The applications are counted in the order the engine
makes them, which a replay repeats exactly (same graph, same rules, same
order). Comparing is a binary search for the smallest failing ``k``:

    k = 0  the lowered model: passes (else the fault is the lowering's)
    k = N  every rule applied: fails (else the fault is the params pass's)
    smallest k that fails: application k is the first that breaks equivalence

The result names the rule, its pattern file, the node the pattern matched and
the matched subgraph (``node.format_node()`` lines), with the comparison
tables right before and right after that application. ``optimize(m,
verify="per_rule")`` catches the same rewrite as it is made, against the
lowered model only; `bisect` works after the fact and against any reference.

Tolerances are `fxsurgeon.verify.verify`'s (``atol``/``rtol`` pass through);
against the lowered model (``reference=None``) the absolute tolerance is
scaled by each output's magnitude (``max(1, max |ref|)``), as the per-rule
check does, since fused and unfused float32 arithmetic round differently.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx

from ..errors import InputError
from ..pipeline import SOURCE_KEY, optimize
from .api import Prepared, prepare
from .results import VerifyReport
from .rewrite_check import RewriteInfo, rewrite_info


@dataclass
class BisectResult:
    """What `bisect` found.

    ``culprit`` is ``"rule"`` (``rewrite`` says which application broke
    equivalence: rule, file, node, subgraph), ``"lowering"`` (the lowered model
    already differs from the reference), ``"params"`` (every rewrite applied
    still matches, the finished model does not), or ``"none"`` (the optimized
    model matches: nothing to find). ``applications`` is how many rewrites
    ``optimize`` makes; ``probes`` the (k, passed) pairs tried, in order;
    ``before`` / ``after`` the comparisons at k - 1 and k.
    """

    culprit: str
    applications: int
    rewrite: RewriteInfo | None = None
    before: VerifyReport | None = None
    after: VerifyReport | None = None
    probes: list[tuple[int, bool]] = field(default_factory=list)
    message: str = ""

    @property
    def found(self) -> bool:
        """True when a rule application was named."""
        return self.culprit == "rule"

    @property
    def rule(self) -> str | None:
        return self.rewrite.rule if self.rewrite else None

    @property
    def rule_file(self) -> str | None:
        return self.rewrite.file if self.rewrite else None

    @property
    def node(self) -> str | None:
        return self.rewrite.node if self.rewrite else None

    @property
    def subgraph(self) -> tuple[str, ...]:
        return self.rewrite.subgraph if self.rewrite else ()

    def __str__(self) -> str:
        lines = [self.message]
        if self.rewrite is not None:
            lines.append(self.rewrite.describe())
        if self.after is not None:
            lines += ["comparison right after it:", self.after.table()]
        probes = ", ".join(f"k={k}:{'ok' if ok else 'FAIL'}" for k, ok in self.probes)
        lines.append(f"probes ({self.applications} rewrites in all): {probes}")
        return "\n".join(lines)


class _Stop(Exception):  # noqa: N818 - control flow, never seen by users
    """Raised by `_Replay` to end ``optimize`` after the k-th rewrite."""


class _Replay:
    """``optimize(verify=...)`` factory: counts rewrites, stops after ``stop_at``."""

    def __init__(self, stop_at: int | None, keep_lowered: bool = False):
        self.stop_at = stop_at
        self.keep_lowered = keep_lowered
        self.count = 0
        self.module: fx.GraphModule | None = None
        self.lowered: fx.GraphModule | None = None
        self.last: RewriteInfo | None = None

    def __call__(self, module: fx.GraphModule, examples: Any) -> Any:
        self.module = module
        if self.keep_lowered:
            self.lowered = copy.deepcopy(module)
        return self.hook

    def hook(self, rule: Any, match: Any, result: Any, created: list) -> None:
        self.count += 1
        if self.count == self.stop_at:
            self.last = rewrite_info(rule, match, result, created, self.count)
            raise _Stop


def bisect(
    converted: fx.GraphModule,
    reference: Any = None,
    inputs: Any = None,
    *,
    patterns: Sequence[str] | None = None,
    disable: Sequence[str] = (),
    example_inputs: Sequence[torch.Tensor] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    batch_sizes: Sequence[int] = (1, 2),
    seed: int = 0,
    input_ranges: dict[str, tuple[float, float]] | None = None,
    seq_len: int = 8,
) -> BisectResult:
    """Name the first rule application after which ``converted`` stops matching ``reference``.

    Args:
        converted: what ``fxsurgeon.from_onnx`` / ``from_tensorflow`` (or
            ``onnx2torch.convert``) returned: the input of ``optimize``.
        reference: anything `fxsurgeon.verify.verify` takes (a Keras model, a
            SavedModel or ``.keras``/``.h5``/``.onnx`` path, an
            ``onnx.ModelProto``, a torch module, stored outputs); None compares
            with the lowered model before any fusion.
        inputs: as for ``verify`` (None: generated from the input signature).
        patterns, disable, example_inputs: passed to ``optimize``, as in the
            run that went wrong.
        atol, rtol, batch_sizes, seed, input_ranges, seq_len: as for ``verify``.

    Returns:
        A `BisectResult`; ``print(result)`` shows the rule, its file, the node,
        the matched subgraph and the comparison after it.
    """
    kwargs: dict[str, Any] = {
        "patterns": patterns,
        "disable": disable,
        "example_inputs": example_inputs,
    }
    full = _Replay(stop_at=None, keep_lowered=True)
    final = optimize(converted, verify=full, **kwargs)
    source = converted.meta.get(SOURCE_KEY)
    lowered = full.lowered
    assert lowered is not None  # optimize calls the factory after lowering
    _attach(lowered, source)
    ref = lowered if reference is None else reference
    prepared = prepare(
        final,
        ref,
        inputs,
        batch_sizes=batch_sizes,
        seed=seed,
        input_ranges=input_ranges,
        seq_len=seq_len,
    )
    if reference is None:
        prepared.reference.description = "the lowered model (before any rewrite)"

    def compare(module: torch.nn.Module) -> VerifyReport:
        return prepared.compare(module, atol=atol, rtol=rtol, scale_atol=reference is None)

    total = full.count
    result = BisectResult("none", total)
    report_final = compare(final)
    if report_final.passed:
        result.after = report_final
        result.message = (
            f"the optimized model matches {prepared.reference.description}: nothing to bisect "
            f"({total} rewrites)"
        )
        return result
    report_lowered = compare(lowered)
    result.probes.append((0, report_lowered.passed))
    if not report_lowered.passed:
        result.culprit, result.after = "lowering", report_lowered
        result.message = (
            f"the lowered model, before any rewrite, already differs from "
            f"{prepared.reference.description}: the fault is in the lowering "
            "(fxsurgeon/lower/) or the conversion, not in a rule"
        )
        return result
    reports = {0: report_lowered}
    infos: dict[int, RewriteInfo] = {}
    if total:
        reports[total] = _probe(converted, kwargs, source, total, prepared, compare, infos)
        result.probes.append((total, reports[total].passed))
    if not total or reports[total].passed:
        result.culprit, result.after = "params", report_final
        result.message = (
            f"all {total} rewrites together still match {prepared.reference.description}, "
            "the finished model does not: the fault is in the parameters pass "
            "(fxsurgeon/params/), not in a rule"
        )
        return result
    good, bad = 0, total
    while bad - good > 1:
        mid = (good + bad) // 2
        reports[mid] = _probe(converted, kwargs, source, mid, prepared, compare, infos)
        result.probes.append((mid, reports[mid].passed))
        if reports[mid].passed:
            good = mid
        else:
            bad = mid
    if bad - 1 not in reports:
        reports[bad - 1] = _probe(converted, kwargs, source, bad - 1, prepared, compare, infos)
    result.culprit = "rule"
    result.rewrite = infos[bad]
    result.before, result.after = reports[bad - 1], reports[bad]
    worst = max(result.after.failures, key=lambda r: r.max_abs, default=None)
    result.message = (
        f"rewrite #{bad} of {total}, by rule {result.rewrite.rule!r} ({result.rewrite.file}), "
        f"is the first after which the model differs from {prepared.reference.description}"
        + (f": {worst.message}" if worst is not None else "")
    )
    return result


def _probe(
    converted: fx.GraphModule,
    kwargs: dict,
    source: Any,
    k: int,
    prepared: Prepared,
    compare: Any,
    infos: dict[int, RewriteInfo],
) -> VerifyReport:
    """The comparison of the model after the first ``k`` rewrites (k >= 1)."""
    replay = _Replay(stop_at=k)
    try:
        optimize(converted, verify=replay, **kwargs)
    except _Stop:
        pass
    else:
        raise InputError(
            f"bisect: the replay made {replay.count} rewrites, fewer than {k}: optimize is not "
            "deterministic on this model"
        )
    module = replay.module
    assert module is not None and replay.last is not None
    infos[k] = replay.last
    module.graph.eliminate_dead_code()
    module.recompile()
    _attach(module, source)
    return compare(module)


def _attach(module: fx.GraphModule, source: Any) -> None:
    """The SourceInfo on a partly optimized module, so verify knows its inputs and outputs."""
    if source is not None:
        module.meta[SOURCE_KEY] = source
