"""December task-head probes, second part: Hugging Face TF heads on towers the corpus has
only bare (``hf_ctrl``, ``hf_rembert``, ``hf_mpnet``, ``hf_convbert``, ``hf_mbart``,
``hf_esm``, ``hf_openai_gpt``, ``hf_electra``), built as a new user would (tiny configs,
every variable randomised, the helpers of `hf_text` and `probe_mar_text`).

* ``hf_ctrl_seqcls``: TFCTRLForSequenceClassification with a pad token: a bias-free
  classifier on every token, the row's logits at its last non-pad token
  (``reduce_max(arange * (ids != pad))`` then a batched ``tf.gather``);
* ``hf_rembert_causal_lm``: TFRemBertForCausalLM: decoupled input embeddings (projected up),
  ``is_decoder=True`` (causal times padding mask), the LM head's Dense, gelu and LayerNorm
  into an untied output table plus a bias;
* ``hf_mpnet_mlm``: TFMPNetForMaskedLM: MPNet's relative position bias, the LM head
  (Dense, gelu, LayerNorm) and the tied word-embedding decoder plus a bias;
* ``hf_convbert_tokcls``: TFConvBertForTokenClassification: ConvBERT's mixed attention
  (span-based dynamic convolution beside half the heads' self-attention) and a Dense on
  every token;
* ``hf_mbart_lm``: TFMBartForConditionalGeneration: pre-LN mBART, logits by the shared
  table (tied) plus ``final_logits_bias``;
* ``hf_esm_seqcls``: TFEsmForSequenceClassification: rotary ESM-2 and the classification
  head on the ``<s>`` token (Dense + tanh, out_proj);
* ``hf_openai_gpt_lm``: TFOpenAIGPTLMHeadModel: post-LN GPT-1, logits by the token table
  (``tokens_embed(..., mode="linear")``, tied, no bias);
* ``hf_electra_mlm``: TFElectraForMaskedLM: ELECTRA's generator head (Dense to the
  embedding size, gelu, LayerNorm) and the tied embedding-size decoder plus a bias.

The ``nominal`` counts follow the TF modelling source, one comment per builder.
"""

from __future__ import annotations

from ..registry import CorpusModel, register, text_inputs
from .hf_seq2seq import NAMES as SEQ2SEQ_NAMES
from .hf_seq2seq import TINY as SEQ2SEQ_TINY
from .hf_seq2seq import seq2seq_inputs
from .hf_text import _BERT_INPUTS, ESM_TINY, TINY, VOCAB, _hf_model
from .probe_mar_text import _padded, _seq2seq_head


@register("hf_ctrl_seqcls", family="decoder")
def build_ctrl_seqcls() -> CorpusModel:
    from transformers import CTRLConfig, TFCTRLForSequenceClassification

    config = CTRLConfig(
        vocab_size=VOCAB,
        n_embd=32,
        n_layer=2,
        n_head=4,
        dff=37,
        n_positions=64,
        num_labels=3,
        pad_token_id=0,
        use_cache=False,
    )
    inputs = ("input_ids", "attention_mask")
    # modeling_tf_ctrl.py: hf_ctrl's 12 linear + the bias-free classifier = 13; layer_norm
    # 2 x 2 + the final = 5; relu; causal sdpa 2
    nominal = dict(sdpa=2, layer_norm=5, gelu=0, rms_norm=0, linear=13)
    return _hf_model(
        "hf_ctrl_seqcls",
        "decoder",
        TFCTRLForSequenceClassification,
        config,
        "CTRLForSequenceClassification",
        nominal,
        inputs=inputs,
        outputs=("logits",),
        make_inputs=_padded(text_inputs(inputs, VOCAB), pad=0, low=1),
    )


@register("hf_rembert_causal_lm", family="decoder")
def build_rembert_causal_lm() -> CorpusModel:
    from transformers import RemBertConfig, TFRemBertForCausalLM

    config = RemBertConfig(
        **TINY,
        input_embedding_size=16,
        output_embedding_size=16,
        hidden_act="gelu",
        is_decoder=True,
        use_cache=False,
    )
    # modeling_tf_rembert.py: add_pooling_layer=False: the embedding projection + 2 x (q, k,
    # v, o, intermediate, output) + the LM head's dense (to output_embedding_size) + the
    # untied decoder (matmul by decoder^T, bias_add) = 15 linear; layer_norm: embeddings 1 +
    # 2 x 2 + the head's 1 = 6; gelu 2 + the head's 1 = 3; causal sdpa 2
    nominal = dict(sdpa=2, layer_norm=6, gelu=3, rms_norm=0, linear=15)
    return _hf_model(
        "hf_rembert_causal_lm",
        "decoder",
        TFRemBertForCausalLM,
        config,
        "RemBertForCausalLM",
        nominal,
        inputs=_BERT_INPUTS,
        outputs=("logits",),
    )


@register("hf_mpnet_mlm", family="encoder")
def build_mpnet_mlm() -> CorpusModel:
    from transformers import MPNetConfig, TFMPNetForMaskedLM

    config = MPNetConfig(**TINY)
    # modeling_tf_mpnet.py: hf_mpnet's 2 x 6 linear (the main layer's pooler is not on the
    # logits: pruned) + the LM head's dense + the tied decoder (word_embeddings^T + bias) =
    # 14; layer_norm 5 + the head's 1 = 6; gelu 2 + the head's 1 = 3; the relative position
    # bias is additive: sdpa 2
    nominal = dict(sdpa=2, layer_norm=6, gelu=3, rms_norm=0, linear=14)
    return _hf_model(
        "hf_mpnet_mlm",
        "encoder",
        TFMPNetForMaskedLM,
        config,
        "MPNetForMaskedLM",
        nominal,
        outputs=("logits",),
    )


