"""March text probes: Hugging Face task heads and towers from outside the corpus, probed as a
new user would (tiny configs, the same helpers as `hf_text` / `hf_seq2seq`).

* ``hf_gpt2_seqcls``: TFGPT2ForSequenceClassification: logits at the last non-pad token
  (``reduce_max(arange * (ids != pad))`` then a batched ``tf.gather``);
* ``hf_gpt2_double_heads``: TFGPT2DoubleHeadsModel: (batch, choices, seq) inputs, the LM
  head tied to ``wte`` and the multiple-choice summary gathered at ``mc_token_ids``;
* ``hf_flaubert_prenorm``: TFFlaubertModel with ``pre_norm=True`` (LayerNorm before each
  sub-block, no final LayerNorm);
* ``hf_vision_text_dual``: TFVisionTextDualEncoderModel, ViT + BERT towers, bias-free
  projections and ``exp(logit_scale)`` similarity logits;
* ``hf_electra_pretraining``: TFElectraForPreTraining: the discriminator head (Dense + GELU
  + a 1-unit Dense, squeezed);
* ``hf_distilbert_qa``: TFDistilBertForQuestionAnswering: one 2-unit Dense split into start
  and end logits;
* ``hf_t5_lm``: TFT5ForConditionalGeneration with tied embeddings: the decoder output is
  scaled by ``d_model ** -0.5`` and multiplied by the shared embedding table;
* ``hf_bart_seqcls``: TFBartForSequenceClassification: the sentence vector is the decoder
  state at the last ``<eos>``, taken by ``tf.boolean_mask`` (a data-dependent shape);
* ``hf_dpr_question``: TFDPRQuestionEncoder: the [CLS] state of a pooler-less BERT;
* ``hf_led``: TFLEDModel: a Longformer (sliding-window) encoder and a BART decoder.

The ``nominal`` counts follow the TF modelling source, one comment per builder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..registry import (
    CorpusModel,
    hf_outputs,
    hf_twin,
    randomize,
    register,
    text_inputs,
    tf_module,
    trainable_count,
)
from .hf_audio import torch_inputs as mixed_torch_inputs
from .hf_seq2seq import NAMES as SEQ2SEQ_NAMES
from .hf_seq2seq import SIZES as SEQ2SEQ_SIZES
from .hf_seq2seq import TINY as SEQ2SEQ_TINY
from .hf_seq2seq import seq2seq_inputs
from .hf_seq2seq import torch_inputs as seq2seq_torch_inputs
from .hf_text import SIZES, TINY, _hf_model, _torch_inputs

CHOICES = 3
IMAGE = (3, 32, 32)
GPT2_TINY = dict(
    vocab_size=TINY["vocab_size"], n_positions=64, n_embd=32, n_layer=2, n_head=4, n_inner=48
)


def _padded(
    make: Callable[..., dict[str, np.ndarray]], pad: int, low: int = 0, eos: int | None = None
) -> Callable[..., dict[str, np.ndarray]]:
    """``make``'s inputs with real padding: ids in [low, vocab) where the mask is 1 and
    ``pad`` where it is 0 (and, with ``eos``, that id at each row's last real token)."""

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        arrays = make(batch_size, seed, size)
        ids, mask = arrays["input_ids"], arrays["attention_mask"].astype(bool)
        ids = np.where(ids < low, ids + low, ids)
        ids = np.where(mask, ids, pad)
        if eos is not None:
            ids = np.where(ids == eos, low, ids)
            ids[np.arange(len(ids)), mask.sum(-1) - 1] = eos
        arrays["input_ids"] = ids.astype(arrays["input_ids"].dtype)
        return arrays

    return make_inputs


# --------------------------------------------------------------------------- GPT-2 heads


@register("hf_gpt2_seqcls", family="decoder")
def build_gpt2_seqcls() -> CorpusModel:
    """TFGPT2ForSequenceClassification with a pad token: each row's logits at its last
    non-pad token, found from the ids (a gather at data-dependent indices, static shape)."""
    from transformers import GPT2Config, TFGPT2ForSequenceClassification

    config = GPT2Config(**GPT2_TINY, num_labels=3, pad_token_id=0, use_cache=False)
    inputs = ("input_ids", "attention_mask")
    # modeling_tf_gpt2.py: 2 x (c_attn, c_proj, c_fc, mlp c_proj) + score (no bias) = 9 linear;
    # 2 x (ln_1, ln_2) + ln_f = 5 layer_norm; gelu_new (tanh) 2; causal + padding: 2 attentions
    # (causal band and padding both fill -1e4: not SDPA, exact on left padding only unfused:
    # patterns/_attention_masks.py `_dominates`) so 0 sdpa, its 2 softmaxes kept
    nominal = dict(sdpa=0, softmax=2, layer_norm=5, gelu=2, linear=9)
    return _hf_model(
        "hf_gpt2_seqcls",
        "decoder",
        TFGPT2ForSequenceClassification,
        config,
        "GPT2ForSequenceClassification",
        nominal,
        inputs=inputs,
        outputs=("logits",),
        make_inputs=_padded(text_inputs(inputs, config.vocab_size), pad=0, low=1),
    )


@register("hf_gpt2_double_heads", family="decoder")
def build_gpt2_double_heads() -> CorpusModel:
    """TFGPT2DoubleHeadsModel: (batch, choices, seq) ids flattened inside, LM logits by the
    tied ``wte`` table, and a 1-unit summary Dense on the state at ``mc_token_ids``."""
    from transformers import GPT2Config, TFGPT2DoubleHeadsModel

    tf = tf_module()
    config = GPT2Config(**GPT2_TINY, num_labels=1, use_cache=False)
    tokens = text_inputs(("input_ids", "attention_mask"), config.vocab_size)

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        flat = tokens(batch_size * CHOICES, seed, size)
        last = flat["attention_mask"].sum(-1) - 1
        return {
            "input_ids": flat["input_ids"].reshape(batch_size, CHOICES, -1),
            "attention_mask": flat["attention_mask"].reshape(batch_size, CHOICES, -1),
            "mc_token_ids": last.reshape(batch_size, CHOICES).astype(np.int32),
        }

    model = TFGPT2DoubleHeadsModel(config)
    model(make_inputs(1, 0))
    randomize(model)
    outputs = ("logits", "mc_logits")
    # modeling_tf_gpt2.py: 2 x (c_attn, c_proj, c_fc, mlp c_proj) + the tied LM head (wte^T,
    # no bias) + multiple_choice_head summary Dense = 10 linear; 2 x 2 + ln_f = 5 layer_norm;
    # gelu_new 2; 2 attentions
    # (causal band and padding both fill -1e4: not SDPA, exact on left padding only unfused:
    # patterns/_attention_masks.py `_dominates`) so 0 sdpa, its 2 softmaxes kept
    nominal = dict(sdpa=0, softmax=2, layer_norm=5, gelu=2, linear=10)
    return CorpusModel(
        name="hf_gpt2_double_heads",
        family="decoder",
        model=model,
        input_signature=[
            tf.TensorSpec((None, CHOICES, None), tf.int32, name="input_ids"),
            tf.TensorSpec((None, CHOICES, None), tf.int32, name="attention_mask"),
            tf.TensorSpec((None, CHOICES), tf.int32, name="mc_token_ids"),
        ],
        output_names=outputs,
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, outputs),
        trainable_params=trainable_count(model),
        sizes=SIZES,
        nominal=nominal,
        dynamic_axes={"input_ids": [2], "attention_mask": [2]},
        twin=hf_twin(model, "GPT2DoubleHeadsModel"),
        twin_inputs=_torch_inputs,
        note="choices 3 in the signature, but export_onnx makes dim 1 of every token input "
        "dynamic, so input_ids' choices are a symbol and mc_token_ids' a static 3; the convert "
        "line's verify then draws 8 choices against 3 (and mc_token_ids up to an embedding "
        "table's rows: it bounds only Gathers into initializers, not this GatherND), which "
        "onnxruntime rejects; the convert line therefore passes the first case with "
        "--example-inputs",
    )


