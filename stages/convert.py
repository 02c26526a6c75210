"""Stage ``convert``: DICOM → 16-bit PNG full images, ROI crops and masks, one manifest."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mammocad import layout
from mammocad.convert import ConvertError, convert_dataset
from mammocad.errors import check_output_dir
from mammocad.io import write_json
from mammocad.layout import at
from stages.common import load_params, run_stage, scalar, section, start

log = logging.getLogger("stages.convert")


@dataclass(frozen=True)
class ConvertParams:
    """The ``convert`` params section.

    Attributes:
        max_skipped_fraction: the stage fails when a larger share of the case-description
            items (full images and ROIs) cannot be used.
    """

    max_skipped_fraction: float = 0.2


def main() -> None:
    params = load_params()
    start("convert")
    cfg = section(params, "convert", ConvertParams)
    # Checked before any work: hours of decoding must not end in an unwritable folder.
    check_output_dir(at(layout.CONVERTED), layout.CONVERTED)
    check_output_dir(at(layout.METRICS), layout.METRICS)
    try:
        result = convert_dataset(
            at(layout.RAW),
            at(layout.CONVERTED),
            workers=scalar(params, "workers", int, 0),
            max_skipped_fraction=cfg.max_skipped_fraction,
        )
    except ConvertError as exc:
        raise SystemExit(f"convert failed: {exc}") from None
    write_json(at(layout.CONVERT_METRICS), result.metrics)
    log.info("convert: %s", result.metrics)


if __name__ == "__main__":
    run_stage("convert", main)
