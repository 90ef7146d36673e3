"""Fetch one revealed submission ``(repo_url, commit_sha)`` into a fresh directory, safely.

Everything here handles miner-controlled values (DESIGN §3), so:

* the URL passes :func:`quasar.urlpolicy.check_url` first (https on allowed hosts; local paths and
  ``file://`` only in development mode) and its host is resolved once, at fetch time, and pinned
  with ``http.curloptResolve`` so git cannot be sent elsewhere by a second DNS answer;
  redirects are refused for the same reason;
* miner values reach git only after ``--`` or as validated 40-hex object names, never as options;
* git runs with no system or global config, no hooks (empty template, ``core.hooksPath`` to
  /dev/null), only the allowed protocols, no credential prompts, fsck of received objects, and
  symlinks checked out as plain files;
* the fetch is shallow (``--depth 1`` of exactly that commit) under a wall-clock limit and a limit
  on bytes received; the checkout is refused when the tree is larger than a limit (a small pack can
  expand into a huge tree);
* the fetched commit is verified to be the one requested, and ``kernel_tree_hash`` (the git tree
  hash of ``fla/ops/quasar``, used by the API to spot copies) is read from git's object store;
* clean-up removes only the directory this module created.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from quasar.reasons import (
    REASON_COMMIT_MISMATCH,
    REASON_COMMIT_NOT_FOUND,
    REASON_FETCH_FAILED,
    REASON_FETCH_TIMEOUT,
    REASON_INVALID_COMMIT_SHA,
    REASON_KERNEL_MISSING,
    REASON_REPO_TOO_LARGE,
    REASON_URL_NOT_ALLOWED,
)
from quasar.urlpolicy import UrlNotAllowed, check_url, resolve_and_pin

__all__ = ["FetchError", "FetchLimits", "FetchedRepo", "fetch_submission", "KERNEL_DIR"]

#: The package every submission must contain (DESIGN §2): its tree hash identifies the kernel.
KERNEL_DIR = "fla/ops/quasar"
_SHA_RE = re.compile(r"[0-9a-f]{40}")


class FetchError(Exception):
    """The submission could not be fetched. ``code`` is a stable reason; ``detail`` says what to do.

    ``submission_fault`` is True when the miner's repository is to blame (verdict ``fail``) and
    False when the validator's side or the network may be (verdict ``error``: retried elsewhere).
    """

    def __init__(self, code: str, detail: str, *, submission_fault: bool) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.submission_fault = submission_fault


@dataclass(frozen=True)
class FetchLimits:
    """Limits on one fetch. The defaults fit a fork of flash-linear-attention with room to spare."""

    timeout_s: float = 120.0
    #: Bytes git may write under .git while fetching (the pack received, roughly).
    max_fetch_bytes: int = 200 * 2**20
    #: Total size of the files in the commit's tree, checked before anything is checked out.
    max_tree_bytes: int = 500 * 2**20
    max_tree_files: int = 20_000


@dataclass
class FetchedRepo:
    """A checked-out submission. ``remove()`` deletes exactly the directory created for it."""

    #: Directory created by the fetch; the worktree is ``path / "repo"``.
    root: Path
    commit_sha: str
    kernel_tree_hash: str
    url: str
    #: The address git connected to (None for local repositories).
    pinned_ip: str | None
    seconds: float

    @property
    def worktree(self) -> Path:
        return self.root / "repo"

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _git_env(home: Path, allowed_protocols: str) -> dict[str, str]:
    """A minimal environment for git: nothing of the validator's own configuration or secrets."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C",
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_ALLOW_PROTOCOL": allowed_protocols,
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_LFS_SKIP_SMUDGE": "1",
    }


