"""Trained checkpoints as MLflow 3 models: logged, registered under an alias, resolved.

Each trained model is logged with ``mlflow.pyfunc.log_model(name=...)`` in the
``python_function`` flavour's loader-module form: the model directory holds the
checkpoint itself (``data/<file>.pt``, a state dict with plain metadata, house style 5)
and its ``MLmodel`` names this module as the loader. Loading imports this module and calls
:func:`_load_pyfunc`, which reads the checkpoint with ``torch.load(weights_only=True)``
and rebuilds the architecture from the registry. Nothing is pickled: no
``python_model.pkl``, no pickled ``nn.Module``. The model needs the ``mammocad`` package
(and the pinned torch, torchvision and timm of its requirements) wherever it is loaded.

ONNX is not the logged flavour: AlexNet at the default 128 px patches cannot be exported
by the TorchScript ONNX exporter (its adaptive pooling to 6 × 6 is not a whole-factor
reduction), ``mammocad predict`` needs the PyTorch graph for its class activation maps,
and the ``export`` stage already writes ONNX files of the deployment backbones.

The pyfunc model takes what the pipeline's images hold: grey images in [0, 1] of shape
``(B, 1, H, W)`` (ROI patches for a backbone, down-sized full mammograms for the shallow
CNN) and returns class probabilities ``(B, 2)``: channel replication, normalisation and
softmax are inside (:class:`mammocad.export.DeployModel`), as in the exported graphs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mammocad.entries import SHALLOW
from mammocad.errors import ExpectedError

log = logging.getLogger(__name__)

#: Alias of the registered version that ``mammocad predict --model`` is pointed at.
CHAMPION = "champion"
#: Registered model names are this prefix and the finetune entry (or ``shallow_cnn``).
REGISTERED_PREFIX = "mammocad-"
#: Name of the logged model inside its run.
MODEL_NAME = "model"
#: The packages whose versions the model's pip requirements pin.
_PINNED = ("torch", "torchvision", "timm", "numpy")


class ModelURIError(ExpectedError, LookupError):
    """A model URI that does not resolve to a logged mammocad model; names the URI."""


def registered_name(entry: str) -> str:
    """The registered model name of a finetune entry or the shallow CNN."""
    return f"{REGISTERED_PREFIX}{entry}"


@dataclass(frozen=True)
class ModelSpec:
    """What :func:`mammocad.tracking.log_run` logs as the run's model.

    Attributes:
        checkpoint: the ``.pt`` checkpoint (house style 5).
        example: one input, grey ``(1, 1, H, W)`` float32 in [0, 1]; ``None`` uses a
            zero image of the checkpoint's input shape.
        register_as: registered model name whose ``champion`` alias moves to this
            version, or ``None`` to log without registering.
    """

    checkpoint: Path
    example: np.ndarray | None = None
    register_as: str | None = None


# --------------------------------------------------------------------------- the model


def _network(ckpt: dict[str, Any]) -> Any:
    """The checkpoint's network in eval mode, wrapped to take grey [0, 1] images."""
    from mammocad.export import DeployModel

    if ckpt["backbone"] == SHALLOW:
        from mammocad.models.shallow import shallow_from_checkpoint

        model = shallow_from_checkpoint(ckpt)
    else:
        from mammocad.checkpoint import rebuild_backbone
        from mammocad.inference import build_architecture

        # the MobileNets without timm or torchvision (same state dict, same outputs)
        model = rebuild_backbone(ckpt, build_architecture)
    norm = (ckpt.get("config") or {}).get("input") or {}
    if "mean" not in norm or "std" not in norm:
        raise ValueError(f"checkpoint of {ckpt['backbone']!r} holds no input mean/std")
    return DeployModel(model.eval(), norm["mean"], norm["std"]).eval()


class CheckpointModel:
    """The pyfunc model: grey images ``(B, 1, H, W)`` in [0, 1] → probabilities ``(B, 2)``.

    Args:
        path: the checkpoint file, read with ``weights_only=True``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        from mammocad.checkpoint import load_checkpoint

        self.checkpoint = load_checkpoint(path)
        self.network = _network(self.checkpoint)

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        """Class probabilities (for a backbone: benign, malignant; shallow CNN: normal,
        cancerous) of each image."""
        import torch

        x = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        if x.ndim == 3:  # one image without its batch axis
            x = x.unsqueeze(0)
        with torch.no_grad():
            return self.network(x).numpy()


def _load_pyfunc(data_path: str) -> CheckpointModel:
    """MLflow's entry point for the ``python_function`` flavour (``loader_module``)."""
    return CheckpointModel(data_path)


