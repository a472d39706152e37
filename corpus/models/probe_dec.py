"""December probes: Hugging Face LayoutLMv3 (text + layout), XLNet, ConvNeXt V2, HF's own
ResNet; keras.applications InceptionResNetV2; Keras MultiHeadAttention over two axes of an
image, ConvLSTM2D, Conv1D + Bidirectional(GRU) (tiny configs, the same helpers).

The transformers models follow `hf_text` / `hf_vision`; the Keras ones `keras_apps` /
`keras_layers`. The ``nominal`` counts follow the TF (or Keras) modelling source, one
comment per builder.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..registry import CorpusModel, float_inputs, register, text_inputs
from .hf_text import TINY, _hf_model
from .hf_vision import _vision
from .keras_apps import CLASSES, _application
from .keras_layers import (
    FEATURES,
    SEQ_LEN,
    SEQ_SIZES,
    _corpus_model,
    _float_spec,
    _keras,
    _sequence_inputs,
    _sequence_spec,
)

# --------------------------------------------------------------------------- transformers text

_LAYOUT_INPUTS = ("input_ids", "attention_mask")


def _layoutlmv3_inputs(vocab_size: int, max_2d: int) -> Callable[..., dict[str, np.ndarray]]:
    """input_ids, bbox ((x0, y0, x1, y1), x0 <= x1, y0 <= y1), attention_mask: what
    LayoutLMv3's processor gives for a page of words (no token_type_ids)."""
    tokens = text_inputs(_LAYOUT_INPUTS, vocab_size)

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        arrays = tokens(batch_size, seed, size)
        length = arrays["input_ids"].shape[1]
        rng = np.random.default_rng(seed + 1)
        corners = np.sort(rng.integers(0, max_2d, (batch_size, length, 2, 2)), axis=2)
        return {
            "input_ids": arrays["input_ids"],
            "bbox": corners.reshape(batch_size, length, 4).astype(np.int32),
            "attention_mask": arrays["attention_mask"],
        }

    return make_inputs


@register("hf_layoutlmv3", family="encoder")
def build_layoutlmv3() -> CorpusModel:
    """LayoutLMv3 on text + layout (visual_embed=False: no patch embedding, as for a
    text-and-boxes page without the image): 1-D relative position bias from bucketed
    position differences and 2-D (x, y) spatial bias from bucketed bbox differences, each
    one_hot(bucket) @ Dense(heads, no bias); CogView's PB-Relax softmax
    (softmax((s / 32 - max(s / 32)) * 32))."""
    from transformers import LayoutLMv3Config, TFLayoutLMv3Model

    config = LayoutLMv3Config(
        **TINY,
        max_2d_position_embeddings=64,
        coordinate_size=6,  # 4 x 6 + 2 x 4 = hidden 32: the six layout embeddings are concatenated
        shape_size=4,
        visual_embed=False,
        has_relative_attention_bias=True,
        has_spatial_attention_bias=True,
    )
    # modeling_tf_layoutlmv3.py: per layer query, key, value, attention output dense,
    # intermediate, output = 6, x 2 = 12, + encoder rel_pos_bias, rel_pos_x_bias, rel_pos_y_bias
    # (Dense(num_heads, use_bias=False) on a one-hot of the buckets, shared by the layers) = 15
    # linear; text embeddings LayerNorm + 2 x (attention output, output) = 5 layer_norm (no pooler,
    # and no visual LayerNorm/norm with visual_embed=False); hidden_act "gelu" (exact) 2; sdpa 2 (the
    # two relative biases and the padding mask are additive, the CogView softmax is a softmax)
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=15)
    return _hf_model(
        "hf_layoutlmv3",
        "encoder",
        TFLayoutLMv3Model,
        config,
        "LayoutLMv3Model",
        nominal,
        inputs=_LAYOUT_INPUTS,
        make_inputs=_layoutlmv3_inputs(config.vocab_size, config.max_2d_position_embeddings),
        extra_specs={"bbox": (None, None, 4)},
    )