def _base_config(allowed_protocols: str) -> list[str]:
    config = {
        "core.hooksPath": os.devnull,
        "core.symlinks": "false",
        "core.fsmonitor": "false",
        "credential.helper": "",
        "http.followRedirects": "false",
        "http.lowSpeedLimit": "1000",
        "http.lowSpeedTime": "30",
        "fetch.fsckObjects": "true",
        "transfer.fsckObjects": "true",
        "submodule.recurse": "false",
        "protocol.allow": "never",
        "advice.detachedHead": "false",
        # The source repository of a development-mode local fetch may belong to another user.
        "safe.directory": "*",
    }
    for proto in allowed_protocols.split(":"):
        config[f"protocol.{proto}.allow"] = "always"
    args: list[str] = []
    for key, value in config.items():
        args += ["-c", f"{key}={value}"]
    return args


def _dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _run_git(
    args: Sequence[str], *, cwd: Path, env: dict[str, str], deadline: float, watch: Path | None = None,
    max_bytes: int = 0,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run git with a deadline; when ``watch`` is given, kill it once that directory passes ``max_bytes``."""
    proc = subprocess.Popen(
        ["git", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FetchError(
                    REASON_FETCH_TIMEOUT, "git did not finish in time; is the repository reachable and small?",
                    submission_fault=False,
                )  # fmt: skip
            try:
                out, err = proc.communicate(timeout=min(0.5, remaining))
                return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
            except subprocess.TimeoutExpired:
                pass
            if watch is not None and _dir_bytes(watch) > max_bytes:
                raise FetchError(
                    REASON_REPO_TOO_LARGE,
                    f"the fetch exceeded {max_bytes // 2**20} MiB; keep the submission repository small",
                    submission_fault=True,
                )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()


def _fetch_url(url: str) -> str:
    """The URL to hand git: absolute local paths become file:// URLs (so --depth is honoured)."""
    return Path(url).as_uri() if url.startswith("/") else url


def _pin_config(url: str, ip: str | None) -> list[str]:
    if ip is None:
        return []
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    address = f"[{ip}]" if isinstance(ipaddress.ip_address(ip), ipaddress.IPv6Address) else ip
    # curl's resolve list: connections to HOST:PORT go to ADDRESS, whatever DNS says later.
    return ["-c", f"http.curloptResolve={host}:{port}:{address}"]


def fetch_submission(
    repo_url: str,
    commit_sha: str,
    *,
    dev_mode: bool,
    allowed_hosts: Sequence[str],
    limits: FetchLimits | None = None,
    parent_dir: str | Path | None = None,
) -> FetchedRepo:
    """Fetch ``commit_sha`` of ``repo_url`` into a new temporary directory and check it out.

    Raises :class:`FetchError` with a stable ``code``: ``url_not_allowed`` (policy; ``detail`` names
    the rule), ``invalid_commit_sha``, ``fetch_timeout``, ``fetch_failed``, ``commit_not_found``,
    ``commit_mismatch``, ``repo_too_large``, ``kernel_missing``.
    """
    limits = limits or FetchLimits()
    started = time.monotonic()
    deadline = started + limits.timeout_s
    if not isinstance(commit_sha, str) or not _SHA_RE.fullmatch(commit_sha):
        raise FetchError(
            REASON_INVALID_COMMIT_SHA, "commit_sha must be the full 40-character lowercase hex SHA-1",
            submission_fault=True,
        )  # fmt: skip
    try:
        url = check_url(repo_url, dev_mode=dev_mode, allowed_hosts=list(allowed_hosts), kind="repo")
        url, ip = resolve_and_pin(url, dev_mode=dev_mode)
    except UrlNotAllowed as exc:
        fault = exc.code != "host_unresolvable"
        raise FetchError(
            REASON_URL_NOT_ALLOWED, f"{exc.code}: {exc.detail}", submission_fault=fault
        ) from None

    fetch_url = _fetch_url(url)
    protocols = "https:http:file" if dev_mode else "https"
    root = Path(tempfile.mkdtemp(prefix="quasar-fetch-", dir=parent_dir))
    try:
        home = root / "home"
        work = root / "repo"
        home.mkdir()
        work.mkdir()
        env = _git_env(home, protocols)
        config = _base_config(protocols)

        def git(*args: str, watch: bool = False) -> subprocess.CompletedProcess[str]:
            return _run_git(
                [*config, *args], cwd=work, env=env, deadline=deadline,
                watch=work / ".git" if watch else None, max_bytes=limits.max_fetch_bytes,
            )  # fmt: skip

        # An empty template: no sample hooks, nothing from the validator's own git installation.
        init = git("init", "-q", f"--template={home}", ".")
        if init.returncode != 0:
            raise FetchError(
                REASON_FETCH_FAILED, f"git init failed: {init.stderr.strip()[:300]}", submission_fault=False
            )
        fetched = git(
            *_pin_config(url, ip), "fetch", "-q", "--depth", "1", "--no-tags", "--no-recurse-submodules",
            "--no-write-fetch-head", "--", fetch_url, f"{commit_sha}:refs/quasar/submission", watch=True,
        )  # fmt: skip
        if fetched.returncode != 0:
            message = fetched.stderr.strip()
            lowered = message.lower()
            if "not our ref" in lowered or "couldn't find remote ref" in lowered or "unadvertised" in lowered:
                raise FetchError(
                    REASON_COMMIT_NOT_FOUND,
                    f"the repository has no commit {commit_sha}; push it before revealing",
                    submission_fault=True,
                )
            if "fsck" in lowered or "bad object" in lowered:
                raise FetchError(
                    REASON_FETCH_FAILED, f"malformed objects: {message[:300]}", submission_fault=True
                )
            raise FetchError(
                REASON_FETCH_FAILED, f"git fetch failed: {message[:300]}", submission_fault=False
            )
        resolved = git("rev-parse", "--verify", "--end-of-options", "refs/quasar/submission^{commit}")
        got = resolved.stdout.strip()
        if resolved.returncode != 0 or got != commit_sha:
            raise FetchError(
                REASON_COMMIT_MISMATCH, f"asked for commit {commit_sha}, the repository sent {got or 'nothing'}",
                submission_fault=True,
            )  # fmt: skip
        tree = git("rev-parse", "--verify", "--end-of-options", f"{commit_sha}:{KERNEL_DIR}")
        kind = git("cat-file", "-t", "--end-of-options", f"{commit_sha}:{KERNEL_DIR}")
        if tree.returncode != 0 or kind.stdout.strip() != "tree":
            raise FetchError(
                REASON_KERNEL_MISSING,
                f"commit {commit_sha} has no directory {KERNEL_DIR}/; a submission is a fork of "
                "flash-linear-attention with the kernel there (see `quasar kernel init`)",
                submission_fault=True,
            )
        _check_tree_size(git("ls-tree", "-r", "-l", "-z", "--end-of-options", commit_sha).stdout, limits)
        checkout = git("checkout", "-q", "--detach", commit_sha)
        if checkout.returncode != 0:
            raise FetchError(
                REASON_FETCH_FAILED,
                f"checkout failed: {checkout.stderr.strip()[:300]}",
                submission_fault=True,
            )
        return FetchedRepo(
            root=root, commit_sha=commit_sha, kernel_tree_hash=tree.stdout.strip(), url=url,
            pinned_ip=ip, seconds=time.monotonic() - started,
        )  # fmt: skip
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _check_tree_size(ls_tree: str, limits: FetchLimits) -> None:
    total = files = 0
    for entry in ls_tree.split("\0"):
        if not entry:
            continue
        meta = entry.split("\t", 1)[0].split()
        # "<mode> <type> <object> <size>"; submodules (commit entries) have size "-".
        if len(meta) == 4 and meta[1] == "blob":
            files += 1
            total += int(meta[3])
    if total > limits.max_tree_bytes or files > limits.max_tree_files:
        raise FetchError(
            REASON_REPO_TOO_LARGE,
            f"the commit holds {files} files, {total // 2**20} MiB; the limits are "
            f"{limits.max_tree_files} files and {limits.max_tree_bytes // 2**20} MiB",
            submission_fault=True,
        )
