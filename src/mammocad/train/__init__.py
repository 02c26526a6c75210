"""Training loop of the shallow CNN (paper Fig. 2) and the fine-tuned backbones (§4.3).

Paper §4.2 fixes the recipe: Adam "with decay rate of 0.99 per epoch, and a
regularization coefficient of 10^-5", batch size 64, and a "model checkpoint" that keeps
"the weights of the model for every epoch with the best score". Here the score is taken on
the validation split only (never the test split), training stops early once it has not
improved for ``patience`` epochs (paper §3: "it helps us to stop early training"), and the
layers frozen for transfer learning (paper §3) stay truly fixed: their batch-norm
statistics are not updated either.

Under ``torchrun`` (see :mod:`mammocad.distributed`) the same loop trains data-parallel:
each rank takes a seeded shard of every epoch, gradients are averaged over ranks by
:class:`~torch.nn.parallel.DistributedDataParallel`, and ``batch_size`` stays the global
batch. Without a process group nothing of this is touched.

``device``, ``mixed_precision`` and ``channels_last`` choose where and how the loop runs:
a CUDA GPU where one is visible (``auto``), autocast to bfloat16 or float16 (the latter
with loss scaling, GPUs only), and NHWC memory layout. Their defaults on a machine without
a GPU reproduce the plain float32 CPU loop bit for bit.

Modules: :mod:`~mammocad.train.config` (settings and result),
:mod:`~mammocad.train.device` (device, precision, data-parallel batch and shard),
:mod:`~mammocad.train.labels` (classes and class weights), :mod:`~mammocad.train.frozen`
(frozen batch-norm layers), :mod:`~mammocad.train.scoring` (validation and
:func:`predict_proba`) and :mod:`~mammocad.train.loop` (:func:`fit`).
"""

from mammocad.train.config import DEVICES, PRECISIONS, FitResult, TrainConfig
from mammocad.train.device import rank_batch_size, resolve_device, shard_order
from mammocad.train.frozen import frozen_batchnorms, train_mode
from mammocad.train.labels import class_weights
from mammocad.train.loop import fit
from mammocad.train.scoring import predict_proba

__all__ = [
    "DEVICES",
    "PRECISIONS",
    "FitResult",
    "TrainConfig",
    "class_weights",
    "fit",
    "frozen_batchnorms",
    "predict_proba",
    "rank_batch_size",
    "resolve_device",
    "shard_order",
    "train_mode",
]
