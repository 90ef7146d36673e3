"""The miner's git checkout of its kernel repository, and every git operation the miner runs on it.

The workspace is made once and then reused across restarts: a clone of the target repository
(TARGET_REPO_URL) when that has ``quasar kernel init``'s layout, else (the original subnet's fork of
flash-linear-attention, or the embedded profile with no TARGET_REPO_URL set) a fresh repository from
``quasar kernel init``; either continues from the miner's own remote when that already holds the
miner's branch. Work happens on one branch (MINER_BRANCH). Strategies only ever change
``fla/ops/quasar/`` — the folder validators import and whose git tree hash identifies a submission —
so that is all this module stages, diffs or discards.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from quasar.kernels.template import OP_FILES, init_kernel_repo

log = logging.getLogger("quasar.miner.workspace")

KERNEL_DIR = "fla/ops/quasar"
COMMIT_AUTHOR = ("QUASAR miner", "miner@quasar.invalid")
ORIGIN = "origin"
SUBMIT_REMOTE = "submit"

# Fixed settings for every git call: a user's hooks, signing or pager must not break or alter the
# miner's commits, and git must never stop to ask for a password.
_GIT_CONFIG = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "commit.gpgsign=false",
    "-c", "tag.gpgsign=false",
    "-c", "init.defaultBranch=main",
    "-c", "core.pager=cat",
    "-c", "advice.detachedHead=false",
)  # fmt: skip


class GitError(RuntimeError):
    """A git command failed; the message holds git's own explanation."""


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": COMMIT_AUTHOR[0],
        "GIT_AUTHOR_EMAIL": COMMIT_AUTHOR[1],
        "GIT_COMMITTER_NAME": COMMIT_AUTHOR[0],
        "GIT_COMMITTER_EMAIL": COMMIT_AUTHOR[1],
    }
    env.update(extra or {})
    return env


