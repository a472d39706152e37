"""The ``fxsurgeon`` command.

::

    fxsurgeon convert INPUT -o OUTDIR [--input NAME:DIMS[:DTYPE]]... [--patterns PATH]...
                                      [--no-verify] [--no-compile-check] [--opset N]
    fxsurgeon report OUTDIR [--markdown | --json]
    fxsurgeon verify MODEL_DIR_OR_ONNX --reference PATH [--atol A] [--rtol R]
    fxsurgeon demo [--tiny] [--no-compile]

``convert`` takes a ``.keras`` / ``.h5`` file, a SavedModel directory or an
``.onnx`` file and writes OUTDIR/model.py, model.safetensors, report.md and
report.json (see `fxsurgeon.save`): TensorFlow inputs go through tf2onnx,
then onnx2torch, `fxsurgeon.optimize`, and are verified against TensorFlow
(ONNX inputs against onnxruntime).

Errors in the input (a missing file, something that is no model, an op
tf2onnx or onnx2torch cannot convert, ONNX external data outside the model's
folder) print one line on stderr and exit with status 2; ``--debug`` shows the
traceback. A conversion whose outputs differ from the reference is written
anyway and exits with status 1.

The files: `common.py` (exit statuses, the CLI's error), `parser.py` (the argument parser, `main` and its error handling),
`progress.py` (the step display), `inputs.py` (reading the input model and its
signature), `convert.py` (``fxsurgeon convert``), `commands.py` (``report``, ``verify``,
``demo``) and `demo.py` (the demo run); ``fxsurgeon fuzz`` lives in `fxsurgeon.fuzz`.
"""

from .parser import main

__all__ = ["main"]