def input_shape(ckpt: dict[str, Any]) -> tuple[int, int, int]:
    """``(1, H, W)``: one grey image as the checkpoint's network was trained on."""
    patches = (ckpt.get("config") or {}).get("patches") or {}
    if ckpt["backbone"] == SHALLOW:
        return 1, int(patches.get("full_height", 256)), int(patches.get("full_width", 160))
    side = int(patches.get("image_size", 128))
    return 1, side, side


# --------------------------------------------------------------------------- logging


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in _PINNED:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(name)
    return out


@contextlib.contextmanager
def _modules_of(requirements: list[str]) -> Iterator[None]:
    """Lets ``log_model`` check the given requirements without indexing every package.

    Given ``pip_requirements``, ``log_model`` still warns where the environment does not
    satisfy them, and to do so first maps every module of every installed distribution to
    its distribution (``importlib.metadata.packages_distributions``: 1.7 s per logged
    model on 2 cores), although it reads each installed version by distribution name and
    needs a module only where a distribution has no metadata. For the call, this fills that
    map (MLflow's private cache in ``mlflow.utils.requirements_utils``) with the
    requirements' own names, each its own module, and empties it afterwards, so the check
    and its warnings stay as they are. Only for given requirements: inferring them reads
    the same map, which must then be complete. Where the cache is missing or already
    filled, nothing changes.
    """
    from mlflow.utils import requirements_utils as reqs

    names = [re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0] for r in requirements]
    seeded = getattr(reqs, "_MODULES_TO_PACKAGES", False) is None
    if seeded:
        reqs._MODULES_TO_PACKAGES = {name: [name] for name in ("mlflow", *names)}
    try:
        yield
    finally:
        if seeded:
            reqs._MODULES_TO_PACKAGES = None
            reqs._PACKAGES_TO_MODULES = None


def log_checkpoint_model(spec: ModelSpec) -> Any:
    """Logs a checkpoint as the active run's model, with signature and input example.

    Must run inside ``mlflow.start_run``. The pip requirements are given, not inferred:
    inferring them loads the model in a subprocess, seconds per run for nothing.

    Returns:
        MLflow's ``ModelInfo`` (``model_uri``, ``model_id``, ``registered_model_version``).
    """
    import mlflow
    from mlflow.models import infer_signature

    from mammocad import __version__

    model = CheckpointModel(spec.checkpoint)
    ckpt = model.checkpoint
    example = spec.example
    if example is None:
        example = np.zeros((1, *input_shape(ckpt)), np.float32)
    example = np.ascontiguousarray(example, dtype=np.float32)
    signature = infer_signature(example, model.predict(example))
    requirements = _requirements()
    with _modules_of(requirements):
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            loader_module=__name__,
            data_path=str(spec.checkpoint),
            signature=signature,
            input_example=example,
            pip_requirements=requirements,
            registered_model_name=spec.register_as,
            metadata={
                "backbone": ckpt["backbone"],
                "init": (ckpt.get("metrics") or {}).get("init"),
                "epoch": ckpt["epoch"],
                "mammocad_version": __version__,
                "loader": f"{__name__}._load_pyfunc (needs the mammocad package)",
            },
        )
    if spec.register_as:
        mlflow.MlflowClient().set_registered_model_alias(
            spec.register_as, CHAMPION, info.registered_model_version
        )
        log.info(
            "registered %s version %s as models:/%s@%s",
            spec.register_as,
            info.registered_model_version,
            spec.register_as,
            CHAMPION,
        )
    return info


# --------------------------------------------------------------------------- resolving


