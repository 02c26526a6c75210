"""``mammocad predict``: settings from checkpoints and params, input files, the command."""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from mammocad import layout
from mammocad.cli.common import (
    COMMANDS,
    Command,
    UsageError,
    _read_config,
    _read_params,
    check_threshold,
    resolve_section,
)
from mammocad.enhance import EnhanceConfig
from mammocad.entries import SHALLOW
from mammocad.errors import check_output_dir
from mammocad.io import atomic_file, write_json
from mammocad.localize import METHODS
from mammocad.patches import PatchesConfig
from mammocad.predict import (
    ENGINES,
    IMAGE_SUFFIXES,
    NotAMammogram,
    Predictor,
    Unavailable,
    has_dicom_preamble,
    load_image,
)
from mammocad.predict.predictor import load_networks

log = logging.getLogger("mammocad.cli")

T = TypeVar("T")

#: ``patch_px`` when neither the command line, the checkpoint nor a manifest gives one.
DEFAULT_PATCH_PX = 128.0
#: skipped.csv reason of a folder's file that is neither an image type nor DICOM.
NOT_AN_IMAGE_FILE = "not a DICOM, PNG or PGM file (no DICM marker, suffix not .dcm/.png/.pgm)"


def _positive(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _from_manifest(manifest: Path, measure: str, what: str) -> float | None:
    """A training fact measured on the patches manifest by ``mammocad.experiment.<measure>``,
    or ``None`` where the manifest is missing or unreadable (the latter with a warning)."""
    if not manifest.is_file():
        return None
    # imported here: the training modules are needed only for this fallback
    from mammocad import experiment

    try:
        frame = pd.read_csv(manifest, keep_default_na=False)
        return _positive(getattr(experiment, measure)(frame))
    except (OSError, ValueError, KeyError) as exc:
        log.warning("%s: cannot read %s (%s)", manifest, what, exc)
        return None


def resolve_patch_px(
    given: float | None, backbone_info: dict[str, Any], manifest: Path
) -> tuple[float, str]:
    """The training patch scale: argument, checkpoint, patches manifest, or the default."""
    if given is not None:
        if _positive(given) is None:
            raise UsageError(f"--patch-px must be a positive number, got {given}")
        return float(given), "--patch-px"
    for key in ("config", "metrics"):
        value = _positive(backbone_info[key].get("patch_px"))
        if value is not None:
            return value, f"checkpoint {key}"
    value = _from_manifest(manifest, "training_patch_px", "ROI sizes")
    if value is not None:
        return value, str(manifest)
    log.warning(
        "no training patch scale in the checkpoint or %s; using patch_px %.0f",
        manifest,
        DEFAULT_PATCH_PX,
    )
    return DEFAULT_PATCH_PX, "default"


def resolve_image_px(
    patch_from: str, backbone_info: dict[str, Any], manifest: Path
) -> tuple[float | None, str]:
    """The training films' long side: checkpoint, else the manifest ``patch_px`` came from.

    ``None`` where ``--patch-px`` was given (it is in the inputs' own pixels) or nothing
    records it (a checkpoint from before it was recorded): inputs are then taken at the
    training images' pixel size.
    """
    if patch_from == "--patch-px":
        return None, "--patch-px (in the inputs' pixels)"
    for key in ("config", "metrics"):
        value = _positive(backbone_info[key].get("image_px"))
        if value is not None:
            return value, f"checkpoint {key}"
    if patch_from == str(manifest):  # both training facts from the same manifest
        value = _from_manifest(manifest, "training_image_px", "image sizes")
        if value is not None:
            return value, str(manifest)
    log.info("no training image size recorded: inputs are taken at the training pixel size")
    return None, "none"


# --------------------------------------------------------------------------- inputs


def _known_suffix(path: Path) -> bool:
    return path.suffix.lower() in (".dcm", *IMAGE_SUFFIXES)


def expand_inputs(
    inputs: Sequence[Path], exclude: Path | None = None, others: list[Path] | None = None
) -> list[tuple[Path, Path]]:
    """The files to process: files as given, folders searched recursively.

    In folders, ``.dcm``, ``.png`` and ``.pgm`` files are taken, and files with another
    or no suffix when they carry the DICOM ``DICM`` marker; hidden files and anything
    under ``exclude`` (the output folder) are left out.

    Args:
        inputs: files and folders.
        exclude: the output folder, whose files are never inputs.
        others: when given, receives the folders' remaining (non-hidden) files, so that
            every file of a folder is accounted for.

    Returns:
        ``(file, base)`` pairs, ``base`` being the folder the file was found in (or the
        file's own folder), in a stable order.
    """
    out: list[tuple[Path, Path]] = []
    excluded = exclude.resolve() if exclude is not None else None
    for item in inputs:
        item = Path(item)
        if not item.is_dir():
            out.append((item, item.parent))
            continue
        for path in sorted(item.rglob("*")):
            rel = path.relative_to(item)
            if any(part.startswith(".") for part in rel.parts) or not path.is_file():
                continue
            if excluded is not None and path.resolve().is_relative_to(excluded):
                continue
            if _known_suffix(path) or has_dicom_preamble(path):
                out.append((path, item))
            elif others is not None:
                others.append(path)
    return out


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "image"


def output_names(files: Sequence[tuple[Path, Path]]) -> list[str]:
    """Output base names: the file stem, or its path below its folder where stems clash.

    Archives often name every file alike (NBIA's ``1-1.dcm``), so clashing stems take
    their folder path, joined by ``__``; a clash that remains gets ``-2``, ``-3``, ….
    """

    def stem(path: Path) -> str:
        return path.stem if _known_suffix(path) else path.name

    counts = Counter(_clean(stem(p)) for p, _ in files)
    names = []
    for path, base in files:
        name = _clean(stem(path))
        if counts[name] > 1:
            try:
                rel = path.relative_to(base)
            except ValueError:
                rel = Path(*path.parts[-3:])
            name = "__".join(_clean(part) for part in (*rel.parent.parts, stem(rel)))
        names.append(name)
    seen: Counter[str] = Counter()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique


# --------------------------------------------------------------------------- predict


def _configure_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT", help="mammogram files or folders"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("predictions"), help="output folder (predictions/)"
    )
    parser.add_argument(
        "--models", type=Path, default=Path("models"), help="checkpoint folder (models/)"
    )
    parser.add_argument(
        "--backbone", default="mobilenet_v1", help="patch network (default mobilenet_v1)"
    )
    parser.add_argument(
        "--model",
        default=None,
        metavar="URI",
        help="the patch network from MLflow instead of --models/--backbone, e.g. "
        "models:/mammocad-mobilenet_v1@champion (the shallow CNN: the same alias of "
        "mammocad-shallow_cnn); store: MLFLOW_TRACKING_URI, else the params file's "
        "mlflow.tracking_uri",
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=None,
        help="params file for settings the checkpoints lack (params.yaml where present)",
    )
    parser.add_argument(
        "--patch-px",
        type=float,
        default=None,
        help="side of the training ROI crops in the inputs' own pixels (default: from "
        "training, scaled by each input's long side against the training films')",
    )
    parser.add_argument(
        "--method", choices=METHODS, default="cam", help="cam (Grad-CAM where needed) or gradcam"
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="where the networks run: onnx (ONNX Runtime, the graphs `dvc repro` exports "
        "to <--models>/export/; no PyTorch, faster start), torch (PyTorch, the checkpoints), "
        "or auto (onnx where the graphs were made from these checkpoints and the method is "
        "cam, else torch; default)",
    )
    parser.add_argument("--top-k", type=int, default=3, help="regions reported (3)")
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="heatmap level of a region (0.5)"
    )


