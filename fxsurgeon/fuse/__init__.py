"""The pattern engine: rewrite rules written as plain PyTorch functions.

A rule is a `Rule`: a ``pattern`` function, a ``replacement`` function with the
same parameters, an optional ``check``, a unique ``name``, the ``phase`` it
runs in and a one-line ``note`` saying where the variant comes from::

    def pattern(x):
        return 0.5 * x * (1.0 + torch.tanh(0.7978845608 * (x + 0.044715 * x**3)))

    def replacement(x):
        return F.gelu(x, approximate="tanh")

    gelu_tanh_1 = Rule("gelu_tanh_1", pattern, replacement, note="tf2onnx, HF gelu_new")

How a pattern matches (see `_Matcher`):

* Parameters are wildcards. They match any graph node or any Python literal
  (an epsilon, a shape tuple); annotate one ``float``/``int``/``tuple`` to
  accept literals only, or ``torch.Tensor`` for graph nodes only. A wildcard
  used twice must see the same node (or an equal literal) both times.
* Literal numbers written in the pattern match with a relative tolerance of
  1e-6 (TensorFlow bakes float32 approximations: 0.044714998 for 0.044715,
  off by 3.5e-8), never exactly. Float32 rounding is at most 6e-8 relative;
  the tolerance leaves room for a few ulps of float32 arithmetic and no more,
  since a rewrite turns the graph's constant into the math's: 1e-4 let
  ``0.50004 * x * (...)`` become GELU, changing outputs by 1e-4 relative (the
  fuzzer's find, fxsurgeon/fuzz/). Integers (dims, shapes) match exactly.
* The pattern is traced with ``torch.fx.symbolic_trace`` and normalised by
  the same canonical form as the lowered model (`canonicalize`): ``torch.mul``,
  ``x.mul(...)`` and ``x * y`` are all ``operator.mul``, ``x.reshape(a, b)`` is
  ``torch.reshape(x, (a, b))``, reduction dims are compared modulo the rank.
* Matching starts at the node the pattern returns and walks inputs. ``+`` and
  ``*`` are commutative: both operand orders are tried, with backtracking.
* A computed (non-wildcard) node of the match other than the output may have
  no user outside the match: the rewrite would duplicate or lose its value.

``check(match)`` sees a `Match` (bound values, shapes, constant tensors) and
returns ``None`` to accept or a string saying why it declines. It may store
extra values (``match["heads"] = 4``) for replacement parameters that the
pattern does not have.

The replacement is called with the bound values: graph nodes arrive as fx
proxies, literals as themselves, so ``x.shape[-1]`` of a static dim is a plain
``int`` and Python code on literals (``if scale == 1.0``) runs at rewrite
time. What it computes is inserted before the match output, normalised,
tagged ``node.meta["fxsurgeon.rule"]``, and takes the output's place.

Rules run in ordered phases (`PHASES`); each phase repeats sweeps over the
graph until no rule fires, at most ``max_sweeps`` times, else
`ConvergenceError`. New nodes get shapes at once: the replacement's result
takes the shape of what it replaces, intermediates are run on meta tensors
(`infer_shapes`); where that fails, the phase ends by recording shapes again
on the example inputs (`propagate_shapes`), so later rules and phases see
the shape of every node.

Pattern files are Python code and are executed when loaded: load them only
from paths you trust (`load_rules` loads the built-in ``fxsurgeon.patterns``
and the paths you name, nothing else).

The engine is split by concern: `rule.py` (the Rule class and the node meta keys),
`canon.py` (the canonical form), `ir.py` (compiled patterns), `matcher.py` (matching),
`rewrite.py` (writing a replacement in), `phases.py` (running the phases to a fixed point),
`trace.py` (the per-rule statistics and the debug report) and `loader.py` (pattern files).
"""

from .canon import canonicalize
from .loader import builtin_files, load_rules
from .matcher import Match, literal_equal
from .phases import apply_rules
from .rule import (
    DEBUG_ENV,
    PATTERNS_KEY,
    PHASES,
    REL_TOL,
    RULE_FILE_KEY,
    RULE_KEY,
    RewriteHook,
    Rule,
)
from .trace import PatternReport, RuleStats

__all__ = [
    "PHASES",
    "Rule",
    "Match",
    "PatternReport",
    "RuleStats",
    "apply_rules",
    "load_rules",
    "canonicalize",
    "DEBUG_ENV",
    "PATTERNS_KEY",
    "RewriteHook",
    "RULE_KEY",
    "RULE_FILE_KEY",
    "REL_TOL",
    "builtin_files",
    "literal_equal",
]
