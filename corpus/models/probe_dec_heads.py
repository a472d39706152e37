"""December task-head probes: Hugging Face TF heads and towers the corpus lacked, built as a
new user would (tiny configs, every variable randomised, the helpers of `hf_text` et al.).

* ``hf_bert_nsp``: TFBertForNextSentencePrediction: the tanh pooler and a 2-unit Dense;
* ``hf_roberta_qa``: TFRobertaForQuestionAnswering: a pooler-less RoBERTa, one 2-unit Dense
  split into start and end logits (``tf.split`` then ``tf.squeeze``);
* ``hf_xlm_roberta_tokcls``: TFXLMRobertaForTokenClassification: a Dense on every token;
* ``hf_camembert_mlm``: TFCamembertForMaskedLM: RoBERTa's LM head (Dense, gelu, LayerNorm,
  the tied word-embedding decoder plus a bias);
* ``hf_roberta_causal_lm``: TFRobertaForCausalLM: RoBERTa with ``is_decoder=True`` (the
  padding mask times a causal mask built from the sequence length) and the same LM head;
* ``hf_vit_cls``: TFViTForImageClassification: ViT (class token, learned positions, pre-LN),
  the final LayerNorm and a classifier on the class token;
* ``hf_data2vec_vision_cls``: TFData2VecVisionForImageClassification: BEiT layers with
  relative position bias, the mean over patch tokens into a LayerNorm pooler, a classifier;
* ``hf_swiftformer_cls``: TFSwiftFormerForImageClassification: hf_swiftformer, a
  BatchNormalization, the spatial mean, a head and a distillation head averaged;
* ``hf_hubert_ctc``: TFHubertForCTC: hf_hubert plus a Dense to the CTC vocabulary;
* ``hf_mt5_lm``: TFMT5ForConditionalGeneration: mT5 with an untied, bias-free ``lm_head``;
* ``hf_pegasus_lm``: TFPegasusForConditionalGeneration: logits by the shared table (tied)
  plus ``final_logits_bias``;
* ``hf_mistral_seqcls``: TFMistralForSequenceClassification: the logits at each row's last
  non-pad token (``argmax(ids == pad) - 1``, -1 wrapped to the last position);
* ``hf_electra_mc``: TFElectraForMultipleChoice: (batch, choices, seq) inputs, the
  TFSequenceSummary of the first token (Dense + gelu), a 1-unit classifier;
* ``hf_gptj_qa``: TFGPTJForQuestionAnswering: GPT-J (parallel attention and MLP, partial
  rotary) and a 2-unit Dense split into start and end;
* ``hf_bart_lm``: TFBartForConditionalGeneration: logits by the shared table plus
  ``final_logits_bias``;
* ``hf_transfo_xl``: TFTransfoXLModel: adaptive input embeddings by vocabulary cutoffs
  (``tf.boolean_mask`` and ``tensor_scatter_nd_add``: sizes decided by the ids), relative
  sinusoid positions, no memory;
* ``hf_transfo_xl_lm``: TFTransfoXLLMHeadModel: hf_transfo_xl and the adaptive softmax
  (per-cluster log_softmax, the tail clusters offset by their cluster token's log-prob).

The ``nominal`` counts follow the TF modelling source, one comment per builder.
"""

from __future__ import annotations

from ..registry import (
    CorpusModel,
    hf_outputs,
    randomize,
    register,
    text_inputs,
    tf_module,
    trainable_count,
)
from .hf_audio import _wave, _wave_config
from .hf_more import T5_TINY
from .hf_seq2seq import NAMES as SEQ2SEQ_NAMES
from .hf_seq2seq import TINY as SEQ2SEQ_TINY
from .hf_seq2seq import seq2seq_inputs
from .hf_text import _BERT_INPUTS, SIZES, TINY, _hf_model
from .hf_vision import DATA2VEC_VISION_TINY, _vision
from .probe_dec import SWIFTFORMER_TINY
from .probe_jan_text import multiple_choice
from .probe_mar_text import _padded, _seq2seq_head

