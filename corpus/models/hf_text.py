"""Hugging Face transformers TF text models: encoders and decoders, tiny configs.

Every builder makes a 2-layer model (hidden 32, 4 heads, FFN 37, vocab 99, 64
positions, unless the class needs otherwise) from its config class, calls it
once to create the variables, randomises them all, and names the PyTorch twin
(the transformers class with the same weights). Decoders are built with
``use_cache=False`` in the config, so neither TF nor the export makes
``past_key_values``.

The ``nominal`` counts are what a correct fuser finds in the whole model,
derived from the config and the TF modelling source (one comment per builder):
``sdpa`` one per softmax attention (an additive bias computed from Q, positions
or the mask is still SDPA), ``linear`` every Dense projection (embedding
projections and poolers included), ``layer_norm`` / ``rms_norm`` every
normalisation layer, ``gelu`` every GELU activation (exact or tanh).
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

VOCAB = 99
SIZES = (5, 9)
TINY = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
)


def _torch_inputs(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The same inputs for the PyTorch twin: int64 tensors under the same names."""
    import torch

    return {k: torch.from_numpy(np.asarray(v, dtype=np.int64)) for k, v in inputs.items()}


def _hf_model(
    name: str,
    family: str,
    model_class: Any,
    config: Any,
    twin_class: str | None,
    nominal: dict[str, int],
    *,
    inputs: tuple[str, ...] = ("input_ids", "attention_mask"),
    outputs: tuple[str, ...] = ("last_hidden_state",),
    make_inputs: Callable[..., dict[str, np.ndarray]] | None = None,
    extra_specs: dict[str, tuple[int | None, ...]] | None = None,
    xfail: str = "",
    note: str = "",
) -> CorpusModel:
    """Build ``model_class(config)``, randomise it and describe it as a `CorpusModel`.

    ``inputs`` are the token inputs, in the model's call order; ``extra_specs``
    name -> shape of int32 inputs besides them (their dim 1 is made dynamic),
    inserted after ``input_ids``.
    """
    tf = tf_module()
    model = model_class(config)
    make_inputs = make_inputs or text_inputs(inputs, config.vocab_size)
    model(make_inputs(1, 0))
    # non-trainable variables here are fixed buffers (ESM's rotary inv_freq), not weights:
    # randomising them would change the function itself, so they keep their values
    fixed = [(v, v.numpy()) for v in model.non_trainable_variables]
    randomize(model)
    for variable, value in fixed:
        variable.assign(value)
    extra_specs = extra_specs or {}
    specs = [tf.TensorSpec((None, None), tf.int32, name=n) for n in inputs]
    for i, (n, shape) in enumerate(extra_specs.items()):
        specs.insert(1 + i, tf.TensorSpec(shape, tf.int32, name=n))
    params = trainable_count(model)
    return CorpusModel(
        name=name,
        family=family,
        model=model,
        input_signature=specs,
        output_names=outputs,
        make_inputs=make_inputs,
        tf_outputs=hf_outputs(model, outputs),
        trainable_params=params,
        sizes=SIZES,
        nominal=nominal,
        dynamic_axes={n: [1] for n in extra_specs} or None,
        twin=hf_twin(model, twin_class) if twin_class else None,
        twin_inputs=_torch_inputs if twin_class else None,
        xfail=xfail,
        note=note,
    )


# --------------------------------------------------------------------------- encoders

_BERT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: the tiny MobileBERT of hf_mobilebert, also its heads' (probe_mar_heads, probe_dec_heads3)
MOBILEBERT_TINY = {
    **TINY,
    "embedding_size": 16,
    "intra_bottleneck_size": 16,
    "num_feedforward_networks": 2,
    "hidden_act": "relu",
}
#: the tiny ESM-2 of hf_esm (rotary positions, no token dropout), also hf_esm_seqcls'
ESM_TINY = {
    **TINY,
    "position_embedding_type": "rotary",
    "token_dropout": False,
    "emb_layer_norm_before": False,
    "pad_token_id": 1,
    "mask_token_id": 2,
}


@register("hf_electra", family="encoder")
def build_electra() -> CorpusModel:
    from transformers import ElectraConfig, TFElectraModel

    config = ElectraConfig(**TINY, embedding_size=16)
    # 2 layers x (q,k,v,o,ffn1,ffn2) + embeddings_project (16 -> 32) = 13 linear;
    # embeddings LN + 2 layers x 2 = 5 layer_norm; 2 layers x exact GELU = 2 gelu; no pooler
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=13)
    return _hf_model(
        "hf_electra",
        "encoder",
        TFElectraModel,
        config,
        "ElectraModel",
        nominal,
        inputs=_BERT_INPUTS,
    )


