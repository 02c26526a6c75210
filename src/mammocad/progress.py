"""Progress of long loops: a tqdm bar on a terminal, periodic log lines everywhere else.

tqdm hides its bar when stderr is not a terminal (``disable=None``), so a batch job's log
showed nothing between "18 to download" and the summary. Without a terminal, progress is
logged instead every ``MAMMOCAD_PROGRESS_S`` seconds (default 30): items or bytes done of
the total, rate and estimated time left.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

from tqdm.auto import tqdm

log = logging.getLogger("mammocad.progress")

#: Seconds between two progress lines when stderr is not a terminal.
DEFAULT_INTERVAL_S = 30.0


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("MAMMOCAD_PROGRESS_S", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def _amount(n: float, unit: str) -> str:
    if unit != "B":
        return f"{n:,.0f} {unit}"
    for prefix in ("", "Ki", "Mi", "Gi", "Ti"):
        if abs(n) < 1024 or prefix == "Ti":
            return f"{n:.0f} B" if not prefix else f"{n:.1f} {prefix}B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop returns


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class LogProgress:
    """tqdm's ``update``/``set_postfix_str``/``close`` as periodic log lines.

    Args:
        total: expected amount, or None when unknown.
        desc: what is counted, e.g. ``convert``.
        unit: ``B`` for bytes (shown in KiB/MiB/GiB), else an item unit such as ``img``.
        interval_s: seconds between lines; None reads ``MAMMOCAD_PROGRESS_S``.
    """

    def __init__(
        self,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        interval_s: float | None = None,
        initial: float = 0,
    ) -> None:
        self.total = total
        self.desc = desc or "progress"
        self.unit = unit
        self.n = float(initial)
        self._initial = float(initial)
        self.postfix = ""
        self.interval_s = _interval() if interval_s is None else interval_s
        self._start = time.monotonic()
        self._last = self._start
        self._closed = False
        self._lock = threading.Lock()

    def line(self) -> str:
        """The progress line as logged now."""
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = (self.n - self._initial) / elapsed  # this run's rate, not a resumed total
        parts = [_amount(self.n, self.unit)]
        if self.total:
            parts[0] += f" of {_amount(self.total, self.unit)} ({100 * self.n / self.total:.1f}%)"
        parts.append(f"{_amount(rate, self.unit)}/s")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"ETA {_duration((self.total - self.n) / rate)}")
        parts.append(f"elapsed {_duration(elapsed)}")
        if self.postfix:
            parts.append(self.postfix)
        return f"{self.desc}: {', '.join(parts)}"

    def update(self, n: float = 1) -> None:
        with self._lock:
            self.n += n
            now = time.monotonic()
            if now - self._last >= self.interval_s:
                self._last = now
                log.info("%s", self.line())

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        del refresh
        self.postfix = text

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                log.info("%s (done)", self.line())

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    initial: float = 0,
    **tqdm_kwargs: Any,
) -> Any:
    """A progress bar: tqdm when stderr is a terminal, else :class:`LogProgress`.

    Args:
        total: expected amount.
        desc: label.
        unit: ``B`` for bytes, else an item unit.
        initial: amount already done (a resumed download).
        **tqdm_kwargs: passed to tqdm only (e.g. ``unit_scale``, ``leave``).
    """
    if sys.stderr.isatty():
        return tqdm(
            total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True, **tqdm_kwargs
        )
    return LogProgress(total=total, desc=desc, unit=unit, initial=initial)
