"""The workspace's git operations on real repositories: where it starts from, patches restricted to the
kernel folder and applied tolerantly (recounted, three-way, whitespace), with what was rejected and why."""

from __future__ import annotations

import logging
import re
import subprocess
from pathlib import Path

import pytest

from quasar.kernels.template import init_kernel_repo
from quasar.miner.workspace import KERNEL_DIR, GitError, Workspace, default_source, has_template_layout


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


def _commit_all(repo: Path, message: str) -> None:
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message],
        cwd=repo,
        check=True,
    )


def original_fork(path: Path) -> Path:
    """A repository laid out like the original subnet's fork of flash-linear-attention."""
    kernel = path / KERNEL_DIR
    kernel.mkdir(parents=True)
    (path / "fla" / "__init__.py").write_text("from fla.layers import *  # noqa\n")
    (kernel / "__init__.py").write_text(
        "from .chunk import chunk_quasar\nfrom .fused_recurrent import fused_recurrent_quasar\n"
    )
    (kernel / "chunk.py").write_text("def chunk_quasar(*args):\n    raise NotImplementedError\n")
    (kernel / "fused_recurrent.py").write_text(
        "def fused_recurrent_quasar(*args):\n    raise NotImplementedError\n"
    )
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    _commit_all(path, "the original's layout")
    return path


def test_a_target_without_the_template_layout_starts_from_kernel_init(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = original_fork(tmp_path / "fla-fork")
    assert not has_template_layout(source)
    ws = Workspace(tmp_path / "ws", "quasar-miner")
    with caplog.at_level(logging.INFO, logger="quasar.miner.workspace"):
        ws.prepare(source=str(source), submit_url=None)
    assert has_template_layout(ws.path) and not (ws.path / KERNEL_DIR / "chunk.py").exists()
    assert ws.current_branch() == "quasar-miner" and not ws.kernel_dirty()
    said = [r.getMessage() for r in caplog.records if "quasar kernel init" in r.getMessage()]
    assert len(said) == 1 and str(source) in said[0] and "chunked.py" in said[0], said
    # The default target (the original's fork) is cloned on a real chain; only then is the layout judged.
    target = "https://github.com/troy12x/flash-linear-attention"
    assert default_source(target, explicit=False, embedded=False) == target
    assert default_source(target, explicit=False, embedded=True) is None


def test_a_target_with_the_template_layout_is_cloned(tmp_path: Path) -> None:
    upstream = tmp_path / "upstream"
    init_kernel_repo(upstream)
    (upstream / KERNEL_DIR / "chunked.py").write_text(
        (upstream / KERNEL_DIR / "chunked.py")
        .read_text()
        .replace("DEFAULT_CHUNK_SIZE = 64", "DEFAULT_CHUNK_SIZE = 32")
    )
    _commit_all(upstream, "a team's improvement")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=upstream, capture_output=True, text=True
    ).stdout.strip()
    ws = Workspace(tmp_path / "ws", "quasar-miner")
    ws.prepare(source=str(upstream), submit_url=None)
    assert (
        ws.head() == head and "DEFAULT_CHUNK_SIZE = 32" in (ws.path / KERNEL_DIR / "chunked.py").read_text()
    )


def test_a_branch_without_the_kernel_is_refused_in_one_line(tmp_path: Path) -> None:
    # The miner's branch on its remote (its earlier work) is what the workspace continues from.
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "README.md").write_text("not a kernel\n")
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    _commit_all(other, "x")
    subprocess.run(["git", "push", "-q", str(remote), "HEAD:refs/heads/quasar-miner"], cwd=other, check=True)
    with pytest.raises(GitError, match="has no fla/ops/quasar/__init__.py on branch quasar-miner") as refused:
        Workspace(tmp_path / "ws", "quasar-miner").prepare(source=None, submit_url=str(remote))
    assert "\n" not in str(refused.value) and "move the workspace aside" in str(refused.value)


# --- tolerant patches (what models write) ------------------------------------------------------------
@pytest.fixture
def fresh(tmp_path: Path) -> Workspace:
    ws = Workspace(tmp_path / "repo", "quasar-miner")
    ws.prepare(source=None, submit_url=None)
    return ws


CHUNKED = f"{KERNEL_DIR}/chunked.py"