@register("hf_xlnet", family="encoder")
def build_xlnet() -> CorpusModel:
    """XLNet: everything in (len, batch, ...) layout; q/k/v/o/r projections as einsum with
    (d_model, n_head, d_head) weights; content + position (rel_shift by reshape/slice) +
    segment (one_hot of "same segment") scores, mask -1e30, softmax over axis 1 of "ijbn"."""
    from transformers import TFXLNetModel, XLNetConfig

    config = XLNetConfig(
        vocab_size=TINY["vocab_size"],
        d_model=32,
        n_layer=2,
        n_head=4,
        d_inner=37,
        ff_activation="gelu",
        mem_len=None,
        use_mems_eval=False,  # no mems output (use_mems_eval=True returns every layer's input)
        use_mems_train=False,
    )
    # modeling_tf_xlnet.py: per layer the einsum projections q, k, v, r ("ibh,hnd->ibnd", no bias;
    # r projects the sinusoid relative position encoding) and o ("ibnd,hnd->ibh"), + layer_1,
    # layer_2 Dense = 7, x 2 = 14 linear; per layer rel_attn layer_norm + ff layer_norm = 4
    # layer_norm; ff_activation "gelu" 2; sdpa 2 (ac's query is q + r_w_bias, bd + ef + mask
    # additive). mask_emb and r_s_bias/seg_embed: read (token_type_ids given) except mask_emb
    nominal = dict(sdpa=2, layer_norm=4, gelu=2, linear=14)
    return _hf_model(
        "hf_xlnet",
        "encoder",
        TFXLNetModel,
        config,
        "XLNetModel",
        nominal,
        inputs=("input_ids", "attention_mask", "token_type_ids"),
    )


# --------------------------------------------------------------------------- transformers vision


@register("hf_convnextv2", family="vision")
def build_convnextv2() -> CorpusModel:
    from transformers import ConvNextV2Config

    config = ConvNextV2Config(
        image_size=32,
        patch_size=4,
        num_stages=2,
        hidden_sizes=[16, 32],
        depths=[2, 2],
        hidden_act="gelu",
    )
    # modeling_tf_convnextv2.py, as hf_convnext plus a GRN (L2 norm over H, W / its channel mean,
    # weight * (x * n) + bias + x) between GELU and pwconv2 in each layer:
    # linear: 4 layers x (pwconv1, pwconv2) = 8; gelu: 4
    # layer_norm: embeddings 1 + 4 layers + stage-1 downsampling 1 + pooled 1 = 7 (GRN is not one)
    nominal = {"linear": 8, "layer_norm": 7, "gelu": 4}
    return _vision(
        "hf_convnextv2",
        "TFConvNextV2Model",
        "ConvNextV2Model",
        config,
        ("last_hidden_state", "pooler_output"),
        nominal,
    )


@register("hf_resnet", family="vision")
def build_resnet() -> CorpusModel:
    from transformers import ResNetConfig

    config = ResNetConfig(
        image_size=32,  # not a ResNetConfig field: the builder reads it
        embedding_size=16,
        hidden_sizes=[32, 64],
        depths=[1, 2],
        layer_type="bottleneck",
        hidden_act="relu",
    )
    # modeling_tf_resnet.py: Conv2D + BatchNormalization + ReLU (embedder 7x7 stride 2 + max pool,
    # bottleneck 1x1/3x3/1x1 with shortcut projections), global average pooler: nothing to fuse.
    return _vision(
        "hf_resnet",
        "TFResNetModel",
        "ResNetModel",
        config,
        ("last_hidden_state", "pooler_output"),
        {},
    )


#: the tiny SwiftFormer of hf_swiftformer, also its classifier's (probe_dec_heads)
SWIFTFORMER_TINY = {
    "image_size": 32,
    "depths": [2, 2],
    "embed_dims": [16, 32],
    "mlp_ratio": 2,
    "downsamples": [True, True],
    "hidden_act": "gelu",
}


