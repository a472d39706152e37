"""The TensorFlow export: Keras / SavedModel -> ONNX (tf2onnx), the first half of the front door.

``from_tensorflow(model)`` is ``export_onnx`` + ``from_onnx``; the GraphModule
carries a `fxsurgeon.source.SourceInfo` on ``gm.meta["fxsurgeon.source"]``.

What the export does on top of plain tf2onnx, and why:

* **Dynamic batch (and sequence) dims.** Dim 0 of every input is ``None``, and
  dim 1 of the integer token inputs (``input_ids``, ``attention_mask``,
  ``token_type_ids``, ...) too, whatever the model's own signature says.
* **Dims the model's Python reads stay static.** A model that reads one of those
  dynamic dims as a Python int (``x.shape[1] + n``) cannot be traced with it None:
  the fewest such dims are set back to their signature size, the others stay
  dynamic, and the ONNX metadata records each with its failure
  (`fxsurgeon.frontdoor.static_dims`; ``optimize``'s ``report.forced_dims``).
* **Variables named.** A variable captured under a bare number (a loaded SavedModel's
  function) names its initializer after itself (`variables.name_variable_initializers`);
  a SavedModel signature's outputs are in key order, TF's own.
* **Named, ordered inputs and outputs.** The graph inputs are in signature
  order (a dict signature keeps its key order). Hugging Face outputs are every
  tensor field of the ``ModelOutput``, in its order and under its names
  (``logits``; ``last_hidden_state``, ``pooler_output``); non-tensor fields
  such as ``past_key_values`` are dropped. A Keras model's outputs are named by
  ``model.output_names`` (else ``output_0``, ``output_1``, ...).
* **No weight-destroying optimizations.** tf2onnx's ``merge_duplication``
  merges initializers with equal values (two freshly initialised variables
  become one): it is left out. ``remove_back_to_back`` folds BatchNormalization
  into the preceding Conv (gamma, beta and the moving statistics are gone): it
  runs without that one fold. The rest of tf2onnx's optimizers run.
* **Valid exact GELU.** tf2onnx passes TF's ``Erfc`` (from ``gelu`` with
  ``approximate=False``) through as an ``Erfc`` node, which ONNX does not have;
  it is rewritten as ``Sub(1, Erf(x))``.
* **Keras' output_padding as ONNX's.** tf2onnx writes ``Conv2DTranspose(output_padding=1)``
  as the end pads ``-1``, which ONNX's shape inference and onnxruntime refuse; they become
  ``output_padding`` (the same output size, the new positions the bias).
* **Contrib ops that are ONNX ops.** tf2onnx may write a dynamic ``tf.range`` as
  ``com.microsoft`` Range without importing that domain (an invalid model); it is
  ONNX's Range, and gets the ONNX domain.
* **Op handlers corrected** (`fxsurgeon.frontdoor.tf_handlers`): every Select is
  exported as ONNX ``Where`` (tf2onnx's mul/add form turns a masked ``-inf`` into
  NaN), and integer FloorMod/FloorDiv round toward minus infinity as TF's do
  (tf2onnx's truncate: Swin's shifted-window mask came out half empty).

* **Every variable an initializer of its own, no captured inputs, XLA calls
  inlined.** The conversion is `fxsurgeon.frontdoor.freeze.convert_function`
  rather than tf2onnx's ``from_function``: captured eager constants are frozen
  (not graph inputs), calls Keras compiles with XLA (grouped ``Conv2D``) are
  inlined, and no constant folder combines a variable with other constants, so
  Keras 3's BatchNormalization keeps gamma, beta and the moving statistics (as
  ``Add``/``Sqrt``/``Reciprocal``/``Mul``/``Sub`` on them; tf-keras emits a
  ``BatchNormalization`` node) and the preceding Conv keeps its own kernel.

Limits: TensorFlow's graph optimizer still simplifies ``x + 0``, so an all-zero
bias can be absent. ``from_onnx`` warns about trainable variables that the
traced function reads and no initializer holds. The names of the variables it
reads are kept in the model's metadata (``fxsurgeon.tf_variables_read``): a
variable it does not read (training-only, an unused layer) comes back as a
parameter no output depends on (`fxsurgeon.params`).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from .._compat import import_tensorflow
from ..errors import InputError
from .freeze import convert_function
from .static_dims import record_static_dims, traceable_specs
from .tf_handlers import corrected_handlers
from .tf_tables import shape_outputs
from .variables import name_variable_initializers, record_read_variables

#: Integer inputs whose dim 1 (the sequence) is made dynamic, besides the batch dim.
TOKEN_INPUTS = frozenset(
    {
        "input_ids",
        "attention_mask",
        "token_type_ids",
        "position_ids",
        "decoder_input_ids",
        "decoder_attention_mask",
    }
)

#: The tf2onnx back-to-back handler that folds BatchNormalization into a Conv.
_CONV_BATCHNORM = ("Conv", "BatchNormalization")
#: The tf2onnx back-to-back handler that merges Reshape(Reshape(x, a), b) into Reshape(x, b).
_RESHAPE = ("Reshape",)

_TORCH_DTYPES: dict[int, torch.dtype] = {
    TensorProto.FLOAT: torch.float32,
    TensorProto.DOUBLE: torch.float64,
    TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16,
    TensorProto.INT8: torch.int8,
    TensorProto.INT16: torch.int16,
    TensorProto.INT32: torch.int32,
    TensorProto.INT64: torch.int64,
    TensorProto.UINT8: torch.uint8,
    TensorProto.BOOL: torch.bool,
    TensorProto.COMPLEX64: torch.complex64,
    TensorProto.COMPLEX128: torch.complex128,
}


# --------------------------------------------------------------------------- loading


def load_model(path: str | Path) -> Any:
    """Load a TensorFlow model from disk for export.

    * a directory written by tf-keras ``model.save`` (it has ``keras_metadata.pb``):
      ``tf_keras.models.load_model``;
    * any other SavedModel directory: ``tf.saved_model.load`` (exported through
      its ``serving_default`` signature);
    * ``.keras``: Keras 3 ``keras.models.load_model``;
    * ``.h5`` / ``.hdf5``: tf-keras, else Keras 3.

    Raises `InputError` naming the path when it is missing or cannot be loaded.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    tf = import_tensorflow()
    suffix = path.suffix.lower()
    loaders: list[Any]
    if path.is_dir():
        if (path / "keras_metadata.pb").exists():
            loaders = [_tf_keras_loader()]
        else:
            loaders = [tf.saved_model.load]
    elif suffix == ".keras":
        loaders = [_keras_loader()]
    elif suffix in (".h5", ".hdf5"):
        loaders = [_tf_keras_loader(), _keras_loader()]
    else:
        raise InputError(
            f"{path}: not a SavedModel directory, .keras or .h5 file (to convert an "
            "ONNX file use fxsurgeon.tensorflow.from_onnx)"
        )
    errors = []
    for loader in loaders:
        try:
            return loader(str(path))
        except Exception as exc:  # noqa: BLE001 - any loader failure means "cannot load"
            errors.append(f"{type(exc).__name__}: {exc}")
    raise InputError(f"{path}: cannot load it as a TensorFlow model ({'; '.join(errors)})")