def test_a_patch_with_wrong_hunk_counts_is_recounted(fresh: Workspace) -> None:
    patch = diff_of(fresh, CHUNKED, "DEFAULT_CHUNK_SIZE = 64", "DEFAULT_CHUNK_SIZE = 32")
    wrong = re.sub(r"^@@ -(\d+),\d+ \+(\d+),\d+ @@", r"@@ -\1,99 +\2,3 @@", patch, flags=re.M)
    assert wrong != patch
    plain = subprocess.run(
        ["git", "apply", "--check", "-"], cwd=fresh.path, input=wrong, capture_output=True, text=True
    )
    assert plain.returncode != 0  # git alone refuses it
    assert fresh.apply_patch(wrong) == [CHUNKED]
    assert "DEFAULT_CHUNK_SIZE = 32" in (fresh.path / CHUNKED).read_text()


def test_a_patch_against_an_older_kernel_is_merged_three_ways(
    fresh: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    # The model saw the kernel before a commit that changed a line of its edit's context.
    path = fresh.path / CHUNKED
    original = path.read_text()
    import_line = "from .reference import apply_per_sequence\n"
    assert original.index(import_line) < original.index("DEFAULT_CHUNK_SIZE = 64")
    path.write_text(original.replace("DEFAULT_CHUNK_SIZE = 64", "DEFAULT_CHUNK_SIZE = 32"))
    patch = subprocess.run(
        ["git", "diff", "--", CHUNKED], cwd=fresh.path, capture_output=True, text=True
    ).stdout
    assert import_line.strip() in patch  # in the hunk's context
    path.write_text(original.replace(import_line, import_line.strip() + "  # the one helper\n"))
    fresh.commit_kernel("a comment in the context")
    with caplog.at_level(logging.INFO, logger="quasar.miner.workspace"):
        assert fresh.apply_patch(patch) == [CHUNKED]
    text = path.read_text()
    assert "# the one helper" in text and "DEFAULT_CHUNK_SIZE = 32" in text
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "`git apply --recount --3way`" in said and "`git apply --recount`: " in said


def test_a_patch_whose_context_lost_its_indentation_applies(
    fresh: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    text = (fresh.path / CHUNKED).read_text()
    line = next(x for x in text.splitlines() if x.startswith("    num_chunks = "))
    patch = diff_of(fresh, CHUNKED, line, line + "  # chunks")
    mangled = re.sub(r"^ {5}", " \t", patch, flags=re.M)  # context re-indented with a tab
    assert mangled != patch
    with caplog.at_level(logging.INFO, logger="quasar.miner.workspace"):
        assert fresh.apply_patch(mangled) == [CHUNKED]
    assert line + "  # chunks" in (fresh.path / CHUNKED).read_text()
    assert "applied with `git apply --recount --ignore-whitespace`" in caplog.text


def test_a_patch_no_way_applies_is_refused_naming_each_way(fresh: Workspace) -> None:
    path = fresh.path / CHUNKED
    original = path.read_text()
    path.write_text(original.replace("DEFAULT_CHUNK_SIZE = 64", "DEFAULT_CHUNK_SIZE = 32"))
    patch = subprocess.run(
        ["git", "diff", "--full-index", "--", CHUNKED], cwd=fresh.path, capture_output=True, text=True
    ).stdout
    # The same line changed differently since: the three-way merge conflicts.
    path.write_text(original.replace("DEFAULT_CHUNK_SIZE = 64", "DEFAULT_CHUNK_SIZE = 128"))
    fresh.commit_kernel("another value")
    with pytest.raises(ValueError) as refused:
        fresh.apply_patch(patch)
    message = str(refused.value)
    assert message.startswith("the patch does not apply: ")
    for way in (
        "`git apply --recount`: ",
        "`git apply --recount --3way`: ",
        "`git apply --recount --ignore-whitespace`: ",
    ):
        assert way in message, message
    assert "the three-way merge conflicts in fla/ops/quasar/chunked.py" in message
    assert "error: patch failed: fla/ops/quasar/chunked.py" in message
    # Nothing is left behind: no conflict markers, no staged half-merge.
    assert not fresh.kernel_dirty() and "DEFAULT_CHUNK_SIZE = 128" in path.read_text()
    assert (
        subprocess.run(
            ["git", "status", "--porcelain"], cwd=fresh.path, capture_output=True, text=True
        ).stdout
        == ""
    )
