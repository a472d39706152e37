"""Per-rule verification (``optimize(verify=...)``) and ``fxsurgeon.bisect``.

The culprit is a user pattern file that replaces the tanh GELU of the tiny
ViT (HF ``gelu_new``) by ``x * sigmoid(1.702 x)``, the "tanh-free
approximation": close (2e-2), not equal. TensorFlow notices; bisection names
the rule and its file; the per-rule check stops it as it is made.
"""

from __future__ import annotations

import pytest
import torch
import zoo
from onnx import helper

import fxsurgeon
from fxsurgeon.errors import InputError
from fxsurgeon.tensorflow import from_onnx
from fxsurgeon.verify import RewriteVerificationError, verify

WRONG_GELU = '''\
"""GELU without tanh: x * sigmoid(1.702 x). Off by up to 2e-2: wrong, on purpose."""

import torch

from fxsurgeon import Rule


def gelu_tanh_pattern(x):
    return 0.5 * x * (1.0 + torch.tanh(0.7978845608 * (x + 0.044715 * x**3)))


def sigmoid_replacement(x):
    return x * torch.sigmoid(1.702 * x)


gelu_sigmoid_1 = Rule(
    "gelu_sigmoid_1", gelu_tanh_pattern, sigmoid_replacement, note="the tanh-free approximation"
)
'''


@pytest.fixture(scope="module")
def wrong_gelu(tmp_path_factory):
    path = tmp_path_factory.mktemp("patterns") / "wrong_gelu.py"
    path.write_text(WRONG_GELU)
    return str(path)


@pytest.fixture(scope="module")
def vit():
    return zoo.build("vit_tiny").model, zoo.convert("vit_tiny")


def test_a_wrong_user_rule_fails_against_tensorflow_and_bisect_names_it(vit, wrong_gelu):
    keras, converted = vit
    options = {"patterns": [wrong_gelu], "disable": ["gelu_tanh"]}
    model = fxsurgeon.optimize(converted, **options)
    assert fxsurgeon.report_of(model).matches["gelu_sigmoid_1"] == 2
    report = verify(model, keras)
    assert not report.passed and report.max_abs > 1e-3

    result = fxsurgeon.bisect(converted, keras, **options)
    print(f"\n{result}")
    assert result.found and result.culprit == "rule"
    assert result.rule == "gelu_sigmoid_1"
    assert result.rule_file == wrong_gelu
    assert "operator.mul" in result.node
    assert any("torch.tanh" in line for line in result.subgraph)
    assert any("torch.sigmoid" in line for line in result.rewrite.replacement)
    assert result.before.passed and not result.after.passed
    assert 0 < result.rewrite.index <= result.applications
    assert dict(result.probes)[result.rewrite.index] is False
    text = str(result)
    assert wrong_gelu in text and "matched subgraph:" in text and "gelu_sigmoid_1" in text


def test_bisect_against_the_lowered_model_by_default(vit, wrong_gelu):
    _, converted = vit
    result = fxsurgeon.bisect(converted, patterns=[wrong_gelu])
    assert result.rule == "gelu_sigmoid_1" and result.rule_file == wrong_gelu
    # without disable, the user rule runs before the built-in gelu_tanh_1 and fires first
    assert "the lowered model (before any rewrite)" in result.message


def test_bisect_of_a_correct_model_finds_nothing(vit):
    keras, converted = vit
    result = fxsurgeon.bisect(converted, keras)
    assert result.culprit == "none" and not result.found and result.rule is None
    assert "nothing to bisect" in result.message and result.applications > 40


def test_per_rule_verification_stops_at_the_wrong_rewrite(vit, wrong_gelu):
    _, converted = vit
    with pytest.raises(RewriteVerificationError) as info:
        fxsurgeon.optimize(converted, patterns=[wrong_gelu], verify="per_rule")
    error = info.value
    assert error.rule == "gelu_sigmoid_1" and error.rule_file == wrong_gelu
    message = str(error)
    assert "gelu_sigmoid_1" in message and wrong_gelu in message
    assert "matched subgraph:" in message and "torch.tanh" in message
    assert "replaced by:" in message and "torch.sigmoid" in message
    assert any(not r.passed for r in error.results)


def test_per_rule_decline_undoes_the_wrong_rewrites_and_keeps_the_model_right(vit, wrong_gelu):
    keras, converted = vit
    model = fxsurgeon.optimize(converted, patterns=[wrong_gelu], verify="per_rule_decline")
    report = fxsurgeon.report_of(model)
    assert "gelu_sigmoid_1" not in report.matches
    assert report.matches["gelu_tanh_1"] == 2  # the built-in rule took the undone matches
    assert any("gelu_sigmoid_1 undone" in note for note in report.notes)
    assert verify(model, keras).passed


def test_per_rule_verification_of_the_built_in_rules_changes_nothing(vit):
    _, converted = vit
    plain = fxsurgeon.optimize(converted)
    checked = fxsurgeon.optimize(converted, verify="per_rule")
    assert fxsurgeon.report_of(checked).matches == fxsurgeon.report_of(plain).matches
    assert checked.code == plain.code


def test_an_unknown_verify_mode_is_an_input_error(vit):
    with pytest.raises(InputError, match="verify='always'"):
        fxsurgeon.optimize(vit[1], verify="always")


def test_bisect_blames_the_lowering_when_the_lowered_model_already_differs(monkeypatch):
    import onnx_cases as cases

    from fxsurgeon.lower import elementwise

    model = cases.make_model(
        [helper.make_node("Sigmoid", ["x"], ["y"])],
        [cases.tensor_info("x", cases.np.float32, ["N", 4])],
        [cases.tensor_info("y", cases.np.float32, ["N", 4])],
    )
    monkeypatch.setitem(elementwise._UNARY_BY_CLASS, "Sigmoid", torch.tanh)  # a broken lowering
    result = fxsurgeon.bisect(from_onnx(model), model)
    assert result.culprit == "lowering" and not result.found
    assert "fxsurgeon/lower/" in result.message


def test_the_per_rule_check_ends_with_the_outputs_against_the_lowered_graph():
    """Local checks can each pass while their rounding adds up: `finish` compares outputs."""
    import operator

    from fxsurgeon.errors import FxSurgeonError
    from fxsurgeon.shapes import ExampleInputs
    from fxsurgeon.verify import RewriteChecker

    gm = torch.fx.symbolic_trace(lambda x: torch.tanh(x) * 2.0)
    examples = ExampleInputs((torch.randn(2, 3),), (torch.randn(3, 3),))
    checker = RewriteChecker(gm, examples)
    checker.finish()  # nothing changed
    (mul,) = [n for n in gm.graph.nodes if n.target is operator.mul]
    mul.args = (mul.args[0], 2.001)
    with pytest.raises(FxSurgeonError, match="differ from the lowered graph's"):
        checker.finish()