# --------------------------------------------------------------------------- encoders


@register("hf_flaubert_prenorm", family="encoder")
def build_flaubert_prenorm() -> CorpusModel:
    """TFFlaubertModel, pre_norm=True: LayerNorm before attention and FFN, residual after."""
    from transformers import FlaubertConfig, TFFlaubertModel

    config = FlaubertConfig(
        vocab_size=TINY["vocab_size"],
        emb_dim=32,
        n_layers=2,
        n_heads=4,
        max_position_embeddings=64,
        pre_norm=True,
        layerdrop=0.0,
    )
    # modeling_tf_flaubert.py: FFN 4 x emb_dim; 2 x (q, k, v, out, lin1, lin2) = 12 linear;
    # layer_norm_emb + 2 x (layer_norm1, layer_norm2) = 5 layer_norm (pre_norm adds none);
    # gelu_activation: 2 exact gelu; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=12)
    return _hf_model(
        "hf_flaubert_prenorm", "encoder", TFFlaubertModel, config, "FlaubertModel", nominal
    )


@register("hf_electra_pretraining", family="encoder")
def build_electra_pretraining() -> CorpusModel:
    """TFElectraForPreTraining: per-token real/replaced logits (batch, seq)."""
    from transformers import ElectraConfig, TFElectraForPreTraining

    config = ElectraConfig(**TINY, embedding_size=16)
    # modeling_tf_electra.py: 2 x (q,k,v,o,ffn1,ffn2) + embeddings_project + discriminator
    # dense + dense_prediction = 15 linear; embeddings LN + 2 x 2 = 5 layer_norm; gelu: 2
    # intermediate + the discriminator head's hidden_act = 3; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, gelu=3, linear=15)
    return _hf_model(
        "hf_electra_pretraining",
        "encoder",
        TFElectraForPreTraining,
        config,
        "ElectraForPreTraining",
        nominal,
        inputs=("input_ids", "attention_mask", "token_type_ids"),
        outputs=("logits",),
    )


