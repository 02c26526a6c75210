"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest

from mammocad.models.backbones import OFFLINE_ENV


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torchvision and Hugging Face caches under ``tmp_path``: no float ImageNet
    weights anywhere, and no offline switch set."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path