def _keras_loader() -> Any:
    import keras

    return lambda p: keras.models.load_model(p, compile=False)


def _tf_keras_loader() -> Any:
    import tf_keras

    return lambda p: tf_keras.models.load_model(p, compile=False)


# --------------------------------------------------------------------------- export


@dataclass
class _Traceable:
    """A model reduced to what the export needs: named input specs and a call on them."""

    specs: list[Any]  # tf.TensorSpec, each with its input name
    call: Any  # dict name -> tensor  ->  model output (any structure)
    output_names: list[str] | None  # names for a positional (non-dict) output


def export_onnx(
    model_or_path: Any,
    input_signature: Any = None,
    *,
    opset: int = 17,
    dynamic_axes: Mapping[str, Sequence[int]] | None = None,
) -> onnx.ModelProto:
    """Export a TensorFlow model to ONNX with tf2onnx, keeping every weight distinct.

    Args:
        model_or_path: a tf-keras or Keras 3 (TensorFlow backend) model, a
            Hugging Face TF model, or a path (see `load_model`).
        input_signature: ``None`` to take it from the model (functional Keras
            ``model.inputs``; a Hugging Face model's ``input_signature``; a
            SavedModel's ``serving_default``), else a ``tf.TensorSpec``, a list of
            them (the model is called on the list, or on the one tensor), or a
            dict name -> ``tf.TensorSpec`` (the model is called on the dict).
            Input names are the dict keys, else the spec names, else ``input_<i>``.
        opset: the ONNX opset.
        dynamic_axes: input name -> more axes to make dynamic. Dim 0 of every
            input, and dim 1 of `TOKEN_INPUTS`, are always dynamic, unless the
            model's own Python cannot be traced with them so: then the fewest of
            them are kept at their signature size (module docstring).

    Returns:
        A checked ``onnx.ModelProto``; see the module docstring for what differs
        from plain tf2onnx (names, optimizers, ``Erfc``).
    """
    model = load_model(model_or_path) if isinstance(model_or_path, (str, Path)) else model_or_path
    tf = import_tensorflow()
    traceable = _traceable(model, input_signature, tf)
    specs = _dynamic_specs(traceable.specs, dynamic_axes or {}, tf)
    input_names = [s.name for s in specs]

    names: list[str] = []  # output names, filled in while tracing

    def flat_call(*tensors: Any) -> list[Any]:
        out = traceable.call(dict(zip(input_names, tensors, strict=True)))
        named = _named_outputs(out, traceable.output_names, tf)
        names[:] = [name for name, _ in named]
        return [t for _, t in named]

    traced: dict[str, Any] = {}  # repr of the specs -> the function traced on them

    def trace(trial: list[Any]) -> None:
        function = tf.function(flat_call, input_signature=trial)
        function.get_concrete_function(*trial)
        traced[repr(trial)] = function

    with quiet_tensorflow():  # the dims the model's Python cannot trace dynamic stay static
        specs, static = traceable_specs(trace, specs, traceable.specs, tf)
    function = traced[repr(specs)]
    with _quiet_about_erfc(), quiet_tensorflow(), corrected_handlers():
        proto = convert_function(
            function, specs, opset=opset, optimizers=_weight_preserving_optimizers()
        )
    _rename_outputs(proto, names)
    _replace_erfc(proto)
    _output_padding(proto.graph)
    _standard_contrib_ops(proto.graph)
    shape_outputs(proto)  # those TF knew no shape for (a table lookup's)
    concrete = function.get_concrete_function(*specs)
    record_read_variables(proto, model, concrete)
    name_variable_initializers(proto, model, concrete)
    record_static_dims(proto, static)
    onnx.checker.check_model(proto)
    return proto


