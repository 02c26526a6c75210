"""A no-op ``dvc repro`` against ``dvc status`` on the same up-to-date repository.

Both commands read ``dvc.yaml``, ``dvc.lock`` and ``params.yaml`` and hash every dependency
(from DVC's state database when nothing changed); ``dvc repro`` then decides that every
stage is unchanged and skips it. The target: the no-op ``dvc repro`` within 1.2 times
``dvc status``. Runs the two commands alternately ``--repeats`` times in the repository,
which must be up to date (``dvc status`` says so first; should a ``dvc repro`` still run a
stage, the benchmark stops, since its times would mean nothing), and prints each
median, their ratio, and what drives both: the line counts of ``dvc.yaml`` and
``dvc.lock`` (DVC 3.67's ``repro`` parses both twice, ``status`` once) and the lock
entries of stages no longer in the pipeline (DVC never removes them).

Usage: ``python benchmarks/bench_noop.py [--repo .] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml


def timed(cmd: list[str], repo: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return seconds, proc.stdout


def stale_lock_entries(repo: Path) -> list[str]:
    names = timed(["dvc", "stage", "list", "--name-only"], repo)[1].split()
    lock = yaml.safe_load((repo / "dvc.lock").read_text()) or {}
    return sorted(set(lock.get("stages", {})) - set(names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    repo = args.repo.resolve()

    _, out = timed(["dvc", "status"], repo)
    if "up to date" not in out:
        sys.exit(f"the pipeline in {repo} is not up to date; run `dvc repro` first:\n{out}")
    status, repro = [], []
    for _ in range(args.repeats):
        status.append(timed(["dvc", "status"], repo)[0])
        seconds, out = timed(["dvc", "repro"], repo)
        if "Running stage" in out:
            sys.exit(f"dvc repro ran a stage: the benchmark needs an up-to-date pipeline\n{out}")
        repro.append(seconds)
    lines = {
        name: len((repo / name).read_text().splitlines()) for name in ("dvc.yaml", "dvc.lock")
    }
    stale = stale_lock_entries(repo)
    s, r = statistics.median(status), statistics.median(repro)
    print(
        f"dvc.yaml {lines['dvc.yaml']} lines, dvc.lock {lines['dvc.lock']} lines, "
        f"{len(stale)} stale lock entries{': ' + ', '.join(stale) if stale else ''}"
    )
    print(f"dvc status  median {s:.2f} s  ({', '.join(f'{x:.2f}' for x in status)})")
    print(f"dvc repro   median {r:.2f} s  ({', '.join(f'{x:.2f}' for x in repro)})")
    print(f"ratio repro / status: {r / s:.2f} (target at most 1.2)")


if __name__ == "__main__":
    main()
