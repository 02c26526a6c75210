"""Data-parallel training under ``torchrun``: sharding, the DDP loop and the two stages.

Unit tests cover the context read from the environment and the per-rank shards without
any process group. Two-process runs (gloo on the CPU, ``OMP_NUM_THREADS=1``) check the
training loop against a single-process computation of the same global batches, that a
failing rank brings the run down instead of leaving the other waiting, and that
``finetune`` (under ``dvc repro`` with a ``torchrun`` command) and ``train_shallow``
write their outputs once, from rank 0, on a tiny synthetic pipeline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from tiny_repo import copy_tiny
from torch import nn

from mammocad import distributed
from mammocad.distributed import SINGLE, DistContext, from_env, session
from mammocad.train import TrainConfig, fit, rank_batch_size, shard_order

# Two-process torchrun training, under DVC too (a minute or more).
pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
TORCHRUN = BIN / "torchrun"


def _env() -> dict[str, str]:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "MAMMOCAD_LOGLEVEL": "INFO",
        "MAMMOCAD_OFFLINE": "1",
        # gloo on the CPU even where CUDA is there: the tests start two ranks on one machine
        "MAMMOCAD_DIST_BACKEND": "gloo",
        "OMP_NUM_THREADS": "1",
    }
    for name in ("MLFLOW_TRACKING_URI", "WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(name, None)
    return env


def _run(cwd: Path, *args: str, check: bool = True, timeout: int = 600):
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def _torchrun(cwd: Path, *args: str, check: bool = True, timeout: int = 600):
    return _run(
        cwd, TORCHRUN, "--standalone", "--nproc_per_node", "2", *args, check=check, timeout=timeout
    )


# --------------------------------------------------------------------------- context


def test_context_from_the_environment():
    assert from_env({}) is SINGLE
    assert from_env({"WORLD_SIZE": "1", "RANK": "0"}) is SINGLE
    assert SINGLE.is_main and not SINGLE.active and SINGLE.backend is None
    ctx = from_env(
        {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "MAMMOCAD_DIST_BACKEND": "gloo"}
    )
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.backend) == (3, 4, 1, "gloo")
    assert ctx.active and not ctx.is_main and ctx.device == torch.device("cpu")
    nccl = from_env(
        {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MAMMOCAD_DIST_BACKEND": "NCCL"}
    )
    assert nccl.backend == "nccl" and nccl.device == torch.device("cuda", 1)
    default = from_env({"WORLD_SIZE": "2", "RANK": "0"})
    assert default.backend == ("nccl" if torch.cuda.is_available() else "gloo")
    assert default.local_rank == 0


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"WORLD_SIZE": "2", "RANK": "2"}, "WORLD_SIZE=2"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE"),
        ({"WORLD_SIZE": "2", "RANK": "0", "MAMMOCAD_DIST_BACKEND": "mpi"}, "MAMMOCAD_DIST"),
    ],
)
def test_context_rejects_a_bad_environment(env, match):
    with pytest.raises(ValueError, match=match):
        from_env(env)


def test_single_process_session_creates_no_process_group():
    with session({}) as ctx:
        assert ctx is SINGLE
        assert not torch.distributed.is_initialized()
    assert distributed.current() is SINGLE
    assert distributed.all_sum([1.5, 2], ctx) == [1.5, 2.0]
    assert distributed.broadcast_floats([0.25, None], ctx) == [0.25, None]
    assert distributed.ranks_agree({"w": torch.ones(2)}, ctx)


# --------------------------------------------------------------------------- sharding


def test_rank_batch_size_keeps_the_global_batch():
    table = {(64, 1): 64, (64, 2): 32, (64, 3): 22, (16, 4): 4, (1, 4): 1, (5, 2): 3}
    for (batch, world), per_rank in table.items():
        assert rank_batch_size(batch, world) == per_rank
    with pytest.raises(ValueError):
        rank_batch_size(0, 2)


@pytest.mark.parametrize(("n", "world"), [(10, 2), (11, 2), (24, 3), (7, 4)])
def test_shards_are_disjoint_equal_and_cover_the_set(n, world):
    shards = [shard_order(n, r, world, seed=5, epoch=1) for r in range(world)]
    per_rank = -(-n // world)
    assert all(s.dtype == torch.int64 and len(s) == per_rank for s in shards)
    everything = torch.cat(shards).tolist()
    assert set(everything) == set(range(n))
    # the padding repeats exactly per_rank * world - n indices, nothing else overlaps
    assert len(everything) - len(set(everything)) == per_rank * world - n
    if per_rank * world == n:
        for a in range(world):
            for b in range(a + 1, world):
                assert not set(shards[a].tolist()) & set(shards[b].tolist())


def test_shards_are_seeded_and_change_every_epoch():
    first = shard_order(40, 1, 2, seed=3, epoch=1)
    assert torch.equal(first, shard_order(40, 1, 2, seed=3, epoch=1))
    assert not torch.equal(first, shard_order(40, 1, 2, seed=3, epoch=2))
    assert not torch.equal(first, shard_order(40, 1, 2, seed=4, epoch=1))
    assert sorted(shard_order(9, 0, 1, seed=3, epoch=1).tolist()) == list(range(9))


class _Tensors(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.labels = x, y

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.x[i], int(self.labels[i])


def test_single_process_fit_records_one_rank():
    g = torch.Generator().manual_seed(0)
    data = _Tensors(torch.randn(12, 1, 2, 2, generator=g), torch.arange(12) % 2)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    cfg = TrainConfig(epochs=1, batch_size=5, patience=0, threads=1)
    result = fit(model, data, data, cfg, seed=0)
    assert (result.world_size, result.backend, result.ranks_agree) == (1, None, True)
    assert result.batch_per_rank == 5
    # an explicit context of one rank is the same run
    torch.manual_seed(0)
    again = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    explicit = fit(again, data, data, cfg, seed=0, ctx=DistContext())
    assert torch.equal(model[1].weight, again[1].weight)
    assert explicit.history[0]["train_loss"] == result.history[0]["train_loss"]


# --------------------------------------------------------------------------- two ranks

WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    from torch import nn
    from mammocad.distributed import session, state_checksum
    from mammocad.models import ShallowCNN, ShallowConfig, freeze_layers
    from mammocad.train import TrainConfig, fit, rank_batch_size, shard_order

    out = sys.argv[1]


    class Tensors(torch.utils.data.Dataset):
        def __init__(self, x, y):
            self.x, self.labels = x, y

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return self.x[i], int(self.labels[i])


    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 1, 4, 4, generator=g)
    y = (x.mean((1, 2, 3)) > 0).long()
    data = Tensors(x, y)
    images = Tensors(torch.randn(26, 1, 16, 16, generator=g), torch.arange(26) % 2)
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.05, lr_decay=0.9, patience=0, threads=1)

    with session() as ctx:
        # 1. a linear model: DDP's averaged gradients on two shards of 4 must equal one
        # process's gradients on their union of 8, step by step
        torch.manual_seed(0)
        linear = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
        reference = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
        reference.load_state_dict(linear.state_dict())
        result = fit(linear, data, data, cfg, seed=11)
        opt = torch.optim.Adam(reference.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        per_rank = rank_batch_size(cfg.batch_size, ctx.world_size)
        shards = [shard_order(len(data), r, ctx.world_size, 11, 1) for r in range(ctx.world_size)]
        loss_sum = 0.0
        for start in range(0, len(shards[0]), per_rank):
            index = torch.cat([s[start : start + per_rank] for s in shards])
            opt.zero_grad()
            loss = nn.functional.cross_entropy(reference(x[index]), y[index])
            loss.backward()
            opt.step()
            loss_sum += float(loss) * len(index)
        gap = max(
            float((a - b).abs().max())
            for a, b in zip(linear.state_dict().values(), reference.state_dict().values())
        )

        # 2. batch norm, dropout and a frozen block: ranks must end equal, the frozen block
        # exactly as it started
        torch.manual_seed(0)
        cnn = ShallowCNN(ShallowConfig(channels=(4, 8), dropout=0.3))
        freeze_layers(cnn, ["features.block0"])
        frozen = {k: v.clone() for k, v in cnn.state_dict().items() if "block0" in k}
        cnn_cfg = TrainConfig(epochs=3, batch_size=10, lr=1e-2, patience=0, threads=1)
        cnn_result = fit(cnn, images, images, cnn_cfg, seed=3)
        state = cnn.state_dict()

    json.dump(
        {
            "rank": ctx.rank,
            "world_size": result.world_size,
            "backend": result.backend,
            "batch_per_rank": result.batch_per_rank,
            "linear_agree": result.ranks_agree,
            "linear_train_loss": result.history[0]["train_loss"],
            "reference_train_loss": loss_sum / len(data),
            "gap": gap,
            "cnn_agree": cnn_result.ranks_agree,
            "cnn_history": [
                {k: v for k, v in r.items() if k != "seconds"} for r in cnn_result.history
            ],
            "cnn_checksum": state_checksum(state).tolist(),
            "frozen_kept": all(torch.equal(v, state[k]) for k, v in frozen.items()),
            "running_var_moved": not torch.equal(
                state["features.block1.bn.running_var"], torch.ones(8)
            ),
        },
        open(f"{out}/rank{ctx.rank}.json", "w"),
    )
    """
)