def tf_call(model: Any, input_signature: Any = None) -> tuple[list[str], Any]:
    """How `export_onnx` calls `model`: its input names in the ONNX graph's order, and a
    function of a dict name -> tensor giving the (name, tensor) outputs the ONNX graph has,
    in its order (a gradient tape can watch it: the scoreboard's TF gradients)."""
    tf = import_tensorflow()
    traceable = _traceable(model, input_signature, tf)

    def call(tensors: Mapping[str, Any]) -> list[tuple[str, Any]]:
        return _named_outputs(traceable.call(dict(tensors)), traceable.output_names, tf)

    return [s.name for s in traceable.specs], call


def _traceable(model: Any, signature: Any, tf: Any) -> _Traceable:
    """How to call ``model`` on named tensors, and the named specs it takes."""
    if _is_keras_model(model):
        output_names = list(getattr(model, "output_names", None) or []) or None
        if signature is None:
            signature = _keras_signature(model, tf)
        if isinstance(signature, Mapping):
            specs = [_spec(tf, spec, name) for name, spec in signature.items()]
            return _Traceable(specs, lambda x: model(x, training=False), output_names)
        if isinstance(signature, tf.TensorSpec):
            signature = [signature]
        specs = [_spec(tf, spec, spec.name or f"input_{i}") for i, spec in enumerate(signature)]
        if len(specs) == 1:
            return _Traceable(
                specs, lambda x: model(x[specs[0].name], training=False), output_names
            )
        return _Traceable(
            specs, lambda x: model([x[s.name] for s in specs], training=False), output_names
        )
    serving = getattr(model, "signatures", {}).get("serving_default")
    if serving is not None:
        if signature is None:
            signature = serving.structured_input_signature[1]
        if not isinstance(signature, Mapping):
            raise InputError(
                "a SavedModel is called with keyword inputs: give input_signature as a "
                "dict name -> tf.TensorSpec"
            )
        specs = [_spec(tf, spec, name) for name, spec in signature.items()]
        return _Traceable(specs, lambda x: _sorted_outputs(serving(**x)), None)
    raise InputError(
        f"cannot export a {type(model).__module__}.{type(model).__qualname__}: expected a "
        "Keras model, a SavedModel with a serving_default signature, or a path to one"
    )


