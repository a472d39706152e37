"""The built-in fusions (patterns/*.py): each variant found, wrong ones left alone, numbers kept.

Small cases are ONNX graphs written with onnx.helper the way tf2onnx writes
them, checked against onnxruntime on a batch of 100 random inputs; the model
cases use the test zoo (tests/zoo.py) and compare with TensorFlow.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
import zoo
from onnx import TensorProto, helper, numpy_helper
from torch import fx, nn

import fxsurgeon
from fxsurgeon.fuse import apply_rules, canonicalize, load_rules
from fxsurgeon.lower.dtypes import follow_dtype
from fxsurgeon.shapes import ExampleInputs, propagate_shapes
from fxsurgeon.source import SOURCE_META_KEY
from fxsurgeon.tensorflow import export_onnx, from_onnx

rng = np.random.default_rng(0)
F32 = TensorProto.FLOAT
BATCH = 100

# --------------------------------------------------------------------------- helpers


def const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def weight(name: str, *shape) -> onnx.TensorProto:
    return const(name, rng.standard_normal(shape) * 0.5)


def node(op: str, inputs, output: str, **attrs) -> onnx.NodeProto:
    return helper.make_node(op, list(inputs), [output], name=output, **attrs)


def model_of(nodes, inputs: dict, outputs: dict, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(
        list(nodes),
        "case",
        [helper.make_tensor_value_info(n, F32, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, F32, s) for n, s in outputs.items()],
        list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def optimized(model: onnx.ModelProto, **kwargs) -> fx.GraphModule:
    return fxsurgeon.optimize(from_onnx(model), **kwargs)


def matches(module: fx.GraphModule) -> dict[str, int]:
    return fxsurgeon.report_of(module).matches


def assert_matches_ort(module: fx.GraphModule, model: onnx.ModelProto, atol: float = 1e-5) -> None:
    """Outputs on one batch of BATCH random inputs (dynamic dims: BATCH, then 7)."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {}
    for i in session.get_inputs():
        shape = [
            d if isinstance(d, int) else (BATCH if k == 0 else 7) for k, d in enumerate(i.shape)
        ]
        feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    expected = session.run(None, feeds)
    with torch.no_grad():
        got = module(*(torch.from_numpy(a) for a in feeds.values()))
    got = got if isinstance(got, (tuple, list)) else [got]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g.numpy(), e, atol=atol, rtol=0)


def census(module: fx.GraphModule) -> dict[str, int]:
    """What the final model computes with, functional or module form alike."""
    counts = dict.fromkeys(("linear", "layer_norm", "rms_norm", "gelu", "sdpa", "softmax"), 0)
    functions = {
        F.linear: "linear",
        F.layer_norm: "layer_norm",
        F.rms_norm: "rms_norm",
        F.gelu: "gelu",
        F.scaled_dot_product_attention: "sdpa",
        torch.softmax: "softmax",
        F.softmax: "softmax",
    }
    modules = {
        nn.Linear: "linear",
        nn.LayerNorm: "layer_norm",
        nn.RMSNorm: "rms_norm",
        nn.GELU: "gelu",
        nn.Softmax: "softmax",
    }
    for n in module.graph.nodes:
        if n.op == "call_function" and n.target in functions:
            counts[functions[n.target]] += 1
        elif n.op == "call_module":
            kind = modules.get(type(module.get_submodule(n.target)))
            if kind:
                counts[kind] += 1
    return counts


# --------------------------------------------------------------------------- linear


def dense_2d(extra_user: bool = False):
    outputs = {"y": ["N", 4]}
    if extra_user:
        outputs["mm"] = ["N", 4]
    return model_of(
        [node("MatMul", ["x", "W"], "mm"), node("Add", ["mm", "b"], "y")],
        {"x": ["N", 6]},
        outputs,
        [weight("W", 6, 4), weight("b", 4)],
    )


def dense_tensordot():
    """tf2onnx's Dense on [B, N, C]: Reshape -> MatMul -> Reshape -> Add."""
    return model_of(
        [
            node("Reshape", ["x", "flat"], "x2"),
            node("MatMul", ["x2", "W"], "mm"),
            node("Reshape", ["mm", "back"], "y3"),
            node("Add", ["y3", "b"], "y"),
        ],
        {"x": ["N", 5, 6]},
        {"y": ["N", 5, 4]},
        [
            weight("W", 6, 4),
            weight("b", 4),
            numpy_helper.from_array(np.array([-1, 6], np.int64), "flat"),
            numpy_helper.from_array(np.array([-1, 5, 4], np.int64), "back"),
        ],
    )


