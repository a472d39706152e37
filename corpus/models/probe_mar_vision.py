"""Vision pre-training heads (December's fifth probe): masked image modelling and MAE.

* ``hf_deit_mim``: TFDeiTForMaskedImageModeling on pixels and a boolean patch mask: the
  mask token blended in where the mask is set, a 1x1 convolution decoder and a pixel
  shuffle (``tf.nn.depth_to_space``, TF's channel order made PyTorch's by a gather), and
  the masked L1 reconstruction loss as a second output;
* ``hf_swin_mim``: TFSwinForMaskedImageModeling, the same head on shifted windows;
* ``hf_vit_mae_pretrain``: TFViTMAEForPreTraining with its noise an input: the encoder on
  the kept 25% of patches, mask tokens appended and unshuffled by ``ids_restore``
  (``tf.gather(batch_dims=1)``), a decoder, the per-patch prediction and the normalised
  pixel loss on the masked patches.

``nominal`` follows ``modeling_tf_<m>.py``, one comment per builder.
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
from .hf_vision import _pixel_inputs, torch_inputs


def _masked_vision(
    name: str,
    tf_class: str,
    pt_class: str,
    config: Any,
    outputs: tuple[str, ...],
    nominal: dict[str, int],
    extra: str,
    extra_dtype: Any,
) -> CorpusModel:
    """A vision model on pixels and one per-patch input ``extra`` (a bool mask or noise)."""
    tf = tf_module()
    import transformers

    shape = (config.num_channels, config.image_size, config.image_size)
    patches = (config.image_size // config.patch_size) ** 2
    pixels = _pixel_inputs(shape)

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        inputs = pixels(batch_size, seed, size)
        draw = np.random.default_rng(seed + 1).random((batch_size, patches))
        if extra_dtype is np.bool_:
            draw[:, 0] = 0.25  # at least one patch kept and one masked in every row
            draw[:, 1] = 0.75
            inputs[extra] = draw < 0.5
        else:
            inputs[extra] = draw.astype(extra_dtype)
        return inputs

    model = getattr(transformers, tf_class)(config)
    model(make_inputs(1, 0), training=False)
    randomize(model)
    tf_dtype = tf.bool if extra_dtype is np.bool_ else tf.float32
    return CorpusModel(
        name=name,
        family="vision",
        model=model,
        input_signature=[
            tf.TensorSpec((None, *shape), tf.float32, name="pixel_values"),
            tf.TensorSpec((None, patches), tf_dtype, name=extra),
        ],
        output_names=outputs,
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, outputs),
        trainable_params=trainable_count(model),
        nominal={"sdpa": 0, "layer_norm": 0, "rms_norm": 0, "gelu": 0, "linear": 0, **nominal},
        twin=hf_twin(model, pt_class),
        twin_inputs=torch_inputs,
    )


@register("hf_deit_mim", family="vision")
def build_deit_mim() -> CorpusModel:
    from transformers import DeiTConfig

    config = DeiTConfig(
        image_size=32,
        patch_size=8,
        encoder_stride=8,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
    )
    # no pooler (add_pooling_layer=False): 2 x (query, key, value, output, intermediate,
    # output) = 12 linear; LN 2 x 2 + final 1 = 5; gelu 2; sdpa 2 (no mask); the decoder
    # is a 1x1 Conv2D, not counted
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=12)
    return _masked_vision(
        "hf_deit_mim",
        "TFDeiTForMaskedImageModeling",
        "DeiTForMaskedImageModeling",
        config,
        ("loss", "reconstruction"),
        nominal,
        "bool_masked_pos",
        np.bool_,
    )


@register("hf_swin_mim", family="vision")
def build_swin_mim() -> CorpusModel:
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
        encoder_stride=8,
    )
    # hf_swin's encoder without the pooler: sdpa 4, gelu 4, linear 4 x 6 + patch-merging
    # reduction 1 = 25, layer_norm embeddings 1 + 4 x 2 + patch merging 1 + final 1 = 11;
    # the decoder is a 1x1 Conv2D and a pixel shuffle
    nominal = {"sdpa": 4, "linear": 25, "layer_norm": 11, "gelu": 4}
    return _masked_vision(
        "hf_swin_mim",
        "TFSwinForMaskedImageModeling",
        "SwinForMaskedImageModeling",
        config,
        ("loss", "reconstruction"),
        nominal,
        "bool_masked_pos",
        np.bool_,
    )


@register("hf_vit_mae_pretrain", family="vision")
def build_vit_mae_pretrain() -> CorpusModel:
    from transformers import ViTMAEConfig

    config = ViTMAEConfig(
        image_size=32,
        patch_size=4,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        decoder_hidden_size=16,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=20,
        hidden_act="gelu",
        mask_ratio=0.75,
        norm_pix_loss=True,
    )
    # encoder: 2 x 6 linear, LN 2 x 2 + final 1, gelu 2, sdpa 2; decoder: decoder_embed 1 +
    # 1 x 6 + decoder_pred 1 = 8 linear, LN 1 x 2 + decoder_norm 1 = 3, gelu 1, sdpa 1
    nominal = {"sdpa": 3, "layer_norm": 8, "gelu": 3, "linear": 20}
    return _masked_vision(
        "hf_vit_mae_pretrain",
        "TFViTMAEForPreTraining",
        "ViTMAEForPreTraining",
        config,
        ("loss", "logits", "mask", "ids_restore"),
        nominal,
        "noise",
        np.float32,
    )


@register("hf_sam", family="vision")
def build_sam() -> CorpusModel:
    """The whole of SAM (TFSamModel) on an image and point prompts: hf_sam_vision's encoder,
    the prompt encoder (random Fourier features of the points through a frozen matrix, label
    embeddings chosen by ``tf.where``, a padding point), the image-wide positional grid, and
    the mask decoder: a two-way transformer (self-attention of the tokens, cross-attention
    both ways at half width), two channels-first transposed convolutions with a
    channels-first LayerNorm, a hypernetwork MLP per mask token and the IoU head. The
    number of points is dynamic."""
    tf = tf_module()
    from transformers import (
        SamConfig,
        SamMaskDecoderConfig,
        SamPromptEncoderConfig,
        SamVisionConfig,
        TFSamModel,
    )

    vision = SamVisionConfig(
        hidden_size=32,
        output_channels=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=4,
        mlp_ratio=2.0,
        hidden_act="gelu",
        window_size=4,
        global_attn_indexes=[1],
        num_pos_feats=8,
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=16, image_size=32, patch_size=4, mask_input_channels=4
    )
    decoder = SamMaskDecoderConfig(
        hidden_size=16,
        mlp_dim=24,
        num_hidden_layers=2,
        num_attention_heads=2,
        iou_head_hidden_dim=16,
    )
    config = SamConfig(
        vision_config=vision.to_dict(),
        prompt_encoder_config=prompt.to_dict(),
        mask_decoder_config=decoder.to_dict(),
    )

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        points = size or 2
        return {
            "pixel_values": rng.standard_normal((batch_size, 3, 32, 32)).astype(np.float32),
            "input_points": (rng.random((batch_size, 1, points, 2)) * 32).astype(np.float32),
            "input_labels": rng.integers(0, 2, (batch_size, 1, points)).astype(np.int32),
        }

    model = TFSamModel(config)
    model(make_inputs(1, 0), training=False)
    randomize(model)
    outputs = ("iou_scores", "pred_masks")
    # modeling_tf_sam.py. Vision encoder: hf_sam_vision's sdpa 2, linear 8, layer_norm 6 (two
    # channels-last SamLayerNorms in the neck), gelu 2 (exact). Mask decoder, 2 two-way blocks:
    # self-attention, token->image and image->token cross-attention (q, k, v, out each: 12
    # linear, 3 sdpa) + the MLP block (lin1, lin2; relu) = 14 linear, 4 layer_norm per block;
    # final token->image attention 4 linear, 1 sdpa, layer_norm_final_attn 1; upscale:
    # channels-first SamLayerNorm 1, tf.nn.gelu (exact) x 2; 4 hypernetwork MLPs x 3 Dense +
    # the IoU head's 3 = 15 linear. The prompt encoder's Fourier features multiply the
    # coordinates by one frozen matrix (a bias-free linear map by a stored weight), read twice:
    # the points and the image-wide grid = 2 linear.
    # sdpa 2 + 7 = 9; linear 8 + 28 + 4 + 15 + 2 = 57; layer_norm 6 + 8 + 1 + 1 = 16; gelu 2 + 2
    nominal = {"sdpa": 9, "linear": 57, "layer_norm": 16, "rms_norm": 0, "gelu": 4}
    return CorpusModel(
        name="hf_sam",
        family="vision",
        model=model,
        input_signature=[
            tf.TensorSpec((None, 3, 32, 32), tf.float32, name="pixel_values"),
            tf.TensorSpec((None, 1, None, 2), tf.float32, name="input_points"),
            tf.TensorSpec((None, 1, None), tf.int32, name="input_labels"),
        ],
        output_names=outputs,
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, outputs),
        trainable_params=trainable_count(model),
        sizes=(2, 3, 5),
        dynamic_axes={"input_points": [2], "input_labels": [2]},
        nominal=nominal,
        twin=hf_twin(model, "SamModel"),
        twin_inputs=torch_inputs,
    )
