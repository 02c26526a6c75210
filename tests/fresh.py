"""Running code in a new interpreter, for tests of what an import pulls in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mammocad

SRC = str(Path(mammocad.__file__).resolve().parents[1])


def fresh_interpreter(code: str, timeout: float = 180) -> object:
    """Runs ``code`` in a new interpreter (its imports start from nothing) with this
    checkout's ``src`` on the path; returns the JSON its last output line holds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])
