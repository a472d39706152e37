"""tf_keras applications with squeeze-and-excitation blocks (December's fourth probe).

* ``tfk_regnety002``: RegNetY002, RegNetX's grouped convolutions plus a squeeze-and-
  excitation block per stage (global average pool, 1x1 convolutions, ReLU, sigmoid,
  a multiply that broadcasts over the spatial dims);
* ``tfk_resnetrs50``: ResNet-RS 50, the ResNet-D stem (three 3x3 convolutions), an
  average-pool shortcut, squeeze-and-excitation with ``keepdims`` pooling and stochastic
  depth, which is the identity in inference.

``nominal`` follows the applications' source: ``linear`` counts the Dense head; the
squeeze-and-excitation projections are 1x1 convolutions and are not counted.
"""

from __future__ import annotations

from ..registry import CorpusModel, register
from .keras_apps import _application


@register("tfk_regnety002", family="cnn")
def build_regnety002() -> CorpusModel:
    """RegNetY002 at 32x32, 10 classes, every variable random."""
    # linear = 1: the predictions Dense head.
    return _application("tfk_regnety002", "RegNetY002", 32, {"linear": 1}, library="tf_keras")


@register("tfk_resnetrs50", family="cnn")
def build_resnetrs50() -> CorpusModel:
    """ResNetRS50 at 64x64 (its smallest accepted side is 32), 10 classes, every variable
    random, without its input preprocessing layers."""
    # linear = 1: the predictions Dense head.
    return _application(
        "tfk_resnetrs50",
        "ResNetRS50",
        64,
        {"linear": 1},
        library="tf_keras",
        include_preprocessing=False,
    )