@register("hf_swiftformer", family="vision")
def build_swiftformer() -> CorpusModel:
    """SwiftFormer: conv stem + BatchNorm, conv encoders (depthwise 3x3 + BN + 1x1 convs + GELU,
    layer_scale), and one encoder block per stage with efficient additive attention
    (l2_normalize'd query/key, softmax over a size-1 axis, global query * key)."""
    from transformers import SwiftFormerConfig

    config = SwiftFormerConfig(**SWIFTFORMER_TINY)
    # modeling_tf_swiftformer.py: each stage = (depth - 1) TFSwiftFormerConvEncoder + one
    # TFSwiftFormerEncoderBlock (local representation, additive attention, Mlp of 1x1 Conv2D).
    # linear: the attention's to_query, to_key, proj, final Dense + query @ w_g (a bias-free
    # (dim, 1) projection by a learned weight, as XLNet's einsum projections) = 5 x 2 stages = 10
    # (fc1/fc2 and the point-wise convs are Conv2D, not counted);
    # gelu: conv encoder 1 + local representation 1 + Mlp (hidden_act) 1 = 3 x 2 stages = 6;
    # sdpa 0: additive attention is no dot-product attention (its softmax, over an axis of size
    # 1, stays); no LayerNorm (BatchNorm only).
    nominal = {"linear": 10, "gelu": 6}
    return _vision(
        "hf_swiftformer",
        "TFSwiftFormerModel",
        "SwiftFormerModel",
        config,
        ("last_hidden_state",),
        nominal,
    )


@register("hf_sam_vision", family="vision")
def build_sam_vision() -> CorpusModel:
    """SAM's ViT image encoder (TFSamVisionModel): absolute position table, layer 0 windowed
    (4x4 windows of the 8x8 grid), layer 1 global, both with decomposed relative positions
    (rel_pos_h/rel_pos_w gathered, einsum with the query, added to the scores); a neck of
    Conv2D + channels-last SamLayerNorm (tf.nn.moments based) x 2."""
    from transformers import SamVisionConfig

    config = SamVisionConfig(
        hidden_size=32,
        output_channels=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=4,
        mlp_ratio=2.0,
        hidden_act="gelu",
        use_abs_pos=True,
        use_rel_pos=True,
        window_size=4,
        global_attn_indexes=[1],
    )
    # modeling_tf_sam.py: per layer qkv (one Dense, 3 x hidden), proj, mlp lin1, lin2 = 4,
    # x 2 = 8 linear; layer_norm1/2 x 2 + neck layer_norm1/2 (TFSamLayerNorm over channels) = 6;
    # gelu (ACT2FN "gelu", exact) 2; sdpa 2 (the decomposed rel-pos bias is computed from Q, added)
    nominal = {"sdpa": 2, "linear": 8, "layer_norm": 6, "gelu": 2}
    return _vision(
        "hf_sam_vision",
        "TFSamVisionModel",
        "SamVisionModel",
        config,
        ("last_hidden_state",),
        nominal,
    )


@register("hf_efficientformer", family="vision")
def build_efficientformer() -> CorpusModel:
    """EfficientFormer (transformers' deprecated TFEfficientFormerModel): conv stem, Meta4D blocks
    (average-pool token mixer, conv MLP with BatchNorm), then the last stage's Meta3D block on
    the flattened 4x4 map: attention with a learned per-offset bias gathered by a fixed index
    table, value dim (attention_ratio x key_dim) != key dim."""
    from transformers import EfficientFormerConfig

    config = EfficientFormerConfig(
        image_size=32,
        depths=[1, 2],
        hidden_sizes=[16, 32],
        downsamples=[True, True],
        dim=32,
        key_dim=8,
        attention_ratio=2,
        resolution=4,  # 32 / 4 (stem) / 2 (one downsampling) = the last stage's 4x4 map
        num_attention_heads=4,
        mlp_expansion_ratio=2,
        num_meta3d_blocks=1,
        hidden_act="gelu",
    )
    # deprecated/efficientformer/modeling_tf_efficientformer.py: Meta4D blocks: stage 0 has 1,
    # the last stage depths[-1] - num_meta3d_blocks = 1, each a ConvMlp (Conv2D, not counted) with
    # ACT2FN["gelu"]: 2 gelu; one Meta3D block: qkv + projection + DenseMlp linear_in, linear_out =
    # 4 linear, layernorm1/2 + 1 gelu + 1 sdpa (the gathered attention bias is additive); the main
    # layer's final layernorm: layer_norm = 3, gelu = 3.
    nominal = {"sdpa": 1, "linear": 4, "layer_norm": 3, "gelu": 3}
    return _vision(
        "hf_efficientformer",
        "TFEfficientFormerModel",
        "EfficientFormerModel",
        config,
        ("last_hidden_state",),
        nominal,
    )


