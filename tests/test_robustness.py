"""Nothing lost, no one exposed: stops, escaping paths, one-line errors, de-identification.

Every case goes through the real entry points (``python -m stages.<name>``, ``python -m
mammocad.cli``) in a scratch project, as a user or a batch scheduler runs them.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from dicom_factory import make_dataset, save
from tcia_server import EmulatedNbia, Fault, index_series

from mammocad.errors import InputError
from mammocad.image_rules import size_problem
from mammocad.predict import NotAMammogram, load_image
from mammocad.progress import LogProgress, progress
from mammocad.sources.local import LocalConfig, fetch_local
from mammocad.sources.synthetic import SyntheticConfig, generate_synthetic
from mammocad.sources.tcia import CSV_NAMES

REPO = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}",
    "MAMMOCAD_LOGLEVEL": "INFO",
    "MAMMOCAD_PROGRESS_S": "0.2",
    "no_proxy": "127.0.0.1,localhost",
}
for _var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
    ENV.pop(_var, None)
ENV.pop("MAMMOCAD_DEBUG", None)


def _project(tmp: Path, data: dict, **sections: dict) -> Path:
    """A scratch project: the repository's params.yaml with ``data`` merged in."""
    project = tmp / "project"
    project.mkdir(exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in data.items():
        if isinstance(value, dict):
            params["data"][key].update(value)
        else:
            params["data"][key] = value
    for name, values in sections.items():
        params[name].update(values)
    params["workers"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def _run(project: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env={**ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_line(proc: subprocess.CompletedProcess, prog: str) -> str:
    """The single error line of a failed run; fails on a traceback or several lines."""
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith(f"{prog}: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def _png(path: Path, h: int = 300, w: int = 200, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    image = np.clip(rng.normal(30000, 8000, (h, w)), 0, 65535).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return path


# --------------------------------------------------------------------------------------
# 1. a download stopped by SIGTERM or SIGKILL resumes with only what was not verified


@pytest.fixture(scope="module")
def nbia(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("tcia-robust")
    cfg = SyntheticConfig(n_patients=4, image_height=256, normal_fraction=0.0)
    generate_synthetic(root, cfg, seed=1, workers=1)
    csv_files = {name: (root / "csv" / name).read_bytes() for name in CSV_NAMES}
    with EmulatedNbia(index_series(root / "CBIS-DDSM"), csv_files) as server:
        yield server


def _tcia_project(tmp: Path, server: EmulatedNbia, **tcia: object) -> Path:
    settings = {
        "base_url": server.base_url,
        "csv_urls": list(server.csv_urls()),
        "connections": 2,
        "retries": 0,
        "timeout_s": 10.0,
        "backoff_s": 0.0,
    }
    settings.update(tcia)
    return _project(tmp, {"source": "cbis-ddsm", "cbis_ddsm": settings})


def _recorded(work: Path) -> set[str]:
    """Series on record: state.json plus the journal's complete lines."""
    out = set()
    if (work / "state.json").is_file():
        out |= set(json.loads((work / "state.json").read_text())["series"])
    if (work / "state.journal").is_file():
        for line in (work / "state.journal").read_text().splitlines():
            try:
                out.add(json.loads(line)["uid"])
            except ValueError:
                break
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_stopped_download_resumes_with_only_unverified_series(nbia, tmp_path, sig):
    nbia.reset()
    nbia.state.delay_s = 0.25  # a slow link: the stop lands mid-download
    project = _tcia_project(tmp_path, nbia)
    work = project / "data/downloads/cbis-ddsm/.tcia"
    proc = subprocess.Popen(
        [sys.executable, "-m", "stages.download"],
        cwd=project,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(_recorded(work)) < 3 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    total = len(nbia.series)
    verified = _recorded(work)
    assert 3 <= len(verified) < total
    # Every series complete on disk is on record (one per connection may be in between).
    installed = {p.parent for p in (project / "data/downloads/cbis-ddsm/CBIS-DDSM").rglob("*.dcm")}
    assert len(installed) - len(verified) <= 2
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM
        assert "Traceback" not in err, err[-3000:]
        assert [line for line in err.splitlines() if line.startswith("download: ")] == [
            "download: stopped by SIGTERM; rerun to resume"
        ]
        assert (work / "state.json").is_file() and not (work / "state.journal").exists()
        assert not (work / "tmp").exists()  # temporary files removed
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not (project / "data/raw").exists()

    nbia.reset()
    rerun = _run(project, "-m", "stages.download")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert nbia.requested_series() == set(nbia.series) - verified
    source = json.loads((project / "data/raw/source.json").read_text())["summary"]
    assert source["series_present"] == len(verified)
    assert source["series_verified"] == total
    # Progress is logged as lines when stderr is not a terminal.
    assert "series," in rerun.stderr or "series (done)" in rerun.stderr or "B/s" in rerun.stderr


# --------------------------------------------------------------------------------------
# 2. paths leaving their root are refused with their row numbers


@pytest.fixture
def local_root(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    _png(root / "a.png")
    _png(tmp_path / "outside" / "x.png", seed=1)
    return root


def _labels(root: Path, rows: list[str]) -> None:
    (root / "labels.csv").write_text("file,patient_id,pathology,mask\n" + "\n".join(rows) + "\n")


@pytest.mark.parametrize(
    ("form", "cell", "how"),
    [
        ("dotdot", "../outside/x.png", "'..'"),
        ("deep", "../../../../../../../../etc/passwd", "'..'"),
        ("absolute", "{outside}/x.png", "absolute path"),
        ("windows", "C:\\images\\x.png", "absolute path"),
        ("file_symlink", "link.png", "symbolic link"),
        ("dir_symlink", "linked/x.png", "symbolic link"),
        ("mask", "a.png,../outside/x.png", "'..'"),
    ],
)
def test_paths_leaving_the_root_are_refused(local_root, tmp_path, form, cell, how):
    outside = tmp_path / "outside"
    (local_root / "link.png").symlink_to(outside / "x.png")
    (local_root / "linked").symlink_to(outside, target_is_directory=True)
    cell = cell.format(outside=outside)
    row = f"a.png,P1,BENIGN,{cell.split(',')[1]}" if form == "mask" else f"{cell},P1,BENIGN,"
    _labels(local_root, ["a.png,P0,NORMAL,", row])
    with pytest.raises(InputError, match=r"row 3: .*" + how.replace("(", r"\(")):
        fetch_local(tmp_path / "raw", LocalConfig(root=str(local_root)), seed=0, workers=1)
    assert not (tmp_path / "raw").exists()


def test_path_escape_through_the_stage_is_one_line(local_root, tmp_path):
    _labels(local_root, ["a.png,P0,NORMAL,", "../outside/x.png,P1,BENIGN,"])
    project = _project(tmp_path, {"source": "local", "local": {"root": str(local_root)}})
    line = _one_line(_run(project, "-m", "stages.download"), "download")
    assert "labels.csv" in line and "row 3" in line and "../outside/x.png" in line


# --------------------------------------------------------------------------------------
# 3. expected failures: one line naming the file, row or key, through the entry points

LABEL_CASES = {
    "missing_pathology": (b"file,patient_id\na.png,P1\n", ["labels.csv", "'pathology'"]),
    "not_utf8": ("file,patient_id,pathology\na.png,Ma\xefa,BENIGN\n".encode("latin-1"), ["UTF-8"]),
    "empty": (b"", ["labels.csv", "empty"]),
    "semicolons": (b"file;patient_id;pathology\na.png;P1;BENIGN\n", ["commas"]),
    "header_only": (b"file,patient_id,pathology\n", ["labels.csv", "no rows"]),
    "both_splits": (
        b"file,patient_id,pathology,split\na.png,P1,BENIGN,train\nb.png,P1,BENIGN,test\n",
        ["labels.csv", "'P1'", "both splits"],
    ),
    "disagreeing_duplicate": (
        b"file,patient_id,pathology\na.png,P1,BENIGN\nb.png,P2,NORMAL\na.png,P1,MALIGNANT\n",
        ["labels.csv", "rows 2 and 4", "'BENIGN' vs 'MALIGNANT'"],
    ),
    "nothing_usable": (b"file,patient_id,pathology\ntiny.png,P1,BENIGN\n", ["too small"]),
}


@pytest.mark.parametrize("case", list(LABEL_CASES))
def test_bad_labels_end_in_one_line(tmp_path, case):
    body, words = LABEL_CASES[case]
    root = tmp_path / "images"
    _png(root / "a.png")
    _png(root / "b.png", seed=2)
    _png(root / "tiny.png", 50, 50)
    (root / "labels.csv").write_bytes(body)
    project = _project(tmp_path, {"source": "local", "local": {"root": str(root)}})
    line = _one_line(_run(project, "-m", "stages.download"), "download")
    for word in words:
        assert word in line, line
    debug = _run(project, "-m", "stages.download", env={"MAMMOCAD_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_missing_labels_and_bad_key_end_in_one_line(tmp_path):
    root = tmp_path / "images"
    _png(root / "a.png")
    project = _project(tmp_path, {"source": "local", "local": {"root": str(root)}})
    line = _one_line(_run(project, "-m", "stages.download"), "download")
    assert "labels.csv" in line and "not found" in line and "data.local.labels" in line
    project = _project(tmp_path, {"source": "local", "local": {"rooot": str(root)}})
    assert "rooot" in _one_line(_run(project, "-m", "stages.download"), "download")


def test_unreachable_api_and_failing_series_end_in_one_line(nbia, tmp_path):
    project = _tcia_project(tmp_path, nbia, base_url="http://127.0.0.1:9/nbia/", timeout_s=2.0)
    line = _one_line(_run(project, "-m", "stages.download"), "download")
    assert "series list" in line and "127.0.0.1:9" in line
    nbia.reset()
    nbia.state.default_fault = Fault("500")
    try:
        project = _tcia_project(tmp_path, nbia)
        line = _one_line(_run(project, "-m", "stages.download"), "download")
    finally:
        nbia.reset()
    assert "no series of CBIS-DDSM could be downloaded" in line and "HTTP 500" in line


def test_unusable_outputs_are_refused_before_any_work(tmp_path):
    (tmp_path / "in").mkdir()
    image = _png(tmp_path / "in" / "a.png")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mobilenet_v1.pt").write_bytes(b"not read before --out is checked")
    (tmp_path / "taken").write_text("an existing file")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for out, words in (
        (tmp_path / "taken", "existing file"),
        (Path("/proc/mammocad-out"), ""),
        (tmp_path / "dangling", "which does not exist"),
        (tmp_path / "dangling" / "sub", "symbolic link"),
    ):
        proc = _run(tmp_path, "-m", "mammocad.cli", "predict", str(image), "--out", str(out))
        line = _one_line(proc, "mammocad predict")
        assert "--out" in line and str(out) in line and words in line
    # export and plots check theirs the same way, before loading a checkpoint or DVC
    proc = _run(tmp_path, "-m", "mammocad.cli", "export", str(tmp_path / "models" /
                "mobilenet_v1.pt"), "--out", str(tmp_path / "taken"))  # fmt: skip
    assert "existing file" in _one_line(proc, "mammocad export")
    proc = _run(tmp_path, "-m", "mammocad.cli", "plots", "-o", str(tmp_path / "taken"))
    assert "existing file" in _one_line(proc, "mammocad plots")
    proc = _run(tmp_path, "-m", "mammocad.cli", "plots", "--write-template", str(tmp_path))
    assert "is a folder, not a file" in _one_line(proc, "mammocad plots")
    # The stages check their outputs the same way: data/raw under a file named data.
    project = _project(tmp_path, {"synthetic": {"n_patients": 1, "image_height": 256}})
    (project / "data").write_text("a file where the data folder should be")
    line = _one_line(_run(project, "-m", "stages.download"), "download")
    assert "data/raw" in line


def test_nothing_to_convert_is_one_line(tmp_path):
    project = _project(tmp_path, {})
    (project / "data/raw/csv").mkdir(parents=True)
    line = _one_line(_run(project, "-m", "stages.convert"), "convert")
    assert "case_description" in line and "csv" in line


# --------------------------------------------------------------------------------------
# 4. one minimum-image rule; duplicates; findings without ROI


def test_one_minimum_image_rule_for_local_and_predict(tmp_path):
    root = tmp_path / "images"
    _png(root / "tiny.png", 50, 50)
    _png(root / "ok.png")
    (root / "labels.csv").write_text(
        "file,patient_id,pathology\ntiny.png,P1,BENIGN\nok.png,P2,BENIGN\n"
    )
    summary = fetch_local(tmp_path / "raw", LocalConfig(root=str(root)), seed=0, workers=1)
    reasons = {s["file"]: s["reason"] for s in summary["skipped"]}
    with pytest.raises(NotAMammogram) as refused:
        load_image(root / "tiny.png")
    assert reasons["tiny.png"] == refused.value.reason == size_problem(50, 50)
    assert summary["images_written"] == 1
    assert size_problem(256, 128) == "" and size_problem(255, 255) and size_problem(300, 127)


# --------------------------------------------------------------------------------------
# 5. progress without a terminal


def test_progress_is_logged_without_a_terminal(caplog):
    assert isinstance(progress(total=10), LogProgress)  # pytest's stderr is no terminal
    bar = LogProgress(total=4 * 2**20, desc="CBIS-DDSM", unit="B", interval_s=0.0)
    with caplog.at_level("INFO", logger="mammocad.progress"):
        bar.update(2**20)
        bar.set_postfix_str("1/4 series")
        bar.update(2**20)
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[1].startswith("CBIS-DDSM: 2.0 MiB of 4.0 MiB (50.0%), ")
    assert "/s, ETA " in lines[1] and lines[1].endswith("1/4 series")
    assert lines[2].endswith("(done)")


# --------------------------------------------------------------------------------------
# 6. nothing identifying in any output


PLANTED = (
    "DOE^JANE",
    "19510203",
    "SECRETACC1",
    "SECRET HOSPITAL",
    "SYNTH^PATIENT",
    "SYNTHETIC BREAST",
)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _scan(folder: Path) -> list[str]:
    """Files below ``folder`` holding a planted identifier (bytes, any encoding of ASCII)."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path}: {word}" for word in PLANTED if word.encode() in data]
    return found


@pytest.mark.slow
def test_no_identifier_reaches_any_output(tmp_path, nbia):
    from tiny_repo import copy_tiny, run

    # A user's DICOMs with identifying fields, and a TCIA server whose files carry them.
    root = tmp_path / "hospital"
    for i, side in enumerate(("LEFT", "RIGHT")):
        pixels = np.clip(np.random.default_rng(i).normal(3e4, 9e3, (300, 200)), 0, 65535)
        ds = make_dataset(pixels.astype(np.uint16), patient_name="DOE^JANE", birth_date="19510203")
        save(ds, root / f"{side.lower()}.dcm")
    (root / "labels.csv").write_text(
        "file,patient_id,pathology,laterality,view\n"
        "left.dcm,P1,BENIGN,LEFT,CC\nright.dcm,P1,NORMAL,RIGHT,CC\n"
        "extra.dcm,P2,MALIGNANT,LEFT,MLO\n"
    )
    save(
        make_dataset(
            np.clip(np.random.default_rng(5).normal(3e4, 9e3, (300, 200)), 0, 65535).astype(
                np.uint16
            ),
            patient_name="DOE^JANE",
            birth_date="19510203",
        ),
        root / "extra.dcm",
    )
    originals = {p: _md5(p) for p in root.rglob("*.dcm")}
    served = tmp_path / "served"
    generate_synthetic(served, SyntheticConfig(n_patients=8, image_height=256), seed=3)
    for path in (served / "CBIS-DDSM").rglob("*.dcm"):
        import pydicom

        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientBirthDate = "DOE^JANE", "19510203"
        ds.InstitutionName = "SECRET HOSPITAL"
        ds.save_as(path)
    csv_files = {name: (served / "csv" / name).read_bytes() for name in CSV_NAMES}
    with EmulatedNbia(index_series(served / "CBIS-DDSM"), csv_files) as server:
        work = tmp_path / "repo"
        work.mkdir()
        params = copy_tiny(work, ["mobilenet_v1"])  # the default localize and champion
        params["data"].update(source=["local", "cbis-ddsm"])
        params["data"]["local"]["root"] = str(root)
        params["data"]["cbis_ddsm"].update(
            base_url=server.base_url, csv_urls=list(server.csv_urls()), retries=0
        )
        params["convert"]["max_skipped_fraction"] = 0.5
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run(work, "git", "init", "-q")
        run(work, "dvc", "init", "-q")
        env = {"MAMMOCAD_LOGLEVEL": "DEBUG", "no_proxy": "127.0.0.1,localhost"}
        log = run(work, "dvc", "repro", env=env)  # every stage, MLflow's track included
    (work / "repro.log").write_text(log)
    assert (work / "mlflow.db").is_file() and (work / "dvc.lock").is_file()
    cache = work / "data/downloads/cbis-ddsm"
    assert _scan(cache), "the served files carry the identifiers (the test plants them)"
    code = (str(cache), str(work / "src"), str(work / "stages"))  # the generator's own text
    leaks = [f for f in _scan(work) if not f.startswith(code)]
    assert not leaks, leaks[:10]
    assert {p: _md5(p) for p in root.rglob("*.dcm")} == originals  # originals untouched


def test_pool_workers_end_quietly_under_the_sigterm_handler(tmp_path):
    # a pool ends its forked workers with SIGTERM when abandoned; they must end as SIGTERM
    # ends any process, with no traceback, however soon after the fork it comes. A SIGTERM
    # that reached a child before the interpreter had finished forking it used to be
    # caught by the inherited handler and then cleared, leaving the child asleep (about 1
    # run in 20 on a loaded machine): fifty children, each ended as soon as it starts, make
    # that near certain. Some are forked from another thread, as a pool's replacement
    # workers are (maxtasksperchild).
    script = tmp_path / "pool.py"
    script.write_text(
        "import multiprocessing as mp, threading, time\n"
        "from mammocad.errors import sigterm_as_interrupt\n"
        "def square(x):\n"
        "    return x * x\n"
        "def end_children(n, codes):\n"
        "    for _ in range(n):\n"
        "        child = ctx.Process(target=time.sleep, args=(60,))\n"
        "        child.start()\n"
        "        child.terminate()\n"
        "        child.join(5)\n"
        "        codes.append(child.exitcode)\n"
        "        if child.exitcode is None:\n"
        "            child.kill()\n"
        "            child.join()\n"
        "with sigterm_as_interrupt():\n"
        "    ctx = mp.get_context('fork')\n"
        "    pool = ctx.Pool(2, maxtasksperchild=5)\n"
        "    print(sum(pool.map(square, range(100), chunksize=1)))\n"
        "    pool.close()\n"
        "    pool.join()\n"
        "    codes = []\n"
        "    end_children(30, codes)\n"
        "    for _ in range(3):  # one at a time: Process objects are not thread-safe\n"
        "        thread = threading.Thread(target=end_children, args=(10, codes))\n"
        "        thread.start()\n"
        "        thread.join()\n"
        "    print(len(codes), *sorted(set(codes), key=str))\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["328350", "60", "-15"]  # every child ended by SIGTERM
    assert "Traceback" not in proc.stderr and "Terminated" not in proc.stderr


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)]
)
def test_outputs_are_as_readable_as_the_umask_allows(tmp_path, umask, file_mode, dir_mode):
    """Outputs are built under temporary names and renamed into place; they must have the
    mode any other new file would (tempfile's are private: 0600, 0700), and keep a shared
    folder's group, or the other users of a data or model folder could not read them."""
    from mammocad import io as mio

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o2775)  # set-group-id: what is made inside takes the folder's group
    old = os.umask(umask)
    try:
        mio.write_json(shared / "a.json", {"x": 1})
        with mio.atomic_dir(shared / "folder") as tmp:
            (tmp / "inside.txt").write_text("x")
    finally:
        os.umask(old)
    assert (shared / "a.json").stat().st_mode & 0o7777 == file_mode
    assert (shared / "folder").stat().st_mode & 0o7777 == 0o2000 | dir_mode
    assert not [p.name for p in shared.iterdir() if ".tmp-" in p.name]
