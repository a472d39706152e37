"""The differential fuzzer (fxsurgeon/fuzz/) and the bugs it found.

200 random tf2onnx-style graphs, near misses of every built-in pattern
included, optimized and compared with onnxruntime: not one may change the
numbers, and each one's model.py must reload to the same outputs bit for bit. Then one regression test per bug the fuzzer found (each written
against onnxruntime, like the fuzzer): ONNX Min lowered as Max; reflect/edge
Pad of one dim of a 3-D/4-D tensor crashing at run time; the engine's 1e-4
constant tolerance letting GELU and SDPA rewrites change outputs by 1e-4.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_cases as cases
import pytest
import torch
import torch.nn.functional as F
from onnx import helper

import fxsurgeon
from fxsurgeon.fuzz import FuzzSummary, check, fuzz, fuzz_command, generate
from fxsurgeon.tensorflow import from_onnx

F32 = np.float32
WRONG_GELU = """\
import torch
from fxsurgeon import Rule


def pattern(x):
    return 0.5 * x * (1.0 + torch.tanh(0.7978845608 * (x + 0.044715 * x**3)))


def replacement(x):
    return x * torch.sigmoid(1.702 * x)  # the "tanh-free approximation": not GELU


gelu_sigmoid_1 = Rule("gelu_sigmoid_1", pattern, replacement, note="wrong on purpose")
"""


@pytest.fixture(scope="module")
def two_hundred() -> FuzzSummary:
    return fuzz(range(200), codegen=True)  # each passing graph also through model.py


def test_two_hundred_random_graphs_change_no_numbers(two_hundred):
    summary = two_hundred
    print("\n" + summary.table())
    assert not summary.bad, summary.table()
    assert summary.count("codegen") == 0  # model.py reloads to the same outputs, bit for bit
    assert summary.count("pass") >= 190  # the rest: clear FxSurgeonErrors, counted by kind
    fired = set()
    for outcome in summary.outcomes:
        fired |= set(outcome.fired)
    # the run exercises the fusions, not only the lowering
    for rule in (
        "linear_tensordot_1",
        "layer_norm_1",
        "gelu_tanh_1",
        "gelu_erf_3",
        "sdpa_1",
        "sdpa_3",
    ):
        assert rule in fired, sorted(fired)
    near = sum(1 for o in summary.outcomes for b in o.blocks if "~" in b)
    assert near >= 60
    # attention in every form recognition covers (fxsurgeon/fuzz/attention_blocks.py): each
    # exact one fused, each near miss declined or rewritten into something equal (above)
    forms = [b for o in summary.outcomes for b in o.blocks if b.startswith("attention_forms")]
    assert len(forms) >= 20 and any("~" in b for b in forms)
    assert sum(o.unfused["sdpa"] for o in summary.outcomes) == 0, summary.table()


def test_a_seed_gives_the_same_graph_every_time():
    assert generate(17).model.SerializeToString() == generate(17).model.SerializeToString()
    assert generate(17).blocks == generate(17).blocks
    assert generate(17).model.SerializeToString() != generate(18).model.SerializeToString()


def test_the_command_prints_how_to_reproduce_a_graph(capsys):
    from fxsurgeon.cli import main

    assert main(["fuzz", "--seed", "5", "--count", "1"]) == 0  # python -m fxsurgeon fuzz ...
    out = capsys.readouterr().out
    assert "seed 5: pass" in out
    assert fuzz_command(["--seed", "5", "--count", "1"]) == 0
    out = capsys.readouterr().out
    assert "seed 5: pass" in out
    assert "reproduce: python -m fxsurgeon fuzz --seed 5 --count 1" in out
    assert "silent numeric changes      0" in out


def test_a_wrong_rule_is_caught_and_bisected_to_its_file(tmp_path):
    path = tmp_path / "wrong_gelu.py"
    path.write_text(WRONG_GELU)
    seed = next(s for s in range(200) if "gelu_tanh.exact" in generate(s).blocks)
    outcome = check(generate(seed), patterns=[str(path)])
    assert outcome.status == "mismatch" and outcome.bad, outcome.message
    assert outcome.fired.get("gelu_sigmoid_1")
    assert "gelu_sigmoid_1" in outcome.diagnosis and str(path) in outcome.diagnosis
    assert outcome.repro == f"python -m fxsurgeon fuzz --seed {seed} --count 1"


# --------------------------------------------------------------------------- regressions


def _model(nodes, inputs, outputs, initializers=()):
    return cases.make_model(
        nodes,
        [cases.tensor_info(n, F32, s) for n, s in inputs.items()],
        [cases.tensor_info(n, F32, s) for n, s in outputs.items()],
        [cases.init(n, v) for n, v in initializers],
    )


def test_onnx_min_lowers_to_minimum_and_max_to_maximum():
    """onnx2torch's OnnxMinMax keeps torch.amin / torch.amax: Min was lowered as maximum."""
    model = _model(
        [
            helper.make_node("Tanh", ["x"], ["t"]),
            helper.make_node("Min", ["x", "t", "c"], ["lo"]),
            helper.make_node("Max", ["x", "t"], ["hi"]),
        ],
        {"x": ["N", 3, 4]},
        {"lo": ["N", 3, 4], "hi": ["N", 3, 4]},
        [("c", np.full((4,), 0.3, F32))],
    )
    x = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(F32)
    module = cases.assert_matches_ort(model, [x])
    targets = {n.target for n in module.graph.nodes if n.op == "call_function"}
    assert torch.minimum in targets and torch.maximum in targets