def gemm_trans_b():
    """Gemm(transB=1, alpha=0.5) whose B is not an initializer (onnx2torch keeps OnnxGemm)."""
    return model_of(
        [node("Identity", ["W"], "Wi"), node("Gemm", ["x", "Wi", "c"], "y", transB=1, alpha=0.5)],
        {"x": ["N", 6]},
        {"y": ["N", 4]},
        [weight("W", 4, 6), weight("c", 4)],
    )


def test_matmul_add_with_a_weight_is_one_linear():
    model = dense_2d()
    module = optimized(model)
    assert matches(module) == {"linear_matmul_1": 1, "linear_bias_1": 1}
    assert census(module)["linear"] == 1
    assert "matmul" not in module.code
    assert_matches_ort(module, model)


def test_tensordot_sandwich_is_a_linear_on_the_3d_input():
    model = dense_tensordot()
    module = optimized(model)
    assert matches(module)["linear_tensordot_1"] == 1
    assert matches(module)["linear_bias_1"] == 1
    assert census(module)["linear"] == 1
    assert "reshape" not in module.code
    assert_matches_ort(module, model)


def test_gemm_with_transposed_b_is_a_linear():
    model = gemm_trans_b()
    module = optimized(model)
    assert matches(module).get("linear_gemm_1") == 1
    assert "transpose" not in module.code
    assert_matches_ort(module, model)


def test_matmul_output_used_twice_keeps_its_bias_add():
    model = dense_2d(extra_user=True)
    module = optimized(model)
    assert matches(module) == {"linear_matmul_1": 1}
    assert_matches_ort(module, model)


def test_matmul_of_two_activations_is_not_a_linear():
    model = model_of(
        [node("MatMul", ["x", "w"], "y")], {"x": ["N", 6], "w": [6, 4]}, {"y": ["N", 4]}
    )
    assert optimized(model, example_inputs=None) and matches(optimized(model)) == {}


# --------------------------------------------------------------------------- layer norm


def layer_norm_model(beta: bool = True, axis: int = 2, expose_mean: bool = False):
    """Keras LayerNormalization as tf2onnx writes it (moments + batch_normalization)."""
    nodes = [
        node("ReduceMean", ["x"], "mean", axes=[axis], keepdims=1),
        node("Sub", ["x", "mean"], "d"),
        node("Mul", ["d", "d"], "sq"),
        node("ReduceMean", ["sq"], "var", axes=[axis], keepdims=1),
        node("Add", ["var", "eps"], "ve"),
        node("Sqrt", ["ve"], "std"),
        node("Reciprocal", ["std"], "inv"),
        node("Mul", ["inv", "gamma"], "s"),
        node("Mul", ["mean", "s"], "ms"),
        node("Mul", ["x", "s"], "xs"),
    ]
    if beta:
        nodes += [node("Sub", ["beta", "ms"], "shift"), node("Add", ["xs", "shift"], "y")]
    else:
        nodes += [node("Neg", ["ms"], "shift"), node("Add", ["xs", "shift"], "y")]
    inits = [
        const("eps", 1e-3),
        const("gamma", 1 + 0.1 * rng.standard_normal(8)),
        weight("beta", 8),
    ]
    outputs = {"y": ["N", 5, 8]}
    if expose_mean:
        outputs["mean"] = ["N", 5, 1]
    return model_of(nodes, {"x": ["N", 5, 8]}, outputs, inits if beta else inits[:2])


@pytest.mark.parametrize(("beta", "rule"), [(True, "layer_norm_1"), (False, "layer_norm_2")])
def test_moments_form_is_layer_norm(beta, rule):
    model = layer_norm_model(beta=beta)
    module = optimized(model)
    assert matches(module) == {rule: 1}
    assert census(module)["layer_norm"] == 1
    assert "sqrt" not in module.code and "mean" not in module.code
    assert_matches_ort(module, model)


