"""April probes, heads and compositions: Hugging Face TF classes outside the corpus, built as a
new user would (tiny configs, every variable randomised, the helpers of `hf_text` et al.).

* ``hf_t5_encoder``: TFT5EncoderModel, the T5 encoder stack alone (as used for embeddings);
* ``hf_bert2gpt2``: TFEncoderDecoderModel of a BERT encoder and a GPT-2 LM decoder with
  cross-attention (``add_cross_attention``), the logits;
* ``hf_xlm_lm``: TFXLMWithLMHeadModel: the tied prediction layer (embeddings^T + a bias);
* ``hf_flaubert_qa``: TFFlaubertForQuestionAnsweringSimple: one 2-unit Dense split into
  start and end logits;
* ``hf_wav2vec2_ctc``: TFWav2Vec2ForCTC: hf_wav2vec2 plus the CTC ``lm_head`` Dense;
* ``hf_segformer_cls``: TFSegformerForImageClassification: the last stage's map, a final
  LayerNorm, the mean over pixels into the classifier;
* ``hf_blip_caption``: TFBlipForConditionalGeneration, one teacher-forced forward as a
  captioning step is exported: the BLIP ViT, the BLIP text decoder (causal self-attention,
  cross-attention to every image token) and its LM head;
* ``hf_convnextv2_cls``: TFConvNextV2ForImageClassification: global response
  normalisation blocks, the pooled LayerNorm and the classifier.

The ``nominal`` counts follow the TF modelling source, one comment per builder.
"""

from __future__ import annotations

from ..registry import CorpusModel, register
from .hf_audio import _wave, _wave_config
from .hf_seq2seq import NAMES as SEQ2SEQ_NAMES
from .hf_seq2seq import seq2seq_inputs
from .hf_text import TINY, VOCAB, _hf_model
from .hf_vision import _vision, segformer_config
from .probe_mar_heads import _text_vision
from .probe_mar_text import _seq2seq_head


@register("hf_t5_encoder", family="encoder")
def build_t5_encoder() -> CorpusModel:
    from transformers import T5Config, TFT5EncoderModel

    config = T5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        feed_forward_proj="gated-gelu",
    )
    # modeling_tf_t5.py, the encoder: 2 x (q,k,v,o + wi_0, wi_1, wo) = 14 linear; 2 x 2 +
    # final_layer_norm = 5 rms_norm; gated-gelu (gelu_new): 2 gelu; the relative position
    # bias of layer 0 added in both layers: 2 sdpa
    nominal = dict(sdpa=2, layer_norm=0, rms_norm=5, gelu=2, linear=14)
    return _hf_model(
        "hf_t5_encoder", "encoder", TFT5EncoderModel, config, "T5EncoderModel", nominal
    )


@register("hf_bert2gpt2", family="seq2seq")
def build_bert2gpt2() -> CorpusModel:
    from transformers import (
        BertConfig,
        EncoderDecoderConfig,
        GPT2Config,
        TFEncoderDecoderModel,
    )

    encoder = BertConfig(**TINY, hidden_act="gelu")
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
    config = EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder.use_cache = False
    config.decoder_start_token_id = 0
    config.pad_token_id = 0

    def build(cfg: EncoderDecoderConfig) -> TFEncoderDecoderModel:
        return TFEncoderDecoderModel(config=cfg)

    # modeling_tf_bert.py (encoder, pooler unused by the seq2seq output: pruned): 2 x (q,k,v,o,
    # intermediate, output) = 12 linear, LN 1 + 2 x 2 = 5, 2 gelu, 2 sdpa. modeling_tf_gpt2.py
    # (decoder): 2 x (c_attn, c_proj, q_attn, cross c_attn (k, v), cross c_proj, c_fc, mlp
    # c_proj) = 14 + the tied LM head = 15 linear (hidden sizes equal: no enc_to_dec_proj);
    # 2 x (ln_1, ln_cross_attn, ln_2) + ln_f = 7 layer_norm; 2 gelu_new; causal self + cross
    # attention: 4 attentions, the 2 causal ones not SDPA (their band and the decoder padding
    # both fill -1e4: exact on left padding only unfused, patterns/_attention_masks.py
    # `_dominates`), their 2 softmaxes kept. Total: linear 27, layer_norm 12, gelu 4, sdpa 4
    nominal = dict(sdpa=4, softmax=2, layer_norm=12, rms_norm=0, gelu=4, linear=27)
    return _seq2seq_head(
        "hf_bert2gpt2",
        build,
        "EncoderDecoderModel",
        config,
        nominal,
        ("logits", "encoder_last_hidden_state"),
        SEQ2SEQ_NAMES,
        seq2seq_inputs(VOCAB),
    )


@register("hf_xlm_lm", family="encoder")
def build_xlm_lm() -> CorpusModel:
    from transformers import TFXLMWithLMHeadModel, XLMConfig

    config = XLMConfig(
        vocab_size=VOCAB, emb_dim=32, n_layers=2, n_heads=4, max_position_embeddings=64
    )
    # modeling_tf_xlm.py: hf_xlm's 12 linear + the tied prediction layer (embeddings^T + bias,
    # asm=False) = 13; 5 layer_norm; 2 gelu; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, rms_norm=0, gelu=2, linear=13)
    return _hf_model(
        "hf_xlm_lm",
        "encoder",
        TFXLMWithLMHeadModel,
        config,
        "XLMWithLMHeadModel",
        nominal,
        outputs=("logits",),
    )


