"""A tiny model built once per session in a temp dir (offline), and its float32 load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from quasar.inference.model import LoadedModel, load_model
from quasar.models.tiny import make_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "seed0", 0)


@pytest.fixture(scope="session")
def tiny(tiny_path: Path) -> LoadedModel:
    return load_model(str(tiny_path), "cpu", "float32")
