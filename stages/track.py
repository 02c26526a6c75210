"""Stage ``track``: every model's MLflow run, logged in one process from the stages' files.

One run per trained model (the shallow CNN, each ``finetune.backbones`` entry) with its
params, final metrics, per-epoch series, ROC curve and the model itself (registered under
the alias ``champion`` for ``mlflow.champion`` and the shallow CNN), and one run for
``localize`` with the whole system's scores, overlays and FROC curves.

Logging here rather than in each stage pays MLflow's import and store set-up (about 4.5 s
on two cores) once instead of seven times, and keeps the training and evaluation stages
free of the store. A run whose fingerprint (a hash of what it records) is already in the
store is not logged again (:func:`mammocad.tracking.log_runs`), so rerunning after one
model changed adds that model's run only. ``metrics/mlflow_runs.json`` lists the runs with
their fingerprints; it lives in DVC's cache, not in Git, so a fresh clone's ``dvc repro``
runs this stage and fills its own store. A store that is new while this file is in place
(after ``dvc pull``, a deleted ``mlflow.db``, another ``MLFLOW_TRACKING_URI``) is filled by
``dvc repro -f -s track``.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import pandas as pd

from mammocad import layout
from mammocad.entries import SHALLOW
from mammocad.experiment import EvaluateParams, ShallowParams, params_dict
from mammocad.io import write_json
from mammocad.layout import at
from mammocad.localize import LocalizeConfig
from mammocad.timing import read_metrics
from mammocad.tracking import RunSpec, log_runs
from stages.common import (
    ROOT,
    load_params,
    mlflow_champion,
    mlflow_settings,
    run_stage,
    scalar,
    section,
    start,
)

log = logging.getLogger("stages.track")


@functools.cache
def _first_test_image(kind: str) -> Any:
    """The first test image of ``kind`` (``roi``/``full``), grey ``(1, 1, H, W)`` in [0, 1]:
    a model's input example, as deployments get it."""
    from mammocad.models.data import ImageSet

    test = pd.read_csv(at(layout.TEST_TABLE), keep_default_na=False)
    test = test[test["kind"] == kind]
    if kind == "roi":  # the patches the networks were evaluated on
        test = test[test["pathology"].isin(["BENIGN", "MALIGNANT"])]
    images = ImageSet(
        test.head(1).reset_index(drop=True),
        at(layout.PATCHES),
        lambda row: 0,
        mean=(0.0,),
        std=(1.0,),
        desc="input example",
    )
    return images.get_batch([0])[0].numpy()


def _backbone_run(entry: str, cfg: EvaluateParams, seed: int, champion: bool) -> RunSpec:
    from mammocad.mlflow_models import ModelSpec, registered_name

    train_info = read_metrics(at(layout.train_metrics(entry)), ROOT)
    result = read_metrics(at(layout.eval_metrics(entry)), ROOT)
    return RunSpec(
        name=entry,
        params={
            "finetune": train_info["config"]["finetune"],
            "evaluate": params_dict(cfg),
            "seed": seed,
            "init": train_info["init"],
            "backbone": entry,
        },
        metrics={
            **result,
            "train": {k: v for k, v in train_info.items() if k not in ("config", "history")},
        },
        history=train_info["history"],
        artifacts=[at(layout.roc_curve(entry))],
        tags={"stage": "evaluate", "model": entry, "init": train_info["init"]},
        model=ModelSpec(
            at(layout.checkpoint(entry)),
            _first_test_image("roi"),
            registered_name(entry) if champion else None,
        ),
    )


def _shallow_run(params: dict[str, Any], cfg: EvaluateParams, seed: int) -> RunSpec:
    from mammocad.mlflow_models import ModelSpec, registered_name

    metrics = read_metrics(at(layout.SHALLOW_METRICS), ROOT)
    train = metrics["train"]
    return RunSpec(
        name=SHALLOW,
        params={
            "shallow": params_dict(section(params, "shallow", ShallowParams)),
            "evaluate": params_dict(cfg),
            "seed": seed,
            "init": "scratch",
        },
        metrics={**metrics, "train": {k: v for k, v in train.items() if k != "history"}},
        history=train["history"],
        tags={"stage": "train_shallow", "model": SHALLOW},
        model=ModelSpec(
            at(layout.checkpoint(SHALLOW)), _first_test_image("full"), registered_name(SHALLOW)
        ),
    )


def _localize_run(params: dict[str, Any], seed: int) -> RunSpec:
    cfg = section(params, "localize", LocalizeConfig)
    metrics = json.loads(at(layout.LOCALIZE_METRICS).read_text())
    system = read_metrics(at(layout.SYSTEM_METRICS), ROOT)
    shown = sorted(at(layout.REPORT_OVERLAYS).glob("*.png"))
    return RunSpec(
        name=f"localize-{cfg.backbone}",
        params={
            "localize": params_dict(cfg),
            "seed": seed,
            "init": metrics["init"],
            "shallow.positive": system["positive"],
        },
        metrics={**metrics, "system": system},
        artifacts=[*shown, *(at(layout.froc_curve(n)) for n in layout.FROC_CURVES)],
        tags={"stage": "localize", "model": cfg.backbone},
    )


def main() -> None:
    params = load_params()
    seed = scalar(params, "seed", int, 42)
    start("track", seed)
    uri, experiment = mlflow_settings(params)
    champion = mlflow_champion(params)
    cfg = section(params, "evaluate", EvaluateParams)
    entries = list((params.get("finetune") or {}).get("backbones") or [])
    runs = [_shallow_run(params, cfg, seed)]
    runs += [_backbone_run(e, cfg, seed, champion == e) for e in entries]
    runs.append(_localize_run(params, seed))
    logged = log_runs(uri, experiment, runs, artifact_root=at(layout.MLFLOW_ARTIFACTS))
    write_json(
        at(layout.MLFLOW_RUNS),
        {
            "experiment": experiment,
            "runs": [
                {
                    "name": run.name,
                    "fingerprint": logged[run.name][0],
                    "model": run.model is not None,
                    "registered": run.model.register_as if run.model else None,
                }
                for run in runs
            ],
        },
    )
    log.info(
        "%d MLflow runs: %d logged, %d already in %s",
        len(runs),
        sum(1 for _, new in logged.values() if new),
        sum(1 for _, new in logged.values() if not new),
        uri,
    )


if __name__ == "__main__":
    run_stage("track", main)
