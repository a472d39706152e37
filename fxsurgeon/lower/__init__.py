"""Lowering: every onnx2torch module becomes a plain torch call.

One table (`LOWERINGS`) maps each onnx2torch class, and each torch.nn module
class that onnx2torch emits, to a function that writes what the ONNX node
means as native torch calls in a new graph. The function sees its inputs as
one of three kinds of value:

* `Const`: a tensor known now (an initializer, or folded from constants);
* `Sym`: a small integer tensor whose elements are Python ints or graph nodes
  that evaluate to ints at run time (``x.size(0)``). This is where the
  tf2onnx shape arithmetic (Shape -> Cast -> Gather -> Unsqueeze -> Concat)
  lives: it becomes Python int arithmetic, never a tensor;
* an `fx.Node` of the new graph: a tensor computed at run time.

Constant-only subgraphs fold into `Const`; weights (float initializers with
more than one element) stay graph constants so that later passes can turn
them into parameters. The canonical form every later pattern is written
against: arithmetic as `operator` calls (``x * 0.5``), everything else as
``torch.*``/``torch.nn.functional.*`` functions with static arguments as
Python literals.

The table (`table.py`) is filled by the op-family modules, one per ONNX op family:
`shape_ops`, `indexing`, `elementwise`, `nn_ops`, `activations`, `recurrent` (LSTM/GRU/RNN),
`control_flow` (If), `loop` (Loop), `nd_index` (GatherND, ScatterND), `resize`, `sorting` (TopK), `more_ops` (ArgMax/ArgMin, GatherElements,
DepthToSpace, SpaceToDepth, IsInf, PReLU), `math_ops` (hyperbolic, bitwise, ThresholdedRelu, Det,
ScatterElements, Quantize/DequantizeLinear, MatMulInteger, LpNormalization), `data_sized`
(Compress, Unique), `norms` (LayerNormalization, InstanceNormalization, LRN), `spec_fixes`
(CumSum, Conv by the spec); `sym_math` holds the comparisons, Where, Min/Max and float
Casts of `Sym` values that elementwise/shape_ops use; `data_sizes` reads a shape argument computed
from tensor data as ints; `cond_shapes` states the shapes of a torch.cond whose branches differ; `graph.py` is the pass that uses it; `coverage.py` lists the
classes the converters can emit (docs/coverage.md).
"""

# The op-family modules fill the table when imported.
from . import (  # noqa: F401, E402
    activations,
    control_flow,
    data_sized,
    elementwise,
    indexing,
    loop,
    math_ops,
    more_ops,
    nd_index,
    nn_ops,
    norms,
    recurrent,
    resize,
    shape_ops,
    sorting,
    spec_fixes,
    tensor_ops,
    while_loop,
)
from .control_flow import run_cond, size_branch
from .coverage import onnx2torch_classes
from .dtypes import follow_dtype
from .graph import LoweringResult, lower_graph
from .loop import run_loop
from .table import LOWERINGS
from .values import Const, Sym, is_onnx2torch_module, names_a_variable
from .while_loop import run_while, run_while_tensors

__all__ = [
    "onnx2torch_classes",
    "follow_dtype",
    "Const",
    "Sym",
    "LOWERINGS",
    "lower_graph",
    "LoweringResult",
    "is_onnx2torch_module",
    "names_a_variable",
    "run_cond",
    "size_branch",
    "run_loop",
    "run_while",
    "run_while_tensors",
]
