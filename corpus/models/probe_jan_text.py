"""January text probes: Hugging Face MBart, Blenderbot (pre-LN seq2seq), ESM with
relative_key_query position scores, BERT for multiple choice (3-D inputs), RoBERTa-PreLayerNorm,
Longformer (sliding-window attention), GPT-2 and LXMERT (language + vision streams and
cross-modality layers) (tiny configs, the same helpers as `hf_text` / `hf_seq2seq`).

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
from .hf_seq2seq import TINY as SEQ2SEQ_TINY
from .hf_seq2seq import _seq2seq
from .hf_text import _BERT_INPUTS, SIZES, TINY, _hf_model, _torch_inputs

# --------------------------------------------------------------------------- seq2seq


@register("hf_mbart", family="seq2seq")
def build_mbart() -> CorpusModel:
    """MBart: pre-LN layers, a layernorm_embedding and a final layer_norm on both stacks,
    learned positions (offset 2), exact GELU."""
    from transformers import MBartConfig

    config = MBartConfig(**SEQ2SEQ_TINY, activation_function="gelu")
    # modeling_tf_mbart.py:
    # sdpa: enc 2x self + dec 2x(self, cross) = 6
    # linear: enc 2x(q,k,v,o,fc1,fc2) + dec 2x(self qkvo, cross qkvo, fc1, fc2) = 12 + 20 = 32
    # layer_norm: enc (layernorm_embedding + 2x(self_attn, final) + layer_norm) + dec
    #   (layernorm_embedding + 2x(self, encoder_attn, final) + layer_norm) = 6 + 8 = 14
    # gelu: one per fc1 = 2 enc + 2 dec = 4
    nominal = {"sdpa": 6, "linear": 32, "layer_norm": 14, "rms_norm": 0, "gelu": 4}
    return _seq2seq("hf_mbart", "TFMBartModel", "MBartModel", config, nominal)


@register("hf_blenderbot", family="seq2seq")
def build_blenderbot() -> CorpusModel:
    """Blenderbot (not the small one): pre-LN layers, a final layer_norm per stack, no
    embedding LayerNorm, learned positions, exact GELU."""
    from transformers import BlenderbotConfig

    config = BlenderbotConfig(**SEQ2SEQ_TINY, activation_function="gelu")
    # modeling_tf_blenderbot.py:
    # sdpa: enc 2x self + dec 2x(self, cross) = 6
    # linear: enc 2x(q,k,v,o,fc1,fc2) + dec 2x(self qkvo, cross qkvo, fc1, fc2) = 12 + 20 = 32
    # layer_norm: enc (2x(self_attn, final) + layer_norm) + dec (2x(self, encoder_attn, final)
    #   + layer_norm) = 5 + 7 = 12
    # gelu: one per fc1 = 2 enc + 2 dec = 4
    nominal = {"sdpa": 6, "linear": 32, "layer_norm": 12, "rms_norm": 0, "gelu": 4}
    return _seq2seq("hf_blenderbot", "TFBlenderbotModel", "BlenderbotModel", config, nominal)


# --------------------------------------------------------------------------- encoders


@register("hf_esm_relative", family="encoder")
def build_esm_relative() -> CorpusModel:
    """ESM with position_embedding_type="relative_key_query": no absolute positions; each
    attention gathers a distance_embedding table at (i - j + max_positions - 1) and adds
    einsum("bhld,lrd->bhlr", q, table) + einsum("bhrd,lrd->bhlr", k, table) to the scores.
    (TFBertModel ignores position_embedding_type: TF ESM and BLIP-text are the TF models
    that implement it.)"""
    from transformers import EsmConfig, TFEsmModel

    config = EsmConfig(
        **TINY,
        position_embedding_type="relative_key_query",
        token_dropout=False,
        emb_layer_norm_before=False,
        pad_token_id=1,
        mask_token_id=2,
    )
    # modeling_tf_esm.py: 2 layers x (q,k,v,o,ffn1,ffn2) + pooler = 13 linear; 2 x (attention
    # pre-LN, FFN pre-LN) + emb_layer_norm_after = 5 layer_norm; 2 exact gelu; 2 sdpa (the
    # relative scores are computed from Q, K and positions, added to QK^T, then the mask)
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=13)
    return _hf_model(
        "hf_esm_relative",
        "encoder",
        TFEsmModel,
        config,
        None,  # PyTorch EsmModel differs from TF on padded inputs (hf_esm's note)
        nominal,
        outputs=("last_hidden_state", "pooler_output"),
        note="read by no output: the contact-prediction head and the absolute position table "
        "(built even with relative positions): door A brings them back as parameters no output "
        "depends on, door B cannot",
    )


CHOICES = 3


def multiple_choice(
    name: str, model_class: Any, config: Any, twin_class: str, nominal: dict[str, int]
) -> CorpusModel:
    """A TF*ForMultipleChoice head: (batch, CHOICES, seq) token inputs, the choices fixed in
    the export signature, batch and sequence dynamic; logits (batch, CHOICES)."""
    tf = tf_module()
    tokens = text_inputs(_BERT_INPUTS, config.vocab_size)

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        flat = tokens(batch_size * CHOICES, seed, size)
        return {k: v.reshape(batch_size, CHOICES, -1) for k, v in flat.items()}

    model = model_class(config)
    model(make_inputs(1, 0))
    randomize(model)
    return CorpusModel(
        name=name,
        family="encoder",
        model=model,
        input_signature=[
            tf.TensorSpec((None, CHOICES, None), tf.int32, name=n) for n in _BERT_INPUTS
        ],
        output_names=("logits",),
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, ("logits",)),
        trainable_params=trainable_count(model),
        sizes=SIZES,
        nominal=nominal,
        dynamic_axes={n: [2] for n in _BERT_INPUTS},
        twin=hf_twin(model, twin_class),
        twin_inputs=_torch_inputs,
        note="choices fixed at 3 in the export signature; batch and sequence dynamic",
    )


@register("hf_bert_multiple_choice", family="encoder")
def build_bert_multiple_choice() -> CorpusModel:
    """TFBertForMultipleChoice: (batch, choices, seq) inputs reshaped to (batch * choices,
    seq) inside the model, pooler + a 1-unit classifier, logits reshaped to (batch, choices)."""
    from transformers import BertConfig, TFBertForMultipleChoice

    # modeling_tf_bert.py: 2 layers x (q,k,v,o,ffn1,ffn2) + pooler + classifier = 14 linear;
    # embeddings LN + 2 x 2 = 5 layer_norm; 2 exact gelu; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=14)
    return multiple_choice(
        "hf_bert_multiple_choice",
        TFBertForMultipleChoice,
        BertConfig(**TINY),
        "BertForMultipleChoice",
        nominal,
    )


@register("hf_roberta_prelayernorm", family="encoder")
def build_roberta_prelayernorm() -> CorpusModel:
    from transformers import RobertaPreLayerNormConfig, TFRobertaPreLayerNormModel

    config = RobertaPreLayerNormConfig(**TINY, pad_token_id=1)
    # modeling_tf_roberta_prelayernorm.py: 2 x (q,k,v,o,intermediate,output) + pooler = 13 linear;
    # embeddings LayerNorm + 2 x (attention pre-LN, intermediate pre-LN) + the main layer's final
    # LayerNorm = 6 layer_norm; 2 exact gelu; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=6, gelu=2, linear=13)
    return _hf_model(
        "hf_roberta_prelayernorm",
        "encoder",
        TFRobertaPreLayerNormModel,
        config,
        "RobertaPreLayerNormModel",
        nominal,
        outputs=("last_hidden_state", "pooler_output"),
    )


WINDOW = 4


@register("hf_longformer", family="encoder")
def build_longformer() -> CorpusModel:
    """Longformer with a 4-token attention window (2 each side) and no global attention: the
    sequence padded to a multiple of the window, scores by chunked matmul with diagonal
    shifting (band of 2w + 1 per query), masked, softmax over the band."""
    from transformers import LongformerConfig, TFLongformerModel

    config = LongformerConfig(**TINY, attention_window=WINDOW, pad_token_id=1)
    # modeling_tf_longformer.py: per layer q, k, v (local) + attention output dense +
    # intermediate + output = 6 (query_global/key_global/value_global are read only when some
    # token has global attention: none here), x 2 + pooler = 13 linear; embeddings LN + 2 x 2 = 5
    # layer_norm; 2 exact gelu; sdpa 0: the sliding-window scores are a banded
    # (seq, 2w + 1) matrix, no QK^T: its softmax stays (softmax=2)
    nominal = dict(sdpa=0, layer_norm=5, gelu=2, linear=13, softmax=2)
    model = _hf_model(
        "hf_longformer",
        "encoder",
        TFLongformerModel,
        config,
        "LongformerModel",
        nominal,
        outputs=("last_hidden_state", "pooler_output"),
        make_inputs=text_inputs(("input_ids", "attention_mask"), config.vocab_size, 2 * WINDOW),
        note="fails in fxsurgeon, not tf2onnx: (1) tf.signal.frame's gcd(frame_size, hop) is a "
        "while Loop (no trip count) on a size-derived hop, which the Loop converter refuses; "
        "(2) is_global_attn = any(attention_mask > 1) is a data predicate of 9 Ifs whose global "
        "branches use NonZero, Tile and Range by data-dependent counts; the padding to a "
        "multiple of the window (tf.pad by computed amounts) lowers since SymArray",
    )
    model.sizes = (WINDOW * 2, WINDOW * 3)
    return model


# --------------------------------------------------------------------------- decoders


@register("hf_gpt2_act", family="decoder")
def build_gpt2_act() -> CorpusModel:
    """GPT-2 with scale_attn_by_inverse_layer_idx and reorder_and_upcast_attn (which TF GPT-2
    does not read: only the PyTorch twin applies them), exact GELU, n_inner 48."""
    from transformers import GPT2Config, TFGPT2Model

    config = GPT2Config(
        vocab_size=TINY["vocab_size"],
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_inner=48,
        activation_function="gelu",
        scale_attn_by_inverse_layer_idx=True,
        reorder_and_upcast_attn=True,
        use_cache=False,
    )
    # modeling_tf_gpt2.py: TFConv1D c_attn (q, k, v in one), c_proj, mlp c_fc, c_proj: 2 x 4 = 8
    # linear; pre-LN ln_1, ln_2 x 2 + ln_f = 5 layer_norm; "gelu" (exact) 2; causal + padding: 2 attentions
    # (causal band and padding both fill -1e4: not SDPA, exact on left padding only unfused:
    # patterns/_attention_masks.py `_dominates`) so 0 sdpa, its 2 softmaxes kept
    nominal = dict(sdpa=0, softmax=2, layer_norm=5, gelu=2, linear=8)
    return _hf_model(
        "hf_gpt2_act",
        "decoder",
        TFGPT2Model,
        config,
        "GPT2Model",
        nominal,
        note="TF GPT-2 ignores scale_attn_by_inverse_layer_idx and reorder_and_upcast_attn; "
        "the twin (timed only) applies them",
    )


# --------------------------------------------------------------------------- vision + language

VISUAL_FEATS = 12


def _lxmert_inputs(vocab_size: int) -> Callable[..., dict[str, np.ndarray]]:
    """Tokens (input_ids, attention_mask, token_type_ids) and size // 2 + 1 boxes, each a
    feature vector and a (x0, y0, x1, y1) box in [0, 1]."""
    tokens = text_inputs(_BERT_INPUTS, vocab_size)

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        arrays = tokens(batch_size, seed, size)
        boxes = arrays["input_ids"].shape[1] // 2 + 1
        rng = np.random.default_rng(seed + 1)
        feats = rng.standard_normal((batch_size, boxes, VISUAL_FEATS)).astype(np.float32)
        corners = np.sort(rng.random((batch_size, boxes, 2, 2)), axis=2)
        return {
            "input_ids": arrays["input_ids"],
            "visual_feats": feats,
            "visual_pos": corners.reshape(batch_size, boxes, 4).astype(np.float32),
            "attention_mask": arrays["attention_mask"],
            "token_type_ids": arrays["token_type_ids"],
        }

    return make_inputs


def _lxmert_torch_inputs(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    import torch

    return {
        k: torch.from_numpy(v if v.dtype == np.float32 else v.astype(np.int64))
        for k, v in inputs.items()
    }


@register("hf_lxmert", family="encoder")
def build_lxmert() -> CorpusModel:
    """LXMERT: a language BERT stack, a vision stack on projected box features + box positions,
    then cross-modality layers (one cross-attention module run both ways, then self-attention
    and FFN per stream); outputs both streams and the pooled language [CLS]."""
    from transformers import LxmertConfig, TFLxmertModel

    tf = tf_module()
    config = LxmertConfig(
        vocab_size=TINY["vocab_size"],
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        l_layers=1,
        r_layers=1,
        x_layers=1,
        visual_feat_dim=VISUAL_FEATS,
        visual_pos_dim=4,
    )
    make_inputs = _lxmert_inputs(config.vocab_size)
    model = TFLxmertModel(config)
    model(make_inputs(1, 0))
    randomize(model)
    # modeling_tf_lxmert.py, counted per call: visn_fc + box_fc (2 linear, visn_layer_norm,
    # box_layer_norm 2); embeddings LayerNorm 1; the language layer and the relational (vision)
    # layer, each q,k,v, attention output dense, intermediate, output (6 linear, 2 LN, 1 gelu,
    # 1 sdpa); the cross-modality layer: visual_attention (q,k,v,o + LN) called twice (lang ->
    # vision, vision -> lang), lang_self_att + visn_self_att (q,k,v,o + LN each), lang/visn
    # inter + output (2 + 2 linear, 2 LN, 2 gelu): 8 + 8 + 4 = 20 linear, 6 LN, 2 gelu, 4 sdpa;
    # pooler 1 linear.
    # linear 2 + 12 + 20 + 1 = 35; layer_norm 2 + 1 + 4 + 6 = 13; gelu 2 + 2 = 4; sdpa 2 + 4 = 6
    nominal = dict(sdpa=6, layer_norm=13, gelu=4, linear=35)
    outputs = ("language_output", "vision_output", "pooled_output")
    specs = {
        "input_ids": tf.TensorSpec((None, None), tf.int32, name="input_ids"),
        "visual_feats": tf.TensorSpec((None, None, VISUAL_FEATS), tf.float32, name="visual_feats"),
        "visual_pos": tf.TensorSpec((None, None, 4), tf.float32, name="visual_pos"),
        "attention_mask": tf.TensorSpec((None, None), tf.int32, name="attention_mask"),
        "token_type_ids": tf.TensorSpec((None, None), tf.int32, name="token_type_ids"),
    }
    return CorpusModel(
        name="hf_lxmert",
        family="encoder",
        model=model,
        input_signature=specs,
        output_names=outputs,
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, outputs),
        trainable_params=trainable_count(model),
        sizes=SIZES,
        nominal=nominal,
        dynamic_axes={"visual_feats": [1], "visual_pos": [1]},
        twin=hf_twin(model, "LxmertModel"),
        twin_inputs=_lxmert_torch_inputs,
    )
