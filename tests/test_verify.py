"""Tests of fxsurgeon.verify: torch, ONNX, Keras and stored references."""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from fxsurgeon import _compat
from fxsurgeon.errors import FxSurgeonError, InputError
from fxsurgeon.source import SOURCE_META_KEY, InputSpec, SourceInfo
from fxsurgeon.verify import VerificationError, verify

RNG = np.random.default_rng(0)


def _mlp(sizes=(4, 8, 3), act=nn.Tanh) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(sizes[0], sizes[1]), act(), nn.Linear(sizes[1], sizes[2]))


def _onnx_model(nodes, inputs, outputs, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def dense_onnx() -> onnx.ModelProto:
    """y = tanh(x @ W + b) with x: (N, 4) float32."""
    w = numpy_helper.from_array(RNG.standard_normal((4, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(RNG.standard_normal(3).astype(np.float32), "B")
    return _onnx_model(
        [
            helper.make_node("MatMul", ["x", "W"], ["mm"]),
            helper.make_node("Add", ["mm", "B"], ["pre"]),
            helper.make_node("Tanh", ["pre"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [w, b],
    )


def _convert(model: onnx.ModelProto) -> nn.Module:
    return _compat.import_onnx2torch().convert(model)


class _Recorder(nn.Module):
    """Runs ``inner`` and keeps the inputs it was given."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[torch.Tensor, ...]] = []

    def forward(self, *args):
        self.calls.append(args)
        return self.inner(*args)


# --------------------------------------------------------------------------- torch references


def test_identical_torch_copy_passes_with_zero_difference():
    mlp = _mlp()
    cases = [(torch.randn(2, 4),), (torch.randn(5, 4),)]
    report = verify(copy.deepcopy(mlp), mlp, cases)
    assert report.passed
    assert report.max_abs == 0.0
    assert [(r.batch, r.shape) for r in report.results] == [(2, (2, 3)), (5, (5, 3))]
    assert all(r.atol == 1e-5 and r.worst_index is not None for r in report.results)
    assert json.loads(json.dumps(report.to_dict()))["passed"] is True


class _Perturbed(nn.Module):
    """The MLP with output [1, 2] off by 1e-3 and output [0, 0] by 1e-6 (within tolerance)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = copy.deepcopy(inner)

    def forward(self, x):
        y = self.inner(x).clone()
        y[1, 2] += 1e-3
        y[0, 0] += 1e-6
        return y


def test_perturbed_copy_is_caught_at_the_worst_index():
    mlp = _mlp()
    report = verify(_Perturbed(mlp), mlp, (torch.randn(3, 4),))
    assert not report.passed
    (result,) = report.results
    assert result.worst_index == (1, 2)
    assert result.max_abs == pytest.approx(1e-3, rel=1e-3)
    assert result.mse == pytest.approx((1e-3) ** 2 / 9, rel=1e-2)
    assert "[1, 2]" in result.message
    table = report.table()
    assert table.splitlines()[0].split() == [
        "output",
        "batch",
        "shape",
        "max_abs",
        "max_rel",
        "mse",
        "worst",
        "index",
        "atol",
        "ok",
    ]
    assert "FAIL" in table and "1.00e-03" in table
    # A looser atol lets it through.
    assert verify(_Perturbed(mlp), mlp, (torch.randn(3, 4),), atol=2e-3).passed


def test_strict_raises_verification_error_with_the_table():
    mlp = _mlp()
    with pytest.raises(VerificationError) as info:
        verify(_Perturbed(mlp), mlp, (torch.randn(3, 4),), strict=True)
    error = info.value
    assert isinstance(error, FxSurgeonError) and isinstance(error, AssertionError)
    assert not error.report.passed
    assert error.report.table() in str(error)
    assert "worst index" in str(error) and "FAIL" in str(error)
    # strict does nothing when the model matches.
    assert verify(copy.deepcopy(mlp), mlp, (torch.randn(3, 4),), strict=True).passed


# --------------------------------------------------------------------------- ONNX references


def test_onnx_reference_against_its_onnx2torch_conversion(dense_onnx, tmp_path):
    report = verify(_convert(dense_onnx), dense_onnx)
    assert report.passed, report.table()
    assert report.cases == [{"x": (1, 4)}, {"x": (2, 4)}]
    assert [r.output for r in report.results] == ["y", "y"]
    assert report.max_abs <= 1e-6

    path = tmp_path / "dense.onnx"
    onnx.save(dense_onnx, path)
    assert verify(_convert(dense_onnx), str(path), batch_sizes=(3,)).cases == [{"x": (3, 4)}]


def test_onnx_reference_against_a_wrong_model_fails(dense_onnx):
    report = verify(_mlp(), dense_onnx)
    assert not report.passed
    assert len(report.failures) == 2
    assert report.max_abs > 1e-2


@pytest.fixture(scope="module")
def ids_mask_onnx() -> onnx.ModelProto:
    """Embedding lookup (a 7-row table) times the attention mask."""
    emb = numpy_helper.from_array(RNG.standard_normal((7, 4)).astype(np.float32), "E")
    return _onnx_model(
        [
            helper.make_node("Gather", ["E", "input_ids"], ["emb"]),
            helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["maskf", "axes"], ["mask3"]),
            helper.make_node("Mul", ["emb", "mask3"], ["out"]),
        ],
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "seq", 4])],
        [emb, numpy_helper.from_array(np.array([2], np.int64), "axes")],
    )


def test_int_and_mask_inputs_are_generated_in_valid_ranges(ids_mask_onnx):
    model = ids_mask_onnx
    recorder = _Recorder(_convert(model))
    # Ids at or above 7 would make onnxruntime's Gather fail: the table size was found.
    report = verify(recorder, model, batch_sizes=(1, 4))
    assert report.passed, report.table()
    assert [c["input_ids"] for c in report.cases] == [(1, 8), (4, 8)]
    for ids, mask in recorder.calls:
        assert ids.dtype == torch.int64 and mask.dtype == torch.int64
        assert ids.min() >= 0 and ids.max() < 7
        assert set(mask.unique().tolist()) <= {0, 1}
        assert (mask.sum(dim=1) >= 1).all()
        assert (mask == 0).any()

    recorder.calls.clear()
    verify(recorder, model, batch_sizes=(4,), input_ranges={"input_ids": (3, 5)}, seq_len=16)
    ((ids, mask),) = recorder.calls
    assert ids.shape == (4, 16) and ids.min() >= 3 and ids.max() < 5


def test_inputs_and_output_names_come_from_the_models_source_info(ids_mask_onnx):
    gm = _convert(ids_mask_onnx)
    gm.meta[SOURCE_META_KEY] = SourceInfo(
        onnx_model=ids_mask_onnx,
        input_specs=(
            InputSpec("input_ids", (None, 5), torch.int64),
            InputSpec("attention_mask", (None, 5), torch.int64),
        ),
        output_names=("out",),
        buffer_to_initializer={},
    )
    # A torch reference has no signature: the model's SourceInfo gives the inputs, and
    # its ONNX graph the table size (ids >= 7 would make the reference's Gather fail).
    reference = _Recorder(_convert(ids_mask_onnx))
    report = verify(gm, reference, batch_sizes=(3,))
    assert report.passed, report.table()
    assert report.cases == [{"input_ids": (3, 5), "attention_mask": (3, 5)}]
    assert [r.output for r in report.results] == ["out"]
    ((ids, _),) = reference.calls
    assert ids.max() < 7

    # Dict inputs in another order reach the model in its placeholder order.
    ids = np.zeros((2, 5), np.int64)
    mask = np.ones((2, 5), np.int64)
    assert verify(gm, reference, {"attention_mask": mask, "input_ids": ids}).passed
    assert torch.equal(reference.calls[-1][1], torch.ones(2, 5, dtype=torch.int64))


def test_given_dict_inputs_are_checked_against_the_signature(dense_onnx):
    gm = _convert(dense_onnx)
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    assert verify(gm, dense_onnx, {"x": x}).cases == [{"x": (3, 4)}]
    with pytest.raises(
        InputError, match=r"wrong input names: the reference expects \['x'\], given \['z'\]"
    ):
        verify(gm, dense_onnx, {"z": x})
    with pytest.raises(
        InputError, match=r"input count mismatch: the reference takes 1 inputs \['x'\], given 2"
    ):
        verify(gm, dense_onnx, (x, x))
    with pytest.raises(
        InputError,
        match=r"input 'x': shape \(3, 5\) does not match the reference signature \(\?, 4\)",
    ):
        verify(gm, dense_onnx, {"x": np.zeros((3, 5), np.float32)})


# --------------------------------------------------------------------------- stored outputs


class _DictModel(nn.Module):
    def forward(self, x):
        return {"b": x * 2, "a": x + 1}


def test_stored_outputs():
    mlp = _mlp()
    x1, x2 = torch.randn(2, 4), torch.randn(3, 4)
    with torch.no_grad():
        y1, y2 = mlp(x1).numpy(), mlp(x2).numpy()
    assert verify(mlp, y1, (x1,)).passed
    report = verify(mlp, [y1, y2], [(x1,), (x2,)])
    assert report.passed and [r.batch for r in report.results] == [2, 3]
    assert not verify(mlp, [y1, y1 + 1], [(x1,), (x2,)]).passed  # wrong shape and values

    # Named on both sides: matched by name, whatever the order.
    x = torch.randn(2, 4)
    report = verify(_DictModel(), {"a": x + 1, "b": x * 2}, (x,))
    assert report.passed and [r.output for r in report.results] == ["a", "b"]


def test_shape_mismatch_names_the_output_and_both_shapes_and_the_layout():
    class Nchw(nn.Module):
        def forward(self, x):
            return x.permute(0, 3, 1, 2), x.sum()

    x = torch.randn(2, 5, 6, 3)
    report = verify(Nchw(), (x.numpy(), x.sum().numpy(), x.numpy()), (x,))
    nchw, total, missing = report.results
    assert not nchw.passed and nchw.max_abs == float("inf") and report.max_abs == float("inf")
    assert (
        "shape mismatch for output 'output0': model (2, 3, 5, 6) vs reference (2, 5, 6, 3)"
        in nchw.message
    )
    assert "channels-first (NCHW-like)" in nchw.message and "not compared" in nchw.message
    assert total.passed
    assert not missing.passed and "missing from the model" in missing.message


# --------------------------------------------------------------------------- low precision


class _ManualMlp(nn.Module):
    """The MLP written out as matmul + add in ``dtype`` (rounds differently from addmm)."""

    def __init__(self, ref: nn.Sequential, dtype: torch.dtype, act=nn.functional.gelu):
        super().__init__()
        self.w1 = nn.Parameter(ref[0].weight.detach().to(dtype))
        self.b1 = nn.Parameter(ref[0].bias.detach().to(dtype))
        self.w2 = nn.Parameter(ref[2].weight.detach().to(dtype))
        self.b2 = nn.Parameter(ref[2].bias.detach().to(dtype))
        self.act = act

    def forward(self, x):
        return self.act(x @ self.w1.T + self.b1) @ self.w2.T + self.b2


def test_bf16_candidate_is_judged_against_fp64():
    mlp = _mlp((16, 32, 8), act=nn.GELU)
    x = (torch.randn(64, 16),)
    good = verify(_ManualMlp(mlp, torch.bfloat16), mlp, x)
    (result,) = good.results
    assert good.passed, good.table()
    assert result.rule == "fp64" and result.dtype == "bfloat16" and result.ref_dtype == "float32"
    assert result.max_abs > 1e-3  # far outside the float32 tolerance, yet correct for bf16
    assert result.fp64_error <= result.fp64_budget
    assert "fp64 rmse<=" in good.table() and "float64 run of the reference" in good.table()

    wrong = verify(_ManualMlp(mlp, torch.bfloat16, act=nn.functional.silu), mlp, x)
    (result,) = wrong.results
    assert not wrong.passed
    assert result.fp64_error > 3 * result.fp64_budget
    assert "rmse vs the float64 reference" in result.message


# --------------------------------------------------------------------------- bad references


def test_bad_references_get_clear_messages(tmp_path, monkeypatch, dense_onnx):
    gm = _convert(dense_onnx)
    x = np.zeros((1, 4), np.float32)
    with pytest.raises(InputError, match="the reference path does not exist: .*nope.onnx"):
        verify(gm, str(tmp_path / "nope.onnx"))
    with pytest.raises(InputError, match="unsupported reference type builtins.object"):
        verify(gm, object(), (x,))
    with pytest.raises(InputError, match="unsupported reference file"):
        (tmp_path / "weights.bin").write_bytes(b"")
        verify(gm, str(tmp_path / "weights.bin"))
    with pytest.raises(InputError, match="not a SavedModel"):
        verify(gm, str(tmp_path))
    with pytest.raises(InputError, match="stored outputs needs inputs="):
        verify(gm, x)
    bare = torch.fx.GraphModule(gm, gm.graph)  # no SourceInfo (the hook records one on gm)
    with pytest.raises(
        InputError, match="cannot make inputs: torch module Sequential has no input signature"
    ):
        verify(bare, _mlp())
    with pytest.raises(InputError, match="model must be a torch.nn.Module"):
        verify(dense_onnx, gm)

    def no_tensorflow():
        raise ImportError("No module named 'tensorflow'")

    monkeypatch.setattr(_compat, "import_tensorflow", no_tensorflow)
    keras_file = tmp_path / "model.keras"
    keras_file.write_bytes(b"")
    with pytest.raises(
        InputError, match=r"model.keras needs TensorFlow .* not installed: pip install"
    ):
        verify(gm, str(keras_file))


# --------------------------------------------------------------------------- Keras reference


@pytest.fixture(scope="module")
def keras_mlp():
    tf = _compat.import_tensorflow()
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input(shape=(6,), name="features")
    hidden = tf_keras.layers.Dense(16, activation="relu", bias_initializer="random_normal")(inputs)
    outputs = tf_keras.layers.Dense(3, bias_initializer="random_normal")(hidden)
    return tf, tf_keras.Model(inputs, outputs)


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
def test_keras_mlp_against_its_onnx2torch_conversion(keras_mlp, tmp_path):
    tf, model = keras_mlp
    import tf2onnx

    signature = (tf.TensorSpec((None, 6), tf.float32, name="features"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=17)
    gm = _convert(proto)
    report = verify(gm, model, batch_sizes=(1, 4), atol=1e-5)
    assert report.passed, report.table()
    assert report.cases == [{"features": (1, 6)}, {"features": (4, 6)}]
    assert report.max_abs <= 1e-5

    path = tmp_path / "mlp.h5"
    model.save(path)
    assert verify(gm, str(path), batch_sizes=(2,)).passed

    wrong = verify(_mlp((6, 16, 3)), model, batch_sizes=(2,))
    assert not wrong.passed and wrong.results[0].output == "output0"


def test_torch_onnx_and_stored_references_do_not_need_tensorflow(monkeypatch, dense_onnx):
    def no_tensorflow():
        raise AssertionError("TensorFlow was asked for")

    monkeypatch.setattr(_compat, "import_tensorflow", no_tensorflow)
    gm = _convert(dense_onnx)
    x = torch.randn(2, 4)
    assert verify(gm, dense_onnx).passed
    assert verify(gm, copy.deepcopy(gm), (x,)).passed
    assert verify(gm, gm(x), (x,)).passed


def _wrapped_embedding_onnx(rows: int = 50) -> onnx.ModelProto:
    """Keras 3's Embedding as tf2onnx writes it: ``where(ids < 0, ids + rows, ids)``
    spelled with Less, Not, Cast and Mul/Add, then Gather from the table."""
    table = np.linspace(-1, 1, rows * 4, dtype=np.float32).reshape(rows, 4)
    nodes = [
        helper.make_node("Add", ["ids", "rows"], ["wrapped"]),
        helper.make_node("Less", ["ids", "zero"], ["negative"]),
        helper.make_node("Not", ["negative"], ["kept"]),
        helper.make_node("Cast", ["kept"], ["kept_i"], to=TensorProto.INT32),
        helper.make_node("Mul", ["ids", "kept_i"], ["as_is"]),
        helper.make_node("Cast", ["negative"], ["negative_i"], to=TensorProto.INT32),
        helper.make_node("Mul", ["negative_i", "wrapped"], ["shifted"]),
        helper.make_node("Add", ["shifted", "as_is"], ["index"]),
        helper.make_node("Gather", ["table", "index"], ["y"], axis=0),
    ]
    inits = [
        numpy_helper.from_array(table, "table"),
        numpy_helper.from_array(np.array(rows, np.int32), "rows"),
        numpy_helper.from_array(np.array(0, np.int32), "zero"),
    ]
    return _onnx_model(
        nodes,
        [helper.make_tensor_value_info("ids", TensorProto.INT32, ["n", "l"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "l", 4])],
        inits,
    )


def test_generated_ids_stay_below_a_table_reached_through_index_wrapping():
    """Ids reach the Gather through Add/Mul/Where-like arithmetic (Keras 3 wraps
    negative ids): the table's 50 rows still bound the generated ids, so onnxruntime
    never sees an index out of range (the default vocabulary is 100)."""
    import fxsurgeon

    proto = _wrapped_embedding_onnx()
    model = fxsurgeon.optimize(fxsurgeon.from_onnx(proto))
    report = verify(model, proto, batch_sizes=(2, 3), seed=1)
    assert report.passed, report.table()
    assert len(report.results) == 2


def _box_embedding_onnx(rows: int = 40) -> onnx.ModelProto:
    """LayoutLMv3's box embeddings as tf2onnx writes them: a coordinate sliced out of
    ``bbox`` [n, l, 4] (Slice, Squeeze) indexes one table; the box's width (a Sub of two
    coordinates, clipped by Max/Min) another."""
    table = np.linspace(-1, 1, rows * 4, dtype=np.float32).reshape(rows, 4)
    nodes = [
        helper.make_node("Slice", ["bbox", "s0", "e0", "axis"], ["x0_"]),
        helper.make_node("Squeeze", ["x0_", "axis"], ["x0"]),
        helper.make_node("Slice", ["bbox", "s2", "e2", "axis"], ["x1_"]),
        helper.make_node("Squeeze", ["x1_", "axis"], ["x1"]),
        helper.make_node("Sub", ["x1", "x0"], ["width"]),
        helper.make_node("Max", ["width", "zero"], ["low"]),
        helper.make_node("Min", ["low", "cap"], ["clipped"]),
        helper.make_node("Gather", ["table", "x0"], ["by_x"], axis=0),
        helper.make_node("Gather", ["table", "clipped"], ["by_width"], axis=0),
        helper.make_node("Add", ["by_x", "by_width"], ["y"]),
    ]
    inits = [numpy_helper.from_array(table, "table")]
    for name, value in (("s0", 0), ("e0", 1), ("s2", 2), ("e2", 3), ("axis", 2)):
        inits.append(numpy_helper.from_array(np.array([value], np.int64), name))
    inits += [
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(1023, np.int64), "cap"),
    ]
    return _onnx_model(
        nodes,
        [helper.make_tensor_value_info("bbox", TensorProto.INT64, ["n", "l", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "l", 4])],
        inits,
    )


def test_generated_boxes_stay_below_the_tables_their_coordinates_index():
    """A coordinate reaches its table through Slice/Squeeze, a width through Sub and a
    clip: the 40 rows bound the generated ``bbox`` (the default would be 100, out of range)."""
    import fxsurgeon
    from fxsurgeon.verify.cases import _onnx_index_bounds

    proto = _box_embedding_onnx()
    assert _onnx_index_bounds(proto) == {"bbox": 40}
    model = fxsurgeon.optimize(fxsurgeon.from_onnx(proto))
    report = verify(model, proto, batch_sizes=(2, 3), seed=1)
    assert report.passed, report.table()
