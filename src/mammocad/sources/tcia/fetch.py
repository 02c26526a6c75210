"""The ``cbis-ddsm`` source: :func:`cbis_ddsm_source` reads a copy on disk or downloads;
:func:`fetch_cbis_ddsm` chooses the series, cuts the case descriptions, and downloads the
missing series over parallel connections, recording each one verified.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from mammocad.errors import InputNotFound
from mammocad.progress import progress
from mammocad.sources.layout import link_tree
from mammocad.sources.registry import register_source
from mammocad.sources.retriever.fetch import fetch_from_root
from mammocad.sources.tcia.api import _Client, _Outcome
from mammocad.sources.tcia.case_csvs import _write_csvs
from mammocad.sources.tcia.config import CSV_NAMES, TciaConfig, TciaError
from mammocad.sources.tcia.manifest import read_tcia_manifest
from mammocad.sources.tcia.series import (
    SeriesInfo,
    _safe_component,
    patient_number,
    plan_series,
    select_series,
)
from mammocad.sources.tcia.state import STATE_NAME, WORK_DIR, _exclusive, _State

log = logging.getLogger(__name__)


@register_source(
    "cbis-ddsm", TciaConfig, paths=("csv_dir", "root", "manifest"), uses_download_dir=True
)
def cbis_ddsm_source(
    out_dir: Path, cfg: TciaConfig, seed: int, workers: int = 0, *, download_dir: Path
) -> dict[str, Any]:
    """Writes CBIS-DDSM into ``out_dir``: from a copy on disk, or downloaded from TCIA (§3.1).

    With ``cfg.root`` set, the copy there is read as it is and nothing is fetched from the
    image API (:func:`mammocad.sources.retriever.fetch_from_root`). Otherwise the series are
    downloaded into ``download_dir/cbis-ddsm`` (:func:`fetch_cbis_ddsm`), which outlives
    ``out_dir`` so that a rerun fetches only what is missing, and linked into ``out_dir``.

    Args:
        out_dir: the raw-data folder being written.
        cfg: the ``data.cbis_ddsm`` settings.
        seed: unused (the download is deterministic); part of the source signature.
        workers: processes reading headers of a copy on disk.
        download_dir: ``data.download_dir``.

    Returns:
        The summary of the copy on disk, or of the download with ``files_linked`` and
        ``files_deidentified`` added.
    """
    if cfg.root:
        # A copy already on disk: nothing is fetched from the image API.
        return fetch_from_root(out_dir, cfg, Path(download_dir), workers)
    cache = Path(download_dir) / "cbis-ddsm"
    summary = fetch_cbis_ddsm(cache, cfg, seed, workers)
    counts = {"files_deidentified": 0}
    summary["files_linked"] = link_tree(cache, out_dir, counts)
    summary.update(counts)
    return summary


def fetch_cbis_ddsm(
    out_dir: Path, cfg: TciaConfig, seed: int = 0, workers: int = 0
) -> dict[str, Any]:
    """Downloads CBIS-DDSM from TCIA into ``out_dir`` in the CBIS-DDSM raw layout (§3.1).

    Writes ``csv/`` (the four case descriptions, cut to the chosen series when
    ``abnormality`` or ``max_patients`` narrow the choice) and
    ``<collection>/<PatientID>/<study>/<series>/`` DICOM folders; ``.tcia/`` holds the
    resume state. Rerunning on the same ``out_dir`` fetches only what is missing. Nothing
    is created when the series list cannot be had. With ``cfg.manifest`` exactly the
    manifest's series are fetched (those the collection lacks are reported as failed) and
    the case descriptions are cut to the rows whose full image it lists.

    Args:
        out_dir: the raw-data folder; keep it between runs to resume.
        cfg: API, selection, retry and parallelism settings.
        seed: unused (the download is deterministic); part of the source signature.
        workers: unused; ``cfg.connections`` threads download in parallel.

    Returns:
        A summary: ``series_expected``, ``series_fetched`` (this run), ``series_present``
        (verified earlier), ``series_verified`` (both), ``series_md5_checked``,
        ``series_failed`` and ``failed`` (``series_uid``, ``patient_id``, ``reason`` each),
        ``patients``, ``files``, ``bytes_expected`` (FileSize of the chosen series),
        ``bytes_downloaded`` (ZIP bytes of the series fetched), ``csv_rows``.

    Raises:
        FileNotFoundError: if ``csv_dir`` lacks one of the four files (named).
        TciaError: if the series list is empty or unobtainable (naming the URL), no series
            matches the selection, a CSV cannot be downloaded, or no series could be had.
    """
    del seed, workers
    out_dir = Path(out_dir)
    if cfg.csv_dir:
        for name in CSV_NAMES:
            if not (Path(cfg.csv_dir) / name).is_file():
                raise InputNotFound(
                    f"csv_dir {cfg.csv_dir} lacks {name} (it must hold the four CBIS-DDSM "
                    f"case-description files: {', '.join(CSV_NAMES)})"
                )
    client = _Client(cfg)
    records = client.list_series()
    listed: list[str] = []
    if cfg.manifest:
        listed = read_tcia_manifest(cfg.manifest)
        wanted = set(listed)
        records = [r for r in records if str(r["SeriesInstanceUID"]) in wanted]
        if not records:
            raise TciaError(
                f"none of the {len(listed)} series of {cfg.manifest} is in collection "
                f"{cfg.collection} at {cfg.base_url}: is it a manifest of this collection?"
            )
    chosen = select_series(records, cfg.abnormality, cfg.max_patients)
    if not chosen:
        raise TciaError(
            f"none of the {len(records)} series of {cfg.collection} match "
            f"abnormality={cfg.abnormality!r} (PatientID prefix Mass-/Calc-)"
        )
    series = plan_series(chosen, cfg.collection)
    numbers = {patient_number(s.patient_id) for s in series}
    filtered = cfg.abnormality != "all" or cfg.max_patients > 0 or bool(cfg.manifest)
    unlisted = sorted(set(listed) - {s.uid for s in series})
    if unlisted:
        log.warning(
            "%d of the %d series of %s are not in the collection's series list (e.g. %s); "
            "they are reported as failed",
            len(unlisted),
            len(listed),
            cfg.manifest,
            unlisted[0],
        )
    log.info(
        "%s: %d of %d series chosen (%d patients, abnormality=%s, max_patients=%d)",
        cfg.collection,
        len(series),
        len(records),
        len(numbers),
        cfg.abnormality,
        cfg.max_patients,
    )

    work = out_dir / WORK_DIR
    with _exclusive(work):
        sources = client.case_csvs(work)
        patients = {n for n in numbers if n is not None} if cfg.max_patients else None
        csv_rows = _write_csvs(
            sources,
            out_dir / "csv",
            cfg.abnormality,
            patients,
            {s.uid for s in series} if cfg.manifest else None,
        )
        if filtered:
            log.info("case descriptions cut to the chosen series: %s", csv_rows)
        state = _State(work / STATE_NAME)
        outcomes, present = _download(client, series, out_dir, work, state)

    fetched = [o for o in outcomes if not o.error]
    failed = [o for o in outcomes if o.error] + [
        _Outcome(
            SeriesInfo(uid, "", None, None, ""),
            error=f"listed in {cfg.manifest} but not in the series list of {cfg.collection}",
        )
        for uid in unlisted
    ]
    summary: dict[str, Any] = {
        "collection": cfg.collection,
        "base_url": cfg.base_url,
        "abnormality": cfg.abnormality,
        "max_patients": cfg.max_patients,
        "manifest": cfg.manifest,
        "manifest_series": len(listed),
        "patients": len(numbers),
        "series_expected": len(series) + len(unlisted),
        "series_fetched": len(fetched),
        "series_present": len(present),
        "series_verified": len(fetched) + len(present),
        "series_md5_checked": sum(o.md5_checked for o in fetched),
        "series_failed": len(failed),
        "failed": [
            {"series_uid": o.series.uid, "patient_id": o.series.patient_id, "reason": o.error}
            for o in sorted(failed, key=lambda o: o.series.uid)
        ],
        "files": sum(len(o.files) for o in fetched)
        + sum(len(state.series[s.uid]["files"]) for s in present),
        "bytes_expected": sum(s.file_size or 0 for s in series),
        "bytes_downloaded": sum(o.nbytes for o in fetched),
        "csv_rows": csv_rows,
    }
    log.info(
        "%s: %d series expected, %d fetched, %d already present, %d verified (%d by MD5), "
        "%d failed; %d bytes downloaded",
        cfg.collection,
        summary["series_expected"],
        summary["series_fetched"],
        summary["series_present"],
        summary["series_verified"],
        summary["series_md5_checked"],
        summary["series_failed"],
        summary["bytes_downloaded"],
    )
    for o in failed:
        log.warning("series %s (%s) failed: %s", o.series.uid, o.series.patient_id, o.error)
    if summary["series_verified"] == 0:
        reasons = "; ".join(f"{o.series.uid}: {o.error}" for o in failed[:3])
        raise TciaError(
            f"no series of {cfg.collection} could be downloaded from {cfg.base_url} "
            f"({len(failed)} failed; e.g. {reasons})"
        )
    return summary


def _download(
    client: _Client, series: list[SeriesInfo], out_dir: Path, work: Path, state: _State
) -> tuple[list[_Outcome], list[SeriesInfo]]:
    """Fetches the series not yet verified, in parallel; records each one verified."""
    present = [s for s in series if state.verified(s.uid, out_dir) is not None]
    done = {s.uid for s in present}
    # A folder recorded for another series (planned differently in an earlier run) is
    # never replaced: such a series goes to a folder named after its full UID.
    taken = {rec["folder"]: uid for uid, rec in state.series.items()}
    todo = [
        s
        if taken.get(s.folder, s.uid) == s.uid
        else dataclasses.replace(s, folder=f"{s.folder}-{_safe_component(s.uid, 'series')}")
        for s in series
        if s.uid not in done
    ]
    tmp = work / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)  # partial files of interrupted series
    tmp.mkdir(parents=True)
    total = sum(s.file_size or 0 for s in todo)
    free = shutil.disk_usage(out_dir).free
    if total > free:
        log.warning("%d bytes to download but only %d free in %s", total, free, out_dir)
    log.info(
        "%d series already verified, %d to download (%d bytes) with %d connections",
        len(present),
        len(todo),
        total,
        client.cfg.connections,
    )
    outcomes: list[_Outcome] = []
    bar = progress(
        total=total, desc=client.cfg.collection, unit="B", unit_scale=True, unit_divisor=1024
    )
    client._bar = bar
    done_count = [0]

    def fetch_and_record(s: SeriesInfo) -> _Outcome:
        # Recorded in the worker, right after installing: a series finished while the
        # main thread is being stopped is still on record.
        outcome = client.fetch_series(s, out_dir, tmp)
        if not outcome.error:
            state.add(
                s.uid,
                {
                    "folder": s.folder,
                    "patient_id": s.patient_id,
                    "files": outcome.files,
                    "md5": outcome.md5_checked,
                },
            )
        with client._lock:
            done_count[0] += 1
            bar.set_postfix_str(f"{done_count[0]}/{len(todo)} series")
        return outcome

    try:
        with ThreadPoolExecutor(client.cfg.connections, thread_name_prefix="tcia") as pool:
            futures = [pool.submit(fetch_and_record, s) for s in todo]
            try:
                for future in as_completed(futures):
                    outcomes.append(future.result())
            except BaseException:
                client.stop.set()
                for future in futures:
                    future.cancel()
                raise
    except KeyboardInterrupt:
        log.info(
            "download stopped: %d of %d series verified and recorded; a rerun fetches "
            "only the others",
            len(state.series.keys() & {s.uid for s in series}),
            len(series),
        )
        raise
    finally:
        state.flush()
        bar.close()
        client._bar = None
        shutil.rmtree(tmp, ignore_errors=True)  # partial files of stopped series
    return outcomes, present
