"""The pattern engine (fxsurgeon/fuse/): matching, rewriting, phases, loading, debugging.

Graphs here are traced from small torch functions, brought to the canonical
form and annotated with shapes exactly as `optimize` does after lowering.
"""

from __future__ import annotations

import operator
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import fx

import fxsurgeon
from fxsurgeon import ConvergenceError, PatternError, Rule
from fxsurgeon.fuse import (
    PATTERNS_KEY,
    RULE_FILE_KEY,
    RULE_KEY,
    apply_rules,
    builtin_files,
    canonicalize,
    literal_equal,
    load_rules,
)
from fxsurgeon.shapes import ExampleInputs, propagate_shapes
from fxsurgeon.tensorflow import from_onnx

# --------------------------------------------------------------------------- helpers


def graph_of(fn, *shapes):
    """`fn` traced, canonical, with shape meta; dim 0 of every input is dynamic."""
    gm = fx.symbolic_trace(fn)
    first = tuple(torch.randn(s) for s in shapes)
    second = tuple(torch.randn((s[0] + 1, *s[1:])) for s in shapes)
    examples = ExampleInputs(first, second)
    propagate_shapes(gm, examples)
    canonicalize(gm.graph)
    gm.recompile()
    return gm, examples


def run(gm, rules, examples=None, **kwargs):
    report = apply_rules(gm, rules, examples=examples, **kwargs)
    gm.graph.lint()
    gm.recompile()
    return report


def targets(gm) -> list:
    return [n.target for n in gm.graph.nodes if n.op in ("call_function", "call_method")]


def silu_pattern(x):
    return x * torch.sigmoid(x)


def silu_replacement(x):
    return F.silu(x)


SILU = Rule("silu_1", silu_pattern, silu_replacement, note="test: swish")


def write(tmp_path, name: str, source: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x * torch.sigmoid(x),
        lambda x: torch.sigmoid(x) * x,
        lambda x: torch.mul(torch.sigmoid(x), x),
        lambda x: x.mul(x.sigmoid()),
    ],
    ids=["x*s", "s*x", "torch.mul", "method"],
)
def test_commutative_operands_match_in_either_order(fn):
    gm, ex = graph_of(fn, (2, 5))
    report = run(gm, [SILU], ex)
    assert report.matches == {"silu_1": 1}
    assert F.silu in targets(gm) and torch.sigmoid not in targets(gm)


def test_commutativity_backtracks_inside_nested_operands():
    """(x + 1) * sigmoid(x + 1): only the second order at the outer mul binds x consistently."""

    def pattern(x):
        return (x + 1.0) * torch.sigmoid(x)

    def replacement(x):
        return F.silu(x) + torch.sigmoid(x)

    gm, ex = graph_of(lambda a: torch.sigmoid(a) * (1.0 + a), (3, 4))
    expected = gm(ex.first[0])
    report = run(gm, [Rule("expand_1", pattern, replacement)], ex)
    assert report.matches == {"expand_1": 1}
    torch.testing.assert_close(gm(ex.first[0]), expected)


def test_pattern_constants_match_within_tolerance_never_exactly():
    def pattern(x):
        return x * 0.044715

    def replacement(x):
        return x * 0.5

    close, _ = graph_of(lambda x: x * 0.044714998453855515, (2, 3))
    far, _ = graph_of(lambda x: x * 0.05, (2, 3))
    rule = Rule("const_1", pattern, replacement)
    assert run(close, [rule]).matches == {"const_1": 1}
    assert run(far, [rule]).matches == {}
    assert literal_equal(3, 3.0) and literal_equal(1e-9, 9.999999717180685e-10)
    assert not literal_equal(True, 1) and not literal_equal(3, 4)


def test_wildcards_bind_literals_for_the_replacement():
    def pattern(x, slope: float):
        return torch.relu(x) - slope * torch.relu(-x)

    def replacement(x, slope: float):
        return F.leaky_relu(x, slope)

    gm, ex = graph_of(lambda x: torch.relu(x) - 0.2 * torch.relu(-x), (4, 3))
    expected = gm(ex.first[0])
    report = run(gm, [Rule("leaky_relu_1", pattern, replacement)], ex)
    assert report.matches == {"leaky_relu_1": 1}
    (node,) = [n for n in gm.graph.nodes if n.target is F.leaky_relu]
    assert node.args[1] == 0.2
    torch.testing.assert_close(gm(ex.first[0]), expected)


def test_a_wildcard_used_twice_must_bind_the_same_node():
    gm, ex = graph_of(lambda x, y: y * torch.sigmoid(x), (2, 3), (2, 3))
    assert run(gm, [SILU], ex).matches == {}