def _make_predictor(args: argparse.Namespace) -> Predictor:
    backbone_ckpt = args.models / f"{args.backbone}.pt"
    shallow_ckpt: Path | None = args.models / f"{SHALLOW}.pt"
    if not shallow_ckpt.is_file():
        log.warning("%s not found: no shallow CNN probability", shallow_ckpt)
        shallow_ckpt = None
    engine = getattr(args, "engine", "auto")
    if getattr(args, "model", None) is not None:  # an MLflow model: checkpoints only
        log.info("networks on PyTorch: an MLflow model (--model) holds no ONNX graphs")
        engine = "torch"
    try:
        networks = load_networks(engine, backbone_ckpt, shallow_ckpt, args.method)
    except Unavailable as exc:
        raise UsageError(f"--engine onnx: {exc.reason}") from None
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise UsageError(str(exc).strip("'\"")) from None
    if networks.engine == "onnx":  # the settings the graphs' records keep
        checkpoints = [(backbone_ckpt, networks.settings)]
        if shallow_ckpt is not None:
            checkpoints.append((shallow_ckpt, networks.shallow_settings))
    else:
        checkpoints = [(backbone_ckpt, _read_config(backbone_ckpt))]
        if shallow_ckpt is not None:
            checkpoints.append((shallow_ckpt, _read_config(shallow_ckpt)))
    params = _read_params(args.params)
    enhance, enhance_from = resolve_section(
        EnhanceConfig, "enhance", checkpoints, params, args.params
    )
    patches, patches_from = resolve_section(
        PatchesConfig, "patches", checkpoints, params, args.params
    )
    for name in ("enhance", "patches"):
        stored = [info["config"].get(name) for _, info in checkpoints]
        if len(stored) == 2 and None not in stored and stored[0] != stored[1]:
            log.warning(
                "the checkpoints were trained with different %s settings; using the "
                "patch network's",
                name,
            )
    manifest = layout.at(layout.PATCH_MANIFEST, args.params.parent)
    patch_px, patch_from = resolve_patch_px(args.patch_px, checkpoints[0][1], manifest)
    image_px, image_from = resolve_image_px(patch_from, checkpoints[0][1], manifest)
    log.info(
        "settings: enhance from %s, patches from %s, patch_px %.1f from %s, "
        "training image size %s from %s",
        enhance_from,
        patches_from,
        patch_px,
        patch_from,
        "-" if image_px is None else f"{image_px:.0f}",
        image_from,
    )
    try:
        return Predictor(
            backbone_ckpt,
            shallow_ckpt,
            enhance,
            patches,
            patch_px,
            args.method,
            top_k=args.top_k,
            threshold=args.threshold,
            image_px=image_px,
            networks=networks,
        )
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise UsageError(str(exc).strip("'\"")) from None


