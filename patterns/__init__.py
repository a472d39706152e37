"""Built-in rewrite rules, one fusion family per file (installed as ``fxsurgeon.patterns``).

Each file holds module-level `Rule` objects; `fxsurgeon.fuse.load_rules`
finds the files with ``importlib.resources``, in ``ORDER`` first, then any
other ``*.py`` here. Pattern files import what they need from here::

    from fxsurgeon.patterns import Match, Rule
"""

from fxsurgeon.fuse import Match, Rule

__all__ = ["Match", "Rule", "ORDER"]

#: File order; within a phase, rules run in this order (and in file order).
ORDER = ("cleanup", "linear", "layer_norm", "gelu", "attention", "batch_norm")
