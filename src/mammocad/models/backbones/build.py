"""Builds a backbone for fine-tuning (paper §3): its init, the new head, the frozen layers."""

from __future__ import annotations

import logging
from typing import Literal

from torch import nn

from mammocad.models.backbones.download import NETWORK_TIMEOUT_S, fetch_weights
from mammocad.models.backbones.spec import BACKBONES, BackboneSpec, WeightsUnavailable, get_spec
from mammocad.models.backbones.surgery import count_parameters, freeze_layers, replace_head

logger = logging.getLogger(__name__)

Init = Literal["imagenet", "scratch", "auto"]
INITS: tuple[str, ...] = ("imagenet", "scratch", "auto")
#: Where a model's initial weights came from, as :func:`build_model` reports it.
InitSource = Literal["torchvision", "timm", "bundled-int8", "scratch"]
SOURCES: tuple[str, ...] = ("torchvision", "timm", "bundled-int8", "scratch")
BUNDLED = "bundled-int8"


def build_architecture(
    name: str, init_source: str | None = "scratch", num_classes: int = 2
) -> nn.Module:
    """The architecture a backbone was built with, without weights or freezing.

    Models initialised from the bundled int8 weights use the TFLite layout (TensorFlow's
    SAME padding, input range; see :func:`mammocad.models.bundled.tf_architecture`), all
    others the library's. Rebuilding a model from a checkpoint must use the same one, or
    its outputs change although the weights load.

    Args:
        name: registered backbone name.
        init_source: the source :func:`build_model` reported (recorded as ``init`` in the
            checkpoint's metrics). ``None`` (checkpoints that predate it) and the former
            ``"imagenet"`` mean the library's architecture.
        num_classes: outputs of the head.

    Returns:
        The model, randomly initialised, every parameter trainable.

    Raises:
        KeyError: for an unknown backbone name.
        ValueError: for an unknown ``init_source``.
    """
    spec = get_spec(name)
    if init_source is not None and init_source not in (*SOURCES, "imagenet"):
        raise ValueError(f"unknown init source {init_source!r}; valid: {', '.join(SOURCES)}")
    model = spec.builder(False)
    if init_source == BUNDLED:
        from mammocad.models.bundled.architecture import tf_architecture

        tf_architecture(model, spec.mean, spec.std)
    replace_head(model, spec.classifier, num_classes)
    return model


def _imagenet_model(
    spec: BackboneSpec, init: Init, allow_download: bool | None, timeout_s: float
) -> tuple[nn.Module, InitSource]:
    """The ImageNet model of a backbone, from the best source there is (see build_model)."""
    try:
        fetch_weights(spec.name, allow_download=allow_download, timeout_s=timeout_s)
        return spec.builder(True), spec.source
    except WeightsUnavailable as err:
        cause, why = err, str(err)
    if spec.bundled is not None:
        from mammocad.models.bundled.load import build_bundled

        try:
            model = build_bundled(spec.name)
        except WeightsUnavailable as err:
            why = f"{why} The bundled int8 ImageNet weights are unavailable too: {err}"
        else:
            logger.warning(
                "%s: %s float ImageNet weights unavailable; using the bundled int8 ImageNet "
                "weights (%s), converted to float",
                spec.name,
                spec.source,
                spec.bundled,
            )
            return model, BUNDLED
    else:
        bundled = ", ".join(n for n in BACKBONES.names() if get_spec(n).bundled)
        why = f"{why} (ImageNet weights are bundled only for {bundled}.)"
    if init == "imagenet":
        raise WeightsUnavailable(why) from cause
    logger.warning("init 'auto' falls back to scratch: %s", why)
    return spec.builder(False), "scratch"


def build_model(
    name: str,
    init: Init,
    num_classes: int = 2,
    freeze: tuple[str, ...] | None = None,
    *,
    allow_download: bool | None = None,
    timeout_s: float = NETWORK_TIMEOUT_S,
) -> tuple[nn.Module, InitSource]:
    """Builds a backbone of paper Table 1 with a new ``num_classes`` head (paper §3).

    ImageNet weights come, in this order, from the library's own float weights (cached, or
    downloaded where allowed: :func:`fetch_weights`), then for the MobileNets from the
    bundled int8 TFLite weights (:mod:`mammocad.models.bundled`), else ``"auto"`` falls back
    to scratch with a warning and ``"imagenet"`` fails.

    Args:
        name: registered backbone name (see :data:`BACKBONES`).
        init: ``"imagenet"`` loads ImageNet weights and fails if they cannot be had;
            ``"scratch"`` keeps the random initialisation (seed beforehand); ``"auto"``
            loads ImageNet weights where obtainable, else warns and uses scratch.
        num_classes: outputs of the new head (2: benign vs malignant).
        freeze: module-path prefixes to freeze; ``()`` freezes nothing. ``None`` freezes
            the spec's ``default_frozen`` where the init has ImageNet weights and nothing
            where it resolves to scratch: frozen random layers teach nothing. The new head
            always trains.
        allow_download: see :func:`fetch_weights`.
        timeout_s: see :func:`fetch_weights`.

    Returns:
        ``(model, source)`` with ``source`` one of ``"torchvision"``, ``"timm"``,
        ``"bundled-int8"`` or ``"scratch"`` (see :data:`SOURCES`), to be recorded with the
        run so that runs with different inits never look alike, and passed to
        :func:`build_architecture` to rebuild the model from a checkpoint.

    Raises:
        KeyError: for an unknown backbone name, listing the valid ones.
        ValueError: for an unknown ``init``, ``num_classes < 1`` or a prefix matching
            nothing; :class:`~mammocad.models.bundled.BundledWeightsMismatch` if a bundled
            file does not fit its architecture.
        WeightsUnavailable: for ``init="imagenet"`` when no ImageNet weights can be had.
    """
    spec = get_spec(name)
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; valid: {', '.join(INITS)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if init == "scratch":
        model, source = spec.builder(False), "scratch"
    else:
        model, source = _imagenet_model(spec, init, allow_download, timeout_s)
    replace_head(model, spec.classifier, num_classes)
    if freeze is None:
        freeze = spec.default_frozen if source != "scratch" else ()
        logger.info(
            "%s (init %s): %s",
            name,
            source,
            f"default frozen layers {', '.join(freeze)}"
            if freeze
            else "every layer trains (frozen random layers teach nothing)",
        )
    freeze_layers(model, freeze, keep_trainable=(spec.classifier,))
    total, trainable = count_parameters(model)
    logger.info("built %s (init %s): %d parameters, %d trainable", name, source, total, trainable)
    return model, source
