"""``mammocad export``: the export stage's files for any trained checkpoint."""

from __future__ import annotations

import argparse
import json
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
    check_threshold,
)
from mammocad.config import ConfigError, from_dict
from mammocad.errors import check_output_dir
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
    params = _read_params(params_path, required=args.params is not None) or {}
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
    if args.threshold is not None:  # checked by run_export before any work
        return args.threshold, "--threshold"
    path = layout.at(layout.eval_metrics(backbone), args.root)
    if not path.is_file():
        return 0.5, "default"
    try:
        value = json.loads(path.read_text())["threshold"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        reason = "no 'threshold' key" if isinstance(exc, KeyError) else str(exc)
        raise UsageError(
            f"{path}: cannot read the decision threshold ({reason}); rerun `dvc repro "
            f"evaluate@{backbone}` or give --threshold"
        ) from None
    return check_threshold(value, str(path)), str(path)


def _load(path: Path) -> tuple[Any, dict[str, Any]]:
    from mammocad.checkpoint import load_trained_backbone

    try:
        return load_trained_backbone(path)
    except Exception as exc:  # any failure means an unusable checkpoint
        raise UsageError(f"{path}: not a fine-tuned backbone checkpoint ({exc})") from None


def _run_name(ckpt: dict[str, Any]) -> str:
    """The run a checkpoint belongs to: a variant (mobilenet_v1-scratch) has its own
    threshold and folder."""
    return (ckpt.get("metrics") or {}).get("run") or ckpt["backbone"]


def run_export(args: argparse.Namespace) -> int:
    """Runs ``mammocad export``: the export stage's files for any trained checkpoint."""
    from mammocad.export import export_backbone, patch_sets

    for path in args.checkpoints:
        if not path.is_file():
            raise UsageError(f"checkpoint not found: {path}")
    if args.threshold is not None:
        args.threshold = check_threshold(args.threshold, "--threshold")
    cfg = _export_config(args)
    # Checked before any work: a bad --out must not waste the exports.
    check_output_dir(args.out, "--out")
    try:
        calibration, test = patch_sets(
            *(layout.at(p, args.root) for p in (layout.SPLIT, layout.AUGMENTED, layout.PATCHES))
        )
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(
            f"{exc} (--root must be a pipeline folder after `dvc repro augment`)"
        ) from None
    # Every checkpoint is loaded, and its threshold read, before the first export (and
    # loaded again for it, so that one model at a time is in memory): one bad file must
    # not stop the batch after some folders were written.
    jobs, folders = [], {}
    for path in args.checkpoints:
        backbone = _run_name(_load(path)[1])
        if backbone in folders:
            raise UsageError(
                f"{folders[backbone]} and {path} are both {backbone!r} runs: their exports "
                f"would share {args.out / backbone} (export them with different --out)"
            )
        folders[backbone] = path
        check_output_dir(args.out / backbone, "--out")
        jobs.append((path, backbone, *_threshold(args, backbone)))
    for path, backbone, threshold, source in jobs:
        model, ckpt = _load(path)
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
