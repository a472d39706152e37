"""The scoreboard's ``grads`` line: every trainable parameter gets a gradient where TF's gets
one, on one loss (the sum over the floating outputs of ``mean(y ** 2)``, batch 2).

A parameter fails with a non-finite gradient, a gradient for a variable TF's function
reads nowhere, or no gradient or an exactly zero one, unless that is right:

* TF's tape gives its TF variable an exactly zero gradient on the same loss and inputs
  (`tf_gradients`): a ReLU dead on every position of these inputs, a branch TF stops. The
  parameter's variable is `fxsurgeon.parameter_origins`' (door A), or the TF variables
  holding its value (door B, the file alone: sorted elements equal, as `corpus.learned`
  matches them; all of them must be zero in TF);
* (a zero gradient) no output moves when the parameter does (`_outputs_ignore`): its exact
  gradient is 0.

A zero where TF's gradient is not says so with TF's largest magnitude. Through door B, a
model whose export recorded ``tf.stop_gradient`` (`stop_gradient_outputs`) says that the
ONNX graph writes each as an Identity: from the file alone which term TF stopped is
ambiguous (`patterns/straight_through.py`), door A detaches where TF stops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .score import Scorer


def grads_line(self: Scorer, module: Any, door: str) -> dict[str, Any]:
    import torch

    from .score import line

    arrays = self.ordered(self.model.make_inputs(2, 2))
    inputs = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    module.eval()
    module.zero_grad(set_to_none=True)
    with torch.enable_grad():
        out = module(*inputs)
        out = list(out) if isinstance(out, (list, tuple)) else [out]
        loss = sum(o.float().square().mean() for o in out if o.is_floating_point())
        loss.backward()
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    unread = _read_by_no_output(module)
    bad, constant, zero_in_tf, tf_nonzero = [], [], [], []
    ignores = None
    tf_errors: list[str] = []
    tf_zero: Callable[[str], float | None] | None = None
    for name, param in named:
        if name in unread:  # TF's tape cannot reach a variable its function never reads
            if param.grad is not None:
                bad.append(f"{name} (a grad, but TF's function reads it nowhere)")
        elif param.grad is not None and not bool(torch.isfinite(param.grad).all()):
            bad.append(f"{name} (not finite)")
        elif param.grad is None or not bool(param.grad.any()):
            what = "no grad" if param.grad is None else "zero"
            tf_zero = tf_zero or _tf_magnitudes(self, module, door, arrays, tf_errors)
            magnitude = tf_zero(name)
            if magnitude == 0.0:
                zero_in_tf.append(name)
                continue
            ignores = ignores or _outputs_ignore(module, inputs)
            if param.grad is not None and ignores(param):
                constant.append(name)
            elif magnitude is None:
                bad.append(f"{name} ({what})")
            else:
                bad.append(f"{name} ({what}; TF's reaches {magnitude:.3g})")
                tf_nonzero.append(name)
    module.zero_grad(set_to_none=True)
    if not named:
        return line(False, 0, "no trainable parameters")
    reason = f"{len(bad)} of {len(named)}: {', '.join(bad[:3])}" if bad else ""
    if tf_nonzero and door == "B":
        reason += _stop_gradient_note(self)
    return line(
        not bad,
        len(named) - len(bad),
        reason,
        total=len(named),
        unread=len(unread),
        # a zero gradient is right where no output depends on the parameter (MobileViT's
        # last attention has one patch: softmax over one key is 1 whatever q and k are)
        independent=constant,
        # and where TF's tape gives the variable an exactly zero gradient too
        zero_in_tf=zero_in_tf,
        **({"tf_error": tf_errors[0]} if tf_errors else {}),
    )


def _stop_gradient_note(self: Scorer) -> str:
    from fxsurgeon.frontdoor import stop_gradient_outputs

    stops = stop_gradient_outputs(self.proto)
    if not stops:
        return ""
    return (
        f"; the ONNX file carries no StopGradient: the export writes each of its {len(stops)} "
        "tf.stop_gradient as an Identity (ONNX has no gradients), and which term TF stopped "
        "is ambiguous from the graph alone; door A, with the TF model, detaches there"
    )


# --------------------------------------------------------------------------- TF's gradients


def tf_gradients(self: Scorer, arrays: list[np.ndarray]) -> dict[str, float | None]:
    """TF variable name -> the largest |gradient| TF's tape gives it on the grads line's
    loss and `arrays` (the inputs in ONNX order), for every floating-point variable (a
    non-trainable one watched too); 0.0 where the tape gives none (no path).
    Empty when TF's outputs are not the ONNX graph's (no pairing)."""
    from fxsurgeon._compat import import_tensorflow
    from fxsurgeon.frontdoor import tf_call, tf_variables_of

    tf = import_tensorflow()
    names, call = tf_call(self.model.model, self.model.input_signature)
    if len(names) != len(arrays):
        return {}
    # every float variable, trainable or not: door B's parameters include the ones ONNX
    # cannot flag (a BatchNorm's moving statistics), read as data like any other
    variables = [
        (v.name, _tf_variable(tf, t))
        for v, t in tf_variables_of(self.model.model)
        if tf.as_dtype(t.dtype).is_floating
    ]
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch([t for _, t in variables])
        outputs = [
            t for _, t in call({n: tf.constant(a) for n, a in zip(names, arrays, strict=True)})
        ]
        if len(outputs) != len(self.proto.graph.output):
            return {}
        loss = tf.add_n(
            [
                tf.reduce_mean(tf.square(tf.cast(o, tf.float32)))
                for o in outputs
                if o.dtype.is_floating
            ]
            or [tf.constant(0.0)]
        )
    grads = tape.gradient(loss, [t for _, t in variables])
    out: dict[str, float | None] = {}
    for (name, _), grad in zip(variables, grads, strict=True):
        value = np.zeros(0) if grad is None else np.asarray(tf.convert_to_tensor(grad))
        out[name] = float(np.abs(value).max(initial=0.0))
    return out


def _tf_variable(tf: Any, variable: Any) -> Any:
    """The ``tf.Variable`` a tape watches: Keras 3 wraps one (``_value``)."""
    inner = getattr(variable, "_value", None)
    return inner if isinstance(inner, tf.Variable) else variable


def _tf_magnitudes(
    self: Scorer, module: Any, door: str, arrays: list[np.ndarray], errors: list[str]
) -> Callable[[str], float | None]:
    """Parameter name -> TF's largest |gradient| of its TF variable(s), None when unknown
    (TF's gradients failing says why in `errors`). Door A's variable is the parameter's
    origin; door B's, the variables holding its value (sorted elements equal bitwise: any
    layout), all of which must agree."""
    from fxsurgeon import parameter_origins
    from fxsurgeon.frontdoor import tf_variables_of

    from .learned import _value_key

    try:
        magnitudes = tf_gradients(self, arrays)
    except Exception as exc:  # noqa: BLE001 - TF's side unknown: no zero is accepted by it
        errors.append(f"{type(exc).__name__}: {exc}"[:200])
        return lambda name: None
    params = dict(module.named_parameters())
    if door == "A":
        try:
            origins = parameter_origins(module)
        except ValueError:  # not made by fxsurgeon.optimize: no TF variable known
            return lambda name: None
        variables = {n: [o.tf_name] for n, o in origins.items()}
    else:
        by_value: dict[bytes, list[str]] = {}
        for variable, tf_variable in tf_variables_of(self.model.model):
            value = np.asarray(tf_variable.numpy())
            if np.issubdtype(value.dtype, np.floating):
                by_value.setdefault(_value_key(value), []).append(variable.name)
        variables = {n: by_value.get(_value_key(p), []) for n, p in params.items()}

    def magnitude(name: str) -> float | None:
        found = [magnitudes.get(v) for v in variables.get(name, [])]
        if not found or any(f is None for f in found):
            return None
        return max(f for f in found if f is not None)

    return magnitude


# --------------------------------------------------------------------------- torch side


def _outputs_ignore(module: Any, inputs: list) -> Callable[[Any], bool]:
    """Whether no output of `module` on `inputs` changes when a parameter is moved: then
    its exact gradient is zero (TF's, the twin's), and a zero gradient is right. Both
    runs are without grad: with grad, torch may pick another attention kernel (SAM's
    outputs moved by 1e-7 between the two modes, not by the parameter)."""
    import torch

    with torch.no_grad():
        base = module(*inputs)
    outputs = list(base) if isinstance(base, (list, tuple)) else [base]
    return lambda param: _unmoved(module, inputs, param, outputs)


def _unmoved(module: Any, inputs: list, param: Any, outputs: list) -> bool:
    import torch

    saved = param.detach().clone()
    try:
        with torch.no_grad():
            step = torch.randn(param.shape, generator=torch.Generator().manual_seed(0))
            param.add_(step.to(param.dtype) * (saved.abs().mean() + 0.1))
            moved = module(*inputs)
        moved = list(moved) if isinstance(moved, (list, tuple)) else [moved]
        return all(torch.equal(a, b) for a, b in zip(outputs, moved, strict=True))
    finally:
        with torch.no_grad():
            param.copy_(saved)


def _read_by_no_output(module: Any) -> set[str]:
    """Parameters holding a TF variable the exported function never reads (fxsurgeon.params
    attaches it, as TF holds it): TF's tape gives it no gradient."""
    from fxsurgeon import parameter_origins

    try:
        origins = parameter_origins(module)
    except ValueError:
        return set()
    return {name for name, origin in origins.items() if not origin.read}
