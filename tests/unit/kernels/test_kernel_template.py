"""``init_kernel_repo``: the repository miners start from, its layout, and the op files' imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import quasar.kernels
from quasar.kernels.template import OP_FILES, init_kernel_repo

ALLOWED_TOP_LEVEL = {"torch", "triton", "__future__"} | set(sys.stdlib_module_names)


def _foreign_imports(path: Path) -> list[str]:
    """Absolute imports of anything but torch, triton and the standard library."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        bad += [f"{path.name}: {n}" for n in names if n.split(".")[0] not in ALLOWED_TOP_LEVEL]
    return bad


def test_op_files_import_only_torch_triton_and_each_other() -> None:
    source = Path(quasar.kernels.__file__).parent
    files = [source / name for name in OP_FILES] + sorted((source / "fast").glob("*.py"))
    assert [bad for f in files for bad in _foreign_imports(f)] == []


def test_creates_repository_with_submission_layout(tmp_path: Path) -> None:
    repo = tmp_path / "kernel"
    sha = init_kernel_repo(repo)

    assert len(sha) == 40 and all(c in "0123456789abcdef" for c in sha)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
    assert head.stdout.strip() == sha
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert status.stdout == "", "everything the template writes is committed"
    package = repo / "fla" / "ops" / "quasar"
    for name in ("__init__.py", *OP_FILES):
        assert (package / name).is_file(), name
    assert (repo / "fla" / "__init__.py").is_file() and (repo / "fla" / "ops" / "__init__.py").is_file()
    readme = (repo / "README.md").read_text()
    assert "chunk_quasar" in readme and "fla/ops/quasar" in readme
    for path in package.rglob("*.py"):
        assert _foreign_imports(path) == [], path


def test_exports_a_working_chunk_quasar(tmp_path: Path) -> None:
    repo = tmp_path / "kernel"
    init_kernel_repo(repo)
    # A child process, so this test's interpreter never imports the template's `fla`.
    script = (
        "import torch\n"
        "from fla.ops.quasar import chunk_quasar, naive_quasar\n"
        "q = torch.randn(2, 70, 2, 8); v = torch.randn(2, 70, 2, 4); beta = torch.ones(2)\n"
        "o, s = chunk_quasar(q, q * 0.3, v, beta, output_final_state=True)\n"
        "r, rs = naive_quasar(q, q * 0.3, v, beta, output_final_state=True)\n"
        "assert (o - r).norm() / r.norm() < 1e-5 and s.shape == (2, 2, 8, 4)\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_refuses_non_empty_directory_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        init_kernel_repo(tmp_path)
    sha = init_kernel_repo(tmp_path, force=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "fla" / "ops" / "quasar" / "__init__.py").is_file()
    # Forcing again over an unchanged template keeps the commit.
    assert init_kernel_repo(tmp_path, force=True) == sha
