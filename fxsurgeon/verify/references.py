"""References: what the model is compared against (torch, ONNX via onnxruntime, Keras, SavedModel,
stored outputs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from fxsurgeon.errors import InputError

from .data import _Case, _Out, _Spec
from .running import _flatten_outputs, _keras_leaves, _run_torch, _to_out
from .signatures import _input_order, _keras_specs, _ort_dtype, _source_info, _spec_names, _tf_shape

# --------------------------------------------------------------------------- references


class _Reference:
    """Something that maps a case to a list of outputs."""

    description = "reference"
    specs: list[_Spec] | None = None
    module: torch.nn.Module | None = None  # set for torch references (fp64 rule)
    onnx_model: Any = None  # an onnx.ModelProto to look for embedding tables in
    tables_owner: Any = None  # a torch / Keras model to look for embedding tables in

    def run(self, case: _Case) -> list[_Out]:
        raise NotImplementedError

    def run_all(self, cases: list[_Case]) -> list[list[_Out]]:
        return [self.run(case) for case in cases]


class _TorchReference(_Reference):
    def __init__(self, module: torch.nn.Module):
        self.module = self.torch_module = module
        self.tables_owner = module
        self.description = f"torch module {type(module).__name__}"
        self.order = _input_order(_source_info(module))

    def run(self, case: _Case) -> list[_Out]:
        return _run_torch(self.torch_module, case, self.order)


class _OnnxReference(_Reference):
    def __init__(self, model: Any, path: str | None):
        import onnx

        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise InputError(
                "an ONNX reference is run with onnxruntime, which is not installed: "
                "pip install onnxruntime"
            ) from exc
        if path is not None:
            model = onnx.load(path, load_external_data=False)
        self.onnx_model = model
        self.description = f"ONNX model {path}" if path else "ONNX model"
        self.evaluator: Any = None
        try:
            self.session = ort.InferenceSession(
                path if path is not None else model.SerializeToString(),
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own, unrelated types
            if "NOT_IMPLEMENTED" not in str(exc):
                raise InputError(
                    f"onnxruntime cannot load the reference {self.description}: {exc}"
                ) from exc
            self._use_reference_evaluator(model, path, exc)
            return
        self.specs = [
            _Spec(
                i.name,
                tuple(d if isinstance(d, int) and d >= 0 else None for d in i.shape),
                _ort_dtype(i.type),
            )
            for i in self.session.get_inputs()
        ]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _use_reference_evaluator(self, model: Any, path: str | None, why: Exception) -> None:
        """onnxruntime has no kernel for an op of the model (a ``Where`` on booleans, which
        Keras 3's causal mask exports): the ONNX spec's own reference implementation
        (``onnx.reference``) runs it instead, slower but by the spec."""
        import onnx
        from onnx.reference import ReferenceEvaluator

        if path is not None:
            model = onnx.load(path)
        try:
            self.evaluator = ReferenceEvaluator(model)
        except Exception as exc:  # noqa: BLE001 - neither runtime can run it: say both
            raise InputError(
                f"onnxruntime cannot load the reference {self.description} ({why}), "
                f"nor can onnx's reference evaluator: {exc}"
            ) from exc
        self.description += f" (onnx's reference evaluator: onnxruntime: {str(why)[:200]})"
        initializers = {i.name for i in model.graph.initializer}
        self.specs = [
            _Spec(
                i.name,
                tuple(
                    d.dim_value if d.HasField("dim_value") else None
                    for d in i.type.tensor_type.shape.dim
                ),
                onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type),
            )
            for i in model.graph.input
            if i.name not in initializers
        ]
        self.output_names = [o.name for o in model.graph.output]

    def run(self, case: _Case) -> list[_Out]:
        feeds = dict(zip(_spec_names(self.specs), case.arrays, strict=True))
        if self.evaluator is not None:
            values = self.evaluator.run(self.output_names, feeds)
        else:
            values = self.session.run(self.output_names, feeds)
        return [_to_out(n, v) for n, v in zip(self.output_names, values, strict=True)]


class _KerasReference(_Reference):
    def __init__(self, model: Any, description: str):
        self.model = model
        self.tables_owner = model
        self.description = description
        self.specs, from_signature = _keras_specs(model)
        # Named inputs go in as a dict; a single functional input as a tensor.
        self.use_dict = self.specs is not None and (len(self.specs) > 1 or from_signature)

    def call(self, model: Any, arrays: list[np.ndarray]) -> Any:
        """``model`` (this reference's model or its float64 twin) on the arrays, as TF returns it."""
        tf = _import_tf(self.description)
        tensors = [tf.constant(a) for a in arrays]
        if self.use_dict:
            feed: Any = dict(zip(_spec_names(self.specs), tensors, strict=True))
        else:
            feed = tensors[0] if len(tensors) == 1 else tensors
        return model(feed, training=False)

    def run(self, case: _Case) -> list[_Out]:
        return [_to_out(n, v) for n, v in _keras_leaves(self.call(self.model, case.arrays))]


class _SavedModelReference(_Reference):
    def __init__(self, path: str):
        tf = _import_tf(f"the SavedModel {path}")
        loaded = tf.saved_model.load(path)
        signatures = getattr(loaded, "signatures", {})
        if "serving_default" not in signatures:
            raise InputError(f"the SavedModel {path} has no 'serving_default' signature to run")
        self.loaded = loaded  # keeps the variables of the signature alive
        self.fn = signatures["serving_default"]
        self.description = f"SavedModel {path}"
        kwargs = self.fn.structured_input_signature[1]
        self.specs = [
            _Spec(n, _tf_shape(s.shape), np.dtype(s.dtype.as_numpy_dtype))
            for n, s in kwargs.items()
        ]

    def run(self, case: _Case) -> list[_Out]:
        tf = _import_tf(self.description)
        result = self.fn(
            **{n: tf.constant(a) for n, a in zip(_spec_names(self.specs), case.arrays, strict=True)}
        )
        # tf.nest orders dict outputs by key, and so does an ONNX export of them.
        return [_to_out(k, result[k]) for k in sorted(result)]


class _StoredReference(_Reference):
    def __init__(self, outputs: Any):
        self.outputs = outputs
        self.description = "stored outputs"

    def run_all(self, cases: list[_Case]) -> list[list[_Out]]:
        if len(cases) == 1:
            return [_flatten_outputs(self.outputs)]
        if not isinstance(self.outputs, (list, tuple)) or len(self.outputs) != len(cases):
            raise InputError(
                f"stored outputs for {len(cases)} input cases must be a list with one entry "
                "per case"
            )
        return [_flatten_outputs(o) for o in self.outputs]


def _make_reference(reference: Any, inputs: Any) -> _Reference:
    if isinstance(reference, torch.nn.Module):
        return _TorchReference(reference)
    if isinstance(reference, (str, os.PathLike)):
        return _reference_from_path(os.fspath(reference))
    import onnx

    if isinstance(reference, onnx.ModelProto):
        return _OnnxReference(reference, None)
    if _is_tensorflow_object(reference):
        if not callable(reference):
            raise InputError(f"the TensorFlow reference {type(reference).__name__} is not callable")
        return _KerasReference(reference, f"Keras model {type(reference).__name__}")
    if _is_stored_outputs(reference):
        if inputs is None:
            raise InputError(
                "a reference given as stored outputs needs inputs= (the inputs that made them)"
            )
        return _StoredReference(reference)
    raise InputError(
        f"unsupported reference type {type(reference).__module__}.{type(reference).__name__}: "
        "expected a Keras model, a SavedModel directory, a .keras/.h5/.onnx path, an "
        "onnx.ModelProto, a torch.nn.Module, or stored outputs (arrays / tensors)"
    )


def _reference_from_path(path: str) -> _Reference:
    if not os.path.exists(path):
        raise InputError(f"the reference path does not exist: {path}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".onnx":
        return _OnnxReference(None, path)
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise InputError(
                f"the reference directory {path} is not a SavedModel (no saved_model.pb)"
            )
        return _SavedModelReference(path)
    if suffix in (".keras", ".h5"):
        _import_tf(f"the Keras model {path}")
        if suffix == ".h5":
            try:
                import tf_keras as keras
            except ImportError:
                import keras
        else:
            import keras
        return _KerasReference(keras.models.load_model(path, compile=False), f"Keras model {path}")
    raise InputError(
        f"unsupported reference file {path}: expected a SavedModel directory or a "
        ".keras, .h5 or .onnx file"
    )


def _import_tf(what: str) -> Any:
    from fxsurgeon import _compat

    try:
        return _compat.import_tensorflow()
    except ImportError as exc:
        raise InputError(
            f"{what} needs TensorFlow to run, and TensorFlow is not installed: "
            "pip install 'fxsurgeon[tf]'"
        ) from exc


def _is_tensorflow_object(obj: Any) -> bool:
    roots = {"keras", "tf_keras", "tensorflow"}
    return any(cls.__module__.split(".")[0] in roots for cls in type(obj).__mro__)


def _is_leaf_value(obj: Any) -> bool:
    return isinstance(obj, (np.ndarray, np.generic, torch.Tensor))


def _is_stored_outputs(obj: Any) -> bool:
    if _is_leaf_value(obj):
        return True
    if isinstance(obj, Mapping):
        return bool(obj) and all(_is_stored_outputs(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return bool(obj) and all(_is_stored_outputs(v) for v in obj)
    return False
