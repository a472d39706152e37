"""Modules fxsurgeon puts into optimized models where torch.nn has no exact twin."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["KerasBatchNorm"]


class KerasBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm with Keras' training semantics, for any input rank >= 2 (channels at dim 1).

    In training mode both normalise with the biased batch variance, but Keras
    also updates ``moving_variance`` with the *biased* variance, where torch's
    BatchNorm uses the unbiased one. ``momentum`` follows torch's convention:
    ``running = (1 - momentum) * running + momentum * batch``, that is
    ``1 - keras_momentum``.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input of rank >= 2, got rank {input.dim()}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not self.training:
            return F.batch_norm(
                input,
                self.running_mean,
                self.running_var,
                self.weight,
                self.bias,
                False,
                0.0,
                self.eps,
            )
        dims = [0, *range(2, input.dim())]
        with torch.no_grad():
            mean = input.mean(dims)
            var = input.var(dims, unbiased=False)
            self.num_batches_tracked.add_(1)  # type: ignore[union-attr]
            # momentum=None: torch's cumulative average
            factor = (
                1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum  # type: ignore[arg-type]
            )
            self.running_mean.lerp_(mean, factor)  # type: ignore[union-attr]
            self.running_var.lerp_(var, factor)  # type: ignore[union-attr]
        return F.batch_norm(input, None, None, self.weight, self.bias, True, 0.0, self.eps)
