"""fxsurgeon's converters (fxsurgeon/frontdoor/converters/) and their lowerings against
onnxruntime: LSTM/GRU/RNN in every direction, If (known and run-time predicates), CumSum
(exclusive, reverse), Conv with SAME auto_pad; refusals name the node and op; Keras RNNs
exported by tf2onnx against TensorFlow."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from onnx_cases import assert_lowered, assert_matches_ort, init, make_model, run_ort, tensor_info

import fxsurgeon
from fxsurgeon.errors import InputError
from fxsurgeon.lower.control_flow import is_cond
from fxsurgeon.pipeline import report_of
from fxsurgeon.tensorflow import from_onnx

F32, I64 = np.float32, np.int64
rng = np.random.default_rng(7)
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def rnd(*shape):
    return rng.standard_normal(shape).astype(F32)


# -- LSTM / GRU / RNN ---------------------------------------------------------------------


def recurrent_model(op, direction, hidden=5, features=3, attrs=None, h0=False, c0=False):
    dirs = 2 if direction == "bidirectional" else 1
    gates = GATES[op]
    inits = [
        init("W", rnd(dirs, gates * hidden, features)),
        init("R", rnd(dirs, gates * hidden, hidden)),
        init("B", rnd(dirs, 2 * gates * hidden)),
    ]
    names = ["x", "W", "R", "B"]
    graph_inputs = [tensor_info("x", F32, ["T", "N", features])]
    if h0 or c0:
        names += ["", "h0" if h0 else ""]
    if h0:
        graph_inputs.append(tensor_info("h0", F32, [dirs, "N", hidden]))
    if c0:
        names.append("c0")
        graph_inputs.append(tensor_info("c0", F32, [dirs, "N", hidden]))
    outs = ["y", "yh"] + (["yc"] if op == "LSTM" else [])
    node = helper.make_node(
        op, names, outs, hidden_size=hidden, direction=direction, **(attrs or {})
    )
    return make_model(
        node and [node], graph_inputs, [tensor_info(o, F32, None) for o in outs], inits
    )


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_recurrent_ops_match_onnxruntime(op, direction):
    attrs = {"linear_before_reset": 1} if op == "GRU" else {}
    dirs = 2 if direction == "bidirectional" else 1
    model = recurrent_model(op, direction, attrs=attrs, h0=True, c0=op == "LSTM")
    for steps, batch in ((4, 2), (7, 3)):
        inputs = [rnd(steps, batch, 3), rnd(dirs, batch, 5)]
        if op == "LSTM":
            inputs.append(rnd(dirs, batch, 5))
        optimized = assert_matches_ort(model, inputs)
    assert_lowered(optimized)
    calls = {n.target for n in optimized.graph.nodes if n.op == "call_function"}
    assert {"LSTM": torch.lstm, "GRU": torch.gru, "RNN": torch.rnn_tanh}[op] in calls


def test_recurrent_weights_become_parameters():
    optimized = assert_matches_ort(recurrent_model("LSTM", "bidirectional"), [rnd(4, 2, 3)])
    # per direction: w_ih [20, 3], w_hh [20, 5], b_ih [20], b_hh [20]
    trainable = sum(p.numel() for p in optimized.parameters() if p.requires_grad)
    assert trainable == 2 * (20 * 3 + 20 * 5 + 20 + 20)


def test_rnn_relu_without_initial_state():
    model = recurrent_model("RNN", "forward", attrs={"activations": ["Relu"]})
    optimized = assert_matches_ort(model, [rnd(5, 2, 3)])
    assert torch.rnn_relu in {n.target for n in optimized.graph.nodes}


@pytest.mark.parametrize(
    "attrs,why",
    [
        ({"linear_before_reset": 0}, "linear_before_reset=0"),
        ({"clip": 0.5}, "clip"),
    ],
)
def test_recurrent_forms_torch_lacks_keep_the_spec_module(attrs, why):
    """Not expressible by torch.gru: the module (ONNX semantics) stays, and says why."""
    model = recurrent_model("GRU", "forward", attrs=attrs)
    optimized = assert_matches_ort(model, [rnd(4, 2, 3)])
    reasons = report_of(optimized).unconverted["OnnxRecurrent"]
    assert why in reasons[0]


def test_sequence_lens_follow_the_spec():
    model = recurrent_model("LSTM", "bidirectional")
    node = model.graph.node[0]
    node.input[4:] = ["lens"]
    model.graph.input.append(
        tensor_info("lens", np.int32, [2])
        if False
        else helper.make_tensor_value_info("lens", onnx.TensorProto.INT32, [2])
    )
    gm = from_onnx(model)
    x, lens = rnd(5, 2, 3), np.array([5, 3], np.int32)
    expected = run_ort(model, [x, lens])
    got = gm(torch.from_numpy(x), torch.from_numpy(lens))
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g.detach().numpy(), e, atol=1e-5, rtol=0)


# -- If ------------------------------------------------------------------------------------


def if_model(pred_from_data: bool, scales: bool = False):
    """y = x * 2 if mean(x) > 0 (or a constant predicate) else x - w; branches read outer values.

    ``scales``: the then branch is x * float(k) for an int64 k = [1, 2, 3, 4] (a constant
    the lowered branch holds itself)."""
    then_nodes = [helper.make_node("Mul", ["x", "two"], ["t"])]
    if scales:
        then_nodes = [
            helper.make_node("Cast", ["k"], ["kf"], to=onnx.TensorProto.FLOAT),
            helper.make_node("Mul", ["x", "kf"], ["t"]),
        ]
    then_graph = helper.make_graph(then_nodes, "then", [], [tensor_info("t", F32, None)])
    else_graph = helper.make_graph(
        [helper.make_node("Sub", ["x", "w"], ["e"])], "else", [], [tensor_info("e", F32, None)]
    )
    nodes = []
    if pred_from_data:
        nodes += [
            helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),
            helper.make_node("Greater", ["m", "zero"], ["p"]),
        ]
    else:  # a shape test: is dim 1 equal to 4 (static here)
        nodes += [
            helper.make_node("Shape", ["x"], ["s"]),
            helper.make_node("Gather", ["s", "one"], ["d"], axis=0),
            helper.make_node("Equal", ["d", "four"], ["p"]),
        ]
    nodes.append(
        helper.make_node("If", ["p"], ["y"], then_branch=then_graph, else_branch=else_graph)
    )
    inits = [
        init("two", np.array(2.0, F32)),
        init("w", rnd(4)),
        init("zero", np.array(0.0, F32)),
        init("one", np.array(1, I64)),
        init("four", np.array(4, I64)),
    ]
    if scales:
        inits.append(init("k", np.arange(1, 5, dtype=I64)))
    return make_model(
        nodes, [tensor_info("x", F32, ["N", 4])], [tensor_info("y", F32, ["N", 4])], inits
    )


def test_if_with_a_run_time_predicate_becomes_torch_cond():
    model = if_model(pred_from_data=True)
    for sign in (1.0, -1.0):  # both branches
        x = np.abs(rnd(3, 4)) * sign
        optimized = assert_matches_ort(model, [x])
    assert_lowered(optimized)
    assert any(is_cond(n) for n in optimized.graph.nodes)


def test_a_run_time_if_runs_its_branch_eagerly_and_is_torch_cond_compiled(monkeypatch):
    """optimize's graph calls run_cond: eager runs the branch the predicate picks, never
    torch.cond (which enters torch._dynamo at every eager call); compiled, it is torch.cond
    with both branches in one graph; fxsurgeon.compile's inference copy keeps what the
    branches read (their constants are submodules of the branch GraphModules)."""
    model = if_model(pred_from_data=True, scales=True)
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert any(n.startswith("if_then_") and ".consts." in n for n, _ in optimized.named_buffers())
    targets = {n.target for n in optimized.graph.nodes}
    assert torch.cond not in targets and any(is_cond(n) for n in optimized.graph.nodes)
    cases = [torch.from_numpy(np.abs(rnd(3, 4)) * sign) for sign in (1.0, -1.0)]
    expected = [run_ort(model, [x.numpy()])[0] for x in cases]
    compiled = torch.compile(optimized, fullgraph=True, backend="eager")
    frozen = fxsurgeon.compile(optimized, inference=True)
    with torch.no_grad():
        for x, want in zip(cases, expected, strict=True):
            for run in (compiled, frozen):
                np.testing.assert_allclose(run(x).numpy(), want, rtol=0, atol=1e-6)
        monkeypatch.setattr(torch, "cond", None)  # eager must not reach it
        for x, want in zip(cases, expected, strict=True):
            np.testing.assert_allclose(optimized(x).numpy(), want, rtol=0, atol=1e-6)
    branches = [name for name, m in optimized.named_modules() if name.startswith("if_")]
    assert branches and all(
        b in dict(fxsurgeon.freeze(optimized).named_modules()) for b in branches
    )


def test_if_with_a_known_predicate_inlines_its_branch():
    optimized = assert_matches_ort(if_model(pred_from_data=False), [rnd(3, 4)])
    assert_lowered(optimized)
    assert not any(is_cond(n) for n in optimized.graph.nodes)


# -- CumSum --------------------------------------------------------------------------------


@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1, None])
@pytest.mark.parametrize("axis", [1, -1, 0])
def test_cumsum_follows_the_spec(exclusive, reverse, axis):
    attrs = {"exclusive": exclusive} | ({} if reverse is None else {"reverse": reverse})
    node = helper.make_node("CumSum", ["x", "axis"], ["y"], **attrs)
    model = make_model(
        [node],
        [tensor_info("x", F32, ["N", 5, 3])],
        [tensor_info("y", F32, None)],
        [init("axis", np.array(axis, I64))],
    )
    for batch in (2, 4):
        optimized = assert_matches_ort(model, [rnd(batch, 5, 3)])
    assert_lowered(optimized)


def test_onnx2torch_cumsum_default_direction_is_replaced():
    """onnx2torch reads reverse's default as 1; the spec says 0."""
    node = helper.make_node("CumSum", ["x", "axis"], ["y"])
    model = make_model(
        [node],
        [tensor_info("x", F32, [4])],
        [tensor_info("y", F32, None)],
        [init("axis", np.array(0, I64))],
    )
    gm = from_onnx(model)
    out = gm(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert out.tolist() == [1.0, 3.0, 6.0, 10.0]


# -- Conv with SAME auto_pad ---------------------------------------------------------------


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("kernel,group", [((3, 3), 1), ((2, 4), 2), ((5, 1), 4)])
def test_same_padded_conv_matches_onnxruntime(auto_pad, kernel, group):
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], auto_pad=auto_pad, group=group)
    model = make_model(
        [node],
        [tensor_info("x", F32, ["N", 4, "H", "W"])],
        [tensor_info("y", F32, None)],
        [
            init("w", rnd(6 if group != 4 else 4, 4 // group, *kernel)),
            init("b", rnd(6 if group != 4 else 4)),
        ],
    )
    for shape in ((2, 4, 6, 7), (3, 4, 5, 9)):
        optimized = assert_matches_ort(model, [rnd(*shape)])
    assert_lowered(optimized)


def test_same_padded_strided_conv_on_dynamic_dims_is_lowered_with_size_arithmetic():
    """The pads depend on the size: int arithmetic on x.size(d) (tests/test_lower_same_pads.py
    has the other ops and modes)."""
    node = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])
    model = make_model(
        [node],
        [tensor_info("x", F32, ["N", 2, "H", "W"])],
        [tensor_info("y", F32, None)],
        [init("w", rnd(3, 2, 3, 3))],
    )
    optimized = assert_matches_ort(model, [rnd(2, 2, 7, 8)])
    assert_lowered(optimized)


