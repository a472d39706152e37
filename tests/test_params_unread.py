"""TF variables the exported function reads nowhere (training-only, unused layers).

The export records which variables the traced function reads (ONNX metadata
``fxsurgeon.tf_variables_read``). A floating-point variable it does not read
comes back as a parameter (a buffer, if not trainable) that no output depends
on, so ``parameters()`` holds what the TF model holds. One the function reads
but no initializer holds was folded away: it never comes back, and the import
warns. Without the record (an ONNX file fxsurgeon did not export) nothing is
attached.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import fxsurgeon
from fxsurgeon.frontdoor.variables import READ_VARIABLES_KEY
from fxsurgeon.pipeline import report_of


def _model():
    fxsurgeon._compat.import_tensorflow()
    import keras

    class SpecAugmentLike(keras.layers.Layer):
        """A Dense, plus two variables only the training branch reads."""

        def build(self, shape):
            self.dense = keras.layers.Dense(4, name="dense")
            self.dense.build(shape)
            self.spare = self.add_weight(name="spare", shape=(3, 4), initializer="random_normal")
            self.spare_stat = self.add_weight(
                name="spare_stat", shape=(4,), initializer="random_normal", trainable=False
            )

        def call(self, x, training=False):
            y = self.dense(x)
            if training:
                y = y + keras.ops.sum(self.spare) + self.spare_stat
            return y

    x = keras.Input((8,), name="x")
    model = keras.Model(x, SpecAugmentLike(name="extra")(x), name="toy")
    fxsurgeon.examples.randomize_variables(model, seed=4)
    return model


def _trainable(model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def _with_read(proto, names):
    for entry in list(proto.metadata_props):
        if entry.key == READ_VARIABLES_KEY:
            proto.metadata_props.remove(entry)
    if names is not None:
        entry = proto.metadata_props.add()
        entry.key, entry.value = READ_VARIABLES_KEY, json.dumps(sorted(names))
    return proto


def test_a_variable_no_output_reads_comes_back_as_a_parameter_that_holds_its_tf_value(tmp_path):
    from fxsurgeon.tensorflow import export_onnx, from_onnx

    model = _model()
    proto = export_onnx(model)
    read = json.loads({e.key: e.value for e in proto.metadata_props}[READ_VARIABLES_KEY])
    assert read == ["extra/dense/bias", "extra/dense/kernel"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing folded away: no warning
        converted = from_onnx(proto, tf_model=model)
    module = fxsurgeon.optimize(converted)

    assert report_of(module).trainable_after == _trainable(model) == 48
    origins = {o.tf_name: name for name, o in fxsurgeon.parameter_origins(module).items()}
    spare, stat = origins["extra/spare"], origins["extra/spare_stat"]
    layer = model.get_layer("extra")
    assert torch.equal(module.get_parameter(spare).detach(), torch.from_numpy(layer.spare.numpy()))
    assert torch.equal(module.get_buffer(stat), torch.from_numpy(layer.spare_stat.numpy()))
    assert stat in module.state_dict() and stat not in dict(module.named_parameters())
    assert any(spare in note for note in report_of(module).notes)
    assert not fxsurgeon.parameter_origins(module)[spare].read
    assert fxsurgeon.parameter_origins(module)[origins["extra/dense/kernel"]].read

    data = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    out = module(torch.from_numpy(data))
    assert np.abs(out.detach().numpy() - np.asarray(model(data))).max() <= 1e-5
    out.sum().backward()
    assert module.get_parameter(spare).grad is None  # no output depends on it, as in TF
    assert module.get_parameter(origins["extra/dense/kernel"]).grad is not None

    fxsurgeon.save(module, tmp_path)
    back = fxsurgeon.load(tmp_path)
    assert torch.equal(back.get_parameter(spare), module.get_parameter(spare))


@pytest.mark.parametrize("record", ["absent", "says_read"])
def test_without_the_record_or_when_the_function_reads_it_no_parameter_is_made_up(record):
    """No record: unknown whether it was read. Read but held by no initializer: folded
    away by the export, so a parameter for it would train nothing."""
    from fxsurgeon.tensorflow import export_onnx, from_onnx

    model = _model()
    read = None if record == "absent" else ["extra/dense/bias", "extra/dense/kernel", "extra/spare"]
    proto = _with_read(export_onnx(model), read)
    with pytest.warns(UserWarning, match="extra/spare"):
        converted = from_onnx(proto, tf_model=model)
    module = fxsurgeon.optimize(converted)

    assert report_of(module).trainable_after == _trainable(model) - 12
    tf_names = {o.tf_name for o in fxsurgeon.parameter_origins(module).values()}
    assert "extra/spare" not in tf_names
    assert "held by no ONNX initializer" in report_of(module).not_trainable["extra/spare"]


def _dangling_model():
    """A layer that computes a pooled output the model does not return (as a nested HF
    encoder computes its pooler), and a Dense on the path to the output."""
    fxsurgeon._compat.import_tensorflow()
    import keras

    class WithPooler(keras.layers.Layer):
        def build(self, shape):
            self.dense = keras.layers.Dense(4, name="dense")
            self.dense.build(shape)
            self.pooler = keras.layers.Dense(3, name="pooler")
            self.pooler.build((None, 4))

        def call(self, x):
            y = self.dense(x)
            return y, self.pooler(y)

    x = keras.Input((8,), name="x")
    sequence, _pooled = WithPooler(name="encoder")(x)
    model = keras.Model(x, sequence, name="toy")
    fxsurgeon.examples.randomize_variables(model, seed=5)
    return model


def test_a_variable_read_only_for_an_output_the_model_drops_is_not_read():
    """The traced function computes the pooler (it captures its variables) but no output
    depends on it: recorded as not read, so it comes back as a parameter no output reads."""
    from fxsurgeon.tensorflow import export_onnx, from_onnx

    model = _dangling_model()
    proto = export_onnx(model)
    read = json.loads({e.key: e.value for e in proto.metadata_props}[READ_VARIABLES_KEY])
    assert read == ["encoder/dense/bias", "encoder/dense/kernel"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing folded away: no warning
        module = fxsurgeon.optimize(from_onnx(proto, tf_model=model))
    assert report_of(module).trainable_after == _trainable(model) == 36 + 15
    origins = {o.tf_name: name for name, o in fxsurgeon.parameter_origins(module).items()}
    kernel = origins["encoder/pooler/kernel"]
    assert not fxsurgeon.parameter_origins(module)[kernel].read
    data = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    out = module(torch.from_numpy(data))
    assert np.abs(out.detach().numpy() - np.asarray(model(data))).max() <= 1e-5
    out.sum().backward()
    assert module.get_parameter(kernel).grad is None
