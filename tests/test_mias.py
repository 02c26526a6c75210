"""Tests for the mini-MIAS source on hand-built archives and the real 60-film sample."""

from __future__ import annotations

import hashlib
import io
import math
import re
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
from shared_data import require, shared_dir

from mammocad.codecs.pgm import PgmError, read_pgm
from mammocad.convert import convert_dataset
from mammocad.io import read_png
from mammocad.sources.mias import (
    MiasConfig,
    MiasRow,
    disc_mask,
    download_archive,
    extract_archive,
    fetch_mias,
    parse_info,
    patient_id,
    split_patients,
)


@pytest.fixture(scope="module")
def sample_archive() -> Path:
    """The real 60-film sample: skipped where absent (a user's clone), required in CI."""
    return require(
        shared_dir() / "data" / "mias-sample" / "mias-sample.tar.gz", "mini-MIAS sample"
    )


# --- Info.txt ---------------------------------------------------------------------------------

# Real rows of Info.txt and what they mean; rows/columns of the centre use row = 1024 - y.
ROW_TABLE = [
    # line, ref, tissue, class, severity, x, y, radius, (row, col), patient, side
    ("mdb001 G CIRC B 535 425 197", "G", "CIRC", "B", 535, 425, 197, (599, 535), 1, "RIGHT"),
    ("mdb002 G CIRC B 522 280 69", "G", "CIRC", "B", 522, 280, 69, (744, 522), 1, "LEFT"),
    ("mdb005 F CIRC B 477 133 30", "F", "CIRC", "B", 477, 133, 30, (891, 477), 3, "RIGHT"),
    ("mdb005 F CIRC B 500 168 26", "F", "CIRC", "B", 500, 168, 26, (856, 500), 3, "RIGHT"),
    ("mdb144 F MISC M 313 540 27", "F", "MISC", "M", 313, 540, 27, (484, 313), 72, "LEFT"),
    ("mdb144 F MISC B 233 994 29", "F", "MISC", "B", 233, 994, 29, (30, 233), 72, "LEFT"),
    ("mdb212 G CALC B 687 882 3", "G", "CALC", "B", 687, 882, 3, (142, 687), 106, "LEFT"),
    ("mdb216 D CALC M *NOTE 3* ", "D", "CALC", "M", None, None, None, None, 108, "LEFT"),
    ("mdb059 F CIRC B", "F", "CIRC", "B", None, None, None, None, 30, "RIGHT"),
    ("mdb003 D NORM ", "D", "NORM", None, None, None, None, None, 2, "RIGHT"),
    ("mdb322 D NORM", "D", "NORM", None, None, None, None, None, 161, "LEFT"),
]


@pytest.mark.parametrize(
    "line, tissue, klass, severity, x, y, radius, centre, patient, side", ROW_TABLE
)
def test_parse_info_rows(line, tissue, klass, severity, x, y, radius, centre, patient, side):
    (row,) = parse_info(line)
    assert row == MiasRow(line.split()[0], tissue, klass, severity, x, y, radius, line=1)
    assert row.centre() == centre
    assert row.patient_number == patient
    assert row.side == side
    assert row.has_coordinates is (radius is not None)
    assert row.pathology == {None: "NORMAL", "B": "BENIGN", "M": "MALIGNANT"}[severity]
    assert row.kind == {"NORM": "normal", "CALC": "calcification"}.get(klass, "mass")


def test_parse_info_tolerates_header_blank_lines_and_whitespace():
    text = (
        "              MAMMOGRAPHIC IMAGE ANALYSIS SOCIETY\r\n"
        "3rd column: Class of abnormality present:\r\n"
        "                F - Fatty \r\n"
        "                NORM - Normal\r\n"
        "\r\n"
        "\t  mdb001   G CIRC\tB 535  425 197  \r\n"
        "   \r\n"
        "MDB002 g norm\r\n"
        "=================================================================\r\n"
    )
    rows = parse_info(text)
    assert [(r.ref, r.tissue, r.abnormality_class, r.x, r.line) for r in rows] == [
        ("mdb001", "G", "CIRC", 535, 6),
        ("mdb002", "G", "NORM", None, 8),
    ]
    # A centre in an image of another height is counted from its bottom edge.
    assert rows[0].centre(height=512) == (512 - 425, 535)


