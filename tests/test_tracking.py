"""MLflow runs hold the params, per-epoch series, final metrics and the model file."""

from mammocad.tracking import flatten, log_run, numeric_metrics


def test_flatten_and_numeric_metrics():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": 2}) == {"a.b": 1, "a.c.d": "x", "e": 2}
    m = numeric_metrics(
        {"test": {"auc": 0.8, "n": 3, "ok": True, "none": None, "nan": float("nan")}, "name": "x"}
    )
    assert m == {"test.auc": 0.8, "test.n": 3.0}


def test_log_run_roundtrip(tmp_path):
    import mlflow

    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = log_run(
        uri,
        "exp",
        "mobilenet_v2",
        params={"finetune": {"train": {"lr": 0.001}}, "init": "scratch"},
        metrics={"test": {"accuracy": 0.75, "roc_auc": None}, "params_total": 2226434},
        history=[
            {"epoch": 1, "train_loss": 0.7, "val_auc": 0.6},
            {"epoch": 2, "train_loss": 0.5, "val_auc": 0.7},
        ],
        artifacts=[model],
        artifact_root=tmp_path / "artifacts",
    )
    client = mlflow.MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.data.params["finetune.train.lr"] == "0.001"
    assert run.data.params["init"] == "scratch"
    assert run.data.metrics["test.accuracy"] == 0.75
    assert run.data.metrics["params_total"] == 2226434
    assert "test.roc_auc" not in run.data.metrics
    series = client.get_metric_history(run_id, "epoch.val_auc")
    assert [(m.step, m.value) for m in series] == [(1, 0.6), (2, 0.7)]
    assert [a.path for a in client.list_artifacts(run_id)] == ["model.pt"]


def test_log_runs_skips_what_the_store_holds(tmp_path):
    import mlflow

    from mammocad.tracking import FINGERPRINT_TAG, RunSpec, log_runs

    curve = tmp_path / "roc.csv"
    curve.write_text("fpr,tpr\n0,0\n1,1\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def spec(auc: float, latency: float) -> RunSpec:
        return RunSpec(
            name="mobilenet_v2",
            params={"seed": 42},
            metrics={"test": {"roc_auc": auc}, "latency": {"median_ms": latency}},
            history=[{"epoch": 1, "val_auc": 0.6, "seconds": latency}],
            artifacts=[curve],
        )

    def logged(run: RunSpec) -> bool:
        [(fingerprint, new)] = log_runs(uri, "exp", [run]).values()
        assert fingerprint == run.fingerprint()
        return new

    first = spec(0.8, 12.0)
    assert logged(first)
    # the same science with other timings: the same record, not logged again
    assert spec(0.8, 99.0).fingerprint() == first.fingerprint()
    assert not logged(spec(0.8, 99.0))
    # another metric, or another artifact content, is a new run
    assert logged(spec(0.7, 12.0))
    curve.write_text("fpr,tpr\n0,0\n0,1\n1,1\n")
    assert logged(first)
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert len(runs) == 3
    assert len({r.data.tags[FINGERPRINT_TAG] for r in runs}) == 3
    assert sorted(r.data.metrics["latency.median_ms"] for r in runs) == [12.0, 12.0, 12.0]
