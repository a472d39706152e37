"""Differential fuzzer: random tf2onnx-style ONNX graphs, optimized, against onnxruntime.

Every graph is made from a seed (``generate(seed)``): one or two graph inputs
with a dynamic batch dim (sometimes a dynamic sequence dim too, a float
``attention_mask`` or int64 token ``ids``), then one to four *blocks* written
the way tf2onnx writes TensorFlow, each drawn at random:

* ``dense``: MatMul + Add, TF's Tensordot sandwich (Reshape -> MatMul -> Add ->
  Reshape through Shape/Cast/Slice/Concat), Gemm;
* ``layer_norm``: the moments form (ReduceMean or GlobalAveragePool, Sub, Mul,
  Add eps, Sqrt, Reciprocal, Mul gamma, Neg/Sub beta) and the RMS form;
* ``gelu_tanh``, ``gelu_erf``: the tanh approximation; erf with Mul or Div and
  the front door's ``1 - Erf(-x / sqrt 2)``;
* ``attention``: three dense layers, head split (Reshape + Transpose, k^T by one
  or two Transposes), MatMul, Mul/Div scale, the +1e-9 shift, an additive
  padding mask from ``attention_mask`` or a constant, GPT-2's Range-based causal
  band, Softmax, MatMul, head merge;
* ``attention_forms`` (``attention_blocks.py``): the scale on q, k, both, the scores
  or none; grouped KV heads repeated; cross-attention; a boolean padding or a causal
  ``Where``, a masked term ``Where(c, s + t, s)``, an ALiBi-like or constant bias; the softmax as the op, after a max shift,
  or as a logsumexp; K @ Q^T with the softmax over the rows;
* ``reshape``: Shape -> Gather -> Unsqueeze -> Concat -> Reshape chains, Flatten,
  shape-preserving and double reshapes; ``transpose`` pairs; ``cast`` (to float32,
  a round trip through float64); ``slice``; ``squeeze``/``unsqueeze``;
  ``concat``; ``reduce``; ``softmax``; ``elementwise`` ops with constants of
  every broadcastable shape and swapped operands; MatMul of two activations.

With probability 0.4 a block is a *near miss* of the fusion it resembles: a
perturbed constant (0.05 for 0.044715, 0.8 for sqrt(2/pi), a tolerance-edge
perturbation), an intermediate with a user outside the pattern (it becomes a
graph output), swapped or re-associated operands, gamma/bias/eps of the wrong
shape, a reduction over another axis, a weight computed at run time, a Softmax
on another axis, a mask of odd rank. A near miss must either be left alone or
be rewritten into something equal: never change the numbers.

Each graph is converted with ``fxsurgeon.tensorflow.from_onnx``, optimized, and
compared with onnxruntime on the original ONNX at two input sizes (batch 1 and
4, dynamic sequence 3 and 6). The outcome is one of

* ``pass``: every output has the reference's shape and dtype, and is within
  ``1e-5 * max(1, max |reference|)`` of it (float32 rounding relative to the
  output's scale: a fused kernel sums in another order than onnxruntime). A
  graph that amplifies rounding (a norm over values that nearly cancel) may
  instead pass the float64 judge: run in float64 by onnx's reference
  evaluator, the model's error must be at most that tolerance plus
  `JUDGE_FACTOR` (4) times onnxruntime's own float32 error; the summary
  counts these passes apart;
* ``error``: optimize raised a clear ``FxSurgeonError`` (counted by kind): an
  honest "cannot", never wrong numbers;
* ``mismatch``: a silent numeric change (or shape/dtype change): a bug;
* ``crash``: any other exception, in optimize or in running its result: a bug;
* ``invalid``: onnxruntime rejects the generated graph: a bug of the fuzzer.

The generator avoids graphs whose result is rounding noise in any float32
implementation (a norm over exact copies: Expand copies get distinct offsets,
Gather indices do not repeat, Concat never joins x with Relu(x)), and stays in
tf2onnx's vocabulary where onnxruntime departs from the ONNX spec (a Slice with
a negative step ends at -1e9, never at INT_MAX, which onnxruntime reads as
"to the start" and the spec as "nothing").

Near misses whose rule did not fire are counted as declines (an estimate: the
report of ``optimize`` says which rules fired, per graph). A seed reproduces a
graph exactly: ``python -m fxsurgeon fuzz --seed N --count 1`` re-runs graph
N; ``--save DIR`` writes the ONNX files of failures; a mismatch is bisected
(`fxsurgeon.bisect` against onnxruntime) to name the rule or the lowering.

`graph.py` is the ONNX graph builder, `fusion_blocks.py` and `shape_blocks.py` the
blocks, `generator.py` draws a graph from a seed, `checker.py` runs one case against
onnxruntime, `runner.py` runs many and is the ``fxsurgeon fuzz`` command.
"""

from .checker import FuzzOutcome, check
from .generator import generate
from .graph import FuzzCase
from .runner import FuzzSummary, add_parser, fuzz, fuzz_command, run

__all__ = [
    "FuzzCase",
    "FuzzOutcome",
    "FuzzSummary",
    "add_parser",
    "check",
    "fuzz",
    "fuzz_command",
    "generate",
    "run",
]