def test_an_intermediate_used_outside_the_match_blocks_it():
    def fn(x):
        s = torch.sigmoid(x)
        return x * s + s

    gm, ex = graph_of(fn, (2, 3))
    assert run(gm, [SILU], ex).matches == {}


def test_the_match_output_may_have_several_users():
    gm, ex = graph_of(lambda x: (x * torch.sigmoid(x)) * (x * torch.sigmoid(x)).sum(), (2, 3))
    assert run(gm, [SILU], ex).matches == {"silu_1": 2}


def test_patterns_are_canonicalised_like_the_model():
    """A pattern written with methods, torch.* and keywords matches the canonical graph."""

    def pattern(x, shape: tuple):
        return x.reshape(shape).mean(dim=2, keepdim=True).mul(0.5)

    def replacement(x, shape: tuple):
        return torch.reshape(x, shape).mean(-1, keepdim=True) / 2.0

    gm, ex = graph_of(
        lambda x: torch.mean(torch.reshape(x, (-1, 2, 3)), (-1,), keepdim=True) * 0.5, (4, 6)
    )
    report = run(gm, [Rule("canon_1", pattern, replacement)], ex)
    assert report.matches == {"canon_1": 1}
    assert operator.truediv in targets(gm)


def test_annotated_wildcards_take_only_tensors_or_only_constants():
    def pattern(x: torch.Tensor, y: float):
        return x + y

    def replacement(x, y):
        return torch.sub(x, -y)

    rule = Rule("typed_1", pattern, replacement)
    constant, _ = graph_of(lambda a: a + 2.0, (2, 2))
    tensor, _ = graph_of(lambda a, b: a + b, (2, 2), (2, 2))
    assert run(constant, [rule]).matches == {"typed_1": 1}
    assert run(tensor, [rule]).matches == {}


# --------------------------------------------------------------------------- rewriting


def test_new_nodes_carry_the_rule_name_and_file():
    gm, ex = graph_of(lambda x: x * torch.sigmoid(x), (2, 3))
    rule = Rule("silu_1", silu_pattern, silu_replacement, file="my_rules.py")
    run(gm, [rule], ex)
    (node,) = [n for n in gm.graph.nodes if n.target is F.silu]
    assert node.meta[RULE_KEY] == "silu_1" and node.meta[RULE_FILE_KEY] == "my_rules.py"
    assert node.meta["fxs_shape"] == (None, 3)


def test_static_dims_reach_the_replacement_as_ints():
    def pattern(x):
        return torch.tanh(x)

    def replacement(x):
        return torch.reshape(torch.sigmoid(x), (x.shape[0], x.shape[-1] * x.shape[-2]))

    gm, ex = graph_of(lambda x: torch.tanh(x) + 1.0, (2, 3, 4))
    run(gm, [Rule("flatten_tanh_1", pattern, replacement)], ex)
    (reshape,) = [n for n in gm.graph.nodes if n.target is torch.reshape]
    size, twelve = reshape.args[1]
    assert twelve == 12
    assert size.op == "call_method" and size.target == "size" and size.args[1] == 0
    assert "getattr" not in gm.code
    assert gm(torch.randn(5, 3, 4)).shape == (5, 12)


def test_check_declines_with_a_reason_and_can_add_values():
    def pattern(x):
        return torch.exp(x)

    def replacement(x, factor):
        return torch.pow(factor, x)

    seen = []

    def check(match):
        seen.append(match.shape("x"))
        if match.shape("x")[-1] != 3:
            return "only width 3"
        match["factor"] = torch.e
        return None

    rule = Rule("exp_1", pattern, replacement, check=check)
    gm, ex = graph_of(lambda x: torch.exp(x), (2, 3))
    assert run(gm, [rule], ex).matches == {"exp_1": 1}
    other, ex = graph_of(lambda x: torch.exp(x), (2, 4))
    assert run(other, [rule], ex).matches == {}
    assert seen[-1] == (None, 4)


def test_a_replacement_needing_values_the_pattern_lacks_needs_a_check():
    with pytest.raises(PatternError, match="factor"):
        Rule("bad_1", lambda x: torch.exp(x), lambda x, factor: x * factor)


def test_a_phase_that_does_not_converge_names_the_rules_that_fired_last():
    sin_to_cos = Rule("sin_to_cos", lambda x: torch.sin(x), lambda x: torch.cos(x))
    cos_to_sin = Rule("cos_to_sin", lambda x: torch.cos(x), lambda x: torch.sin(x))
    gm, ex = graph_of(lambda x: torch.sin(x), (2, 2))
    with pytest.raises(ConvergenceError, match=r"'fuse'.*5 sweeps.*sin_to_cos x1.*cos_to_sin x1"):
        run(gm, [sin_to_cos, cos_to_sin], ex, max_sweeps=5)


