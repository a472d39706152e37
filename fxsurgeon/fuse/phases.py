"""Running the rules: the ordered phases, each a bounded fixed point."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from torch import fx

from ..errors import ConvergenceError
from ..shapes import ExampleInputs, propagate_shapes
from .canon import canonicalize
from .ir import compile_rule
from .loader import load_rules
from .matcher import _Matcher
from .rewrite import _rewrite
from .rule import DEFAULT_MAX_SWEEPS, PHASES, RewriteHook, Rule
from .sink import sink_permutes
from .trace import PatternReport, RuleStats, _explain, debug_enabled


def apply_rules(
    gm: fx.GraphModule,
    rules: Sequence[Rule] | None = None,
    *,
    examples: ExampleInputs | None = None,
    phases: Sequence[str] = PHASES,
    max_sweeps: int = DEFAULT_MAX_SWEEPS,
    debug: bool | None = None,
    on_rewrite: RewriteHook | None = None,
) -> PatternReport:
    """Rewrite `gm` in place with `rules` (default: the built-ins), phase by phase.

    Args:
        gm: a canonical graph with shape meta (what `optimize` has after lowering).
        rules: rules to run, in priority order within each phase.
        examples: the two example input sets; with them, a phase that made
            nodes whose shape `infer_shapes` could not tell records shapes again.
        phases: which phases to run, in this order.
        max_sweeps: a phase that still rewrites after this many sweeps raises
            `ConvergenceError` naming the rules that fired in the last sweep.
        debug: explain, for each rule that matched nothing, its best partial
            match (also on with the environment variable FXSURGEON_DEBUG_PATTERNS=1).
        on_rewrite: a `RewriteHook` run after every rewrite (per-rule
            verification and bisection, ``fxsurgeon/verify/``).
    """
    debug = debug_enabled(debug)
    rules = load_rules() if rules is None else list(rules)
    compiled = [compile_rule(r) for r in rules]
    report = PatternReport(rules={r.name: r for r in rules})
    for c in compiled:
        report.stats[c.rule.name] = RuleStats()
    matchers = {c.rule.name: _Matcher(c, gm, debug) for c in compiled}
    canonicalize(gm.graph)
    sink_permutes(gm)  # an activation after a channels-first conv reads as one chain
    for phase in phases:
        in_phase = [c for c in compiled if phase in c.rule.phases]
        if not in_phase:
            continue
        if phase == "tidy":  # the permutes rules wrote (a BatchNorm's back to channels-last)
            sink_permutes(gm)
        report.sweeps[phase] = _run_phase(
            gm, phase, in_phase, matchers, report, examples, max_sweeps, on_rewrite
        )
    report.matches = {name: s.hits for name, s in report.stats.items() if s.hits}
    if debug:
        report.debug = _explain(compiled, matchers, report)
        sys.stderr.write("\n".join(report.debug + [report.table()]) + "\n")
    return report


def _run_phase(gm, phase, compiled, matchers, report, examples, max_sweeps, on_rewrite=None) -> int:
    graph = gm.graph
    unknown = 0  # new nodes whose shape `infer_shapes` could not tell
    undone: set[tuple[str, fx.Node]] = set()  # (rule, anchor) the hook rolled back: not again
    for sweep in range(1, max_sweeps + 1):
        fired: Counter[str] = Counter()
        for c in compiled:
            stats = report.stats[c.rule.name]
            start = time.perf_counter()
            key = c.anchor_key
            for node in list(graph.nodes):
                if node._erased or (node.op, node.target) != key:
                    continue
                if (c.rule.name, node) in undone:
                    continue
                stats.attempts += 1
                match = next(iter(matchers[c.rule.name].matches(node)), None)
                if match is None:
                    continue
                outcome = _rewrite(c, match, on_rewrite)
                if isinstance(outcome, str):  # the hook undid it
                    undone.add((c.rule.name, node))
                    report.declined.setdefault(c.rule.name, []).append(outcome)
                    continue
                unknown += outcome
                stats.hits += 1
                fired[c.rule.name] += 1
            stats.seconds += time.perf_counter() - start
        if not fired:
            if sweep > 1:
                gm.recompile()
            if unknown and examples is not None:  # shapes for the next phase
                propagate_shapes(gm, examples)
            return sweep
        graph.eliminate_dead_code()
    last = ", ".join(
        f"{name} x{n} ({Path(report.rules[name].file or '?').name})"
        for name, n in fired.most_common()
    )
    raise ConvergenceError(
        f"phase {phase!r} did not reach a fixed point in {max_sweeps} sweeps; "
        f"rules that fired in the last sweep: {last}"
    )