@register("hf_flaubert_qa", family="encoder")
def build_flaubert_qa() -> CorpusModel:
    from transformers import FlaubertConfig, TFFlaubertForQuestionAnsweringSimple

    config = FlaubertConfig(
        vocab_size=VOCAB, emb_dim=32, n_layers=2, n_heads=4, max_position_embeddings=64
    )
    # modeling_tf_flaubert.py (post-LN, the XLM layout): 2 x (q,k,v,out,lin1,lin2) + qa_outputs
    # = 13 linear; layer_norm_emb + 2 x 2 = 5 layer_norm; 2 gelu; 2 sdpa
    nominal = dict(sdpa=2, layer_norm=5, rms_norm=0, gelu=2, linear=13)
    return _hf_model(
        "hf_flaubert_qa",
        "encoder",
        TFFlaubertForQuestionAnsweringSimple,
        config,
        "FlaubertForQuestionAnsweringSimple",
        nominal,
        outputs=("start_logits", "end_logits"),
    )


@register("hf_wav2vec2_ctc", family="audio")
def build_wav2vec2_ctc() -> CorpusModel:
    from transformers import Wav2Vec2Config

    # modeling_tf_wav2vec2.py: hf_wav2vec2's counts (`_wave`) + the CTC lm_head Dense; the
    # builder's nominal is the base model's, so one more linear here
    model = _wave(
        "hf_wav2vec2_ctc",
        "TFWav2Vec2ForCTC",
        "Wav2Vec2ForCTC",
        _wave_config(Wav2Vec2Config),
        ("logits",),
    )
    model.nominal = {**model.nominal, "linear": model.nominal["linear"] + 1}
    return model


@register("hf_segformer_cls", family="vision")
def build_segformer_cls() -> CorpusModel:
    config = segformer_config(num_labels=3)
    # modeling_tf_segformer.py: hf_segformer's 24 linear + classifier = 25; layer_norm 14 as
    # hf_segformer (the last block norm normalises the map the classifier pools); 4 gelu; 4 sdpa
    nominal = {"sdpa": 4, "linear": 25, "layer_norm": 14, "gelu": 4}
    return _vision(
        "hf_segformer_cls",
        "TFSegformerForImageClassification",
        "SegformerForImageClassification",
        config,
        ("logits",),
        nominal,
    )


@register("hf_convnextv2_cls", family="vision")
def build_convnextv2_cls() -> CorpusModel:
    from transformers import ConvNextV2Config

    config = ConvNextV2Config(
        image_size=32,
        num_channels=3,
        patch_size=4,
        num_stages=2,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        hidden_act="gelu",
        num_labels=3,
    )
    # modeling_tf_convnextv2.py: per block a depthwise conv, a LayerNorm, pwconv1 (Dense),
    # GELU, GRN, pwconv2 (Dense): 2 blocks = 4 linear + classifier = 5; layer_norm: the
    # embeddings' channels-first LayerNorm, 2 block norms, the downsampling LayerNorm of stage
    # 1 and the pooled LayerNorm = 5; 2 gelu; no attention
    nominal = {"linear": 5, "layer_norm": 5, "gelu": 2}
    return _vision(
        "hf_convnextv2_cls",
        "TFConvNextV2ForImageClassification",
        "ConvNextV2ForImageClassification",
        config,
        ("logits",),
        nominal,
    )


@register("hf_blip_caption", family="vision")
def build_blip_caption() -> CorpusModel:
    from transformers import BlipConfig, TFBlipForConditionalGeneration

    tower = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    config = BlipConfig(
        text_config=dict(tower, vocab_size=99, max_position_embeddings=32),
        vision_config=dict(tower, image_size=32, patch_size=8, hidden_act="gelu", num_channels=3),
        projection_dim=16,
    )
    # modeling_tf_blip.py / modeling_tf_blip_text.py: the vision tower as hf_blip_itm (8 linear,
    # 2 gelu, 2 sdpa, 5 layer_norm); the text decoder (TFBlipTextLMHeadModel, no pooler): 2 x
    # (self q,k,v,o + cross q,k,v,o + intermediate + output) = 20 linear, embeddings LN + 2 x 3
    # = 7 layer_norm, 2 gelu, 2 x 2 sdpa (self causal); the LM head: transform Dense + gelu +
    # LayerNorm, decoder Dense = 2 linear, 1 layer_norm, 1 gelu. linear 30, layer_norm 13,
    # gelu 5, sdpa 6
    nominal = dict(sdpa=6, layer_norm=13, gelu=5, linear=30)
    return _text_vision(
        "hf_blip_caption",
        TFBlipForConditionalGeneration(config),
        "BlipForConditionalGeneration",
        # the call returns the LM logits, image_embeds (the vision tower's sequence) and
        # last_hidden_state (the text decoder's, before the LM head): the export emits all
        ("logits", "image_embeds", "last_hidden_state"),
        nominal,
    )
