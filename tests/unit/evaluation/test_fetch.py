"""Fetching submissions: URL policy, exact commit, tree hash, limits, no option injection, clean-up."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from quasar.evaluation.fetch import FetchError, FetchLimits, fetch_submission

HOSTS = ["github.com"]


def _tree_hash(repo: Path, sha: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", f"{sha}:fla/ops/quasar"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_fetches_exact_commit_and_kernel_tree_hash(make_repo, tmp_path: Path) -> None:
    repo, first = make_repo()
    (repo / "fla" / "ops" / "quasar" / "extra.py").write_text("X = 1\n")
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "x"], cwd=repo)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "second"], cwd=repo)
    for url in (str(repo), repo.as_uri()):
        fetched = fetch_submission(url, first, dev_mode=True, allowed_hosts=HOSTS, parent_dir=tmp_path)
        try:
            assert fetched.commit_sha == first
            assert fetched.kernel_tree_hash == _tree_hash(repo, first)
            # The older commit was checked out, not the branch tip.
            assert not (fetched.worktree / "fla" / "ops" / "quasar" / "extra.py").exists()
            assert (fetched.worktree / "fla" / "ops" / "quasar" / "__init__.py").is_file()
            # No hooks were installed from any template.
            assert (
                not any((fetched.worktree / ".git" / "hooks").glob("*"))
                if (fetched.worktree / ".git" / "hooks").exists()
                else True
            )
        finally:
            fetched.remove()
        assert not fetched.root.exists()


def test_local_paths_are_refused_outside_dev_mode(make_repo) -> None:
    repo, sha = make_repo()
    for url in (str(repo), repo.as_uri()):
        with pytest.raises(FetchError) as info:
            fetch_submission(url, sha, dev_mode=False, allowed_hosts=HOSTS)
        assert info.value.code == "url_not_allowed" and info.value.submission_fault


@pytest.mark.parametrize(
    "url",
    ["--upload-pack=touch /tmp/pwned", "ssh://github.com/a/b", "git://github.com/a/b", "ext::sh -c id",
     "https://evil.example.com/a/b", "http://github.com/a/b", "https://user:pw@github.com/a/b"],
)  # fmt: skip
def test_hostile_urls_are_refused_before_git_runs(url: str) -> None:
    with pytest.raises(FetchError) as info:
        fetch_submission(url, "a" * 40, dev_mode=False, allowed_hosts=HOSTS)
    assert info.value.code == "url_not_allowed"


@pytest.mark.parametrize("sha", ["--output=/tmp/x", "HEAD", "a" * 39, "A" * 40, "a" * 40 + "\n"])
def test_commit_must_be_a_full_hex_sha(make_repo, sha: str) -> None:
    repo, _ = make_repo()
    with pytest.raises(FetchError) as info:
        fetch_submission(str(repo), sha, dev_mode=True, allowed_hosts=HOSTS)
    assert info.value.code == "invalid_commit_sha"


def test_unknown_commit_and_missing_kernel(make_repo, tmp_path: Path) -> None:
    repo, _ = make_repo()
    with pytest.raises(FetchError) as info:
        fetch_submission(str(repo), "0" * 40, dev_mode=True, allowed_hosts=HOSTS, parent_dir=tmp_path)
    assert info.value.code == "commit_not_found" and info.value.submission_fault
    subprocess.run(["git", "rm", "-rq", "fla/ops/quasar"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "rm"], cwd=repo, check=True
    )
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    with pytest.raises(FetchError) as info:
        fetch_submission(str(repo), sha, dev_mode=True, allowed_hosts=HOSTS, parent_dir=tmp_path)
    assert info.value.code == "kernel_missing"
    # Every failed fetch removed its own directory and nothing else.
    assert sorted(p.name for p in tmp_path.iterdir()) == [repo.name]


def test_tree_size_limit_is_checked_before_checkout(make_repo, tmp_path: Path) -> None:
    # 64 MiB of zeros compresses to almost nothing in the pack: only the tree-size check stops it.
    repo, _ = make_repo()
    (repo / "big.bin").write_bytes(b"\0" * (64 * 2**20))
    subprocess.run(["git", "add", "big.bin"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "big"], cwd=repo, check=True
    )
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    limits = FetchLimits(max_tree_bytes=8 * 2**20)
    with pytest.raises(FetchError) as info:
        fetch_submission(
            str(repo), sha, dev_mode=True, allowed_hosts=HOSTS, limits=limits, parent_dir=tmp_path
        )
    assert info.value.code == "repo_too_large"
    assert sorted(p.name for p in tmp_path.iterdir()) == [repo.name]


def test_symlinks_are_checked_out_as_plain_files(make_repo, tmp_path: Path) -> None:
    repo, _ = make_repo()
    (repo / "fla" / "ops" / "quasar" / "leak.txt").symlink_to("/etc/hostname")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "ln"], cwd=repo, check=True
    )
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    fetched = fetch_submission(str(repo), sha, dev_mode=True, allowed_hosts=HOSTS, parent_dir=tmp_path)
    try:
        leak = fetched.worktree / "fla" / "ops" / "quasar" / "leak.txt"
        assert not leak.is_symlink() and leak.read_text() == "/etc/hostname"
    finally:
        fetched.remove()


def test_pin_config_names_host_port_and_address() -> None:
    from quasar.evaluation.fetch import _pin_config

    assert _pin_config("https://github.com/a/b", "140.82.121.4") == [
        "-c",
        "http.curloptResolve=github.com:443:140.82.121.4",
    ]
    assert _pin_config("https://example.org:8443/a", "2001:db8::1")[1].endswith(
        "example.org:8443:[2001:db8::1]"
    )
    assert _pin_config("/srv/repo", None) == []