def test_layer_norm_over_another_axis_is_left_alone():
    model = layer_norm_model(axis=1)
    assert matches(optimized(model)) == {}


def test_layer_norm_whose_mean_is_also_an_output_is_left_alone():
    model = layer_norm_model(expose_mean=True)
    module = optimized(model)
    assert matches(module) == {}
    assert_matches_ort(module, model)


@pytest.mark.parametrize(("square", "rule"), [("Mul", "rms_norm_1"), ("Pow", "rms_norm_2")])
def test_t5_rms_norm_is_rms_norm(square, rule):
    sq = node("Mul", ["x", "x"], "sq") if square == "Mul" else node("Pow", ["x", "two"], "sq")
    model = model_of(
        [
            sq,
            node("ReduceMean", ["sq"], "ms", axes=[-1], keepdims=1),
            node("Add", ["ms", "eps"], "a"),
            node("Sqrt", ["a"], "s"),
            node("Reciprocal", ["s"], "r"),
            node("Mul", ["x", "r"], "h"),
            node("Mul", ["gamma", "h"], "y"),
        ],
        {"x": ["N", 5, 8]},
        {"y": ["N", 5, 8]},
        [const("eps", 1e-6), const("two", 2.0), const("gamma", 1 + 0.1 * rng.standard_normal(8))],
    )
    module = optimized(model)
    assert matches(module) == {rule: 1}
    assert census(module)["rms_norm"] == 1
    assert_matches_ort(module, model)


# --------------------------------------------------------------------------- GELU


def gelu_tanh_model(cubic: float = 0.044715, expose_tanh: bool = False):
    """tf2onnx's gelu_new: 0.5x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))."""
    outputs = {"y": ["N", 8]}
    if expose_tanh:
        outputs["t"] = ["N", 8]
    return model_of(
        [
            node("Mul", ["half", "x"], "hx"),
            node("Pow", ["x", "three"], "x3"),
            node("Mul", ["c", "x3"], "cx3"),
            node("Add", ["x", "cx3"], "inner"),
            node("Mul", ["k", "inner"], "arg"),
            node("Tanh", ["arg"], "t"),
            node("Add", ["one", "t"], "onept"),
            node("Mul", ["hx", "onept"], "y"),
        ],
        {"x": ["N", 8]},
        outputs,
        [
            const("half", 0.5),
            const("three", 3.0),
            const("c", cubic),
            const("k", 0.7978845834732056),
            const("one", 1.0),
        ],
    )


def gelu_erf_model(variant: int):
    """1: x * 0.7071 + 1 + erf; 2: x / 1.4142; 3: Keras exact GELU, Erfc as 1 - Erf(-x * 0.7071)."""
    if variant == 1:
        arg = [node("Mul", ["x", "r2"], "arg")]
    elif variant == 2:
        arg = [node("Div", ["x", "sqrt2"], "arg")]
    else:
        arg = [node("Neg", ["x"], "nx"), node("Mul", ["nx", "r2"], "arg")]
    combine = (
        node("Sub", ["one", "e"], "onepe") if variant == 3 else node("Add", ["one", "e"], "onepe")
    )
    return model_of(
        [
            node("Mul", ["half", "x"], "hx"),
            *arg,
            node("Erf", ["arg"], "e"),
            combine,
            node("Mul", ["hx", "onepe"], "y"),
        ],
        {"x": ["N", 8]},
        {"y": ["N", 8]},
        [
            const("half", 0.5),
            const("r2", 0.7071067690849304),
            const("sqrt2", 1.4142135),
            const("one", 1.0),
        ],
    )


def test_gelu_tanh_form_is_gelu_tanh():
    model = gelu_tanh_model()
    module = optimized(model)
    assert matches(module) == {"gelu_tanh_1": 1}
    (gelu,) = [n for n in module.graph.nodes if n.target is F.gelu]
    assert gelu.kwargs == {"approximate": "tanh"}
    assert_matches_ort(module, model)


@pytest.mark.parametrize("variant", [1, 2, 3])
def test_gelu_erf_forms_are_exact_gelu(variant):
    model = gelu_erf_model(variant)
    module = optimized(model)
    assert matches(module) == {f"gelu_erf_{variant}": 1}
    (gelu,) = [n for n in module.graph.nodes if n.target is F.gelu]
    assert gelu.kwargs.get("approximate", "none") == "none"
    assert_matches_ort(module, model)