@pytest.mark.parametrize(
    ("mode", "shape", "pads"),
    [
        ("reflect", [2, 3, 4, 5], [0, 0, 0, 2, 0, 0, 0, 1]),  # last dim of 4-D: F.pad wants 4
        ("edge", [2, 3, 4, 5], [0, 0, 0, 1, 0, 0, 0, 0]),
        ("reflect", [2, 3, 2, 4, 5], [0, 0, 0, 0, 1, 0, 0, 0, 0, 2]),  # of 5-D: it wants 6
        ("edge", [2, 3, 2, 4, 5], [0, 0, 0, 2, 0, 0, 0, 0, 1, 0]),
        ("reflect", [2, 4, 5], [0, 0, 2, 0, 0, 1]),  # last dim of 3-D: 2, as trimmed
    ],
)
def test_reflect_and_edge_pad_of_the_last_dims_run(mode, shape, pads):
    """torch's reflect/replicate pad the last 1-3 dims of a 2-5-D tensor in fixed groups
    (4-D: the last 2); trimming the zero pads of the other dims made F.pad raise at run
    time. (onnx2torch itself pads no dim before the last rank - 2.)"""
    model = _model(
        [helper.make_node("Pad", ["x", "pads"], ["y"], mode=mode)],
        {"x": ["N", *shape[1:]]},
        {"y": None},
        [("pads", np.array(pads, np.int64))],
    )
    x = np.random.default_rng(1).standard_normal(shape).astype(F32)
    cases.assert_matches_ort(model, [x], atol=0)


def test_a_reflect_pad_of_the_batch_dim_is_a_clear_error():
    from fxsurgeon.errors import LoweringError
    from fxsurgeon.lower.pads import non_constant_pads

    assert non_constant_pads([1, 1], 4, "reflect") == [1, 1, 0, 0]
    with pytest.raises(LoweringError, match="pads only the last 1-3 dims"):
        non_constant_pads([0, 0, 0, 0, 1, 1], 3, "reflect")


def _gelu_tanh_model(half: float, c1: float, c2: float, one: float):
    consts = {"half": half, "c1": c1, "c2": c2, "one": one, "three": 3.0}
    nodes = [
        helper.make_node("Pow", ["x", "three"], ["x3"]),
        helper.make_node("Mul", ["c2", "x3"], ["cx3"]),
        helper.make_node("Add", ["x", "cx3"], ["inner"]),
        helper.make_node("Mul", ["c1", "inner"], ["arg"]),
        helper.make_node("Tanh", ["arg"], ["t"]),
        helper.make_node("Add", ["one", "t"], ["onep"]),
        helper.make_node("Mul", ["half", "x"], ["hx"]),
        helper.make_node("Mul", ["hx", "onep"], ["y"]),
    ]
    return _model(
        nodes,
        {"x": ["N", 16]},
        {"y": ["N", 16]},
        [(k, np.array(v, F32)) for k, v in consts.items()],
    )


