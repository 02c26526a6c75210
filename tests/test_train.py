"""Tests of the preloaded image sets and the training loop (paper §4.2)."""

from __future__ import annotations

import copy
from dataclasses import replace
from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch

from mammocad.evaluate import roc_auc
from mammocad.io import write_png
from mammocad.models import ShallowCNN, ShallowConfig, freeze_layers
from mammocad.models.data import ImageSet, batches, label_cancerous, label_malignant
from mammocad.train import TrainConfig, class_weights, fit, frozen_batchnorms, predict_proba

SIDE = 32


def _image(rng: np.random.Generator, positive: bool) -> np.ndarray:
    """Grey noise; the positive class has a brighter 6×6 blob somewhere."""
    image = rng.normal(0.3, 0.1, (SIDE, SIDE))
    if positive:
        y, x = rng.integers(2, SIDE - 8, size=2)
        image[y : y + 6, x : x + 6] += 0.25
    return (np.clip(image, 0, 1) * 65535).astype(np.uint16)


def _write_split(root, name: str, n: int, seed: int, positive_share: float = 0.5):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        malignant = i < round(n * positive_share)
        rel = f"{name}/{name}_{i:03d}.png"
        write_png(root / rel, _image(rng, malignant))
        rows.append(
            {
                "image_id": f"{name}_{i:03d}",
                "kind": "roi",
                "patient_id": f"P_{name}_{i // 2:03d}",
                "pathology": "MALIGNANT" if malignant else "BENIGN",
                "abnormality_type": "mass",
                "split": name,
                "image_path": rel,
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("patches")
    train = _write_split(root, "train", 96, seed=1)
    val = _write_split(root, "val", 48, seed=2)
    skewed = _write_split(root, "skew", 64, seed=3, positive_share=0.25)
    # Normalised, as the backbones' inputs are: on raw [0, 1] grey levels the batch-norm
    # running variances start far above the batch variances and need many more batches.
    norm = {"mean": (0.3,), "std": (0.15,)}
    return {
        "root": root,
        "train": ImageSet(train, root, label_malignant, **norm),
        "val": ImageSet(val, root, label_malignant, **norm),
        # the same validation images with the labels swapped: what fits training better fits
        # this worse, so the best epoch must follow validation, not training
        "val_flipped": ImageSet(val, root, lambda r: 1 - label_malignant(r), **norm),
        "skewed": ImageSet(skewed, root, label_malignant, **norm),
        "frame": train,
    }


def _model(seed: int = 0, dropout: float = 0.1) -> ShallowCNN:
    torch.manual_seed(seed)
    return ShallowCNN(ShallowConfig(channels=(4, 8), dropout=dropout))


CFG = TrainConfig(epochs=4, batch_size=8, lr=1e-2, patience=0, threads=1)


def _without_time(history):
    return [{k: v for k, v in rec.items() if k != "seconds"} for rec in history]


# --------------------------------------------------------------------------- data


def test_labels_value_table():
    assert label_malignant({"pathology": "BENIGN"}) == 0
    assert label_malignant({"pathology": "MALIGNANT"}) == 1
    with pytest.raises(ValueError, match="img7"):
        label_malignant({"pathology": "NORMAL", "image_id": "img7"})
    table = {
        ("NORMAL", "abnormal"): 0,
        ("BENIGN", "abnormal"): 1,
        ("MALIGNANT", "abnormal"): 1,
        ("NORMAL", "malignant"): 0,
        ("BENIGN", "malignant"): 0,
        ("MALIGNANT", "malignant"): 1,
    }
    for (pathology, positive), label in table.items():
        assert label_cancerous({"pathology": pathology}, positive) == label
    with pytest.raises(ValueError):
        label_cancerous({"pathology": "BENIGN"}, "benign")


def test_imageset_scales_replicates_and_normalises(tmp_path):
    write_png(tmp_path / "a.png", np.array([[0, 65535], [32768, 13107]], dtype=np.uint16))
    write_png(tmp_path / "b.png", np.array([[0, 255], [51, 102]], dtype=np.uint8))
    frame = pd.DataFrame(
        {
            "image_id": ["a", "b"],
            "patient_id": ["p1", "p2"],
            "pathology": ["BENIGN", "MALIGNANT"],
            "image_path": ["a.png", "b.png"],
        }
    )
    grey = ImageSet(frame, tmp_path, label_malignant)
    assert grey.images.dtype == torch.uint16 and grey.images.shape == (2, 2, 2)
    x, y = grey.get_batch([0, 1])
    assert x.shape == (2, 1, 2, 2) and x.dtype == torch.float32
    assert y.tolist() == [0, 1]
    np.testing.assert_allclose(x[0, 0], [[0, 1], [32768 / 65535, 0.2]], rtol=1e-6)
    np.testing.assert_allclose(x[1, 0], [[0, 1], [0.2, 0.4]], rtol=1e-6)  # 8-bit by 255

    rgb = ImageSet(frame, tmp_path, label_malignant, channels=3, mean=(0, 0.5, 1), std=(1, 2, 4))
    x3, _ = rgb[1]
    assert x3.shape == (3, 2, 2)
    np.testing.assert_allclose(x3[0], [[0, 1], [0.2, 0.4]], rtol=1e-6)
    np.testing.assert_allclose(x3[1], [[-0.25, 0.25], [-0.15, -0.05]], rtol=1e-5)
    np.testing.assert_allclose(x3[2], [[-0.25, 0], [-0.2, -0.15]], rtol=1e-5)
    assert list(grey.groups) == ["p1", "p2"]


def test_imageset_missing_file_names_path(tmp_path, data):
    frame = data["frame"].head(2).copy()
    frame.loc[1, "image_path"] = "train/nowhere.png"
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        ImageSet(frame, data["root"], label_malignant)


def test_batches_are_seeded_and_cover_the_set(data):
    ds = data["train"]

    def order(seed):
        g = torch.Generator().manual_seed(seed)
        return [tuple(y.tolist()) for _, y in batches(ds, 40, shuffle=True, generator=g)]

    assert order(3) == order(3)
    assert order(3) != order(4)
    sizes = [len(y) for _, y in batches(ds, 40)]
    assert sizes == [40, 40, 16]
    assert [len(y) for _, y in batches(ds, 40, drop_last=True)] == [40, 40]
    with pytest.raises(ValueError):
        next(batches(ds, 8, shuffle=True))


# --------------------------------------------------------------------------- training


def test_tiny_training_learns(data):
    model = _model()
    cfg = TrainConfig(epochs=6, batch_size=8, lr=1e-2, patience=0, threads=1, select_on="val_loss")
    result = fit(model, data["train"], data["val"], cfg, seed=0)
    assert len(result.history) == cfg.epochs and not result.stopped_early
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    # the model is left with the best epoch's weights
    prob = predict_proba(model, data["val"], batch_size=32)
    assert prob.shape == (48,) and prob.dtype == np.float64
    acc = np.mean((prob >= 0.5) == data["val"].labels.numpy())
    assert acc == pytest.approx(result.history[result.best_epoch - 1]["val_acc"])
    assert acc >= 0.9


def test_same_seed_is_bit_identical_other_seed_differs(data):
    runs = []
    for seed in (7, 7, 8):
        model = _model()
        result = fit(model, data["train"], data["val"], CFG, seed=seed)
        runs.append((_without_time(result.history), model.state_dict()))
    (h1, w1), (h2, w2), (h3, w3) = runs
    assert h1 == h2  # exact float equality
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert h1 != h3
    assert not all(torch.equal(w1[k], w3[k]) for k in w1)


def test_best_epoch_is_chosen_on_validation(data):
    cfg = TrainConfig(epochs=5, batch_size=8, lr=1e-2, patience=0, threads=1)
    model = _model()
    result = fit(model, data["train"], data["val_flipped"], cfg, seed=0)
    aucs = [r["val_auc"] for r in result.history]
    assert result.best_epoch == int(np.argmax(aucs)) + 1
    assert result.selected_on == "val_auc"
    # learning the training labels makes the flipped validation worse: the best epoch is
    # not the one training alone would pick
    assert result.best_epoch < int(np.argmax([r["train_acc"] for r in result.history])) + 1
    # best_state is that epoch's weights, and the model holds them
    prob = predict_proba(model, data["val_flipped"])
    assert roc_auc(data["val_flipped"].labels.numpy(), prob) == pytest.approx(
        aucs[result.best_epoch - 1], abs=1e-9
    )
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in result.best_state.items())

    by_loss = fit(_model(), data["train"], data["val"], replace(cfg, select_on="val_loss"), seed=0)
    losses = [r["val_loss"] for r in by_loss.history]
    assert by_loss.best_epoch == int(np.argmin(losses)) + 1
    assert by_loss.selected_on == "val_loss"


def test_early_stopping_with_patience(data):
    cfg = TrainConfig(epochs=30, batch_size=8, lr=1e-2, patience=2, threads=1)
    seen = []
    result = fit(_model(), data["train"], data["val_flipped"], cfg, seed=0, on_epoch=seen.append)
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 2 < 30
    assert [r["epoch"] for r in seen] == [r["epoch"] for r in result.history]
    assert set(seen[0]) == {
        "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_auc", "lr", "seconds"
    }  # fmt: skip


def test_lr_decays_per_epoch(data):
    cfg = TrainConfig(epochs=3, batch_size=32, lr=2e-3, patience=0, threads=1)
    assert cfg.lr_decay == 0.99 and cfg.weight_decay == 1e-5  # paper §4.2 defaults
    result = fit(_model(), data["train"], data["val"], cfg, seed=0)
    for rec in result.history:
        assert rec["lr"] == pytest.approx(2e-3 * 0.99 ** rec["epoch"], rel=1e-12)


def test_frozen_layers_stay_fixed(data):
    model = _model(dropout=0.0)
    freeze_layers(model, ["features.block0"])
    assert frozen_batchnorms(model) == [model.features.block0.bn]
    before = copy.deepcopy(model.state_dict())
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-2, patience=0, threads=1)
    fit(model, data["train"], data["val"], cfg, seed=0)
    after = model.state_dict()
    for key in before:
        if key.startswith("features.block0."):  # conv weight, BN affine and running stats
            assert torch.equal(before[key], after[key]), key
    for key in (
        "features.block1.conv.weight",
        "features.block1.bn.weight",
        "features.block1.bn.running_mean",
        "classifier.weight",
    ):
        assert not torch.equal(before[key], after[key]), key