def test_a_gelu_like_chain_with_another_constant_is_left_alone():
    model = gelu_tanh_model(cubic=0.05)
    module = optimized(model)
    assert matches(module) == {}
    assert census(module)["gelu"] == 0
    assert_matches_ort(module, model)


def test_gelu_whose_tanh_is_also_an_output_is_left_alone():
    model = gelu_tanh_model(expose_tanh=True)
    module = optimized(model)
    assert matches(module) == {}
    assert_matches_ort(module, model)


# --------------------------------------------------------------------------- attention core


def attention_model(extra: str = "", softmax_axis: int = -1):
    """softmax(q @ k^T * 1/sqrt(8) [+ 1e-9 | + mask]) @ v on [N, 4, S, 8] heads."""
    nodes = [
        node("Transpose", ["k"], "kT", perm=[0, 1, 3, 2]),
        node("MatMul", ["q", "kT"], "qk"),
        node("Mul", ["qk", "scale"], "scores"),
    ]
    inputs = {"q": ["N", 4, "S", 8], "k": ["N", 4, "S", 8], "v": ["N", 4, "S", 8]}
    inits = [const("scale", 0.3535533845424652)]
    logits = "scores"
    if extra == "shift":
        nodes.append(node("Add", ["scores", "tiny"], "logits"))
        inits.append(const("tiny", 1e-9))
        logits = "logits"
    elif extra == "mask":
        inputs["mask"] = ["N", 1, 1, "S"]
        nodes.append(node("Add", ["scores", "mask"], "logits"))
        logits = "logits"
    elif extra == "scale_input":
        inputs["scale_in"] = []
        nodes[2] = node("Mul", ["qk", "scale_in"], "scores")
        inits = []
    nodes += [node("Softmax", [logits], "p", axis=softmax_axis), node("MatMul", ["p", "v"], "y")]
    return model_of(nodes, inputs, {"y": ["N", 4, "S", 8]}, inits)


@pytest.mark.parametrize(
    ("extra", "rule"), [("", "sdpa_1"), ("shift", "sdpa_1"), ("mask", "sdpa_1")]
)
def test_attention_core_is_sdpa(extra, rule):
    model = attention_model(extra)
    module = optimized(model)
    assert matches(module)[rule] == 1
    assert census(module)["sdpa"] == 1 and census(module)["softmax"] == 0
    assert "permute" not in module.code  # k^T's transpose and SDPA's cancel
    assert_matches_ort(module, model)


def test_softmax_over_another_axis_is_not_attention():
    model = attention_model(softmax_axis=2)
    module = optimized(model)
    assert census(module)["sdpa"] == 0
    assert_matches_ort(module, model)


def test_a_run_time_scale_is_not_attention():
    model = attention_model("scale_input")
    assert census(optimized(model))["sdpa"] == 0


# --------------------------------------------------------------------------- cleanup


def test_transposes_that_cancel_disappear_and_others_compose():
    model = model_of(
        [
            node("Transpose", ["x"], "a", perm=[0, 2, 3, 1]),
            node("Transpose", ["a"], "b", perm=[0, 3, 1, 2]),
            node("Relu", ["b"], "r"),
            node("Transpose", ["r"], "c", perm=[0, 2, 1, 3]),
            node("Transpose", ["c"], "y", perm=[0, 1, 3, 2]),
        ],
        {"x": ["N", 3, 4, 5]},
        {"y": ["N", 4, 5, 3]},
    )
    module = optimized(model)
    assert matches(module)["permute_permute"] == 2
    assert module.code.count("torch.permute(") == 1
    assert_matches_ort(module, model)


def test_reshape_to_its_own_shape_and_reshape_of_reshape():
    model = model_of(
        [
            node("Reshape", ["x", "same"], "a"),
            node("Relu", ["a"], "r"),
            node("Reshape", ["r", "flat"], "f"),
            node("Reshape", ["f", "back"], "y"),
        ],
        {"x": ["N", 6, 4]},
        {"y": ["N", 4, 6]},
        [
            numpy_helper.from_array(np.array(v, np.int64), n)
            for n, v in (("same", [-1, 6, 4]), ("flat", [-1, 24]), ("back", [-1, 4, 6]))
        ],
    )
    module = optimized(model)
    assert matches(module)["reshape_noop"] == 1 and matches(module)["reshape_reshape"] == 1
    assert module.code.count("torch.reshape(") == 1
    assert_matches_ort(module, model)


