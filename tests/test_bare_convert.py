"""The design's one-liner on plain onnx2torch output: ``optimize(onnx2torch.convert(onnx))``.

Once fxsurgeon is imported, ``onnx2torch.convert`` records the ONNX model's
inputs and initializer names (fxsurgeon/frontdoor/onnx2torch_hook.py), so the bare
call is optimized exactly as ``from_onnx``'s output, whichever way ``convert``
was imported.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch
import zoo
from onnx import helper
from onnx_cases import make_model, run_ort, tensor_info
from test_models import ATOL, input_cases, torch_inputs

import fxsurgeon
from fxsurgeon._compat import import_onnx2torch
from fxsurgeon.pipeline import count_onnx2torch_modules, report_of

MODELS = ("bert_tiny", "vit_tiny", "gpt2_tiny", "keras_cnn", "keras_mlp")


def _bare(name: str) -> torch.fx.GraphModule:
    proto = onnx.ModelProto()
    proto.CopyFrom(zoo.export(name))
    return import_onnx2torch().convert(proto)


@pytest.mark.parametrize("name", MODELS)
def test_bare_call_scores_like_the_front_door(name):
    bare = _bare(name)
    module = fxsurgeon.optimize(bare)
    front = fxsurgeon.optimize(zoo.convert(name))
    assert count_onnx2torch_modules(bare) and count_onnx2torch_modules(module) == {}
    assert report_of(module).trainable_after == zoo.build(name).trainable_params
    assert report_of(module).matches == report_of(front).matches
    worst = 0.0
    for inputs in input_cases(name):  # batch 1, 2, 5; text: two sequence lengths
        expected = zoo.build(name).tf_outputs(inputs)
        with torch.no_grad():
            got = module(*torch_inputs(name, inputs))
        got = list(got) if isinstance(got, (tuple, list)) else [got]
        worst = max(
            worst, *(float(np.abs(g.numpy() - e).max()) for g, e in zip(got, expected, strict=True))
        )
    assert worst <= ATOL
    compiled = torch.compile(module, fullgraph=True, backend="eager", dynamic=True)
    inputs = zoo.build(name).make_inputs(3, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(
            compiled(*torch_inputs(name, inputs)), module(*torch_inputs(name, inputs))
        )


def test_bare_call_parameters_are_complete_before_any_forward():
    module = fxsurgeon.optimize(_bare("bert_tiny"))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    before = {k: p.detach().clone() for k, p in module.named_parameters()}
    assert sum(p.numel() for p in before.values()) == zoo.build("bert_tiny").trainable_params
    inputs = zoo.build("bert_tiny").make_inputs(2, seed=1)
    out = module(*torch_inputs("bert_tiny", inputs))
    outs = out if isinstance(out, (tuple, list)) else [out]
    sum(o.square().mean() for o in outs).backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in module.parameters())
    optimizer.step()
    changed = [k for k, p in module.named_parameters() if not torch.equal(before[k], p)]
    assert len(changed) > len(before) // 2


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"},
    )


def _mlp_file(tmp_path) -> str:
    path = tmp_path / "mlp.onnx"
    onnx.save(zoo.export("keras_mlp"), str(path))
    return str(path)


def test_convert_imported_before_fxsurgeon_still_records(tmp_path):
    """``from onnx2torch import convert`` first: the hook wraps what convert looks up."""
    done = _run(
        f"""
        from onnx2torch import convert
        import fxsurgeon
        module = fxsurgeon.optimize(convert({_mlp_file(tmp_path)!r}))
        print(fxsurgeon.report_of(module).trainable_after)
        """
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) == zoo.build("keras_mlp").trainable_params


def test_converted_before_fxsurgeon_was_imported_is_optimized_on_its_first_call(tmp_path):
    """No record of the ONNX inputs: a LazyOptimized reads their ranks and dtypes
    from the first call, says so in the report, and matches the eager result."""
    path = _mlp_file(tmp_path)
    width = onnx.load(path).graph.input[0].type.tensor_type.shape.dim[1].dim_value
    done = _run(
        f"""
        import torch
        from onnx2torch import convert
        gm = convert({path!r})
        import fxsurgeon
        lazy = fxsurgeon.optimize(gm)
        print("lazy:", isinstance(lazy, fxsurgeon.LazyOptimized))
        x = torch.randn(3, {width})
        eager = fxsurgeon.optimize(gm, example_inputs=(x,))
        print("same:", torch.equal(lazy(x), eager(x)))
        print("\\n".join(fxsurgeon.report_of(lazy).notes))
        """
    )
    assert done.returncode == 0, done.stderr
    assert "lazy: True" in done.stdout
    assert "same: True" in done.stdout
    assert "converted before fxsurgeon was imported" in done.stdout


def test_an_op_nobody_converts_names_its_node():
    model = make_model(
        [helper.make_node("Hardmax", ["x"], ["y"], name="hardmax_of_x")],
        [tensor_info("x", np.float32, ["N", 3, 3])],
        [tensor_info("y", np.float32, ["N", 3, 3])],
    )
    with pytest.raises(NotImplementedError, match=r"ONNX op Hardmax-\d+ \(node hardmax_of_x\)"):
        import_onnx2torch().convert(model)


def test_ops_onnx2torch_lacks_convert_through_fxsurgeons_converters():
    """A GRU (no onnx2torch converter) in a bare convert: fxsurgeon's converter,
    the weights as parameters, outputs equal to onnxruntime's."""
    from test_converters import recurrent_model

    model = recurrent_model("GRU", "forward", attrs={})
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    module = fxsurgeon.optimize(import_onnx2torch().convert(model))
    with torch.no_grad():
        got = module(torch.from_numpy(x))
    got = list(got) if isinstance(got, (tuple, list)) else [got]
    for g, e in zip(got, run_ort(model, [x]), strict=True):
        assert np.abs(g.numpy() - e).max() <= ATOL
    assert report_of(module).trainable_after > 0


