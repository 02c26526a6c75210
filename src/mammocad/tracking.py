"""MLflow logging: one run per trained model with params, counts, curves and the model.

DVC owns the pipeline and its metrics files; MLflow is the browsable record of every run
(``mlflow ui --backend-store-uri sqlite:///mlflow.db``). The ``track`` stage writes every
run from the stages' files in one process (:func:`log_runs`); a run is written in one go,
so a crashed stage never leaves a half-logged run behind. The model is logged as an
MLflow 3 model of the run (:mod:`mammocad.mlflow_models`) and, where asked, registered
with the alias ``champion``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: MLflow param values are capped at this many characters.
_MAX_PARAM = 6000
#: Tag holding a run's fingerprint (:meth:`RunSpec.fingerprint`).
FINGERPRINT_TAG = "mammocad.fingerprint"


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


@dataclass
class RunSpec:
    """One MLflow run to log (the arguments of :func:`log_run` after the store's)."""

    name: str
    params: Mapping[str, Any]
    metrics: Mapping[str, Any]
    history: Sequence[Mapping[str, Any]] = ()
    artifacts: Sequence[str | os.PathLike] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    model: Any = None

    def fingerprint(self) -> str:
        """A hash of what the run records, timings aside: name, params, the metrics' and
        history's science (:func:`mammocad.timing.split_timing`), tags, and the contents
        of the artifacts and the model's checkpoint. Equal for an identical rerun."""
        from mammocad.io import sha256_file
        from mammocad.timing import split_timing

        files = [Path(p) for p in self.artifacts]
        if self.model is not None:
            files.append(Path(self.model.checkpoint))
        record = {
            "name": self.name,
            "params": self.params,
            "metrics": split_timing(dict(self.metrics))[0],
            "history": split_timing(list(self.history))[0],
            "tags": dict(self.tags),
            "files": [[p.name, sha256_file(p) if p.is_file() else None] for p in files],
            "registered": getattr(self.model, "register_as", None),
        }
        text = json.dumps(record, sort_keys=True, default=str, allow_nan=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def _logged_before(client: Any, exp_id: str, spec: RunSpec, fingerprint: str) -> str | None:
    """The id of a finished run of the experiment with this fingerprint, if any, whose
    registered model (where the spec registers one) still has a version of that run.

    Where the registered model has no ``champion`` alias (deleted by hand), it is given to
    that run's newest version; an alias that is set, perhaps moved there by hand, stays.
    """
    found = client.search_runs(
        [exp_id],
        f"tags.`{FINGERPRINT_TAG}` = '{fingerprint}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    if not found:
        return None
    run_id = found[0].info.run_id
    name = getattr(spec.model, "register_as", None)
    if name:
        from mammocad.mlflow_models import CHAMPION

        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
        if not versions:
            return None
        if CHAMPION not in (client.get_registered_model(name).aliases or {}):
            newest = max(versions, key=lambda v: int(v.version))
            client.set_registered_model_alias(name, CHAMPION, newest.version)
    return run_id


def log_runs(
    tracking_uri: str,
    experiment: str,
    runs: Iterable[RunSpec],
    artifact_root: str | os.PathLike | None = None,
) -> dict[str, tuple[str, bool]]:
    """Logs runs in one process, skipping those the store already holds.

    A run whose fingerprint (:meth:`RunSpec.fingerprint`) tags a finished run of the
    experiment is not logged again (see :func:`_logged_before` for its alias).

    Returns:
        Run name → ``(fingerprint, logged now)``; ``False``: found in the store.
    """
    _quiet()
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    done: dict[str, tuple[str, bool]] = {}
    for spec in runs:
        fingerprint = spec.fingerprint()
        exp = client.get_experiment_by_name(experiment)
        old = _logged_before(client, exp.experiment_id, spec, fingerprint) if exp else None
        if old is not None:
            log.info("%s: the store holds this run already (%s)", spec.name, old)
            done[spec.name] = (fingerprint, False)
            continue
        log_run(
            tracking_uri,
            experiment,
            spec.name,
            spec.params,
            spec.metrics,
            spec.history,
            spec.artifacts,
            {**spec.tags, FINGERPRINT_TAG: fingerprint},
            artifact_root,
            spec.model,
        )
        done[spec.name] = (fingerprint, True)
    return done


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
