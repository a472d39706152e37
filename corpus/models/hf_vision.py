"""Transformers TF vision backbones: the base model (no head), pixel_values in NCHW.

The transformers TF vision models take ``pixel_values`` as (batch, channels,
height, width) and transpose to NHWC inside. Only the batch dim is dynamic:
the spatial dims are fixed by the config (position tables, window partitions,
reshapes to the patch grid), so ``sizes`` is empty. The outputs are every
tensor field of the model output (the export emits them all), in the model's
order.

Nominal counts come from the layer structure in
``transformers/models/<m>/modeling_tf_<m>.py``; convolutions and
BatchNormalization are not counted. ``gelu`` counts the config's GELU
activations (``hidden_act="gelu"`` is TF's exact, erf-based GELU).
"""

from __future__ import annotations

from typing import Any

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

#: tf_keras runs a grouped convolution through a jit_compile tf.function, which grappler does not inline
GROUPED_CONV = (
    "grouped/depthwise Conv (groups > 1): tf_keras calls it through a jit_compile tf.function, "
    "which tf2onnx leaves as a PartitionedCall node (no ONNX op)"
)


def torch_inputs(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The PyTorch twin takes the same NCHW float32 arrays under the same names."""
    import torch

    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}


def _vision(
    name: str,
    tf_class: str,
    pt_class: str,
    config: Any,
    outputs: tuple[str, ...],
    nominal: dict[str, int],
    note: str = "",
    xfail: str = "",
) -> CorpusModel:
    """A vision model on (3, image_size, image_size) pixel_values; the other counts zero."""
    tf = tf_module()
    import transformers

    model = getattr(transformers, tf_class)(config)
    shape = (config.num_channels, config.image_size, config.image_size)
    make_inputs = _pixel_inputs(shape)
    model(make_inputs(1, 0), training=False)
    randomize(model)
    return CorpusModel(
        name=name,
        family="vision",
        model=model,
        input_signature=[tf.TensorSpec((None, *shape), tf.float32, name="pixel_values")],
        output_names=outputs,
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, outputs),
        trainable_params=trainable_count(model),
        nominal={"sdpa": 0, "layer_norm": 0, "rms_norm": 0, "gelu": 0, "linear": 0, **nominal},
        twin=hf_twin(model, pt_class),
        twin_inputs=torch_inputs,
        note=note,
        xfail=xfail,
    )


def _pixel_inputs(shape: tuple[int, ...]) -> Any:
    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        if size is not None:
            raise ValueError("the vision models have no dynamic size besides the batch")
        rng = np.random.default_rng(seed)
        return {"pixel_values": rng.standard_normal((batch_size, *shape)).astype(np.float32)}

    return make_inputs


@register("hf_convnext", family="vision")
def build_convnext() -> CorpusModel:
    from transformers import ConvNextConfig

    config = ConvNextConfig(
        image_size=32,
        patch_size=4,
        num_stages=2,
        hidden_sizes=[16, 32],
        depths=[2, 2],
        hidden_act="gelu",
    )
    # linear: 4 layers x (pwconv1, pwconv2) = 8; gelu: one per layer = 4
    # layer_norm: embeddings 1 + 4 layers + stage-1 downsampling 1 + pooled 1 = 7
    # (TF ConvNext runs NHWC inside: its LayerNorms normalise the last (channel) axis of an NHWC map,
    # the final one the pooled (batch, channels) vector; PyTorch's are channels_first on NCHW)
    nominal = {"linear": 8, "layer_norm": 7, "gelu": 4}
    return _vision(
        "hf_convnext",
        "TFConvNextModel",
        "ConvNextModel",
        config,
        ("last_hidden_state", "pooler_output"),
        nominal,
    )


@register("hf_swin", family="vision")
def build_swin() -> CorpusModel:
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
    )
    # 8x8 then 4x4 patches, window 4: layer 1 is a shifted window (roll + additive window mask; stage 1
    # fits one window so it neither shifts nor masks), every attention adds its relative position bias.
    # sdpa: 4 layers x 1 = 4; gelu: 4 x 1 = 4
    # linear: 4 x (query, key, value, output, intermediate, output) + 1 patch-merging reduction = 25
    # layer_norm: embeddings 1 + 4 x (before, after) + patch-merging 1 + final 1 = 11
    nominal = {"sdpa": 4, "linear": 25, "layer_norm": 11, "gelu": 4}
    return _vision(
        "hf_swin",
        "TFSwinModel",
        "SwinModel",
        config,
        ("last_hidden_state", "pooler_output"),
        nominal,
    )


def segformer_config(**extra: object) -> object:
    """The tiny SegFormer of hf_segformer and its heads (``extra``: a head's fields)."""
    from transformers import SegformerConfig

    return SegformerConfig(
        image_size=32,
        num_encoder_blocks=2,
        depths=[2, 2],
        sr_ratios=[2, 1],
        hidden_sizes=[16, 32],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[2, 4],
        mlp_ratios=[2, 2],
        hidden_act="gelu",
        **extra,
    )


@register("hf_segformer", family="vision")
def build_segformer() -> CorpusModel:
    config = segformer_config()
    # Efficient self-attention: in block 0 (sr_ratio 2) keys/values come from a strided conv + LayerNorm
    # of the 8x8 map (16 keys for 64 queries); still one softmax attention per layer.
    # sdpa: 4; gelu: 4 (MixFFN)
    # linear: 4 x (query, key, value, output dense, dense1, dense2) = 24
    # layer_norm: 2 patch embeddings + 4 x (layer_norm_1, layer_norm_2) + 2 spatial-reduction + 2 block norms = 14
    nominal = {"sdpa": 4, "linear": 24, "layer_norm": 14, "gelu": 4}
    return _vision(
        "hf_segformer",
        "TFSegformerModel",
        "SegformerModel",
        config,
        ("last_hidden_state",),
        nominal,
    )


@register("hf_mobilevit", family="vision")
def build_mobilevit() -> CorpusModel:
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
    )
    # The architecture fixes 2 + 4 + 3 = 9 transformer layers (MobileViT blocks in stages 3, 4, 5).
    # sdpa: 9; linear: 9 x (query, key, value, output, intermediate, output) = 54
    # layer_norm: 9 x (before, after) + 3 block norms = 21; gelu: hidden_act="silu" = 0
    nominal = {"sdpa": 9, "linear": 54, "layer_norm": 21}
    return _vision(
        "hf_mobilevit",
        "TFMobileViTModel",
        "MobileViTModel",
        config,
        ("last_hidden_state", "pooler_output"),
        nominal,
    )


@register("hf_regnet", family="vision")
def build_regnet() -> CorpusModel:
    from transformers import RegNetConfig

    config = RegNetConfig(
        image_size=32,  # not a RegNetConfig field: the builder reads it
        embedding_size=16,
        hidden_sizes=[16, 32],
        depths=[1, 2],
        groups_width=8,
        layer_type="y",
    )
    # Convolutions, BatchNorms, ReLU and squeeze-excitation (1x1 convs) only: nothing to fuse.
    return _vision(
        "hf_regnet",
        "TFRegNetModel",
        "RegNetModel",
        config,
        ("last_hidden_state", "pooler_output"),
        {},
    )


@register("hf_cvt", family="vision")
def build_cvt() -> CorpusModel:
    from transformers import CvtConfig

    config = CvtConfig(
        image_size=32,  # not a CvtConfig field: the builder reads it
        patch_sizes=[7, 3],
        patch_stride=[4, 2],
        patch_padding=[2, 1],
        embed_dim=[16, 32],
        num_heads=[2, 4],
        depth=[1, 2],  # TFCvtStage indexes its drop-path list by stage: depth[i] must exceed i
        mlp_ratio=[2.0, 2.0],
        attention_drop_rate=[0.0, 0.0],
        drop_rate=[0.0, 0.0],
        drop_path_rate=[0.0, 0.0],
        qkv_bias=[True, True],
        cls_token=[False, True],
        qkv_projection_method=["dw_bn", "dw_bn"],
        kernel_qkv=[3, 3],
        padding_kv=[1, 1],
        stride_kv=[2, 2],
        padding_q=[1, 1],
        stride_q=[1, 1],
    )
    # q/k/v come from depthwise conv + BatchNorm projections (keys/values strided), then Dense;
    # stage 1 prepends a CLS token. sdpa: 3 layers x 1 = 3; gelu: 3 (TFCvtIntermediate: "gelu")
    # linear: 3 x (projection_query, _key, _value, output dense, intermediate, output) = 18
    # layer_norm: 2 conv embeddings + 3 x (before, after) = 8
    nominal = {"sdpa": 3, "linear": 18, "layer_norm": 8, "gelu": 3}
    return _vision(
        "hf_cvt",
        "TFCvtModel",
        "CvtModel",
        config,
        ("last_hidden_state", "cls_token_value"),
        nominal,
    )


#: the tiny Data2VecVision of hf_data2vec_vision, also its classifier's (probe_dec_heads)
DATA2VEC_VISION_TINY = {
    "image_size": 32,
    "patch_size": 4,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 37,
    "hidden_act": "gelu",
    "use_relative_position_bias": True,
    "use_mean_pooling": True,
}


@register("hf_data2vec_vision", family="vision")
def build_data2vec_vision() -> CorpusModel:
    from transformers import Data2VecVisionConfig

    config = Data2VecVisionConfig(**DATA2VEC_VISION_TINY)
    # Each layer adds its own relative position bias (a table gathered to (heads, 65, 65)) to the scores;
    # layer_scale gammas scale both residual branches. sdpa: 2; gelu: 2
    # linear: 2 x (query, key, value, output, intermediate, output) = 12
    # layer_norm: 2 x (before, after) = 4: with use_mean_pooling (the default) the final norm is an
    # identity and the LayerNorm moves into the pooler, which TFData2VecVisionModel leaves out by default
    # (use_mean_pooling=False builds that final LayerNorm for (None, hidden) and fails on the sequence)
    nominal = {"sdpa": 2, "linear": 12, "layer_norm": 4, "gelu": 2}
    return _vision(
        "hf_data2vec_vision",
        "TFData2VecVisionModel",
        "Data2VecVisionModel",
        config,
        ("last_hidden_state",),
        nominal,
    )


@register("hf_vit_mae", family="vision")
def build_vit_mae() -> CorpusModel:
    """ViT-MAE's encoder with its random masking made deterministic: ``noise`` is an input.

    The model keeps the 25% of patches with the smallest noise (argsort), so the output is a
    function of (pixel_values, noise); make_inputs draws both from the seed.
    """
    tf = tf_module()
    from transformers import TFViTMAEModel, ViTMAEConfig

    config = ViTMAEConfig(
        image_size=32,
        patch_size=4,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        hidden_act="gelu",
        mask_ratio=0.75,
    )
    shape = (config.num_channels, config.image_size, config.image_size)
    patches = (config.image_size // config.patch_size) ** 2
    pixels = _pixel_inputs(shape)

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        inputs = pixels(batch_size, seed, size)
        inputs["noise"] = (
            np.random.default_rng(seed + 1).random((batch_size, patches)).astype(np.float32)
        )
        return inputs

    model = TFViTMAEModel(config)
    model(make_inputs(1, 0), training=False)
    randomize(model)
    outputs = ("last_hidden_state", "mask", "ids_restore")
    # sdpa: 2; gelu: 2; linear: 2 x (query, key, value, output, intermediate, output) = 12
    # layer_norm: 2 x (before, after) + final 1 = 5
    nominal = {"sdpa": 2, "layer_norm": 5, "rms_norm": 0, "gelu": 2, "linear": 12}
    return CorpusModel(
        name="hf_vit_mae",
        family="vision",
        model=model,
        input_signature=[
            tf.TensorSpec((None, *shape), tf.float32, name="pixel_values"),
            tf.TensorSpec((None, patches), tf.float32, name="noise"),
        ],
        output_names=outputs,
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, outputs),
        trainable_params=trainable_count(model),
        nominal=nominal,
        twin=hf_twin(model, "ViTMAEModel"),
        twin_inputs=torch_inputs,
    )
