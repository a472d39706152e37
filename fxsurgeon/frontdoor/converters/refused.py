"""ONNX ops tf2onnx can write that have no fixed torch form: each is refused with a
`ConverterError` naming the node, the op and why (onnx2torch would only say that it has no
converter).

* Random: RandomNormal, RandomUniform and their -Like forms (``tf.random.normal``,
  ``uniform``, ``stateless`` ones folded by tf2onnx otherwise), Multinomial
  (``tf.random.categorical``), Bernoulli. A trainable module cannot reproduce TF's draws,
  and a test of equivalence cannot check them;
* Sequences: SequenceEmpty, SequenceInsert, ConcatFromSequence (TensorArrays of ragged
  rows in a while loop), and the other sequence ops other exporters write (SequenceAt,
  SequenceConstruct, SequenceErase, SequenceLength, SplitToSequence): torch tensors have
  no list type in a traced graph;
* Scan (tf2onnx's custom-RNN rewriter, and ReverseSequence below opset 10): a loop over a
  body graph that fxsurgeon's converters do not translate (Keras RNNs export as Loop);
* Strings: StringNormalizer (``tf.strings.lower``/``upper``), StringSplit (tf2onnx writes
  its own in the ``ai.onnx.contrib`` domain; the default domain's is opset 20),
  StringConcat, RegexFullMatch: torch has no string tensors. A string Constant (the
  operand of those) is refused the same way, where onnx2torch's converter raised a bare
  ``TypeError`` about numpy object arrays.

Every version of each op in the ONNX schema history is refused.
"""

from __future__ import annotations

from onnx import TensorProto, defs

from .registry import ConverterError, add

RANDOM = "it draws random numbers (not reproducible from TF)"
SEQUENCES = "ONNX sequences (tensor lists) are not converted"
STRINGS = "strings have no torch tensor type"

#: ONNX op -> why it is refused.
REFUSED = {
    **dict.fromkeys(
        ("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike"), RANDOM
    ),
    "Multinomial": "it draws random samples (not reproducible from TF)",
    "Bernoulli": RANDOM,
    **dict.fromkeys(
        ("SequenceEmpty", "SequenceInsert", "ConcatFromSequence", "SequenceAt"), SEQUENCES
    ),
    **dict.fromkeys(
        ("SequenceConstruct", "SequenceErase", "SequenceLength", "SplitToSequence"), SEQUENCES
    ),
    "Scan": "Scan bodies are not converted (only If and Loop)",
    **dict.fromkeys(("StringNormalizer", "StringSplit", "StringConcat", "RegexFullMatch"), STRINGS),
}


def _refuse(node, graph):
    raise ConverterError(node, REFUSED[node.operation_type])


def _is_string(name: str, value) -> bool:
    if name in ("value_string", "value_strings"):
        return True
    proto = getattr(value, "proto", None)
    return name == "value" and getattr(proto, "data_type", None) == TensorProto.STRING


def _constant(onnx2torch_constant):
    """onnx2torch's Constant converter, refusing string constants by node."""

    def convert(node, graph):
        if any(_is_string(name, value) for name, value in node.attributes.items()):
            raise ConverterError(node, f"a string constant: {STRINGS}")
        return onnx2torch_constant(node, graph)

    return convert


def register() -> None:
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription

    for schema in defs.get_all_schemas_with_history():  # every version of each op
        if schema.domain == "" and schema.name in REFUSED:
            add(schema.name, schema.since_version, _refuse)
    for version in (9, 11, 12, 13):
        key = OperationDescription("", "Constant", version)
        original = _CONVERTER_REGISTRY[key]
        if getattr(original, "fxsurgeon_wrapped", False):
            continue
        constant = _constant(lambda node, graph, original=original: tuple(original(node, graph)))
        add("Constant", version, constant, replace=True)
        _CONVERTER_REGISTRY[key].fxsurgeon_wrapped = True