@pytest.mark.parametrize("pads", [[0, 0, 0, 0], [1, 2, 1, 2], [2, 0, 1, 3]])
def test_conv_with_a_computed_weight_matches_onnxruntime(pads):
    """Weight normalisation (HuBERT's positional conv): the weight is g * v, computed in
    the graph, which onnx2torch's Conv converter cannot take; grouped, explicit pads."""
    nodes = [
        helper.make_node("Mul", ["v", "g"], ["w"]),
        helper.make_node("Conv", ["x", "w", "b"], ["y"], group=2, pads=pads, strides=[1, 2]),
    ]
    model = make_model(
        nodes,
        [tensor_info("x", F32, ["N", 4, "H", "W"])],
        [tensor_info("y", F32, None)],
        [init("v", rnd(6, 2, 3, 3)), init("g", rnd(6, 1, 1, 1)), init("b", rnd(6))],
    )
    for shape in ((2, 4, 6, 7), (3, 4, 5, 9)):
        optimized = assert_matches_ort(model, [rnd(*shape)])
    assert_lowered(optimized)
    assert report_of(optimized).trainable_after == 6 * 2 * 3 * 3 + 6 + 6


# -- refusals ------------------------------------------------------------------------------


def test_unsupported_activation_is_refused_naming_node_and_op():
    model = recurrent_model("RNN", "forward", attrs={"activations": ["Softsign"]})
    model.graph.node[0].name = "my_rnn"
    with pytest.raises(InputError, match=r"'my_rnn' \(op RNN\).*Softsign"):
        from_onnx(model)


