"""The plots page: every plot of dvc.yaml, drawn without a network by the vendored Vega.

The page is rendered from this repository's own ``dvc.yaml`` and committed metrics. Where
Chromium is installed, a headless Chromium with every host name unresolvable loads it and
must find a drawn chart in every plot; the same page with DVC's CDN script tags in place
of the vendored scripts must stay blank there (a check that the network is really cut).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from dvc_render.base import Renderer
from dvc_render.vega import VegaRenderer

from mammocad.cli import main, missing_plots, model_plots
from mammocad.plots_html import (
    LIBRARIES,
    VEGA_DIR,
    PlotsError,
    external_loads,
    notice_hashes,
    offline_template,
    show,
)

REPO = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _dvc_yaml() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def _backbones() -> list[str]:
    return yaml.safe_load((REPO / "params.yaml").read_text())["finetune"]["backbones"]


def _div_id(plot_id: str) -> str:
    return Renderer.remove_special_chars(plot_id)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """``mammocad plots``'s page of this repository's plots (``index.html``)."""
    out = tmp_path_factory.mktemp("plots") / "out"
    assert main(["plots", "--project", str(REPO), "--out", str(out)]) == 0
    return out / "index.html"


# --------------------------------------------------------------------------- vendored files


def test_vendored_files_match_the_notice():
    hashes = notice_hashes()
    files = {lib.file for lib in LIBRARIES} | {f"LICENSE-{lib.package}" for lib in LIBRARIES}
    assert set(hashes) == files
    for name, digest in hashes.items():
        assert hashlib.sha256((VEGA_DIR / name).read_bytes()).hexdigest() == digest, name
    notice = (VEGA_DIR / "NOTICE").read_text()
    for lib in LIBRARIES:
        assert f"{lib.package} {lib.version}, " in notice
        licence = (VEGA_DIR / f"LICENSE-{lib.package}").read_text()
        # the BSD 3-Clause terms: redistribution, and no endorsement by name
        assert "Redistribution and use in source and binary forms" in licence
        assert "Neither the name" in licence


def test_vendored_versions_are_the_ones_dvc_render_loads():
    """DVC's default page asks the CDN for these versions; the offline page must draw the
    same specs, so an upgrade of dvc-render that moves them needs new vendored files."""
    cdn = re.findall(r"npm/([\w-]+)@([\d.]+)", VegaRenderer.SCRIPTS)
    assert cdn == [(lib.package, lib.version) for lib in LIBRARIES]


def test_template_inlines_each_library_unchanged():
    template = offline_template()
    for lib in LIBRARIES:
        code = (VEGA_DIR / lib.file).read_bytes().decode("utf-8")
        assert f'<script data-vendored="{lib.package}@{lib.version}">{code}</script>' in template
    assert "{plot_divs}" in template and "{scripts}" not in template
    assert external_loads(template) == []


def test_template_refuses_a_library_that_cannot_be_inlined(tmp_path):
    for name in ("page.html", *(lib.file for lib in LIBRARIES)):
        shutil.copy(VEGA_DIR / name, tmp_path / name)
    (tmp_path / "vega-embed.min.js").write_text('var s = "</script>";')
    with pytest.raises(ValueError, match="vega-embed.min.js: cannot be inlined"):
        offline_template(tmp_path)


def test_dvc_plots_show_uses_the_committed_offline_template():
    """Plain ``dvc plots show`` reads plots.html_template from .dvc/config (relative to
    .dvc/); that file must be the current template (``mammocad plots --write-template``)."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        template = REPO / ".dvc" / repo.config["plots"]["html_template"]
    assert template == REPO / ".dvc/plots/offline.html"
    assert template.read_text(encoding="utf-8") == offline_template(), (
        "rewrite it: mammocad plots --write-template .dvc/plots/offline.html"
    )


def test_write_template(tmp_path, capsys):
    path = tmp_path / "sub/offline.html"
    assert main(["plots", "--write-template", str(path)]) == 0
    assert path.read_text(encoding="utf-8") == offline_template()
    assert capsys.readouterr().out.strip() == str(path)


