"""The Rule class (what a pattern file defines) and the node meta keys the engine writes."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import fx

from ..errors import PatternError

if TYPE_CHECKING:
    from .matcher import Match

#: The phases, in the order they run (each a bounded fixed point):
#: ``prepare`` undoes export noise the fusions should not see (transpose pairs,
#: no-op reshapes and casts); ``fuse`` writes linear layers, norms and
#: activations; ``attention`` finds scaled dot-product attention in what is
#: left; ``tidy`` merges what the fusions left adjacent (reshape of reshape).
PHASES: tuple[str, ...] = ("prepare", "fuse", "attention", "tidy")

#: Set to 1 to get the debug report of `apply_rules(debug=True)`.
DEBUG_ENV = "FXSURGEON_DEBUG_PATTERNS"

PATTERNS_KEY = "fxsurgeon.patterns"  # optimized.meta[...]: the PatternReport

#: ``apply_rules(on_rewrite=hook)``: ``hook(rule, match, result, created)`` runs after
#: every rewrite, once ``result`` has taken the place of the match output and before
#: the dead match is erased (``match.nodes`` are still in the graph, ``created`` are
#: the new nodes; the GraphModule's code is stale: run ``gm.graph`` with an
#: ``fx.Interpreter``). It returns None to keep the rewrite, or a reason to undo it:
#: the graph is put back as it was and the rule does not try that node again in
#: this phase. It may raise to stop the run, leaving the rewrite in place.
RewriteHook = Callable[["Rule", "Match", fx.Node, list[fx.Node]], "str | None"]
RULE_KEY = "fxsurgeon.rule"
RULE_FILE_KEY = "fxsurgeon.rule_file"
DEFAULT_MAX_SWEEPS = 20
REL_TOL = 1e-6  # relative; float32 rounding is 6e-8 (see the module docstring)


# ---------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------


@dataclass(eq=False)
class Rule:
    """One rewrite: ``pattern(*wildcards)`` -> ``replacement(*wildcards)``.

    Args:
        name: unique among all loaded rules; ``gelu_tanh_1``. Its family is the
            name without the trailing ``_<number>`` (``gelu_tanh``).
        pattern: a function of the wildcards returning what to find.
        replacement: a function taking the same parameters (and any extra
            values `check` stored) returning what to put instead.
        check: ``check(match) -> str | None``; a string declines the match
            and says why (shown by the debug report).
        phase: one of `PHASES` (or a tuple of them).
        note: where this variant comes from ("tf2onnx, HF TFViT gelu_new").
        override: this user rule replaces the built-in rule of the same name.
    """

    name: str
    pattern: Callable[..., Any]
    replacement: Callable[..., Any]
    check: Callable[[Match], str | None] | None = None
    phase: str | tuple[str, ...] = "fuse"
    note: str = ""
    override: bool = False
    file: str = field(default="", compare=False)  # set by the loader

    def __post_init__(self) -> None:
        where = self.where
        if not isinstance(self.name, str) or not re.fullmatch(
            r"[A-Za-z_][A-Za-z0-9_.\-]*", self.name
        ):
            raise PatternError(f"{where}: rule name must be a plain identifier, got {self.name!r}")
        for what in ("pattern", "replacement"):
            if not callable(getattr(self, what)):
                raise PatternError(f"{where}: rule {self.name!r}: {what} must be a function")
        if self.check is not None and not callable(self.check):
            raise PatternError(f"{where}: rule {self.name!r}: check must be a function or None")
        for phase in self.phases:
            if phase not in PHASES:
                raise PatternError(
                    f"{where}: rule {self.name!r}: unknown phase {phase!r} (phases: {', '.join(PHASES)})"
                )
        pattern_params = _parameters(self.pattern, self.name, "pattern")
        extra = [
            p
            for p in _parameters(self.replacement, self.name, "replacement")
            if p not in pattern_params
        ]
        if extra and self.check is None:
            raise PatternError(
                f"{where}: rule {self.name!r}: the replacement takes {', '.join(extra)} which the "
                "pattern does not bind; add a check that sets them (match[name] = value)"
            )

    @property
    def phases(self) -> tuple[str, ...]:
        return (self.phase,) if isinstance(self.phase, str) else tuple(self.phase)

    @property
    def family(self) -> str:
        return re.sub(r"_\d+$", "", self.name)

    @property
    def where(self) -> str:
        """``file:line`` of the pattern function."""
        code = getattr(self.pattern, "__code__", None)
        if code is None:
            return self.file or "<unknown>"
        return f"{code.co_filename}:{code.co_firstlineno}"


def _parameters(fn: Callable, rule: str, what: str) -> list[str]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise PatternError(f"rule {rule!r}: cannot read the {what}'s parameters: {exc}") from exc
    names = []
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise PatternError(
                f"{_where(fn)}: rule {rule!r}: the {what} may not take *args or **kwargs"
            )
        names.append(p.name)
    return names


def _where(fn: Callable) -> str:
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code else repr(fn)
