"""Shared fixtures of the evaluation tests: submission repositories built as real git repos."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from quasar.kernels.template import init_kernel_repo

MakeRepo = Callable[..., tuple[Path, str]]


def _commit(repo: Path, message: str) -> str:
    env_args = ["-c", "user.name=test", "-c", "user.email=test@quasar.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", *env_args, "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", *env_args, "commit", "-q", "--allow-empty", "-m", message], cwd=repo, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def make_repo(tmp_path: Path) -> MakeRepo:
    """``make_repo(init_source=None, name=..., files={...})`` -> (path, commit sha).

    Starts from ``quasar kernel init``'s template; ``init_source`` replaces
    ``fla/ops/quasar/__init__.py`` (dedented); ``files`` adds more files (paths relative to the repo).
    """
    counter = {"n": 0}

    def build(
        init_source: str | None = None, *, name: str | None = None, files: dict[str, str] | None = None
    ):
        counter["n"] += 1
        repo = tmp_path / (name or f"submission{counter['n']}")
        init_kernel_repo(repo)
        if init_source is not None:
            (repo / "fla" / "ops" / "quasar" / "__init__.py").write_text(textwrap.dedent(init_source))
        for rel, text in (files or {}).items():
            target = repo / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(text))
        sha = _commit(repo, "submission")
        return repo, sha

    return build
