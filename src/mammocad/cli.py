"""The ``mammocad`` command line: the trained framework of paper Fig. 1 on new mammograms.

``mammocad predict INPUT... [--out DIR] [--models DIR] [--backbone NAME | --model URI]``
(``--model models:/mammocad-mobilenet_v1@champion``: the models registered in MLflow) reads
DICOM, PNG or PGM mammograms (files, or folders searched recursively), and writes for each one
``<out>/<name>.json`` (the shallow CNN's cancer probability and the strongest malignancy
regions with boxes in original pixels) and ``<out>/<name>_overlay.png`` (the heatmap over
the mammogram). Refused files are listed with their reasons on stderr and in
``<out>/skipped.csv``, as are the other files of input folders: every file is accounted
for. Expected failures (a missing checkpoint, an unusable ``--out`` checked before any
work, bad settings) end in one line and exit status 1; ``--debug`` or ``MAMMOCAD_DEBUG=1``
adds the traceback. SIGINT and SIGTERM stop with one line.

The preprocessing must be the one the models were trained with. It is read, in this order
of preference, from the checkpoints' stored config, from ``params.yaml`` (``--params``;
this command line is not library code and may read it), or the defaults. The training
patch scale ``patch_px`` comes from ``--patch-px``, the backbone checkpoint, the median
ROI crop side of ``data/patches/manifest.csv`` beside the params file, or 128.

Exit status: 0 when at least one image was processed and none failed, 2 when every input
was refused (or none was found), 1 for a usage or model error or an image that failed.
"""

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

# First: pandas and requests load on first use (start-up of `predict`; see the module).
import mammocad.lazy_imports  # noqa: F401

# isort: split
import pandas as pd
import yaml

from mammocad import __version__
from mammocad.config import ConfigError, from_dict
from mammocad.enhance import EnhanceConfig
from mammocad.errors import ExpectedError, check_output_dir, report, sigterm_as_interrupt
from mammocad.io import atomic_file, write_json
from mammocad.localize import METHODS
from mammocad.patches import PatchesConfig
from mammocad.predict import (
    IMAGE_SUFFIXES,
    SHALLOW,
    NotAMammogram,
    Predictor,
    has_dicom_preamble,
    load_image,
)
from mammocad.registry import Registry

log = logging.getLogger("mammocad.cli")

T = TypeVar("T")

#: ``patch_px`` when neither the command line, the checkpoint nor a manifest gives one.
DEFAULT_PATCH_PX = 128.0
#: skipped.csv reason of a folder's file that is neither an image type nor DICOM.
NOT_AN_IMAGE_FILE = "not a DICOM, PNG or PGM file (no DICM marker, suffix not .dcm/.png/.pgm)"
#: Where the patches stage writes its manifest, relative to the project root.
PATCHES_MANIFEST = Path("data/patches/manifest.csv")


class UsageError(ExpectedError):
    """A problem with the command's arguments, models or settings (exit status 1)."""


@dataclass(frozen=True)
class Command:
    """A subcommand: its help line, its argument set-up and what it runs."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: Registry[Command] = Registry("command")


# --------------------------------------------------------------------------- settings


def _read_config(path: Path) -> dict[str, Any]:
    """A checkpoint's ``config`` and ``metrics``, without reading its weights into memory."""
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # any failure means an unusable checkpoint
        raise UsageError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a checkpoint")
    return {"config": data.get("config") or {}, "metrics": data.get("metrics") or {}}