def test_frozen_bn_stats_keep_running_statistics_but_train_affine(data):
    model = _model(dropout=0.0)
    before = copy.deepcopy(model.state_dict())
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-2, patience=0, threads=1)
    fit(model, data["train"], data["val"], cfg, seed=0, freeze_bn_stats=True)
    after = model.state_dict()
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats
    for key in stats:
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["features.block0.bn.weight"], after["features.block0.bn.weight"])
    # without the flag the same run moves the statistics
    model = _model(dropout=0.0)
    fit(model, data["train"], data["val"], cfg, seed=0)
    assert not torch.equal(
        before["features.block0.bn.running_mean"],
        model.state_dict()["features.block0.bn.running_mean"],
    )


def test_class_weighting(data):
    labels = data["skewed"].labels
    assert labels.tolist().count(1) == 16
    np.testing.assert_allclose(class_weights(labels, 2), [64 / 96, 64 / 32])
    np.testing.assert_allclose(class_weights(torch.tensor([0, 1, 1, 0]), 2), [1, 1])

    cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-2, patience=0, threads=1)
    plain = fit(_model(), data["skewed"], data["val"], cfg, seed=0)
    weighted = fit(
        _model(),
        data["skewed"],
        data["val"],
        TrainConfig(epochs=1, batch_size=16, lr=1e-2, patience=0, threads=1, class_weighting=True),
        seed=0,
    )
    assert plain.class_weights is None
    assert weighted.class_weights == pytest.approx([2 / 3, 2.0])
    assert weighted.history[0]["train_loss"] != plain.history[0]["train_loss"]


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="lr_decay"):
        TrainConfig(lr_decay=1.5)
    with pytest.raises(ValueError, match="select_on"):
        TrainConfig(select_on="train_loss")  # type: ignore[arg-type]


