"""No train/serve skew: ``predict`` sees a file as the training pipeline does.

For one file of each kind (16-bit PNG, 8-bit PNG, DICOM, a PGM whose maximum is not 255), the image ``predict`` enhances
(:func:`mammocad.predict.load_image`, then the enhancement chain as :class:`Predictor`
applies it) equals, pixel for pixel, the image the training stages make of the same file
(the ``local`` source, ``convert`` and ``enhance`` stage functions).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from dicom_factory import make_dataset, save

from mammocad.convert import convert_dataset
from mammocad.enhance import EnhanceConfig, apply_chain, enhance_dataset
from mammocad.io import read_png
from mammocad.manifest import read_manifest
from mammocad.predict import load_image
from mammocad.sources.local import LocalConfig, fetch_local

H, W = 320, 256


def _mammogram(seed: int) -> np.ndarray:
    """A breast-like 16-bit image: bright half-disc on the left, dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    image = rng.integers(0, 500, (H, W)).astype(np.float64)
    breast = ((yy - H / 2) / (0.45 * H)) ** 2 + (xx / (0.6 * W)) ** 2 <= 1
    image[breast] = 25000 + 5000 * rng.standard_normal(int(breast.sum()))
    return np.clip(image, 0, 65535).astype(np.uint16)


def test_predict_preprocessing_equals_training(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    files = {
        "P16": "g16.png",
        "P8": "g8.png",
        "PDCM": "scan.dcm",
        "PPGM": "film.pgm",
    }
    cv2.imwrite(str(root / "g16.png"), _mammogram(1))
    cv2.imwrite(str(root / "g8.png"), (_mammogram(2) >> 8).astype(np.uint8))
    twelve = (_mammogram(3) >> 4).astype(np.uint16)
    save(make_dataset(twelve, bits_stored=12), root / "scan.dcm")
    # an 8-bit film whose maximum value is 200: stretched from 0..200, not multiplied by 257
    film = (_mammogram(4) // 328).astype(np.uint8)
    (root / "film.pgm").write_bytes(b"P5\n%d %d\n200\n" % (W, H) + film.tobytes())
    labels = ["file,patient_id,pathology,laterality,view"]
    labels += [f"{name},{pid},NORMAL,LEFT,CC" for pid, name in files.items()]
    (root / "labels.csv").write_text("\n".join(labels) + "\n")

    cfg = EnhanceConfig()
    fetch_local(tmp_path / "raw", LocalConfig(root=str(root), test_fraction=0.0), 0, workers=1)
    convert_dataset(tmp_path / "raw", tmp_path / "converted", workers=1)
    enhance_dataset(tmp_path / "converted", tmp_path / "enhanced", cfg, workers=1)
    manifest = read_manifest(tmp_path / "enhanced" / "manifest.csv", ["patient_id", "kind"])
    full = manifest[manifest["kind"] == "full"].set_index("patient_id")
    assert sorted(full.index) == sorted(files)

    for pid, name in files.items():
        trained = read_png(tmp_path / "enhanced" / full.loc[pid, "image_path"])
        image, _ = load_image(root / name)
        served = apply_chain(image, cfg)
        assert served.dtype == trained.dtype, name
        np.testing.assert_array_equal(served, trained, err_msg=name)
