"""``mammocad preset``: writes a named set of params (e.g. the paper's experiment)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TypeVar

from mammocad.cli.common import (
    COMMANDS,
    Command,
    UsageError,
)

log = logging.getLogger("mammocad.cli")

T = TypeVar("T")

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
