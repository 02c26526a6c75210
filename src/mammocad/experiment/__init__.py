"""Training and evaluation runs of paper §3–4, as used by the model stages.

Glue between the data stages' outputs (split and augmented manifests) and the training,
evaluation and checkpoint modules: which rows each model reads, how its images are
normalised, and what its metrics files hold.

:mod:`~mammocad.experiment.params` holds the params sections, :mod:`~mammocad.experiment.data`
the rows and images each model reads, :mod:`~mammocad.experiment.training` the training runs
and :mod:`~mammocad.experiment.evaluation` the test-split metrics.
"""

from mammocad.entries import SHALLOW, backbone_of
from mammocad.experiment.data import (
    grey_stats,
    read_split,
    training_image_px,
    training_patch_px,
)
from mammocad.experiment.evaluation import evaluate_model
from mammocad.experiment.params import (
    EvaluateParams,
    FinetuneParams,
    ShallowParams,
    params_dict,
    resolve_finetune,
)
from mammocad.experiment.training import (
    TrainedModel,
    frozen_prefixes,
    save_trained,
    train_backbone,
    train_shallow,
)

__all__ = [
    "SHALLOW",
    "EvaluateParams",
    "FinetuneParams",
    "ShallowParams",
    "TrainedModel",
    "backbone_of",
    "evaluate_model",
    "frozen_prefixes",
    "grey_stats",
    "params_dict",
    "read_split",
    "resolve_finetune",
    "save_trained",
    "train_backbone",
    "train_shallow",
    "training_image_px",
    "training_patch_px",
]
