"""Dense layers -> F.linear.

    Dense(x) = x @ W + b        W: [in, out] (TF kernel layout), b: [out]
    F.linear(x, W.t(), b) = x @ W.t().t() + b

The weight is written ``W.t()`` (a transpose of the weight constant): the
parameters pass folds it into the stored layout, so nn.Linear gets [out, in].

tf2onnx writes a Dense on a 3-D input [B, N, C] as TF's Tensordot:
    reshape(reshape(x, (-1, C)) @ W, (B, N, O)) + b
The rules take it apart step by step:

    linear_matmul_1     x @ W                        -> F.linear(x, W.t())       W a 2-D weight constant,
                                                                                 or [1, .., 1, in, out] when
                                                                                 x has at least its rank
    linear_gemm_1       x @ transpose(W, 0, 1)       -> F.linear(x, W)           Gemm with transB=1
    linear_bias_1       F.linear(x, Wt) + b          -> F.linear(x, Wt, b)       b: [out] (or [1, out])
    linear_tensordot_1  reshape(F.linear(reshape(x, (-1, C)), Wt, b), s)
                                                     -> reshape(F.linear(x, Wt, b), s)
                                                        (the reshape goes when s is the output's own shape)
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from fxsurgeon.patterns import Match, Rule

# -- x @ W -> F.linear(x, W.t()) -----------------------------------------------------------------


def matmul_pattern(x: torch.Tensor, w: torch.Tensor):
    return torch.matmul(x, w)


def matmul_replacement(x, w):
    if w.dim() > 2:  # [1, .., 1, in, out]: broadcast over x's batch dims, the same matrix
        w = torch.reshape(w, tuple(w.shape[-2:]))
    return F.linear(x, w.t())


_LAYOUT_FUNCTIONS = {torch.permute, torch.transpose, torch.t}
_LAYOUT_METHODS = {"permute", "transpose", "t"}


#: elementwise arithmetic: of stored values and numbers, its result is stored values too
_ARITHMETIC = {
    operator.mul,
    operator.truediv,
    operator.neg,
    torch.mul,
    torch.div,
    torch.neg,
}


def _stored_node(match: Match, node, depth: int = 0) -> bool:
    """Whether `node` holds stored values only: a weight constant, a ``torch.cat`` of such
    values (a kernel built by ``tf.concat`` of TF variables: each stays its own parameter),
    a permutation of one (an einsum's ``nd`` operand written ``permute(W, (1, 0))``), or one
    scaled by numbers or other stored values (StyleGAN's equalized learning rate: ``x @
    (c * W)``, c = sqrt(2 / fan_in); the product is recomputed each call, W is trained)."""
    if depth > 4 or not isinstance(node, torch.fx.Node):
        return False
    if node.op == "get_attr":
        return True
    if node.op == "call_function" and node.target in _ARITHMETIC and not node.kwargs:
        tensors = [a for a in node.args if isinstance(a, torch.fx.Node)]
        return (
            bool(tensors)
            and all(isinstance(a, (torch.fx.Node, int, float)) for a in node.args)
            and all(_stored_node(match, a, depth + 1) for a in tensors)
        )
    if node.op == "call_function" and node.target is torch.cat:
        parts = node.args[0]
        return (
            isinstance(parts, (list, tuple))
            and len(parts) > 0
            and all(_stored_node(match, part, depth + 1) for part in parts)
        )
    layout = (node.op == "call_function" and node.target in _LAYOUT_FUNCTIONS) or (
        node.op == "call_method" and node.target in _LAYOUT_METHODS
    )
    return (layout or _float_cast(node)) and _stored_node(match, node.args[0], depth + 1)


def _float_cast(node) -> bool:
    """``value.to(dtype)`` with a floating ``dtype``: a Keras mixed-precision layer reads its
    float32 variable as ``Cast(kernel, float16)`` (the variable is trained, the cast is its
    compute dtype); an integer or bool cast is data, not a weight."""
    if node.op != "call_method" or node.target != "to" or node.kwargs or len(node.args) != 2:
        return False
    dtype = node.args[1]
    return isinstance(dtype, torch.dtype) and dtype.is_floating_point


def _stored_weight(match: Match, name: str) -> bool:
    """A weight constant, or values computed from stored values only (`_stored_node`)."""
    if match.is_constant(name):
        return True
    node = match.node(name)
    return node is not None and _stored_node(match, node)


def weight_check(match: Match) -> str | None:
    if not _stored_weight(match, "w"):
        return "the right operand is not a weight constant"
    shape, x_rank = match.shape("w"), match.rank("x")
    if shape is None or len(shape) < 2:
        return f"the weight has shape {shape}, not 2-D"
    if len(shape) > 2 and (
        any(d != 1 for d in shape[:-2]) or x_rank is None or x_rank < len(shape)
    ):
        # a batch of matrices, or unit dims that would add dims to the output: not one linear
        return f"the weight has shape {shape} (input {x_rank}-D), not 2-D"
    if not (match.dtype("w") or torch.int64).is_floating_point:
        return "the weight is not floating point"
    return None


def matmul_check(match: Match) -> str | None:
    node = match.node("w")
    if node is not None and node.op == "call_function" and node.target is torch.transpose:
        return "x @ transpose(W, 0, 1) is Gemm's form (linear_gemm_1)"
    return weight_check(match)


linear_matmul_1 = Rule(
    "linear_matmul_1",
    matmul_pattern,
    matmul_replacement,
    check=matmul_check,
    note="tf2onnx MatMul of a Dense/Tensordot/Conv1D (GPT-2) kernel",
)


# -- x @ W^T (Gemm transB=1) -> F.linear(x, W) ------------------------------------------------------


def gemm_pattern(x: torch.Tensor, w: torch.Tensor):
    return torch.matmul(x, torch.transpose(w, 0, 1))


def gemm_replacement(x, w):
    return F.linear(x, w)


def gemm_check(match: Match) -> str | None:
    if match.rank("w") != 2:  # transpose(w, 0, 1) is W^T only for a matrix
        return f"the weight has shape {match.shape('w')}, not 2-D"
    return weight_check(match)


linear_gemm_1 = Rule(
    "linear_gemm_1",
    gemm_pattern,
    gemm_replacement,
    check=gemm_check,
    note="ONNX Gemm(transB=1) as lowered: matmul(x, transpose(W, 0, 1))",
)


# -- F.linear(x, Wt) + b -> F.linear(x, Wt, b) --------------------------------------------------------


def bias_pattern(x, w, b: torch.Tensor):
    return F.linear(x, w) + b


def bias_replacement(x, w, b):
    if b.dim() > 1:  # GPT-2's Conv1D bias is [1, out]
        b = torch.reshape(b, (b.shape[-1],))
    return F.linear(x, w, b)


#: dtypes whose rounding of the product before the Add differs visibly from addmm's one rounding
_ROUNDED_BEFORE_ADD = (torch.float16, torch.bfloat16)


def bias_check(match: Match) -> str | None:
    w_shape, b_shape, x_rank = match.shape("w"), match.shape("b"), match.rank("x")
    if w_shape is None or x_rank is None:
        return f"the shapes of the weight ({w_shape}) or the input ({x_rank}-D) are not known"
    out_features = w_shape[0]
    if not _stored_weight(match, "b"):
        return "the addend is not a constant"
    if match.dtype("w") in _ROUNDED_BEFORE_ADD:
        # ONNX (and TF) round x @ W to float16 before the Add; addmm rounds x @ W + b once:
        # one float16 ulp apart (a float32 ulp is below any tolerance, a float16 one is not)
        return f"the product is {match.dtype('w')}: rounded before the bias is added"
    if b_shape is None or b_shape[-1:] != (out_features,) or any(d != 1 for d in b_shape[:-1]):
        return f"the addend has shape {b_shape}, not ({out_features},)"
    if len(b_shape) > max(x_rank, 1):
        return f"the addend {b_shape} would add dims to the output"
    return None


linear_bias_1 = Rule(
    "linear_bias_1",
    bias_pattern,
    bias_replacement,
    check=bias_check,
    note="tf2onnx BiasAdd of a Dense as Add after MatMul",
)


# -- Tensordot: reshape(F.linear(reshape(x, (-1, C)), Wt, b), s) -> F.linear(x, Wt, b) ------------------


def tensordot_pattern(flat: torch.Tensor, w, b, shape: tuple):
    return torch.reshape(F.linear(flat, w, b), shape)


def tensordot_replacement(flat, w, b, shape, x, keep_reshape):
    y = F.linear(x, w, b)
    return torch.reshape(y, shape) if keep_reshape else y


def tensordot_check(match: Match) -> str | None:
    flat = match["flat"]
    if flat.op != "call_function" or flat.target is not torch.reshape:
        return "the input is not a reshape"
    x, target = flat.args
    x_shape = match.shape(x)
    if x_shape is None or len(x_shape) < 3:
        return "the reshape input is not known to be at least 3-D"
    channels = x_shape[-1]
    if (
        channels is None
        or not isinstance(target, tuple)
        or len(target) != 2
        or target[1] != channels
    ):
        return f"reshape {target} does not flatten the leading dims of {x_shape}"
    w_shape = match.shape("w")
    if w_shape is None:
        return "the weight's shape is not known"
    out_features = w_shape[0]
    match["x"] = x
    match["keep_reshape"] = not _is_output_shape(match, x, x_shape, match["shape"], out_features)
    return None


def _is_output_shape(match: Match, x, x_shape: tuple, target: tuple, out_features: int) -> bool:
    """True if `target` is provably x.shape[:-1] + (out_features,)."""
    if len(target) != len(x_shape) or target[-1] != out_features:
        return False
    unresolved = 0
    for i, (dim, item) in enumerate(zip(x_shape[:-1], target[:-1], strict=True)):
        if isinstance(item, int) and dim is not None and item == dim:
            continue
        if (
            getattr(item, "target", None) == "size"
            and item.args[0] is x
            and item.args[1] % len(x_shape) == i
        ):
            continue
        if isinstance(item, int) and item != -1 and dim is not None:
            return False
        unresolved += 1
    return unresolved <= 1


linear_tensordot_1 = Rule(
    "linear_tensordot_1",
    tensordot_pattern,
    tensordot_replacement,
    check=tensordot_check,
    note="tf2onnx Tensordot (Dense on [B, N, C]): Reshape -> MatMul -> Reshape",
)
