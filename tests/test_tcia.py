"""Tests of the ``cbis-ddsm`` source against an emulated TCIA NBIA v4 server.

The server (``tcia_server.py``) serves a small synthetic CBIS-DDSM (real CSV columns, DICOM
series joined by SeriesInstanceUID) and injects faults: HTTP 500, dropped connections,
truncated ZIPs, wrong MD5 sums, slow responses, zip-slip entries, an empty or failing
series list. Timeouts and backoff are tiny, so every test runs in about a second.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path

import pytest
from tcia_server import EmulatedNbia, Fault, index_series

from mammocad.convert import convert_dataset
from mammocad.sources import tcia
from mammocad.sources.synthetic import SyntheticConfig, generate_synthetic
from mammocad.sources.tcia import (
    CSV_NAMES,
    TciaConfig,
    TciaError,
    api,
    case_csvs,
    fetch_cbis_ddsm,
    parse_md5_list,
    patient_number,
    plan_series,
    select_series,
)

# Both kinds of finding, no normal breasts (the real collection has none).
DATA = SyntheticConfig(n_patients=3, image_height=256, normal_fraction=0.0, calc_fraction=0.5)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tcia-source")
    generate_synthetic(root, DATA, seed=0, workers=1)
    return root


@pytest.fixture(scope="session")
def server(dataset: Path):
    csv_files = {name: (dataset / "csv" / name).read_bytes() for name in CSV_NAMES}
    with EmulatedNbia(index_series(dataset / "CBIS-DDSM"), csv_files) as nbia:
        yield nbia


@pytest.fixture
def nbia(server: EmulatedNbia, monkeypatch: pytest.MonkeyPatch) -> EmulatedNbia:
    server.reset()
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return server


def config(nbia: EmulatedNbia, **kw) -> TciaConfig:
    base = {
        "base_url": nbia.base_url,
        "csv_urls": nbia.csv_urls(),
        "retries": 2,
        "timeout_s": 5.0,
        "backoff_s": 0.001,
        "backoff_max_s": 0.01,
        "connections": 4,
    }
    base.update(kw)
    return TciaConfig(**base)


def uids(nbia: EmulatedNbia, prefix: str = "", patient: int | None = None) -> list[str]:
    """Series UIDs of the server, by PatientID prefix and/or patient number."""
    return sorted(
        uid
        for uid, s in nbia.series.items()
        if s.record["PatientID"].startswith(prefix)
        and (patient is None or patient_number(s.record["PatientID"]) == patient)
    )


def folder_of(nbia: EmulatedNbia, uid: str) -> str:
    return plan_series([nbia.series[uid].record], "CBIS-DDSM")[0].folder


def md5s(paths) -> list[str]:
    return sorted(hashlib.md5(Path(p).read_bytes()).hexdigest() for p in paths)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (root / "CBIS-DDSM").rglob("*")
        if p.is_file()
    }


def assert_no_leftovers(out: Path) -> None:
    assert not list(out.rglob("*.part"))
    assert not (out / ".tcia" / "tmp").exists()


def failed_uids(summary: dict) -> set[str]:
    return {f["series_uid"] for f in summary["failed"]}


# --------------------------------------------------------------------------------------
# 1. a clean download, end to end through convert


def test_clean_download_verifies_every_file_and_converts(nbia, tmp_path):
    out = tmp_path / "raw"
    n = len(nbia.series)
    summary = fetch_cbis_ddsm(out, config(nbia), seed=0, workers=1)

    assert summary["series_expected"] == summary["series_fetched"] == n
    assert summary["series_verified"] == summary["series_md5_checked"] == n
    assert summary["series_present"] == summary["series_failed"] == 0
    assert summary["files"] == sum(len(s.files) for s in nbia.series.values())
    assert summary["bytes_expected"] == sum(s.record["FileSize"] for s in nbia.series.values())
    assert nbia.image_requests() == n  # one request per series, nothing retried
    state = json.loads((out / ".tcia" / "state.json").read_text())["series"]
    assert set(state) == set(nbia.series)
    for uid, s in nbia.series.items():
        folder = out / state[uid]["folder"]
        assert folder.is_relative_to(out / "CBIS-DDSM" / s.record["PatientID"])
        assert md5s(folder.iterdir()) == md5s(s.files)  # byte-identical, md5 list not kept
    for name in CSV_NAMES:
        assert (out / "csv" / name).read_bytes() == nbia.csv_files[name]
    assert_no_leftovers(out)

    result = convert_dataset(out, tmp_path / "converted", workers=1)
    m = result.metrics
    assert m["full_images_written"] == m["full_images_expected"] > 0
    assert m["rois_written"] == m["rois_expected"] > 0
    assert m["skipped_items"] == 0 and m["stray_files"] == 0


def test_server_without_md5_falls_back_to_get_image(nbia, tmp_path):
    nbia.state.md5 = False
    summary = fetch_cbis_ddsm(tmp_path / "raw", config(nbia, connections=1), 0, 1)
    assert summary["series_fetched"] == len(nbia.series)
    assert summary["series_md5_checked"] == 0
    assert sum(n for (e, _), n in nbia.state.requests.items() if e == "getImage") == len(
        nbia.series
    )


def test_without_md5_a_wrong_file_size_fails_the_series(nbia, tmp_path):
    nbia.state.md5 = False
    bad = uids(nbia)[0]
    nbia.state.file_size_offset[bad] = 1
    summary = fetch_cbis_ddsm(tmp_path / "raw", config(nbia), 0, 1)
    assert failed_uids(summary) == {bad}
    assert "FileSize" in summary["failed"][0]["reason"]
    assert nbia.image_requests(bad) == 3  # retried: a short listing may be transient


# --------------------------------------------------------------------------------------
# 2-6. faults of the transfer


def test_http_500_is_retried_and_a_permanent_500_fails_only_that_series(nbia, tmp_path):
    flaky, broken = uids(nbia)[:2]
    nbia.state.faults = {flaky: Fault("500", times=2), broken: Fault("500")}
    summary = fetch_cbis_ddsm(tmp_path / "raw", config(nbia, retries=2), 0, 1)

    n = len(nbia.series)
    assert nbia.image_requests(flaky) == 3
    assert nbia.image_requests(broken) == 3  # 1 + retries, then given up
    assert summary["series_fetched"] == summary["series_verified"] == n - 1
    assert summary["series_failed"] == 1
    (failure,) = summary["failed"]
    assert failure["series_uid"] == broken
    assert failure["patient_id"] == nbia.series[broken].record["PatientID"]
    assert "gave up after 3 attempts" in failure["reason"] and "HTTP 500" in failure["reason"]
    assert not (tmp_path / "raw" / folder_of(nbia, broken)).exists()
    assert_no_leftovers(tmp_path / "raw")


@pytest.mark.parametrize("kind", ["drop", "drop_chunked"])
def test_connection_dropped_mid_file_is_retried(nbia, tmp_path, kind):
    target = uids(nbia)[0]
    nbia.state.faults = {target: Fault(kind, times=1)}
    summary = fetch_cbis_ddsm(tmp_path / "raw", config(nbia), 0, 1)
    assert summary["series_failed"] == 0
    assert nbia.image_requests(target) == 2
    folder = tmp_path / "raw" / folder_of(nbia, target)
    assert md5s(folder.iterdir()) == md5s(nbia.series[target].files)


def test_truncated_zip_is_retried_then_reported(nbia, tmp_path):
    once, always = uids(nbia)[:2]
    nbia.state.faults = {once: Fault("truncate", times=1), always: Fault("truncate")}
    out = tmp_path / "raw"
    summary = fetch_cbis_ddsm(out, config(nbia), 0, 1)
    assert nbia.image_requests(once) == 2
    assert failed_uids(summary) == {always}
    assert "corrupt or truncated ZIP" in summary["failed"][0]["reason"]
    assert not (out / folder_of(nbia, always)).exists()
    assert md5s((out / folder_of(nbia, once)).iterdir()) == md5s(nbia.series[once].files)
    assert_no_leftovers(out)


def test_wrong_md5_is_retried_then_reported(nbia, tmp_path):
    once, always = uids(nbia)[:2]
    nbia.state.faults = {once: Fault("bad_md5", times=1), always: Fault("bad_md5")}
    out = tmp_path / "raw"
    summary = fetch_cbis_ddsm(out, config(nbia), 0, 1)
    assert nbia.image_requests(once) == 2
    assert failed_uids(summary) == {always}
    assert re.search(r"MD5 mismatch for 00000001\.dcm", summary["failed"][0]["reason"])
    assert not (out / folder_of(nbia, always)).exists()
    assert_no_leftovers(out)


def test_response_slower_than_the_timeout_is_retried(nbia, tmp_path):
    target = uids(nbia, patient=1)[0]
    nbia.state.faults = {target: Fault("slow", times=1)}
    nbia.state.slow_s = 1.0
    cfg = config(nbia, timeout_s=0.4, max_patients=1, retries=3)
    summary = fetch_cbis_ddsm(tmp_path / "raw", cfg, 0, 1)
    assert summary["series_failed"] == 0
    assert nbia.image_requests(target) == 2


# --------------------------------------------------------------------------------------
# 7. resume


def test_rerun_fetches_only_what_is_missing_and_leaves_files_untouched(nbia, tmp_path):
    out = tmp_path / "raw"
    broken = uids(nbia)[3]
    nbia.state.faults = {broken: Fault("500")}
    first = fetch_cbis_ddsm(out, config(nbia, retries=1), 0, 1)
    assert failed_uids(first) == {broken}
    before = snapshot(out)
    assert before

    nbia.reset()  # the server recovers
    (out / ".tcia" / "tmp").mkdir(parents=True)
    (out / ".tcia" / "tmp" / f"{broken}.zip.part").write_bytes(b"half a zip")
    second = fetch_cbis_ddsm(out, config(nbia), 0, 1)
    assert nbia.requested_series() == {broken}
    assert nbia.image_requests() == 1
    assert second["series_fetched"] == 1
    assert second["series_present"] == len(nbia.series) - 1
    assert second["series_verified"] == len(nbia.series)
    after = snapshot(out)
    assert {k: after[k] for k in before} == before  # same inodes, same mtimes
    assert_no_leftovers(out)

    nbia.reset()
    third = fetch_cbis_ddsm(out, config(nbia), 0, 1)
    assert nbia.image_requests() == 0
    assert third["series_present"] == len(nbia.series) and third["series_fetched"] == 0
    assert snapshot(out) == after

    # A recorded file that vanished sends its series (only) back to the server.
    victim = uids(nbia)[0]
    next((out / folder_of(nbia, victim)).iterdir()).unlink()
    nbia.reset()
    fourth = fetch_cbis_ddsm(out, config(nbia), 0, 1)
    assert nbia.requested_series() == {victim}
    assert fourth["series_fetched"] == 1


def test_unexpected_error_keeps_what_was_verified(nbia, tmp_path, monkeypatch):
    out = tmp_path / "raw"
    real = api._extract
    calls = []

    def flaky_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "_extract", flaky_disk)
    with pytest.raises(OSError, match="No space left"):
        fetch_cbis_ddsm(out, config(nbia, connections=2), 0, 1)
    monkeypatch.setattr(api, "_extract", real)
    state = out / ".tcia" / "state.json"
    recorded = json.loads(state.read_text())["series"] if state.exists() else {}
    assert len(recorded) < len(nbia.series)
    for rec in recorded.values():
        for name, size in rec["files"].items():
            assert (out / rec["folder"] / name).stat().st_size == size

    nbia.reset()
    summary = fetch_cbis_ddsm(out, config(nbia), 0, 1)
    assert nbia.requested_series() == set(nbia.series) - set(recorded)
    assert summary["series_present"] == len(recorded)
    assert summary["series_verified"] == len(nbia.series)


# --------------------------------------------------------------------------------------
# 8. zip-slip


@pytest.mark.parametrize("kind", ["zip_slip", "zip_absolute", "zip_symlink"])
def test_unsafe_zip_entries_are_refused(nbia, tmp_path, kind):
    target = uids(nbia, patient=1)[0]
    nbia.state.faults = {target: Fault(kind)}
    outside = Path("/tmp/mammocad-evil.dcm")
    existed = outside.exists()
    out = tmp_path / "deep" / "raw"
    summary = fetch_cbis_ddsm(out, config(nbia, max_patients=1), 0, 1)
    assert failed_uids(summary) == {target}
    assert "unsafe ZIP entry" in summary["failed"][0]["reason"]
    assert nbia.image_requests(target) == 1  # refused, not retried
    assert not (out / folder_of(nbia, target)).exists()
    assert not [p for p in tmp_path.rglob("*") if "evil" in p.name or p.is_symlink()]
    assert outside.exists() == existed
    assert_no_leftovers(out)


def test_member_parts_refuses_escapes():
    def info(name: str, mode: int = 0o100644) -> zipfile.ZipInfo:
        i = zipfile.ZipInfo(name)
        i.external_attr = mode << 16
        return i

    assert tcia.member_parts(info("00000001.dcm")) == ("00000001.dcm",)
    assert tcia.member_parts(info("./a/b.dcm")) == ("a", "b.dcm")
    for bad in ("../x.dcm", "a/../../x.dcm", "/etc/x.dcm", "C:/x.dcm", "..\\x.dcm", ""):
        with pytest.raises(ValueError, match="unsafe ZIP entry"):
            tcia.member_parts(info(bad))
    with pytest.raises(ValueError, match="symbolic link"):
        tcia.member_parts(info("x.dcm", 0o120777))


# --------------------------------------------------------------------------------------
# 9. the series list


@pytest.mark.parametrize(
    ("mode", "message"),
    [("empty", "returned no series"), ("500", "HTTP 500"), ("html", "did not return JSON")],
)
def test_unusable_series_list_is_an_error_and_creates_nothing(nbia, tmp_path, mode, message):
    nbia.state.series_mode = mode
    out = tmp_path / "raw"
    with pytest.raises(TciaError, match=message) as err:
        fetch_cbis_ddsm(out, config(nbia), 0, 1)
    assert nbia.base_url + "getSeries?Collection=CBIS-DDSM" in str(err.value)
    assert not out.exists()
    assert nbia.image_requests() == 0


def test_unknown_collection_is_an_error(nbia, tmp_path):
    with pytest.raises(TciaError, match="no series for collection 'CBIS-DDSM-X'"):
        fetch_cbis_ddsm(tmp_path / "raw", config(nbia, collection="CBIS-DDSM-X"), 0, 1)


def test_everything_failing_is_an_error_but_keeps_the_csvs(nbia, tmp_path):
    nbia.state.default_fault = Fault("500")
    out = tmp_path / "raw"
    with pytest.raises(TciaError, match="no series of CBIS-DDSM could be downloaded"):
        fetch_cbis_ddsm(out, config(nbia, max_patients=1, retries=1), 0, 1)
    assert not (out / "CBIS-DDSM").exists()
    assert_no_leftovers(out)


# --------------------------------------------------------------------------------------
# 10. choosing series


def test_select_series_by_abnormality_and_patient_number():
    def rec(uid: str, subject: str) -> dict:
        return {"SeriesInstanceUID": uid, "PatientID": subject}

    records = [
        rec("1.1", "Mass-Training_P_00010_LEFT_CC"),
        rec("1.2", "Mass-Training_P_00010_LEFT_CC_1"),
        rec("1.3", "Calc-Test_P_00002_RIGHT_MLO"),
        rec("1.4", "Calc-Test_P_00002_RIGHT_MLO_1"),
        rec("1.5", "Mass-Test_P_00002_LEFT_CC"),
        rec("1.6", "Mass-Training_P_00100_LEFT_MLO"),
        rec("1.7", "Calc-Training_P_00009_LEFT_MLO_2"),
        rec("1.1", "Mass-Training_P_00010_LEFT_CC"),  # a duplicate entry
    ]
    pick = lambda **kw: [r["SeriesInstanceUID"] for r in select_series(records, **kw)]  # noqa: E731
    assert pick() == ["1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7"]
    assert pick(abnormality="mass") == ["1.1", "1.2", "1.5", "1.6"]
    assert pick(abnormality="calc") == ["1.3", "1.4", "1.7"]
    # Numeric order: P_00002 < P_00009 < P_00010 < P_00100, mass and calc alike.
    assert pick(max_patients=1) == ["1.3", "1.4", "1.5"]
    assert pick(max_patients=3) == ["1.1", "1.2", "1.3", "1.4", "1.5", "1.7"]
    assert pick(abnormality="mass", max_patients=2) == ["1.1", "1.2", "1.5"]


def test_abnormality_filter_fetches_only_mass_series_and_cuts_the_csvs(nbia, tmp_path):
    out = tmp_path / "raw"
    summary = fetch_cbis_ddsm(out, config(nbia, abnormality="mass"), 0, 1)
    mass = set(uids(nbia, "Mass-"))
    assert mass and nbia.requested_series() == mass
    assert summary["series_expected"] == summary["series_fetched"] == len(mass)
    for name in CSV_NAMES:
        lines = (out / "csv" / name).read_text().splitlines()
        if name.startswith("calc"):
            assert len(lines) == 1  # header only
    assert summary["csv_rows"]["calc_case_description_train_set.csv"] == 0


def test_max_patients_fetches_whole_patients_and_the_subset_converts(nbia, tmp_path):
    out = tmp_path / "raw"
    summary = fetch_cbis_ddsm(out, config(nbia, max_patients=1), 0, 1)
    mine = set(uids(nbia, patient=1))
    assert mine and nbia.requested_series() == mine
    # Full-image and ROI series (subjects ..._CC and ..._CC_1) of the one patient.
    subjects = {nbia.series[u].record["PatientID"] for u in mine}
    assert any(s.endswith(("_CC", "_MLO")) for s in subjects)
    assert any(re.search(r"_\d+$", s) for s in subjects)
    assert summary["patients"] == 1
    rows = sum(summary["csv_rows"].values())
    assert rows > 0
    for name in CSV_NAMES:
        text = (out / "csv" / name).read_text()
        assert "P_00002" not in text and "P_00003" not in text
    m = convert_dataset(out, tmp_path / "converted", workers=1).metrics
    assert m["skipped_items"] == 0 and m["csv_rows"] == rows
    assert m["full_images_written"] == m["full_images_expected"] > 0


# --------------------------------------------------------------------------------------
# 11. case-description files


def test_csv_dir_is_copied_without_downloading(nbia, dataset, tmp_path):
    out = tmp_path / "raw"
    fetch_cbis_ddsm(out, config(nbia, csv_dir=str(dataset / "csv"), max_patients=1), 0, 1)
    assert not [k for k in nbia.state.requests if k[0] == "csv"]
    # Cut to the one patient, every kept row whole (embedded newlines and spaces intact).
    for name in CSV_NAMES:
        source = (dataset / "csv" / name).read_text()
        for line in (out / "csv" / name).read_text().split("P_0000")[1:]:
            assert line.startswith("1")
        assert (out / "csv" / name).read_text().splitlines()[0] == source.splitlines()[0]


def test_csv_dir_copy_is_byte_identical_without_filters(nbia, dataset, tmp_path):
    out = tmp_path / "raw"
    fetch_cbis_ddsm(out, config(nbia, csv_dir=str(dataset / "csv")), 0, 1)
    for name in CSV_NAMES:
        assert (out / "csv" / name).read_bytes() == (dataset / "csv" / name).read_bytes()


def test_csv_dir_missing_a_file_is_an_error_before_any_request(nbia, dataset, tmp_path):
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    for name in CSV_NAMES[:3]:
        (csv_dir / name).write_bytes((dataset / "csv" / name).read_bytes())
    out = tmp_path / "raw"
    with pytest.raises(FileNotFoundError, match=CSV_NAMES[3]):
        fetch_cbis_ddsm(out, config(nbia, csv_dir=str(csv_dir)), 0, 1)
    assert not out.exists()
    assert not nbia.state.requests


def test_csv_url_failure_names_the_url(nbia, tmp_path):
    urls = list(nbia.csv_urls())
    urls[0] = urls[0].replace("/csv/", "/csv/missing/")
    with pytest.raises(TciaError, match=re.escape(urls[0])):
        fetch_cbis_ddsm(tmp_path / "raw", config(nbia, csv_urls=tuple(urls)), 0, 1)
    assert nbia.image_requests() == 0  # the CSVs come first: no 164 GB before a bad URL


def test_csv_that_is_not_a_case_description_is_refused():
    with pytest.raises(TciaError, match="not a CBIS-DDSM case-description CSV"):
        case_csvs._check_csv_header(b"<!DOCTYPE html><html>moved</html>", "https://example/x.csv")


# --------------------------------------------------------------------------------------
# units


def test_parse_md5_list_reads_nbia_format_and_variants():
    a, b = "0" * 32, "ABCDEF0123456789ABCDEF0123456789"
    assert parse_md5_list(f"Filename,MD5Hash\n00000001.dcm,{a}\n00000002.dcm,{b}\n") == {
        "00000001.dcm": a,
        "00000002.dcm": b.lower(),
    }
    assert parse_md5_list(f"MD5Hash,Filename\r\n{a},x.dcm\r\n\r\n") == {"x.dcm": a}
    assert parse_md5_list(f"x.dcm,{a}\n") == {"x.dcm": a}
    with pytest.raises(ValueError, match="not an MD5 digest"):
        parse_md5_list("Filename,MD5Hash\nx.dcm,1234\n")


def test_extract_series_checks_count_and_listing(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("1-1.dcm", b"abc")
        zf.writestr(
            "md5hashes.csv", f"Filename,MD5Hash\n1-1.dcm,{hashlib.md5(b'abc').hexdigest()}\n"
        )
    archive = tmp_path / "s.zip"
    archive.write_bytes(buf.getvalue())
    info = tcia.SeriesInfo("1.2", "Mass-Test_P_00001_LEFT_CC", 1, 3, "x")
    assert tcia.extract_series(archive, tmp_path / "ok", info) == {"1-1.dcm": 3}
    with pytest.raises(RuntimeError, match="getSeries says 2"):
        tcia.extract_series(archive, tmp_path / "count", tcia.SeriesInfo("1.2", "p", 2, 3, "x"))


def test_config_validation():
    cfg = TciaConfig(base_url="http://127.0.0.1:1/api", csv_urls=list(TciaConfig().csv_urls))
    assert cfg.base_url.endswith("/api/") and isinstance(cfg.csv_urls, tuple)
    assert {os.path.basename(u) for u in TciaConfig().csv_urls} == set(CSV_NAMES)
    with pytest.raises(ValueError, match="abnormality"):
        TciaConfig(abnormality="normal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="calc_case_description_test_set.csv"):
        TciaConfig(csv_urls=TciaConfig().csv_urls[:3])
    TciaConfig(csv_urls=(), csv_dir="/somewhere")  # a csv_dir needs no URLs
    with pytest.raises(ValueError, match="connections"):
        TciaConfig(connections=0)
    with pytest.raises(ValueError, match="base_url"):
        TciaConfig(base_url="ftp://x/")


def test_download_stage_resumes_from_download_dir(nbia: EmulatedNbia, tmp_path: Path) -> None:
    """Through the source registry: the cache outlives data/raw, so a rerun fetches nothing."""
    from mammocad.sources import DataConfig, download

    cfg = DataConfig(
        source="cbis-ddsm",
        download_dir=str(tmp_path / "downloads"),
        sections={"cbis_ddsm": config(nbia)},
    )
    first = download(tmp_path / "raw", cfg, seed=0, workers=1)
    requested = nbia.image_requests()
    assert first["series_verified"] == first["series_expected"] > 0
    assert requested == first["series_expected"]
    assert not (tmp_path / "raw/.tcia").exists()  # download state stays in the cache

    second = download(tmp_path / "raw", cfg, seed=0, workers=1)  # DVC reruns the stage
    assert nbia.image_requests() == requested  # nothing fetched again
    assert second["series_present"] == first["series_expected"]
    result = convert_dataset(tmp_path / "raw", tmp_path / "conv", workers=1)
    assert set(result.manifest["dataset"]) == {"cbis-ddsm"}
    assert result.metrics["skipped_items"] == 0


def test_manifest_fetches_exactly_its_series(nbia, tmp_path):
    # One patient's full images only: its ROI series are not in the manifest.
    chosen = [
        u for u in uids(nbia, patient=2) if not nbia.series[u].record["PatientID"][-1].isdigit()
    ]
    manifest = tmp_path / "basket.tcia"
    manifest.write_text(
        "\ufeffdownloadServerUrl=https://example.org/\nmanifestVersion=3.0\n"
        "ListOfSeriesToDownload=\n" + "\n".join([*chosen, "1.2.840.99999"]) + "\n\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    summary = fetch_cbis_ddsm(out, config(nbia, manifest=str(manifest)))
    assert nbia.requested_series() == set(chosen)
    assert (
        summary["series_fetched"] == len(chosen) and summary["manifest_series"] == len(chosen) + 1
    )
    assert [f["series_uid"] for f in summary["failed"]] == ["1.2.840.99999"]
    assert "not in the series list" in summary["failed"][0]["reason"]
    # The case descriptions keep the rows whose full image the manifest lists.
    for name in CSV_NAMES:
        with open(out / "csv" / name) as fh:
            rows = list(csv.DictReader(fh))
        assert {patient_number(r["patient_id"]) for r in rows} <= {2}
    assert sum(summary["csv_rows"].values()) > 0