def test_show_fails_without_plots(tmp_path):
    with pytest.raises(PlotsError, match="wrote no page"):
        show(tmp_path, tmp_path / "out")


def test_external_loads():
    html = """
        <script src="https://cdn.example/vega.js"></script>
        <script src='//cdn.example/vega-lite.js'></script>
        <link rel="stylesheet" href="http://example/x.css">
        <img src="static/roc.png"> <img src=HTTPS://example/y.png>
        <a href="https://vega.github.io/editor">a link is not loaded</a>
        <script>var spec = {"$schema": "https://vega.github.io/schema/v5.json"};
                var tag = '<img src="https://in.script.text/">';</script>
    """
    assert external_loads(html) == [
        "https://cdn.example/vega.js",
        "//cdn.example/vega-lite.js",
        "http://example/x.css",
        "HTTPS://example/y.png",
    ]


# --------------------------------------------------------------------------- definitions


def test_plot_definitions_cover_every_model():
    assert missing_plots(_dvc_yaml()["plots"], _backbones()) == []


def test_missing_plots_names_a_backbone_left_out():
    definitions = _dvc_yaml()["plots"]
    missing = missing_plots(definitions, [*_backbones(), "vgg16"])
    assert missing == [
        "roc: metrics/curves/roc/vgg16.csv",
        "pr: metrics/curves/pr/vgg16.csv",
        "val_auc: metrics/history/vgg16.csv",
        "training/vgg16",
        "confusion/vgg16",
    ]