#: RoBERTa, XLM-R and CamemBERT number positions from pad_token_id + 1
_ROBERTA = dict(TINY, pad_token_id=1)


@register("hf_bert_nsp", family="encoder")
def build_bert_nsp() -> CorpusModel:
    from transformers import BertConfig, TFBertForNextSentencePrediction

    config = BertConfig(**TINY)
    # modeling_tf_bert.py: 2 x (q, k, v, o, intermediate, output) + pooler (Dense + tanh) +
    # the NSP head (seq_relationship, 2 units) = 14 linear; layer_norm 1 + 2 x 2 = 5; gelu 2;
    # sdpa 2
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=14)
    return _hf_model(
        "hf_bert_nsp",
        "encoder",
        TFBertForNextSentencePrediction,
        config,
        "BertForNextSentencePrediction",
        nominal,
        inputs=_BERT_INPUTS,
        outputs=("logits",),
    )


@register("hf_roberta_qa", family="encoder")
def build_roberta_qa() -> CorpusModel:
    from transformers import RobertaConfig, TFRobertaForQuestionAnswering

    config = RobertaConfig(**_ROBERTA)
    # modeling_tf_roberta.py: add_pooling_layer=False: 2 x 6 + qa_outputs = 13 linear;
    # layer_norm 5; gelu 2; sdpa 2
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=13)
    return _hf_model(
        "hf_roberta_qa",
        "encoder",
        TFRobertaForQuestionAnswering,
        config,
        "RobertaForQuestionAnswering",
        nominal,
        outputs=("start_logits", "end_logits"),
    )


@register("hf_xlm_roberta_tokcls", family="encoder")
def build_xlm_roberta_tokcls() -> CorpusModel:
    from transformers import TFXLMRobertaForTokenClassification, XLMRobertaConfig

    config = XLMRobertaConfig(**_ROBERTA, num_labels=5)
    # modeling_tf_xlm_roberta.py: add_pooling_layer=False: 2 x 6 + classifier = 13 linear;
    # layer_norm 5; gelu 2; sdpa 2
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=13)
    return _hf_model(
        "hf_xlm_roberta_tokcls",
        "encoder",
        TFXLMRobertaForTokenClassification,
        config,
        "XLMRobertaForTokenClassification",
        nominal,
        outputs=("logits",),
    )


@register("hf_camembert_mlm", family="encoder")
def build_camembert_mlm() -> CorpusModel:
    from transformers import CamembertConfig, TFCamembertForMaskedLM

    config = CamembertConfig(**_ROBERTA)
    # modeling_tf_camembert.py: add_pooling_layer=False: 2 x 6 + the LM head's dense + the
    # tied decoder (word_embeddings^T + bias) = 14 linear; layer_norm 5 + the head's 1 = 6;
    # gelu 2 + the head's 1 = 3; sdpa 2
    nominal = dict(sdpa=2, layer_norm=6, gelu=3, linear=14)
    return _hf_model(
        "hf_camembert_mlm",
        "encoder",
        TFCamembertForMaskedLM,
        config,
        "CamembertForMaskedLM",
        nominal,
        outputs=("logits",),
    )


@register("hf_roberta_causal_lm", family="decoder")
def build_roberta_causal_lm() -> CorpusModel:
    from transformers import RobertaConfig, TFRobertaForCausalLM

    config = RobertaConfig(**_ROBERTA, is_decoder=True, use_cache=False)
    # modeling_tf_roberta.py: is_decoder: the extended mask is causal_mask * attention_mask
    # (a tril of ones by tf.range comparisons); add_pooling_layer=False: 2 x 6 + the LM
    # head's dense + the tied decoder = 14 linear; layer_norm 6; gelu 3; sdpa 2
    nominal = dict(sdpa=2, layer_norm=6, gelu=3, linear=14)
    return _hf_model(
        "hf_roberta_causal_lm",
        "decoder",
        TFRobertaForCausalLM,
        config,
        "RobertaForCausalLM",
        nominal,
        outputs=("logits",),
    )


