"""Tests of mass localization by class activation maps (paper §3, Fig. 1)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from mammocad import localize as L
from mammocad.models.backbones import BACKBONES, build_model, get_module, get_spec

MEAN, STD = (0.5,), (0.25,)


# --------------------------------------------------------------------------- a known detector


def _centre_surround(radius: int) -> np.ndarray:
    """+1/area on a disc, −1/area on the ring around it: responds to bright discs."""
    size = 4 * radius + 1
    yy, xx = np.mgrid[:size, :size] - 2 * radius
    r = np.hypot(yy, xx)
    disc, ring = r <= radius, (r > radius) & (r <= 2 * radius)
    return (disc / disc.sum() - ring / ring.sum()).astype(np.float32)


class BlobNet(nn.Module):
    """A patch "network" whose CAM is known: bright discs of one radius are malignant.

    ``features`` = centre-surround convolution, ReLU above a threshold, 4× average pooling
    (a feature stride); the head is global average pooling and one linear layer whose
    logit difference is ``2 · gain · A − offset``.
    """

    def __init__(self, radius: int, threshold: float = 0.3, gain: float = 10.0) -> None:
        super().__init__()
        kernel = _centre_surround(radius)
        conv = nn.Conv2d(1, 1, kernel.shape[0], padding=kernel.shape[0] // 2)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(kernel)[None, None])
            conv.bias.fill_(-threshold)
        self.features = nn.Sequential(conv, nn.ReLU(), nn.AvgPool2d(4))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1, 2)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.tensor([[-gain], [gain]]))
            self.classifier.bias.copy_(torch.tensor([0.5, -0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 3)
    return 20000 + 1500 * noise / noise.std()


def _add_disc(image: np.ndarray, cx: float, cy: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    disc = np.hypot(yy - cy, xx - cx) <= radius
    image[disc] += 15000
    return disc


def _heatmap(model, image, scale, breast=None):
    return L.compute_heatmap(
        model, image, scale, MEAN, STD, model.features, model.classifier, "cam", breast=breast
    )


def test_pointing_game_beats_chance_on_known_lesions():
    rng = np.random.default_rng(0)
    model = BlobNet(radius=8)
    records = []
    for _ in range(16):
        h, w = 192, 256
        image = _texture(rng, h, w)
        image[:, 192:] = 300  # background beside the breast
        cx, cy = rng.uniform(24, 168), rng.uniform(24, 168)
        mask = _add_disc(image, cx, cy, 8)
        image = np.clip(image, 0, 65535).astype(np.uint16)
        breast = L.breast_mask(image)
        assert abs(int(breast.sum()) - 192 * 192) < 0.02 * 192 * 192
        heat = _heatmap(model, image, 1.0)
        assert heat.values.shape == image.shape and heat.method == "cam"
        assert heat.values[:, 200:].max() == 0  # nothing outside the breast
        records.append({**L.score_heatmap(heat.values, mask, breast), "pathology": "MALIGNANT"})
    metrics = L.localization_metrics(records)
    assert metrics["n"] == 16
    assert metrics["hit_rate"] >= 0.9
    assert metrics["hit_rate_chance"] < 0.1
    assert metrics["mean_iou"] > 3 * metrics["mean_iou_chance"]
    assert metrics["mean_dice"] > 3 * metrics["mean_dice_chance"]
    assert metrics["by_pathology"]["MALIGNANT"]["hit_rate"] == metrics["hit_rate"]


@pytest.mark.parametrize(
    ("patch_px", "radius"),
    [(112.0, 3.0), (448.0, 12.0)],  # rescaled ×2 and ×0.5 inside, to a 6-pixel disc
)
def test_boxes_map_back_to_the_original_grid(patch_px, radius):
    rng = np.random.default_rng(1)
    h, w = 401, 613
    cx, cy = 470.0, 120.0
    image = _texture(rng, h, w)
    _add_disc(image, cx, cy, radius)
    image = np.clip(image, 0, 65535).astype(np.uint16)
    model = BlobNet(radius=6)
    heat = _heatmap(model, image, 224 / patch_px, breast=np.ones(image.shape, bool))
    assert heat.values.shape == (h, w)
    wh, ww = heat.working_shape
    assert wh % 32 == 0 and ww % 32 == 0
    assert heat.scale == pytest.approx((wh / h, ww / w))
    regions = L.top_regions(heat.values, k=1, min_area_px=1)
    assert len(regions) == 1
    x0, y0, x1, y1 = regions[0]["bbox"]
    assert x0 <= cx < x1 and y0 <= cy < y1
    assert cx - patch_px <= x0 and x1 <= cx + patch_px
    assert cy - patch_px <= y0 and y1 <= cy + patch_px
    py, px = np.unravel_index(np.argmax(heat.values), heat.values.shape)
    assert math.hypot(px - cx, py - cy) <= 1.5 * radius + 2


# --------------------------------------------------------------------------- CAM and Grad-CAM


GAP_LINEAR = sorted(n for n in BACKBONES.names() if get_spec(n).head == "gap_linear")


def test_cam_heads_are_the_global_pooling_ones():
    assert GAP_LINEAR == ["googlenet", "mobilenet_v1", "mobilenet_v2", "resnet50"]


@pytest.mark.parametrize("name", GAP_LINEAR)
def test_cam_is_the_logit_difference_of_the_patch_network(name):
    torch.manual_seed(0)
    model, _ = build_model(name, "scratch")
    spec = get_spec(name)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 65535, (96, 128), dtype=np.uint16)
    x = L.to_input(image, spec.mean, spec.std)
    amap = L.activation_map(
        model,
        x,
        get_module(model, spec.cam_target_layer),
        get_module(model, spec.classifier),
        "cam",
    )
    assert amap.method == "cam" and amap.prob.shape == amap.score.shape
    # GAP linearity: the mean logit difference is the network's own logit difference
    assert float(amap.score.mean()) == pytest.approx(
        float(amap.logits[1] - amap.logits[0]), abs=1e-4
    )
    np.testing.assert_allclose(amap.prob, 1 / (1 + np.exp(-amap.score)), atol=1e-5)
    assert L.heatmap_method(name) == "cam"


def test_gradcam_on_alexnet_runs_on_a_small_image():
    torch.manual_seed(0)
    model, _ = build_model("alexnet", "scratch")
    flags = [p.requires_grad for p in model.parameters()]
    spec = get_spec("alexnet")
    image = np.random.default_rng(0).integers(1000, 60000, (200, 160), dtype=np.uint16)
    heat = L.malignancy_heatmap(model, "alexnet", image, 224.0, spec.mean, spec.std)
    assert heat.shape == image.shape and heat.dtype == np.float32
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    assert L.heatmap_method("alexnet", "cam") == "gradcam"
    assert [p.requires_grad for p in model.parameters()] == flags


def test_cam_refuses_heads_that_are_not_gap_linear():
    torch.manual_seed(0)
    alexnet, _ = build_model("alexnet", "scratch")
    x = torch.zeros(1, 3, 64, 64)
    with pytest.raises(ValueError, match="gradcam"):
        L.activation_map(alexnet, x, alexnet.features, alexnet.classifier[6], "cam")

    class Scaled(BlobNet):
        def forward(self, x):  # something between pooling and the classifier
            return self.classifier(2 * self.pool(self.features(x)).flatten(1))

    model = Scaled(radius=2, threshold=-1.0)
    with pytest.raises(ValueError, match="not global average"):
        L.activation_map(model, torch.ones(1, 1, 32, 32), model.features, model.classifier)
    with pytest.raises(ValueError, match="unknown heatmap method"):
        L.activation_map(model, torch.ones(1, 1, 32, 32), model.features, None, "lrp")


def test_working_shape_is_stride_aligned_and_capped():
    assert L.working_shape((4736, 2624), 0.5) == (2368, 1312)
    assert L.working_shape((401, 613), 2.0) == (800, 1216)
    assert L.working_shape((100, 50), 0.1) == (64, 64)
    h, w = L.working_shape((4000, 3000), 2.0, max_pixels=1_000_000)
    assert h * w <= 1_100_000 and abs(h / w - 4 / 3) < 0.1
    with pytest.raises(ValueError):
        L.working_shape((10, 10), 0.0)


def test_to_input_scales_and_normalises():
    image = np.array([[0, 65535]], dtype=np.uint16)
    x = L.to_input(image, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (1, 3, 1, 2)
    np.testing.assert_allclose(x[0, :, 0].numpy(), [[-1, 1]] * 3)
    x8 = L.to_input(np.array([[255]], dtype=np.uint8), (0.0,), (1.0,))
    assert float(x8) == 1.0


# --------------------------------------------------------------------------- breast mask


def test_breast_mask_drops_background_labels_and_film_frame():
    h, w = 600, 400
    image = np.random.default_rng(0).integers(0, 800, (h, w)).astype(np.uint16)
    yy, xx = np.mgrid[:h, :w]
    breast = ((yy - 300) / 260) ** 2 + (xx / 250) ** 2 <= 1
    image[breast] = 30000
    image[40:70, 300:360] = 60000  # a view label
    image[:4, :] = image[-4:, :] = 50000  # a bright film edge touching the breast
    image[:, :3] = 50000
    mask = L.breast_mask(image)
    assert mask.shape == image.shape and mask.dtype == bool
    assert not mask[40:70, 300:360].any()
    assert not mask[:4, 200:].any()
    iou = (mask & breast).sum() / (mask | breast).sum()
    assert iou > 0.95


def test_breast_mask_of_an_image_without_background_is_everything():
    assert L.breast_mask(np.full((50, 40), 7, np.uint16)).all()


# --------------------------------------------------------------------------- value tables


def test_pointing_game_table():
    heat = np.zeros((4, 4), np.float32)
    heat[1, 2] = 0.9
    lesion = np.zeros((4, 4), bool)
    lesion[1, 2] = True
    assert L.pointing_game(heat, lesion) is True
    assert L.pointing_game(heat, np.roll(lesion, 1, axis=0)) is False
    corner = np.zeros((4, 4), bool)
    corner[0, 0] = True
    assert L.pointing_game(np.zeros((4, 4)), corner) is True  # ties: first maximum
    with pytest.raises(ValueError, match="empty"):
        L.pointing_game(heat, np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="shape"):
        L.pointing_game(heat, np.ones((3, 4), bool))


def test_overlap_table():
    heat = np.zeros((4, 4), np.float32)
    heat[:2, :2] = 0.8  # predicted: 4 pixels
    lesion = np.zeros((4, 4), bool)
    lesion[:2, 1:3] = True  # 4 pixels, 2 shared
    assert L.overlap(heat, lesion, 0.5) == pytest.approx((2 / 6, 4 / 8))
    assert L.overlap(heat, lesion, 0.9) == (0.0, 0.0)
    assert L.overlap(heat, heat > 0.5, 0.5) == (1.0, 1.0)
    heat[0, 0] = 0.5  # the threshold is inclusive
    assert L.overlap(heat, lesion, 0.5) == pytest.approx((2 / 6, 4 / 8))


def test_chance_levels_table():
    breast = np.zeros((12, 12), bool)
    breast[1:11, 1:11] = True  # 100 pixels
    lesion = np.zeros((12, 12), bool)
    lesion[4:6, 4:6] = True  # 4 pixels
    chance = L.chance_levels(lesion, breast, 20)
    e = 4 * 20 / 100
    assert chance == pytest.approx(
        {"pointing": 0.04, "iou": e / (4 + 20 - e), "dice": 2 * e / (4 + 20)}
    )
    assert L.chance_levels(lesion, breast, 0) == {"pointing": 0.04, "iou": 0.0, "dice": 0.0}
    whole = L.chance_levels(lesion, breast, 100)  # predicting the whole breast
    assert whole["iou"] == pytest.approx(0.04) and whole["dice"] == pytest.approx(8 / 104)
    with pytest.raises(ValueError, match="breast"):
        L.chance_levels(lesion, np.zeros_like(breast), 5)


def test_localization_metrics_table():
    def rec(pathology, hit, iou, dice, c):
        return {
            "pathology": pathology,
            "hit": hit,
            "iou": iou,
            "dice": dice,
            "chance_hit": c,
            "chance_iou": c / 2,
            "chance_dice": c,
        }

    records = [
        rec("MALIGNANT", True, 0.5, 0.6, 0.02),
        rec("MALIGNANT", False, 0.1, 0.2, 0.04),
        rec("BENIGN", True, 0.3, 0.4, 0.06),
    ]
    m = L.localization_metrics(records)
    assert m["n"] == 3
    assert m["hit_rate"] == pytest.approx(2 / 3)
    assert m["mean_iou"] == pytest.approx(0.3)
    assert m["mean_dice"] == pytest.approx(0.4)
    assert m["hit_rate_chance"] == pytest.approx(0.04)
    assert m["mean_iou_chance"] == pytest.approx(0.02)
    assert m["mean_dice_chance"] == pytest.approx(0.04)
    mal = m["by_pathology"]["MALIGNANT"]
    assert mal["n"] == 2 and mal["hit_rate"] == 0.5 and mal["mean_iou"] == pytest.approx(0.3)
    assert m["by_pathology"]["BENIGN"]["mean_dice"] == pytest.approx(0.4)
    assert L.localization_metrics([])["hit_rate"] is None


def test_score_heatmap_record():
    heat = np.zeros((10, 10), np.float32)
    heat[2:4, 2:4] = 0.9
    lesion = np.zeros((10, 10), bool)
    lesion[2:4, 2:5] = True
    rec = L.score_heatmap(heat, lesion, np.ones((10, 10), bool))
    assert rec["hit"] is True
    assert rec["iou"] == pytest.approx(4 / 6) and rec["dice"] == pytest.approx(0.8)
    assert rec["chance_hit"] == pytest.approx(0.06)
    assert rec["lesion_area"] == 6 and rec["predicted_area"] == 4


# --------------------------------------------------------------------------- regions


def test_top_regions_returns_the_known_boxes():
    heat = np.zeros((60, 80), np.float32)
    heat[10:20, 5:15] = 0.9
    heat[14, 9] = 0.95
    heat[40:52, 50:70] = 0.7
    heat[30:32, 30:32] = 0.99  # 4 pixels: below min_area_px
    regions = L.top_regions(heat, k=3, threshold=0.5, min_area_px=16)
    assert [r["bbox"] for r in regions] == [[5, 10, 15, 20], [50, 40, 70, 52]]
    assert [r["prob"] for r in regions] == pytest.approx([0.95, 0.7])
    assert [r["area"] for r in regions] == [100, 240]
    assert [r["bbox"] for r in L.top_regions(heat, k=1, min_area_px=16)] == [[5, 10, 15, 20]]
    assert len(L.top_regions(heat, threshold=0.8, min_area_px=16)) == 1
    assert L.top_regions(heat, min_area_px=1)[0]["bbox"] == [30, 30, 32, 32]
    assert L.top_regions(np.zeros((5, 5))) == []


# --------------------------------------------------------------------------- overlays


def test_render_overlay_writes_a_colour_png(tmp_path):
    image = np.tile(np.linspace(0, 65535, 300, dtype=np.uint16), (400, 1))
    heat = np.zeros(image.shape, np.float32)
    heat[100:200, 50:150] = 1.0
    mask = np.zeros(image.shape, bool)
    mask[120:180, 60:140] = True
    path = tmp_path / "sub" / "overlay.png"
    L.render_overlay(image, heat, mask, [{"prob": 0.9, "bbox": [50, 100, 150, 200]}], path)
    out = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert out.shape == (400, 300, 3) and out.dtype == np.uint8
    green = (out[..., 1] == 255) & (out[..., 0] == 0) & (out[..., 2] == 0)
    magenta = (out[..., 0] == 255) & (out[..., 1] == 0) & (out[..., 2] == 255)
    assert green.any() and magenta.any()
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary left over
    L.render_overlay(image, heat, None, [], path, max_side=100)
    assert cv2.imread(str(path)).shape == (100, 75, 3)


def test_breast_box_table():
    breast = np.zeros((10, 12), bool)
    breast[3:6, 4:9] = True  # rows 3..5, columns 4..8
    assert L.breast_box(breast) == (slice(3, 6), slice(4, 9))
    assert L.breast_box(breast, margin=2) == (slice(1, 8), slice(2, 11))
    assert L.breast_box(breast, margin=5) == (slice(0, 10), slice(0, 12))  # clipped
    assert L.breast_box(np.zeros((4, 5), bool)) == (slice(0, 4), slice(0, 5))


# ------------------------------------------------------------- the shallow CNN's own map


def test_shallow_heatmap_maps_cells_back_to_the_image():
    from mammocad.localize.shallow import shallow_heatmap

    cam = np.full((16, 10), -4.0, np.float32)
    cam[3, 2] = 4.0  # one hot cell: row 3, column 2 of a 16 × 10 grid
    h, w = 160, 100  # 10 pixels a cell
    values = shallow_heatmap(cam, False, (h, w))
    y, x = np.unravel_index(np.argmax(values), values.shape)
    assert (y // 10, x // 10) == (3, 2)
    assert values.max() == pytest.approx(1 / (1 + np.exp(-4.0)), abs=0.05)
    assert values.min() == pytest.approx(1 / (1 + np.exp(4.0)), abs=1e-3)
    # the shallow CNN read the image flipped left-right: the map is flipped back
    y, x = np.unravel_index(np.argmax(shallow_heatmap(cam, True, (h, w))), (h, w))
    assert (y // 10, x // 10) == (3, 10 - 1 - 2)
    breast = np.zeros((h, w), bool)
    breast[:, :50] = True
    masked = shallow_heatmap(cam, False, (h, w), breast)
    assert not masked[:, 50:].any() and masked[:, :50].min() > 0
    with pytest.raises(ValueError, match="breast mask shape"):
        shallow_heatmap(cam, False, (h, w), breast[:, :40])


def test_shallow_cams_average_to_the_logit_difference_under_average_pooling(tmp_path):
    from mammocad.io import write_png
    from mammocad.localize.shallow import is_flipped, shallow_cams, shallow_maps
    from mammocad.models.data import ImageSet
    from mammocad.models.shallow import ShallowCNN, ShallowConfig

    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        write_png(tmp_path / f"{i}.png", rng.integers(0, 65535, (64, 40), dtype=np.uint16))
        rows.append({
            "image_id": f"im{i}",
            "patient_id": f"P{i}",
            "pathology": "NORMAL",
            "image_path": f"{i}.png",
            "flipped": "True" if i else "False",
        })  # fmt: skip
    frame = pd.DataFrame(rows)
    images = ImageSet(frame, tmp_path, lambda r: 0, mean=(0.5,), std=(0.25,))
    torch.manual_seed(0)
    model = ShallowCNN(ShallowConfig(channels=(4, 8), pooling="avg")).eval()
    cams = shallow_cams(model, images, batch_size=2)
    x, _ = images.get_batch([0, 1, 2])
    with torch.no_grad():
        logits = model(x)
    assert [c.shape for c in cams] == [(16, 10)] * 3
    # CAM's identity: average pooling and the linear head commute
    np.testing.assert_allclose(
        [c.mean() for c in cams], (logits[:, 1] - logits[:, 0]).numpy(), rtol=1e-4, atol=1e-5
    )
    maps = shallow_maps(model, images, frame)
    assert [maps[i][1] for i in ("im0", "im1", "im2")] == [False, True, True]
    assert is_flipped(True) and is_flipped(" true ") and not is_flipped("False")


def test_shallow_cams_span_an_input_the_grid_does_not_tile(tmp_path):
    from mammocad.io import write_png
    from mammocad.localize.shallow import shallow_cams
    from mammocad.models.data import ImageSet
    from mammocad.models.shallow import ShallowCNN, ShallowConfig

    rng = np.random.default_rng(1)
    write_png(tmp_path / "a.png", rng.integers(0, 65535, (66, 42), dtype=np.uint16))
    frame = pd.DataFrame(
        [{"image_id": "a", "patient_id": "P", "pathology": "NORMAL", "image_path": "a.png"}]
    )
    images = ImageSet(frame, tmp_path, lambda r: 0, mean=(0.5,), std=(0.25,))
    torch.manual_seed(0)
    model = ShallowCNN(ShallowConfig(channels=(4, 8))).eval()  # stride 4: a 16 × 10 grid
    (cam,) = shallow_cams(model, images)
    assert cam.shape == (66, 42)  # the grid covers 64 × 40 pixels, its edges the rest
    np.testing.assert_array_equal(cam[64:], np.repeat(cam[63:64], 2, axis=0))
    np.testing.assert_array_equal(cam[:, 40:], np.repeat(cam[:, 39:40], 2, axis=1))


def test_report_overlays_show_hits_and_misses_of_each_pathology():
    frame = pd.DataFrame(
        {
            "image_id": ["c", "a", "b", "d", "e", "f", "g"],
            "pathology": ["BENIGN", "BENIGN", "MALIGNANT", "MALIGNANT", "MALIGNANT", "BENIGN",
                          "MALIGNANT"],
            "hit": [False, False, True, True, False, True, True],
        }
    )  # fmt: skip
    # hits (malignant, benign), then misses (malignant, benign); first by id in each
    assert L.report_overlay_ids(frame, 4) == ["b", "f", "e", "a"]
    assert L.report_overlay_ids(frame, 6) == ["b", "f", "e", "a", "d", "c"]
    assert L.report_overlay_ids(frame, 20) == ["b", "f", "e", "a", "d", "c", "g"]
    assert L.report_overlay_ids(frame[frame["hit"]], 2) == ["b", "f"]
    assert L.report_overlay_ids(frame, 0) == []
