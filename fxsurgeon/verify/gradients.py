"""Gradients: the same loss on both sides, each torch parameter's gradient against its TF
variable's.
"""

from __future__ import annotations

import contextlib
import copy
import math
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fxsurgeon.errors import InputError

from .compare import _abs_diff, _match_outputs
from .data import _TINY, _Case, _fmt, _Out
from .references import _import_tf, _KerasReference
from .results import GradientResult
from .running import _keras_leaves, _leaves
from .signatures import _input_order, _source_info

if TYPE_CHECKING:
    from .api import Prepared


# --------------------------------------------------------------------------- gradients

#: dtype -> (rtol, atol) of the gradient comparison; float32's atol is relative to the
#: largest TF gradient of the model (see "Gradients" in the module docstring).
_GRADIENT_TOL = {torch.float64: (1e-4, 1e-6), torch.float32: (1e-4, 1e-6)}
_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compare_gradients(
    model: torch.nn.Module,
    prepared: Prepared,
    dtype: torch.dtype,
    rtol: float | None,
    atol: float | None,
    seed: int,
) -> tuple[list[GradientResult], list[str]]:
    """Parameter gradients of one fixed random loss on the outputs, torch against TF."""
    ref = prepared.reference
    if not isinstance(ref, _KerasReference):
        raise InputError(
            "gradients=True compares with TensorFlow's gradients: the reference must be a "
            f"Keras model (a model object, a .keras or .h5 file), got {ref.description}"
        )
    if dtype not in _GRADIENT_TOL:
        raise InputError(f"gradient_dtype must be torch.float64 or torch.float32, got {dtype}")
    from fxsurgeon.params import parameter_origins

    try:
        origins = parameter_origins(model)  # type: ignore[arg-type]
    except (ValueError, AttributeError):
        raise InputError(
            "gradients=True pairs parameters with TF variables by fxsurgeon.parameter_origins: "
            "the model must be one fxsurgeon.optimize returned"
        ) from None
    tf = _import_tf(ref.description)
    keras_model = ref.model if dtype == torch.float32 else _keras_twin(ref.model, "float64")
    variables = _variables_by_name(ref.model, keras_model)
    default_rtol, default_atol = _GRADIENT_TOL[dtype]
    rtol = default_rtol if rtol is None else rtol
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    module = copy.deepcopy(model).to(dtype).eval()
    info = _source_info(model) or prepared.model_info
    order = _input_order(info)
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    notes = [
        "gradients: loss = sum over outputs of mean over the batch of sum(w * y^2), w fixed "
        f"random; compared in {str(dtype).removeprefix('torch.')}"
        + (
            " (the Keras model rebuilt in float64 with the same values)"
            if dtype == torch.float64
            else ""
        )
    ]
    results: list[GradientResult] = []
    for index, case in enumerate(prepared.cases):
        arrays = [a.astype(np_dtype) if a.dtype.kind == "f" else a for a in case.arrays]
        # TensorFlow
        watched = {origins[n].tf_name: variables.get(origins[n].tf_name) for n, _ in params}
        tf_vars = [v for v in watched.values() if v is not None]
        with tf.GradientTape() as tape:
            tf_out = _keras_leaves(ref.call(keras_model, arrays))
            # torch, on the same inputs (weights need the output shapes)
            module.zero_grad(set_to_none=True)
            torch_out = _torch_leaves(module, _Case(case.names, arrays, case.batch), order, info)
            pairs = _loss_pairs(torch_out, tf_out)
            weights = _loss_weights(pairs, seed, index)
            tf_loss = _tf_loss(tf, [t for _, t in pairs], weights)
        grads = tape.gradient(tf_loss, tf_vars) if tf_vars else []
        tf_grads = {
            id(v): (None if g is None else np.array(tf.convert_to_tensor(g)))
            for v, g in zip(tf_vars, grads, strict=True)
        }
        _torch_loss([t for t, _ in pairs], weights).backward()
        largest = max(
            (float(np.abs(g).max()) for g in tf_grads.values() if g is not None and g.size),
            default=0.0,
        )
        use_atol = (
            atol
            if atol is not None
            else default_atol * (largest if dtype == torch.float32 else 1.0)
        )
        for name, param in params:
            origin = origins[name]
            variable = watched.get(origin.tf_name)
            tf_grad = tf_grads.get(id(variable)) if variable is not None else None
            results.append(
                _compare_gradient(
                    name, origin, param, variable, tf_grad, index, case.batch, use_atol, rtol
                )
            )
    return results, notes


