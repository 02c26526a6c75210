"""The ``cbis-ddsm`` source from a copy on disk (``data.cbis_ddsm.root``) and ``.tcia`` manifests.

A tiny NBIA Data Retriever folder is written by the synthetic source
(:func:`write_retriever_download`): ``CBIS-DDSM/<subject>/<study>/<series>/1-N.dcm``,
``metadata.csv``, files carrying the identifying fields TCIA's files carry. Bad inputs are
made from it: a root that does not exist or holds no DICOM, another collection, unknown
series, duplicate SOP instances, unreadable files, missing series.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pydicom
import pytest
import yaml
from dicom_factory import make_dataset, save

from mammocad.convert import convert_dataset
from mammocad.deid import identifying_fields
from mammocad.errors import InputError, InputNotFound
from mammocad.sources.retriever import index, linking
from mammocad.sources.retriever.fetch import fetch_from_root
from mammocad.sources.retriever.linking import UNKNOWN_SERIES
from mammocad.sources.synthetic import SyntheticConfig, write_retriever_download
from mammocad.sources.tcia import CSV_NAMES, TciaConfig
from mammocad.sources.tcia.manifest import read_tcia_manifest

REPO = Path(__file__).resolve().parents[1]
# One normal patient's breasts give series the case descriptions do not name (as a
# retriever folder holding more than the CSVs describe).
DATA = SyntheticConfig(n_patients=4, image_height=256, normal_fraction=0.25, calc_fraction=0.3)


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("retriever") / "nbia"
    write_retriever_download(root, DATA, seed=3, workers=1)
    return root


@pytest.fixture
def nbia(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of the retriever folder (tests damage it)."""
    root = tmp_path / "nbia"
    shutil.copytree(pristine, root)
    return root


def _fetch(root: Path, tmp: Path, name: str = "raw", **kw) -> dict:
    return fetch_from_root(tmp / name, TciaConfig(root=str(root), **kw), tmp / "dl", workers=1)


def _series_dirs(root: Path, description: str) -> list[Path]:
    return sorted(p for p in root.glob("CBIS-DDSM/*/*/*") if description in p.name)


def test_root_joins_by_header_links_clean_copies_and_converts(nbia, tmp_path):
    before = _digest(nbia)
    # Folder names mean nothing: two series folders swap names and the join still holds.
    a, b = _series_dirs(nbia, "ROI mask images")[:2]
    a.rename(a.with_name("swap")), b.rename(a), a.with_name("swap").rename(b)
    before = _digest(nbia)

    summary = _fetch(nbia, tmp_path)

    assert summary["csv_from"] == "root"
    assert summary["series_linked"] == summary["series_needed"] > 0
    assert summary["series_missing"] == 0
    # The normal breasts' series are not in the official CSVs: ignored with a count.
    assert summary["series_extra"] == 4 and summary["files_extra"] == 4
    # TCIA-like files carry PatientName etc.: every one is written as a clean copy.
    assert summary["link_methods"] == {"deidentified_copy": summary["files_linked"]}
    raw = tmp_path / "raw"
    for path in raw.rglob("*.dcm"):
        assert identifying_fields(pydicom.dcmread(path, stop_before_pixels=True)) == []
    assert _digest(nbia) == before  # the user's folder is never written to
    skipped = pd.read_csv(raw / "root_skipped.csv", keep_default_na=False)
    assert set(skipped["reason"]) == {UNKNOWN_SERIES}

    result = convert_dataset(raw, tmp_path / "converted", workers=1)
    assert result.metrics["skipped_items"] == 0
    assert result.metrics["full_images_written"] == result.metrics["full_images_expected"]


def test_clean_files_are_hard_linked(tmp_path):
    root = tmp_path / "nbia"
    write_retriever_download(root, DATA, seed=3, workers=1, tcia_headers=False)
    summary = _fetch(root, tmp_path)
    assert summary["link_methods"] == {"hardlink": summary["files_linked"]}
    linked = next((tmp_path / "raw").rglob("1-1.dcm"))
    source = root / linked.relative_to(tmp_path / "raw")
    assert os.stat(linked).st_ino == os.stat(source).st_ino


