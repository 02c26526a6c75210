"""``mammocad export``: the export stage's files for any trained checkpoint."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, TypeVar

from mammocad import layout
from mammocad.cli.common import (
    COMMANDS,
    Command,
    UsageError,
    _read_params,
)
from mammocad.config import ConfigError, from_dict
from mammocad.io import write_json

log = logging.getLogger("mammocad.cli")

T = TypeVar("T")

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
    path = layout.at(layout.eval_metrics(backbone), args.root)
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
    try:
        calibration, test = patch_sets(
            *(layout.at(p, args.root) for p in (layout.SPLIT, layout.AUGMENTED, layout.PATCHES))
        )
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
