"""A tiny copy of the pipeline for end-to-end tests: 10 synthetic patients, 64-px patches.

The model tests build their own DVC repositories from the project's ``dvc.yaml``,
``params.yaml``, ``stages/`` and ``src/``, with params small enough to run in seconds.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: What every test subprocess runs with: offline, quiet, a fixed Git identity.
ENV = {
    "DVC_NO_ANALYTICS": "1",
    "MAMMOCAD_LOGLEVEL": "WARNING",
    "MAMMOCAD_OFFLINE": "1",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
}


def run(cwd: Path, *args: str, env: dict[str, str] | None = None, log: Path | None = None) -> str:
    """Runs a command with the venv first on ``PATH``; returns its output, fails the test
    with the output's tail if it exits non-zero.

    ``log``: write the output to this file instead of a pipe. A command that leaves a
    daemon behind (``dvc queue start`` and its workers) keeps a pipe open for as long as the
    daemon lives, and reading it to its end would wait for the daemon too.
    """
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **ENV}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    full_env.update(env or {})
    command = [str(a) for a in args]
    with open(log, "w") if log is not None else contextlib.nullcontext() as out:
        proc = subprocess.run(
            command, cwd=cwd, env=full_env, text=True, timeout=1200,
            stdout=out or subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
    output = Path(log).read_text() if log is not None else proc.stdout
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{output[-8000:]}")
    return output


def copy_tiny(work: Path, backbones: Sequence[str], **sections: dict) -> dict:
    """Copies the pipeline into ``work`` with tiny params for ``backbones``.

    Args:
        work: an empty directory.
        backbones: the fine-tuned backbones (scratch init, two epochs).
        sections: further params updates, e.g. ``evaluate={"bootstrap": 20}``.

    Returns:
        The params written to ``work/params.yaml``.
    """
    for name in ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore"):
        (work / name).write_bytes((REPO / name).read_bytes())
    for name in ("stages", "src"):
        run(REPO, "cp", "-r", str(REPO / name), str(work / name))
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"]["synthetic"].update(n_patients=10, image_height=256)
    params["patches"].update(image_size=64, full_height=64, full_width=40)
    params["augment"]["copies"] = 1
    params["shallow"]["train"].update(epochs=2, batch_size=16)
    params["finetune"].update(backbones=list(backbones), init="scratch")
    params["finetune"]["train"].update(epochs=2, batch_size=16)
    params["finetune"]["overrides"] = {b: {} for b in backbones}
    params["evaluate"].update(bootstrap=50, latency_repeats=2)
    params["export"].update(
        backbones=[b for b in backbones if "-" not in b], calibration_images=16, latency_repeats=3
    )
    for name, values in sections.items():
        params[name].update(values)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params