def test_phases_run_in_order_and_shapes_are_recorded_between_them():
    first = Rule(
        "exp_to_tanh", lambda x: torch.exp(x), lambda x: torch.tanh(x * 2.0), phase="prepare"
    )

    def check(match):
        return None if match.shape("y") == (None, 3) else f"no shape for y: {match.shape('y')}"

    second = Rule(
        "tanh_to_sigmoid",
        lambda y: torch.tanh(y),
        lambda y: torch.sigmoid(y),
        check=check,
        phase="tidy",
    )
    gm, ex = graph_of(lambda x: torch.exp(x), (2, 3))
    report = run(gm, [second, first], ex)
    assert report.matches == {"exp_to_tanh": 1, "tanh_to_sigmoid": 1}
    assert report.sweeps == {"prepare": 2, "tidy": 2}


# --------------------------------------------------------------------------- debugging


def gelu_like(x):
    return 0.5 * x * (1.0 + torch.tanh(0.7978845608 * (x + 0.05 * x**3)))


def test_debug_report_shows_the_best_partial_match(capsys):
    gm, ex = graph_of(gelu_like, (2, 8))
    rules = load_rules(disable=["attention", "cleanup", "linear", "layer_norm"])
    report = run(gm, rules, ex, debug=True)
    assert "gelu_tanh_1" not in report.matches
    text = "\n".join(report.debug)
    assert "[gelu_tanh_1] no match; best partial match: reached 7/8 pattern nodes" in text
    assert "constant 0.05 != 0.044715" in text
    assert "stopped at pattern node" in text and "gelu.py" in text
    err = capsys.readouterr().err
    assert "gelu_tanh_1" in err and "attempts" in err  # the per-rule table


def test_debug_report_is_on_with_the_environment_variable(monkeypatch, capsys):
    monkeypatch.setenv("FXSURGEON_DEBUG_PATTERNS", "1")
    gm, ex = graph_of(lambda x: x * torch.tanh(x), (2, 3))
    run(gm, [SILU], ex)
    err = capsys.readouterr().err
    assert "[silu_1] no match" in err and "torch.tanh is not torch.sigmoid" in err


def test_report_table_counts_hits_and_attempts():
    gm, ex = graph_of(lambda x: x * torch.sigmoid(x) * torch.sigmoid(x * 2.0), (2, 3))
    report = run(gm, [SILU], ex)
    (row,) = [line for line in report.table().splitlines() if line.startswith("silu_1")]
    hits, attempts = row.split()[2:4]
    assert (hits, attempts) == ("1", "5")  # 3 muls in sweep 1, the 2 left in sweep 2


# --------------------------------------------------------------------------- loading


def test_builtin_pattern_files_are_found_through_the_package():
    names = [p.name for p in builtin_files()]
    assert names[:5] == ["cleanup.py", "linear.py", "layer_norm.py", "gelu.py", "attention.py"]
    rules = load_rules()
    assert len({r.name for r in rules}) == len(rules)
    assert all(r.note and r.file.endswith(".py") for r in rules)


SWISH_FILE = """\
import torch
import torch.nn.functional as F

from fxsurgeon import Rule


def swish_pattern(x):
    return x * torch.sigmoid(x)


def swish_replacement(x):
    return F.silu(x)


swish = Rule("swish_1", swish_pattern, swish_replacement, note="tf2onnx, Keras swish")
"""


def swish_onnx():
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "swish",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_user_pattern_file_fuses_what_it_says(tmp_path):
    path = write(tmp_path, "my_rules.py", SWISH_FILE)
    gm = fxsurgeon.optimize(from_onnx(swish_onnx()), patterns=[str(path)])
    assert fxsurgeon.report_of(gm).matches == {"swish_1": 1}
    (node,) = [n for n in gm.graph.nodes if n.target is F.silu]
    assert node.meta[RULE_FILE_KEY] == str(path)
    x = torch.randn(5, 6)
    torch.testing.assert_close(gm(x), x * torch.sigmoid(x))
    table = gm.meta[PATTERNS_KEY].table()
    assert "swish_1" in table and "my_rules.py" in table


def test_a_directory_of_pattern_files_loads_every_file(tmp_path):
    write(tmp_path, "a.py", SWISH_FILE)
    write(tmp_path, "b.py", SWISH_FILE.replace("swish_1", "swish_2"))
    write(tmp_path, "_private.py", "raise RuntimeError('not loaded')")
    names = [r.name for r in load_rules([tmp_path], builtins=False)]
    assert names == ["swish_1", "swish_2"]


