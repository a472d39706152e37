"""keras.applications CNNs (Keras 3, ``weights=None``, 10 classes), family "cnn".

Each model is built at the smallest input side it accepts (32x32 for most,
71x71 Xception, 75x75 InceptionV3) with random weights (nothing downloaded).
Only the batch dim is dynamic.

Keras 3 BatchNormalization keeps its gamma, beta and moving statistics as
initializers of their own, and the preceding Conv its kernel (the export keeps
TF's constant folding off the variables, see `fxsurgeon.frontdoor.freeze`), so
``bn_folded`` is 0. ``nominal`` counts the Dense layers (``linear``) and, for
ConvNeXt, its LayerNormalization and GELU; convolutions are not counted.

Keras 3 has no RegNet: ``keras_regnetx002`` is tf_keras's, whose
BatchNormalization exports as a node. ConvNeXt's depthwise 7x7 and RegNet's
3x3 group convolutions run as an XLA function call, which the export inlines.
ConvNeXt and EfficientNetV2 are built without their input preprocessing
(``include_preprocessing=False``): its ``Normalization(mean=..., variance=...)``
holds eager constants (which the export now freezes as constants);
``keras_normalization_const`` in `keras_layers` is that case on its own.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..registry import (
    CorpusModel,
    float_inputs,
    keras_outputs,
    randomize,
    register,
    tf_module,
    trainable_count,
)

CLASSES = 10


def _application(
    name: str,
    constructor: str,
    side: int,
    nominal: dict[str, int],
    library: str = "keras",
    **kwargs: Any,
) -> CorpusModel:
    """``<library>.applications.<constructor>`` at ``side`` x ``side``, randomised."""
    tf_module()  # first: the safe import order
    applications = importlib.import_module(f"{library}.applications")

    shape = (side, side, 3)
    model = getattr(applications, constructor)(
        weights=None, input_shape=shape, classes=CLASSES, **kwargs
    )
    return image_model(name, model, shape, nominal)


def image_model(name: str, model: Any, shape: tuple, nominal: dict[str, int]) -> CorpusModel:
    """A Keras model on one ``image`` input of ``shape`` (batch dynamic), randomised."""
    tf = tf_module()
    randomize(model)
    return CorpusModel(
        name=name,
        family="cnn",
        model=model,
        input_signature=[tf.TensorSpec((None, *shape), tf.float32, name="image")],
        output_names=tuple(model.output_names),
        make_inputs=float_inputs("image", shape),
        tf_outputs=keras_outputs(model, ("image",)),
        trainable_params=trainable_count(model),
        nominal=nominal,
        bn_folded=0,
        bn_folded_reason="",
    )


@register("keras_resnet50v2", family="cnn")
def build_resnet50v2() -> CorpusModel:
    # linear=1: the "predictions" Dense head; convolutions not counted.
    return _application("keras_resnet50v2", "ResNet50V2", 32, {"linear": 1})


@register("keras_vgg16", family="cnn")
def build_vgg16() -> CorpusModel:
    # linear=3: fc1, fc2 (4096 wide) and predictions; VGG16 has no BatchNormalization.
    return _application("keras_vgg16", "VGG16", 32, {"linear": 3})


@register("keras_xception", family="cnn")
def build_xception() -> CorpusModel:
    # linear=1: the predictions Dense head.
    return _application("keras_xception", "Xception", 71, {"linear": 1})


@register("keras_inception_v3", family="cnn")
def build_inception_v3() -> CorpusModel:
    # linear=1: the predictions Dense head (its BatchNorms are scale=False: beta only).
    return _application("keras_inception_v3", "InceptionV3", 75, {"linear": 1})


@register("keras_nasnet_mobile", family="cnn")
def build_nasnet_mobile() -> CorpusModel:
    # linear=1: the predictions Dense head.
    return _application("keras_nasnet_mobile", "NASNetMobile", 32, {"linear": 1})


@register("keras_convnext_tiny", family="cnn")
def build_convnext_tiny() -> CorpusModel:
    # depths (3, 3, 9, 3) = 18 blocks, each dwconv -> LN -> Dense(4C) -> GELU -> Dense(C):
    # layer_norm = 18 + stem 1 + 3 downsampling + head 1 = 23; gelu = 18;
    # linear = 2 * 18 + predictions 1 = 37.
    return _application(
        "keras_convnext_tiny",
        "ConvNeXtTiny",
        32,
        {"layer_norm": 23, "gelu": 18, "linear": 37},
        include_preprocessing=False,
    )


@register("keras_efficientnetv2_b0", family="cnn")
def build_efficientnetv2_b0() -> CorpusModel:
    # linear=1: the predictions Dense head (squeeze-excite uses 1x1 Conv2D, not Dense).
    return _application(
        "keras_efficientnetv2_b0",
        "EfficientNetV2B0",
        32,
        {"linear": 1},
        include_preprocessing=False,
    )


@register("keras_mobilenet", family="cnn")
def build_mobilenet() -> CorpusModel:
    # linear=0: MobileNet v1's classifier is a 1x1 Conv2D ("conv_preds"), not a Dense.
    return _application("keras_mobilenet", "MobileNet", 32, {"linear": 0})


@register("keras_regnetx002", family="cnn")
def build_regnetx002() -> CorpusModel:
    """RegNetX002 from tf_keras: Keras 3 has no RegNet. Its BatchNormalization stays a node."""
    # linear=1: the predictions Dense head.
    # its X blocks' 3x3 convolutions are grouped (inlined XLA calls)
    return _application("keras_regnetx002", "RegNetX002", 32, {"linear": 1}, library="tf_keras")
