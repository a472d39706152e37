"""model.py for graphs with control flow: torch.cond (a run-time ONNX If) and run_loop (Loop).

Each graph goes through optimize (or is built by hand), `fxsurgeon.save`, ruff, and is loaded
back in this process and in one where fxsurgeon, TensorFlow, onnx2torch and onnx cannot be
imported; outputs are compared bitwise with the GraphModule's (fp32, eager), on inputs that
take each branch and loops of several lengths.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_codegen_total import assert_bitwise, round_trip
from test_converters import if_model
from test_converters_more import tf_style_loop_model
from torch import fx, nn

import fxsurgeon
from fxsurgeon.codegen import CodegenError, generate
from fxsurgeon.codegen.subgraphs import function_source
from fxsurgeon.lower.control_flow import is_cond, run_cond
from fxsurgeon.lower.loop import run_loop
from fxsurgeon.tensorflow import from_onnx

rng = np.random.default_rng(5)
BLOCKED = ("tensorflow", "onnx2torch", "fxsurgeon", "tf_keras", "keras", "onnx")
CLEAN = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, directory)
import torch
import model
m = model.load()
flat = torch.load(directory + "/inputs.pt")
outs = []
with torch.no_grad():
    for k in range(0, len(flat), arity):
        out = m(*flat[k : k + arity])
        outs.append(list(out) if isinstance(out, (list, tuple)) else out)
torch.save(outs, directory + "/outputs.pt")
"""


def load_in_clean_process(directory: Path, flat: tuple, arity: int) -> list:
    """model.py's outputs for each group of `arity` inputs, in a process where fxsurgeon,
    TensorFlow, onnx2torch and onnx cannot be imported (as corpus/score.py loads it)."""
    torch.save(flat, directory / "inputs.pt")
    script = f"BLOCKED = {BLOCKED!r}; directory = {str(directory)!r}; arity = {arity}" + CLEAN
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd="/", timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(directory / "outputs.pt")


def rnd(*shape) -> torch.Tensor:
    return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))


def check_everywhere(gm: fx.GraphModule, cases: list[tuple], tmp_path) -> str:
    """Save with the first case, then every case bitwise here, in a clean process and compiled
    (fullgraph); returns model.py."""
    loaded = round_trip(gm, cases[0], tmp_path)
    compiled = torch.compile(loaded, fullgraph=True, backend="eager")
    flat = tuple(t for inputs in cases for t in inputs)  # one clean process for every case
    clean = iter(load_in_clean_process(tmp_path, flat, arity=len(cases[0])))
    with torch.no_grad():
        for inputs in cases:
            expected = gm(*inputs)
            assert_bitwise(expected, loaded(*inputs))
            assert_bitwise(expected, next(clean))
            assert_bitwise(expected, compiled(*inputs))
    torch._dynamo.reset()
    return (tmp_path / "model.py").read_text()


# --------------------------------------------------------------------------- torch.cond


def test_a_run_time_if_is_torch_cond_over_two_branch_classes(tmp_path):
    optimized = fxsurgeon.optimize(from_onnx(if_model(pred_from_data=True)))
    assert any(is_cond(n) for n in optimized.graph.nodes)
    positive, negative = rnd(3, 4).abs(), -rnd(2, 4).abs()
    source = check_everywhere(optimized, [(positive,), (negative,)], tmp_path)
    # subgraphs are numbered per model (not by what ran before in the process)
    (k,) = set(re.findall(r"class IfThen(\d+)\(nn.Module\):", source))
    assert k == "1"
    assert f"class IfElse{k}(nn.Module):" in source
    assert f"self.if_then_{k} = IfThen{k}()" in source
    assert "run_cond(" in source and "def run_cond(pred, true_fn, false_fn, operands):" in source
    assert "fxsurgeon" not in source.replace("written by fxsurgeon", "")
    with torch.no_grad():  # the two cases took different branches
        assert not torch.equal(optimized(positive), positive - optimized.If.weight)
        assert torch.equal(optimized(negative), negative - optimized.If.weight)


def test_run_cond_is_the_picked_branch_when_eager():
    x, w = rnd(2, 3), rnd(3)
    assert torch.equal(run_cond(torch.tensor(True), torch.add, torch.sub, (x, w)), x + w)
    assert torch.equal(run_cond(torch.tensor(False), torch.add, torch.sub, (x, w)), x - w)


class Branch(nn.Module):
    """x * w + scale, with a buffer and a parameter of its own under names that are no
    identifiers (model.py renames them inside the subgraph too)."""

    def __init__(self, sign: float):
        super().__init__()
        self.register_buffer("scale/0", torch.tensor([sign, 2.0 * sign, 3.0]))
        self.register_parameter("bias:0", nn.Parameter(rnd(3)))

    def forward(self, x, w):
        return x * w + getattr(self, "scale/0") + getattr(self, "bias:0")