def test_a_cast_to_the_same_dtype_and_an_identity_permute_go():
    gm = fx.symbolic_trace(lambda x: torch.permute(torch.relu(x.to(torch.float32)), (0, 1)))
    examples = ExampleInputs((torch.randn(2, 3),), (torch.randn(3, 3),))
    propagate_shapes(gm, examples)
    canonicalize(gm.graph)
    report = apply_rules(
        gm, load_rules(disable=["linear", "layer_norm", "gelu", "attention"]), examples=examples
    )
    assert report.matches == {"cast_noop": 1, "permute_identity": 1}
    assert [n.target for n in gm.graph.nodes if n.op.startswith("call")] == [torch.relu]


# --------------------------------------------------------------------------- models


@functools.cache
def zoo_optimized(name: str) -> fx.GraphModule:
    return fxsurgeon.optimize(copy.deepcopy(zoo.convert(name)))


def max_diff_vs_tf(name: str, module: fx.GraphModule, batch: int = 3, **kw) -> float:
    model = zoo.build(name)
    inputs = model.make_inputs(batch, 1, **kw)
    expected = model.tf_outputs(inputs)
    specs = zoo.convert(name).meta[SOURCE_META_KEY].input_specs
    with torch.no_grad():
        got = module(*(torch.from_numpy(inputs[s.name]) for s in specs))
    got = got if isinstance(got, (tuple, list)) else [got]
    return max(float(np.abs(g.numpy() - e).max()) for g, e in zip(got, expected, strict=True))


def test_tiny_vit_fuses_every_block():
    module = zoo_optimized("vit_tiny")
    assert census(module) == {
        "linear": 13,
        "layer_norm": 5,
        "rms_norm": 0,
        "gelu": 2,
        "sdpa": 2,
        "softmax": 0,
    }
    found = matches(module)
    assert found["sdpa_1"] == 2 and found["layer_norm_1"] == 5 and found["gelu_tanh_1"] == 2
    assert found["linear_matmul_1"] == 13
    assert max_diff_vs_tf("vit_tiny", module) < 1e-5


def test_tiny_vit_has_no_graph_break_after_fusion():
    module = zoo_optimized("vit_tiny")
    explanation = torch._dynamo.explain(module)(torch.randn(2, 3, 32, 32))
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


def test_tiny_vit_attention_reads_as_head_split_sdpa_head_merge():
    code = zoo_optimized("vit_tiny").code
    torch.testing.FileCheck().check("torch.reshape").check("(0, 2, 1, 3)").check(
        "scaled_dot_product_attention"
    ).check_not("softmax").check("(0, 2, 1, 3)").check("torch.reshape").run(code)
    graph = zoo_optimized("vit_tiny").graph
    for sdpa in [n for n in graph.nodes if n.target is F.scaled_dot_product_attention]:
        # q, k and v alike: reshape(linear(x), (B, S, H, D)).permute(0, 2, 1, 3)
        for head in sdpa.args[:3]:
            assert head.target is torch.permute and head.args[1] == (0, 2, 1, 3)
            assert head.args[0].target is torch.reshape and head.args[0].args[1][-2:] == (4, 8)
        (merge,) = sdpa.users
        assert merge.target is torch.permute and merge.args[1] == (0, 2, 1, 3)


@pytest.mark.parametrize(
    ("name", "gelu"), [("bert_tiny", "gelu_tanh_1"), ("bert_tiny_exact_gelu", "gelu_erf_3")]
)
def test_tiny_bert_has_one_masked_sdpa_per_layer(name, gelu):
    module = zoo_optimized(name)
    found = matches(module)
    assert found["sdpa_1"] == 2 and found[gelu] == 2
    assert census(module)["sdpa"] == 2 and census(module)["softmax"] == 0
    (first, *_) = [n for n in module.graph.nodes if n.target is F.scaled_dot_product_attention]
    assert "attn_mask" in first.kwargs and "is_causal" not in first.kwargs
    assert max_diff_vs_tf(name, module) < 1e-5
    assert max_diff_vs_tf(name, module, batch=2, seq_len=11) < 1e-5


