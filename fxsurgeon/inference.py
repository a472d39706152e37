"""Inference mode: ``fxsurgeon.freeze(model)`` returns a new module for evaluation only.

It folds each BatchNorm (``nn.BatchNorm*d``, ``fxsurgeon.nn.KerasBatchNorm``,
in eval semantics: running statistics) into the convolution whose only user it
is: ``w' = w * gamma / sqrt(var + eps)``, ``b' = (b - mean) * gamma / sqrt(var + eps)
+ beta`` (``torch.nn.utils.fusion.fuse_conv_bn_eval``). That is exact in real
arithmetic; in float32 it differs from the unfolded model by rounding only.

The result is in eval mode and meant for inference: its folded weights are no
longer the TF variables (``parameter_origins`` does not apply to them). The
model given is never mutated; the default ``optimize()`` output stays trainable.
"""

from __future__ import annotations

import copy

from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def freeze(model: fx.GraphModule) -> fx.GraphModule:
    """A copy of ``model`` in eval mode with BatchNorms folded into the convolutions before them."""
    if not isinstance(model, fx.GraphModule):
        raise TypeError(f"freeze expects a torch.fx.GraphModule, got {type(model).__name__}")
    frozen = copy.deepcopy(model).eval()
    folded = [
        str(node.target) for node in list(frozen.graph.nodes) if _fold_bn_into_conv(frozen, node)
    ]
    frozen.graph.eliminate_dead_code()
    # only the folded BatchNorms go: GraphModule.delete_all_unused_submodules would also
    # drop what a subgraph read through get_attr (a torch.cond branch) reads itself
    called = {str(n.target) for n in frozen.graph.nodes if n.op in ("call_module", "get_attr")}
    for target in set(folded) - called:
        frozen.delete_submodule(target)
    frozen.recompile()
    frozen.meta["fxsurgeon.frozen"] = {"bn_folded": len(folded)}
    return frozen


def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    if node.op != "call_module":
        return None
    return gm.get_submodule(str(node.target))


def _fold_bn_into_conv(gm: fx.GraphModule, bn_node: fx.Node) -> bool:
    """Fold ``bn_node`` into the conv that feeds it; False when the form does not apply."""
    bn = _module(gm, bn_node)
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or not bn.track_running_stats:
        return False
    if bn.running_mean is None or len(bn_node.args) != 1 or bn_node.kwargs:
        return False
    conv_node = bn_node.args[0]
    if not isinstance(conv_node, fx.Node) or len(conv_node.users) != 1:
        return False
    conv = _module(gm, conv_node)
    if not isinstance(conv, _CONVS) or type(conv) not in _CONVS:
        return False
    if conv.out_channels != bn.num_features:
        return False
    fused = fuse_conv_bn_eval(conv, bn)
    _set_submodule(gm, str(conv_node.target), fused)
    bn_node.replace_all_uses_with(conv_node)
    gm.graph.erase_node(bn_node)
    return True


def _set_submodule(gm: nn.Module, target: str, module: nn.Module) -> None:
    parent_name, _, leaf = target.rpartition(".")
    parent = gm.get_submodule(parent_name) if parent_name else gm
    setattr(parent, leaf, module)
