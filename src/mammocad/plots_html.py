"""``dvc plots show`` as a page that renders offline, with vendored Vega libraries.

DVC's default page loads Vega, Vega-Lite and Vega-Embed from a CDN: on a machine without
a network (an air-gapped hospital workstation) it stays blank. DVC accepts a page template
of one's own (``dvc plots show --html-template``, or ``plots.html_template`` in
``.dvc/config``) and puts its CDN script tags only where the template has a ``{scripts}``
placeholder. The template built here has none; it inlines the copies of the three libraries
that ship with this package (``vega/``, see its NOTICE), the versions dvc-render asks the
CDN for. Images (``reports/*.png``) are copied by DVC beside the page and need nothing.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mammocad.errors import ExpectedError
from mammocad.io import atomic_file

log = logging.getLogger(__name__)

#: The folder of the vendored libraries, their licences, NOTICE and the page template.
VEGA_DIR = Path(__file__).with_name("vega")
#: Where ``vega/page.html`` takes the inlined scripts.
SCRIPTS_MARKER = "<!-- mammocad:vega-scripts -->"
#: The placeholders DVC fills (``dvc_render.html.HTML``); ``{plot_divs}`` is required.
DVC_PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")


@dataclass(frozen=True)
class Library:
    """A vendored JavaScript library: npm package, version and file in :data:`VEGA_DIR`."""

    package: str
    version: str
    file: str


#: In load order: Vega-Lite needs Vega, Vega-Embed needs both.
LIBRARIES = (
    Library("vega", "5.20.2", "vega.min.js"),
    Library("vega-lite", "5.2.0", "vega-lite.min.js"),
    Library("vega-embed", "6.18.2", "vega-embed.min.js"),
)

# An attribute that loads something: a script or image source, a stylesheet link, ...
_LOADS = re.compile(
    r"<(?P<tag>script|link|img|iframe|source|embed)\b[^>]*?\b(?:src|href)\s*=\s*"
    r"[\"']?(?P<url>[^\"'\s>]+)",
    re.IGNORECASE,
)


def notice_hashes(notice: Path = VEGA_DIR / "NOTICE") -> dict[str, str]:
    """The sha256 of each vendored file as the NOTICE states it, by file name."""
    text = notice.read_text(encoding="utf-8")
    pattern = re.compile(r"^  (\S+)\n(?:    .*\n)*?    sha256 ([0-9a-f]{64})$", re.MULTILINE)
    return dict(pattern.findall(text))


def offline_template(vega_dir: Path = VEGA_DIR) -> str:
    """The page template for ``dvc plots show --html-template`` with the libraries inlined.

    Each library is one ``<script>`` element whose text is the vendored file unchanged
    (its ``data-vendored`` attribute names package and version).

    Raises:
        ValueError: if the page lacks the scripts marker or ``{plot_divs}``, or a library
            holds text that would end its script element or that DVC would replace.
    """
    page = (vega_dir / "page.html").read_text(encoding="utf-8")
    if SCRIPTS_MARKER not in page or "{plot_divs}" not in page:
        raise ValueError(f"{vega_dir / 'page.html'}: needs {SCRIPTS_MARKER} and {{plot_divs}}")
    scripts = []
    for lib in LIBRARIES:
        code = (vega_dir / lib.file).read_bytes().decode("utf-8")
        # DVC fills its placeholders by plain text replacement over the whole page
        bad = [s for s in ("</script", *DVC_PLACEHOLDERS) if s in code.lower()]
        if bad:
            raise ValueError(f"{lib.file}: cannot be inlined, it holds {bad}")
        scripts.append(f'<script data-vendored="{lib.package}@{lib.version}">{code}</script>')
    return page.replace(SCRIPTS_MARKER, "\n    ".join(scripts), 1)


def write_template(path: str | os.PathLike) -> Path:
    """Writes :func:`offline_template` to ``path`` (for ``plots.html_template``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as fh:
        fh.write(offline_template().encode("utf-8"))
    return path


def external_loads(html: str) -> list[str]:
    """URLs that the page would fetch from a network: ``http(s)://`` or ``//host``
    sources of scripts, stylesheets, images and frames. Links one clicks (``<a href>``)
    and URLs inside script text (a spec's ``$schema``) are not fetched and not listed."""
    found = []
    for match in _LOADS.finditer(_without_script_text(html)):
        url = match.group("url")
        if re.match(r"(?i)(https?:)?//", url):
            found.append(url)
    return found


def _without_script_text(html: str) -> str:
    """The page with the text of its script elements removed (their tags kept)."""
    return re.sub(r"(?is)(<script\b[^>]*>).*?(</script\s*>)", r"\1\2", html)


class PlotsError(ExpectedError):
    """``dvc plots show`` failed, or its page would load something from a network."""


def show(
    project: str | os.PathLike,
    out: str | os.PathLike,
    targets: Sequence[str] = (),
) -> Path:
    """Runs ``dvc plots show`` in ``project`` with the offline template; returns the page.

    Args:
        project: the DVC project (the folder of ``dvc.yaml``).
        out: the folder of the page (``index.html``) and of the copied images (``static/``);
            relative to the current folder.
        targets: plot ids or files to show (``dvc plots show`` targets); all when empty.

    Raises:
        PlotsError: if DVC fails, writes no page, or the page loads anything from a network.
    """
    project = Path(project).resolve()
    out = Path(out).resolve()
    index = out / "index.html"
    index.unlink(missing_ok=True)  # DVC writes none when it finds no plots: no stale page
    with tempfile.TemporaryDirectory(prefix="mammocad-plots-") as tmp:
        template = write_template(Path(tmp) / "offline.html")
        command = [sys.executable, "-m", "dvc", "plots", "show", *targets]
        command += ["--html-template", str(template), "-o", str(out)]
        log.info("running %s", " ".join(command))
        done = subprocess.run(command, cwd=project, stdout=subprocess.PIPE, text=True)
    if done.returncode:
        raise PlotsError(f"dvc plots show failed (exit status {done.returncode})")
    if not index.is_file():
        raise PlotsError(f"dvc plots show wrote no page to {out} (no plots found?)")
    loads = external_loads(index.read_text(encoding="utf-8"))
    if loads:
        raise PlotsError(f"{index} would load from the network: {', '.join(loads[:5])}")
    return index