def test_full_image_labels_with_partial(tmp_path):
    write_png(tmp_path / "n.png", np.zeros((4, 3), np.uint16))
    frame = pd.DataFrame(
        {
            "image_id": ["n", "b", "m"],
            "patient_id": ["p", "q", "r"],
            "pathology": ["NORMAL", "BENIGN", "MALIGNANT"],
            "image_path": ["n.png"] * 3,
        }
    )
    ds = ImageSet(frame, tmp_path, partial(label_cancerous, positive="malignant"))
    assert ds.labels.tolist() == [0, 0, 1]


def test_single_class_validation_falls_back_to_val_loss(data):
    one_class = ImageSet(
        data["frame"].head(8), data["root"], lambda r: 0, mean=(0.3,), std=(0.15,)
    )
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-2, patience=0, threads=1)
    result = fit(_model(), data["train"], one_class, cfg, seed=0)
    assert result.selected_on == "val_loss"
    assert all(r["val_auc"] is None for r in result.history)
    assert result.best_epoch == int(np.argmin([r["val_loss"] for r in result.history])) + 1


def test_normalised_shares_images_and_changes_only_scaling(tmp_path):
    import numpy as np
    import pandas as pd

    from mammocad.io import write_png
    from mammocad.models.data import ImageSet, label_malignant

    write_png(tmp_path / "a.png", np.full((4, 4), 65535, np.uint16))
    frame = pd.DataFrame(
        [{"image_id": "a", "patient_id": "P", "pathology": "BENIGN", "image_path": "a.png"}]
    )
    raw = ImageSet(frame, tmp_path, label_malignant)
    norm = raw.normalised((0.5,), (0.25,))
    assert norm.images is raw.images
    assert float(raw[0][0].max()) == 1.0
    assert float(norm[0][0].max()) == 2.0  # (1 - 0.5) / 0.25


