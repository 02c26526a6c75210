"""Names of the pipeline's model entries.

An entry names one trained model: the shallow CNN (:data:`SHALLOW`) or an item of
``finetune.backbones``, which is a registered backbone (``mobilenet_v1``) or a variant of
one, ``<backbone>-<tag>`` (``mobilenet_v1-scratch``), trained with the overrides of
``finetune.overrides.<entry>``. Checkpoints, metrics, curves and MLflow models are named by
the entry.
"""

from __future__ import annotations

#: The shallow CNN's entry name.
SHALLOW = "shallow_cnn"
#: Separates a backbone from a variant's tag in a ``finetune.backbones`` entry.
VARIANT_SEP = "-"


def backbone_of(entry: str) -> str:
    """The registered backbone of a ``finetune.backbones`` entry (``a-b`` → ``a``)."""
    return entry.split(VARIANT_SEP, 1)[0]
