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
ROI crop side of ``data/patches/manifest.csv`` beside the params file, or 128; the training
films' long side ``image_px`` from the checkpoint (or that same manifest), and an input's
crop side is then ``patch_px`` scaled by its long side against ``image_px``.

Exit status: 0 when at least one image was processed and none failed, 2 when every input
was refused (or none was found) or a file named on the command line was refused, 1 for a
usage or model error or an image that failed.

Each command is a module of this package that registers itself in
:data:`~mammocad.cli.common.COMMANDS`: ``predict``, ``export``, ``preset``, ``plots``,
``cv``.
The command line is not library code: the library never imports it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

# First: pandas and requests load on first use (start-up of `predict`; see the module).
import mammocad.lazy_imports  # noqa: F401

# isort: split
from mammocad import __version__
from mammocad.cli import cv, export, plots, predict, preset  # noqa: F401 - each registers itself
from mammocad.cli.common import COMMANDS, UsageError, resolve_section
from mammocad.cli.plots import missing_plots, model_plots
from mammocad.cli.predict import (
    _make_predictor,
    _write_skipped,
    expand_inputs,
    output_names,
    resolve_image_px,
    resolve_patch_px,
    run_predict,
)
from mammocad.errors import ExpectedError, report, sigterm_as_interrupt
from mammocad.portable import portable_opencv

__all__ = [
    "COMMANDS",
    "UsageError",
    "_make_predictor",
    "_write_skipped",
    "build_parser",
    "expand_inputs",
    "main",
    "missing_plots",
    "model_plots",
    "output_names",
    "resolve_image_px",
    "resolve_patch_px",
    "resolve_section",
    "run",
    "run_predict",
]


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
    portable_opencv()  # the pixels the pipeline's stages compute, on any x86-64 CPU
    debug = True if args.debug else None  # None: MAMMOCAD_DEBUG decides
    with sigterm_as_interrupt():
        try:
            return int(args.run(args))
        except (ExpectedError, KeyboardInterrupt) as exc:
            return report(f"mammocad {args.command}", exc, debug)


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``mammocad`` command: :func:`main`, then an exit without interpreter teardown.

    Tearing down the interpreter after torch has been imported takes about half a second
    on two cores and does nothing the command needs: by the time :func:`main` returns,
    every output is written and closed and every temporary folder removed. Streams and
    log handlers are flushed first. An unexpected exception still ends the normal way,
    with its traceback.
    """
    code = main(argv)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
    except OSError:  # a closed pipe (`mammocad predict ... | head`): nothing left to say
        pass
    os._exit(code)


if __name__ == "__main__":
    run()
