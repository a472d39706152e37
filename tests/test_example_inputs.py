"""``fxsurgeon convert --example-inputs FILE.npz`` and `fxsurgeon.verify.load_inputs`.

Made-up inputs cannot keep every model's input contract (hf_bart_seqcls needs the same
number of <eos> tokens in every row, hf_gpt2_double_heads' mc_token_ids index a computed
tensor). The stand-in here: GatherElements on a computed tensor, whose indices (plus an
offset) must stay below its size 4. verify draws integer inputs up to 100 (no embedding
table bounds them) and save's model.py check feeds all-ones ids: without the user's inputs
convert fails, with a message that names the way out; with them it passes.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_cases import init, make_model, tensor_info

from fxsurgeon.cli import main
from fxsurgeon.errors import InputError
from fxsurgeon.tensorflow import from_onnx
from fxsurgeon.verify import load_inputs


def _gather_model(offset: int) -> onnx.ModelProto:
    """y = relu(x)[row, idx + offset] (GatherElements, axis 1): idx + offset must be < 4."""
    return make_model(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Add", ["idx", "offset"], ["shifted"]),
            helper.make_node("GatherElements", ["r", "shifted"], ["y"], axis=1),
        ],
        [tensor_info("x", np.float32, ["N", 4]), tensor_info("idx", np.int64, ["N", 3])],
        [tensor_info("y", np.float32, ["N", 3])],
        [init("offset", np.array(offset, np.int64))],
    )


def _valid(batch: int, seed: int, offset: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((batch, 4)).astype(np.float32),
        "idx": rng.integers(0, 4 - offset, (batch, 3)),
    }


@pytest.fixture(scope="module")
def converted():
    return from_onnx(_gather_model(0))


def _convert(tmp_path, offset: int, *extra: str) -> tuple[int, str]:
    path = tmp_path / "gather.onnx"
    onnx.save(_gather_model(offset), str(path))
    argv = ["convert", str(path), "-o", str(tmp_path / "out"), "-q", "--no-compile-check"]
    return main([*argv, *extra]), str(tmp_path / "out")


# offset 0: all-ones ids are valid (save's model.py check passes), verify's ids up to 100
# are not (onnxruntime refuses them); offset 3: already the all-ones ids are out of range
@pytest.mark.parametrize(
    ("offset", "where"),
    [(0, "the parity check failed on made-up inputs"), (3, "cannot write model.py")],
)
def test_made_up_inputs_that_break_the_contract_fail_naming_the_option(
    offset, where, tmp_path, capsys
):
    status, _ = _convert(tmp_path, offset)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("fxsurgeon:")]
    assert status == 1, err
    assert len(lines) == 1 and lines[0].startswith(f"fxsurgeon: error: {where}"), err
    assert "made-up inputs" in lines[0] and "--example-inputs FILE.npz" in lines[0], lines[0]


@pytest.mark.parametrize("offset", [0, 3])
def test_the_given_inputs_feed_every_check(offset, tmp_path, capsys):
    """One case (keys NAME) and two cases (NAME:0, NAME:1, other batch sizes): the parity
    check runs on exactly those, save's model.py check on the first, and all pass."""
    one, two = _valid(2, 0, offset), _valid(3, 1, offset)
    single, several = tmp_path / "one.npz", tmp_path / "two.npz"
    np.savez(single, **one)
    np.savez(
        several, **{f"{k}:0": v for k, v in one.items()}, **{f"{k}:1": v for k, v in two.items()}
    )
    for path, batches in ((single, [2]), (several, [2, 3])):
        status, outdir = _convert(tmp_path, offset, "--example-inputs", str(path))
        assert status == 0, capsys.readouterr().err
        report = json.loads((tmp_path / "out" / "report.json").read_text())
        parity = report["parity"]
        assert parity["passed"]
        assert sorted({r["batch"] for r in parity["results"]}) == batches
        assert any("--example-inputs" in note for note in parity["notes"])
        assert report["codegen"]["self_check_max_abs"] == 0.0, outdir


