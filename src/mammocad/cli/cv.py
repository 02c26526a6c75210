"""``mammocad cv``: compare fine-tuning recipes by patient-level cross-validation.

``mammocad cv ENTRY [-S train.lr=3e-4,1e-4] [--folds 5] [--epochs 6] [--out FILE]`` trains
``finetune@ENTRY`` on folds of the training split's patients (see
:mod:`mammocad.crossval`) and prints the mean validation AUC per epoch of each setting.
It reads the pipeline's augmented training split (``dvc repro augment`` makes it) and the
``finetune`` section of ``params.yaml``, and writes nothing else than ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from mammocad.cli.common import COMMANDS, Command, UsageError, _read_params

log = logging.getLogger("mammocad.cli")


class _WarnOnce(logging.Filter):
    """Lets each distinct warning through once: every fold builds its model anew, and the
    build's warnings (which ImageNet weights it uses, say) would repeat for each fold."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def _configure_cv(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("entry", help="a finetune entry: mobilenet_v2, mobilenet_v1-scratch, ...")
    parser.add_argument(
        "-S",
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=V1[,V2...]",
        help="compare these values of train.<key>, init, freeze or bn_stats (repeat for "
        "more keys: every combination runs); none: the recipe as params.yaml has it",
    )
    parser.add_argument("--folds", type=int, default=5, help="patient folds (5)")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per fold, all run (default: the entry's train.epochs)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed (default: params seed)")
    parser.add_argument("--out", type=Path, default=None, help="write the curves as JSON here")
    parser.add_argument("--project", type=Path, default=Path("."), help="the project folder (.)")


def run_cv(args: argparse.Namespace) -> int:
    """Runs ``mammocad cv``."""
    from mammocad import crossval, layout
    from mammocad.config import ConfigError

    project = args.project.resolve()
    params = _read_params(project / "params.yaml")
    if params is None:
        raise UsageError(f"{project / 'params.yaml'}: not found")
    section = params.get("finetune") or {}
    try:
        settings = crossval.parse_settings(args.settings)
        from mammocad.experiment import resolve_finetune

        for setting in settings:  # every setting checked before hours of training
            cfg = resolve_finetune(crossval.with_setting(section, args.entry, setting), args.entry)
    except (ValueError, ConfigError, KeyError) as exc:
        raise UsageError(f"{exc}") from None
    epochs = args.epochs if args.epochs is not None else cfg.train.epochs
    if epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {epochs}")
    train_csv = layout.at(layout.AUGMENTED, project) / "train.csv"
    if not train_csv.is_file():
        raise UsageError(f"{train_csv} not found: run `dvc repro augment` first")
    if args.out is not None and not args.out.parent.is_dir():
        raise UsageError(f"--out {args.out}: no folder {args.out.parent}")

    import pandas as pd

    from mammocad.allocator import keep_freed_memory
    from mammocad.seeding import seed_everything

    seed = args.seed if args.seed is not None else int(params.get("seed", 42))
    try:
        rows = crossval.training_rows(pd.read_csv(train_csv, keep_default_na=False))
        crossval.patient_folds(rows, args.folds, seed)
    except ValueError as exc:
        raise UsageError(f"{train_csv}: {exc}") from None
    keep_freed_memory()
    seed_everything(seed)
    once = _WarnOnce()
    handlers = logging.getLogger().handlers
    for handler in handlers:
        handler.addFilter(once)
    try:
        curves = crossval.cross_validate(
            args.entry,
            section,
            rows,
            train_csv.parent,
            folds=args.folds,
            epochs=epochs,
            seed=seed,
            settings=settings,
            progress=True,
        )
    finally:
        for handler in handlers:
            handler.removeFilter(once)
    sys.stdout.write(
        f"{args.entry}: mean validation ROC AUC over {args.folds} patient folds of the "
        f"training split ({rows['patient_id'].nunique()} patients, {len(rows)} rows)\n"
    )
    sys.stdout.write(crossval.table(curves) + "\n")
    if args.out is not None:
        record = {
            "entry": args.entry,
            "folds": args.folds,
            "epochs": epochs,
            "seed": seed,
            "settings": [c.record() for c in curves],
        }
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(args.out)
    return 0


COMMANDS.add(
    "cv",
    Command(
        help="compare fine-tuning recipes by patient-level cross-validation on the "
        "training split (no validation or test rows read)",
        configure=_configure_cv,
        run=run_cv,
    ),
)