@register("hf_mpnet", family="encoder")
def build_mpnet() -> CorpusModel:
    from transformers import MPNetConfig, TFMPNetModel

    # relative_attention_num_buckets stays 32: PyTorch MPNet's compute_position_bias ignores the
    # config and always buckets into 32
    config = MPNetConfig(**TINY)
    # 2 layers x (q,k,v,o,ffn1,ffn2) + pooler = 13 linear; embeddings LN + 2 x 2 = 5 layer_norm;
    # 2 gelu; the relative position bias is additive: 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=13)
    return _hf_model(
        "hf_mpnet",
        "encoder",
        TFMPNetModel,
        config,
        "MPNetModel",
        nominal,
        outputs=("last_hidden_state", "pooler_output"),
    )


@register("hf_mobilebert", family="encoder")
def build_mobilebert() -> CorpusModel:
    from transformers import MobileBertConfig, TFMobileBertModel

    config = MobileBertConfig(**MOBILEBERT_TINY)
    # per layer: bottleneck input + shared q/k bottleneck + q,k,v + attention out + 1 extra FFN x 2
    # + intermediate + output + output bottleneck = 11; 2 x 11 + embedding_transformation
    # + pooler = 24 linear; normalization_type="no_norm" (elementwise x*g+b, no statistics):
    # 0 layer_norm; relu: 0 gelu
    nominal = dict(sdpa=2, layer_norm=0, gelu=0, linear=24)
    return _hf_model(
        "hf_mobilebert",
        "encoder",
        TFMobileBertModel,
        config,
        "MobileBertModel",
        nominal,
        inputs=_BERT_INPUTS,
        outputs=("last_hidden_state", "pooler_output"),
    )


@register("hf_convbert", family="encoder")
def build_convbert() -> CorpusModel:
    from transformers import ConvBertConfig, TFConvBertModel

    config = ConvBertConfig(**TINY, embedding_size=16, head_ratio=2, conv_kernel_size=3)
    # per layer: q,k,v + conv_kernel_layer + conv_out_layer + attention out + ffn1,ffn2 = 8
    # (key_conv_attn_layer is a SeparableConv1D, not a dense); 2 x 8 + embeddings_project = 17
    # linear; embeddings LN + 2 x 2 = 5 layer_norm; 2 gelu; sdpa: the softmax self-attention
    # over num_heads/head_ratio = 2 heads, one per layer = 2 (the span-based dynamic conv's
    # softmax over kernel taps is a conv, not attention: one per layer stays, softmax=2)
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=17, softmax=2)
    return _hf_model(
        "hf_convbert",
        "encoder",
        TFConvBertModel,
        config,
        "ConvBertModel",
        nominal,
        inputs=_BERT_INPUTS,
    )


@register("hf_roformer", family="encoder")
def build_roformer() -> CorpusModel:
    from transformers import RoFormerConfig, TFRoFormerModel

    config = RoFormerConfig(**TINY, embedding_size=16)
    # 2 layers x (q,k,v,o,ffn1,ffn2) + embeddings_project = 13 linear; embeddings LN + 2 x 2
    # = 5 layer_norm; 2 gelu; rotary q/k then plain softmax attention: 2 sdpa; no pooler
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=13)
    return _hf_model(
        "hf_roformer",
        "encoder",
        TFRoFormerModel,
        config,
        "RoFormerModel",
        nominal,
        inputs=_BERT_INPUTS,
    )


@register("hf_deberta_v2", family="encoder")
def build_deberta_v2() -> CorpusModel:
    from transformers import DebertaV2Config, TFDebertaV2Model

    # DeBERTa-v3 style: relative attention with log buckets, shared q/k projections for the
    # positions, layer-normed relative embeddings, no absolute positions, no token types
    config = DebertaV2Config(
        **TINY,
        relative_attention=True,
        pos_att_type=["p2c", "c2p"],
        position_buckets=8,
        max_relative_positions=64,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        position_biased_input=False,
        type_vocab_size=0,
    )
    # 2 layers x (q,k,v,o,ffn1,ffn2, and query_proj/key_proj again on the relative-position
    # table, shared by share_att_key) = 16 linear; embeddings LN + the encoder's LN of the
    # relative embeddings + 2 x 2 = 6 layer_norm (as DebertaV2Model calls them); 2 gelu;
    # disentangled attention = softmax(QK^T/s + c2p + p2c bias, masked): additive, 2 sdpa
    nominal = dict(sdpa=2, layer_norm=6, gelu=2, linear=16)
    return _hf_model(
        "hf_deberta_v2",
        "encoder",
        TFDebertaV2Model,
        config,
        None,  # the twin differs at padded query rows, which TF's XSoftmax zeroes
        nominal,
        note="PyTorch DebertaV2Model matches TF within 1e-6 except at padded query positions",
    )