def checkpoint_in(model_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint file inside a downloaded model directory, and the model's metadata.

    Raises:
        ModelURIError: if the directory is not a mammocad model (no ``MLmodel`` naming this
            module as its loader, or no checkpoint file).
    """
    import yaml

    mlmodel = model_dir / "MLmodel"
    if not mlmodel.is_file():
        raise ModelURIError("not an MLflow model (no MLmodel file)")
    spec = yaml.safe_load(mlmodel.read_text()) or {}
    pyfunc = (spec.get("flavors") or {}).get("python_function") or {}
    if pyfunc.get("loader_module") != __name__ or not pyfunc.get("data"):
        raise ModelURIError("not a mammocad checkpoint model (its MLmodel has another loader)")
    path = model_dir / pyfunc["data"]
    if not path.is_file():
        raise ModelURIError(f"the model's checkpoint {pyfunc['data']} is missing")
    return path, {**(spec.get("metadata") or {}), "model_id": spec.get("model_id")}


def _check_store(tracking_uri: str | None) -> None:
    """Refuses a sqlite store that does not exist: MLflow would create an empty one."""
    if tracking_uri and tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri[len("sqlite:///") :])
        if not path.is_file():
            raise ModelURIError(
                f"no MLflow store at {path} (set MLFLOW_TRACKING_URI or mlflow.tracking_uri "
                "in the params file, or run from the project folder)"
            )


def fetch_checkpoint(
    uri: str, dst: Path, tracking_uri: str | None = None
) -> tuple[Path, dict[str, Any]]:
    """Downloads a logged model and returns its checkpoint file and metadata.

    Args:
        uri: ``models:/<name>@<alias>``, ``models:/<name>/<version>``,
            ``models:/<model_id>`` or ``runs:/<run_id>/model``.
        dst: an empty folder that receives the model directory.
        tracking_uri: the tracking (and registry) store; ``None`` keeps MLflow's.

    Raises:
        ModelURIError: naming the URI, when it does not resolve (an unknown name, an alias
            that is not set, a missing store) or is not a mammocad model.
    """
    from mammocad.tracking import _quiet

    _quiet()
    # predict's stderr lists refused files; download progress bars would bury them
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    _check_store(tracking_uri)
    import mlflow

    dst.mkdir(parents=True, exist_ok=True)
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(dst), tracking_uri=tracking_uri
        )
    except Exception as exc:  # MLflow reports a bad URI in many ways
        reason = " ".join((getattr(exc, "message", None) or str(exc)).split())
        raise ModelURIError(f"model {uri} not found in {tracking_uri}: {reason}") from None
    try:
        return checkpoint_in(Path(local))
    except ModelURIError as exc:
        raise ModelURIError(f"model {uri}: {exc}") from None


def companion_uri(uri: str, entry: str) -> str | None:
    """The URI of ``entry``'s registered model under the same alias as ``uri``.

    ``models:/mammocad-mobilenet_v1@champion`` and ``shallow_cnn`` give
    ``models:/mammocad-shallow_cnn@champion``. Versions of two registered models are
    unrelated, so any other form of URI gives ``None``.
    """
    prefix = f"models:/{REGISTERED_PREFIX}"
    if not uri.startswith(prefix) or "@" not in uri:
        return None
    return f"models:/{registered_name(entry)}@{uri.rsplit('@', 1)[1]}"


def fetch_models(uri: str, dst: Path, tracking_uri: str | None = None) -> tuple[Path, str]:
    """A checkpoint folder for ``mammocad predict`` from a logged patch network's URI.

    The shallow CNN comes from the registered ``mammocad-shallow_cnn`` under the same
    alias (``models:/mammocad-mobilenet_v1@champion`` → ``models:/mammocad-shallow_cnn@champion``);
    where there is none, the folder holds the patch network alone and predictions go
    without the shallow CNN's probability.

    Args:
        uri: the patch network's model URI (see :func:`fetch_checkpoint`).
        dst: an empty folder; receives the downloads and ``models/``.
        tracking_uri: the tracking (and registry) store; ``None`` keeps MLflow's.

    Returns:
        The folder holding ``<name>.pt`` (and ``shallow_cnn.pt`` where found) and
        ``<name>``, as ``--models`` and ``--backbone`` take them.

    Raises:
        ModelURIError: naming the URI, when the patch network cannot be had.
    """
    path, meta = fetch_checkpoint(uri, dst / "patch_network", tracking_uri)
    if meta.get("backbone") == SHALLOW:
        raise ModelURIError(f"model {uri} is the shallow CNN; give the patch network's model")
    log.info("%s: %s (model %s)", uri, meta.get("backbone"), meta.get("model_id"))
    folder = dst / "models"
    folder.mkdir()
    path = path.rename(folder / path.name)
    companion = companion_uri(uri, SHALLOW)
    if companion is None:
        log.warning("%s names no alias: no shallow CNN, no cancer probability", uri)
        return folder, path.stem
    try:
        shallow, shallow_meta = fetch_checkpoint(companion, dst / SHALLOW, tracking_uri)
    except ModelURIError as exc:
        log.warning("%s; predicting without the shallow CNN", exc)
        return folder, path.stem
    log.info("%s: %s (model %s)", companion, SHALLOW, shallow_meta.get("model_id"))
    shallow.rename(folder / f"{SHALLOW}.pt")
    return folder, path.stem