def _read_params(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        with open(path) as fh:
            params = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot read params ({exc})") from None
    if not isinstance(params, dict):
        raise UsageError(f"{path}: expected a mapping at the top level")
    return params


def resolve_section(
    cls: type[T],
    name: str,
    checkpoints: Sequence[tuple[Path, dict[str, Any]]],
    params: dict[str, Any] | None,
    params_path: Path,
) -> tuple[T, str]:
    """A settings section from the first checkpoint config holding it, else the params.

    Returns:
        The section and where it came from.

    Raises:
        UsageError: for a malformed section, naming the key.
    """
    try:
        for path, info in checkpoints:
            value = info["config"].get(name)
            if value is not None:
                return from_dict(cls, value, name), f"checkpoint {path}"
        if params is not None and params.get(name) is not None:
            return from_dict(cls, params[name], name), str(params_path)
    except (ConfigError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return cls(), "defaults"


def _positive(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


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
    if manifest.is_file():
        # imported here: the training modules are needed only for this fallback
        from mammocad.experiment import training_patch_px

        try:
            frame = pd.read_csv(manifest, keep_default_na=False)
            value = _positive(training_patch_px(frame))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s: cannot read ROI sizes (%s)", manifest, exc)
            value = None
        if value is not None:
            return value, str(manifest)
    log.warning(
        "no training patch scale in the checkpoint or %s; using patch_px %.0f",
        manifest,
        DEFAULT_PATCH_PX,
    )
    return DEFAULT_PATCH_PX, "default"


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
        default=Path("params.yaml"),
        help="params file for settings the checkpoints lack (params.yaml)",
    )
    parser.add_argument(
        "--patch-px",
        type=float,
        default=None,
        help="side in image pixels of the training ROI crops (default: from training)",
    )
    parser.add_argument(
        "--method", choices=METHODS, default="cam", help="cam (Grad-CAM where needed) or gradcam"
    )
    parser.add_argument("--top-k", type=int, default=3, help="regions reported (3)")
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="heatmap level of a region (0.5)"
    )


def _make_predictor(args: argparse.Namespace) -> Predictor:
    backbone_ckpt = args.models / f"{args.backbone}.pt"
    shallow_ckpt: Path | None = args.models / f"{SHALLOW}.pt"
    checkpoints = [(backbone_ckpt, _read_config(backbone_ckpt))]
    if shallow_ckpt.is_file():
        checkpoints.append((shallow_ckpt, _read_config(shallow_ckpt)))
    else:
        log.warning("%s not found: no shallow CNN probability", shallow_ckpt)
        shallow_ckpt = None
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
    manifest = args.params.parent / PATCHES_MANIFEST
    patch_px, patch_from = resolve_patch_px(args.patch_px, checkpoints[0][1], manifest)
    log.info(
        "settings: enhance from %s, patches from %s, patch_px %.1f from %s",
        enhance_from,
        patches_from,
        patch_px,
        patch_from,
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
        parts.append(
            f"no region reached the threshold {result['threshold']:.2f} (strongest: peak "
            f"{weak['peak']:.3f} at {weak['bbox']})"
            if weak
            else "no region reached the threshold"
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


def run_predict(args: argparse.Namespace) -> int:
    """Runs ``mammocad predict`` (see the module notes)."""
    if args.model is not None:
        args.models, args.backbone = _fetch_model(args)
    backbone_ckpt = args.models / f"{args.backbone}.pt"
    if not backbone_ckpt.is_file():
        raise UsageError(
            f"checkpoint not found: {backbone_ckpt} (train it with `dvc repro "
            f"finetune@{args.backbone}` or point --models at a folder holding it)"
        )
    if args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}")
    # Checked before any image is read: a bad --out must not waste the whole run.
    check_output_dir(args.out, "--out")
    others: list[Path] = []
    files = expand_inputs(args.inputs, exclude=args.out, others=others)
    names = output_names(files)
    predictor: Predictor | None = None
    processed, failed = 0, 0
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
            continue
        if predictor is None:
            predictor = _make_predictor(args)
        try:
            prediction = predictor.predict_image(image, path, kind, read_s=read_s)
            json_path = args.out / f"{name}.json"
            write_json(json_path, prediction.result)
            predictor.write_overlay(prediction, args.out / f"{name}_overlay.png")
        except NotAMammogram as exc:
            sys.stderr.write(f"{path}: {exc.reason}\n")
            skipped.append({"file": str(path), "reason": exc.reason})
            continue
        except Exception as exc:  # one bad image must not stop a folder
            log.debug("%s: failed", path, exc_info=True)
            reason = f"failed: {type(exc).__name__}: {' '.join(str(exc).split())}"
            sys.stderr.write(f"{path}: {reason}\n")
            skipped.append({"file": str(path), "reason": reason})
            failed += 1
            continue
        processed += 1
        sys.stdout.write(_summary(path, prediction.result, json_path) + "\n")
    if files or others:
        _write_skipped(args.out / "skipped.csv", skipped)
    if not files:
        sys.stderr.write("no DICOM, PNG or PGM files found in the inputs\n")
    log.info("%d processed, %d refused, %d failed", processed, len(skipped) - failed, failed)
    if failed:
        return 1
    return 0 if processed else 2


COMMANDS.add(
    "predict",
    Command(
        help="shallow CNN probability and mass heatmap for mammogram files",
        configure=_configure_predict,
        run=run_predict,
    ),
)


# --------------------------------------------------------------------------- export


def _configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoints",
        nargs="+",
        type=Path,
        metavar="CHECKPOINT",
        help="fine-tuned backbone checkpoints, e.g. models/mobilenet_v1.pt",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("exported"),
        help="output folder; one sub-folder per backbone (exported/)",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("."),
        help="pipeline folder whose data/ gives calibration and test patches (.)",
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=None,
        help="params file whose export section is used (<root>/params.yaml)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="decision threshold (default: <root>/metrics/eval/<backbone>.json, else 0.5)",
    )
    parser.add_argument(
        "--quantization",
        choices=("auto", "static", "dynamic"),
        default=None,
        help="int8 method (default: the params file's, else auto)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for timing")


def _export_config(args: argparse.Namespace) -> Any:
    from mammocad.export import ExportConfig

    params_path = args.params or args.root / "params.yaml"
    params = _read_params(params_path) or {}
    section = dict(params.get("export") or {})
    if args.quantization is not None:
        section["quantization"] = args.quantization
    if args.threads is not None:
        section["threads"] = args.threads
    try:
        return from_dict(ExportConfig, section, "export")
    except (ConfigError, ValueError) as exc:
        raise UsageError(f"{params_path}: {exc}") from None


def _threshold(args: argparse.Namespace, backbone: str) -> tuple[float, str]:
    if args.threshold is not None:
        return args.threshold, "--threshold"
    path = args.root / "metrics/eval" / f"{backbone}.json"
    if path.is_file():
        import json

        return float(json.loads(path.read_text())["threshold"]), str(path)
    return 0.5, "default"


def run_export(args: argparse.Namespace) -> int:
    """Runs ``mammocad export``: the export stage's files for any trained checkpoint."""
    from mammocad.checkpoint import load_trained_backbone
    from mammocad.export import export_backbone, patch_sets

    for path in args.checkpoints:
        if not path.is_file():
            raise UsageError(f"checkpoint not found: {path}")
    cfg = _export_config(args)
    data = args.root / "data"
    try:
        calibration, test = patch_sets(data / "split", data / "augmented", data / "patches")
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(
            f"{exc} (--root must be a pipeline folder after `dvc repro augment`)"
        ) from None
    for path in args.checkpoints:
        try:
            model, ckpt = load_trained_backbone(path)
        except Exception as exc:  # any failure means an unusable checkpoint
            raise UsageError(f"{path}: not a fine-tuned backbone checkpoint ({exc})") from None
        # a variant (mobilenet_v1-scratch) is its own run: its threshold and folder
        backbone = (ckpt.get("metrics") or {}).get("run") or ckpt["backbone"]
        threshold, source = _threshold(args, backbone)
        out = args.out / backbone
        try:
            record = export_backbone(
                model, ckpt, calibration, test, threshold, cfg, out, checkpoint_path=path
            )
        except RuntimeError as exc:
            raise UsageError(str(exc)) from None
        write_json(out / "export.json", record)
        int8 = record["checks"]["onnx_int8"]
        sys.stdout.write(
            f"{path} -> {out}/: int8 ({record['quantization']['method']}) "
            f"{record['speedup_int8_vs_eager']}x faster than eager PyTorch, "
            f"{record['file_mb']['onnx_int8']:.1f} MB; threshold {threshold:.4g} from "
            f"{source}: {int8['decision_agreement']:.3f} of {record['n_test']} test "
            f"decisions agree, accuracy {record['eager']['accuracy']:.3f} -> "
            f"{int8['accuracy']:.3f}\n"
        )
    return 0


COMMANDS.add(
    "export",
    Command(
        help="ONNX, TorchScript and int8 files of fine-tuned backbones, checked and timed",
        configure=_configure_export,
        run=run_export,
    ),
)


# --------------------------------------------------------------------------- preset


def _configure_preset(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("preset", help="a preset of presets/ (paper) or a preset YAML file")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="CBIS-DDSM already on disk: the NBIA Data Retriever download folder "
        "(sets data.cbis_ddsm.root; without it the data are downloaded)",
    )
    parser.add_argument(
        "--csv-dir", type=Path, default=None, help="folder of the four case-description CSVs"
    )
    parser.add_argument(
        "--split", choices=("patient", "official"), default=None, help="split.method"
    )
    parser.add_argument(
        "-S",
        "--set-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a further param, after the preset's (as dvc exp run -S)",
    )
    parser.add_argument("--name", default=None, help="experiment name (default: the preset's)")
    parser.add_argument("--queue", action="store_true", help="queue it (dvc queue start runs it)")
    parser.add_argument("--project", type=Path, default=Path("."), help="the project folder (.)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the dvc command instead of running it"
    )


def run_preset(args: argparse.Namespace) -> int:
    """Runs ``mammocad preset``: a preset's params as one ``dvc exp run`` experiment."""
    import shlex
    import shutil
    import subprocess

    from mammocad.preset import find_preset, hydra_value, load_yaml, overrides

    project = args.project.resolve()
    path = find_preset(args.preset, project)
    preset = load_yaml(path, "preset")
    params = load_yaml(project / "params.yaml", "params file")
    settings = list(overrides(preset, params))
    for flag, key, value in (
        (args.root, "data.cbis_ddsm.root", args.root),
        (args.csv_dir, "data.cbis_ddsm.csv_dir", args.csv_dir),
    ):
        if flag is None:
            continue
        folder = value.expanduser().resolve()
        if not folder.is_dir():  # checked here: a bad path must not wait for the queue
            raise UsageError(
                f"--{key.rsplit('.', 1)[1].replace('_', '-')} {value}: no such folder"
            )
        settings.append(f"{key}={hydra_value(str(folder))}")
    if args.split:
        settings.append(f"split.method={hydra_value(args.split)}")
    settings.extend(args.set_param)
    dvc = Path(sys.executable).with_name("dvc")
    command = [str(dvc) if dvc.exists() else (shutil.which("dvc") or "dvc"), "exp", "run"]
    command += ["-n", args.name or path.stem]
    if args.queue:
        command.append("--queue")
    for setting in settings:
        command += ["-S", setting]
    if args.dry_run:
        sys.stdout.write(shlex.join(command) + "\n")
        return 0
    log.warning("running %s with %d params from %s", "dvc exp run", len(settings), path)
    return subprocess.run(command, cwd=project).returncode


COMMANDS.add(
    "preset",
    Command(
        help="run a preset (presets/paper.yaml: the paper's experiment) as one DVC experiment",
        configure=_configure_preset,
        run=run_preset,
    ),
)


# --------------------------------------------------------------------------- plots


def model_plots(backbones: Sequence[str], shallow: str = "shallow_cnn") -> dict[str, set[str]]:
    """The top-level plots that show every model, with the data files each must draw.

    ``roc`` and ``pr`` overlay the fine-tuned backbones (benign vs malignant patches),
    ``val_auc`` every model; ``training/<model>`` and ``confusion/<model>`` are one chart
    per model. ``dvc.yaml`` cannot loop in its top-level ``plots:``, so a backbone added
    to ``finetune.backbones`` needs its lines there; :func:`missing_plots` names them.
    """
    models = [shallow, *backbones]
    expected = {
        "roc": {f"metrics/curves/roc/{b}.csv" for b in backbones},
        "pr": {f"metrics/curves/pr/{b}.csv" for b in backbones},
        f"roc_{shallow}": {f"metrics/curves/roc/{shallow}.csv"},
        "val_auc": {f"metrics/history/{m}.csv" for m in models},
    }
    expected |= {f"training/{m}": {f"metrics/history/{m}.csv"} for m in models}
    expected |= {f"confusion/{m}": {f"metrics/confusion/{m}.csv"} for m in models}
    return expected


def missing_plots(definitions: Sequence[Any], backbones: Sequence[str]) -> list[str]:
    """What :func:`model_plots` expects that ``dvc.yaml``'s top-level ``plots:`` lacks.

    Args:
        definitions: the top-level ``plots:`` list of ``dvc.yaml`` as YAML loads it.
        backbones: ``finetune.backbones``.

    Returns:
        ``"<plot id>: <file>"`` for each data file missing from a plot's ``y``, and
        ``"<plot id>"`` for each plot missing altogether; empty when all are there.
    """
    defined: dict[str, set[str]] = {}
    for item in definitions:
        if isinstance(item, dict):
            ((plot_id, props),) = item.items()
            y = (props or {}).get("y")
            defined[plot_id] = set(y) if isinstance(y, dict) else set()
    missing = []
    for plot_id, files in model_plots(backbones).items():
        if plot_id not in defined:
            missing.append(plot_id)
        else:
            missing += [f"{plot_id}: {f}" for f in sorted(files - defined[plot_id])]
    return missing


def _configure_plots(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "targets", nargs="*", help="plot ids or files to show (as dvc plots show); all by default"
    )
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path("dvc_plots"),
        help="folder of the page index.html and its images (default: dvc_plots)",
    )
    parser.add_argument("--open", action="store_true", help="open the page in a web browser")
    parser.add_argument("--project", type=Path, default=Path("."), help="the project folder (.)")
    parser.add_argument(
        "--write-template",
        type=Path,
        default=None,
        metavar="PATH",
        help="only write the offline page template to PATH (the project's is "
        ".dvc/plots/offline.html, which plain dvc plots show uses)",
    )