def _sorted_outputs(out: Mapping[str, Any]) -> dict[str, Any]:
    """A signature's outputs in TF's own order for them, by key (``tf.nest.flatten``'s, the
    order of the function's ``outputs``): a loaded signature returns a dict whose order is
    that of the SavedModel's protobuf map, which may differ from one load to the next."""
    return {k: out[k] for k in sorted(out)}


def _is_keras_model(model: Any) -> bool:
    for module_name in ("tf_keras", "keras"):
        with contextlib.suppress(ImportError):
            if isinstance(model, importlib.import_module(module_name).Model):
                return True
    return False


def _keras_signature(model: Any, tf: Any) -> Any:
    """A Keras model's own input signature: HF ``input_signature``, else ``model.inputs``."""
    hf_signature = getattr(type(model), "input_signature", None)
    if isinstance(hf_signature, property):
        try:
            return dict(model.input_signature)
        except NotImplementedError as exc:
            raise InputError(f"{type(model).__name__}: pass input_signature ({exc})") from exc
    try:
        inputs = model.inputs
    except AttributeError:
        inputs = None
    if not inputs:
        raise InputError(
            f"{type(model).__name__} has no defined inputs (a subclassed or unbuilt "
            "Sequential model): pass input_signature, e.g. "
            "[tf.TensorSpec((None, 224, 224, 3), tf.float32, name='image')]"
        )
    return [
        tf.TensorSpec(
            tuple(t.shape), tf.as_dtype(t.dtype), name=str(t.name).split(":")[0] or f"input_{i}"
        )
        for i, t in enumerate(inputs)
    ]


def _spec(tf: Any, spec: Any, name: str) -> Any:
    if not isinstance(spec, tf.TensorSpec):
        raise InputError(
            f"input_signature: {name!r} is a {type(spec).__name__}, not a tf.TensorSpec"
        )
    return tf.TensorSpec(spec.shape, spec.dtype, name=name)


def _dynamic_specs(
    specs: list[Any], dynamic_axes: Mapping[str, Sequence[int]], tf: Any
) -> list[Any]:
    """The specs with dim 0, dim 1 of token inputs and ``dynamic_axes`` set to None."""
    unknown = set(dynamic_axes) - {s.name for s in specs}
    if unknown:
        raise InputError(
            f"dynamic_axes names {sorted(unknown)}, not inputs "
            f"(the inputs are {[s.name for s in specs]})"
        )
    out = []
    for spec in specs:
        if spec.shape.rank is None:
            out.append(spec)
            continue
        dims = list(spec.shape.as_list())
        axes = set(dynamic_axes.get(spec.name, ()))
        axes.add(0)
        if spec.name in TOKEN_INPUTS and spec.dtype.is_integer:
            axes.add(1)
        for axis in axes:
            if -len(dims) <= axis < len(dims):
                dims[axis] = None
        out.append(tf.TensorSpec(dims, spec.dtype, name=spec.name))
    return out


