"""May probes: Hugging Face TF classes and config variants the corpus did not have, each built as a
new user would (tiny configs, every variable randomised, the PyTorch twin where transformers has
one, nothing downloaded).

* ``hf_tapas_seqcls``: TFTapasForSequenceClassification (TAPAS is new to the corpus): seven
  token-type embeddings summed, positions restarted in every table cell
  (``reset_position_index_per_cell``: each cell's first position by ``unsorted_segment_min``
  over column x row segments, gathered back and subtracted), the pooler and the classifier.
  TFTapasForQuestionAnswering is not here: its call builds tfp.distributions for the
  column-selection loss even without labels, and tensorflow_probability is no dependency;
* ``hf_idefics_lm``: TFIdeficsForVisionText2Text: a CLIP-like vision tower, a LLaMA-style text
  decoder (RMSNorm, rotary positions, SiLU-gated MLP) with a gated cross-attention block
  (tanh(alpha) gates) before each decoder layer, the decoupled embedding (a second table for
  the added tokens) and the decoupled LM head (two Dense, concatenated); its sequence length
  is static (``IDEFICS_LENGTH``: with a dynamic one the TF graph itself fails);
* ``hf_funnel_tokcls``: TFFunnelForTokenClassification: the full Funnel (hf_funnel is the
  base model), its decoder upsamples the pooled sequence back by repeat, adds the first
  block's output and runs one more layer at full length;
* ``hf_opt_postln``: TFOPTModel with ``do_layer_norm_before=False`` (the OPT-350m layout):
  post-LN layers, no final LayerNorm, project_in / project_out around the stack;
* ``hf_longformer_global``: TFLongformerModel with a ``global_attention_mask``: tokens with
  global attention add global-key scores to every local band (one softmax over band and
  global keys) and get full attention of their own through the *_global projections;
* ``hf_convbert_grouped_mlm``: TFConvBertForMaskedLM with ``num_groups=2``: the FFN's two
  projections are GroupedLinearLayer (reshape to groups, a batched matmul by a 3-D kernel,
  back), the generator head and the tied LM head;
* ``hf_roformer_causal_value``: TFRoFormerForCausalLM with ``rotary_value=True``: the rotary
  rotation applied to the values as well as queries and keys, a causal mask, the MLM head.

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
    text_inputs,
    tf_module,
    trainable_count,
)
from .hf_audio import torch_inputs as mixed_torch_inputs
from .hf_text import _BERT_INPUTS, TINY, VOCAB, _hf_model

# --------------------------------------------------------------------------- TAPAS

TAPAS_ROWS = 4
TAPAS_COLUMNS = 3


def _tapas_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
    """A question then a flattened table: segment 0 / 1, column ids 1..C and row ids 0..R (row 0
    the header), previous labels 0/1, column ranks, inverse ranks and numeric relations."""
    tokens = text_inputs(("input_ids", "attention_mask"), VOCAB)(batch_size, seed, size)
    length = tokens["input_ids"].shape[1]
    rng = np.random.default_rng(seed + 7)
    types = np.zeros((batch_size, length, 7), np.int32)
    for b in range(batch_size):
        question = int(rng.integers(1, max(2, length // 2)))
        cell = np.arange(length - question) // 2  # each cell two tokens long
        types[b, question:, 0] = 1
        types[b, question:, 1] = 1 + cell % TAPAS_COLUMNS
        types[b, question:, 2] = np.minimum(cell // TAPAS_COLUMNS, TAPAS_ROWS - 1)
        types[b, question:, 3] = rng.integers(0, 2, length - question)
        types[b, question:, 4] = rng.integers(0, TAPAS_ROWS, length - question)
        types[b, question:, 5] = rng.integers(0, TAPAS_ROWS, length - question)
        types[b, question:, 6] = rng.integers(0, 10, length - question)
    return {
        "input_ids": tokens["input_ids"],
        "token_type_ids": types,
        "attention_mask": tokens["attention_mask"],
    }


@register("hf_tapas_seqcls", family="encoder")
def build_tapas_seqcls() -> CorpusModel:
    from transformers import TapasConfig, TFTapasForSequenceClassification

    config = TapasConfig(
        **TINY,
        type_vocab_sizes=[3, 8, 8, 2, 8, 8, 10],
        max_num_rows=TAPAS_ROWS,
        max_num_columns=TAPAS_COLUMNS + 1,
        reset_position_index_per_cell=True,
        num_labels=3,
    )
    # modeling_tf_tapas.py: the BERT stack, 2 x (q,k,v,o,intermediate,output) = 12, + pooler +
    # classifier = 14 linear; embeddings LN + 2 x 2 = 5 layer_norm; 2 gelu; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, rms_norm=0, gelu=2, linear=14)
    return _hf_model(
        "hf_tapas_seqcls",
        "encoder",
        TFTapasForSequenceClassification,
        config,
        "TapasForSequenceClassification",
        nominal,
        inputs=("input_ids", "attention_mask"),
        outputs=("logits",),
        make_inputs=_tapas_inputs,
        extra_specs={"token_type_ids": (None, None, 7)},
    )


# --------------------------------------------------------------------------- IDEFICS

IDEFICS_IMAGE = (1, 3, 16, 16)  # images per sample, channels, side
#: the sequence length is static: with a dynamic one, TFIdeficsAttention's rotary length is
#: ``tf.reduce_max(kv_seq_len, q_len)``, q_len passed as the reduction axis of a scalar, which
#: TF itself rejects at run time ("Invalid reduction dimension") and tf2onnx cannot export
#: (a Max by a non-constant axis); with static shapes transformers takes Python's max()
IDEFICS_LENGTH = 8


def _idefics_inputs(batch_size: int, seed: int, size: int | None = None) -> dict[str, np.ndarray]:
    """Token ids (some of them the added tokens past ``vocab_size``), the padding mask, one image
    per sample and which tokens see it (the first token of row 0 sees none)."""
    tokens = text_inputs(("input_ids", "attention_mask"), VOCAB + 2, IDEFICS_LENGTH)(
        batch_size, seed, size
    )
    rng = np.random.default_rng(seed + 3)
    length = tokens["input_ids"].shape[1]
    pixels = rng.standard_normal((batch_size, *IDEFICS_IMAGE)).astype(np.float32)
    sees = np.ones((batch_size, length, IDEFICS_IMAGE[0]), np.int32)
    sees[0, 0] = 0
    return {
        "input_ids": tokens["input_ids"],
        "attention_mask": tokens["attention_mask"],
        "pixel_values": pixels,
        "image_attention_mask": sees,
    }


@register("hf_idefics_lm", family="decoder")
def build_idefics_lm() -> CorpusModel:
    from transformers import IdeficsConfig, TFIdeficsForVisionText2Text

    tf = tf_module()
    config = IdeficsConfig(
        vocab_size=VOCAB,
        additional_vocab_size=2,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        cross_layer_interval=1,
        use_cache=False,
        vision_config=dict(
            embed_dim=32,
            image_size=IDEFICS_IMAGE[-1],
            patch_size=8,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
        ),
        perceiver_config=dict(use_resampler=False),
        freeze_text_layers=False,
        freeze_vision_layers=False,
        freeze_lm_head=False,
    )
    model = TFIdeficsForVisionText2Text(config)
    model(_idefics_inputs(1, 0), training=False)
    randomize(model)
    # the call returns the LM logits and image_hidden_states (the vision tower's sequence)
    outputs = ("logits", "image_hidden_states")
    # modeling_tf_idefics.py / vision_tf.py. Vision tower (CLIP layout, gelu): 2 x (q,k,v,out,
    # fc1,fc2) = 12 linear, pre_layrnorm + 2 x 2 = 5 layer_norm (post_layernorm feeds only the
    # pooled output: pruned), 2 gelu, 2 sdpa. Text: 2 decoder layers x (q,k,v,o, gate, up,
    # down) = 14 linear, 2 x 2 + final norm = 5 rms_norm, silu, 2 causal sdpa; a gated
    # cross-attention layer before each (cross_layer_interval=1): 2 x (q,k,v,o, gate, up, down)
    # = 14 linear, 2 x 2 = 4 rms_norm, 2 sdpa over the image tokens; the decoupled LM head:
    # lm_head + additional_fc = 2 linear. linear 42, layer_norm 5, rms_norm 9, gelu 2, sdpa 6
    nominal = dict(sdpa=6, layer_norm=5, rms_norm=9, gelu=2, linear=42)
    return CorpusModel(
        name="hf_idefics_lm",
        family="decoder",
        model=model,
        input_signature=[
            tf.TensorSpec((None, IDEFICS_LENGTH), tf.int32, name="input_ids"),
            tf.TensorSpec((None, IDEFICS_LENGTH), tf.int32, name="attention_mask"),
            tf.TensorSpec((None, *IDEFICS_IMAGE), tf.float32, name="pixel_values"),
            tf.TensorSpec(
                (None, IDEFICS_LENGTH, IDEFICS_IMAGE[0]), tf.int32, name="image_attention_mask"
            ),
        ],
        output_names=outputs,
        make_inputs=_idefics_inputs,
        tf_outputs=hf_outputs(model, outputs),
        trainable_params=trainable_count(model),
        nominal=nominal,
        twin=hf_twin(model, "IdeficsForVisionText2Text"),
        twin_inputs=mixed_torch_inputs,
    )


# --------------------------------------------------------------------------- Funnel, OPT


@register("hf_funnel_tokcls", family="encoder")
def build_funnel_tokcls() -> CorpusModel:
    from transformers import FunnelConfig, TFFunnelForTokenClassification

    config = FunnelConfig(
        vocab_size=VOCAB,
        block_sizes=[1, 1],
        num_decoder_layers=1,
        d_model=32,
        n_head=4,
        d_head=8,
        d_inner=37,
        max_position_embeddings=64,
        num_labels=3,
    )
    # modeling_tf_funnel.py: 2 encoder blocks of 1 layer + 1 decoder layer, each (q,k,v,
    # post_proj,ffn1,ffn2, and r_kernel: einsum "td,dnh->tnh", a bias-free projection of the
    # sinusoidal position encoding into heads) = 21, + classifier = 22 linear; embeddings LN
    # + 3 x 2 = 7 layer_norm; 3 gelu (gelu_new); 3 sdpa
    nominal = dict(sdpa=3, layer_norm=7, rms_norm=0, gelu=3, linear=22)
    return _hf_model(
        "hf_funnel_tokcls",
        "encoder",
        TFFunnelForTokenClassification,
        config,
        "FunnelForTokenClassification",
        nominal,
        inputs=_BERT_INPUTS,
        outputs=("logits",),
    )


@register("hf_opt_postln", family="decoder")
def build_opt_postln() -> CorpusModel:
    from transformers import OPTConfig, TFOPTModel

    config = OPTConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        ffn_dim=37,
        max_position_embeddings=64,
        word_embed_proj_dim=16,
        do_layer_norm_before=False,
        use_cache=False,
    )
    # modeling_tf_opt.py: 2 x (q,k,v,out,fc1,fc2) + project_in + project_out = 14 linear;
    # post-LN: 2 x (self_attn_layer_norm, final_layer_norm) = 4 layer_norm, no decoder
    # final_layer_norm (do_layer_norm_before=False); relu; 2 causal sdpa
    nominal = dict(sdpa=2, layer_norm=4, rms_norm=0, gelu=0, linear=14)
    return _hf_model("hf_opt_postln", "decoder", TFOPTModel, config, "OPTModel", nominal)


# --------------------------------------------------------------------------- Longformer

WINDOW = 4


def _longformer_global_inputs(
    batch_size: int, seed: int, size: int | None = None
) -> dict[str, np.ndarray]:
    """Token ids, the padding mask and global attention on the first token of every row (and
    the second of row 0: the rows' counts of global tokens differ)."""
    tokens = text_inputs(("input_ids", "attention_mask"), VOCAB, 2 * WINDOW)(batch_size, seed, size)
    globals_ = np.zeros_like(tokens["attention_mask"])
    globals_[:, 0] = 1
    globals_[0, 1] = 1
    return {**tokens, "global_attention_mask": globals_}


@register("hf_longformer_global", family="encoder")
def build_longformer_global() -> CorpusModel:
    from transformers import LongformerConfig, TFLongformerModel

    config = LongformerConfig(**TINY, attention_window=WINDOW, pad_token_id=1)
    # modeling_tf_longformer.py: per layer q, k, v, query_global, key_global, value_global,
    # attention output dense, intermediate, output = 9, x 2 + pooler = 19 linear; embeddings LN
    # + 2 x 2 = 5 layer_norm; 2 exact gelu. The local band scores (seq, 2w + 1) concatenated
    # with the global keys' scores have one softmax per layer, no QK^T: it stays (softmax=2);
    # the global tokens' own attention (query_global over every key_global, padding masked)
    # is a plain QK^T softmax V: 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, rms_norm=0, gelu=2, linear=19, softmax=2)
    model = _hf_model(
        "hf_longformer_global",
        "encoder",
        TFLongformerModel,
        config,
        "LongformerModel",
        nominal,
        inputs=("input_ids", "attention_mask", "global_attention_mask"),
        outputs=("last_hidden_state", "pooler_output"),
        make_inputs=_longformer_global_inputs,
    )
    model.sizes = (WINDOW * 2, WINDOW * 3)
    return model


# --------------------------------------------------------------------------- ConvBERT, RoFormer


@register("hf_convbert_grouped_mlm", family="encoder")
def build_convbert_grouped_mlm() -> CorpusModel:
    from transformers import ConvBertConfig, TFConvBertForMaskedLM

    config = ConvBertConfig(
        **{**TINY, "intermediate_size": 36},  # divisible by num_groups
        embedding_size=16,
        head_ratio=2,
        conv_kernel_size=3,
        num_groups=2,
    )
    # modeling_tf_convbert.py: with num_groups=2 the FFN's intermediate and output are
    # GroupedLinearLayer (a batched matmul of 2 groups of 16 -> 18 / 18 -> 16 by a 3-D kernel,
    # a block-diagonal product: no single Dense), so per layer q,k,v + conv_kernel_layer +
    # conv_out_layer + attention out = 6; 2 x 6 + embeddings_project + the generator's dense +
    # the tied LM head (word_embeddings^T + bias) = 15 linear; embeddings LN + 2 x 2 + the
    # generator's LN = 6 layer_norm; 2 + the generator's = 3 gelu; 2 sdpa; the span-based
    # dynamic conv's softmax over kernel taps stays (softmax=2)
    nominal = dict(sdpa=2, layer_norm=6, rms_norm=0, gelu=3, linear=15, softmax=2)
    return _hf_model(
        "hf_convbert_grouped_mlm",
        "encoder",
        TFConvBertForMaskedLM,
        config,
        "ConvBertForMaskedLM",
        nominal,
        inputs=_BERT_INPUTS,
        outputs=("logits",),
    )


@register("hf_roformer_causal_value", family="decoder")
def build_roformer_causal_value() -> CorpusModel:
    from transformers import RoFormerConfig, TFRoFormerForCausalLM

    config = RoFormerConfig(**TINY, embedding_size=16, rotary_value=True, is_decoder=True)
    # modeling_tf_roformer.py: hf_roformer_mlm's counts (13 + the MLM transform Dense + the
    # tied decoder = 15 linear, 6 layer_norm, 3 gelu), the rotation applied to values too
    # (rotary_value) and a causal mask (is_decoder): 2 sdpa
    nominal = dict(sdpa=2, layer_norm=6, rms_norm=0, gelu=3, linear=15)
    return _hf_model(
        "hf_roformer_causal_value",
        "decoder",
        TFRoFormerForCausalLM,
        config,
        "RoFormerForCausalLM",
        nominal,
        inputs=_BERT_INPUTS,
        outputs=("logits",),
    )