@register("hf_vit_cls", family="vision")
def build_vit_cls() -> CorpusModel:
    from transformers import ViTConfig

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_labels=5,
    )
    # modeling_tf_vit.py: add_pooling_layer=False: 2 x (q, k, v, o, intermediate, output) +
    # classifier on the class token = 13 linear (patch embedding is a Conv2D); layer_norm
    # 2 x (before, after) + the final layernorm = 5; gelu 2; sdpa 2
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=13)
    return _vision(
        "hf_vit_cls",
        "TFViTForImageClassification",
        "ViTForImageClassification",
        config,
        ("logits",),
        nominal,
    )


@register("hf_data2vec_vision_cls", family="vision")
def build_data2vec_vision_cls() -> CorpusModel:
    from transformers import Data2VecVisionConfig

    config = Data2VecVisionConfig(**DATA2VEC_VISION_TINY, num_labels=5)
    # modeling_tf_data2vec_vision.py: hf_data2vec_vision's 12 linear, 4 layer_norm, 2 gelu,
    # 2 sdpa + the pooler (add_pooling_layer=True: the mean over patch tokens into a
    # LayerNorm) + classifier: linear 13, layer_norm 5
    nominal = {"sdpa": 2, "linear": 13, "layer_norm": 5, "gelu": 2}
    return _vision(
        "hf_data2vec_vision_cls",
        "TFData2VecVisionForImageClassification",
        "Data2VecVisionForImageClassification",
        config,
        ("logits",),
        nominal,
    )


@register("hf_swiftformer_cls", family="vision")
def build_swiftformer_cls() -> CorpusModel:
    from transformers import SwiftFormerConfig

    config = SwiftFormerConfig(**SWIFTFORMER_TINY, num_labels=5)
    # modeling_tf_swiftformer.py: hf_swiftformer's 10 linear, 6 gelu + the head's
    # BatchNormalization (norm), the spatial mean, head and dist_head Dense averaged = 12 linear
    nominal = {"linear": 12, "gelu": 6}
    return _vision(
        "hf_swiftformer_cls",
        "TFSwiftFormerForImageClassification",
        "SwiftFormerForImageClassification",
        config,
        ("logits",),
        nominal,
    )


@register("hf_hubert_ctc", family="audio")
def build_hubert_ctc() -> CorpusModel:
    from transformers import HubertConfig

    model = _wave(
        "hf_hubert_ctc", "TFHubertForCTC", "HubertForCTC", _wave_config(HubertConfig), ("logits",)
    )
    # modeling_tf_hubert.py: hf_hubert's 13 linear + lm_head (Dense to vocab_size) = 14; the
    # other counts as hf_hubert (sdpa 2, layer_norm 6, gelu 6)
    model.nominal = {**model.nominal, "linear": 14}
    return model


@register("hf_mt5_lm", family="seq2seq")
def build_mt5_lm() -> CorpusModel:
    from transformers import MT5Config, TFMT5ForConditionalGeneration

    config = MT5Config(**T5_TINY)
    # modeling_tf_mt5.py (T5's classes): MT5Config ties no embeddings, so lm_head is its own
    # bias-free Dense and the decoder output is not rescaled: hf_mt5's 36 linear + lm_head =
    # 37; sdpa 6; rms_norm 12; gelu 4
    nominal = {"sdpa": 6, "linear": 37, "layer_norm": 0, "rms_norm": 12, "gelu": 4}
    return _seq2seq_head(
        "hf_mt5_lm",
        TFMT5ForConditionalGeneration,
        "MT5ForConditionalGeneration",
        config,
        nominal,
        ("logits", "encoder_last_hidden_state"),
        SEQ2SEQ_NAMES,
        seq2seq_inputs(config.vocab_size),
    )