def test_max_batches_caps_the_steps_of_each_epoch(data):
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-2, patience=0, threads=1, max_batches=2)
    result = fit(_model(), data["train"], data["val"], cfg, seed=0)
    assert len(data["train"]) > 16
    # accuracy over the images actually trained on: 2 batches of 8 per epoch
    for record in result.history:
        assert abs(record["train_acc"] * 16 - round(record["train_acc"] * 16)) < 1e-9
    full = fit(_model(), data["train"], data["val"], CFG, seed=0)
    assert _without_time(result.history) != _without_time(full.history)
    with pytest.raises(ValueError, match="max_batches"):
        TrainConfig(max_batches=-1)


# ---------------------------------------------------------------- batch-norm recalibration


def _bn_layers(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_recalibration_gives_the_average_of_the_batch_statistics(data):
    from mammocad.train.frozen import train_mode
    from mammocad.train.recalibrate import recalibrate_batchnorm

    model = _model()
    first = _bn_layers(model)[0]
    first.running_mean.fill_(5.0)  # stale statistics, far from the data's
    first.running_var.fill_(100.0)
    train_mode(model)
    assert recalibrate_batchnorm(model, data["train"], 32, torch.device("cpu")) == 2
    # what the first batch norm saw: the first conv's outputs, in the set's order, 3 batches
    means, variances = [], []
    with torch.no_grad():
        for x, _ in batches(data["train"], 32):
            z = model.features.block0.conv(x)
            means.append(z.mean(dim=(0, 2, 3)))
            variances.append(z.var(dim=(0, 2, 3), unbiased=True))
    torch.testing.assert_close(first.running_mean, torch.stack(means).mean(0))
    torch.testing.assert_close(first.running_var, torch.stack(variances).mean(0))
    assert first.momentum == 0.1  # restored
    # modes restored: the network is still in training mode, dropout included
    assert model.training and model.dropout.training and first.training


def test_recalibration_leaves_frozen_layers_and_respects_max_batches(data):
    from mammocad.train.frozen import train_mode
    from mammocad.train.recalibrate import recalibrate_batchnorm

    model = _model()
    freeze_layers(model, ["features.block0"])
    frozen, trained = _bn_layers(model)
    before = frozen.running_mean.clone(), frozen.running_var.clone()
    train_mode(model)
    assert recalibrate_batchnorm(model, data["train"], 32, torch.device("cpu"), max_batches=1) == 1
    torch.testing.assert_close((frozen.running_mean, frozen.running_var), before)
    assert not frozen.training  # still in eval mode, as train_mode left it
    # one batch only: the statistics are that batch's
    x, _ = next(iter(batches(data["train"], 32)))
    with torch.no_grad():
        z = model.features.block1.conv(model.features.block0(x))
    torch.testing.assert_close(trained.running_mean, z.mean(dim=(0, 2, 3)))
    # nothing trains its statistics: nothing to do
    model.eval()
    assert recalibrate_batchnorm(model, data["train"], 32, torch.device("cpu")) == 0


def test_fit_recalibrates_after_each_epoch(data):
    from mammocad.train.frozen import train_mode
    from mammocad.train.recalibrate import recalibrate_batchnorm

    cfg = replace(CFG, epochs=1)
    on, off = _model(), _model()
    fit(on, data["train"], data["val"], cfg, seed=0)
    fit(off, data["train"], data["val"], replace(cfg, recalibrate_bn=False), seed=0)
    # the same weights (recalibration draws nothing and changes no parameter) ...
    for a, b in zip(on.parameters(), off.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    # ... and the kept statistics are those of one pass over the training set
    again = copy.deepcopy(on)
    train_mode(again)
    recalibrate_batchnorm(again, data["train"], CFG.batch_size, torch.device("cpu"))
    torch.testing.assert_close(_bn_layers(on)[1].running_var, _bn_layers(again)[1].running_var)
    assert not torch.allclose(_bn_layers(off)[1].running_var, _bn_layers(on)[1].running_var)


class _DenseNet(torch.nn.Module):
    """Dropout before a 1-D batch norm: a single image in a batch cannot be normalised."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = torch.nn.Dropout(0.5)
        self.fc = torch.nn.Linear(SIDE * SIDE, 4)
        self.bn = torch.nn.BatchNorm1d(4)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.bn(self.fc(self.drop(x.flatten(1)))))


def test_recalibration_runs_without_dropout_and_skips_a_lone_last_image(data):
    from mammocad.train.frozen import train_mode
    from mammocad.train.recalibrate import recalibrate_batchnorm

    torch.manual_seed(0)
    model = _DenseNet()
    train_mode(model)
    n = len(data["train"])
    batch = 19
    assert n % batch == 1  # 96 images: five batches of 19 and one of a single image
    assert recalibrate_batchnorm(model, data["train"], batch, torch.device("cpu")) == 1
    means = []
    with torch.no_grad():
        for x, _ in batches(data["train"], batch, drop_last=True):
            means.append(model.fc(x.flatten(1)).mean(0))  # dropout off: eval mode
    torch.testing.assert_close(model.bn.running_mean, torch.stack(means).mean(0))
    assert model.drop.training  # restored