@register("hf_funnel", family="encoder")
def build_funnel() -> CorpusModel:
    from transformers import FunnelConfig, TFFunnelBaseModel

    config = FunnelConfig(
        vocab_size=VOCAB,
        block_sizes=[1, 1],
        d_model=32,
        n_head=4,
        d_head=8,
        d_inner=37,
        max_position_embeddings=64,
    )
    # 2 blocks of 1 layer (mean pooling between them): 2 x (q,k,v,post_proj,ffn1,ffn2,r_kernel)
    # = 14 linear (r_kernel projects the sinusoidal position encoding to the heads without a
    # bias: einsum "td,dnh->tnh", a Dense product by a [d_model, n_head, d_head] kernel);
    # embeddings LN + 2 x 2 = 5 layer_norm; 2 gelu (gelu_new); relative-shift attention adds
    # position and token-type terms from Q: 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=14)
    return _hf_model(
        "hf_funnel",
        "encoder",
        TFFunnelBaseModel,
        config,
        "FunnelBaseModel",
        nominal,
        inputs=_BERT_INPUTS,
    )


def _layoutlm_inputs(max_2d: int) -> Callable[..., dict[str, np.ndarray]]:
    """BERT token inputs plus ``bbox``: (x0, y0, x1, y1) boxes with x0 <= x1, y0 <= y1."""
    tokens = text_inputs(_BERT_INPUTS, VOCAB)

    def make_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
        arrays = tokens(batch_size, seed, size)
        length = arrays["input_ids"].shape[1]
        rng = np.random.default_rng(seed + 1)
        corners = np.sort(rng.integers(0, max_2d, (batch_size, length, 2, 2)), axis=2)
        bbox = corners.reshape(batch_size, length, 4).astype(np.int32)
        return {
            "input_ids": arrays["input_ids"],
            "bbox": bbox,
            **{n: arrays[n] for n in _BERT_INPUTS[1:]},
        }

    return make_inputs


@register("hf_layoutlm", family="encoder")
def build_layoutlm() -> CorpusModel:
    from transformers import LayoutLMConfig, TFLayoutLMModel

    config = LayoutLMConfig(**TINY, max_2d_position_embeddings=128)
    # 2 layers x (q,k,v,o,ffn1,ffn2) + pooler = 13 linear; embeddings LN + 2 x 2 = 5 layer_norm;
    # 2 gelu; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=13)
    return _hf_model(
        "hf_layoutlm",
        "encoder",
        TFLayoutLMModel,
        config,
        "LayoutLMModel",
        nominal,
        inputs=_BERT_INPUTS,
        outputs=("last_hidden_state", "pooler_output"),
        make_inputs=_layoutlm_inputs(config.max_2d_position_embeddings),
        extra_specs={"bbox": (None, None, 4)},
    )


@register("hf_xlm", family="encoder")
def build_xlm() -> CorpusModel:
    from transformers import TFXLMModel, XLMConfig

    config = XLMConfig(
        vocab_size=VOCAB, emb_dim=32, n_layers=2, n_heads=4, max_position_embeddings=64
    )
    # FFN width is fixed at 4 x emb_dim = 128; 2 layers x (q,k,v,out,lin1,lin2) = 12 linear;
    # layer_norm_emb + 2 x 2 = 5 layer_norm; gelu_activation: 2 exact gelu; 2 sdpa (n_langs=1:
    # no language embeddings)
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=12)
    return _hf_model("hf_xlm", "encoder", TFXLMModel, config, "XLMModel", nominal)