def test_a_graph_with_two_if_nodes_keeps_its_record_and_opset():
    """Each If branch is converted by a nested convert: the record and the opset
    version of the outer graph hold for the second If and for the result."""
    from onnx_cases import init

    F32 = np.float32

    def branch(name, nodes, out):
        return helper.make_graph(nodes, name, [], [tensor_info(out, F32, None)])

    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),
        helper.make_node("Greater", ["m", "zero"], ["p"]),
    ]
    for k in (1, 2):
        axes = helper.make_node(
            "Constant", [], [f"ax{k}"], value=helper.make_tensor("a", 7, [1], [0])
        )
        then = branch(
            "then", [axes, helper.make_node("Unsqueeze", ["x", f"ax{k}"], [f"t{k}"])], f"t{k}"
        )
        other = [
            axes,
            helper.make_node("Sub", ["x", "w"], [f"d{k}"]),
            helper.make_node("Unsqueeze", [f"d{k}", f"ax{k}"], [f"e{k}"]),
        ]
        nodes.append(
            helper.make_node(
                "If", ["p"], [f"y{k}"], then_branch=then, else_branch=branch("else", other, f"e{k}")
            )
        )
    model = make_model(
        nodes,
        [tensor_info("x", F32, ["N", 4])],
        [tensor_info("y1", F32, [1, "N", 4]), tensor_info("y2", F32, [1, "N", 4])],
        [
            init("w", np.arange(4, dtype=F32)),
            init("zero", np.array(0.0, F32)),
        ],
    )
    module = fxsurgeon.optimize(import_onnx2torch().convert(model))
    front = fxsurgeon.optimize(fxsurgeon.from_onnx(model))
    assert report_of(module).unconverted == report_of(front).unconverted == {}
    assert report_of(module).trainable_after == report_of(front).trainable_after
    for sign in (1.0, -1.0):
        x = (np.abs(np.random.default_rng(0).standard_normal((3, 4))) * sign).astype(F32)
        with torch.no_grad():
            got = module(torch.from_numpy(x))
        for g, e in zip(got, run_ort(model, [x]), strict=True):
            assert np.abs(g.numpy() - e).max() <= ATOL


def test_node_names_onnx2torch_cannot_use_are_renamed_and_the_others_kept():
    """onnx2torch names each module after its node: a Python keyword (TF calls a top-level
    tf.while_loop ``while``), a quote or backslash, or an attribute every module has would
    break its fx code or its add_module. Those nodes are renamed in the copy it converts
    (keywords and attributes get a trailing ``_``, bad characters become ``_``), in an If
    branch too; a TF scope name stays as it is. Both doors, == onnxruntime."""
    from onnx_cases import init

    F32 = np.float32
    branch = helper.make_graph(
        [helper.make_node("Neg", ["y5"], ["t"], name="return")],
        "then",
        [],
        [tensor_info("t", F32, None)],
    )
    other = helper.make_graph(
        [helper.make_node("Abs", ["y5"], ["e"], name="model/abs")],
        "else",
        [],
        [tensor_info("e", F32, None)],
    )
    names = ["while", 'say"hi', "forward", "initializers", "back\\slash", "model/dense/MatMul"]
    nodes = [helper.make_node("Add", ["x", "x"], ["y0"], name=names[0])]
    nodes += [
        helper.make_node("Mul", [f"y{k}", "two"], [f"y{k + 1}"], name=name)
        for k, name in enumerate(names[1:])
    ]
    nodes += [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0, name="in"),
        helper.make_node("Greater", ["s", "zero"], ["p"], name="model/Greater"),
        helper.make_node("If", ["p"], ["z"], then_branch=branch, else_branch=other, name="if"),
    ]
    model = make_model(
        nodes,
        [tensor_info("x", F32, ["N"])],
        [tensor_info("z", F32, ["N"]), tensor_info("y5", F32, ["N"])],
        [init("two", np.array(2.0, F32)), init("zero", np.array(0.0, F32))],
    )
    converted = import_onnx2torch().convert(model)
    modules = dict(converted.named_children())
    for kept in ("model/dense/MatMul", "model/Greater"):
        assert kept in modules
    for renamed in ("while_", "say_hi", "forward_", "initializers_", "back_slash", "in_", "if_"):
        assert renamed in modules, sorted(modules)
    assert [n.name for n in model.graph.node][0] == "while"  # the user's model is untouched
    for module in (fxsurgeon.optimize(converted), fxsurgeon.optimize(fxsurgeon.from_onnx(model))):
        assert report_of(module).unconverted == {}
        for sign in (1.0, -1.0):
            x = (np.arange(1, 4) * sign).astype(F32)
            with torch.no_grad():
                got = module(torch.from_numpy(x))
            for g, e in zip(got, run_ort(model, [x]), strict=True):
                np.testing.assert_allclose(g.numpy(), e, atol=ATOL, rtol=0)
