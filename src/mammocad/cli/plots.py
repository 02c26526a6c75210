"""``mammocad plots``: the pipeline's DVC plots as one page that renders offline."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mammocad import layout
from mammocad.cli.common import (
    COMMANDS,
    Command,
    UsageError,
    _read_params,
)
from mammocad.entries import SHALLOW
from mammocad.errors import check_output_dir, check_output_file

log = logging.getLogger("mammocad.cli")

T = TypeVar("T")

# --------------------------------------------------------------------------- plots


def model_plots(backbones: Sequence[str], shallow: str = SHALLOW) -> dict[str, set[str]]:
    """The top-level plots that show every model, with the data files each must draw.

    ``roc`` and ``pr`` overlay the fine-tuned backbones (benign vs malignant patches),
    ``val_auc`` every model; ``training/<model>`` and ``confusion/<model>`` are one chart
    per model. ``dvc.yaml`` cannot loop in its top-level ``plots:``, so a backbone added
    to ``finetune.backbones`` needs its lines there; :func:`missing_plots` names them.
    """
    models = [shallow, *backbones]
    expected = {
        "roc": {layout.roc_curve(b) for b in backbones},
        "pr": {layout.pr_curve(b) for b in backbones},
        f"roc_{shallow}": {layout.roc_curve(shallow)},
        "val_auc": {layout.history(m) for m in models},
    }
    expected |= {f"training/{m}": {layout.history(m)} for m in models}
    expected |= {f"confusion/{m}": {layout.confusion(m)} for m in models}
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
        check_output_file(args.write_template, "--write-template")
        sys.stdout.write(f"{write_template(args.write_template)}\n")
        return 0
    check_output_dir(args.out, "--out")
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
