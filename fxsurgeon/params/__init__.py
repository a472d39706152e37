"""Parameters: every TF variable back as one named ``nn.Parameter`` (or buffer).

onnx2torch bakes every initializer into a buffer ``initializers.onnx_initializer_N``
(one per *use*). This pass, run after fusion, decides for each weight constant
of the graph what it was in TensorFlow and rebuilds the model around that:

* trainable TF variable      -> ``nn.Parameter`` (requires_grad=True);
* non-trainable TF variable  -> persistent buffer (BatchNorm moving mean/var);
* anything else              -> structural constant: a non-persistent buffer.

One parameter per TF variable: the uses of one initializer share it, and an
initializer that tf2onnx merged from several equal variables is split back,
each use taking the variable whose name scope matches its own. A transpose of
a weight (``F.linear(x, w.t())``) is folded into the stored layout, so a Dense
kernel ``[in, out]`` is stored Linear-style ``[out, in]``.

Consumers with a module twin become modules (``F.linear`` -> ``nn.Linear``,
``F.layer_norm`` -> ``nn.LayerNorm``, convolutions, BatchNorm, embedding),
placed in a hierarchy rebuilt from the TF name scopes, so ``state_dict`` keys
read ``vit.encoder.layer_0.attention.attention.query.weight``.

Without a TF variable map, `dataflow.py` decides trainability from how the
graph reads each constant (its docstring states the rule; `value_proofs.py` holds
what a reader proves: size arithmetic, a product with zeros) and `ties.py` which
reads of equal values are one parameter (shared layers, tied embeddings).
Names then come from the TF scopes in the ONNX names (`names.py`): the layer
scope of the node that reads the constant (Keras 3's call suffixes dropped, op
components such as ``MatMul`` or ``PartitionedCall`` dropped, indices joined:
``layer_/_0`` -> ``layer_0``), else the scope in the initializer's own name, else
that of another constant the same node reads; the leaf is the reader's role
(``weight``, ``bias``, torch's ``weight_ih_l0_reverse`` for a recurrence).

`restore.py` is the pass; `roles.py` finds what each weight constant is used as,
`tf_match.py` which TF variable it was, `layout.py` how it is stored, `names.py` what
it is called, and `modules.py` rebuilds the module hierarchy around it;
`structural_products.py` writes a product with a structural constant back from
``F.linear`` to ``matmul`` (a fixed transform such as a DFT matrix is no layer).
"""

from .names import torch_name
from .records import ParameterOrigin
from .restore import restore_parameters
from .tf_match import TF_NAMES_KEY, parameter_origins

__all__ = [
    "ParameterOrigin",
    "parameter_origins",
    "restore_parameters",
    "TF_NAMES_KEY",
    "torch_name",
]