# --------------------------------------------------------------------------- keras.applications


@register("keras_inception_resnet_v2", family="cnn")
def build_inception_resnet_v2() -> CorpusModel:
    # linear=1: the "predictions" Dense head (keras/src/applications/inception_resnet_v2.py); the
    # blocks are Conv2D + BatchNormalization(scale=False) + ReLU branches, a 1x1 Conv2D "up" with
    # bias, then CustomScaleLayer (x + scale * up). 75x75 is its minimum side.
    return _application("keras_inception_resnet_v2", "InceptionResNetV2", 75, {"linear": 1})


# --------------------------------------------------------------------------- keras layers


@register("keras_mha_2d", family="keras")
def build_mha_2d() -> CorpusModel:
    """A pre-LN transformer block on an (H, W, C) map: MultiHeadAttention with
    ``attention_axes=(1, 2)`` (every position attends to all H x W; softmax over two axes),
    then an MLP, pooling and a Dense head."""
    # MHA: q, k, v, out (EinsumDense) 4 linear, 1 sdpa (softmax over the two attention axes);
    # LayerNormalization x 2; Dense(gelu, exact in Keras 3) + Dense in the MLP + logits Dense:
    # linear 4 + 3 = 7, gelu 1, layer_norm 2.
    keras = _keras()
    layers = keras.layers
    shape = (6, 5, 16)
    image = keras.Input(shape, name="image")
    a = layers.LayerNormalization(epsilon=1e-6, name="ln1")(image)
    a = layers.MultiHeadAttention(2, 8, attention_axes=(1, 2), name="mha")(a, a)
    h = layers.Add(name="res1")([image, a])
    m = layers.LayerNormalization(epsilon=1e-6, name="ln2")(h)
    m = layers.Dense(32, activation="gelu", name="fc1")(m)
    m = layers.Dense(16, name="fc2")(m)
    h = layers.Add(name="res2")([h, m])
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    y = layers.Dense(CLASSES, name="logits")(h)
    model = keras.Model(image, y, name="mha_2d")
    return _corpus_model(
        "keras_mha_2d",
        "keras",
        model,
        [_float_spec("image", shape)],
        float_inputs("image", shape),
        {"sdpa": 1, "layer_norm": 2, "gelu": 1, "linear": 7},
    )


@register("keras_conv_lstm", family="rnn")
def build_conv_lstm() -> CorpusModel:
    """ConvLSTM2D (last state) over a (T, 8, 8, 2) clip, T dynamic, then pooling + Dense."""
    # linear=1: the logits Dense (the ConvLSTM2D cell's convolutions are not counted).
    keras = _keras()
    layers = keras.layers
    frame = (8, 8, 2)
    clip = keras.Input((None, *frame), name="clip")
    h = layers.ConvLSTM2D(4, 3, padding="same", name="conv_lstm")(clip)
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model(clip, y, name="conv_lstm")
    return _corpus_model(
        "keras_conv_lstm",
        "rnn",
        model,
        [_float_spec("clip", (None, *frame))],
        float_inputs("clip", lambda size: (size or SEQ_LEN, *frame)),
        {"linear": 1},
        SEQ_SIZES,
    )


@register("keras_conv1d_gru_bidir", family="rnn")
def build_conv1d_gru_bidir() -> CorpusModel:
    """Conv1D (same padding, relu) + Bidirectional(GRU) (last states concatenated) + Dense."""
    # linear=1: the logits Dense (Conv1D and the GRU cells, reset_after=True, are not counted).
    keras = _keras()
    layers = keras.layers
    sequence = keras.Input((None, FEATURES), name="sequence")
    h = layers.Conv1D(8, 3, padding="same", activation="relu", name="conv")(sequence)
    h = layers.Bidirectional(layers.GRU(8), name="bigru")(h)
    y = layers.Dense(3, name="logits")(h)
    model = keras.Model(sequence, y, name="conv1d_gru_bidir")
    return _corpus_model(
        "keras_conv1d_gru_bidir",
        "rnn",
        model,
        [_sequence_spec("sequence", FEATURES)],
        _sequence_inputs("sequence", FEATURES),
        {"linear": 1},
        SEQ_SIZES,
    )
