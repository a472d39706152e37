"""The corpus scoreboard (corpus/score.py, corpus/board.py) on the smallest corpus model."""

from __future__ import annotations

import copy

import pytest
import torch

import fxsurgeon  # noqa: F401 - the safe import order, before the builders import TensorFlow
from corpus import board, learned, score

ATOL = score.ATOL
NEEDS_SHAPES = "InputError: optimize() needs the input shapes"


@pytest.fixture(scope="module")
def mlp_record():
    return score.score("keras_mlp")


def test_scorer_lines_on_keras_mlp(mlp_record):
    lines = mlp_record["lines"]
    door_a = {
        "A.diff",
        "A.params",
        "A.names",
        "A.onnx2torch_left",
        "A.fusion.linear",
        "A.grads",
        "A.compile_eager",
        "A.compile_inductor",
        "A.convert",
        "A.bfloat16",
        "A.half",
    }
    door_b = {k.replace("A.", "B.") for k in door_a - {"A.convert", "A.bfloat16", "A.half"}}
    assert set(lines) == {"export"} | door_a | door_b
    assert lines["export"]["ok"] is True
    failing = {k: lines[k]["reason"] for k in door_a if lines[k]["ok"] is not True}
    assert not failing, failing
    assert lines["A.params"]["value"] == lines["A.params"]["tf"] == 548  # 12*16+16+16*16+16+16*4+4
    assert lines["A.onnx2torch_left"]["value"] == 0
    assert lines["A.names"]["value"] == 0 and lines["A.names"]["parameters"] == 6
    assert lines["A.fusion.linear"]["value"] == 3
    assert lines["A.grads"]["value"] == 6  # three weights, three biases
    for key in ("A.diff", "A.compile_eager", "A.compile_inductor", "A.convert"):
        assert 0 <= lines[key]["value"] <= ATOL, (key, lines[key])
    assert set(lines["A.diff"]["per_case"]) == {"batch 1", "batch 3"}  # no sizes: H/W static
    for key in ("A.bfloat16", "A.half"):  # low precision: off by rounding, never by 0 or 1e-5
        assert 1e-5 < lines[key]["value"] < 0.1, (key, lines[key])
    for key in door_b:  # the one-liner: a pass, or a failure that says why as "Type: message"
        assert lines[key]["ok"] is True or ": " in lines[key]["reason"], (key, lines[key])
    assert lines["B.diff"]["ok"] is True or lines["B.diff"]["reason"].startswith(NEEDS_SHAPES)


@pytest.mark.parametrize(
    "name",
    [
        "weight.weight",
        "param",
        "net.const_3",
        "initializers.onnx_initializer_0",
        "weight",
        "gemm_46.weight",
    ]
    + ["encoder.bias.weight", "net.1b.weight"],
)
def test_the_names_line_refuses_names_no_user_writes(name):
    assert learned.bad_name(name) is not None


@pytest.mark.parametrize(
    "name",
    ["bert.embeddings.word_embeddings.weight", "weight_ih_l0_reverse", "score.bias"]
    + ["encoder.layer_0.attention.query.weight", "embeddings.cls_token"],
)
def test_the_names_line_takes_a_users_names(name):
    assert learned.bad_name(name) is None


def test_door_b_may_hold_more_than_tf_only_as_untrained_data():
    """The params line's door-B allowance: a parameter beyond TF's trainable variables
    passes only as a value no trainable variable has, and not a number or a fill; the
    names line fails a buffer holding a trainable variable."""
    scorer = score.Scorer("keras_mlp")
    assert scorer.export()
    module = scorer.optimized("B")
    tf = scorer.model.trainable_params
    assert scorer.params(module, "B")["value"] == tf
    first = next(module.parameters())
    cases = {
        "copy": (torch.nn.Parameter(first.detach().clone()), False),  # an untied share
        "fill": (torch.nn.Parameter(torch.full((3,), 0.5)), False),  # a formula's fill
        "data": (torch.nn.Parameter(torch.randn(3)), True),  # a constant read as data
    }
    for what, (extra, ok) in cases.items():
        module.register_parameter("extra", extra)
        got = scorer.params(module, "B")
        assert got["ok"] is ok and got["value"] == tf + extra.numel(), (what, got)
    assert "3 in TF graph constants read as data (extra)" in got["note"]
    assert scorer.names(module)["ok"] is True
    module.register_buffer("held", first.detach().clone())
    assert scorer.names(module)["ok"] is False  # a learned tensor left as a buffer


_REAL_OPTIMIZE = score._optimize