def _torch_leaves(
    module: torch.nn.Module, case: _Case, order: list[str] | None, info: Any
) -> list[tuple[str | None, torch.Tensor]]:
    """The model's outputs on the case, with autograd, named after its SourceInfo."""
    arrays = case.arrays
    if order is not None and case.names is not None and set(order) == set(case.names):
        by_name = dict(zip(case.names, arrays, strict=True))
        arrays = [by_name[n] for n in order]
    leaves = _leaves(module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)))
    names = list(getattr(info, "output_names", None) or [])
    if not all(n for n, _ in leaves) and len(names) == len(leaves):
        leaves = [(n, v) for n, (_, v) in zip(names, leaves, strict=True)]
    return leaves


def _loss_pairs(torch_out: list, tf_out: list) -> list[tuple[torch.Tensor, Any]]:
    """(torch output, TF output) pairs, matched as `verify` matches outputs; floats only."""
    cand = [_Out(n, np.empty(0), "") for n, _ in torch_out]
    ref = [_Out(n, np.empty(0), "") for n, _ in tf_out]
    pairs = []
    for _, ci, ri in _match_outputs(cand, ref):
        if ci is None or ri is None:
            continue
        t, f = torch_out[ci][1], tf_out[ri][1]
        if t.is_floating_point() and tuple(t.shape) == tuple(f.shape) and f.dtype.is_floating:
            pairs.append((t, f))
    if not pairs:
        raise InputError("gradients=True: the model and the reference share no floating output")
    return pairs


def _loss_weights(pairs: list, seed: int, case: int) -> list[np.ndarray]:
    rng = np.random.default_rng([seed, 1, case])
    return [rng.standard_normal(tuple(t.shape[1:])) for t, _ in pairs]


def _torch_loss(outputs: list[torch.Tensor], weights: list[np.ndarray]) -> torch.Tensor:
    total = torch.zeros((), dtype=outputs[0].dtype)
    for y, w in zip(outputs, weights, strict=True):
        term = torch.from_numpy(w).to(y.dtype) * y * y
        total = total + (term.reshape(y.shape[0], -1).sum(1).mean() if y.dim() else term)
    return total


def _tf_loss(tf: Any, outputs: list[Any], weights: list[np.ndarray]) -> Any:
    total = 0.0
    for y, w in zip(outputs, weights, strict=True):
        term = tf.constant(w, dtype=y.dtype) * y * y
        if len(y.shape):
            term = tf.reduce_mean(tf.reduce_sum(tf.reshape(term, [tf.shape(y)[0], -1]), axis=1))
        total += term
    return total


def _compare_gradient(
    name: str,
    origin: Any,
    param: torch.Tensor,
    variable: Any,
    tf_grad: np.ndarray | None,
    case: int,
    batch: int | None,
    atol: float,
    rtol: float,
) -> GradientResult:
    shape = tuple(param.shape)
    result = GradientResult(
        name, origin.tf_name, case, batch, shape, 0.0, math.inf, math.inf, None, atol, rtol, False
    )
    if variable is None:
        return replace(result, message=f"the reference has no TF variable {origin.tf_name!r}")
    expected = torch.zeros(shape, dtype=torch.float64)
    if tf_grad is not None:
        expected = torch.from_numpy(tf_grad).to(torch.float64)
        if origin.perm is not None:
            expected = expected.permute(origin.perm)
        elif tuple(expected.shape) != shape:
            return replace(
                result,
                passed=True,
                compared=False,
                message=f"layout of {origin.tf_name} unknown (TF shape {tuple(expected.shape)}, "
                f"torch {shape}): not compared",
            )
    if tuple(expected.shape) != shape:
        return replace(
            result,
            message=f"TF gradient of {origin.tf_name} has shape {tuple(expected.shape)} in the "
            f"torch layout, the parameter {shape}",
        )
    got = (
        param.grad.detach().to(torch.float64)
        if param.grad is not None
        else torch.zeros(shape, dtype=torch.float64)
    )
    a, b = got.numpy(), expected.numpy()
    diff = _abs_diff(a, b)
    grad_max = float(np.abs(b).max()) if b.size else 0.0
    if not diff.size:
        return replace(result, grad_max=grad_max, max_abs=0.0, max_rel=0.0, passed=True, ratio=0.0)
    excess = diff - rtol * np.abs(b)
    worst = tuple(int(i) for i in np.unravel_index(np.argmax(excess), diff.shape))
    passed = bool(excess.max() <= atol)
    message = ""
    if param.grad is None and grad_max > 0:
        message = f"the model gives {name} no gradient; TensorFlow's reaches {_fmt(grad_max)}"
    elif not passed:
        message = (
            f"max abs diff {_fmt(float(diff.max()))} at index {list(worst)} (model "
            f"{a[worst]:.6g}, TF {b[worst]:.6g}) exceeds {_fmt(atol)} + {_fmt(rtol)} * |g|"
        )
    return replace(
        result,
        grad_max=grad_max,
        max_abs=float(diff.max()),
        max_rel=float((diff / np.maximum(np.abs(b), _TINY)).max()),
        worst_index=worst,
        passed=passed and not (param.grad is None and grad_max > 0),
        message=message,
        ratio=float((diff / (atol + rtol * np.abs(b) + _TINY)).max()),
    )


