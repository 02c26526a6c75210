"""Resume state of a TCIA download: the verified series, journaled line by line and folded
into ``.tcia/state.json``, and the lock that keeps two downloads out of one folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mammocad.io import write_json
from mammocad.sources.tcia.config import TciaError

try:  # advisory lock against two downloads into one folder (POSIX only)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: Hidden working folder below ``out_dir``: state, cached CSVs, partial downloads.
WORK_DIR = ".tcia"
STATE_NAME = "state.json"


class _State:
    """Verified series, kept in ``.tcia/state.json`` plus an append-only journal.

    Every verified series is appended at once to ``state.journal`` as one JSON line
    (written with a single ``write`` and fsynced), so a run killed at any moment, even by
    SIGKILL, leaves every series it finished on record; a torn last line is ignored.
    ``state.json`` (rewritten atomically) is the compacted form: loading merges both,
    :meth:`flush` folds the journal into it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.journal = path.with_suffix(".journal")
        self.lock = threading.Lock()
        self.series: dict[str, dict[str, Any]] = {}
        if path.is_file():
            try:
                data = json.loads(path.read_text())
                self.series = dict(data["series"])
            except (ValueError, KeyError, TypeError) as err:
                # Written atomically, so this means a hand edit; series are then fetched
                # again and their folders replaced by verified copies.
                log.warning("%s is unreadable (%s); starting a fresh state", path, err)
        if self.journal.is_file():
            with open(self.journal, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    try:
                        entry = json.loads(line)
                        self.series[str(entry["uid"])] = dict(entry["record"])
                    except (ValueError, KeyError, TypeError):
                        break  # the run stopped while writing this line
        self._fh: Any = None

    def verified(self, uid: str, out_dir: Path) -> str | None:
        """The folder of a recorded series whose files are all still there, else None."""
        rec = self.series.get(uid)
        if rec is None:
            return None
        folder = out_dir / rec["folder"]
        for name, size in rec["files"].items():
            try:
                if (folder / name).stat().st_size != size:
                    raise FileNotFoundError
            except OSError:
                log.warning("%s: %s changed or vanished; fetching the series again", uid, name)
                return None
        return rec["folder"]

    def add(self, uid: str, record: dict[str, Any]) -> None:
        """Records a verified series durably before returning."""
        line = (json.dumps({"uid": uid, "record": record}, sort_keys=True) + "\n").encode()
        with self.lock:
            self.series[uid] = record
            if self._fh is None:
                self._fh = open(self.journal, "ab")  # noqa: SIM115 - kept open for the run
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def flush(self) -> None:
        """Folds the journal into ``state.json`` (atomically) and empties it."""
        with self.lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            if self.series or self.path.exists():
                write_json(self.path, {"version": 1, "series": self.series})
            with contextlib.suppress(FileNotFoundError):
                self.journal.unlink()


@contextlib.contextmanager
def _exclusive(work: Path) -> Iterator[None]:
    """Holds ``.tcia/lock`` so that two downloads never share one folder."""
    work.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    with open(work / "lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise TciaError(f"another download is writing into {work.parent}") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