def test_tiny_gpt2_with_its_padding_mask_keeps_its_attention():
    """GPT-2's causal band and its padding mask both fill -1e4: no SDPA is exact on a
    left-padded batch (patterns/attention.py), so both softmaxes stay, and the module
    matches TF there too, the padded rows included."""
    module = zoo_optimized("gpt2_tiny")
    assert "sdpa_1" not in matches(module)
    assert census(module)["sdpa"] == 0 and census(module)["softmax"] == 2
    assert max_diff_vs_tf("gpt2_tiny", module) < 1e-5
    assert max_diff_vs_tf("gpt2_tiny", module, batch=2, seq_len=11) < 1e-5
    model = zoo.build("gpt2_tiny")
    inputs = model.make_inputs(3, 2)
    left = {k: np.ascontiguousarray(v[:, ::-1]) for k, v in inputs.items()}  # pads first
    assert (left["attention_mask"][:, 0] == 0).any()
    expected = model.tf_outputs(left)[0]
    specs = zoo.convert("gpt2_tiny").meta[SOURCE_META_KEY].input_specs
    with torch.no_grad():
        got = module(*(torch.from_numpy(left[s.name]) for s in specs))
    got = got[0] if isinstance(got, (tuple, list)) else got
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["bert_tiny"])
def test_masked_sdpa_follows_a_float64_cast_of_the_module(name):
    """The mask comes from a float32 Cast of attention_mask; SDPA gets it in q's dtype, so
    the module cast to float64 still matches TF (torch 2.14 took the float32 mask silently
    and returned wrong values)."""
    module = copy.deepcopy(zoo_optimized(name)).to(torch.float64)
    sdpas = [n for n in module.graph.nodes if n.target is F.scaled_dot_product_attention]
    assert len(sdpas) == 2
    # the mask is converted to q's dtype (a float32-pinned one saturating: follow_dtype)
    for sdpa in sdpas:
        mask = sdpa.kwargs["attn_mask"]
        assert mask.target in ("type_as", follow_dtype) and mask.args[1] is sdpa.args[0]
    assert max_diff_vs_tf(name, module) < 1e-5
    assert max_diff_vs_tf(name, module, batch=2, seq_len=11) < 1e-5


@pytest.fixture(scope="module")
def gpt2_without_mask():
    """The zoo's GPT-2 exported with input_ids only: the causal band alone."""
    tf_model = zoo.build("gpt2_tiny").model
    tf = pytest.importorskip("tensorflow")
    proto = export_onnx(tf_model, {"input_ids": tf.TensorSpec((None, None), tf.int32)})
    return tf_model, fxsurgeon.optimize(from_onnx(proto))


def test_tiny_gpt2_without_padding_mask_is_is_causal(gpt2_without_mask):
    tf_model, module = gpt2_without_mask
    assert matches(module)["sdpa_1"] == 2
    (first, *_) = [n for n in module.graph.nodes if n.target is F.scaled_dot_product_attention]
    assert first.kwargs == {"is_causal": True}
    ids = np.random.default_rng(3).integers(0, 100, (3, 9)).astype(np.int32)
    expected = tf_model({"input_ids": ids}, training=False)["last_hidden_state"].numpy()
    got = module(torch.from_numpy(ids))
    got = got[0] if isinstance(got, (tuple, list)) else got
    np.testing.assert_allclose(got.detach().numpy(), expected, atol=1e-5, rtol=0)


def test_keras_cnn_keeps_one_linear_and_no_transpose_pairs():
    module = zoo_optimized("keras_cnn")
    assert census(module)["linear"] == 1
    assert max_diff_vs_tf("keras_cnn", module) < 1e-5
    assert module.code.count("torch.permute(") == 1  # NHWC input -> NCHW, once


@pytest.mark.slow
def test_vit_base_fusion_counts():
    module = fxsurgeon.optimize(copy.deepcopy(zoo.convert("vit_base")))
    assert census(module) == {
        "linear": 73,
        "layer_norm": 25,
        "rms_norm": 0,
        "gelu": 12,
        "sdpa": 12,
        "softmax": 0,
    }
    assert max_diff_vs_tf("vit_base", module, batch=2) < 1e-4
