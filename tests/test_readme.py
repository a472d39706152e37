"""Every Python block of README.md and CONTRIBUTING.md runs, on a small Keras model
standing for "model.keras" (and its ONNX for "model.onnx")."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import fxsurgeon
from fxsurgeon._compat import import_tensorflow
from fxsurgeon.examples import randomize_variables

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def blocks(name: str) -> list[str]:
    return BLOCK.findall((ROOT / name).read_text())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    import_tensorflow()
    import keras  # Keras 3, what writes a .keras file (tf.keras may be tf_keras by now)

    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="swish")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(hidden))
    randomize_variables(model)
    where = tmp_path_factory.mktemp("readme")
    model.save(where / "model.keras")
    import onnx

    onnx.save(fxsurgeon.export_onnx(model), str(where / "model.onnx"))
    (where / "more_rules").mkdir()
    return where, model


@pytest.mark.parametrize("doc", ["README.md", "CONTRIBUTING.md"])
def test_every_python_block_runs(doc, workdir):
    where, keras_model = workdir
    found = blocks(doc)
    assert found
    old = os.getcwd()
    os.chdir(where)
    try:
        namespace = {"keras_model": keras_model, "fxsurgeon": fxsurgeon}
        for block in found:  # files the text asks you to write ("# my_rules.py")
            match = re.match(r"# (\w+\.py)", block.splitlines()[0])
            if match:
                (where / match.group(1)).write_text(block)
        for block in found:
            if "converted" not in namespace and "converted" in block.split("=", 1)[-1]:
                namespace["converted"] = fxsurgeon.from_tensorflow("model.keras")
            exec(compile(block, f"{doc} block", "exec"), namespace)  # noqa: S102
    finally:
        os.chdir(old)
