"""Frozen layers stay fixed (paper §3 transfer learning): batch-norm layers whose affine
parameters are frozen are found and kept in eval mode while the rest trains.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def frozen_batchnorms(model: nn.Module) -> list[nn.Module]:
    """Batch-norm layers whose affine parameters are all frozen (paper §3 transfer learning).

    A layer without affine parameters (``affine=False``) cannot be told frozen from
    trainable by its parameters and trains normally.
    """
    found = []
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                found.append(module)
    return found


def train_mode(model: nn.Module, freeze_bn_stats: bool = False) -> None:
    """Puts ``model`` in training mode except its frozen batch-norm layers.

    A frozen batch-norm layer in training mode would still normalise with the batch
    statistics and overwrite its running averages, so the "frozen" ImageNet layers would
    change after all; in eval mode they use their stored statistics and stay fixed.

    Args:
        model: the model to switch.
        freeze_bn_stats: keep every batch-norm layer in eval mode (its affine parameters
            still train where trainable). Weights with batch norm folded into the
            convolutions carry identity statistics; normalising with batch statistics
            instead collapsed such a network to one output within a few epochs.
    """
    model.train()
    found = (
        [m for m in model.modules() if isinstance(m, _BatchNorm)]
        if freeze_bn_stats
        else frozen_batchnorms(model)
    )
    for module in found:
        module.eval()