@register("hf_distilbert_qa", family="encoder")
def build_distilbert_qa() -> CorpusModel:
    """TFDistilBertForQuestionAnswering: a 2-unit Dense split into start and end logits."""
    from transformers import DistilBertConfig, TFDistilBertForQuestionAnswering

    config = DistilBertConfig(
        vocab_size=TINY["vocab_size"],
        dim=32,
        n_layers=2,
        n_heads=4,
        hidden_dim=37,
        max_position_embeddings=64,
        activation="gelu",
    )
    # modeling_tf_distilbert.py: 2 x (q, k, v, out, lin1, lin2) + qa_outputs = 13 linear;
    # embeddings LN + 2 x 2 = 5 layer_norm; 2 gelu; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=13)
    return _hf_model(
        "hf_distilbert_qa",
        "encoder",
        TFDistilBertForQuestionAnswering,
        config,
        "DistilBertForQuestionAnswering",
        nominal,
        outputs=("start_logits", "end_logits"),
    )


# --------------------------------------------------------------------------- vision + text


@register("hf_vision_text_dual", family="vision")
def build_vision_text_dual() -> CorpusModel:
    """TFVisionTextDualEncoderModel from a ViT and a BERT config: pooled outputs, bias-free
    projections, L2 normalisation, logits = exp(logit_scale) * text @ image^T."""
    from transformers import (
        BertConfig,
        TFVisionTextDualEncoderModel,
        VisionTextDualEncoderConfig,
        ViTConfig,
    )

    tf = tf_module()
    vision = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
    )
    config = VisionTextDualEncoderConfig.from_vision_text_configs(
        vision, BertConfig(**TINY), projection_dim=16
    )
    tokens = text_inputs(("input_ids", "attention_mask", "token_type_ids"), TINY["vocab_size"])

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, Any]:
        inputs = tokens(batch_size, seed, size)
        rng = np.random.default_rng(seed + 1)
        pixels = rng.standard_normal((batch_size, *IMAGE)).astype(np.float32)
        return {
            "input_ids": inputs["input_ids"],
            "pixel_values": pixels,
            "attention_mask": inputs["attention_mask"],
            "token_type_ids": inputs["token_type_ids"],
        }

    model = TFVisionTextDualEncoderModel(config=config)
    model(make_inputs(1, 0))
    randomize(model)
    # modeling_tf_vit.py + modeling_tf_bert.py: ViT 2 x (q,k,v,o,ffn1,ffn2) + pooler = 13,
    # BERT the same 13, + visual_projection + text_projection = 28 linear; layer_norm: ViT 2 x 2
    # + final 1, BERT embeddings 1 + 2 x 2 = 10; 4 exact gelu; 4 sdpa
    nominal = dict(sdpa=4, layer_norm=10, gelu=4, linear=28)
    outputs = ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds")
    return CorpusModel(
        name="hf_vision_text_dual",
        family="vision",
        model=model,
        input_signature=[
            tf.TensorSpec((None, None), tf.int32, name="input_ids"),
            tf.TensorSpec((None, *IMAGE), tf.float32, name="pixel_values"),
            tf.TensorSpec((None, None), tf.int32, name="attention_mask"),
            tf.TensorSpec((None, None), tf.int32, name="token_type_ids"),
        ],
        output_names=outputs,
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, outputs),
        trainable_params=trainable_count(model),
        sizes=SIZES,
        nominal=nominal,
        twin=hf_twin(model, "VisionTextDualEncoderModel"),
        twin_inputs=mixed_torch_inputs,
    )