def test_a_malformed_file_is_refused_naming_the_input(tmp_path, capsys):
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.zeros((2, 4), np.float32), idx=np.zeros((2, 3), np.float32))
    status, outdir = _convert(tmp_path, 0, "--example-inputs", str(path))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("fxsurgeon:")]
    assert status == 2 and len(lines) == 1, err
    assert lines[0] == (
        f"fxsurgeon: error: --example-inputs {path}: input 'idx' is float32, "
        "the model takes int64 (integer values)"
    )
    assert not (tmp_path / "out" / "model.py").exists(), outdir


def _arrays(**changes):
    arrays = {"x": np.zeros((2, 4), np.float32), "idx": np.zeros((2, 3), np.int64)}
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (_arrays(idx=None), "missing input 'idx' (key 'idx')"),
        (_arrays(extra=np.zeros(1)), "unexpected key 'extra'"),
        (_arrays(x=np.zeros((2, 4), np.int64)), "input 'x' is int64, the model takes float32"),
        (_arrays(idx=np.zeros((2, 3), bool)), "input 'idx' is bool, the model takes int64"),
        (_arrays(idx=np.zeros((2, 3, 1), np.int64)), "input 'idx' has rank 3"),
        (_arrays(x=np.zeros((2, 5), np.float32)), "input 'x' has shape (2, 5): dim 1 must be 4"),
        (_arrays(idx=np.full((2, 3), 2**40, np.uint64)), None),  # fits int64: accepted
        (_arrays(idx=np.full((2, 3), 2**63, np.uint64)), "input 'idx': values of uint64"),
        ({"x:0": np.zeros((1, 4), np.float32), "idx": np.zeros((1, 3))}, "mix NAME and NAME:K"),
        (
            {"x:0": np.zeros((1, 4), np.float32), "idx:0": np.zeros((1, 3), np.int64)}
            | {"x:1": np.zeros((1, 4), np.float32)},
            "missing input 'idx' in case 1 (key 'idx:1')",
        ),
        ({}, "no arrays in the file"),
    ],
)
def test_load_inputs_checks_names_dtypes_and_ranks(arrays, message, converted, tmp_path):
    path = tmp_path / "inputs.npz"
    np.savez(path, **arrays)
    if message is None:
        (case,) = load_inputs(path, converted)
        assert list(case) == ["x", "idx"] and case["idx"].dtype == np.int64
        return
    with pytest.raises(InputError) as caught:
        load_inputs(path, converted)
    assert message in str(caught.value), str(caught.value)


def test_load_inputs_orders_casts_and_numbers_cases(converted, tmp_path):
    path = tmp_path / "inputs.npz"
    np.savez(
        path,
        **{"idx:1": np.ones((1, 3), np.int32), "x:1": np.ones((1, 4))},  # float64, int32
        **{"idx:0": np.zeros((2, 3), np.int64), "x:0": np.zeros((2, 4), np.float32)},
    )
    first, second = load_inputs(path, converted)
    assert [list(c) for c in (first, second)] == [["x", "idx"], ["x", "idx"]]
    assert first["x"].shape == (2, 4) and second["x"].shape == (1, 4)
    assert second["x"].dtype == np.float32 and second["idx"].dtype == np.int64
    (tmp_path / "notes.npz").write_text("not a zip")
    with pytest.raises(InputError, match="not a readable .npz file"):
        load_inputs(tmp_path / "notes.npz", converted)
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(InputError, match=r"one array \(.npy\)"):
        load_inputs(tmp_path / "one.npy", converted)
    np.savez(tmp_path / "pickled.npz", x=np.array([{"a": 1}], object), idx=np.zeros((1, 3)))
    with pytest.raises(InputError, match="not a readable .npz file"):
        load_inputs(tmp_path / "pickled.npz", converted)
    with pytest.raises(InputError, match="no such file"):
        load_inputs(tmp_path / "nope.npz", converted)