@register("hf_convbert_tokcls", family="encoder")
def build_convbert_tokcls() -> CorpusModel:
    from transformers import ConvBertConfig, TFConvBertForTokenClassification

    config = ConvBertConfig(
        **TINY, embedding_size=16, head_ratio=2, conv_kernel_size=3, num_labels=5
    )
    # modeling_tf_convbert.py: hf_convbert's 17 linear + classifier = 18; layer_norm 5; gelu
    # 2; sdpa 2; the dynamic convolution's softmax over kernel taps stays (2, not attention)
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, rms_norm=0, linear=18, softmax=2)
    return _hf_model(
        "hf_convbert_tokcls",
        "encoder",
        TFConvBertForTokenClassification,
        config,
        "ConvBertForTokenClassification",
        nominal,
        inputs=_BERT_INPUTS,
        outputs=("logits",),
    )


@register("hf_mbart_lm", family="seq2seq")
def build_mbart_lm() -> CorpusModel:
    from transformers import MBartConfig, TFMBartForConditionalGeneration

    config = MBartConfig(**SEQ2SEQ_TINY, activation_function="gelu")
    # modeling_tf_mbart.py: hf_mbart's 32 linear + the LM head (decoder output @ shared^T +
    # final_logits_bias, a non-trainable BiasLayer) = 33; layer_norm: per stack
    # layernorm_embedding + the final layer_norm, enc 2 x 2 + dec 2 x 3 = 14; gelu 4; sdpa 6
    nominal = {"sdpa": 6, "linear": 33, "layer_norm": 14, "rms_norm": 0, "gelu": 4}
    return _seq2seq_head(
        "hf_mbart_lm",
        TFMBartForConditionalGeneration,
        "MBartForConditionalGeneration",
        config,
        nominal,
        ("logits", "encoder_last_hidden_state"),
        SEQ2SEQ_NAMES,
        seq2seq_inputs(config.vocab_size),
    )


@register("hf_esm_seqcls", family="encoder")
def build_esm_seqcls() -> CorpusModel:
    from transformers import EsmConfig, TFEsmForSequenceClassification

    config = EsmConfig(**ESM_TINY, num_labels=3)
    # modeling_tf_esm.py: add_pooling_layer=False: 2 x (q, k, v, o, intermediate, output) +
    # the classification head's dense (tanh) and out_proj on the <s> token = 14 linear;
    # 2 x 2 pre-LN + emb_layer_norm_after = 5 layer_norm; 2 gelu; sdpa 2
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, rms_norm=0, linear=14)
    return _hf_model(
        "hf_esm_seqcls",
        "encoder",
        TFEsmForSequenceClassification,
        config,
        None,  # as hf_esm: PyTorch ESM differs from TF on padded inputs
        nominal,
        outputs=("logits",),
        note="no twin: as hf_esm, PyTorch ESM differs from TF with a padding mask",
    )


@register("hf_openai_gpt_lm", family="decoder")
def build_openai_gpt_lm() -> CorpusModel:
    from transformers import OpenAIGPTConfig, TFOpenAIGPTLMHeadModel

    config = OpenAIGPTConfig(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4)
    # modeling_tf_openai.py: hf_openai_gpt's 8 linear (TFConv1D c_attn, c_proj, c_fc,
    # c_proj per layer) + the tied, bias-free logits by tokens_embed = 9; post-LN 2 x 2 = 4
    # layer_norm; 2 gelu; causal + padding mask: 2 attentions
    # (causal band and padding both fill -1e4: not SDPA, exact on left padding only unfused:
    # patterns/_attention_masks.py `_dominates`) so 0 sdpa, its 2 softmaxes kept
    nominal = dict(sdpa=0, softmax=2, layer_norm=4, gelu=2, rms_norm=0, linear=9)
    return _hf_model(
        "hf_openai_gpt_lm",
        "decoder",
        TFOpenAIGPTLMHeadModel,
        config,
        "OpenAIGPTLMHeadModel",
        nominal,
        outputs=("logits",),
    )


@register("hf_electra_mlm", family="encoder")
def build_electra_mlm() -> CorpusModel:
    from transformers import ElectraConfig, TFElectraForMaskedLM

    config = ElectraConfig(**TINY, embedding_size=16)
    # modeling_tf_electra.py: hf_electra's 13 linear + the generator head's dense (to
    # embedding_size) + the tied decoder (word_embeddings^T + bias) = 15; layer_norm 5 + the
    # head's 1 = 6; gelu 2 + the head's 1 = 3; sdpa 2
    nominal = dict(sdpa=2, layer_norm=6, gelu=3, rms_norm=0, linear=15)
    return _hf_model(
        "hf_electra_mlm",
        "encoder",
        TFElectraForMaskedLM,
        config,
        "ElectraForMaskedLM",
        nominal,
        inputs=_BERT_INPUTS,
        outputs=("logits",),
    )