@register("hf_esm", family="encoder")
def build_esm() -> CorpusModel:
    from transformers import EsmConfig, TFEsmModel

    # ESM-2 style: rotary positions, pre-LN layers, final emb_layer_norm_after, no token dropout
    config = EsmConfig(**ESM_TINY)
    # 2 layers x (q,k,v,o,ffn1,ffn2) + pooler = 13 linear; 2 x (attention pre-LN, FFN pre-LN)
    # + emb_layer_norm_after = 5 layer_norm; 2 exact gelu; 2 sdpa (q scaled before QK^T)
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=13)
    return _hf_model(
        "hf_esm",
        "encoder",
        TFEsmModel,
        config,
        None,  # PyTorch EsmModel differs from TF on padded inputs (see note)
        nominal,
        outputs=("last_hidden_state", "pooler_output"),
        note="read by no output: the contact-prediction head (run only with return_contacts) "
        "and the absolute position table (built even with rotary positions): door A brings "
        "them back as parameters no output depends on, door B cannot (no ONNX file holds them); "
        "twin: PyTorch EsmModel matches TF within 2e-6 without padding, differs by up to 2.3 "
        "with a padding mask (cause not found)",
    )


# --------------------------------------------------------------------------- decoders


@register("hf_opt", family="decoder")
def build_opt() -> CorpusModel:
    from transformers import OPTConfig, TFOPTModel

    config = OPTConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        ffn_dim=37,
        max_position_embeddings=64,
        word_embed_proj_dim=16,
        use_cache=False,
    )
    # 2 layers x (q,k,v,out,fc1,fc2) + project_in + project_out (word_embed_proj_dim 16) = 14
    # linear; 2 x (self_attn LN, final LN) + decoder final_layer_norm = 5 layer_norm; relu:
    # 0 gelu; causal + padding mask: 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, gelu=0, linear=14)
    return _hf_model("hf_opt", "decoder", TFOPTModel, config, "OPTModel", nominal)


@register("hf_gptj", family="decoder")
def build_gptj() -> CorpusModel:
    from transformers import GPTJConfig, TFGPTJModel

    config = GPTJConfig(
        vocab_size=VOCAB,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_inner=37,
        n_positions=64,
        rotary_dim=4,
        use_cache=False,
    )
    # 2 layers x (q,k,v,out,fc_in,fc_out) = 12 linear (attention ones without bias); 2 x ln_1
    # (attention and MLP in parallel) + ln_f = 3 layer_norm; 2 gelu (gelu_new); partial rotary
    # (4 of 8 head dims), causal: 2 sdpa
    nominal = dict(sdpa=2, layer_norm=3, gelu=2, linear=12)
    return _hf_model("hf_gptj", "decoder", TFGPTJModel, config, "GPTJModel", nominal)


@register("hf_xglm", family="decoder")
def build_xglm() -> CorpusModel:
    from transformers import TFXGLMModel, XGLMConfig

    config = XGLMConfig(
        vocab_size=VOCAB,
        d_model=32,
        num_layers=2,
        attention_heads=4,
        ffn_dim=37,
        max_position_embeddings=64,
        use_cache=False,
    )
    # 2 layers x (q,k,v,out,fc1,fc2) = 12 linear; 2 x (self_attn LN, final LN) + layer_norm
    # = 5 layer_norm; 2 gelu; sinusoidal positions, causal: 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, gelu=2, linear=12)
    return _hf_model("hf_xglm", "decoder", TFXGLMModel, config, "XGLMModel", nominal)


@register("hf_mistral", family="decoder")
def build_mistral() -> CorpusModel:
    from transformers import MistralConfig, TFMistralModel

    config = MistralConfig(**TINY, num_key_value_heads=2, use_cache=False)
    # 2 layers x (q,k,v,o,gate,up,down) = 14 linear; 2 x (input, post_attention) + final norm =
    # 5 rms_norm; silu: 0 gelu; rotary, 4 query heads over 2 KV heads, causal: 2 sdpa
    nominal = dict(sdpa=2, layer_norm=0, rms_norm=5, gelu=0, linear=14)
    return _hf_model("hf_mistral", "decoder", TFMistralModel, config, "MistralModel", nominal)


@register("hf_ctrl", family="decoder")
def build_ctrl() -> CorpusModel:
    from transformers import CTRLConfig, TFCTRLModel

    config = CTRLConfig(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, dff=37, n_positions=64, use_cache=False
    )
    # 2 layers x (Wq,Wk,Wv,dense,ffn1,ffn2) = 12 linear; 2 x (layernorm1, layernorm2) +
    # final layernorm = 5 layer_norm; relu: 0 gelu; sinusoidal positions, causal: 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, gelu=0, linear=12)
    return _hf_model("hf_ctrl", "decoder", TFCTRLModel, config, "CTRLModel", nominal)
