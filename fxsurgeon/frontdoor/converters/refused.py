"""ONNX ops tf2onnx can write that have no fixed torch form: each is refused with a
`ConverterError` naming the node, the op and why (onnx2torch would only say that it has no
converter).

* Random: RandomNormal, RandomUniform and their -Like forms (``tf.random.normal``,
  ``uniform``, ``stateless`` ones folded by tf2onnx otherwise), Multinomial
  (``tf.random.categorical``), Bernoulli. A trainable module cannot reproduce TF's draws,
  and a test of equivalence cannot check them;
* Sequences: SequenceEmpty, SequenceInsert, ConcatFromSequence (TensorArrays of ragged
  rows in a while loop): torch tensors have no list type in a traced graph;
* Scan (tf2onnx's custom-RNN rewriter, and ReverseSequence below opset 10): a loop over a
  body graph that fxsurgeon's converters do not translate (Keras RNNs export as Loop);
* StringNormalizer (strings).

Every version of each op in the ONNX schema history is refused.
"""

from __future__ import annotations

from onnx import defs

from .registry import ConverterError, add

#: ONNX op -> why it is refused.
REFUSED = {
    "RandomNormal": "it draws random numbers (not reproducible from TF)",
    "RandomNormalLike": "it draws random numbers (not reproducible from TF)",
    "RandomUniform": "it draws random numbers (not reproducible from TF)",
    "RandomUniformLike": "it draws random numbers (not reproducible from TF)",
    "Multinomial": "it draws random samples (not reproducible from TF)",
    "Bernoulli": "it draws random numbers (not reproducible from TF)",
    "SequenceEmpty": "ONNX sequences (tensor lists) are not converted",
    "SequenceInsert": "ONNX sequences (tensor lists) are not converted",
    "ConcatFromSequence": "ONNX sequences (tensor lists) are not converted",
    "Scan": "Scan bodies are not converted (only If and Loop)",
    "StringNormalizer": "strings have no torch tensor type",
}


def _refuse(node, graph):
    raise ConverterError(node, REFUSED[node.operation_type])


def register() -> None:
    for schema in defs.get_all_schemas_with_history():  # every version of each op
        if schema.domain == "" and schema.name in REFUSED:
            add(schema.name, schema.since_version, _refuse)