def _named_outputs(out: Any, output_names: list[str] | None, tf: Any) -> list[tuple[str, Any]]:
    """(name, tensor) for every tensor output, in the model's order."""
    if isinstance(out, Mapping):  # dicts and Hugging Face ModelOutput
        return [(str(k), v) for k, v in out.items() if tf.is_tensor(v)]
    items = list(out) if isinstance(out, (list, tuple)) else [out]
    if not (
        output_names and len(output_names) == len(items) and len(set(output_names)) == len(items)
    ):
        output_names = [f"output_{i}" for i in range(len(items))]
    return [(name, t) for name, t in zip(output_names, items, strict=True) if tf.is_tensor(t)]


def _weight_preserving_optimizers() -> OrderedDict[str, Any]:
    """tf2onnx's optimizers minus ``merge_duplication`` and the Conv+BatchNorm fold.

    ``remove_back_to_back`` is kept but without its Conv+BatchNormalization
    handler: its other handlers collapse the Transpose pairs that the transpose
    optimizer leaves around every NHWC op (hundreds in a ResNet).
    """
    from tf2onnx import optimizer
    from tf2onnx.optimizer import back_to_back_optimizer

    class BackToBackKeepingBatchNorm(back_to_back_optimizer.BackToBackOptimizer):
        def _optimize_at_current_graph_level(self, g: Any) -> Any:
            handlers = back_to_back_optimizer._func_map
            chosen = {ops: h for ops, h in handlers.items() if ops != _CONV_BATCHNORM}
            if _RESHAPE in chosen:
                chosen[_RESHAPE] = _reshape_merge_without_copied_dims(chosen[_RESHAPE])
            back_to_back_optimizer._func_map = chosen
            try:
                return super()._optimize_at_current_graph_level(g)
            finally:
                back_to_back_optimizer._func_map = handlers

    return OrderedDict(
        (name, BackToBackKeepingBatchNorm if name == "remove_back_to_back" else factory)
        for name, factory in optimizer._optimizers.items()
        if name != "merge_duplication"
    )


def _reshape_merge_without_copied_dims(merge: Any) -> Any:
    """tf2onnx's Reshape+Reshape merge, only where it is exact.

    ``Reshape(Reshape(x, a), b)`` is ``Reshape(x, b)`` unless ``b`` has a 0 (ONNX:
    copy that dim of the input, here ``Reshape(x, a)``'s, not ``x``'s) or is not
    a constant. tf2onnx merges regardless, which breaks e.g. a Tensordot
    ``[B*S, C] -> [B, S, C]`` followed by a head split ``[0, 0, H, D]``.
    """

    def handler(g: Any, node: Any, consumers: Any) -> Any:
        if len(consumers) == 1 and consumers[0].type == "Reshape":
            shape = consumers[0].inputs[1]
            if shape is None or not shape.is_const():
                return []
            if 0 in np.asarray(shape.get_tensor_value(as_list=False)).reshape(-1):
                return []
        return merge(g, node, consumers)

    return handler


class _ErfcLogFilter(logging.Filter):
    """Drops tf2onnx's "not supported" errors about ``Erfc``, which `_replace_erfc` handles."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        erfc_op = message.startswith("Tensorflow op [") and message.endswith(
            ": Erfc] is not supported"
        )
        return not (
            erfc_op or re.fullmatch(r"Unsupported ops: Counter\(\{'Erfc': \d+\}\)", message)
        )


#: Python loggers that TensorFlow and tf2onnx write their progress and notices to.
_TF_LOGGERS = ("tensorflow", "tf2onnx", "absl", "h5py")


@contextlib.contextmanager
def quiet_tensorflow() -> Iterator[None]:
    """TensorFlow's, absl's and tf2onnx's logs and Python warnings silenced; errors still shown.

    TF's C++ logs are set by ``TF_CPP_MIN_LOG_LEVEL``, which `import_tensorflow`
    sets (to 2: errors only) unless the user did before TensorFlow is imported.
    Here the Python loggers are raised to ERROR and warnings ignored for the
    duration of the call; an exception still propagates as it is.
    """
    loggers = [logging.getLogger(name) for name in _TF_LOGGERS]
    levels = [logger.level for logger in loggers]
    absl_level = None
    absl_logging: Any = None
    try:
        from absl import logging as absl_logging

        absl_level = absl_logging.get_verbosity()
        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # pragma: no cover - absl comes with TensorFlow
        pass
    for logger in loggers:
        logger.setLevel(max(logger.level, logging.ERROR))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        if absl_logging is not None and absl_level is not None:
            absl_logging.set_verbosity(absl_level)


@contextlib.contextmanager
def _quiet_about_erfc() -> Iterator[None]:
    logger = logging.getLogger("tf2onnx.tfonnx")
    log_filter = _ErfcLogFilter()
    logger.addFilter(log_filter)
    try:
        yield
    finally:
        logger.removeFilter(log_filter)


def _rename_outputs(model: onnx.ModelProto, names: list[str]) -> None:
    """Give the graph outputs the model's output names (tf2onnx calls them ``Identity:0``)."""
    graph = model.graph
    taken = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    taken |= {o for n in graph.node for o in n.output}
    renames = {}
    for output, name in zip(graph.output, names, strict=True):
        if output.name == name:
            continue
        new = name if name not in taken else f"{name}_output"
        renames[output.name] = new
        taken.add(new)
    if not renames:
        return
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for value in list(graph.output) + list(graph.value_info):
        value.name = renames.get(value.name, value.name)