def test_two_ranks_match_one_process_on_the_global_batch(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    _torchrun(tmp_path, script, tmp_path, timeout=300)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r, out in enumerate(ranks):
        assert out["rank"] == r
        assert (out["world_size"], out["backend"], out["batch_per_rank"]) == (2, "gloo", 4)
        assert out["linear_agree"] and out["cnn_agree"]
        assert out["gap"] < 1e-5, out["gap"]
        assert out["linear_train_loss"] == pytest.approx(out["reference_train_loss"], rel=1e-6)
        assert out["frozen_kept"] and out["running_var_moved"]
    # every rank recorded the same history and holds the same weights
    assert ranks[0]["cnn_history"] == ranks[1]["cnn_history"]
    assert ranks[0]["cnn_checksum"] == ranks[1]["cnn_checksum"]
    assert len(ranks[0]["cnn_history"]) == 3


FAILING = textwrap.dedent(
    """
    import sys
    import torch
    from torch import nn
    from mammocad.distributed import session
    from mammocad.train import TrainConfig, fit


    def stop(record):
        if torch.distributed.get_rank() == 1:
            raise RuntimeError("rank 1 fails after epoch 1")


    with session() as ctx:
        x = [(torch.randn(4), i % 2) for i in range(16)]
        model = nn.Sequential(nn.Linear(4, 2))
        cfg = TrainConfig(epochs=50, batch_size=4, patience=0, threads=1)
        fit(model, x, x, cfg, seed=0, on_epoch=stop)
    open(sys.argv[1], "w").write("done")
    """
)


def test_a_failing_rank_ends_the_run(tmp_path):
    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    marker = tmp_path / "done"
    proc = _torchrun(tmp_path, script, marker, check=False, timeout=120)
    assert proc.returncode != 0
    assert "rank 1 fails after epoch 1" in proc.stdout + proc.stderr
    assert not marker.exists()


# --------------------------------------------------------------------------- stages


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A copy of the pipeline with the data stages run on 10 synthetic patients."""
    work = tmp_path_factory.mktemp("ddp") / "repo"
    work.mkdir()
    copy_tiny(work, ["mobilenet_v2"], evaluate={"bootstrap": 20, "latency_repeats": 1})
    # the README's recipe: the finetune stage's command under torchrun
    pipeline = yaml.safe_load((work / "dvc.yaml").read_text())
    finetune = pipeline["stages"]["finetune"]["do"]
    assert finetune["cmd"] == "python -m stages.finetune ${item}"
    finetune["cmd"] = "torchrun --standalone --nproc_per_node 2 -m stages.finetune ${item}"
    (work / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    _run(work, BIN / "dvc", "init", "--no-scm", "-q")
    _run(work, BIN / "dvc", "repro", "augment")
    return work


def _no_temporaries(root: Path) -> None:
    left = [p for d in ("models", "metrics") for p in (root / d).rglob(".*tmp-*")]
    assert not left, left


def test_finetune_under_torchrun_via_dvc(tiny):
    proc = _run(tiny, BIN / "dvc", "repro", "finetune@mobilenet_v2")
    log = proc.stdout + proc.stderr
    # rank 0 alone reports, and saves once
    assert log.count("saved checkpoint") == 1
    assert "[rank 0]" in log and "finetune@mobilenet_v2[rank 1] INFO" not in log

    ckpt = torch.load(tiny / "models/mobilenet_v2.pt", weights_only=True)
    assert ckpt["backbone"] == "mobilenet_v2"
    info = json.loads((tiny / "metrics/train/mobilenet_v2.json").read_text())
    assert (info["world_size"], info["backend"], info["ranks_agree"]) == (2, "gloo", True)
    assert info["batch_per_rank"] == 8
    assert ckpt["metrics"]["world_size"] == 2 and ckpt["epoch"] == info["best_epoch"]
    train = pd.read_csv(tiny / "data/augmented/train.csv", keep_default_na=False)
    rois = train[(train["kind"] == "roi") & train["pathology"].isin(["BENIGN", "MALIGNANT"])]
    assert info["n_train"] == len(rois) > 0
    assert len(info["history"]) == info["epochs_run"] == 2
    history = pd.read_csv(tiny / "metrics/history/mobilenet_v2.csv")
    assert history["epoch"].tolist() == [1, 2]
    # the checkpoint holds the best epoch's weights, which score its validation AUC
    assert info["best"] == info["history"][info["best_epoch"] - 1]
    _no_temporaries(tiny)
    assert "finetune@mobilenet_v2" in yaml.safe_load((tiny / "dvc.lock").read_text())["stages"]


def test_train_shallow_under_torchrun(tiny):
    proc = _torchrun(tiny, "-m", "stages.train_shallow")
    assert (proc.stdout + proc.stderr).count("saved checkpoint") == 1
    metrics = json.loads((tiny / "metrics/shallow_cnn.json").read_text())
    info = metrics["train"]
    assert (info["world_size"], info["backend"], info["ranks_agree"]) == (2, "gloo", True)
    train = pd.read_csv(tiny / "data/augmented/train.csv", keep_default_na=False)
    assert info["n_train"] == int((train["kind"] == "full").sum()) > 0
    assert len(pd.read_csv(tiny / "metrics/history/shallow_cnn.csv")) == info["epochs_run"]
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    ckpt = torch.load(tiny / "models/shallow_cnn.pt", weights_only=True)
    assert ckpt["metrics"]["world_size"] == 2

    # training logs nothing to MLflow (the track stage does): no store, no rank writing it
    assert not (tiny / "mlflow.db").exists()
    _no_temporaries(tiny)