@pytest.mark.parametrize(
    "bad, why",
    [
        ("mdb001 G CIRC B 535 425", "three coordinates"),
        ("mdb001 G CIRC B 535 425 197 12", "three coordinates"),
        ("mdb001 X CIRC B 535 425 197", "unknown tissue"),
        ("mdb001 G BLOB B 535 425 197", "unknown class"),
        ("mdb001 G CIRC Q 535 425 197", "unknown severity"),
        ("mdb001 G CIRC", "needs a severity"),
        ("mdb001 G", "expected 'ref tissue class"),
        ("mdb003 D NORM B", "NORM row has no severity"),
        ("mdb001 G CIRC B 535 4x5 197", "whole numbers"),
        ("mdb001 G CIRC B 535 -425 197", "not be negative"),
        ("mdb01 G NORM", "bad film reference"),
        ("mbd001 G NORM", "bad film reference"),
    ],
)
def test_parse_info_malformed_line_names_number_and_content(bad, why):
    text = f"header line\n\n{bad}\nmdb004 D NORM\n"
    with pytest.raises(ValueError, match=re.escape(why)) as info:
        parse_info(text)
    assert "line 3" in str(info.value)
    assert bad.strip() in str(info.value)


def test_patient_ids_and_split_draw():
    rows = parse_info(
        "\n".join(f"mdb{n:03d} G {'CIRC M 1 1 1' if n % 7 == 0 else 'NORM'}" for n in range(1, 81))
    )
    assert patient_id(rows[0].patient_number) == "MIAS_P_001"
    split = split_patients(rows, 0.25, seed=3)
    assert list(split) == list(range(1, 41))
    assert split == split_patients(rows, 0.25, seed=3)  # seeded
    assert split != split_patients(rows, 0.25, seed=4)
    malignant = {r.patient_number for r in rows if r.severity == "M"}
    assert len(malignant) == 11
    # Stratified: round(0.25 × 11) = 3 malignant and round(0.25 × 29) = 7 normal patients.
    assert sum(split[p] == "test" for p in malignant) == 3
    assert sum(v == "test" for p, v in split.items() if p not in malignant) == 7
    assert set(split_patients(rows, 0.0, seed=3).values()) == {"train"}
    assert set(split_patients(rows, 1.0, seed=3).values()) == {"test"}


# --- PGM and geometry -------------------------------------------------------------------------


def pgm_bytes(pixels: np.ndarray, maxval: int = 255, comment: bool = False) -> bytes:
    note = b"# made by a test\n" if comment else b""
    head = b"P5\n" + note + f"{pixels.shape[1]} {pixels.shape[0]}\n{maxval}\n".encode()
    return head + pixels.astype(np.uint8).tobytes()