def run_git(
    args: list[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    check: bool = True,
    timeout: float = 600.0,
) -> subprocess.CompletedProcess[str]:
    if shutil.which("git") is None:
        raise GitError("git is not installed; install git to run the miner")
    result = subprocess.run(
        ["git", *_GIT_CONFIG, *args],
        cwd=cwd,
        env=dict(env) if env is not None else git_env(),
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        message = result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}"
        raise GitError(f"git {args[0]} failed in {cwd or os.getcwd()}: {message}")
    return result


def _header_paths(patch: str) -> list[str]:
    """Every path a diff's headers name (a/ and b/ prefixes stripped, /dev/null left out)."""
    paths = []
    for line in patch.splitlines():
        for prefix in ("--- ", "+++ ", "rename from ", "rename to ", "copy from ", "copy to "):
            if line.startswith(prefix):
                name = line[len(prefix) :].split("\t")[0].strip()
                if prefix in ("--- ", "+++ ") and name[:2] in ("a/", "b/"):
                    name = name[2:]
                if name and name != "/dev/null":
                    paths.append(name)
    return paths


class Workspace:
    """A git checkout on the miner's branch, with a ``submit`` remote for the miner's fork."""

    def __init__(self, path: str | Path, branch: str) -> None:
        self.path = Path(path).expanduser().resolve()
        self.branch = branch

    # -- set-up --
    def exists(self) -> bool:
        return (self.path / ".git").is_dir()

    def prepare(
        self, *, source: str | None, submit_url: str | None, submit_env: Mapping[str, str] | None = None
    ) -> None:
        """Clone (or reuse) the checkout, point ``submit`` at ``submit_url`` and check out the branch.

        ``source`` None means "make a fresh repository with quasar kernel init"; so does a ``source``
        without that layout (see :func:`has_template_layout`). When ``submit_url`` already has the
        branch (the miner's earlier work), the checkout starts from it.
        """
        if not self.exists():
            if self.path.exists() and any(self.path.iterdir()):
                raise GitError(
                    f"the miner workspace {self.path} exists but is not a git checkout; move it aside or "
                    "point MINER_WORKSPACE elsewhere"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if source is None:
                init_kernel_repo(self.path)
                log.info("workspace: new kernel repository from quasar kernel init at %s", self.path)
            else:
                log.info("workspace: cloning %s into %s", source, self.path)
                run_git(["clone", "--quiet", "--no-tags", source, str(self.path)], timeout=3600)
                if not has_template_layout(self.path):
                    shutil.rmtree(self.path)
                    init_kernel_repo(self.path)
                    log.info(
                        "workspace: %s has no `quasar kernel init` layout (%s/ with __init__.py, %s), so "
                        "the workspace starts from `quasar kernel init` instead", source, KERNEL_DIR,
                        ", ".join(OP_FILES),
                    )  # fmt: skip
        if submit_url:
            self._set_remote(SUBMIT_REMOTE, submit_url)
        if not self._has_ref(f"refs/heads/{self.branch}"):
            start = "HEAD"
            if submit_url and self._fetch_branch(submit_env):
                start = f"refs/remotes/{SUBMIT_REMOTE}/{self.branch}"
                log.info("workspace: continuing from %s on the submit remote", self.branch)
            self.git("branch", self.branch, start)
        if self.current_branch() != self.branch:
            self.git("checkout", "--quiet", self.branch)
        if not (self.path / KERNEL_DIR / "__init__.py").is_file():
            raise GitError(
                f"the workspace {self.path} has no {KERNEL_DIR}/__init__.py on branch {self.branch}; move the "
                "workspace aside (and delete that branch from your remote if it came from there) to start again "
                "from `quasar kernel init`"
            )

    def _set_remote(self, name: str, url: str) -> None:
        if self.git("remote", check=False).stdout.split().count(name):
            if self.git("remote", "get-url", name).stdout.strip() != url:
                self.git("remote", "set-url", name, url)
        else:
            self.git("remote", "add", name, url)

    def _fetch_branch(self, env: Mapping[str, str] | None) -> bool:
        result = self.git(
            "fetch", "--quiet", "--no-tags", SUBMIT_REMOTE,
            f"+refs/heads/{self.branch}:refs/remotes/{SUBMIT_REMOTE}/{self.branch}",
            check=False, env=env,
        )  # fmt: skip
        return result.returncode == 0

    # -- plumbing --
    def git(self, *args: str, check: bool = True, env: Mapping[str, str] | None = None,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return run_git(list(args), cwd=self.path, env=env if env is not None else git_env(), check=check,
                       input_text=input_text)  # fmt: skip

    def git_bytes(self, *args: str) -> bytes:
        """Raw stdout of a git command (archives)."""
        result = subprocess.run(
            ["git", *_GIT_CONFIG, *args], cwd=self.path, env=git_env(), capture_output=True, check=False
        )
        if result.returncode != 0:
            raise GitError(
                f"git {args[0]} failed in {self.path}: {result.stderr.decode(errors='replace').strip()}"
            )
        return result.stdout

    def _has_ref(self, ref: str) -> bool:
        return self.git("rev-parse", "--verify", "--quiet", ref, check=False).returncode == 0

    def current_branch(self) -> str:
        return self.git("rev-parse", "--abbrev-ref", "HEAD").stdout.strip()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").stdout.strip()

    def kernel_tree(self, rev: str = "HEAD") -> str:
        """The git tree hash of ``fla/ops/quasar`` at ``rev`` (what validators identify kernels by)."""
        return self.git("rev-parse", f"{rev}:{KERNEL_DIR}").stdout.strip()

    def working_kernel_tree(self) -> str:
        """The tree hash ``fla/ops/quasar`` would have if the working files were committed now."""
        with tempfile.TemporaryDirectory() as tmp:
            env = git_env({"GIT_INDEX_FILE": str(Path(tmp) / "index")})
            self.git("read-tree", "HEAD", env=env)
            self.git("add", "--all", "--", KERNEL_DIR, env=env)
            tree = self.git("write-tree", env=env).stdout.strip()
        return self.git("rev-parse", f"{tree}:{KERNEL_DIR}").stdout.strip()

    def kernel_dirty(self) -> bool:
        return bool(
            self.git("status", "--porcelain", "--untracked-files=all", "--", KERNEL_DIR).stdout.strip()
        )

    def kernel_files(self, *, exclude: tuple[str, ...] = ()) -> dict[str, str]:
        """Text of the kernel's tracked Python files, by path relative to the repository."""
        listed = self.git("ls-files", "--", KERNEL_DIR).stdout.split()
        files = {}
        for rel in sorted(listed):
            if not rel.endswith(".py") or any(rel.startswith(f"{KERNEL_DIR}/{e}") for e in exclude):
                continue
            files[rel] = (self.path / rel).read_text(errors="replace")
        return files

    # -- changes --
    def commit_kernel(self, message: str) -> str:
        """Commit the kernel folder's changes on the branch; returns the new HEAD."""
        self.git("add", "--all", "--", KERNEL_DIR)
        self.git("commit", "--quiet", "-m", message, "--", KERNEL_DIR)
        return self.head()

    def discard_kernel_changes(self) -> None:
        """Put ``fla/ops/quasar`` back exactly as committed (tracked edits and new files alike)."""
        self.git("checkout", "--quiet", "HEAD", "--", KERNEL_DIR)
        self.git("clean", "--quiet", "-fdx", "--", KERNEL_DIR)

    def apply_patch(self, patch: str) -> list[str]:
        """Apply a unified diff that may touch only ``fla/ops/quasar/``; returns the paths it changes.

        Model-written diffs are applied tolerantly, in this order until one applies: ``git apply
        --recount`` (hunk line counts recomputed from the hunks), ``--recount --3way`` (a three-way
        merge when the diff names blobs this repository has), ``--recount --ignore-whitespace``.
        Raises ValueError (nothing applied) when the patch reaches outside the kernel folder, makes
        symlinks or binaries, or no way applies it; the message says what each way rejected and why.
        """
        if not patch.endswith("\n"):
            patch += "\n"
        numstat = self.git("apply", "--numstat", "--recount", "-z", "-", input_text=patch, check=False)
        if numstat.returncode != 0:
            raise ValueError(f"the patch is not a valid unified diff: {numstat.stderr.strip()[:500]}")
        # -z: "added TAB deleted TAB path NUL", or for a rename "added TAB deleted TAB NUL old NUL new NUL".
        paths = [p.split("\t")[-1] for p in numstat.stdout.split("\0") if p.split("\t")[-1]]
        if not paths:
            raise ValueError("the patch changes no file")
        for rel in paths + _header_paths(patch):
            clean = os.path.normpath(rel)
            if rel.startswith("/") or ".." in Path(rel).parts or not clean.startswith(KERNEL_DIR + "/"):
                raise ValueError(
                    f"the patch touches {rel}, outside {KERNEL_DIR}/ (only the kernel may change)"
                )
        if re.search(r"^(new|old) mode 120000|^new file mode 120000|^GIT binary patch", patch, flags=re.M):
            raise ValueError("the patch makes a symlink or a binary file; only text files may change")
        if self.kernel_dirty():
            raise ValueError(f"{KERNEL_DIR}/ has uncommitted changes; a patch applies only to a clean kernel")
        rejected: list[str] = []
        for flags in _APPLY_WAYS:
            way = "git apply " + " ".join(flags)
            check = self.git(
                "apply", "--check", *flags, "--whitespace=nowarn", "-", input_text=patch, check=False
            )
            if check.returncode == 0:
                done = self.git("apply", *flags, "--whitespace=nowarn", "-", input_text=patch, check=False)
                if done.returncode == 0:
                    if rejected:
                        log.info("workspace: the patch applied with `%s` after: %s", way, "; ".join(rejected))
                    return paths
                check = done  # a three-way merge with conflicts: put the kernel back, try the next way
                self.discard_kernel_changes()
            rejected.append(f"`{way}`: {_git_apply_error(check.stderr)}")
        raise ValueError("the patch does not apply: " + "; ".join(rejected))


#: How :meth:`Workspace.apply_patch` tries a patch, in order.
_APPLY_WAYS = (("--recount",), ("--recount", "--3way"), ("--recount", "--ignore-whitespace"))


def _git_apply_error(stderr: str) -> str:
    """What ``git apply`` said, without its progress chatter, in at most 300 characters."""
    lines = []
    for line in stderr.splitlines():
        if line.startswith("U "):  # a path the three-way merge left unmerged
            lines.append(f"the three-way merge conflicts in {line[2:].strip()}")
        elif line.strip() and not line.startswith(
            ("Checking patch", "Falling back", "Applied patch", "Applying patch")
        ):
            lines.append(line.strip())
    return (" / ".join(lines) or "rejected without a message")[:300]


def default_source(target_repo_url: str, *, explicit: bool, embedded: bool) -> str | None:
    """Where a new workspace is cloned from; None means a fresh ``quasar kernel init`` repository."""
    if embedded and not explicit:
        return None
    return target_repo_url


def has_template_layout(path: Path) -> bool:
    """Whether the checkout's kernel has ``quasar kernel init``'s files (what ``tune`` works on)."""
    kernel = Path(path) / KERNEL_DIR
    return all((kernel / name).is_file() for name in ("__init__.py", *OP_FILES))


__all__ = [
    "KERNEL_DIR",
    "SUBMIT_REMOTE",
    "GitError",
    "Workspace",
    "default_source",
    "has_template_layout",
    "git_env",
    "run_git",
]