def run_plots(args: argparse.Namespace) -> int:
    """Runs ``mammocad plots``: ``dvc plots show`` as a page that renders offline."""
    from mammocad.plots_html import show, write_template

    if args.write_template is not None:
        sys.stdout.write(f"{write_template(args.write_template)}\n")
        return 0
    project = args.project.resolve()
    params = _read_params(project / "params.yaml") or {}
    backbones = (params.get("finetune") or {}).get("backbones") or []
    try:
        with open(project / "dvc.yaml") as fh:
            definitions = (yaml.safe_load(fh) or {}).get("plots") or []
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{project / 'dvc.yaml'}: cannot read it ({exc})") from None
    missing = missing_plots(definitions, backbones)
    if missing:
        log.warning(
            "dvc.yaml's top-level plots leave out what finetune.backbones lists: %s",
            "; ".join(missing),
        )
    index = show(project, args.out, args.targets)
    sys.stdout.write(f"{index.as_uri()}\n")
    if args.open:
        import webbrowser

        webbrowser.open(index.as_uri())
    return 0


COMMANDS.add(
    "plots",
    Command(
        help="render dvc.yaml's plots as a page that works offline (vendored Vega)",
        configure=_configure_plots,
        run=run_plots,
    ),
)


# --------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    """The ``mammocad`` parser with one subparser per registered command."""
    parser = argparse.ArgumentParser(
        prog="mammocad",
        description="Mammogram classification and mass localization (Ansar et al.).",
    )
    parser.add_argument("--version", action="version", version=f"mammocad {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of expected failures too (also MAMMOCAD_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        command = COMMANDS.get(name)
        sub_parser = sub.add_parser(name, help=command.help, description=command.help)
        command.configure(sub_parser)
        sub_parser.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``mammocad``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.verbose:
        level = logging.getLevelName((logging.INFO, logging.DEBUG)[min(args.verbose, 2) - 1])
    else:
        level = os.environ.get("MAMMOCAD_LOGLEVEL", "WARNING")
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    debug = True if args.debug else None  # None: MAMMOCAD_DEBUG decides
    with sigterm_as_interrupt():
        try:
            return int(args.run(args))
        except (ExpectedError, KeyboardInterrupt) as exc:
            return report(f"mammocad {args.command}", exc, debug)


if __name__ == "__main__":
    sys.exit(main())
