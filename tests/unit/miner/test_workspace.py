"""The workspace's git operations on a real repository: patches restricted to the kernel folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from quasar.miner.workspace import KERNEL_DIR, Workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp("ws") / "repo", "quasar-miner")
    ws.prepare(source=None, submit_url=None)
    return ws


def diff_of(ws: Workspace, rel: str, old: str, new: str) -> str:
    path = ws.path / rel
    text = path.read_text()
    path.write_text(text.replace(old, new, 1))
    diff = subprocess.run(["git", "diff", "--", rel], cwd=ws.path, capture_output=True, text=True).stdout
    path.write_text(text)
    return diff


def test_prepare_makes_the_branch_and_the_kernel(workspace: Workspace) -> None:
    assert workspace.current_branch() == "quasar-miner"
    assert (workspace.path / KERNEL_DIR / "__init__.py").is_file()
    assert len(workspace.kernel_tree()) == 40 and not workspace.kernel_dirty()


def test_working_tree_hash_is_the_committed_one(workspace: Workspace) -> None:
    before = workspace.kernel_tree()
    patch = diff_of(
        workspace, f"{KERNEL_DIR}/chunked.py", "DEFAULT_CHUNK_SIZE = 64", "DEFAULT_CHUNK_SIZE = 32"
    )
    assert workspace.apply_patch(patch) == [f"{KERNEL_DIR}/chunked.py"]
    (workspace.path / KERNEL_DIR / "extra.py").write_text("X = 1\n")
    predicted = workspace.working_kernel_tree()
    assert predicted != before and workspace.kernel_dirty()
    workspace.discard_kernel_changes()
    assert workspace.kernel_tree() == before == workspace.working_kernel_tree()
    assert not (workspace.path / KERNEL_DIR / "extra.py").exists()


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ("not a diff at all\n", "changes no file|not a valid"),
        (
            "--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-# QuasarAttention kernel submission\n+# x\n",
            "outside fla/ops/quasar",
        ),
        (
            "--- a/fla/ops/quasar/../../../README.md\n+++ b/fla/ops/quasar/../../../README.md\n"
            "@@ -1 +1 @@\n-# QuasarAttention kernel submission\n+# x\n",
            "outside fla/ops/quasar|not a valid",
        ),
        (
            "diff --git a/fla/ops/quasar/link b/fla/ops/quasar/link\nnew file mode 120000\n--- /dev/null\n"
            "+++ b/fla/ops/quasar/link\n@@ -0,0 +1 @@\n+/etc/passwd\n\\ No newline at end of file\n",
            "symlink",
        ),
        (
            "--- a/fla/ops/quasar/chunked.py\n+++ b/fla/ops/quasar/chunked.py\n@@ -1 +1 @@\n-no such line\n+x\n",
            "does not apply",
        ),
    ],
)
def test_patches_outside_the_kernel_or_broken_are_refused(
    workspace: Workspace, patch: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        workspace.apply_patch(patch)
    assert not workspace.kernel_dirty()
    assert (
        subprocess.run(
            ["git", "status", "--porcelain"], cwd=workspace.path, capture_output=True, text=True
        ).stdout
        == ""
    )


def test_a_checkout_that_is_not_a_kernel_repository_is_refused(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path / "src")], check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"],
        cwd=tmp_path / "src", check=True,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="fla/ops/quasar/__init__.py"):
        Workspace(tmp_path / "ws", "b").prepare(source=str(tmp_path / "src"), submit_url=None)