def _outputs_rewritten(rewrite):
    """An `optimize` whose result passes every output node through ``rewrite(graph, node)``."""

    return lambda gm: _rewrite_outputs(_REAL_OPTIMIZE(gm), rewrite)


def _rewrite_outputs(module, rewrite):
    graph = module.graph
    output = next(n for n in graph.nodes if n.op == "output")
    with graph.inserting_before(output):
        outs = output.args[0]
        many = isinstance(outs, (list, tuple))
        changed = [rewrite(graph, o) for o in (outs if many else [outs])]
    output.args = (type(outs)(changed) if many else changed[0],)
    module.recompile()
    return module


def _off_by(offset: float):
    """An `optimize` whose result adds ``offset`` to every output."""
    return _outputs_rewritten(lambda graph, o: graph.call_function(torch.add, (o, offset)))


def test_broken_model_fails_the_diff_line(monkeypatch):
    monkeypatch.setattr(score, "_optimize", _off_by(1e-3))
    scorer = score.Scorer("keras_mlp", doors=("A",))
    assert scorer.export()
    scorer.run("A.diff", lambda: scorer.diff(scorer.optimized("A"), scorer.cases()))
    scorer.run("A.params", lambda: scorer.params(scorer.optimized("A")))
    diff = scorer.lines["A.diff"]
    assert diff["ok"] is False
    assert diff["value"] == pytest.approx(1e-3, rel=1e-3)
    assert diff["reason"].startswith("max |diff| 0.001 > 1e-05 at batch")
    assert "output logits" in diff["reason"]
    assert scorer.lines["A.params"]["ok"] is True  # the other lines are not affected


def test_a_case_that_varies_a_dim_static_in_the_export_fails_naming_it():
    """A builder's sizes must vary only dims the export left dynamic (a dim the model's
    Python forced static is fixed in the ONNX inputs): else the diff line says which."""
    scorer = score.Scorer("keras_mlp", doors=("A",))
    assert scorer.export()
    assert "static_dims" not in scorer.lines["export"]  # the MLP traces dynamically
    made = scorer.model.make_inputs
    name = scorer.input_names()[0]

    def wider(batch_size, seed, size=None):
        inputs = made(batch_size, seed, size)
        x = inputs[name]
        return {**inputs, name: x.repeat(2, axis=1)[:, : x.shape[1] + 1]}

    scorer.model = copy.copy(scorer.model)
    scorer.model.make_inputs = wider
    scorer.run("A.diff", lambda: scorer.diff(scorer.optimized("A"), scorer.cases()))
    diff = scorer.lines["A.diff"]
    assert diff["ok"] is False
    assert (
        diff["reason"] == f"ValueError: batch 1: input {name} dim 1 is 13, static 12 in the export"
    )


#: an `optimize` whose result casts every output to float32 (a pinned dtype)
_pinned_to_float32 = _outputs_rewritten(lambda graph, o: graph.call_method("float", (o,)))


def test_a_model_pinned_to_float32_fails_the_half_precision_lines(monkeypatch):
    monkeypatch.setattr(score, "_optimize", _pinned_to_float32)
    scorer = score.Scorer("keras_mlp", doors=("A",))
    assert scorer.export()
    for how in score.PRECISIONS:
        scorer.run(f"A.{how}", lambda how=how: scorer.precision(scorer.optimized("A"), how))
        entry = scorer.lines[f"A.{how}"]
        assert entry["ok"] is False, entry
        assert entry["reason"] == f"floating outputs in ['float32'], not {how}"


def _with_unread_variable(reaches_output: bool):
    """An `optimize` whose result holds one more parameter, recorded as a TF variable the
    exported function reads nowhere (fxsurgeon.params attaches such variables)."""

    def spare_read(graph, o):
        return graph.call_function(
            torch.add, (o, graph.call_method("sum", (graph.get_attr("spare"),)))
        )

    def optimize(gm):
        module = _REAL_OPTIMIZE(gm)
        module.spare = torch.nn.Parameter(torch.zeros(3))
        origins = module.meta[fxsurgeon.params.TF_NAMES_KEY]
        origins["spare"] = fxsurgeon.ParameterOrigin("spare", "", (0,), True, read=False)
        return _rewrite_outputs(module, spare_read) if reaches_output else module

    return optimize


@pytest.mark.parametrize("reaches_output", [False, True])
def test_a_parameter_tf_reads_nowhere_must_get_no_gradient(monkeypatch, reaches_output):
    monkeypatch.setattr(score, "_optimize", _with_unread_variable(reaches_output))
    scorer = score.Scorer("keras_mlp", doors=("A",))
    assert scorer.export()
    scorer.run("A.grads", lambda: scorer.grads(scorer.optimized("A")))
    grads = scorer.lines["A.grads"]
    assert grads["unread"] == 1 and grads["total"] == 7
    assert grads["ok"] is (not reaches_output), grads
    if reaches_output:
        assert grads["reason"] == "1 of 7: spare (a grad, but TF's function reads it nowhere)"


