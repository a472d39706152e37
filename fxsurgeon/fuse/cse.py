"""Common subexpressions: one node for each value the graph computes twice.

tf2onnx writes a value once per use site: HF Speech2Text's decoder sums its
attention mask twice, builds the same ``arange`` twice, reads ``input.device``
thirteen times. In eager PyTorch each copy is a kernel launch (or a Python call)
for nothing. `eliminate_common_subexpressions` keeps the first of two nodes that
call the same *pure* target on the same arguments, and points the users of the
second at it. Exact: a pure op on equal inputs gives equal values, and autograd
sums the gradients of the shared node's users as it summed those of the copies. A
node the output returns is never merged away: two outputs would then be one tensor.

Pure, so mergeable, are: reads of the same attribute (``get_attr``); calls of
``operator``/``math``/``builtins.getattr``; torch functions and tensor methods
that neither write in place (a name ending in ``_``, an ``out=``) nor draw random
numbers or return uninitialised memory (`_IMPURE`); and fxsurgeon's own pure
helpers (`_PURE_HELPERS`). Everything else is left alone: module calls (a module
may keep state), control flow (``run_cond``, ``run_loop``), ``torch._assert``,
and functions of user pattern files. Two arguments are the same when they are
the same node (after merging) or equal literals of the same type.

It runs after the pattern phases, on the fused graph: merged intermediates would
have users outside a pattern's match, and a rule declines those.

The node kept takes the TF scope both copies share (``bert/encoder/layer_._0/add``
and ``.../layer_._1/add`` give ``bert/encoder/add``): model.py (fxsurgeon/codegen/)
then computes it once in the encoder and hands it to each layer, as a person would
write it, and the layers stay one repeated class.
"""

from __future__ import annotations

import builtins
import operator
from typing import Any

import torch
from torch import fx

#: torch names that are not pure functions of their arguments
_IMPURE = frozenset(
    {
        "empty",
        "empty_like",
        "empty_strided",
        "rand",
        "rand_like",
        "randn",
        "randn_like",
        "randint",
        "randint_like",
        "randperm",
        "bernoulli",
        "multinomial",
        "normal",
        "poisson",
        "dropout",
        "alpha_dropout",
        "feature_alpha_dropout",
        "native_dropout",
        "rrelu",
        "_assert",
        "cond",
        "manual_seed",
        "seed",
        "new_empty",
        "new_empty_strided",
        "uniform",
        "exponential",
        "geometric",
        "log_normal",
        "cauchy",
        "random",
        "set_",
        "record_stream",
        "data_ptr",
        "tolist",
        "item",
        "numpy",
    }
)


_OPERATOR_WRITES = frozenset({"setitem", "delitem", "__setitem__", "__delitem__"})
_OPERATOR_I = frozenset({"index", "indexOf", "inv", "invert", "is_", "is_not", "itemgetter"})


def _pure_helpers() -> frozenset[Any]:
    from ..lower import control_flow, dtypes

    return frozenset(
        {dtypes.follow_dtype, control_flow.compare_sizes, control_flow._first, control_flow._item}
    )


def _pure(node: fx.Node, helpers: frozenset[Any]) -> bool:
    if node.op == "get_attr":
        return True
    if "out" in node.kwargs:
        return False
    if node.op == "call_method":
        name = str(node.target)
        return not name.endswith("_") and name not in _IMPURE
    if node.op != "call_function":
        return False
    target = node.target
    if target in helpers or target is builtins.getattr:
        return True
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", "")
    if target in vars(operator).values():  # not the in-place ones (iadd, setitem)
        return name not in _OPERATOR_WRITES and not (
            name.startswith("i") and name not in _OPERATOR_I
        )
    if module == "math":
        return True
    is_torch = module.startswith("torch") or getattr(torch, name, None) is target
    return is_torch and not name.endswith("_") and name not in _IMPURE


def _key(value: Any) -> Any:
    """A hashable stand-in for an argument: nodes as themselves, literals with their type
    (``1 == 1.0 == True`` in Python; as arguments they are not the same)."""
    if isinstance(value, fx.Node):
        return value
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_key(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((k, _key(v)) for k, v in value.items()))
    if isinstance(value, slice):
        return ("slice", _key(value.start), _key(value.stop), _key(value.step))
    if isinstance(value, torch.Tensor):  # a literal tensor argument: the same object only
        return ("tensor", id(value))
    return (type(value), value)


def eliminate_common_subexpressions(gm: fx.GraphModule) -> int:
    """Merge the nodes of ``gm`` that compute the same pure value; returns how many went."""
    helpers = _pure_helpers()
    seen: dict[Any, fx.Node] = {}
    merged = 0
    returned = {value for out in gm.graph.find_nodes(op="output") for value in out.all_input_nodes}
    for node in list(gm.graph.nodes):
        if not _pure(node, helpers):
            continue
        key = (node.op, node.target, _key(node.args), _key(node.kwargs))
        try:
            first = seen.get(key)
        except TypeError:  # an argument Python cannot hash: leave the node
            continue
        if first is None:
            seen[key] = node
            continue
        if node in returned:
            continue
        _share_scope(first, node)
        node.replace_all_uses_with(first)
        gm.graph.erase_node(node)
        merged += 1
    if merged:
        gm.graph.lint()
        gm.recompile()
    return merged


_SCOPE = "fxsurgeon.onnx_node"  # the ONNX node (TF scope/op name) a node was lowered from


def _share_scope(kept: fx.Node, merged: fx.Node) -> None:
    """Give `kept` the scope it shares with `merged`, under its own op name."""
    first, second = kept.meta.get(_SCOPE), merged.meta.get(_SCOPE)
    if not (isinstance(first, str) and first and isinstance(second, str) and second):
        return
    a, b = first.split("/"), second.split("/")
    common = 0
    while common < min(len(a), len(b)) - 1 and a[common] == b[common]:
        common += 1
    kept.meta[_SCOPE] = "/".join([*a[:common], a[-1]])
