"""Where the miner publishes its kernel: a GitHub fork (made through PyGithub) or any git remote.

Three cases, in order:

* ``GIT_REMOTE_URL`` set: push there (or to ``GIT_PUSH_URL``, e.g. over SSH, when set) with whatever git
  credentials the user has configured; no GitHub. ``GIT_REMOTE_URL`` is what is revealed.
* ``GITHUB_TOKEN`` and ``GITHUB_USERNAME`` set: find ``GITHUB_USERNAME/GITHUB_FORK_NAME`` or fork the
  target repository into it, and push over https with the token.
* Neither, in development mode: a local bare repository under the miner's state directory.

The token is handed to git through a credential helper defined in git's environment configuration
(``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``) that echoes an environment variable of the git process:
it is never in an argv (``ps`` shows argv to every user), never in a URL, never written to
``.git/config`` or a credential store (the helper list is reset first, so a configured ``store``
helper never sees it), and redacted from any git output the miner logs. It is only sent over https
(or to a loopback host, for tests).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from quasar.config import Settings
from quasar.miner.workspace import SUBMIT_REMOTE, GitError, Workspace, git_env, run_git
from quasar.urlpolicy import UrlNotAllowed, check_url

log = logging.getLogger("quasar.miner.forge")

TOKEN_ENV = "QUASAR_GIT_TOKEN"
USERNAME_ENV = "QUASAR_GIT_USERNAME"
# Answers only "get"; "store" and "erase" are ignored, so nothing is ever saved.
_HELPER = (
    f'!f() {{ test "$1" = get || exit 0; echo "username=${USERNAME_ENV}"; echo "password=${TOKEN_ENV}"; }}; f'
)


class ForgeError(RuntimeError):
    """The fork or the remote cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class GitCredentials:
    username: str
    token: str = field(repr=False)

    def env(self) -> dict[str, str]:
        """Environment for one git process: the helper (after a reset of any configured ones) and the token."""
        return {
            "GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": "credential.helper",
            "GIT_CONFIG_VALUE_0": "",
            "GIT_CONFIG_KEY_1": "credential.helper",
            "GIT_CONFIG_VALUE_1": _HELPER,
            USERNAME_ENV: self.username,
            TOKEN_ENV: self.token,
        }

    def redact(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text


@dataclass(frozen=True)
class SubmitRemote:
    """``push_url`` is what git pushes to; ``repo_url`` is what validators fetch (revealed)."""

    push_url: str
    repo_url: str
    credentials: GitCredentials | None = None
    kind: str = "git"

    def git_env(self) -> dict[str, str]:
        return git_env(self.credentials.env() if self.credentials else None)

    def redact(self, text: str) -> str:
        return self.credentials.redact(text) if self.credentials else text


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ssh(url: str) -> bool:
    """``ssh://...``, ``git+ssh://...`` or git's scp-like ``user@host:path``."""
    if url.startswith(("ssh://", "git+ssh://", "ssh+git://")):
        return True
    return "://" not in url and bool(re.match(r"^[^/:]+@[^/:]+:", url))


def _github_full_name(url: str) -> str:
    """``owner/name`` of a GitHub repository URL (https://github.com/owner/name(.git))."""
    parts = [p for p in urlsplit(url).path.split("/") if p]
    if len(parts) < 2:
        raise ForgeError(f"TARGET_REPO_URL {url!r} does not name a repository as https://HOST/OWNER/NAME")
    return f"{parts[0]}/{parts[1].removesuffix('.git')}"


def ensure_github_fork(settings: Settings, *, wait_seconds: float = 120.0) -> SubmitRemote:
    """Find ``GITHUB_USERNAME/GITHUB_FORK_NAME`` or fork TARGET_REPO_URL into it; returns the push remote."""
    from github import Auth, Github, GithubException, UnknownObjectException

    token, username = settings.github_token or "", settings.github_username or ""
    gh = Github(auth=Auth.Token(token), base_url=settings.github_api_url.rstrip("/"), timeout=30, retry=None)
    full_name = f"{username}/{settings.github_fork_name}"
    try:
        login = gh.get_user().login
        try:
            repo = gh.get_repo(full_name)
            log.info("GitHub: using %s", repo.full_name)
        except UnknownObjectException:
            upstream_name = _github_full_name(settings.target_repo_url)
            upstream = gh.get_repo(upstream_name)
            organization = username if username.lower() != login.lower() else None
            log.info("GitHub: forking %s into %s", upstream_name, full_name)
            if organization:
                repo = upstream.create_fork(organization=organization, name=settings.github_fork_name)
            else:
                repo = upstream.create_fork(name=settings.github_fork_name)
            # GitHub makes forks asynchronously: wait until the fork answers before pushing to it.
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    repo = gh.get_repo(repo.full_name)
                    break
                except UnknownObjectException:
                    if time.monotonic() > deadline:
                        raise ForgeError(
                            f"GitHub has not finished creating the fork {repo.full_name}; try again in a minute"
                        ) from None
                    time.sleep(2)
    except GithubException as exc:
        status = getattr(exc, "status", None)
        hint = {
            401: "GITHUB_TOKEN is invalid or expired: make a new token with the repo scope",
            403: "GITHUB_TOKEN lacks the permission (repo scope) or the rate limit was hit",
            404: "the target repository (TARGET_REPO_URL) was not found with this token",
        }.get(status or 0, "check GITHUB_TOKEN, GITHUB_USERNAME and GITHUB_API_URL")
        message = getattr(exc, "data", None) or str(exc)
        raise ForgeError(f"GitHub API refused (HTTP {status}): {message}; {hint}") from None
    finally:
        gh.close()
    url = repo.clone_url
    split = urlsplit(url)
    if split.scheme != "https" and not _is_loopback(split.hostname):
        raise ForgeError(f"refusing to send GITHUB_TOKEN to {url}: not https")
    return SubmitRemote(url, url, GitCredentials(username, token), kind="github")


def local_remote(path: Path) -> SubmitRemote:
    """A bare repository on this machine (development): made on first use."""
    path = path.expanduser().resolve()
    if not (path / "HEAD").is_file():
        path.mkdir(parents=True, exist_ok=True)
        run_git(["init", "--quiet", "--bare", str(path)])
        log.info("development remote: new bare repository at %s", path)
    return SubmitRemote(str(path), str(path), kind="local")


def resolve_remote(settings: Settings, state_dir: Path) -> SubmitRemote:
    """The remote the settings name (see the module docstring); checks that validators may fetch it."""
    if settings.git_push_url and not settings.git_remote_url:
        raise ForgeError(
            "GIT_PUSH_URL is set without GIT_REMOTE_URL: set GIT_REMOTE_URL to the https URL validators fetch "
            "the same repository from (GIT_PUSH_URL is only where git pushes)"
        )
    if settings.git_remote_url:
        push_url = settings.git_push_url or settings.git_remote_url
        remote = SubmitRemote(push_url, settings.git_remote_url, kind="git")
    elif settings.github_token and settings.github_username:
        remote = ensure_github_fork(settings)
    elif settings.github_token or settings.github_username:
        raise ForgeError("set both GITHUB_TOKEN and GITHUB_USERNAME (or GIT_REMOTE_URL to push elsewhere)")
    elif settings.dev_mode:
        remote = local_remote(state_dir / "remote.git")
    else:
        raise ForgeError(
            "the miner needs somewhere public to push its kernel: set GITHUB_TOKEN (repo scope) and "
            "GITHUB_USERNAME in .env for a GitHub fork, or GIT_REMOTE_URL for any other git remote"
        )
    try:
        check_url(
            remote.repo_url,
            dev_mode=settings.dev_mode,
            allowed_hosts=settings.allowed_repo_hosts,
            kind="repo",
        )
    except UrlNotAllowed as exc:
        ssh = _is_ssh(remote.repo_url)
        hint = (
            "; to push over SSH, set GIT_PUSH_URL to this URL and GIT_REMOTE_URL to the repository's https URL"
            if ssh
            else ""
        )
        raise ForgeError(
            f"validators would refuse the repository URL {remote.repo_url}: {exc.detail}. Use an https URL on "
            f"one of {', '.join(settings.allowed_repo_hosts)}{hint}"
        ) from None
    return remote


def push(workspace: Workspace, remote: SubmitRemote, sha: str, *, tag: str | None = None) -> None:
    """Publish ``sha`` as the miner's branch (and ``tag``) on the submit remote, then check it landed."""
    refspecs = [f"+{sha}:refs/heads/{workspace.branch}"]
    if tag:
        refspecs.append(f"+{sha}:refs/tags/{tag}")
    env = remote.git_env()
    result = workspace.git("push", "--quiet", SUBMIT_REMOTE, *refspecs, env=env, check=False)
    if result.returncode != 0:
        raise GitError(f"push to {remote.push_url} failed: {remote.redact(result.stderr.strip())[:800]}")
    listed = workspace.git("ls-remote", SUBMIT_REMOTE, f"refs/heads/{workspace.branch}", env=env, check=False)
    if sha not in remote.redact(listed.stdout):
        raise GitError(
            f"push to {remote.push_url} reported success but the branch {workspace.branch} does not point at {sha}"
        )
