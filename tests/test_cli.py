"""The ``fxsurgeon`` command: convert, report, verify, and one-line errors for bad input.

Converted folders are loaded back in a fresh Python process in which
TensorFlow and onnx2torch cannot be imported (and pickle / torch.load raise),
and compared with TensorFlow's outputs computed here.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import zoo
from onnx import TensorProto, helper, numpy_helper
from onnx_cases import make_model, tensor_info

import fxsurgeon
from fxsurgeon.cli import main
from fxsurgeon.tensorflow import from_onnx

ATOL = 1e-5
RUFF = Path(sys.executable).with_name("ruff")
BLOCKED = ("tensorflow", "onnx2torch", "tf2onnx", "keras", "tf_keras")

LOADER = textwrap.dedent(
    f"""
    import json
    import sys

    BLOCKED = {BLOCKED!r}


    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} cannot be imported in this process")
            return None


    sys.meta_path.insert(0, Blocker())

    import pickle

    import numpy as np
    import torch


    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle was used")


    pickle.load = pickle.loads = torch.load = no_pickle

    outdir, data = sys.argv[1], sys.argv[2]
    with open(f"{{data}}/meta.json") as f:
        meta = json.load(f)
    inputs = [torch.from_numpy(np.load(f"{{data}}/input_{{i}}.npy")) for i in range(meta["inputs"])]
    expected = [np.load(f"{{data}}/expected_{{i}}.npy") for i in range(meta["outputs"])]


    def diffs(model):
        with torch.no_grad():
            out = model(*inputs)
        out = list(out) if isinstance(out, (list, tuple)) else [out]
        assert len(out) == len(expected), (len(out), len(expected))
        return [float(np.abs(o.numpy() - e).max()) for o, e in zip(out, expected)]


    import fxsurgeon

    through_fxsurgeon = fxsurgeon.load(outdir)

    sys.path.insert(0, outdir)
    import model as generated
    from safetensors.torch import load_file

    plain = generated.Model()
    plain.load_state_dict(load_file(f"{{outdir}}/model.safetensors"))
    plain.eval()

    print(json.dumps({{
        "fxsurgeon_load": diffs(through_fxsurgeon),
        "plain_import": diffs(plain),
        "load_helper": diffs(generated.load()),
        "keys": list(plain.state_dict()),
        "imported": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
    }}))
    """
)


# --------------------------------------------------------------------------- helpers


def load_elsewhere(outdir: Path, name: str, workdir: Path) -> dict:
    """Load ``outdir`` in a fresh process without TF/onnx2torch; diffs against TF outputs."""
    model = zoo.build(name)
    inputs = model.make_inputs(2, seed=3)
    expected = model.tf_outputs(inputs)
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    ordered = [inputs[spec.name] for spec in model.input_signature]
    for i, array in enumerate(ordered):
        np.save(data / f"input_{i}.npy", array)
    for i, array in enumerate(expected):
        np.save(data / f"expected_{i}.npy", np.asarray(array))
    (data / "meta.json").write_text(json.dumps({"inputs": len(ordered), "outputs": len(expected)}))
    script = workdir / "load_elsewhere.py"
    script.write_text(LOADER)
    result = subprocess.run(
        [sys.executable, str(script), str(outdir), str(data)],
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def ruff_check(path: Path) -> None:
    result = subprocess.run(
        [str(RUFF), "check", "--no-cache", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def block_class_uses(source: str) -> dict[str, int]:
    tree = ast.parse(source)
    defined = {n.name for n in tree.body if isinstance(n, ast.ClassDef)} - {"Model"}
    uses = dict.fromkeys(defined, 0)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in uses:
            uses[node.func.id] += 1
    return uses


@functools.cache
def optimized_keys(onnx_path: str) -> list[str]:
    return list(fxsurgeon.optimize(from_onnx(onnx_path)).state_dict())


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """``converted(name)`` -> (onnx path, OUTDIR, exit status) of ``fxsurgeon convert``, once."""
    done: dict[str, tuple[Path, Path, int]] = {}

    def convert(name: str) -> tuple[Path, Path, int]:
        if name not in done:
            base = tmp_path_factory.mktemp(name)
            onnx_path = base / f"{name}.onnx"
            onnx.save(zoo.export(name), str(onnx_path))
            outdir = base / "out"
            status = main(
                ["convert", str(onnx_path), "-o", str(outdir), "-q", "--no-compile-check"]
            )
            done[name] = (onnx_path, outdir, status)
        return done[name]

    return convert


# --------------------------------------------------------------------------- conversions


@pytest.mark.parametrize("name", ["vit_tiny", "bert_tiny", "resnet50"])
def test_converted_folder_loads_without_tensorflow_and_matches_it(name, converted, tmp_path):
    onnx_path, outdir, status = converted(name)
    assert status == 0
    assert sorted(p.name for p in outdir.iterdir()) == [
        "model.py",
        "model.safetensors",
        "report.json",
        "report.md",
    ]
    result = load_elsewhere(outdir, name, tmp_path)
    assert result["imported"] == []
    for way in ("fxsurgeon_load", "plain_import", "load_helper"):
        assert max(result[way]) <= ATOL, (way, result[way])
    assert result["keys"] == optimized_keys(str(onnx_path))
    ruff_check(outdir / "model.py")
    report = json.loads((outdir / "report.json").read_text())
    assert report["parity"]["passed"]
    assert {"onnx2torch", "optimize", "save", "verify"} <= set(report["timings"])


def test_tiny_vit_layers_are_one_class_instantiated_twice(converted):
    _, outdir, _ = converted("vit_tiny")
    assert block_class_uses((outdir / "model.py").read_text()) == {"EncoderLayer": 2}


def test_tiny_bert_layers_are_one_class_instantiated_twice(converted):
    _, outdir, _ = converted("bert_tiny")
    assert block_class_uses((outdir / "model.py").read_text()) == {"EncoderLayer": 2}


def test_a_keras_file_converts_through_tensorflow(tmp_path):
    """A real TF file: tf-keras .h5 -> tf2onnx -> onnx2torch -> optimize, checked against TF."""
    model = zoo.build("keras_cnn")
    h5 = tmp_path / "cnn.h5"
    model.model.save(str(h5))
    outdir = tmp_path / "out"
    status = main(["convert", str(h5), "-o", str(outdir), "-q", "--compile-backend", "eager"])
    assert status == 0
    report = json.loads((outdir / "report.json").read_text())
    assert report["source_kind"] == "Keras .h5"
    assert report["parity"]["passed"] and "Keras model" in report["parity"]["reference"]
    assert report["compile"].startswith("yes")
    assert {"load", "export", "onnx2torch", "optimize", "save", "verify", "compile"} <= set(
        report["timings"]
    )
    assert report["after"]["trainable"] == report["tf_trainable"]
    source = (outdir / "model.py").read_text()
    assert "class KerasBatchNorm(nn.modules.batchnorm._BatchNorm):" in source
    result = load_elsewhere(outdir, "keras_cnn", tmp_path)
    assert max(result["fxsurgeon_load"] + result["plain_import"]) <= ATOL
    assert result["keys"] == list(fxsurgeon.optimize(zoo.convert("keras_cnn")).state_dict())


def test_user_patterns_reach_optimize(tmp_path):
    rules = tmp_path / "my_rules.py"
    rules.write_text(
        textwrap.dedent(
            """
            import torch

            from fxsurgeon import Rule


            def relu_pattern(x):
                return torch.relu(x)


            def relu_replacement(x):
                return torch.clamp(x, min=0.0)


            relu_as_clamp_1 = Rule("relu_as_clamp_1", relu_pattern, relu_replacement, note="test")
            """
        )
    )
    onnx_path = tmp_path / "mlp.onnx"
    onnx.save(zoo.export("keras_mlp"), str(onnx_path))
    outdir = tmp_path / "out"
    argv = ["convert", str(onnx_path), "-o", str(outdir), "-q", "--no-compile-check"]
    assert main([*argv, "--patterns", str(rules)]) == 0
    report = json.loads((outdir / "report.json").read_text())
    assert report["matches"]["relu_as_clamp_1"] == 2
    assert report["parity"]["passed"]
    assert "clamp(" in (outdir / "model.py").read_text()


def test_a_mismatch_is_written_and_exits_1(converted, tmp_path, capsys):
    onnx_path, _, _ = converted("vit_tiny")
    outdir = tmp_path / "out"
    argv = ["convert", str(onnx_path), "-o", str(outdir), "-q", "--no-compile-check"]
    assert main([*argv, "--atol", "1e-12"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match onnxruntime" in err[0], err
    assert (outdir / "model.py").is_file()
    assert not json.loads((outdir / "report.json").read_text())["parity"]["passed"]


# --------------------------------------------------------------------------- report / verify


def test_report_prints_tables_markdown_and_json(converted, capsys):
    _, outdir, _ = converted("vit_tiny")
    assert main(["report", str(outdir)]) == 0
    text = capsys.readouterr().out
    for heading in ("Model, before and after", "Rewrite rules", "Left unconverted", "Parity"):
        assert heading in text
    assert "PASSED" in text and "EncoderLayer" in text and "sdpa_1" in text
    assert main(["report", str(outdir), "--markdown"]) == 0
    assert "| rule | matches |" in capsys.readouterr().out
    assert main(["report", str(outdir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parity"]["passed"]


def test_verify_compares_a_folder_with_its_onnx(converted, capsys):
    onnx_path, outdir, _ = converted("vit_tiny")
    assert main(["verify", str(outdir), "--reference", str(onnx_path)]) == 0
    out = capsys.readouterr().out
    assert "logits" in out and "PASSED" in out


# --------------------------------------------------------------------------- bad input


def _hardmax_model() -> onnx.ModelProto:
    return make_model(
        [helper.make_node("Hardmax", ["x"], ["y"], name="Hardmax_0")],
        [tensor_info("x", np.float32, ["N", 3, 3])],
        [tensor_info("y", np.float32, ["N", 3, 3])],
    )


def _external_data_model(location: str) -> bytes:
    weight = numpy_helper.from_array(np.ones((3, 3), np.float32), "w")
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [tensor_info("x", np.float32, ["N", 3])],
        [tensor_info("y", np.float32, ["N", 3])],
        [weight],
    )
    (tensor,) = model.graph.initializer
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    return model.SerializeToString()


def _igamma_saved_model(path: Path) -> None:
    from fxsurgeon._compat import import_tensorflow

    tf = import_tensorflow()

    class Igamma(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": tf.math.igamma(x, x)}

    module = Igamma()
    tf.saved_model.save(module, str(path), signatures=module.__call__)


def _case(name: str, tmp: Path) -> tuple[list[str], str]:
    out = str(tmp / "out")
    if name == "missing file":
        return ["convert", str(tmp / "nope.onnx"), "-o", out], "no such file or directory"
    if name == "not a model":
        (tmp / "notes.txt").write_text("hello")
        return ["convert", str(tmp / "notes.txt"), "-o", out], "not a model fxsurgeon can convert"
    if name == "corrupt onnx":
        (tmp / "bad.onnx").write_bytes(b"\x00\x01 definitely not protobuf \xff" * 10)
        return ["convert", str(tmp / "bad.onnx"), "-o", out], "not a valid ONNX file"
    if name == "fake h5":
        (tmp / "fake.h5").write_text("not hdf5")
        return ["convert", str(tmp / "fake.h5"), "-o", out], "not an HDF5 file"
    if name == "folder without a SavedModel":
        (tmp / "empty").mkdir()
        return ["convert", str(tmp / "empty"), "-o", out], "not a SavedModel (no saved_model.pb)"
    if name == "op onnx2torch lacks":
        onnx.save(_hardmax_model(), str(tmp / "hardmax.onnx"))
        return ["convert", str(tmp / "hardmax.onnx"), "-o", out], "onnx2torch cannot convert it"
    if name == "external data at an absolute path":
        (tmp / "abs.onnx").write_bytes(_external_data_model("/etc/passwd"))
        return ["convert", str(tmp / "abs.onnx"), "-o", out], "an absolute path"
    if name == "external data outside the folder":
        (tmp / "model").mkdir()
        (tmp / "secret.bin").write_bytes(np.ones(9, np.float32).tobytes())
        (tmp / "model" / "up.onnx").write_bytes(_external_data_model("../secret.bin"))
        return ["convert", str(tmp / "model" / "up.onnx"), "-o", out], "outside the model's folder"
    if name == "op tf2onnx lacks":
        _igamma_saved_model(tmp / "igamma")
        return (
            ["convert", str(tmp / "igamma"), "-o", out],
            "tf2onnx cannot convert the TensorFlow op(s) Igamma",
        )
    if name == "bad --input":
        onnx.save(_hardmax_model(), str(tmp / "hardmax.onnx"))
        return ["convert", str(tmp / "hardmax.onnx"), "-o", out, "--input", "x"], "NAME:DIMS"
    if name == "missing --patterns":
        onnx.save(_hardmax_model(), str(tmp / "hardmax.onnx"))
        args = ["convert", str(tmp / "hardmax.onnx"), "-o", out, "--patterns", str(tmp / "no.py")]
        return args, "--patterns"
    if name == "report of a folder fxsurgeon did not write":
        return ["report", str(tmp)], "no report.json"
    raise AssertionError(name)


BAD_INPUTS = [
    "missing file",
    "not a model",
    "corrupt onnx",
    "fake h5",
    "folder without a SavedModel",
    "op onnx2torch lacks",
    "external data at an absolute path",
    "external data outside the folder",
    "op tf2onnx lacks",
    "bad --input",
    "missing --patterns",
    "report of a folder fxsurgeon did not write",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gets_one_line_and_status_2(case, tmp_path, capsys):
    argv, message = _case(case, tmp_path)
    status = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("fxsurgeon:")]
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("fxsurgeon: error: "), err
    assert message in lines[0], lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "model.py").exists()


def test_the_command_exits_2_without_traceback_unless_debug(tmp_path):
    command = [sys.executable, "-m", "fxsurgeon", "convert", str(tmp_path / "x.onnx"), "-o", "o"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    plain = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert plain.returncode == 2
    assert plain.stderr.strip().splitlines() == [
        f"fxsurgeon: error: {tmp_path / 'x.onnx'}: no such file or directory"
    ]
    debug = subprocess.run([*command, "--debug"], capture_output=True, text=True, env=env)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_demo_prints_no_log_line_and_no_warning():
    """`fxsurgeon demo` (tiny, no compile) in a fresh process with no TF_CPP_* set: stderr
    holds only the progress lines, stdout only the table; TF's C++ lines go to a file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    done = subprocess.run(
        [sys.executable, "-m", "fxsurgeon", "demo", "--tiny", "--no-compile"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if not line.startswith("- ")] == []
    assert "vit-tiny" in done.stdout and "Warning" not in done.stdout
    twin = next(line for line in done.stdout.splitlines() if line.startswith("native PyTorch twin"))
    assert float(twin.rsplit("vs TF ", 1)[1].rstrip(")")) <= 1e-5, twin  # the twin is the model
    log = done.stdout.rsplit("native log lines: in ", 1)[1].strip()
    assert Path(log).is_file()