def _with_zero_gradient(form: str):
    """An `optimize` whose result holds one more parameter, at zero, whose gradient there
    is zero: ``0 * gate`` (no output depends on it) or ``gate ** 2`` (outputs do)."""

    def read(graph, o):
        gate = graph.get_attr("gate")
        term = (
            graph.call_function(torch.mul, (gate, 0.0))
            if form == "times zero"
            else graph.call_function(torch.pow, (gate, 2))
        )
        return graph.call_function(torch.add, (o, graph.call_method("sum", (term,))))

    def optimize(gm):
        module = _REAL_OPTIMIZE(gm)
        module.gate = torch.nn.Parameter(torch.zeros(3))
        return _rewrite_outputs(module, read)

    return optimize


@pytest.mark.parametrize("form", ["times zero", "squared"])
def test_a_zero_gradient_passes_only_where_no_output_depends_on_the_parameter(monkeypatch, form):
    """MobileViT's last attention sees one patch: softmax over one key is 1 whatever q and
    k are, so their exact gradient is 0 (the twin's too). Moving such a parameter changes
    no output; a zero gradient where outputs do change (gate ** 2 at 0) still fails."""
    monkeypatch.setattr(score, "_optimize", _with_zero_gradient(form))
    scorer = score.Scorer("keras_mlp", doors=("A",))
    assert scorer.export()
    scorer.run("A.grads", lambda: scorer.grads(scorer.optimized("A")))
    grads = scorer.lines["A.grads"]
    if form == "times zero":
        assert grads["ok"] is True and grads["independent"] == ["gate"], grads
    else:
        assert grads["ok"] is False and grads["reason"] == "1 of 7: gate (zero)", grads


def test_door_b_counts_tf_minus_the_variables_no_onnx_file_holds(monkeypatch):
    """Door B reads the ONNX file alone: TF's count minus the trainable variables the
    exported function reads nowhere passes there, and only there (door A brings them)."""
    scorer = score.Scorer("keras_mlp")
    assert scorer.export()
    module = scorer.optimized("A")
    count = sum(p.numel() for p in module.parameters())
    assert scorer.unread_trainable() == 0  # every variable of the MLP is read
    monkeypatch.setattr(scorer.model, "trainable_params", count + 7)
    monkeypatch.setattr(scorer, "unread_trainable", lambda: 7)
    door_b = scorer.params(module, "B")
    assert door_b["ok"] is True and "TF minus 7" in door_b["note"]
    assert scorer.params(module, "A")["ok"] is False
    monkeypatch.setattr(scorer, "unread_trainable", lambda: 6)
    assert scorer.params(module, "B")["ok"] is False


def test_an_exception_fails_its_line_only():
    scorer = score.Scorer("keras_mlp")

    def boom():
        raise ValueError("no such thing\nsecond line")

    scorer.run("A.grads", boom)
    scorer.run("A.params", lambda: score.line(True, 1))
    assert scorer.lines["A.grads"]["ok"] is False
    assert scorer.lines["A.grads"]["reason"] == "ValueError: no such thing"
    assert scorer.lines["A.params"]["ok"] is True


# --------------------------------------------------------------------------- the CI check


def _record(**lines):
    return {
        "name": "m",
        "family": "keras",
        "lines": {k: {"ok": v, "reason": "why"} for k, v in lines.items()},
    }


EXPECTED = {"m1": ["A.diff", "A.params", "export"], "m2": ["export"]}
RECORDS = {
    "m1": _record(export=True, **{"A.diff": True, "A.params": True, "B.diff": False}),
    "m2": _record(export=True, **{"A.diff": False}),
}


def test_check_passes_when_nothing_regressed():
    regressions, new = board.compare(EXPECTED, RECORDS)
    assert regressions == []
    assert new == []


def test_check_fails_on_a_regression_and_lists_new_passes():
    records = copy.deepcopy(RECORDS)
    records["m1"]["lines"]["A.params"]["ok"] = False
    records["m2"]["lines"]["A.diff"]["ok"] = True
    regressions, new = board.compare(EXPECTED, records)
    assert regressions == [("m1", "A.params", "why")]
    assert new == [("m2", "A.diff")]