def test_mammocad_plots_warns_of_a_backbone_left_out(tmp_path, caplog, capsys):
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    params = {"finetune": {"backbones": [*_backbones(), "vgg16"]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    # no data files: the page fails after the warning
    assert main(["plots", "--project", str(tmp_path), "-o", str(tmp_path / "out")]) == 1
    assert "finetune.backbones" in caplog.text and "confusion/vgg16" in caplog.text
    assert "wrote no page" in capsys.readouterr().err


def test_stage_plots_moved_to_the_top_level():
    """Every plot is defined once, at the top level: a stage-level ``plots:`` entry would
    draw a second, per-file chart of data the overlays already show."""
    for name, stage in _dvc_yaml()["stages"].items():
        body = stage.get("do", stage)
        assert "plots" not in body, name


# --------------------------------------------------------------------------- the page


def _expected_div_ids() -> tuple[set[str], set[str]]:
    """The div ids of the Vega plots and of the image plots that the page must hold."""
    vega = set(model_plots(_backbones())) | {"froc", "metrics/localize_images.csv"}
    images = {"reports/roc.png", "reports/froc.png", "reports/deployment.png"}
    images |= {f"reports/localize/{p.name}" for p in (REPO / "reports/localize").glob("*.png")}
    return {_div_id(i) for i in vega}, {_div_id(i) for i in images}


def _is_drawn(attrs: dict) -> bool:
    """Vega's view: a canvas (or svg) of class ``marks`` with a non-zero size."""
    size = [float(attrs.get(k) or 0) for k in ("width", "height")]
    return "marks" in (attrs.get("class") or "").split() and min(size) > 0


class _Page(HTMLParser):
    """Div ids of a page, and for each, the drawn Vega marks (canvas/svg) inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str | None] = []
        self.ids: list[str] = []
        self.marks: dict[str, int] = {}
        self.images: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div":
            self.stack.append(attrs.get("id"))
            if attrs.get("id"):
                self.ids.append(attrs["id"])
            return
        owners = [i for i in self.stack if i]
        if not owners:
            return
        if tag in ("canvas", "svg") and _is_drawn(attrs):
            self.marks[owners[0]] = self.marks.get(owners[0], 0) + 1
        if tag == "img":
            self.images.setdefault(owners[0], []).append(attrs.get("src") or "")

    def handle_endtag(self, tag):
        if tag == "div" and self.stack:
            self.stack.pop()


def _parse(html: str) -> _Page:
    parsed = _Page()
    parsed.feed(html)
    return parsed


def test_page_holds_every_plot_and_loads_nothing_from_a_network(page):
    html = page.read_text(encoding="utf-8")
    assert external_loads(html) == []
    assert "cdn.jsdelivr.net" not in html
    for lib in LIBRARIES:
        assert html.count(f'data-vendored="{lib.package}@{lib.version}"') == 1
    parsed = _parse(html)
    vega, images = _expected_div_ids()
    assert vega | images <= set(parsed.ids), sorted((vega | images) - set(parsed.ids))
    assert len(vega) == 4 + 2 * (1 + len(_backbones())) + 2
    for div in vega:
        assert f"vegaEmbed('#{div}', spec)" in html, div
    for div in images:
        (src,) = parsed.images[div]
        assert not src.startswith(("http:", "https:", "/")), src
        assert (page.parent / src).is_file(), src


# --------------------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def browser() -> str:
    """A Chromium on PATH; the test skips, before rendering anything, without one."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        f"no Chromium on PATH (looked for {', '.join(BROWSERS)}; apt-get install chromium)"
    )


def _load(browser: str, page: Path, profile: Path, screenshot: Path) -> str:
    """The page's DOM after its scripts ran, with every host name unresolvable and a dead
    proxy: nothing can come from a network. Also writes a screenshot of its top."""
    command = [
        browser,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=127.0.0.1:9",
        "--virtual-time-budget=15000",
        "--window-size=1280,1200",
        f"--screenshot={screenshot}",
        "--dump-dom",
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert screenshot.is_file(), done.stderr[-2000:]
    return done.stdout


def _ink(screenshot: Path) -> float:
    """Share of the screenshot's pixels that are not (near) white."""
    import cv2

    image = cv2.imread(str(screenshot), cv2.IMREAD_GRAYSCALE)
    assert image is not None and image.size
    return float(np.mean(image < 200))


def _variant(page: Path, name: str, html: str, hidden: set[str]) -> Path:
    """A copy of the page beside it (its images resolve) with the ``hidden`` divs not
    displayed: the screenshot then shows what Vega drew, not the report PNGs."""
    css = ", ".join(f"#{div}" for div in sorted(hidden))
    head, tail = html.rsplit("</body>", 1)  # the last one: script text may hold the words
    path = page.with_name(name)
    path.write_text(f"{head}<style>{css} {{ display: none; }}</style></body>{tail}", "utf-8")
    return path


def test_chromium_draws_every_plot_offline(browser, page, tmp_path):
    vega, images = _expected_div_ids()
    html = page.read_text(encoding="utf-8")

    charts = _variant(page, "charts.html", html, images)
    dom = _load(browser, charts, tmp_path / "profile", tmp_path / "charts.png")
    drawn = _parse(dom).marks
    assert set(drawn) >= vega, f"not drawn: {sorted(vega - set(drawn))}"
    ink = _ink(tmp_path / "charts.png")
    assert ink > 0.02, f"the charts are blank ({ink:.2%} of the pixels not white)"

    # The same page with DVC's CDN script tags instead of the vendored scripts: blank.
    vendored = re.compile(r'(?s)<script data-vendored="[^"]*">.*?</script>')
    assert len(vendored.findall(html)) == len(LIBRARIES)
    cdn_html = vendored.sub("", html.replace(vendored.search(html)[0], VegaRenderer.SCRIPTS, 1))
    assert "data-vendored" not in cdn_html and "cdn.jsdelivr.net" in cdn_html
    assert cdn_html.count("vegaEmbed(") == html.count("vegaEmbed(") == len(vega)
    cdn = _variant(page, "cdn.html", cdn_html, images)
    dom = _load(browser, cdn, tmp_path / "profile", tmp_path / "cdn.png")
    assert _parse(dom).marks == {}
    assert _ink(tmp_path / "cdn.png") < 0.001