def test_gelu_constants_must_be_the_maths_within_float32_rounding():
    """A constant 9e-5 away from GELU's matched the engine's old 1e-4 tolerance and was
    rewritten into GELU, changing outputs by up to 1e-4 relative; TF's float32 roundings
    (3.5e-8 away) still match."""
    x = np.random.default_rng(2).standard_normal((64, 16)).astype(F32) * 2
    tf_baked = _gelu_tanh_model(0.5, float(F32(math.sqrt(2 / math.pi))), float(F32(0.044715)), 1.0)
    fused = cases.assert_matches_ort(tf_baked, [x])
    assert fxsurgeon.report_of(fused).matches.get("gelu_tanh_1") == 1
    off = _gelu_tanh_model(0.5 * (1 + 9e-5), math.sqrt(2 / math.pi), 0.044715, 1.0)
    left = cases.assert_matches_ort(off, [x])
    assert "gelu_tanh_1" not in fxsurgeon.report_of(left).matches


def _attention_model(scale: float, heads: int = 2, dim: int = 4, seq: int = 5):
    """Self-attention on q = k = v = x split into heads (the fuzzer's attention block, bare)."""
    width = heads * dim
    nodes = [
        helper.make_node("Reshape", ["x", "split"], ["xh"]),
        helper.make_node("Transpose", ["xh"], ["q"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["xh"], ["kt"], perm=[0, 2, 3, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("Mul", ["s", "scale"], ["w"]),
        helper.make_node("Softmax", ["w"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "q"], ["o"]),
        helper.make_node("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ot", "merge"], ["y"]),
    ]
    return _model(
        nodes,
        {"x": ["N", seq, width]},
        {"y": ["N", seq, width]},
        [
            ("split", np.array([0, seq, heads, dim], np.int64)),
            ("merge", np.array([0, seq, width], np.int64)),
            ("scale", np.array(scale, F32)),
        ],
    )


def test_sdpa_keeps_a_scale_that_is_not_one_over_sqrt_d_within_float32_rounding():
    """A scale 9e-5 away from 1/sqrt(D) was left to SDPA's default (the old 1e-4 check),
    changing every score by 9e-5 relative."""
    x = np.random.default_rng(3).standard_normal((8, 5, 8)).astype(F32) * 3

    def sdpa_kwargs(model) -> dict:
        module = cases.assert_matches_ort(model, [x])
        (node,) = [n for n in module.graph.nodes if n.target is F.scaled_dot_product_attention]
        return dict(node.kwargs)

    assert "scale" not in sdpa_kwargs(_attention_model(float(F32(0.5))))  # 1/sqrt(4) in float32
    kept = sdpa_kwargs(_attention_model(0.5 * (1 + 9e-5)))
    assert kept["scale"] == pytest.approx(0.5 * (1 + 9e-5), rel=1e-7)


def test_optimize_of_a_fuzz_graph_is_deterministic():
    """bisect relies on replaying the same rewrites in the same order."""
    model = generate(11).model
    first = fxsurgeon.optimize(from_onnx(model))
    second = fxsurgeon.optimize(from_onnx(model))
    assert first.code == second.code


def test_a_padding_term_beside_the_causal_band_keeps_its_zero_on_the_kept_scores():
    """Seed 640 of a 1,000-graph run (3505 since the XSoftmax generator changed the draws,
    8823 since the fill_concat block did, 21728 since the causal band's fill is drawn):
    ``w * band + (-1e4 * (1 - m) - c * (1 - band))``.
    The causal piece is split off, but the padding term stays whole: split into numbers
    too, it became ``1e4 * m`` (equal up to a shift), and the kept scores, 1e4 larger,
    lost their low bits (2.9e-5 at the output)."""
    case = generate(21728)
    assert "attention~causal_other_association" in case.blocks
    assert "attention_mask" in [name for name, _, _ in case.inputs]
    outcome = check(case)
    assert outcome.status == "pass", outcome