def _variable_name(variable: Any) -> str:
    return str(getattr(variable, "path", None) or variable.name)


def _unique_variables(model: Any) -> list[Any]:
    seen: set[int] = set()
    out = []
    for variable in getattr(model, "variables", None) or []:
        if id(variable) not in seen:
            seen.add(id(variable))
            out.append(variable)
    return out


def _variables_by_name(original: Any, twin: Any) -> dict[str, Any]:
    """The original's variable names (what `parameter_origins` says) -> the twin's variables."""
    return {
        _variable_name(a): b
        for a, b in zip(_unique_variables(original), _unique_variables(twin), strict=True)
    }


@contextlib.contextmanager
def _keras_floatx(dtype: str) -> Iterator[None]:
    """tf-keras' and Keras 3's default float type (and Keras 3's dtype policy) set to ``dtype``."""
    restore: list[tuple[Any, Any]] = []
    try:
        try:
            import tf_keras

            restore.append((tf_keras.backend.set_floatx, tf_keras.backend.floatx()))
            tf_keras.backend.set_floatx(dtype)
            # once anything set tf-keras' global policy (a bf16 run), it wins over floatx
            policy = tf_keras.mixed_precision
            restore.append((policy.set_global_policy, policy.global_policy()))
            policy.set_global_policy(dtype)
        except ImportError:
            pass
        try:
            import keras

            restore.append((keras.config.set_floatx, keras.config.floatx()))
            restore.append((keras.config.set_dtype_policy, keras.config.dtype_policy()))
            keras.config.set_floatx(dtype)
            keras.config.set_dtype_policy(dtype)
        except ImportError:
            pass
        yield
    finally:
        for setter, value in reversed(restore):
            setter(value)


def _keras_twin(model: Any, dtype: str) -> Any:
    """``model`` rebuilt with ``dtype`` variables and layers, holding the same values.

    A Hugging Face TF model is made again from its config, a functional or
    Sequential Keras model from ``get_config()`` with every float32 dtype
    replaced; a subclassed Keras model cannot be rebuilt (InputError: use
    ``gradient_dtype=torch.float32``). Built once per model (weakly cached),
    its values copied from ``model`` on every call.
    """
    twin = None
    with contextlib.suppress(TypeError):
        twin = _TWINS.get(model)
    if twin is None:
        twin = _rebuild_keras(model, dtype)
        with contextlib.suppress(TypeError):
            _TWINS[model] = twin
    sources, targets = _unique_variables(model), _unique_variables(twin)
    if len(sources) != len(targets) or any(
        tuple(a.shape) != tuple(b.shape) for a, b in zip(sources, targets, strict=True)
    ):
        raise InputError(
            f"the {dtype} rebuild of {type(model).__name__} has other variables than the model "
            "(a layer that builds lazily?); use gradient_dtype=torch.float32"
        )
    for source, target in zip(sources, targets, strict=True):
        value = np.asarray(source.numpy())
        if np.issubdtype(value.dtype, np.floating):
            value = value.astype(np.dtype(getattr(target.dtype, "as_numpy_dtype", target.dtype)))
        target.assign(value)
    return twin


def _rebuild_keras(model: Any, dtype: str) -> Any:
    what = f"rebuilding {type(model).__name__} in {dtype} for gradients=True"
    with _keras_floatx(dtype):
        try:
            if type(model).__module__.startswith("transformers") and hasattr(model, "config"):
                twin = type(model)(model.config)
                twin(twin.dummy_inputs, training=False)
                return twin
            config = model.get_config()
            return type(model).from_config(_with_float_dtype(config, dtype))
        except NotImplementedError as exc:
            raise InputError(
                f"{what}: a subclassed Keras model has no config to rebuild it from ({exc}); "
                "use gradient_dtype=torch.float32"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - Keras raises many kinds here
            raise InputError(
                f"{what} failed ({type(exc).__name__}: {exc}); use gradient_dtype=torch.float32"
            ) from exc


def _with_float_dtype(config: Any, dtype: str) -> Any:
    """A Keras config with every ``float32`` dtype (or dtype policy name) set to ``dtype``."""
    if isinstance(config, Mapping):
        return {
            k: (dtype if k in ("dtype", "name") and v == "float32" else _with_float_dtype(v, dtype))
            for k, v in config.items()
        }
    if isinstance(config, list):
        return [_with_float_dtype(v, dtype) for v in config]
    if isinstance(config, tuple):
        return tuple(_with_float_dtype(v, dtype) for v in config)
    return config
