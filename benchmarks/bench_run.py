"""The default run's time: per stage, per part, and against the 10-minute target.

Runs ``dvc repro -f`` in the repository (every stage, as on a fresh clone), or reads the
saved output of an earlier ``dvc repro`` (``--log``), and times each stage from its log: a
stage runs from its first log line to the next stage's first log line, so its process
start-up counts with the stage before it (DVC prints ``Running stage`` before the start-up,
but without a time). With ``--log``, give the time the run started (``--started``):
otherwise it starts at the first stage's first log line, which leaves out what came before
(the default ``download`` logs first after 30 s).

Prints every stage, then the parts (data stages, shallow CNN, fine-tuning, evaluation,
export, localization, report), the share of evaluation and export (target at most 15 %),
and, last, the total against 10 minutes.

Usage: ``python benchmarks/bench_run.py [--repo .]`` or
``python benchmarks/bench_run.py --log repro.log [--started HH:MM:SS]``
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

TARGET_S = 600.0
EVAL_EXPORT_SHARE = 0.15
STAGE = re.compile(r"Running stage '([^']+)'")
STAMP = re.compile(r"(\d\d:\d\d:\d\d) (\S+) ")
DATA_STAGES = ("download", "convert", "enhance", "patches", "split", "augment")


def _part(stage: str) -> str:
    if stage in DATA_STAGES:
        return "data stages"
    named = {
        "train_shallow": "shallow CNN",
        "localize": "localization",
        "export_shallow": "export",
    }
    return named.get(stage, stage.split("@")[0])


def stage_starts(lines: list[str], day: datetime) -> list[tuple[str, datetime]]:
    """Each stage's name and the time of its first log line, in run order.

    Log lines carry a time of day only; a time earlier than the one before moves to the
    next day (a run across midnight).
    """
    starts: list[tuple[str, datetime]] = []
    current, last = None, None
    for line in lines:
        match = STAGE.match(line)
        if match:
            current = match.group(1)
            continue
        match = STAMP.match(line)
        if not match or current is None:
            continue
        clock = datetime.strptime(match.group(1), "%H:%M:%S").time()
        when = datetime.combine(day.date(), clock)
        while last is not None and when < last:
            when += timedelta(days=1)
        last = when
        if not starts or starts[-1][0] != current:
            starts.append((current, when))
    return starts


def durations(
    starts: list[tuple[str, datetime]], begin: datetime | None, end: datetime
) -> list[tuple[str, float]]:
    """Seconds of each stage: from its start to the next one's (the first from ``begin``
    where given, the last to ``end``)."""
    if not starts:
        raise ValueError("no stage log lines found: is this the output of `dvc repro`?")
    bounds = [t for _, t in starts]
    if begin is not None:
        bounds[0] = min(bounds[0], begin)
    bounds.append(max(end, bounds[-1]))
    return [
        (name, (bounds[i + 1] - bounds[i]).total_seconds()) for i, (name, _) in enumerate(starts)
    ]


def _clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:2d} s" if minutes else f"{rest} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--log", type=Path, help="saved output of `dvc repro` to read instead")
    parser.add_argument("--started", help="with --log: the time the run started, HH:MM:SS")
    args = parser.parse_args()

    if args.log:
        lines = args.log.read_text().splitlines()
        begin, end = None, None
        if args.started:
            begin = datetime.combine(
                datetime.now().date(), datetime.strptime(args.started, "%H:%M:%S").time()
            )
    else:
        # one pipe for both streams keeps DVC's "Running stage" lines in order with the
        # stages' log lines; they are echoed to stderr as they come
        begin = datetime.now()
        proc = subprocess.Popen(
            ["dvc", "repro", "-f"],
            cwd=args.repo.resolve(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        lines = []
        for line in proc.stdout:
            sys.stderr.write(line)
            lines.append(line.rstrip("\n"))
        end = datetime.now()
        if proc.wait() != 0:
            sys.exit(f"dvc repro -f failed ({proc.returncode})")
    starts = stage_starts(lines, begin or datetime.now())
    if begin is not None and starts and starts[0][1] < begin:  # a --log run after midnight
        starts = [(name, t + timedelta(days=1)) for name, t in starts]
    if end is None:  # the last log line of the last stage
        end = starts[-1][1]
        last_stamp = [STAMP.match(x) for x in lines if STAMP.match(x)][-1]
        clock = datetime.strptime(last_stamp.group(1), "%H:%M:%S").time()
        end = max(end, datetime.combine(end.date(), clock))
    times = durations(starts, begin, end)

    for name, seconds in times:
        print(f"{name:32s} {seconds:6.0f} s")
    parts: dict[str, float] = {}
    for name, seconds in times:
        parts[_part(name)] = parts.get(_part(name), 0.0) + seconds
    total = sum(parts.values())
    print()
    for name, seconds in parts.items():
        print(f"{name:32s} {_clock(seconds):>12s}  {seconds / total:5.1%}")
    share = (parts.get("evaluate", 0.0) + parts.get("export", 0.0)) / total
    print(
        f"evaluation and export: {share:.1%} of the run (target at most {EVAL_EXPORT_SHARE:.0%})"
    )
    print(f"total {_clock(total)}; total / 10 minutes: {total / TARGET_S:.2f}")


if __name__ == "__main__":
    main()
