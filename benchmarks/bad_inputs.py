"""Runs a corpus of bad inputs beside good ones through `local` and `predict`'s reader.

The corpus: every file pydicom ships for its tests, each also truncated to half its size,
empty files, random bytes, tiny and blank images, beside good PNG mammograms. Each file is
listed in one labels CSV read by the ``local`` source and read by ``mammocad predict``'s
:func:`~mammocad.predict.load_image`. A crash is any exception other than the expected
refusal; a good file lost is a good image not written. Prints the figures last.

    PYTHONPATH=src:. python benchmarks/bad_inputs.py
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from pydicom.data import get_testdata_files

from mammocad.errors import ExpectedError
from mammocad.predict import NotAMammogram, load_image
from mammocad.sources.local import LocalConfig, fetch_local


def build(root: Path) -> tuple[list[str], list[str]]:
    """Writes the corpus; returns (bad files, good files) relative to ``root``."""
    bad, good = [], []
    rng = np.random.default_rng(0)
    files = sorted(p for p in map(Path, get_testdata_files("*")) if p.is_file())
    for i, src in enumerate(files):
        data = Path(src).read_bytes()
        for name, body in (
            (f"pyd{i:03d}{Path(src).suffix}", data),
            (f"pyd{i:03d}_half{Path(src).suffix}", data[: len(data) // 2]),
        ):
            (root / name).write_bytes(body)
            bad.append(name)
    for i in range(10):
        (root / f"empty{i}.dcm").write_bytes(b"")
        (root / f"random{i}.png").write_bytes(rng.bytes(int(rng.integers(1, 5000))))
        cv2.imwrite(str(root / f"tiny{i}.png"), rng.integers(0, 255, (50 + i, 50), np.uint8))
        cv2.imwrite(str(root / f"blank{i}.png"), np.zeros((300, 300), np.uint8))
        bad += [f"empty{i}.dcm", f"random{i}.png", f"tiny{i}.png"]
        image = np.clip(rng.normal(3e4, 9e3, (400, 300)), 0, 65535).astype(np.uint16)
        cv2.imwrite(str(root / f"good{i}.png"), image)
        good.append(f"good{i}.png")
    return bad, good


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="bad-inputs-"))
    root = work / "images"
    root.mkdir()
    bad, good = build(root)
    crashes = 0
    rows = "\n".join(f"{name},P{i % 7},BENIGN" for i, name in enumerate(bad + good))
    (root / "labels.csv").write_text("file,patient_id,pathology\n" + rows + "\n")
    try:
        summary = fetch_local(work / "raw", LocalConfig(root=str(root)), seed=0, workers=1)
        written = summary["images_written"]
        lost_local = (
            len(good)
            - sum(1 for s in summary["skipped"] if s["file"] in good)
            - (written - written)
        )
        lost_local = sum(1 for s in summary["skipped"] if s["file"] in good)
    except ExpectedError as exc:
        print(f"local stopped: {exc}")
        written, lost_local = 0, len(good)
    except Exception as exc:  # that is what is counted
        print(f"local CRASHED: {type(exc).__name__}: {exc}")
        crashes += 1
        written, lost_local = 0, len(good)
    lost_predict = 0
    for name in bad + good:
        try:
            load_image(root / name)
        except NotAMammogram:
            lost_predict += name in good
        except Exception as exc:  # that is what is counted
            print(f"predict reader CRASHED on {name}: {type(exc).__name__}: {exc}")
            crashes += 1
    shutil.rmtree(work, ignore_errors=True)
    print(f"local: {written} images written of {len(good)} good files")
    print(
        f"bad inputs tried: {len(bad)} (x2 readers); good files: {len(good)}; crashes: "
        f"{crashes}; good files lost: {lost_local + lost_predict}"
    )


if __name__ == "__main__":
    sys.exit(main())