@register("hf_pegasus_lm", family="seq2seq")
def build_pegasus_lm() -> CorpusModel:
    from transformers import PegasusConfig, TFPegasusForConditionalGeneration

    config = PegasusConfig(**SEQ2SEQ_TINY, activation_function="relu", scale_embedding=True)
    # modeling_tf_pegasus.py: hf_pegasus's 32 linear + the LM head (decoder output @ shared^T
    # + final_logits_bias, a non-trainable BiasLayer) = 33; layer_norm 12; relu; sdpa 6
    nominal = {"sdpa": 6, "linear": 33, "layer_norm": 12, "rms_norm": 0, "gelu": 0}
    return _seq2seq_head(
        "hf_pegasus_lm",
        TFPegasusForConditionalGeneration,
        "PegasusForConditionalGeneration",
        config,
        nominal,
        ("logits", "encoder_last_hidden_state"),
        SEQ2SEQ_NAMES,
        seq2seq_inputs(config.vocab_size),
    )


@register("hf_mistral_seqcls", family="decoder")
def build_mistral_seqcls() -> CorpusModel:
    from transformers import MistralConfig, TFMistralForSequenceClassification

    config = MistralConfig(
        **TINY, num_key_value_heads=2, num_labels=3, pad_token_id=0, use_cache=False
    )
    inputs = ("input_ids", "attention_mask")
    # modeling_tf_mistral.py: hf_mistral's 14 linear + score (no bias) = 15; rms_norm 5;
    # silu; sdpa 2
    nominal = dict(sdpa=2, layer_norm=0, rms_norm=5, gelu=0, linear=15)
    return _hf_model(
        "hf_mistral_seqcls",
        "decoder",
        TFMistralForSequenceClassification,
        config,
        "MistralForSequenceClassification",
        nominal,
        inputs=inputs,
        outputs=("logits",),
        make_inputs=_padded(text_inputs(inputs, config.vocab_size), pad=0, low=1),
    )


@register("hf_electra_mc", family="encoder")
def build_electra_mc() -> CorpusModel:
    """TFElectraForMultipleChoice: (batch, choices, seq) inputs flattened inside, the
    TFSequenceSummary of the first token (Dense + gelu) and a 1-unit classifier."""
    from transformers import ElectraConfig, TFElectraForMultipleChoice

    # modeling_tf_electra.py: hf_electra's 13 linear + the sequence summary's Dense + the
    # classifier = 15; layer_norm 5; gelu 2 + the summary's activation (gelu) = 3; sdpa 2
    nominal = dict(sdpa=2, layer_norm=5, gelu=3, linear=15, rms_norm=0)
    return multiple_choice(
        "hf_electra_mc",
        TFElectraForMultipleChoice,
        ElectraConfig(**TINY, embedding_size=16),
        "ElectraForMultipleChoice",
        nominal,
    )


@register("hf_gptj_qa", family="decoder")
def build_gptj_qa() -> CorpusModel:
    from transformers import GPTJConfig, TFGPTJForQuestionAnswering

    config = GPTJConfig(
        vocab_size=TINY["vocab_size"],
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_inner=37,
        n_positions=64,
        rotary_dim=4,
        use_cache=False,
    )
    # modeling_tf_gptj.py: hf_gptj's 12 linear + qa_outputs = 13; layer_norm 3; gelu 2; sdpa 2
    nominal = dict(sdpa=2, layer_norm=3, gelu=2, linear=13, rms_norm=0)
    return _hf_model(
        "hf_gptj_qa",
        "decoder",
        TFGPTJForQuestionAnswering,
        config,
        "GPTJForQuestionAnswering",
        nominal,
        outputs=("start_logits", "end_logits"),
    )