def _replace_erfc(model: onnx.ModelProto) -> None:
    """Rewrite every ``Erfc(x)`` (not an ONNX op) as ``Sub(1, Erf(x))``."""
    graph = model.graph
    if not any(n.op_type == "Erfc" for n in graph.node):
        return
    elem_types = _elem_types(model)
    nodes = []
    for node in graph.node:
        if node.op_type != "Erfc":
            nodes.append(node)
            continue
        x, y = node.input[0], node.output[0]
        one = f"{node.name}__one"
        erf = f"{node.name}__erf"
        dtype = helper.tensor_dtype_to_np_dtype(elem_types.get(x, TensorProto.FLOAT))
        graph.initializer.append(numpy_helper.from_array(np.array(1, dtype=dtype), one))
        nodes.append(helper.make_node("Erf", [x], [erf], name=f"{node.name}__Erf"))
        nodes.append(helper.make_node("Sub", [one, erf], [y], name=node.name))
    del graph.node[:]
    graph.node.extend(nodes)


#: contrib ops tf2onnx may write (without importing their domain) that are standard ONNX
#: ops of the same name and meaning: ``com.microsoft`` Range is ONNX Range (opset 11) with
#: delta optional; tf2onnx writes all three inputs (a dynamic ``tf.range`` in CLIP's text
#: embeddings)
_CONTRIB_AS_STANDARD = {("com.microsoft", "Range", 3)}


def _output_padding(graph: onnx.GraphProto) -> None:
    """A ConvTranspose's negative end pads become its ``output_padding``: the same size
    (``- pad`` and ``+ output_padding`` alike), the extra positions no input reaches."""
    for node in graph.node:
        if node.op_type != "ConvTranspose":
            continue
        attrs = {a.name: a for a in node.attribute}
        if "pads" not in attrs or min(attrs["pads"].ints, default=0) >= 0:
            continue
        pads = list(attrs["pads"].ints)
        spatial = len(pads) // 2
        extra = list(attrs["output_padding"].ints) if "output_padding" in attrs else [0] * spatial
        for i in range(spatial):
            if pads[spatial + i] < 0:
                extra[i] -= pads[spatial + i]
                pads[spatial + i] = 0
        for name, values in (("pads", pads), ("output_padding", extra)):
            if name in attrs:
                node.attribute.remove(attrs[name])
            node.attribute.append(onnx.helper.make_attribute(name, values))


def _standard_contrib_ops(graph: onnx.GraphProto) -> None:
    """Give each contrib op of `_CONTRIB_AS_STANDARD` the ONNX domain, in subgraphs too."""
    for node in graph.node:
        if (node.domain, node.op_type, len(node.input)) in _CONTRIB_AS_STANDARD:
            node.domain = ""
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                _standard_contrib_ops(sub)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor whose type is known, after ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {t.name: t.data_type for t in graph.initializer}
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.type.tensor_type.elem_type:
            types[value.name] = value.type.tensor_type.elem_type
    return types
