"""The graphs ``mammocad predict`` runs on ONNX Runtime: their file names, the record
beside each, and the checkpoint hash that ties a graph to the weights it was made from.

The ``export`` and ``export_shallow`` stages write them (:mod:`mammocad.export.cam`);
:mod:`mammocad.predict.runtime` reads them. This module imports neither PyTorch nor ONNX.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: A patch network's class activation map graph and its record, in
#: ``models/export/<backbone>/``.
CAM_FILE = "cam.onnx"
CAM_META = "cam.json"
#: The shallow CNN's graph and its record, in ``models/export/shallow_cnn/``.
SHALLOW_FILE = "model.onnx"
SHALLOW_META = "model.json"
#: Version of the records' layout; a record of another version is not used.
FORMAT = 1


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_folder(checkpoint: Path) -> Path:
    """The folder of a checkpoint's graphs: ``<models>/export/<checkpoint name>/``."""
    return checkpoint.parent / "export" / checkpoint.stem