def test_optimize_is_plain_after_from_onnx():
    model = recurrent_model("LSTM", "forward")
    optimized = fxsurgeon.optimize(from_onnx(model))
    assert_lowered(optimized)


# -- Keras RNNs through tf2onnx, against TensorFlow ------------------------------------------


def _keras_rnn(kind: str):
    import keras

    x = keras.Input((None, 3), name="x")
    layer = {
        "lstm": lambda: keras.layers.LSTM(4, name="rnn"),
        "bilstm": lambda: keras.layers.Bidirectional(keras.layers.LSTM(4), name="rnn"),
    }[kind]()
    y = keras.layers.Dense(2, name="head")(layer(x))
    model = keras.Model(x, y)
    fxsurgeon.examples.randomize_variables(model, seed=3)
    return model


@pytest.mark.parametrize("kind", ["lstm", "bilstm"])
def test_keras_lstm_exports_to_an_lstm_op_and_matches_tensorflow(kind):
    """tf2onnx emits one ONNX LSTM op for these (GRU/SimpleRNN export as a Loop instead)."""
    from fxsurgeon.tensorflow import export_onnx

    model = _keras_rnn(kind)
    proto = export_onnx(model)
    assert [n.op_type for n in proto.graph.node].count("LSTM") == 1
    optimized = fxsurgeon.optimize(from_onnx(proto, tf_model=model))
    assert_lowered(optimized)
    trainable = sum(p.numel() for p in optimized.parameters() if p.requires_grad)
    assert trainable == sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    for batch in (1, 3):
        for steps in (4, 9):
            x = rnd(batch, steps, 3)
            expected = np.asarray(model(x))
            with torch.no_grad():
                got = optimized(torch.from_numpy(x)).numpy()
            np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_optimize_takes_an_onnx_proto_and_converts_it_with_from_onnx():
    model = recurrent_model("GRU", "bidirectional", attrs={"linear_before_reset": 1})
    optimized = fxsurgeon.optimize(model)
    assert_lowered(optimized)
    x = rnd(5, 2, 3)
    expected = run_ort(model, [x])
    with torch.no_grad():
        got = optimized(torch.from_numpy(x))
    np.testing.assert_allclose(got[0].numpy(), expected[0], atol=1e-5, rtol=0)


def test_an_op_no_converter_knows_is_refused_naming_it():
    """Hardmax: neither onnx2torch nor fxsurgeon converts it; the error names the op and node."""
    model = make_model(
        [helper.make_node("Hardmax", ["x"], ["y"], name="hardmax_0")],
        [tensor_info("x", F32, ["N", 3, 3])],
        [tensor_info("y", F32, ["N", 3, 3])],
    )
    with pytest.raises(InputError, match=r"Hardmax-\d+ \(node hardmax_0\)"):
        fxsurgeon.optimize(model)
