"""March task-head probes, continued (`probe_mar_heads` holds the first fourteen).

* ``hf_lxmert_pretraining``: TFLxmertForPreTraining: hf_lxmert's streams, the MLM head
  (tied word embeddings plus a bias), the cross-modality match head on the pooled [CLS]
  and the visual answer head (Dense, GeLU, LayerNorm, Dense); the object heads feed only
  the losses, so they and the vision stream's last half-layer are pruned;
* ``hf_speech2text_lm``: TFSpeech2TextForConditionalGeneration: hf_speech2text plus its
  bias-free ``lm_head``;
* ``hf_xglm_lm``: TFXGLMForCausalLM: hf_xglm plus its bias-free ``lm_head``;
* ``hf_wav2vec2_seqcls``: TFWav2Vec2ForSequenceClassification on padded audio with its
  attention_mask and ``use_weighted_layer_sum``: the frame mask from the conv output-length
  formula, a softmax over learned per-layer weights, the projector and a masked mean;
* ``hf_swin_cls``, ``hf_mobilevit_cls``, ``hf_regnet_cls``: the image-classification heads
  of hf_swin, hf_mobilevit and hf_regnet (pooled features into a Dense; RegNet flattens).

The ``nominal`` counts follow the TF modelling source, one comment per builder.
"""

from __future__ import annotations

import numpy as np

from ..registry import (
    CorpusModel,
    hf_outputs,
    hf_twin,
    randomize,
    register,
    tf_module,
    trainable_count,
)
from .hf_audio import (
    AUDIO_DEFAULT,
    AUDIO_SIZES,
    _wave_config,
    speech2text,
    torch_inputs,
)
from .hf_text import SIZES, TINY, VOCAB, _hf_model
from .hf_vision import _vision
from .probe_jan_text import VISUAL_FEATS, _lxmert_inputs, _lxmert_torch_inputs


@register("hf_lxmert_pretraining", family="encoder")
def build_lxmert_pretraining() -> CorpusModel:
    from transformers import LxmertConfig, TFLxmertForPreTraining

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
        num_qa_labels=7,
        num_object_labels=11,
        num_attr_labels=5,
    )
    make_inputs = _lxmert_inputs(config.vocab_size)
    model = TFLxmertForPreTraining(config)
    model(make_inputs(1, 0))
    randomize(model)
    # modeling_tf_lxmert.py: hf_lxmert's linear 35, layer_norm 13, gelu 4, sdpa 6, less what
    # only the vision stream's output reads (no head reads it: pruned): the cross-modality
    # layer's vision -> language attention (q, k, v, o, LN, 1 sdpa), visn_self_att (q, k, v, o,
    # LN, 1 sdpa) and visn inter + output (2 linear, LN, 1 gelu) = -10 linear, -3 layer_norm,
    # -2 sdpa, -1 gelu. Heads: cls MLM transform dense + the tied decoder (word_embeddings^T +
    # bias) = 2 linear, its LayerNorm and gelu; seq_relationship 1 linear; answer_head:
    # logit_fc Dense, GeLU, LayerNorm, Dense = 2 linear, 1 layer_norm, 1 gelu.
    # linear 25 + 5 = 30, layer_norm 10 + 2 = 12, gelu 3 + 2 = 5, sdpa 4
    nominal = dict(sdpa=4, layer_norm=12, gelu=5, linear=30, rms_norm=0)
    outputs = ("prediction_logits", "cross_relationship_score", "question_answering_score")
    specs = {
        "input_ids": tf.TensorSpec((None, None), tf.int32, name="input_ids"),
        "visual_feats": tf.TensorSpec((None, None, VISUAL_FEATS), tf.float32, name="visual_feats"),
        "visual_pos": tf.TensorSpec((None, None, 4), tf.float32, name="visual_pos"),
        "attention_mask": tf.TensorSpec((None, None), tf.int32, name="attention_mask"),
        "token_type_ids": tf.TensorSpec((None, None), tf.int32, name="token_type_ids"),
    }
    return CorpusModel(
        name="hf_lxmert_pretraining",
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
        twin=hf_twin(model, "LxmertForPreTraining"),
        twin_inputs=_lxmert_torch_inputs,
    )


@register("hf_speech2text_lm", family="audio")
def build_speech2text_lm() -> CorpusModel:
    # modeling_tf_speech_to_text.py: hf_speech2text's 32 linear + lm_head (Dense, no bias) =
    # 33; layer_norm 12; relu: 0 gelu; sdpa 6
    nominal = {"sdpa": 6, "linear": 33, "layer_norm": 12, "rms_norm": 0, "gelu": 0}
    return speech2text(
        "hf_speech2text_lm",
        "TFSpeech2TextForConditionalGeneration",
        "Speech2TextForConditionalGeneration",
        ("logits", "encoder_last_hidden_state"),
        nominal,
    )