# --------------------------------------------------------------------------- seq2seq heads


def _seq2seq_head(
    name: str,
    tf_class: Any,
    pt_class: str,
    config: Any,
    nominal: dict[str, int],
    outputs: tuple[str, ...],
    names: tuple[str, ...],
    make_inputs: Callable[..., dict[str, np.ndarray]],
) -> CorpusModel:
    tf = tf_module()
    model = tf_class(config)
    model(make_inputs(1, 0), training=False)
    randomize(model)
    return CorpusModel(
        name=name,
        family="seq2seq",
        model=model,
        input_signature=[tf.TensorSpec((None, None), tf.int32, name=n) for n in names],
        output_names=outputs,
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, outputs),
        trainable_params=trainable_count(model),
        sizes=SEQ2SEQ_SIZES,
        nominal=nominal,
        twin=hf_twin(model, pt_class),
        twin_inputs=seq2seq_torch_inputs,
    )


@register("hf_t5_lm", family="seq2seq")
def build_t5_lm() -> CorpusModel:
    """TFT5ForConditionalGeneration, tie_word_embeddings: LM logits = (decoder output *
    d_model ** -0.5) @ shared^T."""
    from transformers import T5Config, TFT5ForConditionalGeneration

    config = T5Config(
        vocab_size=TINY["vocab_size"],
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=True,
        decoder_start_token_id=0,
        pad_token_id=0,
        use_cache=False,
    )
    # modeling_tf_t5.py: hf_t5's 36 linear + the tied LM head = 37; sdpa 6; rms_norm 12; gelu 4
    nominal = {"sdpa": 6, "linear": 37, "layer_norm": 0, "rms_norm": 12, "gelu": 4}
    return _seq2seq_head(
        "hf_t5_lm",
        TFT5ForConditionalGeneration,
        "T5ForConditionalGeneration",
        config,
        nominal,
        ("logits", "encoder_last_hidden_state"),
        SEQ2SEQ_NAMES,
        seq2seq_inputs(config.vocab_size),
    )