def cond_blocks() -> fx.GraphModule:
    """Two layers ``x = cond(sum(proj(x)) > 0, then_i, else_i, (proj(x), w_i))``, the branches
    subgraph GraphModules at the root, read by get_attr."""
    root = nn.Module()
    root.layers = nn.Module()
    graph = fx.Graph()
    x = graph.placeholder("x")
    for i in range(2):
        layer = nn.Module()
        layer.proj = nn.Linear(3, 3)
        layer.register_parameter("w", nn.Parameter(rnd(3)))
        setattr(root.layers, f"layer_{i}", layer)
        for kind, sign in (("then", 1.0), ("else", -1.0)):
            root.add_module(f"if/{kind}_{i}", fx.symbolic_trace(Branch(sign)))
        h = graph.call_module(f"layers.layer_{i}.proj", (x,))
        pred = graph.call_function(torch.greater, (graph.call_method("sum", (h,)), 0.0))
        then, other = graph.get_attr(f"if/then_{i}"), graph.get_attr(f"if/else_{i}")
        w = graph.get_attr(f"layers.layer_{i}.w")
        x = graph.call_function(torch.cond, (pred, then, other, (h, w)))
    graph.output(x)
    return fx.GraphModule(root, graph)


def test_subgraphs_with_members_of_any_name_and_conds_inside_repeated_blocks(tmp_path):
    gm = cond_blocks()
    with torch.no_grad():  # three inputs for each branch of the first cond (the init is random)
        pool = [rnd(2, 3) for _ in range(60)]
        taken = {
            s: [x for x in pool if bool(gm.layers.layer_0.proj(x).sum() > 0) == s]
            for s in (True, False)
        }
    assert min(len(v) for v in taken.values()) >= 3
    cases = [(x,) for pair in zip(taken[True][:3], taken[False][:3], strict=True) for x in pair]
    source = check_everywhere(gm, cases, tmp_path)
    saved = fxsurgeon.save(gm, tmp_path, example_inputs=cases[0])
    assert [c.instances for c in saved.classes] == [["layers.layer_0", "layers.layer_1"]]
    assert "self.if_then_0 = IfThen0()" in source
    assert 'self.register_buffer("scale_0", torch.zeros(3))' in source
    assert gm.meta == {} and hasattr(gm.get_submodule("if/then_0"), "scale/0")  # not mutated


def test_a_get_attr_of_a_module_that_is_no_subgraph_is_refused_naming_it():
    root = nn.Module()
    root.lin = nn.Linear(2, 2)
    graph = fx.Graph()
    x = graph.placeholder("x")
    graph.output(graph.call_function(torch.cond, (x, graph.get_attr("lin"), x, (x,))))
    with pytest.raises(CodegenError, match=r"get_attr\[target=lin\] reads a Linear"):
        generate(fx.GraphModule(root, graph))


# --------------------------------------------------------------------------- Loop


def test_a_loop_is_run_loop_over_a_body_class_for_every_length(tmp_path):
    optimized = fxsurgeon.optimize(from_onnx(tf_style_loop_model()))
    assert run_loop in {n.target for n in optimized.graph.nodes}
    cases = [(rnd(5, 2, 3),), (rnd(3, 3, 3),), (rnd(1, 2, 3),)]
    source = check_everywhere(optimized, cases, tmp_path)
    assert "class LoopBody1(nn.Module):" in source and "self.loop_body_1 = LoopBody1()" in source
    assert "def run_loop(body, steps, carried, scans, *values):" in source
    assert "run_loop(\n" in source or "run_loop(self.loop_body_1" in source
    assert "fxsurgeon" not in source.replace("written by fxsurgeon", "")


# --------------------------------------------------------------------------- helper copies


def test_helpers_are_copied_without_annotations_and_refused_when_they_need_imports():
    text = function_source(run_loop, {"torch", "math", "operator"})
    assert text.startswith("def run_loop(body, steps, carried, scans, *values):")
    assert "fx." not in text and ": list" not in text
    namespace: dict = {"torch": torch}
    exec(compile(text, "<copy>", "exec"), namespace)  # noqa: S102 - the copied helper itself
    body = fx.symbolic_trace(_Accumulate())
    state = torch.zeros(2)
    got = namespace["run_loop"](body, 3, 1, 1, state, torch.ones(2))
    want = run_loop(body, 3, 1, 1, state, torch.ones(2))
    assert_bitwise(list(want), list(got))
    with pytest.raises(CodegenError, match=r"cannot copy _uses_numpy .*\['np'\]"):
        function_source(_uses_numpy, {"torch"})


class _Accumulate(nn.Module):
    def forward(self, step, cond, total, one):
        total = total + one * step
        return cond, total, total * 2