def test_links_fall_back_to_symlinks_then_copies(nbia, tmp_path, monkeypatch):
    def no_link(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(linking.os, "link", no_link)
    linker = linking.Linker()
    src = next(nbia.rglob("1-1.dcm"))
    linker.install(src, tmp_path / "a" / "x.dcm", identifying=False)
    assert (tmp_path / "a" / "x.dcm").is_symlink()
    monkeypatch.setattr(linking.os, "symlink", no_link)
    linker.install(src, tmp_path / "b" / "x.dcm", identifying=False)
    assert (tmp_path / "b" / "x.dcm").read_bytes() == src.read_bytes()
    assert linker.counts == {"symlink": 1, "copy": 1}


def test_headers_are_cached_and_pixels_never_read(nbia, tmp_path, monkeypatch):
    calls = []
    real = pydicom.dcmread

    def spy(path, *args, **kwargs):
        calls.append(kwargs.get("stop_before_pixels", False))
        return real(path, *args, **kwargs)

    scan = index.scan_root(nbia.resolve(), CSV_NAMES)
    with monkeypatch.context() as patch:
        patch.setattr("mammocad.dicom.header.pydicom.dcmread", spy)
        entries, counts = index.index_headers(
            nbia.resolve(), scan, tmp_path / "dl" / "cbis-ddsm-root"
        )
    assert len(calls) == len(entries) == counts["headers_read"] > 0
    assert all(calls)  # every header read stopped before the pixel data

    first = _fetch(nbia, tmp_path, "raw1")  # the index above is reused
    assert first["headers_read"] == 0 and first["headers_cached"] == first["files_seen"]

    touched = next(nbia.rglob("1-1.dcm"))
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    second = _fetch(nbia, tmp_path, "raw2")
    assert second["headers_read"] == 1


def test_missing_series_are_listed_with_reasons_and_count_in_convert(nbia, tmp_path):
    gone = _series_dirs(nbia, "ROI mask images")[0]
    uid = pydicom.dcmread(next(gone.glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID
    shutil.rmtree(gone)

    summary = _fetch(nbia, tmp_path)
    assert summary["series_missing"] == 1
    missing = pd.read_csv(tmp_path / "raw" / "missing_series.csv", keep_default_na=False)
    assert list(missing["series_uid"]) == [uid]
    assert "metadata.csv lists it at CBIS-DDSM/" in missing["reason"].iloc[0]

    result = convert_dataset(tmp_path / "raw", tmp_path / "converted", workers=1)
    reasons = list(result.skipped["reason"])
    assert any(r.startswith(f"series {uid} not found under raw (metadata.csv") for r in reasons)
    assert result.metrics["skipped_by_reason"] == {"series_not_found": 1}


def test_unknown_duplicate_and_unreadable_files_are_recorded_skips(nbia, tmp_path):
    full = _series_dirs(nbia, "full mammogram images")[0] / "1-1.dcm"
    # A second copy of one SOP instance, complete, and a truncated one: the good file stays.
    shutil.copy2(full, nbia / "CBIS-DDSM" / "copy.dcm")
    (nbia / "CBIS-DDSM" / "a-truncated.dcm").write_bytes(full.read_bytes()[:-5000])
    (nbia / "CBIS-DDSM" / "garbage.dcm").write_bytes(b"not a dicom file at all")
    save(make_dataset(pydicom_pixels(), patient_id="Mass-Training_P_09999_LEFT_CC"),
         nbia / "CBIS-DDSM" / "stranger" / "1-1.dcm")  # fmt: skip

    summary = _fetch(nbia, tmp_path)

    assert summary["series_missing"] == 0
    assert summary["files_duplicate"] == 2 and summary["files_unreadable"] == 1
    assert summary["series_extra"] == 5  # four normal views and the stranger
    skipped = pd.read_csv(tmp_path / "raw" / "root_skipped.csv", keep_default_na=False)
    why = dict(zip(skipped["file"], skipped["reason"], strict=True))
    assert why["CBIS-DDSM/garbage.dcm"].startswith("not a DICOM file")
    assert why["CBIS-DDSM/stranger/1-1.dcm"] == UNKNOWN_SERIES
    assert why["CBIS-DDSM/a-truncated.dcm"].startswith("duplicate SOPInstanceUID of ")
    kept = {p.relative_to(tmp_path / "raw").as_posix() for p in (tmp_path / "raw").rglob("*.dcm")}
    assert "CBIS-DDSM/a-truncated.dcm" not in kept
    assert full.relative_to(nbia).as_posix() in kept or "CBIS-DDSM/copy.dcm" in kept
    assert len(kept & {full.relative_to(nbia).as_posix(), "CBIS-DDSM/copy.dcm"}) == 1


def pydicom_pixels():
    import numpy as np

    return np.full((300, 200), 1000, dtype=np.uint16)


def test_bad_roots_are_one_line_errors(nbia, tmp_path):
    with pytest.raises(InputNotFound, match="does not exist"):
        _fetch(tmp_path / "nowhere", tmp_path)
    empty = tmp_path / "empty"
    (empty / "CBIS-DDSM").mkdir(parents=True)
    (empty / "CBIS-DDSM" / "readme.txt").write_text("nothing here")
    with pytest.raises(InputError, match="holds no DICOM file"):
        _fetch(empty, tmp_path)
    # Another collection: readable DICOMs, none of the series the case descriptions name.
    other = tmp_path / "other"
    for i in range(3):
        save(make_dataset(pydicom_pixels(), patient_id=f"LIDC-IDRI-000{i}"),
             other / "LIDC-IDRI" / f"LIDC-IDRI-000{i}" / "1-1.dcm")  # fmt: skip
    with pytest.raises(InputError, match="is it a CBIS-DDSM download") as err:
        _fetch(other, tmp_path, csv_dir=str(nbia / "csv"))
    assert "LIDC-IDRI-0000" in str(err.value)
    only_garbage = tmp_path / "garbage"
    (only_garbage / "x").mkdir(parents=True)
    (only_garbage / "x" / "1-1.dcm").write_bytes(b"\0" * 300)
    with pytest.raises(InputError, match="holds no readable DICOM file"):
        _fetch(only_garbage, tmp_path, csv_dir=str(nbia / "csv"))


def test_csvs_from_csv_dir_and_selection(tmp_path):
    root, csvs = tmp_path / "nbia", tmp_path / "csvs"
    write_retriever_download(root, DATA, seed=3, workers=1, csv_dir=csvs)
    assert sorted(p.name for p in csvs.iterdir()) == sorted(CSV_NAMES)
    summary = _fetch(root, tmp_path, csv_dir=str(csvs), abnormality="mass", max_patients=2)
    assert summary["csv_from"] == "csv_dir"
    rows = summary["csv_rows"]
    assert rows["calc_case_description_train_set.csv"] == 0
    assert rows["calc_case_description_test_set.csv"] == 0
    table = pd.concat(pd.read_csv(tmp_path / "raw" / "csv" / n) for n in CSV_NAMES)
    assert table["patient_id"].nunique() <= 2
    assert summary["series_missing"] == 0


def _stage(project: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    env.pop("MAMMOCAD_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "stages.download"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("case", ["absent", "no-dicom"])
def test_bad_root_through_the_stage_is_one_line(tmp_path, case):
    root = tmp_path / "root"
    if case == "no-dicom":
        root.mkdir()
        (root / "notes.txt").write_text("x")
    project = tmp_path / "project"
    project.mkdir()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["source"] = "cbis-ddsm"
    params["data"]["cbis_ddsm"]["root"] = str(root)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    proc = _stage(project)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("download: ")]
    assert len(lines) == 1 and "data.cbis_ddsm.root" in lines[0], proc.stderr[-2000:]
    assert not (project / "data" / "raw").exists()


# --------------------------------------------------------------------------------------
# .tcia manifests


MANIFEST_HEAD = (
    "downloadServerUrl=https://nbia.cancerimagingarchive.net/nbia-download/servlet/"
    "DownloadServlet\nincludeAnnotation=true\nnoOfrRetry=4\n"
    "databasketId=manifest-ZkhPvrLo5216730872708713142.tcia\nmanifestVersion=3.0\n"
    "ListOfSeriesToDownload=\n"
)


def test_manifest_is_read_with_bom_and_blank_lines(tmp_path):
    path = tmp_path / "m.tcia"
    path.write_text("\ufeff" + MANIFEST_HEAD + "1.2.3\n\n 1.2.4 \n", encoding="utf-8")
    assert read_tcia_manifest(path) == ["1.2.3", "1.2.4"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("1.2.3\n1.2.3\n", "line 8: series 1.2.3 already listed on line 7"),
        ("1.2.3\n<html>\n", "line 8: not a SeriesInstanceUID"),
        ("", "lists no series"),
    ],
)
def test_bad_manifests_name_the_line(tmp_path, body, message):
    path = tmp_path / "m.tcia"
    path.write_text(MANIFEST_HEAD + body)
    with pytest.raises(InputError, match=message):
        read_tcia_manifest(path)


def test_manifest_without_list_and_absent_manifest(tmp_path):
    path = tmp_path / "m.tcia"
    path.write_text("downloadServerUrl=x\n1.2.3\n")
    with pytest.raises(InputError, match="ListOfSeriesToDownload"):
        read_tcia_manifest(path)
    with pytest.raises(InputNotFound):
        read_tcia_manifest(tmp_path / "absent.tcia")


def test_manifest_excludes_root_and_selection():
    with pytest.raises(ValueError, match="set one of them"):
        TciaConfig(root="/x", manifest="/y.tcia")
    with pytest.raises(ValueError, match="leave abnormality"):
        TciaConfig(manifest="/y.tcia", abnormality="mass")