def _summary(path: Path, result: dict[str, Any], json_path: Path) -> str:
    parts = []
    if result["shallow"] is not None:
        parts.append(f"cancer probability {result['shallow']['cancer_probability']:.3f}")
    if result["regions"]:
        top = result["regions"][0]
        parts.append(
            f"top region {top['malignancy_probability']:.3f} at {top['bbox']} "
            f"({len(result['regions'])} region(s))"
        )
    else:
        weak = result.get("strongest_below_threshold")
        none = (
            f"no region of {result['min_region_px']} pixels or more reached the threshold "
            f"{result['threshold']:.2f}"
        )
        parts.append(
            f"{none} (strongest: peak {weak['peak']:.3f} at {weak['bbox']})" if weak else none
        )
    return f"{path}: {', '.join(parts)} -> {json_path}"


def _fetch_model(args: argparse.Namespace) -> tuple[Path, str]:
    """``--models`` and ``--backbone`` for the ``--model`` URI's downloaded checkpoints."""
    import tempfile

    from mammocad.mlflow_models import fetch_models

    section = (_read_params(args.params) or {}).get("mlflow") or {}
    uri = os.environ.get("MLFLOW_TRACKING_URI") or section.get(
        "tracking_uri", "sqlite:///mlflow.db"
    )
    # kept with the arguments: the checkpoints are read when the first image is
    args.model_dir = tempfile.TemporaryDirectory(prefix="mammocad-model-")
    return fetch_models(args.model, Path(args.model_dir.name), uri)


