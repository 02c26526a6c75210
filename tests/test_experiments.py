"""Experiments at scale: a queued parameter sweep run by parallel workers, and data, models
and experiments sent through a DVC remote and a Git remote to a fresh clone.

One backbone (MobileNet-v1, from scratch, 64-pixel patches, two epochs) keeps this quick;
the sweep changes its learning rate, so each queued experiment reruns the finetune stage and
those after it while the data stages and the shallow CNN come from the cache.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from tiny_repo import BIN, copy_tiny
from tiny_repo import run as _run

# Queued sweeps, remotes and clones each run the pipeline several times (minutes).
pytestmark = pytest.mark.slow

DVC = str(BIN / "dvc")
BACKBONE = "mobilenet_v1"
LRS = (0.001, 0.003)
QUEUE_TIMEOUT_S = 900


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _queue_states(repo: Path) -> dict[str, str]:
    """Experiment name → state from the `dvc queue status` table."""
    states = {}
    for line in _run(repo, DVC, "queue", "status").splitlines():
        words = line.split()
        if len(words) >= 4 and words[-1] in {"Queued", "Running", "Success", "Failed"}:
            states[words[1]] = words[-1]
    return states


@pytest.fixture(scope="module")
def remotes(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("remotes")
    git_remote = root / "origin.git"
    _run(root, "git", "init", "-q", "--bare", str(git_remote))
    return {"dvc": root / "dvc-remote", "git": git_remote}


@pytest.fixture(scope="module")
def repo(tmp_path_factory, remotes):
    work = tmp_path_factory.mktemp("experiments") / "repo"
    work.mkdir()
    copy_tiny(work, [BACKBONE], localize={"backbone": BACKBONE})
    _run(work, "git", "init", "-q", "-b", "main")
    _run(work, DVC, "init", "-q")
    # The remote goes into the committed config before any experiment is queued: an
    # experiment carries its baseline's .dvc/config, and `dvc exp push` skips the cache
    # without a word where that config names no default remote.
    _run(work, DVC, "remote", "add", "-d", "storage", str(remotes["dvc"]))
    _run(work, DVC, "repro")
    _run(work, "git", "add", "-A")
    _run(work, "git", "commit", "-qm", "tiny pipeline")
    _run(work, "git", "remote", "add", "origin", str(remotes["git"]))
    yield work
    # idle workers exit about 10 s after the queue empties; stop them with the module
    subprocess.run([DVC, "queue", "stop", "--kill"], cwd=work, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def sweep(repo):
    """Queue a learning-rate sweep, run it with two workers, return `dvc exp show --json`."""
    lrs = ",".join(str(lr) for lr in LRS)
    out = _run(repo, DVC, "exp", "run", "--queue", "-S", f"finetune.train.lr={lrs}")
    assert out.count("Queued experiment") == len(LRS), out
    env = {
        # Two workers on two cores: one torch thread each instead of two fighting over both.
        "OMP_NUM_THREADS": "1",
        # The workers run in temporary copies of the repository; a relative sqlite URI would
        # put each experiment's MLflow runs in a database deleted with its copy.
        "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}",
    }
    start = time.monotonic()
    # to a file, not a pipe: the workers it starts outlive it (see tiny_repo.run)
    _run(repo, DVC, "queue", "start", "-j", "2", env=env, log=repo.parent / "queue-start.log")
    while True:
        states = _queue_states(repo)
        failed = [name for name, state in states.items() if state == "Failed"]
        if failed:
            logs = _run(repo, DVC, "queue", "logs", failed[0])
            pytest.fail(f"queued experiment {failed[0]} failed:\n{logs[-6000:]}")
        if states and all(state == "Success" for state in states.values()):
            break
        if time.monotonic() - start > QUEUE_TIMEOUT_S:
            pytest.fail(f"queue not done after {QUEUE_TIMEOUT_S} s: {states}")
        time.sleep(3)
    logs = {name: _run(repo, DVC, "queue", "logs", name) for name in states}
    shown = json.loads(_run(repo, DVC, "exp", "show", "--json"))
    return {"states": states, "logs": logs, "shown": shown}


def _experiments(shown: list[dict]) -> tuple[dict, dict[str, dict]]:
    """The baseline commit's data and its experiments' data by name."""
    (baseline,) = [c for c in shown if c["rev"] != "workspace"]
    exps = {}
    for exp in baseline.get("experiments") or []:
        (rev,) = exp["revs"]
        exps[exp["name"]] = {**rev["data"], "state": exp["executor"]["state"]}
    return baseline["data"], exps


def test_queued_sweep_runs_each_value(sweep):
    base, exps = _experiments(sweep["shown"])
    assert set(exps) == set(sweep["states"]) and len(exps) == len(LRS)
    by_lr = {}
    for name, data in exps.items():
        assert data["state"] == "success", name
        lr = data["params"]["params.yaml"]["data"]["finetune"]["train"]["lr"]
        metrics = data["metrics"]
        assert f"metrics/eval/{BACKBONE}.json" in metrics, name
        train = metrics[f"metrics/train/{BACKBONE}.json"]["data"]
        # the finetune stage reran with the queued value, not the committed one
        assert train["config"]["finetune"]["train"]["lr"] == lr
        by_lr[lr] = data
    assert sorted(by_lr) == sorted(LRS)
    losses = {
        lr: d["metrics"][f"metrics/train/{BACKBONE}.json"]["data"]["best"]["train_loss"]
        for lr, d in by_lr.items()
    }
    base_loss = base["metrics"][f"metrics/train/{BACKBONE}.json"]["data"]["best"]["train_loss"]
    assert len({*losses.values(), base_loss}) == len(LRS) + 1, losses
    models = {lr: d["outs"][f"models/{BACKBONE}.pt"]["hash"] for lr, d in by_lr.items()}
    assert len({*models.values(), base["outs"][f"models/{BACKBONE}.pt"]["hash"]}) == 3
    for data in by_lr.values():
        # stages that do not read finetune.* came from the cache
        for out in ("models/shallow_cnn.pt", "data/augmented", "data/split"):
            assert data["outs"][out]["hash"] == base["outs"][out]["hash"], out


def test_queue_logs_show_which_stages_reran(sweep):
    for name, log in sweep["logs"].items():
        assert f"Running stage 'finetune@{BACKBONE}'" in log, name
        assert f"Running stage 'evaluate@{BACKBONE}'" in log, name
        assert "Stage 'train_shallow' didn't change, skipping" in log, name
        assert "Running stage 'download'" not in log, name


def test_queued_runs_reach_the_repositorys_mlflow_db(repo, sweep):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mammocad")
    runs = client.search_runs([exp.experiment_id], f"attributes.run_name = '{BACKBONE}'")
    lrs = sorted(float(r.data.params["finetune.train.lr"]) for r in runs)
    committed = yaml.safe_load((repo / "params.yaml").read_text())["finetune"]["train"]["lr"]
    # the committed run, then one per queued experiment, both workers writing one sqlite file
    assert lrs == sorted([committed, *LRS])


def test_exp_show_filters_and_sorts_columns(repo, sweep):
    table = _run(
        repo,
        DVC,
        "exp",
        "show",
        "--md",
        "--no-pager",
        "--drop",
        ".*",
        "--keep",
        "Experiment|finetune\\.train\\.lr$|best\\.val_auc",
        "--sort-by",
        f"metrics/train/{BACKBONE}.json:best.val_auc",
        "--sort-order",
        "desc",
    )
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    assert header == ["Experiment", "best.val_auc", "finetune.train.lr"], table
    _, exps = _experiments(sweep["shown"])
    aucs = {
        name: d["metrics"][f"metrics/train/{BACKBONE}.json"]["data"]["best"]["val_auc"]
        for name, d in exps.items()
    }
    rows = [line for line in table.splitlines() if any(name in line for name in exps)]
    order = [next(name for name in exps if name in row) for row in rows]
    assert [aucs[name] for name in order] == sorted(aucs.values(), reverse=True), table


@pytest.fixture(scope="module")
def clone(repo, remotes, tmp_path_factory):
    """Push data and models to the DVC remote and the commit to Git; clone and pull."""
    _run(repo, DVC, "push")
    _run(repo, "git", "push", "-q", "origin", "main")
    clone = tmp_path_factory.mktemp("clone") / "repo"
    _run(clone.parent, "git", "clone", "-q", "-b", "main", str(remotes["git"]), str(clone))
    assert not (clone / "models").exists()
    _run(clone, DVC, "pull")
    return clone


def test_push_then_pull_in_a_fresh_clone(repo, remotes, clone):
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    outs = lock["stages"][f"finetune@{BACKBONE}"]["outs"]
    (model,) = [o for o in outs if o["path"] == f"models/{BACKBONE}.pt"]
    stored = remotes["dvc"] / "files/md5" / model["md5"][:2] / model["md5"][2:]
    assert stored.read_bytes() == (repo / f"models/{BACKBONE}.pt").read_bytes()
    for folder in ("data", "models"):
        original, pulled = _files(repo / folder), _files(clone / folder)
        assert set(pulled) == set(original), folder
        assert all(pulled[name] == data for name, data in original.items()), folder
    assert "Data and pipelines are up to date." in _run(clone, DVC, "status")


def test_experiment_travels_to_the_clone(repo, remotes, sweep, clone):
    _, exps = _experiments(sweep["shown"])
    name = next(
        n
        for n, d in exps.items()
        if d["params"]["params.yaml"]["data"]["finetune"]["train"]["lr"] == LRS[0]
    )
    model_hash = exps[name]["outs"][f"models/{BACKBONE}.pt"]["hash"]
    stored = remotes["dvc"] / "files/md5" / model_hash[:2] / model_hash[2:]
    assert not stored.exists()  # `dvc push` sent the committed outputs only
    out = _run(repo, DVC, "exp", "push", "origin", name)
    assert f"Pushed experiment {name}" in out, out
    assert stored.is_file()
    assert name in _run(clone, DVC, "exp", "list", "origin")
    _run(clone, DVC, "exp", "pull", "origin", name)
    _run(clone, DVC, "exp", "apply", name)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    assert params["finetune"]["train"]["lr"] == LRS[0]
    # the model came through the DVC remote: the clone never had it in its cache
    assert _md5(clone / f"models/{BACKBONE}.pt") == model_hash
    assert "Data and pipelines are up to date." in _run(clone, DVC, "status")