def _uses_numpy(x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x))


def nested_conds() -> fx.GraphModule:
    """cond(x.sum() > 0, outer_then, outer_else, (x,)); outer_then is itself
    cond(x.mean() > 0.5, inner_then, inner_else, (x,)) over subgraphs of its own."""

    def branch(make, **children: nn.Module) -> fx.GraphModule:
        owner = nn.Module()
        for name, child in children.items():
            owner.add_module(name, child)
        graph = fx.Graph()
        x = graph.placeholder("x")
        graph.output(make(graph, x))
        return fx.GraphModule(owner, graph)

    def cond(graph, x, then_name, else_name, reduce, bound):
        pred = graph.call_function(torch.greater, (graph.call_method(reduce, (x,)), bound))
        then, other = graph.get_attr(then_name), graph.get_attr(else_name)
        return graph.call_function(torch.cond, (pred, then, other, (x,)))

    outer_then = branch(
        lambda g, x: cond(g, x, "inner_then", "inner_else", "mean", 0.5),
        inner_then=branch(lambda g, x: g.call_function(torch.exp, (x,))),
        inner_else=branch(lambda g, x: g.call_function(torch.sin, (x,))),
    )
    root = nn.Module()
    root.add_module("outer_then", outer_then)
    root.add_module("outer_else", branch(lambda g, x: g.call_function(torch.neg, (x,))))
    graph = fx.Graph()
    x = graph.placeholder("x")
    graph.output(cond(graph, x, "outer_then", "outer_else", "sum", 0.0))
    return fx.GraphModule(root, graph)


def test_a_cond_inside_a_branch_is_a_class_inside_the_branch_class(tmp_path):
    gm = nested_conds()
    cases = [(torch.full((2, 2), 1.0),), (torch.full((2, 2), 0.25),), (torch.full((2, 2), -1.0),)]
    with torch.no_grad():  # exp, sin and neg: each case takes another way
        assert_bitwise([torch.exp(cases[0][0])], [gm(*cases[0])])
        assert_bitwise([torch.sin(cases[1][0])], [gm(*cases[1])])
        assert_bitwise([torch.neg(cases[2][0])], [gm(*cases[2])])
    source = check_everywhere(gm, cases, tmp_path)
    assert "self.inner_then = InnerThen()" in source and "self.outer_then = OuterThen()" in source
    assert source.index("class InnerThen(") < source.index("class OuterThen(")


class _Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(rnd(3))

    def forward(self, x):
        return torch.relu(x) * self.scale


def test_a_graph_module_called_as_a_module_is_a_class_of_its_own(tmp_path):
    root = nn.Module()
    root.inner = fx.symbolic_trace(_Scaled())
    graph = fx.Graph()
    x = graph.placeholder("x")
    graph.output(graph.call_module("inner", (graph.call_function(torch.neg, (x,)),)))
    gm = fx.GraphModule(root, graph)
    source = check_everywhere(gm, [(rnd(2, 3),), (rnd(4, 3),)], tmp_path)
    assert "self.inner = Inner()" in source and "self.inner(neg)" in source


def test_an_if_on_a_size_predicate_round_trips_with_compare_sizes(tmp_path):
    """A decoder-style If on "length > 1" (a SymBool built by compare_sizes): model.py
    carries compare_sizes, and both branches (length 1 and longer) round-trip bitwise."""
    from test_if_sizes import causal_if_model

    optimized = fxsurgeon.optimize(from_onnx(causal_if_model("size")))
    cases = [(rnd(2, 1),), (rnd(3, 4),), (rnd(1, 6),)]
    source = check_everywhere(optimized, cases, tmp_path)
    assert "def compare_sizes(name, a, b):" in source
    assert "compare_sizes('gt'" in source or 'compare_sizes("gt"' in source


@pytest.mark.parametrize("kind", ["sizes", "data"])
def test_while_loops_are_run_while_over_a_body_class(kind, tmp_path):
    """A gcd of sizes (run_while) and a tensor halved until the data stops it
    (run_while_tensors): model.py carries the helper, runs everywhere bitwise, compiles."""
    from test_while_loop_spec import gcd_model, halving_model

    if kind == "sizes":
        optimized = fxsurgeon.optimize(from_onnx(gcd_model()))
        cases = [(rnd(2, 8),), (rnd(3, 9),)]
        helper = "def run_while(body, trip, go, carried, scans, *values):"
    else:
        optimized = fxsurgeon.optimize(from_onnx(halving_model(trip=True)))
        cases = [(rnd(6) * 4,), (rnd(4) * 0.1,)]
        helper = "def run_while_tensors(body, trip, go, carried, *values):"
    source = check_everywhere(optimized, cases, tmp_path)
    assert helper in source and "class LoopBody1(nn.Module):" in source
