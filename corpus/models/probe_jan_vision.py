"""January probes, vision and friends: BLIP's vision tower and its image-grounded text
encoder, GroupViT's grouping vision tower, a ViT -> GPT-2 VisionEncoderDecoder, SegFormer's
semantic-segmentation head, Wav2Vec2 with the stable (pre-LN) layer norm, DeiT with its
distillation head, MobileViT's DeepLabV3 segmentation head (tiny configs, random weights).

The vision models follow `hf_vision`; the others build their `CorpusModel` here. The
``nominal`` counts follow the TF modelling source
(``transformers/models/<m>/modeling_tf_<m>.py``), one comment per builder.
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
from .hf_vision import _vision, segformer_config

# --------------------------------------------------------------------------- BLIP


@register("hf_blip_vision", family="vision")
def build_blip_vision() -> CorpusModel:
    """BLIP's ViT: one fused qkv Dense split by reshape (b, n, 3, heads, d) + transpose
    (2, 0, 3, 1, 4) + gather, pre-LN layers, post_layernorm applied to the sequence and again
    to the class token."""
    from transformers import BlipVisionConfig

    config = BlipVisionConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        hidden_act="gelu",
        num_channels=3,  # not a BlipVisionConfig field: TFPreTrainedModel.input_signature reads it
    )
    # modeling_tf_blip.py: per layer qkv (one Dense, 3 x hidden), projection, fc1, fc2 = 4, x 2
    # = 8 linear; LN: 2 x (layer_norm1, layer_norm2) + post_layernorm called twice (the sequence,
    # then the class token again) = 6; gelu one per MLP = 2; sdpa 2 (no mask)
    nominal = dict(sdpa=2, layer_norm=6, gelu=2, linear=8)
    return _vision(
        "hf_blip_vision",
        "TFBlipVisionModel",
        "BlipVisionModel",
        config,
        ("last_hidden_state", "pooler_output"),
        nominal,
    )


_BLIP_TEXT_INPUTS = ("input_ids", "attention_mask")
_BLIP_IMAGE_TOKENS = 5


def _blip_text_inputs(vocab_size: int, encoder_hidden: int) -> Callable[..., dict[str, Any]]:
    """Token ids + padding mask, and the image tokens the text cross-attends to."""
    tokens = text_inputs(_BLIP_TEXT_INPUTS, vocab_size)

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        arrays = tokens(batch_size, seed, size)
        rng = np.random.default_rng(seed + 1)
        image = rng.standard_normal((batch_size, _BLIP_IMAGE_TOKENS, encoder_hidden))
        return {**arrays, "encoder_hidden_states": image.astype(np.float32)}

    return make_inputs


def _blip_text(
    name: str, family: str, tf_class: str, pt_class: str, outputs: tuple[str, ...], nominal: dict
) -> CorpusModel:
    """A BLIP text model on ids + padding mask + 5 image tokens (hidden 24) to cross-attend to."""
    tf = tf_module()
    import transformers
    from transformers import BlipTextConfig

    from .hf_text import SIZES, TINY

    config = BlipTextConfig(
        **TINY,
        encoder_hidden_size=24,
        hidden_act="gelu",
        is_decoder=True,  # builds the crossattention layers (BLIP's default)
        use_cache=False,
    )
    make_inputs = _blip_text_inputs(config.vocab_size, config.encoder_hidden_size)
    model = getattr(transformers, tf_class)(config)
    model(make_inputs(1, 0), training=False)
    randomize(model)
    return CorpusModel(
        name=name,
        family=family,
        model=model,
        input_signature=[
            tf.TensorSpec((None, None), tf.int32, name="input_ids"),
            tf.TensorSpec((None, None), tf.int32, name="attention_mask"),
            tf.TensorSpec(
                (None, _BLIP_IMAGE_TOKENS, config.encoder_hidden_size),
                tf.float32,
                name="encoder_hidden_states",
            ),
        ],
        output_names=outputs,
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, outputs),
        trainable_params=trainable_count(model),
        sizes=SIZES,
        nominal={"rms_norm": 0, **nominal},
        twin=hf_twin(model, pt_class),
        twin_inputs=mixed_torch_inputs,
    )


@register("hf_blip_text", family="encoder")
def build_blip_text() -> CorpusModel:
    """BLIP's image-grounded text encoder (BERT layers + a cross-attention to image tokens
    in each layer, bidirectional self-attention: is_decoder=False at call time)."""
    # modeling_tf_blip_text.py: per layer self query, key, value + output dense, cross query, key
    # (24 -> 32), value + output dense, intermediate, output = 10, x 2 = 20, + pooler dense = 21
    # linear; LN: embeddings 1 + 2 x (self output, cross output, output) = 7; hidden_act "gelu" 2;
    # sdpa: 2 self (padding mask additive) + 2 cross (all-ones encoder mask) = 4
    nominal = {"sdpa": 4, "linear": 21, "layer_norm": 7, "gelu": 2}
    return _blip_text(
        "hf_blip_text",
        "encoder",
        "TFBlipTextModel",
        "BlipTextModel",
        ("last_hidden_state", "pooler_output"),
        nominal,
    )


@register("hf_blip_text_lm", family="decoder")
def build_blip_text_lm() -> CorpusModel:
    """BLIP's captioning decoder: the same layers with a causal mask (is_decoder=True: the
    mask is (seq_ids[None, :] <= seq_ids[:, None]) * padding), and an MLM-style head
    (Dense + GELU + LayerNorm, a bias-free vocab Dense plus a separate bias)."""
    # modeling_tf_blip_text.py: TFBlipTextModel(add_pooling_layer=False): 20 linear, 7 LN,
    # 2 gelu; TFBlipTextPredictionHeadTransform dense + gelu + LayerNorm, decoder Dense
    # (use_bias=False) + bias: 22 linear, 8 layer_norm, 3 gelu; sdpa 2 causal self + 2 cross = 4
    nominal = {"sdpa": 4, "linear": 22, "layer_norm": 8, "gelu": 3}
    return _blip_text(
        "hf_blip_text_lm",
        "decoder",
        "TFBlipTextLMHeadModel",
        "BlipTextLMHeadModel",
        ("logits",),
        nominal,
    )


# --------------------------------------------------------------------------- GroupViT


@register("hf_groupvit_vision", family="vision")
def build_groupvit_vision() -> CorpusModel:
    """GroupViT: 3 stages; stages 0 and 1 end in a token-assign block (MLP-mixer over the group
    tokens, a cross-attention of groups to image tokens, then a hard assignment: softmax over
    the groups axis (-2), argmax, one_hot, straight-through y_hard - stop_gradient(y_soft) +
    y_soft, normalised by its row sum + 1)."""
    from transformers import GroupViTVisionConfig

    config = GroupViTVisionConfig(
        image_size=32,
        patch_size=4,
        hidden_size=32,
        intermediate_size=37,
        depths=[1, 1, 1],
        num_hidden_layers=3,
        num_group_tokens=[8, 4, 0],
        num_output_groups=[8, 4, 4],
        num_attention_heads=4,
        hidden_act="gelu",
    )
    # modeling_tf_groupvit.py. Per encoder layer: q, k, v, out_proj, fc1, fc2 = 6 linear, 2 LN,
    # 1 gelu, 1 sdpa. Per token assign (stages 0, 1): norm_tokens, norm_post_tokens, norm_x,
    # pre_assign_attn norm2 + norm_post, norm_new_x = 6 LN; mlp_inter 2 + pre_assign_attn
    # (q, k, v, out 4 + mlp 2) + assign (q, k, v, proj 4) + mlp_channels 2 = 14 linear; gelu 3;
    # sdpa 1 (the cross-attention; the assignment's softmax over axis -2 is not attention: it
    # stays, softmax 1). Stage 1's group_projector: LN 1 + mixer MLP (2 linear, 1 gelu).
    # LN: embeddings 1 + (2 + 6) + (1 + 2 + 6) + 2 + final 1 = 21
    # linear: (6 + 14) + (2 + 6 + 14) + 6 = 48; gelu: (1 + 3) + (1 + 1 + 3) + 1 = 10
    # sdpa: (1 + 1) + (1 + 1) + 1 = 5; softmax: 2
    nominal = dict(sdpa=5, layer_norm=21, gelu=10, linear=48, softmax=2)
    return _vision(
        "hf_groupvit_vision",
        "TFGroupViTVisionModel",
        "GroupViTVisionModel",
        config,
        ("last_hidden_state", "pooler_output"),
        nominal,
    )


# --------------------------------------------------------------------------- ViT -> GPT-2

_VED_NAMES = ("pixel_values", "decoder_input_ids", "decoder_attention_mask")
_VED_IMAGE = (3, 32, 32)


def _ved_inputs(vocab_size: int) -> Callable[..., dict[str, np.ndarray]]:
    """An image, and decoder ids with a padding mask (padding in the last row)."""
    tokens = text_inputs(("input_ids", "attention_mask"), vocab_size)

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        ids = tokens(batch_size, seed, size)
        rng = np.random.default_rng(seed + 1)
        pixels = rng.standard_normal((batch_size, *_VED_IMAGE)).astype(np.float32)
        return {
            "pixel_values": pixels,
            "decoder_input_ids": ids["input_ids"],
            "decoder_attention_mask": ids["attention_mask"],
        }

    return make_inputs


@register("hf_vision_encoder_decoder", family="seq2seq")
def build_vision_encoder_decoder() -> CorpusModel:
    """VisionEncoderDecoder: a ViT encoder (hidden 24) and a GPT-2 LM decoder (hidden 32)
    with cross-attention; enc_to_dec_proj (Dense 24 -> 32) between them, the LM head tied to
    the token embedding (logits = h @ wte^T, a MatMul by the folded [1, 32, 99] wte^T)."""
    tf = tf_module()
    from transformers import (
        GPT2Config,
        TFVisionEncoderDecoderModel,
        VisionEncoderDecoderConfig,
        ViTConfig,
    )

    from .hf_text import SIZES, VOCAB

    encoder = ViTConfig(
        image_size=_VED_IMAGE[1],
        patch_size=8,
        num_channels=_VED_IMAGE[0],
        hidden_size=24,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        hidden_act="gelu",
    )
    decoder = GPT2Config(
        vocab_size=VOCAB,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_inner=37,
        activation_function="gelu_new",
        add_cross_attention=True,
        use_cache=False,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder.use_cache = False
    make_inputs = _ved_inputs(VOCAB)
    model = TFVisionEncoderDecoderModel(config=config)
    model(make_inputs(1, 0), training=False)
    randomize(model)
    outputs = ("logits", "encoder_last_hidden_state")
    # modeling_tf_vit.py (encoder): 2 x (query, key, value, output dense, intermediate, output)
    # = 12 linear (the ViT pooler is built but the seq2seq output never reads it), LN 2 x 2 +
    # final layernorm = 5, gelu 2, sdpa 2. modeling_tf_vision_encoder_decoder.py:
    # enc_to_dec_proj 1 linear (24 != 32). modeling_tf_gpt2.py (decoder, TFConv1D = x @ W + b):
    # per layer self c_attn (q, k, v in one) + c_proj, cross q_attn + c_attn (k, v in one) +
    # c_proj, mlp c_fc + c_proj = 7, x 2 = 14 linear; ln_1, ln_cross_attn, ln_2 x 2 + ln_f = 7
    # LN; gelu_new (tanh) 2; 2 self attentions (causal + padding mask, both filling -1e4: not
    # SDPA, exact on left padding only unfused, patterns/_attention_masks.py `_dominates`;
    # their 2 softmaxes kept) + 2 cross sdpa. The LM head
    # tf.matmul(h, wte, transpose_b=True) is a projection by a learned matrix (tied to the
    # token embedding), F.linear(h, wte) as PyTorch's tied head: + 1 = 28 linear
    nominal = {"sdpa": 4, "softmax": 2, "linear": 28, "layer_norm": 12, "rms_norm": 0, "gelu": 4}
    return CorpusModel(
        name="hf_vision_encoder_decoder",
        family="seq2seq",
        model=model,
        input_signature=[
            tf.TensorSpec((None, *_VED_IMAGE), tf.float32, name="pixel_values"),
            tf.TensorSpec((None, None), tf.int32, name="decoder_input_ids"),
            tf.TensorSpec((None, None), tf.int32, name="decoder_attention_mask"),
        ],
        output_names=outputs,
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, outputs),
        trainable_params=trainable_count(model),
        sizes=SIZES,
        nominal=nominal,
        twin=hf_twin(model, "VisionEncoderDecoderModel"),
        twin_inputs=mixed_torch_inputs,
    )


# --------------------------------------------------------------------------- segmentation heads


@register("hf_segformer_seg", family="vision")
def build_segformer_seg() -> CorpusModel:
    """SegFormer with its all-MLP decode head: each block's map through a Dense, bilinear
    resize to the 1/4 map, concat (in reverse block order), 1x1 conv + BatchNorm + ReLU,
    1x1 classifier conv."""
    config = segformer_config(decoder_hidden_size=24, num_labels=3)
    # The encoder as hf_segformer (sdpa 4, gelu 4, linear 24, layer_norm 14), + the decode
    # head's TFSegformerMLP proj per block = 2 linear (linear_fuse and classifier are Conv2D,
    # batch_norm a BatchNormalization: not counted)
    nominal = {"sdpa": 4, "linear": 26, "layer_norm": 14, "gelu": 4}
    return _vision(
        "hf_segformer_seg",
        "TFSegformerForSemanticSegmentation",
        "SegformerForSemanticSegmentation",
        config,
        ("logits",),
        nominal,
    )


@register("hf_mobilevit_seg", family="vision")
def build_mobilevit_seg() -> CorpusModel:
    """MobileViT with DeepLabV3: ASPP (a 1x1 conv, three 3x3 convs dilated 6, 12, 18, and a
    global-average-pool branch resized back bilinearly), concat, 1x1 projection, classifier."""
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
        aspp_out_channels=16,
        atrous_rates=[6, 12, 18],
        num_labels=3,
    )
    # The backbone as hf_mobilevit (expand_output=False drops only the final 1x1 conv): 9
    # transformer layers, sdpa 9, linear 54, layer_norm 21; the DeepLabV3 head is convolutions,
    # BatchNorms and ReLU: nothing to fuse
    nominal = {"sdpa": 9, "linear": 54, "layer_norm": 21}
    return _vision(
        "hf_mobilevit_seg",
        "TFMobileViTForSemanticSegmentation",
        "MobileViTForSemanticSegmentation",
        config,
        ("logits",),
        nominal,
    )


# --------------------------------------------------------------------------- DeiT, Wav2Vec2


@register("hf_deit_teacher", family="vision")
def build_deit_teacher() -> CorpusModel:
    from transformers import DeiTConfig

    config = DeiTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_labels=5,
    )
    # modeling_tf_deit.py: TFDeiTMainLayer(add_pooling_layer=False): 2 x 6 linear, + the
    # cls_classifier (on token 0) and distillation_classifier (on token 1) Dense = 14; LN
    # 2 x 2 + final 1 = 5; gelu 2; sdpa 2. logits = their mean
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=14)
    return _vision(
        "hf_deit_teacher",
        "TFDeiTForImageClassificationWithTeacher",
        "DeiTForImageClassificationWithTeacher",
        config,
        ("logits", "cls_logits", "distillation_logits"),
        nominal,
    )


@register("hf_wav2vec2_stable", family="audio")
def build_wav2vec2_stable() -> CorpusModel:
    """Wav2Vec2 "large-lv60" layout: a LayerNorm after every feature-encoder conv
    (feat_extract_norm="layer") and pre-LN encoder layers with a final LayerNorm
    (do_stable_layer_norm=True)."""
    tf = tf_module()
    from transformers import TFWav2Vec2Model, Wav2Vec2Config

    from .hf_audio import AUDIO_DEFAULT, AUDIO_SIZES, _wave_config, _wave_inputs

    config = _wave_config(Wav2Vec2Config)
    config.feat_extract_norm = "layer"
    config.do_stable_layer_norm = True
    model = TFWav2Vec2Model(config)
    model(_wave_inputs(1, 0), training=False)
    randomize(model)
    outputs = ("last_hidden_state", "extract_features")
    # modeling_tf_wav2vec2.py: TFWav2Vec2LayerNormConvLayer x 3 (conv, LayerNorm over channels,
    # gelu); feature projection LayerNorm + Dense; TFWav2Vec2EncoderStableLayerNorm: positional
    # conv (gelu), 2 x pre-LN layers (layer_norm, attention q, k, v, out_proj, final_layer_norm,
    # intermediate_dense, output_dense), then the encoder layer_norm.
    # sdpa 2; linear 1 + 2 x 6 = 13; layer_norm 3 + 1 + 2 x 2 + 1 = 9; gelu 3 + 1 + 2 = 6
    nominal = {"sdpa": 2, "linear": 13, "layer_norm": 9, "rms_norm": 0, "gelu": 6}
    return CorpusModel(
        name="hf_wav2vec2_stable",
        family="audio",
        model=model,
        input_signature=[tf.TensorSpec((None, AUDIO_DEFAULT), tf.float32, name="input_values")],
        output_names=outputs,
        make_inputs=_wave_inputs,
        tf_outputs=hf_outputs(model, outputs),
        trainable_params=trainable_count(model),
        sizes=AUDIO_SIZES,
        nominal=nominal,
        dynamic_axes={"input_values": [1]},
        twin=hf_twin(model, "Wav2Vec2Model"),
        twin_inputs=mixed_torch_inputs,
        note="a weight-normed grouped positional conv is not counted",
    )


@register("hf_convnext_cls", family="vision")
def build_convnext_cls() -> CorpusModel:
    """ConvNeXt for classification: layer_scale (gamma * x per block) and drop_path
    (stochastic depth: the identity at inference), the pooled LayerNorm, a Dense classifier."""
    from transformers import ConvNextConfig

    config = ConvNextConfig(
        image_size=32,
        patch_size=4,
        num_stages=2,
        hidden_sizes=[16, 32],
        depths=[2, 2],
        hidden_act="gelu",
        layer_scale_init_value=0.5,  # randomised anyway; > 0 builds the layer_scale_parameter
        drop_path_rate=0.2,
        num_labels=5,
    )
    # modeling_tf_convnext.py: as hf_convnext (linear 8, layer_norm 7, gelu 4) + classifier 1
    nominal = {"linear": 9, "layer_norm": 7, "gelu": 4}
    return _vision(
        "hf_convnext_cls",
        "TFConvNextForImageClassification",
        "ConvNextForImageClassification",
        config,
        ("logits",),
        nominal,
    )


@register("hf_data2vec_vision_seg", family="vision")
def build_data2vec_vision_seg() -> CorpusModel:
    """Data2Vec-vision (BEiT) with UperNet: four encoder layers' maps through an FPN
    (Conv2DTranspose x2 + BatchNorm + GELU, Conv2DTranspose, identity, MaxPool), a pyramid
    pooling module (TF's adaptive average pooling: 1-D pools gathered per position, resized
    back bilinearly), top-down bilinear resizes + adds, concat, 3x3 convs + BatchNorm + ReLU;
    the auxiliary FCN head only feeds the training loss."""
    from transformers import Data2VecVisionConfig

    config = Data2VecVisionConfig(
        image_size=32,
        patch_size=4,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=37,
        hidden_act="gelu",
        use_relative_position_bias=True,
        out_indices=[1, 2, 3, 4],  # hidden_states[i - 1]: the embeddings and layers 1-3
        pool_scales=[1, 2, 4],
        num_labels=3,
        auxiliary_channels=16,
        use_auxiliary_head=True,
    )
    # modeling_tf_data2vec_vision.py: the features are encoder_hidden_states[idx] for idx + 1 in
    # out_indices, so (as BEiT-base's [3, 5, 7, 11] of 13 states) the last layer's output feeds
    # nothing: the export drops layer 4 (its variables come back unread). Layers 1-3: 3 x (query,
    # key, value, output, intermediate, output) = 18 linear; 3 x (before, after) = 6 layer_norm
    # (use_mean_pooling: no final norm); sdpa 3; gelu 3 + fpn1's Activation("gelu") = 4. The
    # UperHead is convolutions, BatchNorms, ReLU, pooling and resizes: nothing to fuse
    nominal = {"sdpa": 3, "linear": 18, "layer_norm": 6, "gelu": 4}
    return _vision(
        "hf_data2vec_vision_seg",
        "TFData2VecVisionForSemanticSegmentation",
        "Data2VecVisionForSemanticSegmentation",
        config,
        ("logits",),
        nominal,
    )


@register("hf_vit_bert_decoder", family="seq2seq")
def build_vit_bert_decoder() -> CorpusModel:
    """VisionEncoderDecoder with a BERT LM decoder (is_decoder, add_cross_attention): a
    causal mask from TFBertMainLayer, cross-attention to the ViT tokens (hidden 32 both: no
    enc_to_dec_proj), BERT's MLM head (Dense + GELU + LayerNorm, vocab Dense + bias)."""
    tf = tf_module()
    from transformers import (
        BertConfig,
        TFVisionEncoderDecoderModel,
        VisionEncoderDecoderConfig,
        ViTConfig,
    )

    from .hf_text import SIZES, TINY, VOCAB

    encoder = ViTConfig(
        image_size=_VED_IMAGE[1],
        patch_size=8,
        num_channels=_VED_IMAGE[0],
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        hidden_act="gelu",
    )
    decoder = BertConfig(**TINY, hidden_act="gelu", is_decoder=True, add_cross_attention=True)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder.use_cache = False
    make_inputs = _ved_inputs(VOCAB)
    model = TFVisionEncoderDecoderModel(config=config)
    model(make_inputs(1, 0), training=False)
    randomize(model)
    outputs = ("logits", "encoder_last_hidden_state")
    # ViT encoder as hf_vision_encoder_decoder's: 12 linear, 5 LN, 2 gelu, 2 sdpa (its pooler is
    # read by no output). modeling_tf_bert.py, TFBertLMHeadModel: per layer self q, k, v, output
    # dense, cross q, k, v, output dense, intermediate, output = 10, x 2 = 20; + the MLM
    # transform dense and the vocab decoder (a matmul by the word-embedding table + bias: a
    # projection by a learned matrix, tied, as hf_vision_encoder_decoder's) = 22 linear;
    # LN embeddings 1 + 2 x 3 + transform 1 = 8; gelu 2 + 1 = 3; sdpa 2 causal self + 2 cross
    nominal = {"sdpa": 6, "linear": 34, "layer_norm": 13, "rms_norm": 0, "gelu": 5}
    return CorpusModel(
        name="hf_vit_bert_decoder",
        family="seq2seq",
        model=model,
        input_signature=[
            tf.TensorSpec((None, *_VED_IMAGE), tf.float32, name="pixel_values"),
            tf.TensorSpec((None, None), tf.int32, name="decoder_input_ids"),
            tf.TensorSpec((None, None), tf.int32, name="decoder_attention_mask"),
        ],
        output_names=outputs,
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, outputs),
        trainable_params=trainable_count(model),
        sizes=SIZES,
        nominal=nominal,
        twin=hf_twin(model, "VisionEncoderDecoderModel"),
        twin_inputs=mixed_torch_inputs,
    )
