"""December task-head probes, third part: more Hugging Face TF heads on towers the corpus
has only bare (``hf_mobilebert``, ``hf_xlnet``, ``hf_roformer``, ``hf_layoutlm``,
``hf_blenderbot_small``), built as a new user would (tiny configs, every variable
randomised, the helpers of `hf_text` and `probe_mar_text`).

* ``hf_mobilebert_mlm``: TFMobileBertForMaskedLM: the no_norm body and an LM head whose
  output table is assembled at run time, ``concat([decoder^T, dense])`` (the tied
  embedding-size rows plus extra rows up to the hidden size), after a Dense, relu and a
  true LayerNorm;
* ``hf_xlnet_seqcls``: TFXLNetForSequenceClassification: the ``(len, batch)`` layout, the
  TFSequenceSummary of the last token (Dense + tanh) and ``logits_proj``;
* ``hf_roformer_seqcls``: TFRoFormerForSequenceClassification: rotary attention and the
  classification head on the first token (Dense, gelu, out_proj);
* ``hf_layoutlm_tokcls``: TFLayoutLMForTokenClassification: word, 1-D and 2-D (``bbox``)
  position embeddings summed, a Dense on every token;
* ``hf_blenderbot_small_lm``: TFBlenderbotSmallForConditionalGeneration: post-LN, logits by
  the shared table (tied) plus ``final_logits_bias``.

The ``nominal`` counts follow the TF modelling source, one comment per builder.
"""

from __future__ import annotations

from ..registry import CorpusModel, register
from .hf_seq2seq import NAMES as SEQ2SEQ_NAMES
from .hf_seq2seq import TINY as SEQ2SEQ_TINY
from .hf_seq2seq import seq2seq_inputs
from .hf_text import _BERT_INPUTS, MOBILEBERT_TINY, TINY, VOCAB, _hf_model, _layoutlm_inputs
from .probe_mar_text import _seq2seq_head


@register("hf_mobilebert_mlm", family="encoder")
def build_mobilebert_mlm() -> CorpusModel:
    from transformers import MobileBertConfig, TFMobileBertForMaskedLM

    config = MobileBertConfig(**MOBILEBERT_TINY)
    # modeling_tf_mobilebert.py: add_pooling_layer=False: hf_mobilebert's 24 linear less the
    # pooler = 23, + the head transform's dense + the logits (matmul by concat(decoder^T,
    # dense) + bias) = 25; the body's no_norm is elementwise (0), the head's NORM2FN
    # ["layer_norm"] is a LayerNormalization = 1 layer_norm; relu; sdpa 2
    nominal = dict(sdpa=2, layer_norm=1, gelu=0, rms_norm=0, linear=25)
    return _hf_model(
        "hf_mobilebert_mlm",
        "encoder",
        TFMobileBertForMaskedLM,
        config,
        "MobileBertForMaskedLM",
        nominal,
        inputs=_BERT_INPUTS,
        outputs=("logits",),
    )


@register("hf_xlnet_seqcls", family="encoder")
def build_xlnet_seqcls() -> CorpusModel:
    from transformers import TFXLNetForSequenceClassification, XLNetConfig

    config = XLNetConfig(
        vocab_size=VOCAB,
        d_model=32,
        n_layer=2,
        n_head=4,
        d_inner=37,
        ff_activation="gelu",
        mem_len=None,
        use_mems_eval=False,
        use_mems_train=False,
        num_labels=3,
    )
    # modeling_tf_xlnet.py: hf_xlnet's 14 linear + the sequence summary's Dense (summary_type
    # "last", summary_use_proj, tanh) + logits_proj = 16; layer_norm 4; gelu 2; sdpa 2
    nominal = dict(sdpa=2, layer_norm=4, gelu=2, rms_norm=0, linear=16)
    return _hf_model(
        "hf_xlnet_seqcls",
        "encoder",
        TFXLNetForSequenceClassification,
        config,
        "XLNetForSequenceClassification",
        nominal,
        inputs=_BERT_INPUTS,
        outputs=("logits",),
    )


@register("hf_roformer_seqcls", family="encoder")
def build_roformer_seqcls() -> CorpusModel:
    from transformers import RoFormerConfig, TFRoFormerForSequenceClassification

    config = RoFormerConfig(**TINY, embedding_size=16, num_labels=3)
    # modeling_tf_roformer.py: hf_roformer's 13 linear + the classification head's dense
    # and out_proj = 15; layer_norm 5; gelu 2 + the head's hidden_act (gelu) = 3; sdpa 2
    nominal = dict(sdpa=2, layer_norm=5, gelu=3, rms_norm=0, linear=15)
    return _hf_model(
        "hf_roformer_seqcls",
        "encoder",
        TFRoFormerForSequenceClassification,
        config,
        "RoFormerForSequenceClassification",
        nominal,
        inputs=_BERT_INPUTS,
        outputs=("logits",),
    )


@register("hf_layoutlm_tokcls", family="encoder")
def build_layoutlm_tokcls() -> CorpusModel:
    from transformers import LayoutLMConfig, TFLayoutLMForTokenClassification

    config = LayoutLMConfig(**TINY, max_2d_position_embeddings=128, num_labels=5)
    # modeling_tf_layoutlm.py: add_pooling_layer=True but the pooler is on no output
    # (pruned): 2 x (q, k, v, o, intermediate, output) + classifier = 13 linear; layer_norm
    # 5; gelu 2; sdpa 2
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, rms_norm=0, linear=13)
    return _hf_model(
        "hf_layoutlm_tokcls",
        "encoder",
        TFLayoutLMForTokenClassification,
        config,
        "LayoutLMForTokenClassification",
        nominal,
        inputs=_BERT_INPUTS,
        outputs=("logits",),
        make_inputs=_layoutlm_inputs(config.max_2d_position_embeddings),
        extra_specs={"bbox": (None, None, 4)},
    )


@register("hf_blenderbot_small_lm", family="seq2seq")
def build_blenderbot_small_lm() -> CorpusModel:
    from transformers import BlenderbotSmallConfig, TFBlenderbotSmallForConditionalGeneration

    config = BlenderbotSmallConfig(**SEQ2SEQ_TINY, activation_function="gelu")
    # modeling_tf_blenderbot_small.py: hf_blenderbot_small's 32 linear + the LM head (decoder
    # output @ shared^T + final_logits_bias, a non-trainable BiasLayer) = 33; layer_norm 12;
    # gelu 4; sdpa 6
    nominal = {"sdpa": 6, "linear": 33, "layer_norm": 12, "rms_norm": 0, "gelu": 4}
    return _seq2seq_head(
        "hf_blenderbot_small_lm",
        TFBlenderbotSmallForConditionalGeneration,
        "BlenderbotSmallForConditionalGeneration",
        config,
        nominal,
        ("logits", "encoder_last_hidden_state"),
        SEQ2SEQ_NAMES,
        seq2seq_inputs(config.vocab_size),
    )