@register("hf_bart_seqcls", family="seq2seq")
def build_bart_seqcls() -> CorpusModel:
    """TFBartForSequenceClassification: decoder ids shifted from input_ids inside; the
    decoder state at each row's last <eos> (boolean_mask + reshape) into a tanh head."""
    from transformers import BartConfig, TFBartForSequenceClassification

    config = BartConfig(**SEQ2SEQ_TINY, activation_function="gelu", eos_token_id=2, num_labels=3)
    names = ("input_ids", "attention_mask")
    make = seq2seq_inputs(config.vocab_size)

    def tokens(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        arrays = make(batch_size, seed, size)
        return {n: arrays[n] for n in names}

    # modeling_tf_bart.py: hf_bart's 32 linear + classification_head dense, out_proj = 34;
    # layer_norm 12; gelu 4; sdpa 6
    nominal = {"sdpa": 6, "linear": 34, "layer_norm": 12, "rms_norm": 0, "gelu": 4}
    model = _seq2seq_head(
        "hf_bart_seqcls",
        TFBartForSequenceClassification,
        "BartForSequenceClassification",
        config,
        nominal,
        ("logits", "encoder_last_hidden_state"),
        names,
        _padded(tokens, pad=config.pad_token_id, low=3, eos=config.eos_token_id),
    )
    model.note = (
        "valid inputs hold the same number (>= 1) of <eos> in every row (TF asserts it); the "
        "convert line's model.py check runs made-up all-ones ids, which hold none, and the "
        "Squeeze of the data-dependent slice refuses them by name; the convert line "
        "therefore passes the first case with --example-inputs"
    )
    return model


@register("hf_dpr_question", family="encoder")
def build_dpr_question() -> CorpusModel:
    """TFDPRQuestionEncoder: BERT without pooler, the output is the [CLS] state (a slice at
    position 0). projection_dim stays 0: with projection_dim > 0, transformers' TF build()
    calls encode_proj.build(None) and the model cannot be built ("The last dimension of the
    inputs to a Dense layer should be defined")."""
    from transformers import DPRConfig, TFDPRQuestionEncoder

    config = DPRConfig(**TINY, projection_dim=0)
    # modeling_tf_dpr.py: BERT (add_pooling_layer=False) 2 x (q,k,v,o,ffn1,ffn2) = 12 linear;
    # embeddings LN + 2 x 2 = 5 layer_norm; 2 exact gelu; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=12)
    return _hf_model(
        "hf_dpr_question",
        "encoder",
        TFDPRQuestionEncoder,
        config,
        "DPRQuestionEncoder",
        nominal,
        inputs=("input_ids", "attention_mask", "token_type_ids"),
        outputs=("pooler_output",),
    )


LED_WINDOW = 4


@register("hf_led", family="seq2seq")
def build_led() -> CorpusModel:
    """TFLEDModel: a Longformer encoder (sliding window of 4, no global attention; the input
    padded to a multiple of the window inside) and a BART decoder."""
    from transformers import LEDConfig, TFLEDModel

    tiny = {k: v for k, v in SEQ2SEQ_TINY.items() if k != "max_position_embeddings"}
    config = LEDConfig(
        **tiny,
        max_encoder_position_embeddings=64,
        max_decoder_position_embeddings=64,
        attention_window=LED_WINDOW,
    )
    # modeling_tf_led.py: enc 2 x (q, k, v, output, fc1, fc2) (the *_global Dense are read only
    # for tokens with global attention: none here) + dec 2 x (self qkvo, cross qkvo, fc1, fc2)
    # = 12 + 20 = 32 linear; layer_norm: enc layernorm_embedding + 2 x 2, dec
    # layernorm_embedding + 2 x 3 = 12; gelu 4; sdpa: the decoder's 2 x (self, cross) = 4, the
    # encoder's banded sliding-window softmax is no QK^T (softmax=2, hf_longformer's count)
    nominal = {"sdpa": 4, "linear": 32, "layer_norm": 12, "rms_norm": 0, "gelu": 4, "softmax": 2}
    model = _seq2seq_head(
        "hf_led",
        TFLEDModel,
        "LEDModel",
        config,
        nominal,
        ("last_hidden_state", "encoder_last_hidden_state"),
        SEQ2SEQ_NAMES,
        seq2seq_inputs(config.vocab_size),
    )
    model.note = (
        "fails in fxsurgeon, not tf2onnx, as hf_longformer does: the encoder's "
        "tf.signal.frame computes gcd(frame_size, hop) in a while Loop (no trip count) inside "
        "an If branch, which the Loop converter refuses (onnx2torch cannot convert the If)"
    )
    return model
