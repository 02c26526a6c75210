"""MLflow logging: one run per trained model with params, counts, curves and the model.

DVC owns the pipeline and its metrics files; MLflow is the browsable record of every run
(``mlflow ui --backend-store-uri sqlite:///mlflow.db``). A run is written in one go after a
stage has its results, so a crashed stage never leaves a half-logged run behind. The model
is logged as an MLflow 3 model of the run (:mod:`mammocad.mlflow_models`) and, where asked,
registered with the alias ``champion``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: MLflow param values are capped at this many characters.
_MAX_PARAM = 6000


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flattens nested mappings into dotted keys (``{"a": {"b": 1}}`` → ``{"a.b": 1}``)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def numeric_metrics(data: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric leaves of a nested metrics dict, with dotted keys."""
    out = {}
    for key, value in flatten(data).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[key.replace("[", "_").replace("]", "")] = float(value)
    return out


def _quiet() -> None:
    for name in ("mlflow", "alembic", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


def log_run(
    tracking_uri: str,
    experiment: str,
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    history: Iterable[Mapping[str, Any]] = (),
    artifacts: Iterable[str | os.PathLike] = (),
    tags: Mapping[str, str] | None = None,
    artifact_root: str | os.PathLike | None = None,
    model: Any = None,
) -> str:
    """Logs one complete MLflow run and returns its id.

    Args:
        tracking_uri: e.g. ``sqlite:///mlflow.db``.
        experiment: experiment name; created (with ``artifact_root``) if absent.
        run_name: the run's display name (e.g. the backbone).
        params: nested params; logged flattened with dotted keys.
        metrics: nested final metrics; numeric leaves are logged.
        history: per-epoch records with an ``epoch`` key; every other numeric key is
            logged as a metric series stepped by epoch.
        artifacts: files to attach (the model checkpoint, plot data).
        tags: extra run tags.
        artifact_root: where a new experiment stores artifacts (default: MLflow's).
        model: a :class:`mammocad.mlflow_models.ModelSpec`: the checkpoint logged as the
            run's model (signature, input example, and the registered name whose
            ``champion`` alias moves to it). Not imported here, so that the stages that
            log no model do not depend on that module.
    """
    _quiet()
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        location = Path(artifact_root).resolve().as_uri() if artifact_root else None
        exp_id = mlflow.create_experiment(experiment, artifact_location=location)
    else:
        exp_id = exp.experiment_id
    flat = {
        k: (str(v)[:_MAX_PARAM] if v is not None else "null") for k, v in flatten(params).items()
    }
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=dict(tags or {})) as run:
        keys = sorted(flat)
        for i in range(0, len(keys), 100):  # MLflow accepts at most 100 params per batch
            mlflow.log_params({k: flat[k] for k in keys[i : i + 100]})
        for record in history:
            step = int(record["epoch"])
            values = {
                f"epoch.{k}": float(v)
                for k, v in record.items()
                if k != "epoch"
                and isinstance(v, int | float)
                and not isinstance(v, bool)
                and math.isfinite(v)
            }
            mlflow.log_metrics(values, step=step)
        mlflow.log_metrics(numeric_metrics(metrics))
        for path in artifacts:
            if Path(path).is_file():
                mlflow.log_artifact(str(path))
            else:
                log.warning("artifact not found, not logged: %s", path)
        if model is not None:
            from mammocad.mlflow_models import log_checkpoint_model

            info = log_checkpoint_model(model)
            log.info("model %s logged as %s", model.checkpoint, info.model_uri)
        run_id = run.info.run_id
    log.info("MLflow run %s (%s) logged to %s", run_id, run_name, tracking_uri)
    return run_id
