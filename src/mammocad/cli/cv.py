"""``mammocad cv``: compare fine-tuning recipes by patient-level cross-validation.

``mammocad cv ENTRY [-S train.lr=3e-4,1e-4] [--folds 5] [--epochs 6] [--out FILE]`` trains
``finetune@ENTRY`` on folds of the training split's patients (see
:mod:`mammocad.crossval`) and prints the mean validation AUC per epoch of each setting.
It reads the pipeline's augmented training split (``dvc repro augment`` makes it) and the
``finetune`` section of ``params.yaml``, and writes nothing but ``--out`` (after each
setting, so an interrupted run keeps the settings it finished).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mammocad.cli.common import COMMANDS, Command, UsageError, _read_params


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
        "more keys: every combination runs); without -S: the recipe as params.yaml has it",
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


def _check_entry(entry: str, section: dict) -> None:
    """An entry with a tag (``mobilenet_v2-scratch``) must be one the params define: a
    mistyped tag would otherwise train the plain backbone's recipe under its name."""
    from mammocad.entries import backbone_of

    known = {*(section.get("backbones") or []), *(section.get("overrides") or {})}
    if entry != backbone_of(entry) and entry not in known:
        raise UsageError(
            f"finetune entry {entry!r} is not in finetune.backbones or finetune.overrides "
            f"(known: {', '.join(sorted(known)) or 'none'})"
        )


def run_cv(args: argparse.Namespace) -> int:
    """Runs ``mammocad cv``."""
    from mammocad import crossval, layout
    from mammocad.config import ConfigError
    from mammocad.experiment import resolve_finetune

    project = args.project.resolve()
    params_path = project / "params.yaml"
    params = _read_params(params_path)
    if params is None:
        raise UsageError(f"{params_path}: not found")
    section = params.get("finetune") or {}
    try:
        _check_entry(args.entry, section)
        base = resolve_finetune(section, args.entry)
    except KeyError as exc:  # an unknown backbone, with the valid ones
        raise UsageError(str(exc).strip("'\"")) from None
    except (ConfigError, ValueError) as exc:
        raise UsageError(f"{params_path}: {exc}") from None
    try:
        settings = crossval.parse_settings(args.settings)
        for setting in settings:  # every setting checked before hours of training
            resolve_finetune(crossval.with_setting(section, args.entry, setting), args.entry)
    except (ConfigError, ValueError) as exc:
        raise UsageError(f"-S: {exc}") from None
    epochs = args.epochs if args.epochs is not None else base.train.epochs
    if epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {epochs}")
    if args.out is not None and (args.out.is_dir() or not args.out.parent.is_dir()):
        raise UsageError(f"--out {args.out}: not a file in an existing folder")
    train_csv = layout.at(layout.AUGMENTED, project) / "train.csv"
    if not train_csv.is_file():
        raise UsageError(f"{train_csv} not found: run `dvc repro augment` first")

    import pandas as pd

    from mammocad.allocator import keep_freed_memory
    from mammocad.io import write_json
    from mammocad.seeding import seed_everything

    seed = args.seed if args.seed is not None else int(params.get("seed", 42))
    try:
        rows = crossval.training_rows(pd.read_csv(train_csv, keep_default_na=False))
        crossval.patient_folds(rows, args.folds, seed)
    except ValueError as exc:
        raise UsageError(f"{train_csv}: {exc}") from None
    originals = int((rows["aug_index"].astype(str) == "0").sum())

    def save(curves: list[crossval.FoldCurves]) -> None:
        if args.out is not None:
            record = {
                "entry": args.entry,
                "folds": args.folds,
                "epochs": epochs,
                "seed": seed,
                "patients": int(rows["patient_id"].nunique()),
                "patches": originals,
                "settings": [c.record() for c in curves],
            }
            write_json(args.out, record)

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
            on_setting=save,
        )
    finally:
        for handler in handlers:
            handler.removeFilter(once)
    sys.stdout.write(
        f"{args.entry}: mean validation ROC AUC over {args.folds} patient folds of the "
        f"training split ({rows['patient_id'].nunique()} patients, {originals} patches "
        f"and their augmented copies)\n"
    )
    sys.stdout.write(crossval.table(curves) + "\n")
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