@register("hf_xglm_lm", family="decoder")
def build_xglm_lm() -> CorpusModel:
    from transformers import TFXGLMForCausalLM, XGLMConfig

    config = XGLMConfig(
        vocab_size=VOCAB,
        d_model=32,
        num_layers=2,
        attention_heads=4,
        ffn_dim=37,
        max_position_embeddings=64,
        use_cache=False,
    )
    # modeling_tf_xglm.py: hf_xglm's 12 linear + lm_head (Dense, no bias) = 13; layer_norm 5;
    # gelu 2; sdpa 2
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=13)
    return _hf_model(
        "hf_xglm_lm",
        "decoder",
        TFXGLMForCausalLM,
        config,
        "XGLMForCausalLM",
        nominal,
        outputs=("logits",),
    )


def _padded_wave(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
    """Audio with zeros after each row's length, and the mask saying so (the last row full)."""
    rng = np.random.default_rng(seed)
    samples = size or AUDIO_DEFAULT
    lengths = rng.integers(samples // 2, samples + 1, batch_size)
    lengths[-1] = samples
    mask = (np.arange(samples)[None, :] < lengths[:, None]).astype(np.int32)
    wave = rng.standard_normal((batch_size, samples)).astype(np.float32) * mask
    return {"input_values": wave.astype(np.float32), "attention_mask": mask}


@register("hf_wav2vec2_seqcls", family="audio")
def build_wav2vec2_seqcls() -> CorpusModel:
    from transformers import TFWav2Vec2ForSequenceClassification, Wav2Vec2Config

    tf = tf_module()
    config = _wave_config(Wav2Vec2Config)
    config.use_weighted_layer_sum = True
    config.classifier_proj_size = 16
    config.num_labels = 3
    model = TFWav2Vec2ForSequenceClassification(config)
    model(_padded_wave(1, 0), training=False)
    randomize(model)
    # modeling_tf_wav2vec2.py: hf_wav2vec2's linear 13, layer_norm 6, gelu 6, sdpa 2 (now
    # with the padding mask) + projector + classifier = 15 linear; the softmax of the
    # layer_weights is no attention: softmax 1
    nominal = {"sdpa": 2, "linear": 15, "layer_norm": 6, "rms_norm": 0, "gelu": 6, "softmax": 1}
    return CorpusModel(
        name="hf_wav2vec2_seqcls",
        family="audio",
        model=model,
        input_signature=[
            tf.TensorSpec((None, AUDIO_DEFAULT), tf.float32, name="input_values"),
            tf.TensorSpec((None, AUDIO_DEFAULT), tf.int32, name="attention_mask"),
        ],
        output_names=("logits",),
        make_inputs=_padded_wave,
        tf_outputs=hf_outputs(model, ("logits",)),
        trainable_params=trainable_count(model),
        sizes=AUDIO_SIZES,
        nominal=nominal,
        dynamic_axes={"input_values": [1], "attention_mask": [1]},
        twin=hf_twin(model, "Wav2Vec2ForSequenceClassification"),
        twin_inputs=torch_inputs,
    )


@register("hf_swin_cls", family="vision")
def build_swin_cls() -> CorpusModel:
    from transformers import SwinConfig

    config = SwinConfig(
        image_size=32,
        patch_size=4,
        embed_dim=16,
        depths=[2, 2],
        num_heads=[2, 4],
        window_size=4,
        mlp_ratio=2.0,
        hidden_act="gelu",
        num_labels=5,
    )
    # modeling_tf_swin.py: hf_swin's sdpa 4, gelu 4, layer_norm 11, linear 25 + classifier 26
    nominal = {"sdpa": 4, "linear": 26, "layer_norm": 11, "gelu": 4}
    return _vision(
        "hf_swin_cls",
        "TFSwinForImageClassification",
        "SwinForImageClassification",
        config,
        ("logits",),
        nominal,
    )


@register("hf_mobilevit_cls", family="vision")
def build_mobilevit_cls() -> CorpusModel:
    from transformers import MobileViTConfig

    config = MobileViTConfig(
        image_size=64,
        patch_size=2,
        hidden_sizes=[16, 24, 32],
        neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 64],
        num_attention_heads=4,
        mlp_ratio=2.0,
        expand_ratio=2.0,
        hidden_act="silu",
        num_labels=5,
    )
    # modeling_tf_mobilevit.py: hf_mobilevit's sdpa 9, layer_norm 21, linear 54 + classifier 55
    nominal = {"sdpa": 9, "linear": 55, "layer_norm": 21}
    return _vision(
        "hf_mobilevit_cls",
        "TFMobileViTForImageClassification",
        "MobileViTForImageClassification",
        config,
        ("logits",),
        nominal,
    )


@register("hf_regnet_cls", family="vision")
def build_regnet_cls() -> CorpusModel:
    from transformers import RegNetConfig

    config = RegNetConfig(
        image_size=32,
        embedding_size=16,
        hidden_sizes=[16, 32],
        depths=[1, 2],
        groups_width=8,
        layer_type="y",
        num_labels=5,
    )
    # modeling_tf_regnet.py: convolutions only, then the classifier (Flatten, Dense) = 1 linear
    return _vision(
        "hf_regnet_cls",
        "TFRegNetForImageClassification",
        "RegNetForImageClassification",
        config,
        ("logits",),
        {"linear": 1},
    )