@register("hf_bart_lm", family="seq2seq")
def build_bart_lm() -> CorpusModel:
    from transformers import BartConfig, TFBartForConditionalGeneration

    config = BartConfig(**SEQ2SEQ_TINY, activation_function="gelu")
    # modeling_tf_bart.py: hf_bart's 32 linear + the LM head (shared^T + final_logits_bias) =
    # 33; layer_norm: embeddings 2 + enc 2 x 2 + dec 2 x 3 = 12; gelu 4; sdpa 6
    nominal = {"sdpa": 6, "linear": 33, "layer_norm": 12, "rms_norm": 0, "gelu": 4}
    return _seq2seq_head(
        "hf_bart_lm",
        TFBartForConditionalGeneration,
        "BartForConditionalGeneration",
        config,
        nominal,
        ("logits", "encoder_last_hidden_state"),
        SEQ2SEQ_NAMES,
        seq2seq_inputs(config.vocab_size),
    )


def _transfo_xl_config() -> object:
    from transformers import TransfoXLConfig

    return TransfoXLConfig(
        vocab_size=TINY["vocab_size"],
        cutoffs=[20, 50],
        d_model=32,
        d_embed=32,
        n_head=4,
        d_head=8,
        d_inner=37,
        div_val=2,
        n_layer=2,
        mem_len=0,
        clamp_len=-1,
        same_length=False,
    )


def _transfo_xl(name: str, tf_class: str, output: str, nominal: dict[str, int]) -> CorpusModel:
    import transformers

    tf = tf_module()
    model = getattr(transformers, tf_class)(_transfo_xl_config())
    make_inputs = text_inputs(("input_ids",), TINY["vocab_size"])
    model(make_inputs(1, 0))
    randomize(model)
    return CorpusModel(
        name=name,
        family="decoder",
        model=model,
        input_signature=[tf.TensorSpec((None, None), tf.int32, name="input_ids")],
        output_names=(output,),
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, (output,)),
        trainable_params=trainable_count(model),
        sizes=SIZES,
        nominal={"gelu": 0, "rms_norm": 0, **nominal},
        note="no PyTorch twin: the deprecated TransfoXLModel fails on this torch "
        "(Tensor.type_as called without its argument)",
    )


@register("hf_transfo_xl", family="decoder")
def build_transfo_xl() -> CorpusModel:
    """TFTransfoXLModel: adaptive input embeddings (ids split by vocabulary cutoffs with
    ``tf.boolean_mask``, each cluster's table and projection, put back by
    ``tensor_scatter_nd_add``), relative sinusoid positions with r_w/r_r biases, no memory."""
    # deprecated/transfo_xl/modeling_tf_transfo_xl.py: per layer qkv_net (one bias-free
    # Dense), r_net, o_net and the feed-forward's two Dense = 5, x 2 = 10, + the adaptive
    # embedding's 3 cluster projections (einsum by emb_projs_i, bias-free; div_val 2 projects
    # every cluster) = 13 linear; layer_norm 2 x 2 = 4 (post-LN); relu; sdpa 2 (AC + the
    # rel-shifted BD, scaled, masked by a static upper triangle)
    nominal = dict(sdpa=2, layer_norm=4, linear=13)
    return _transfo_xl("hf_transfo_xl", "TFTransfoXLModel", "last_hidden_state", nominal)


@register("hf_transfo_xl_lm", family="decoder")
def build_transfo_xl_lm() -> CorpusModel:
    """TFTransfoXLLMHeadModel: hf_transfo_xl plus the adaptive softmax (no labels): the head
    cluster's log_softmax over the frequent ids and the cluster tokens, each tail cluster's
    log_softmax plus its cluster token's log-probability, concatenated."""
    # modeling_tf_transfo_xl_utilities.py TFAdaptiveSoftmaxMask._logit: per cluster the
    # projection (einsum by out_projs_i, bias-free) and the logits (einsum by the cluster's
    # weight + bias) = 2 x 3 = 6, + hf_transfo_xl's 13 = 19 linear; the 3 log_softmax are no
    # attention
    nominal = dict(sdpa=2, layer_norm=4, linear=19)
    return _transfo_xl("hf_transfo_xl_lm", "TFTransfoXLLMHeadModel", "prediction_scores", nominal)
