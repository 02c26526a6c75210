"""Stage ``download``: fetch or generate the raw dataset into ``data/raw``."""

from __future__ import annotations

import logging
from pathlib import Path

from mammocad import layout
from mammocad.errors import ParamsError, check_output_dir
from mammocad.layout import at
from mammocad.paths import is_inside
from mammocad.sources import DataConfig, download
from stages.common import ROOT, load_params, run_stage, scalar, section, start

log = logging.getLogger("stages.download")


def check_paths(cfg: DataConfig, raw: Path) -> None:
    """Refuses path params that lie inside ``data/raw``, which the stage replaces whole.

    They are ``data.download_dir`` and those each source registers (``data.mias.archive``).

    Raises:
        ParamsError: naming the key.
    """
    for key, value in cfg.path_params().items():
        if not value:
            continue
        path = (ROOT / Path(str(value)).expanduser()).resolve()
        if is_inside(raw, path):
            raise ParamsError(
                f"params.yaml: data.{key} ({value}) lies inside {raw}, which download "
                "replaces; point it elsewhere"
            )
        if key == "cbis_ddsm.root" and is_inside(path, raw):
            # The folder would be read while its own copy in data/raw is being replaced.
            raise ParamsError(
                f"params.yaml: data.{key} ({value}) contains {raw}; point it at the "
                "retriever's download folder"
            )


def main() -> None:
    params = load_params()
    seed = scalar(params, "seed", int, 42)
    start("download", seed)
    cfg = section(params, "data", DataConfig)
    raw = at(layout.RAW)
    check_paths(cfg, raw)
    # Checked before any work: a long download must not end in an unwritable folder.
    check_output_dir(raw, layout.RAW)
    check_output_dir(ROOT / cfg.download_dir, "data.download_dir")
    summary = download(raw, cfg, seed, workers=scalar(params, "workers", int, 0))
    log.info("%s written from source %r: %s", layout.RAW, cfg.source, summary)


if __name__ == "__main__":
    run_stage("download", main)
