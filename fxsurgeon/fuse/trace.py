"""What a run of the rules reports: per-rule statistics, and the debug report of near misses."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .ir import _Compiled
from .matcher import _target_name
from .rule import DEBUG_ENV, Rule

# ---------------------------------------------------------------------------
# Running phases
# ---------------------------------------------------------------------------


@dataclass
class RuleStats:
    """How one rule did: anchors tried, matches rewritten, time spent."""

    hits: int = 0
    attempts: int = 0
    seconds: float = 0.0


@dataclass
class PatternReport:
    """What `apply_rules` did: matches per rule, a per-rule table, debug notes."""

    matches: dict[str, int] = field(default_factory=dict)
    stats: dict[str, RuleStats] = field(default_factory=dict)
    sweeps: dict[str, int] = field(default_factory=dict)
    debug: list[str] = field(default_factory=list)
    rules: dict[str, Rule] = field(default_factory=dict)
    #: rule -> why an ``on_rewrite`` hook undid its rewrites (one entry per undone match)
    declined: dict[str, list[str]] = field(default_factory=dict)

    def __getstate__(self) -> dict:
        # Rules hold the pattern files' functions, often closures: a pickled model
        # (torch.save, multiprocessing) keeps what the rules did, not the rules.
        return {**self.__dict__, "rules": {}}

    def table(self) -> str:
        """The per-rule hits/attempts/time table (tinygrad's TRACK_MATCH_STATS)."""
        lines = [f"{'rule':28} {'phase':10} {'hits':>5} {'attempts':>9} {'ms':>8}  file"]
        for name, s in self.stats.items():
            rule = self.rules.get(name)
            phase = ",".join(rule.phases) if rule else ""
            where = Path(rule.file).name if rule and rule.file else ""
            lines.append(
                f"{name:28} {phase:10} {s.hits:>5} {s.attempts:>9} {s.seconds * 1e3:>8.2f}  {where}"
            )
        lines.append("sweeps: " + ", ".join(f"{k}={v}" for k, v in self.sweeps.items()))
        return "\n".join(lines)


def debug_enabled(debug: bool | None = None) -> bool:
    if debug:
        return True
    return os.environ.get(DEBUG_ENV, "") not in ("", "0", "false", "False")


def _explain(compiled: list[_Compiled], matchers: dict, report: PatternReport) -> list[str]:
    lines = []
    for c in compiled:
        name = c.rule.name
        if report.stats[name].hits:
            continue
        best = matchers[name].best
        if best is None:
            lines.append(
                f"[{name}] no match: no {_target_name(c.output)} node to start from ({c.rule.where})"
            )
            continue
        lines.append(
            f"[{name}] no match; best partial match: reached {best.count}/{c.size} pattern nodes, "
            f"anchored at {best.anchor}\n"
            f"    stopped at pattern node  {best.pattern_node}\n"
            f"    against graph value      {best.graph_value}\n"
            f"    because: {best.reason}  ({c.rule.where})"
        )
    return lines
