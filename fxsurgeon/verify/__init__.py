"""Check that a converted PyTorch model computes what its reference computes.

``verify(model, reference)`` runs the candidate ``model`` (a ``torch.nn.Module``
taking its inputs positionally, in the order of the ONNX graph inputs) and a
reference on the same inputs and compares every output:

* the reference can be a Keras model (tf-keras or Keras 3, Hugging Face TF
  models included), a SavedModel directory or a ``.keras`` / ``.h5`` file, an
  ``.onnx`` file or ``onnx.ModelProto`` (run with onnxruntime on the CPU),
  another ``torch.nn.Module``, or stored outputs;
* without ``inputs=``, inputs are made from the reference's input signature
  (or the ``SourceInfo`` that ``fxsurgeon.tensorflow`` attaches to a
  GraphModule as ``gm.meta["fxsurgeon.source"]``), one case per batch size;
* each output of each case gets max abs / max rel difference, MSE, the index
  of the worst element, the tolerance used and pass/fail; a shape mismatch
  fails without any broadcasting, and says when it looks like NHWC vs NCHW.

Tolerances
----------
Outputs are compared element-wise with ``|model - ref| <= atol + rtol * |ref|``.
The defaults depend on the less precise of the two dtypes: float32 ``atol=1e-5,
rtol=0``; float64 ``atol=1e-7, rtol=0``; integer and bool outputs must be
equal. ``atol=`` / ``rtol=`` override them for every output.

A float16 / bfloat16 output of the model is judged the way torch._dynamo's
accuracy checker (``torch._dynamo.utils.same(ref, res, fp64_ref=...)``) does,
when the reference is a torch module: the reference is also run in float64
(``copy.deepcopy(reference).double()``) and in the model's low precision, and
the model passes when::

    rmse(model, ref_fp64) <= 3 * rmse(ref_low_precision, ref_fp64) + floor

``floor`` is ``atol`` when given, else 1e-5. The yardstick is the reference
implementation's own error at the model's precision (as in dynamo, where
``ref`` is the eager run in the same dtype): a bf16 model can never come within
3x of a float32 implementation's error, so that would reject every correct one.
With any other reference there is no float64 run to judge against, and
low-precision outputs fall back to the element-wise rule with bf16
``atol=1e-2, rtol=1.6e-2`` / fp16 ``atol=rtol=1e-3``.

``scale_atol=True`` multiplies the absolute tolerance of each floating output by
``max(1, max |reference|)``: float32 rounding relative to the output's scale,
for comparing two float32 implementations of one graph (per-rule checks,
`fxsurgeon.bisect` against the lowered model, the fuzzer).

Gradients
---------
``verify(model, keras_model, gradients=True)`` also compares the gradient of
every trainable parameter with TensorFlow's, for one fixed random loss on the
outputs, ``sum over outputs of mean over the batch of sum(w * y^2)`` (``w``
from ``seed``; the same loss on both sides, outputs paired by name). The model
must come from ``fxsurgeon.optimize``: ``fxsurgeon.parameter_origins`` names
the TF variable of each parameter and its layout, and the TF gradient is taken
into the torch layout (``g_tf.permute(perm)``) before comparing. Each
parameter of each case gets a `GradientResult` (max abs / rel diff, the worst
index, ``ratio`` = max ``|g - g_tf| / (atol + rtol |g_tf|)``).

``gradient_dtype=torch.float64`` (default) is the sound comparison: a float64
copy of the model against the Keras model rebuilt in float64 holding the same
values (a Hugging Face model from its config, a functional/Sequential one from
``get_config()``; subclassed Keras models cannot be rebuilt), every entry
within ``1e-6 + 1e-4 |g_tf|``. In float32 the two frameworks sum in other
orders, and gradients that are zero in exact arithmetic (an attention key
bias: softmax ignores a shift of a whole row) are rounding noise on both
sides, so entries small next to the largest gradient cannot be held to 1e-6
(measured in tests/test_training.py). ``gradient_dtype=torch.float32``
therefore uses ``atol = 1e-6 * max |g_tf|`` over the whole model (and
``rtol=1e-4``): the noise floor of float32 gradients, relative to their scale.
What float64 still leaves is not rounding: Hugging Face code turns Python
constants into float32 tensors first, so the float64 TF model computes with
float32 constants (relative 1e-8).

Per-rule checks
---------------
``optimize(m, verify="per_rule")`` installs a `RewriteChecker` as the pattern
engine's ``on_rewrite`` hook: after every rewrite the graph runs on
``optimize``'s two example input sets and each output must stay within
``1e-5 * max(1, max |lowered output|)`` of the lowered (unfused) graph's. The
first rewrite that breaks this raises `RewriteVerificationError` naming the
rule, its pattern file, the node and the matched subgraph (`RewriteInfo`);
``verify="per_rule_decline"`` undoes that rewrite instead (the rule declines
there and ``report.notes`` says so) and finishes with a correct model.

The files: `api.py` (`verify`, `prepare`), `results.py` (the report and its errors),
`references.py` (what the model is compared against: torch, ONNX via onnxruntime, Keras,
SavedModel, stored outputs), `signatures.py` (input signatures), `cases.py` (given and generated inputs),
`example_file.py` (`load_inputs`: the user's input cases from an ``.npz`` file, for
``fxsurgeon convert --example-inputs``), `running.py` (running a model on a case),
`compare.py` (comparing outputs),
`gradients.py` (comparing gradients against TF), `rewrite_check.py` (the per-rewrite
checker of ``optimize(verify=...)``) and `bisection.py` (``fxsurgeon.bisect``).
"""

from .api import Prepared, prepare, verify
from .bisection import BisectResult, bisect
from .example_file import load_inputs
from .results import GradientResult, OutputResult, VerificationError, VerifyReport
from .rewrite_check import (
    REWRITE_MODES,
    RewriteChecker,
    RewriteInfo,
    RewriteVerificationError,
    rewrite_checker,
    rewrite_info,
)

__all__ = [
    "BisectResult",
    "GradientResult",
    "OutputResult",
    "Prepared",
    "REWRITE_MODES",
    "RewriteChecker",
    "RewriteInfo",
    "RewriteVerificationError",
    "VerificationError",
    "VerifyReport",
    "bisect",
    "load_inputs",
    "prepare",
    "rewrite_checker",
    "rewrite_info",
    "verify",
]