def _write_skipped(path: Path, rows: list[dict[str, str]]) -> None:
    """``skipped.csv`` as pandas writes it (minimal quoting, ``\\n``), without pandas."""
    with atomic_file(path) as fh:
        writer = csv.DictWriter(fh, ["file", "reason"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _say(line: str) -> None:
    """One line on stdout. A reader that went away (``mammocad predict ... | head``) does
    not stop the work: the rest of the output goes to the null device, and every image is
    still predicted and written."""
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def run_predict(args: argparse.Namespace) -> int:
    """Runs ``mammocad predict`` (see the module notes)."""
    try:
        return _predict_files(args)
    finally:  # the --model download, removed here rather than at interpreter exit
        download = getattr(args, "model_dir", None)
        if download is not None:
            download.cleanup()


def _check_args(args: argparse.Namespace) -> None:
    """Refuses arguments that cannot describe a run, before anything is read."""
    if args.params is None:  # the working folder's, where there is one
        args.params = Path("params.yaml")
    elif not args.params.is_file():
        raise UsageError(f"--params {args.params}: params file not found")
    if args.model is None and (not args.backbone or Path(args.backbone).name != args.backbone):
        raise UsageError(
            f"--backbone {args.backbone!r}: a checkpoint name in --models (e.g. "
            "mobilenet_v1), not a path"
        )
    check_threshold(args.threshold, "--threshold")
    if args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}")


def _predict_files(args: argparse.Namespace) -> int:
    _check_args(args)
    if args.model is not None:
        if getattr(args, "engine", "auto") == "onnx":
            raise UsageError("--engine onnx: an MLflow model (--model) holds no ONNX graphs")
        args.models, args.backbone = _fetch_model(args)
    backbone_ckpt = args.models / f"{args.backbone}.pt"
    if not backbone_ckpt.is_file():
        raise UsageError(
            f"checkpoint not found: {backbone_ckpt} (train it with `dvc repro "
            f"finetune@{args.backbone}` or point --models at a folder holding it)"
        )
    # Checked before any image is read: a bad --out must not waste the whole run.
    check_output_dir(args.out, "--out")
    others: list[Path] = []
    files = expand_inputs(args.inputs, exclude=args.out, others=others)
    names = output_names(files)
    # Files named on the command line, unlike those found in a folder, were meant to be
    # mammograms: refusing one makes the exit status 2 even if others were processed.
    named = {Path(item) for item in args.inputs if not Path(item).is_dir()}
    predictor: Predictor | None = None
    processed, failed, refused_named = 0, 0, 0
    skipped: list[dict[str, str]] = []
    for path in others:
        sys.stderr.write(f"{path}: {NOT_AN_IMAGE_FILE}\n")
        skipped.append({"file": str(path), "reason": NOT_AN_IMAGE_FILE})
    for (path, _), name in zip(files, names, strict=True):
        t0 = time.perf_counter()
        try:
            image, kind = load_image(path)
            read_s = time.perf_counter() - t0
        except NotAMammogram as exc:
            sys.stderr.write(f"{path}: {exc.reason}\n")
            skipped.append({"file": str(path), "reason": exc.reason})
            refused_named += path in named
            continue
        if predictor is None:
            predictor = _make_predictor(args)
        json_path = args.out / f"{name}.json"
        overlay_path = args.out / f"{name}_overlay.png"
        overlay_written = False
        try:
            prediction = predictor.predict_image(image, path, kind, read_s=read_s)
            # The overlay first: the JSON, the result, exists only with its picture.
            predictor.write_overlay(prediction, overlay_path)
            overlay_written = True
            write_json(json_path, prediction.result)
        except NotAMammogram as exc:
            sys.stderr.write(f"{path}: {exc.reason}\n")
            skipped.append({"file": str(path), "reason": exc.reason})
            refused_named += path in named
            continue
        except Exception as exc:  # one bad image must not stop a folder
            log.debug("%s: failed", path, exc_info=True)
            if overlay_written:  # no picture without its result, nor an older result
                overlay_path.unlink(missing_ok=True)
                json_path.unlink(missing_ok=True)
            reason = f"failed: {type(exc).__name__}: {' '.join(str(exc).split())}"
            sys.stderr.write(f"{path}: {reason}\n")
            skipped.append({"file": str(path), "reason": reason})
            failed += 1
            continue
        processed += 1
        _say(_summary(path, prediction.result, json_path))
    if files or others:
        _write_skipped(args.out / "skipped.csv", skipped)
    if not files:
        sys.stderr.write("no DICOM, PNG or PGM files found in the inputs\n")
    log.info("%d processed, %d refused, %d failed", processed, len(skipped) - failed, failed)
    if failed:
        return 1
    return 0 if processed and not refused_named else 2


COMMANDS.add(
    "predict",
    Command(
        help="shallow CNN probability and mass heatmap for mammogram files",
        configure=_configure_predict,
        run=run_predict,
    ),
)