def test_check_a_missing_model_or_line_is_a_regression():
    records = {"m1": _record(export=True, **{"A.diff": True})}
    regressions, _ = board.compare(EXPECTED, records)
    assert ("m1", "A.params", "line missing") in regressions
    assert ("m2", "export", "model not scored") in regressions
    partial, _ = board.compare(EXPECTED, records, partial=True)  # a -k run: m2 not selected
    assert partial == [("m1", "A.params", "line missing")]


def test_latency_is_never_expected():
    record = _record(export=True, latency=True)
    assert board.expected_of({"m": record}) == {"m": ["export"]}


def test_unmeasured_selects_the_models_without_a_latency_line():
    from corpus.__main__ import unmeasured

    timed = {"ok": True, "value": {"fxsurgeon/onnx2torch": 0.5}}
    stored = {
        "timed": {"lines": {"latency": timed}},
        "crashed": {"lines": {"latency": {"ok": False, "reason": "scorer exited 1"}}},
        "xfail": {"lines": {"latency": {"ok": False, "reason": "RuntimeError: xfail: no"}}},
        "untimed": {"lines": {"A.diff": {"ok": True}}},
    }
    names = ["timed", "crashed", "xfail", "untimed", "new"]
    assert unmeasured(names, stored) == ["crashed", "untimed", "new"]


def test_markdown_totals_row():
    text = board.markdown(RECORDS)
    rows = [r for r in text.splitlines() if r.startswith("| **total**")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[2] == "2/2"  # export
    assert cells[3] == "1/2"  # A diff
    assert cells[4] == "1/1"  # A params: only m1 has the line


def test_markdown_latency_columns_only_when_measured():
    assert "latency" not in board.markdown(RECORDS).splitlines()[0]
    records = copy.deepcopy(RECORDS)
    ratios = {"fxsurgeon/onnx2torch": 0.5, "fxsurgeon/onnxruntime": 2.0}
    records["m1"]["lines"]["latency"] = {"ok": True, "value": {**ratios, "compiled/onnxruntime": 1}}
    records["m2"]["lines"]["latency"] = {"ok": True, "value": {"fxsurgeon/onnxruntime": 8.0}}
    rows = board.markdown(records).splitlines()
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    # the twin ratio is in no record: no column for it
    latency = ["fxsurgeon/onnx2torch", "fxsurgeon/onnxruntime", "compiled/onnxruntime"]
    assert header[-3:] == [f"latency {c}" for c in latency]
    cells = {
        r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")] for r in rows[2:5]
    }
    assert cells["`m1`"][-3:] == ["0.50x", "2.00x", "1.00x"]
    assert cells["`m2`"][-3:] == ["", "8.00x", ""]
    assert cells["**total**"][-3:] == ["0.50x (1)", "4.00x (2)", "1.00x (1)"]  # geometric means
    records["m2"]["lines"]["latency"] = {"ok": False, "value": None, "reason": "crashed"}
    assert board.markdown(records).splitlines()[3].split("|")[-3].strip() == ""


def test_latency_line_times_every_variant_with_the_compiled_recipe(monkeypatch):
    monkeypatch.setattr(score, "LATENCY_ROUNDS", 2)
    entry = score.score("keras_mlp", latency=True)["lines"]["latency"]
    assert entry["ok"] is True, entry
    assert "compiled_error" not in entry
    assert set(entry["best_ms"]) == {"onnx2torch", "fxsurgeon", "compiled", "onnxruntime"}
    assert all(ms > 0 for ms in entry["best_ms"].values())
    expected = {"fxsurgeon/onnx2torch", "fxsurgeon/onnxruntime", "compiled/onnxruntime"}
    assert set(entry["value"]) == expected | {"compiled/fxsurgeon"}  # keras_mlp has no twin
    assert set(entry["median_ratios"]) == set(entry["value"])


def test_latency_ratios_are_of_the_pairs_measured():
    ms = {"fxsurgeon": 2.0, "onnxruntime": 4.0, "compiled": 1.0, "twin": 8.0}
    assert score.latency_ratios(ms) == {
        "fxsurgeon/twin": 0.25,
        "fxsurgeon/onnxruntime": 0.5,
        "compiled/onnxruntime": 0.25,
        "compiled/fxsurgeon": 0.5,
    }


def test_a_tf_layer_name_is_no_meaningless_component():
    """Keras names a model's second GRU ``gru_1``: a user's (Keras') name when the TF model
    has it, a made-up one when it does not (tf2onnx's ``GRU__12`` read as ``gru_12``)."""
    assert learned.bad_name("gru_1.weight_ih_l0", frozenset({"model", "gru_1", "kernel"})) is None
    assert learned.bad_name("gru_1.weight_ih_l0", frozenset({"model", "gru", "kernel"}))
