"""Downloads a backbone's ImageNet weights into the library's cache, after a quick probe."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import tempfile
import threading
import urllib.parse
import urllib.request
from pathlib import Path

from mammocad.models.backbones.cache import (
    _HF_FILENAMES,
    _timm_cache_hint,
    _timm_cached_file,
    _timm_hub_id,
    _torchvision_weights,
    hf_hub_cache,
    torchvision_cache_file,
)
from mammocad.models.backbones.spec import BackboneSpec, WeightsUnavailable, get_spec

logger = logging.getLogger(__name__)

#: Seconds allowed for the network probe and for each blocking network read.
NETWORK_TIMEOUT_S = 5.0
#: Environment variable that, when truthy, forbids downloading weights.
OFFLINE_ENV = "MAMMOCAD_OFFLINE"
_HASH_RE = re.compile(r"-([a-f0-9]*)\.")


def _offline_by_env(source: str) -> bool:
    truthy = {"1", "true", "yes", "on"}
    if os.environ.get(OFFLINE_ENV, "").strip().lower() in truthy:
        return True
    return source == "timm" and os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in truthy


def _reachable(url: str, timeout: float = NETWORK_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host (or its proxy) opens within ``timeout``.

    Name resolution ignores socket timeouts, so the probe runs in a daemon thread that is
    abandoned when it overruns.
    """
    parsed = urllib.parse.urlparse(url)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(parsed.hostname or ""):
        parsed = urllib.parse.urlparse(proxy if "://" in proxy else f"http://{proxy}")
    host = parsed.hostname
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if not host:
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, name="weights-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _download(url: str, dst: Path, timeout: float) -> None:
    """Downloads ``url`` to ``dst`` atomically, checking torchvision's file-name hash."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    match = _HASH_RE.search(dst.name)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=dst.name, suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
        if match and not digest.hexdigest().startswith(match.group(1)):
            raise WeightsUnavailable(f"{url}: SHA-256 does not start with {match.group(1)}")
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _how_to_place(spec: BackboneSpec) -> str:
    if spec.source == "torchvision":
        url = _torchvision_weights(spec.weights).url
        return f"download {url} to {torchvision_cache_file(spec.weights)}"
    repo_id, revision = _timm_hub_id(spec.weights)
    rev = f" --revision {revision}" if revision else ""
    return (
        f"run `huggingface-cli download {repo_id} {_HF_FILENAMES[0]}{rev}` where the "
        f"network is reachable and copy that cache, or place the file so that it matches "
        f"{_timm_cache_hint(spec.weights)}"
    )


def _unavailable(spec: BackboneSpec, where: str, why: str) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"ImageNet weights for backbone {spec.name!r} ({spec.source} {spec.weights}) are "
        f"unavailable: {why}. Looked in {where}. To provide them, {_how_to_place(spec)}; "
        f"or use init 'scratch' or 'auto'."
    )


def fetch_weights(
    name: str, *, allow_download: bool | None = None, timeout_s: float = NETWORK_TIMEOUT_S
) -> Path:
    """Makes the ImageNet weights of a backbone available in the library's cache.

    The cache is checked first. A download is tried only where allowed and only after the
    host answered a TCP probe within ``timeout_s``, so a machine without network fails in
    seconds rather than waiting on the libraries' own retries (paper §3 fine-tunes
    ImageNet-pretrained models; this is how they get here).

    Args:
        name: registered backbone name.
        allow_download: whether the network may be used. ``None`` allows it unless
            ``MAMMOCAD_OFFLINE`` is truthy (or, for timm weights, ``HF_HUB_OFFLINE``).
        timeout_s: seconds for the probe and for each blocking network read.

    Returns:
        The path of the cached weights file.

    Raises:
        KeyError: for an unknown backbone name.
        WeightsUnavailable: naming the backbone, where the weights were looked for, and
            how to place them there.
    """
    spec = get_spec(name)
    if allow_download is None:
        allow_download = not _offline_by_env(spec.source)
    if spec.source == "torchvision":
        path = torchvision_cache_file(spec.weights)
        if path.is_file():
            return path
        where = str(path)
        url = _torchvision_weights(spec.weights).url
    else:
        found = _timm_cached_file(spec.weights)
        if found is not None:
            return found
        where = _timm_cache_hint(spec.weights)
        from huggingface_hub import constants

        url = constants.ENDPOINT
    if not allow_download:
        raise _unavailable(spec, where, "not cached and downloading is disabled")
    if not _reachable(url, timeout_s):
        raise _unavailable(spec, where, f"not cached and {url} is unreachable")
    logger.info("downloading ImageNet weights for %s from %s", name, url)
    try:
        if spec.source == "torchvision":
            _download(url, path, timeout_s)
            return path
        return _download_hf(spec, timeout_s)
    except WeightsUnavailable as err:
        raise _unavailable(spec, where, str(err)) from err
    except Exception as err:  # network and hub errors come in many types
        raise _unavailable(spec, where, f"download failed ({type(err).__name__}: {err})") from err


def _download_hf(spec: BackboneSpec, timeout_s: float) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    repo_id, revision = _timm_hub_id(spec.weights)
    for filename in _HF_FILENAMES:
        try:
            return Path(
                hf_hub_download(
                    repo_id,
                    filename,
                    revision=revision,
                    cache_dir=hf_hub_cache(),
                    etag_timeout=timeout_s,
                )
            )
        except EntryNotFoundError:
            continue
    raise WeightsUnavailable(f"{repo_id} holds none of {', '.join(_HF_FILENAMES)}")