def test_read_pgm_value_table():
    pixels = np.array([[0, 1, 2], [253, 254, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(read_pgm(pgm_bytes(pixels)), pixels)
    np.testing.assert_array_equal(read_pgm(pgm_bytes(pixels, comment=True)), pixels)
    small = np.array([[0, 15]], dtype=np.uint8)
    np.testing.assert_array_equal(read_pgm(pgm_bytes(small, maxval=15)), small)  # kept as is
    for data, reason in [
        (pgm_bytes(pixels)[:-1], "truncated PGM: 5 of 6"),
        (b"P2\n3 2\n255\n0 1 2 3 4 5", "not a binary PGM"),
        (b"P5\n3 2\n65535\n" + bytes(12), "expected an 8-bit image"),
        (b"P5\n3", "truncated PGM header"),
        (b"P5\n3 x\n255\n" + bytes(6), "bad PGM header values"),
        (pgm_bytes(np.array([[0, 16]]), maxval=15), "above maxval"),
    ]:
        with pytest.raises(PgmError, match=re.escape(reason)):
            read_pgm(data)


def test_disc_mask_value_table():
    mask = disc_mask((7, 7), 3, 3, 1)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    assert np.argwhere(mask).tolist() == [[2, 3], [3, 2], [3, 3], [3, 4], [4, 3]]


def test_config_validation():
    with pytest.raises(ValueError, match="roi_margin"):
        MiasConfig(roi_margin=0.5)
    with pytest.raises(ValueError, match="test_fraction"):
        MiasConfig(test_fraction=1.5)
    with pytest.raises(ValueError, match="sha256"):
        MiasConfig(sha256="abc")
    assert MiasConfig().url.endswith("/all-mias.tar.gz")


# --- hand-built archives ----------------------------------------------------------------------

TINY = 256  # the smallest square full image the minimum-image rule accepts


def tar_bytes(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


def tiny_film(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(20, 236, (TINY, TINY), dtype=np.uint8)


TINY_INFO = """MAMMOGRAPHIC IMAGE ANALYSIS SOCIETY (test copy)
=================================================================
mdb001 G CIRC B 30 20 5
mdb001 G CALC M 12 50 4
mdb002 D NORM
mdb003 F CALC M *NOTE 3*
mdb004 F NORM
mdb005 F SPIC M 40 40 6
"""


@pytest.fixture
def tiny_archive(tmp_path: Path) -> Path:
    """Films in a subfolder: mdb004 truncated, mdb005 absent, plus a link and a README."""
    good = {f"all-mias/mdb00{n}.pgm": pgm_bytes(tiny_film(n)) for n in (1, 2, 3)}
    members = {
        "all-mias/Info.txt": TINY_INFO.encode(),
        "all-mias/README": b"not needed",
        **good,
        "all-mias/mdb004.pgm": pgm_bytes(tiny_film(4))[:-100],
    }
    path = tmp_path / "tiny-mias.tar.gz"
    path.write_bytes(tar_bytes(members, links={"all-mias/mdb006.pgm": "/etc/passwd"}))
    return path


def test_corrupt_film_reported_and_skipped(tiny_archive: Path, tmp_path: Path):
    raw = tmp_path / "raw"
    summary = fetch_mias(raw, MiasConfig(archive=str(tiny_archive)), seed=0, workers=1)
    assert summary["images_listed"] == 5
    assert summary["images_found"] == 4
    assert summary["missing_images"] == ["mdb005"]
    assert summary["corrupt_images"] == {"mdb004": "truncated PGM: 65436 of 65536 pixel bytes"}
    assert summary["images_written"] == 3
    assert summary["images_by_pathology"] == {"MALIGNANT": 2, "NORMAL": 1}
    assert summary["lesions_with_coordinates"] == 2
    assert summary["lesions_without_coordinates"] == 1
    assert summary["lesions_by_class"] == {"CALC": 2, "CIRC": 1}
    # mdb001 holds a mass and a calcification: one Mass- and one Calc- subject, as CBIS-DDSM
    assert summary["series_written"] == {"full": 4, "roi": 2}
    assert not any(p.name.startswith(".") for p in raw.iterdir())  # scratch removed

    frames = {
        p.name: pd.read_csv(p, dtype=str, keep_default_na=False) for p in raw.glob("csv/*.csv")
    }
    rows = pd.concat(frames.values(), ignore_index=True)
    assert set(rows["dataset"]) == {"mias"}
    assert not rows["image file path"].str.contains("mdb004|MIAS_P_002_LEFT").any()
    calc = rows[rows["abnormality type"] == "calcification"].set_index("patient_id")
    assert calc.loc["MIAS_P_002", "cropped image file path"] == ""  # *NOTE 3*: no ROI
    assert calc.loc["MIAS_P_002", "calc distribution"] == "DIFFUSELY_SCATTERED"
    assert calc.loc["MIAS_P_001", "calc distribution"] == "CLUSTERED"
    assert calc.loc["MIAS_P_001", "breast density"] == "2"

    result = convert_dataset(raw, tmp_path / "conv", workers=1, max_skipped_fraction=1.0)
    manifest = result.manifest
    full = manifest[manifest["kind"] == "full"].set_index("image_id")
    assert len(full) == 4
    mass_id = next(i for i in full.index if i.startswith("Mass-") and "P_001_RIGHT" in i)
    roi = manifest[manifest["full_image_id"] == mass_id].query("kind == 'roi'").iloc[0]
    mask = read_png(tmp_path / "conv" / roi["mask_path"])
    rows_, cols_ = np.nonzero(mask)
    # Centre (x, y) = (30, 20) in a 256-row image → row 236, column 30.
    assert (rows_.mean(), cols_.mean()) == pytest.approx((TINY - 20, 30), abs=0.01)
    assert result.skipped.empty  # the lesion without coordinates: an image-level label
    assert result.metrics["findings_without_roi"] == 1


def test_archive_missing_is_a_clear_error(tmp_path: Path):
    missing = tmp_path / "nowhere" / "all-mias.tar.gz"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        fetch_mias(tmp_path / "raw", MiasConfig(archive=str(missing)), seed=0, workers=1)


def test_bad_archives(tmp_path: Path):
    not_tar = tmp_path / "junk.tar.gz"
    not_tar.write_bytes(b"not a tar at all")
    with pytest.raises(ValueError, match="not a readable tar archive"):
        fetch_mias(tmp_path / "a", MiasConfig(archive=str(not_tar)), seed=0, workers=1)

    no_info = tmp_path / "no-info.tar.gz"
    no_info.write_bytes(tar_bytes({"mdb001.pgm": pgm_bytes(tiny_film(1))}))
    with pytest.raises(FileNotFoundError, match="no Info.txt"):
        fetch_mias(tmp_path / "b", MiasConfig(archive=str(no_info)), seed=0, workers=1)

    evil = tmp_path / "evil.tar.gz"
    evil.write_bytes(tar_bytes({"Info.txt": b"mdb001 G NORM\n", "../mdb001.pgm": b"P5"}))
    with pytest.raises(ValueError, match=re.escape("unsafe entry '../mdb001.pgm'")):
        extract_archive(evil, tmp_path / "x" / "target")
    assert not (tmp_path / "x" / "mdb001.pgm").exists()


def test_extract_keeps_only_regular_wanted_files(tiny_archive: Path, tmp_path: Path):
    found = extract_archive(tiny_archive, tmp_path / "out")
    assert sorted(found) == ["info.txt", "mdb001.pgm", "mdb002.pgm", "mdb003.pgm", "mdb004.pgm"]
    assert all(p.parent == tmp_path / "out" for p in found.values())  # flattened
    # An archive extracted beforehand may be given as a folder.
    summary = fetch_mias(tmp_path / "raw", MiasConfig(archive=str(tmp_path / "out")), 0, 1)
    assert (summary["images_written"], summary["archive_sha256"]) == (3, "")


# --- download through a local HTTP server -----------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range: bytes=N-`` when ``server.ranges``."""

    def do_GET(self) -> None:
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if wanted and server.ranges:
            start = int(wanted.group(1))
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args) -> None:
        pass


@dataclass
class Served:
    url: str
    server: ThreadingHTTPServer


@pytest.fixture
def http_server() -> Iterator[Served]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.files, server.requests, server.ranges = {}, [], True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{server.server_address[1]}", server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_download_path_with_checksums(sample_archive: Path, http_server: Served, tmp_path: Path):
    data = sample_archive.read_bytes()
    good = hashlib.sha256(data).hexdigest()
    http_server.server.files["/pix/mias/mias-sample.tar.gz"] = data
    url = http_server.url + "/pix/mias/mias-sample.tar.gz"
    cache = tmp_path / "downloads"

    bad = MiasConfig(url=url, sha256="0" * 64)
    with pytest.raises(ValueError, match="sha256 mismatch") as info:
        fetch_mias(tmp_path / "bad", bad, seed=0, workers=1, download_dir=cache)
    assert good in str(info.value)
    assert not list(cache.rglob("*.tar.gz*"))  # the bad download is not kept
    assert not (tmp_path / "bad" / "csv").exists()

    cfg = MiasConfig(url=url, sha256=good.upper())
    summary = fetch_mias(tmp_path / "raw", cfg, seed=0, workers=2, download_dir=cache)
    assert summary["url"] == url and summary["archive_sha256"] == good
    assert summary["archive"] == str(cache / "mias" / "mias-sample.tar.gz")
    assert (summary["images_listed"], summary["images_found"]) == (322, 60)
    assert (cache / "mias" / "mias-sample.tar.gz").read_bytes() == data
    n_requests = len(http_server.server.requests)
    download_archive(url, cache / "mias" / "mias-sample.tar.gz", good)  # cached: no request
    assert len(http_server.server.requests) == n_requests


@pytest.mark.parametrize("ranges", [True, False])
def test_download_resumes_partial_file(http_server: Served, tmp_path: Path, ranges: bool):
    payload = np.random.default_rng(0).bytes(3 * (1 << 20) + 123)
    http_server.server.files["/all-mias.tar.gz"] = payload
    http_server.server.ranges = ranges
    dest = tmp_path / "all-mias.tar.gz"
    (tmp_path / "all-mias.tar.gz.part").write_bytes(payload[:1000])
    sha = hashlib.sha256(payload).hexdigest()
    assert download_archive(http_server.url + "/all-mias.tar.gz", dest, sha) == dest
    assert dest.read_bytes() == payload
    assert http_server.server.requests == [("/all-mias.tar.gz", "bytes=1000-")]
    assert not (tmp_path / "all-mias.tar.gz.part").exists()


def test_download_errors_and_scratch(tiny_archive: Path, http_server: Served, tmp_path: Path):
    with pytest.raises(ConnectionError, match="HTTP 404"):
        download_archive(http_server.url + "/missing.tar.gz", tmp_path / "m.tar.gz")
    http_server.server.files["/tiny.tar.gz"] = tiny_archive.read_bytes()
    raw = tmp_path / "raw"
    summary = fetch_mias(raw, MiasConfig(url=http_server.url + "/tiny.tar.gz"), 0, 1)
    assert summary["images_written"] == 3
    assert summary["archive"] == ""  # a scratch download, removed
    assert summary["archive_sha256"] == hashlib.sha256(tiny_archive.read_bytes()).hexdigest()
    assert sorted(p.name for p in raw.iterdir()) == ["MIAS", "csv"]  # no scratch download left


# --- the real sample --------------------------------------------------------------------------


def expected_from_info(text: str, refs: set[str]) -> tuple[dict[str, int], int, int]:
    """Worst pathology per film, lesions with and without coordinates, read by regex."""
    rank = {"NORMAL": 0, "BENIGN": 1, "MALIGNANT": 2}
    worst: dict[str, str] = {}
    with_xy = without_xy = 0
    for line in text.splitlines():
        m = re.match(r"^(mdb\d{3}) [FGD] ([A-Z]{4}) ?([BM])?(.*)$", line.strip())
        if not m or m.group(1) not in refs:
            continue
        ref, klass, severity, rest = m.groups()
        label = "NORMAL" if klass == "NORM" else {"B": "BENIGN", "M": "MALIGNANT"}[severity]
        if rank[label] >= rank[worst.get(ref, "NORMAL")]:
            worst[ref] = label
        if klass != "NORM":
            if re.fullmatch(r" \d+ \d+ \d+", rest.rstrip()):
                with_xy += 1
            else:
                without_xy += 1
    counts: dict[str, int] = {}
    for label in worst.values():
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items())), with_xy, without_xy


@dataclass
class SampleRun:
    summary: dict
    raw: Path
    conv: Path
    manifest: pd.DataFrame
    skipped: pd.DataFrame
    films: Path
    info: str
    metrics: dict


@pytest.fixture(scope="module")
def sample_run(sample_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> SampleRun:
    root = tmp_path_factory.mktemp("mias-sample")
    films = root / "films"
    # an independent reading of the sample; extraction filters came with Python 3.11.4
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(sample_archive) as tar:
        tar.extractall(films, **safe)
    raw = root / "raw"
    summary = fetch_mias(raw, MiasConfig(archive=str(sample_archive)), seed=0, workers=2)
    result = convert_dataset(raw, root / "conv", workers=2, max_skipped_fraction=1.0)
    info = next(films.rglob("Info.txt")).read_text(encoding="latin-1")
    return SampleRun(
        summary, raw, root / "conv", result.manifest, result.skipped, films, info, result.metrics
    )


def test_real_info_txt_counts(sample_run: SampleRun):
    rows = parse_info(sample_run.info)
    assert len(rows) == 330
    assert len({r.ref for r in rows}) == 322
    assert sum(r.abnormality_class == "NORM" for r in rows) == 207
    by_class = {}
    for r in rows:
        if r.severity:
            by_class.setdefault(r.abnormality_class, {"B": 0, "M": 0})[r.severity] += 1
    assert by_class == {
        "CIRC": {"B": 21, "M": 4},
        "SPIC": {"B": 11, "M": 8},
        "MISC": {"B": 7, "M": 8},
        "CALC": {"B": 15, "M": 15},
        "ARCH": {"B": 9, "M": 10},
        "ASYM": {"B": 6, "M": 9},
    }
    # Rows without coordinates: three '*NOTE 3*' calcifications and one circumscribed mass.
    assert [(r.ref, r.abnormality_class) for r in rows if r.severity and r.radius is None] == [
        ("mdb059", "CIRC"),
        ("mdb216", "CALC"),
        ("mdb233", "CALC"),
        ("mdb245", "CALC"),
    ]
    # mdb144 holds a benign and a malignant lesion.
    assert {r.severity for r in rows if r.ref == "mdb144"} == {"B", "M"}


def test_sample_summary(sample_run: SampleRun):
    s = sample_run.summary
    assert (s["images_listed"], s["rows_listed"], s["patients_listed"]) == (322, 330, 161)
    assert (s["images_found"], s["images_missing"], s["images_corrupt"]) == (60, 262, 0)
    assert s["missing_images"] == [f"mdb{n:03d}" for n in range(61, 323)]
    assert s["images_written"] == 60 and s["images_unlisted"] == []
    assert s["lesions_with_coordinates"] == 17 and s["lesions_without_coordinates"] == 1
    assert s["series_written"] == {"full": 60, "roi": 17}
    assert s["dicom_files"] == 60 + 2 * 17
    assert s["patients"]["train"] + s["patients"]["test"] == 30
    assert s["listed"]["images_by_pathology"] == {"BENIGN": 63, "MALIGNANT": 52, "NORMAL": 207}


def test_sample_manifest_matches_info_txt(sample_run: SampleRun):
    manifest = sample_run.manifest
    refs = {f"mdb{n:03d}" for n in range(1, 61)}
    pathology, with_xy, without_xy = expected_from_info(sample_run.info, refs)
    full = manifest[manifest["kind"] == "full"]
    rois = manifest[manifest["kind"] == "roi"]
    assert len(full) == 60
    assert full["pathology"].value_counts().sort_index().to_dict() == pathology
    assert sample_run.summary["images_by_pathology"] == pathology
    assert len(rois) == with_xy == 17
    assert sample_run.skipped.empty  # lesions without coordinates: image-level labels
    assert sample_run.metrics["findings_without_roi"] == without_xy
    assert set(manifest["dataset"]) == {"mias"} and set(manifest["view"]) == {"MLO"}
    assert set(full["bits_stored"]) == {8}
    assert (full["height"] == 1024).all() and (full["width"] == 1024).all()
    # One patient per pair of films, all of it on one side of the official split.
    assert full["patient_id"].nunique() == 30
    assert (full.groupby("patient_id")["official_split"].nunique() == 1).all()
    split = split_patients(parse_info(sample_run.info), 0.2, seed=0)
    for _, row in full.iterrows():
        number = int(row["patient_id"].removeprefix("MIAS_P_"))
        assert row["official_split"] == split[number]
        assert row["image_id"].endswith(f"_{row['laterality']}_MLO")


def test_sample_known_lesion_geometry(sample_run: SampleRun):
    """mdb001: CIRC B at x=535, y=425 (from the bottom), radius 197."""
    manifest = sample_run.manifest
    roi = manifest[manifest["image_id"].str.fullmatch(r"Mass-\w+_MIAS_P_001_RIGHT_MLO_1")]
    assert len(roi) == 1
    roi = roi.iloc[0]
    assert (roi["pathology"], roi["lesion_shape"], roi["lesion_margins"]) == (
        "BENIGN",
        "OVAL",
        "CIRCUMSCRIBED",
    )
    mask = read_png(sample_run.conv / roi["mask_path"])
    assert mask.shape == (1024, 1024)
    rows, cols = np.nonzero(mask)
    assert abs(cols.mean() - 535) <= 1 and abs(rows.mean() - (1024 - 425)) <= 1
    assert len(rows) == pytest.approx(math.pi * 197**2, rel=0.05)
    half = math.ceil(197 * 1.2)
    crop = read_png(sample_run.conv / roi["image_path"])
    assert crop.shape == (2 * half + 1, 2 * half + 1)
    film = cv2.imread(str(next(sample_run.films.rglob("mdb001.pgm"))), cv2.IMREAD_UNCHANGED)
    region = film[599 - half : 599 + half + 1, 535 - half : 535 + half + 1]
    np.testing.assert_array_equal(crop, region.astype(np.uint16) * 257)


def test_sample_full_images_keep_pgm_pixels(sample_run: SampleRun):
    full = sample_run.manifest[sample_run.manifest["kind"] == "full"]
    assert len(full) == 60
    for _, row in full.iterrows():
        number = 2 * int(row["patient_id"][-3:]) - (row["laterality"] == "RIGHT")
        pgm = next(sample_run.films.rglob(f"mdb{number:03d}.pgm"))
        film = cv2.imread(str(pgm), cv2.IMREAD_UNCHANGED)
        assert film.dtype == np.uint8 and film.shape == (1024, 1024)
        png = read_png(sample_run.conv / row["image_path"])
        np.testing.assert_array_equal(png, film.astype(np.uint16) * 257)


def test_sample_dicom_headers(sample_run: SampleRun):
    files = sorted(sample_run.raw.rglob("*.dcm"))
    assert len(files) == 94
    subject = next(p for p in files if "P_001_RIGHT_MLO" in str(p) and "full mammogram" in str(p))
    ds = pydicom.dcmread(subject)
    assert ds.Modality == "MG" and ds.BitsStored == 8 and ds.Laterality == "R"
    assert ds.PatientID == subject.parts[-4]
    assert ds.SeriesDescription == "full mammogram images"
    mass = pd.read_csv(
        sample_run.raw / "csv" / "mass_case_description_train_set.csv", dtype=str
    ).fillna("")
    with_roi = mass[mass["cropped image file path"] != ""]
    assert with_roi["cropped image file path"].str.endswith("/000000.dcm").all()
    assert with_roi["ROI mask file path"].str.endswith("/000001.dcm").all()