def test_a_user_rule_overrides_a_builtin_by_name(tmp_path):
    path = write(
        tmp_path,
        "override.py",
        """\
        import torch
        import torch.nn.functional as F
        from fxsurgeon import Rule

        def pattern(x):
            return 0.5 * x * (1.0 + torch.tanh(0.7978845608 * (x + 0.044715 * x**3)))

        def replacement(x):
            return F.gelu(x)  # exact instead of tanh, to see who won

        gelu_tanh_1 = Rule("gelu_tanh_1", pattern, replacement, override=True, note="test")
        """,
    )
    rules = load_rules([path])
    (rule,) = [r for r in rules if r.name == "gelu_tanh_1"]
    assert rule.file == str(path)
    gm, ex = graph_of(
        lambda x: 0.5 * x * (1.0 + torch.tanh(0.7978845608 * (x + 0.044715 * x**3))), (2, 4)
    )
    run(gm, rules, ex)
    (node,) = [n for n in gm.graph.nodes if n.target is F.gelu]
    assert node.kwargs.get("approximate", "none") == "none"


def test_same_name_twice_is_an_error_naming_both_files(tmp_path):
    a = write(tmp_path, "a.py", SWISH_FILE)
    b = write(tmp_path, "b.py", SWISH_FILE)
    with pytest.raises(PatternError, match="swish_1") as info:
        load_rules([a, b])
    assert str(a) in str(info.value) and str(b) in str(info.value)


def test_a_builtin_name_without_override_is_an_error_naming_both_files(tmp_path):
    path = write(tmp_path, "clash.py", SWISH_FILE.replace('"swish_1"', '"gelu_tanh_1"'))
    with pytest.raises(PatternError, match="override=True") as info:
        load_rules([path])
    assert str(path) in str(info.value) and "gelu.py" in str(info.value)


def test_disable_turns_builtins_off_by_name_family_or_file():
    names = {r.name for r in load_rules()}
    assert "gelu_tanh_1" not in {r.name for r in load_rules(disable=["gelu_tanh_1"])}
    assert not {"gelu_erf_1", "gelu_erf_2", "gelu_erf_3"} & {
        r.name for r in load_rules(disable=["gelu_erf"])
    }
    assert not any(
        n.startswith("sdpa") for n in {r.name for r in load_rules(disable=["attention"])}
    )
    assert "gelu_tanh_1" in names
    with pytest.raises(PatternError, match="gelu_tanhh"):
        load_rules(disable=["gelu_tanhh"])


@pytest.mark.parametrize(
    ("source", "line", "what"),
    [
        ("import torch\n\ndef pattern(x)\n    return x\n", 3, "syntax error"),
        ("import torch\nx = 1\nraise RuntimeError('boom')\n", 3, "RuntimeError: boom"),
        (
            "import torch\nfrom fxsurgeon import Rule\n\n\ndef pattern(x):\n"
            "    if x.sum() > 0:\n        return x\n    return -x\n\n\n"
            "r = Rule('branchy_1', pattern, lambda x: x)\n",
            5,
            "cannot be traced",
        ),
    ],
    ids=["syntax", "import-time exception", "untraceable pattern"],
)
def test_a_broken_pattern_file_is_reported_with_file_and_line(tmp_path, source, line, what):
    path = write(tmp_path, "broken.py", source)
    with pytest.raises(PatternError, match=what) as info:
        load_rules([path])
    assert f"broken.py:{line}" in str(info.value)


def test_a_missing_pattern_path_is_an_error():
    with pytest.raises(PatternError, match="not found"):
        load_rules(["/nonexistent/rules.py"])


def test_an_unknown_phase_is_an_error():
    with pytest.raises(PatternError, match="unknown phase 'late'"):
        Rule("x_1", lambda x: torch.exp(x), lambda x: x, phase="late")


def test_a_failing_replacement_names_the_rule_and_the_node():
    def replacement(x):
        raise ValueError("nope")

    gm, ex = graph_of(lambda x: torch.exp(x), (2, 3))
    with pytest.raises(PatternError, match=r"replacement of rule 'exp_1' failed on %exp.*nope"):
        run(gm, [Rule("exp_1", lambda x: torch.exp(x), replacement)], ex)


def test_optimize_numerics_unchanged_with_user_rules(tmp_path):
    path = write(tmp_path, "my_rules.py", SWISH_FILE)
    gm = fxsurgeon.optimize(from_onnx(swish_onnx()), patterns=[path], disable=["cleanup"])
    x = np.random.default_rng(0).standard_normal((100, 6)).astype(np.float32)
    expected = x / (1 + np.exp(-x))
    np.testing.assert_allclose(gm(torch.from_numpy(x)).numpy(), expected, atol=1e-6)
    assert numpy_helper is not None
