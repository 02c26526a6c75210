"""``python -m mammocad.cli``: the ``mammocad`` command."""

from mammocad.cli import run

run()
