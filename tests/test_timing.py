"""Timings kept apart from the science, so that reruns give identical metrics and files."""

from __future__ import annotations

import hashlib
import json

import torch

from mammocad.checkpoint import save_checkpoint
from mammocad.timing import merge_timing, read_metrics, split_timing, timing_path, write_metrics


def _record(seconds: float) -> dict:
    return {
        "accuracy": 0.75,
        "train_seconds": seconds,
        "images_per_second": 100 / seconds,
        "latency": {"median_ms": seconds * 3, "repeats": 20},
        "history": [
            {"epoch": 1, "val_auc": 0.6, "seconds": seconds / 2},
            {"epoch": 2, "val_auc": 0.7, "seconds": seconds / 2},
        ],
        "nested": {"speedup_int8_vs_eager": 2.0, "auc": 0.8},
        "plain": [1, 2],
    }


def test_split_keeps_science_and_moves_timings():
    science, timing = split_timing(_record(4.0))
    assert science == {
        "accuracy": 0.75,
        "history": [{"epoch": 1, "val_auc": 0.6}, {"epoch": 2, "val_auc": 0.7}],
        "nested": {"auc": 0.8},
        "plain": [1, 2],
    }
    assert timing["history"] == [{"epoch": 1, "seconds": 2.0}, {"epoch": 2, "seconds": 2.0}]
    assert timing["latency"]["median_ms"] == 12.0
    assert merge_timing(science, timing) == _record(4.0)
    assert split_timing(_record(1.0))[0] == science  # the science does not see the clock
    assert split_timing({"a": 1}) == ({"a": 1}, None)


def test_write_metrics_writes_two_files_and_reads_them_back(tmp_path):
    path = tmp_path / "metrics/eval/net.json"
    write_metrics(path, _record(4.0), tmp_path)
    assert timing_path(tmp_path, path) == tmp_path / "metrics/timing/eval/net.json"
    science = json.loads(path.read_text())
    assert "latency" not in science and "train_seconds" not in science
    timing = json.loads((tmp_path / "metrics/timing/eval/net.json").read_text())
    assert timing["train_seconds"] == 4.0
    assert read_metrics(path, tmp_path) == _record(4.0)
    first = path.read_bytes()
    write_metrics(path, _record(9.0), tmp_path)
    assert path.read_bytes() == first


def test_checkpoints_of_identical_weights_are_identical_files(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    digests = []
    for i, seconds in enumerate((1.0, 7.5)):
        path = tmp_path / f"{i}.pt"
        metrics = split_timing({"init": "scratch", "train_seconds": seconds})[0]
        save_checkpoint(path, model, "net", {"seed": 1}, 1, metrics)
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_time_calls_counts_warmup_timed_calls_and_syncs():
    from mammocad.timing import time_calls

    calls, syncs = [], []
    out = time_calls(lambda: calls.append(1), repeats=5, warmup=2, sync=lambda: syncs.append(1))
    assert (len(calls), len(syncs)) == (7, 6)  # 2 warm-up + 5 timed; after warm-up and each
    assert set(out) == {"median_ms", "p90_ms", "mean_ms", "repeats"}
    assert out["repeats"] == 5
    assert 0 <= out["median_ms"] <= out["p90_ms"] and out["mean_ms"] >= 0
