"""The GitHub path: PyGithub against a local REST server, a token-authenticated push over smart HTTP.

Two real servers on loopback: a FastAPI app answering the GitHub REST calls the miner makes
(``GET /user``, ``GET /repos/...``, ``POST /repos/.../forks``), and a git smart-HTTP server (``git
http-backend`` behind Basic auth) holding the fork as a bare repository. PyGithub is pointed at the
first through GITHUB_API_URL; the fork's clone URL points at the second. The token must reach the git
server, and nowhere else: not the logs, not the argv of any git process, not the repository's files,
not a credential store the user configured.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from quasar.config import Settings
from quasar.miner.forge import push, resolve_remote
from quasar.miner.workspace import KERNEL_DIR, Workspace

from .conftest import free_port, serve
from .miner_helpers import remote_refs

TOKEN = "ghp_TestToken0123456789abcdefABCDEF0123"
USER = "alice"
FORK = "fla-fork"
UPSTREAM = "upstream-owner/flash-linear-attention"
REAL_GIT = shutil.which("git") or "git"


def fake_github(
    api_base: str, git_base: str, git_root: Path
) -> tuple[FastAPI, list[tuple[str, str, str | None]]]:
    app = FastAPI()
    calls: list[tuple[str, str, str | None]] = []
    forks: set[str] = set()

    def repo(owner: str, name: str) -> dict[str, Any]:
        return {
            "id": abs(hash((owner, name))) % 10**6, "name": name, "full_name": f"{owner}/{name}",
            "owner": {"login": owner, "id": 1, "type": "User"}, "private": False, "fork": owner == USER,
            "url": f"{api_base}/repos/{owner}/{name}", "html_url": f"{git_base}/{owner}/{name}",
            "clone_url": f"{git_base}/{owner}/{name}.git", "default_branch": "main",
        }  # fmt: skip

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        auth = request.headers.get("authorization")
        calls.append((request.method, request.url.path, auth))
        if auth not in (f"token {TOKEN}", f"Bearer {TOKEN}"):
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return await call_next(request)

    @app.get("/user")
    def user() -> dict[str, Any]:
        return {"login": USER, "id": 1, "type": "User", "url": f"{api_base}/users/{USER}"}

    @app.get("/repos/{owner}/{name}")
    def get_repo(owner: str, name: str) -> Any:
        full = f"{owner}/{name}"
        if full == UPSTREAM or full in forks:
            return repo(owner, name)
        return JSONResponse({"message": "Not Found"}, status_code=404)

    @app.post("/repos/{owner}/{name}/forks")
    async def create_fork(owner: str, name: str, request: Request) -> Any:
        body = await request.json()
        fork_name = body.get("name", name)
        forks.add(f"{USER}/{fork_name}")
        subprocess.run(
            [REAL_GIT, "init", "--quiet", "--bare", str(git_root / USER / f"{fork_name}.git")], check=True
        )
        return JSONResponse(repo(USER, fork_name), status_code=202)

    return app, calls


def git_http_server(root: Path, port: int) -> tuple[ThreadingHTTPServer, list[str | None]]:
    """``git http-backend`` (CGI) for the repositories under ``root``, behind Basic auth USER:TOKEN."""
    seen: list[str | None] = []
    expected = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.cgi()

        def do_POST(self) -> None:
            self.cgi()

        def cgi(self) -> None:
            auth = self.headers.get("Authorization")
            seen.append(auth)
            if auth != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            if self.headers.get("Transfer-Encoding") == "chunked":
                body = b""
                while True:
                    size = int(self.rfile.readline().strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    body += self.rfile.read(size)
                    self.rfile.readline()
            else:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            env = {
                "PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command, "PATH_INFO": path, "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": USER, "REMOTE_ADDR": "127.0.0.1",
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            }  # fmt: skip
            out = subprocess.run([REAL_GIT, "http-backend"], input=body, env=env, capture_output=True).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            if not _:
                head, _, payload = out.partition(b"\n\n")
            headers = [line.split(":", 1) for line in head.decode().splitlines() if ":" in line]
            status = next((int(v.split()[0]) for k, v in headers if k.lower() == "status"), 200)
            self.send_response(status)
            for key, value in headers:
                if key.lower() != "status":
                    self.send_header(key, value.strip())
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def test_fork_and_push_with_the_token_kept_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A user whose git would store credentials in plain text: the miner must keep the token out of it.
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[credential]\n\thelper = store\n")
    monkeypatch.setenv("HOME", str(home))
    # Every git process the miner starts records its argv; git's own children show in GIT_TRACE.
    shim_dir, argv_log, trace = tmp_path / "shim", tmp_path / "git-argv.log", tmp_path / "git-trace.log"
    shim_dir.mkdir()
    (shim_dir / "git").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{argv_log}"\nexec "{REAL_GIT}" "$@"\n')
    (shim_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("GIT_TRACE", str(trace))

    git_root = tmp_path / "git-root"
    git_port, api_port = free_port(), free_port()
    git_base, api_base = f"http://127.0.0.1:{git_port}", f"http://127.0.0.1:{api_port}"
    git_server, git_auth = git_http_server(git_root, git_port)
    app, api_calls = fake_github(api_base, git_base, git_root)
    api_server, api_thread = serve(app, api_port)
    try:
        settings = Settings(
            _env_file=None, quasar_home=tmp_path / "q", subtensor_network="embedded",  # type: ignore[call-arg]
            github_token=TOKEN, github_username=USER, github_fork_name=FORK, github_api_url=api_base,
            target_repo_url=f"https://github.com/{UPSTREAM}",
        )  # fmt: skip
        with caplog.at_level(logging.DEBUG):
            remote = resolve_remote(settings, tmp_path / "state")
            workspace = Workspace(tmp_path / "ws", "quasar-miner")
            workspace.prepare(source=None, submit_url=remote.push_url, submit_env=remote.git_env())
            kernel = workspace.path / KERNEL_DIR / "chunked.py"
            kernel.write_text(
                kernel.read_text().replace("DEFAULT_CHUNK_SIZE = 64", "DEFAULT_CHUNK_SIZE = 32")
            )
            sha = workspace.commit_kernel("tune: DEFAULT_CHUNK_SIZE = 32")
            push(workspace, remote, sha, tag="quasar-submission-7")
    finally:
        api_server.should_exit = True
        api_thread.join(timeout=15)
        git_server.shutdown()

    # The fork was made through the REST API, with the token in the Authorization header.
    assert ("POST", f"/repos/{UPSTREAM}/forks", f"token {TOKEN}") in api_calls or (
        "POST", f"/repos/{UPSTREAM}/forks", f"Bearer {TOKEN}",
    ) in api_calls  # fmt: skip
    assert remote.kind == "github" and remote.push_url == f"{git_base}/{USER}/{FORK}.git"
    assert remote.repo_url == remote.push_url
    # The push landed, authenticated: git asked the helper after a 401 and sent the token.
    fork = git_root / USER / f"{FORK}.git"
    refs = remote_refs(fork)
    assert refs["refs/heads/quasar-miner"] == sha and refs["refs/tags/quasar-submission-7"] == sha
    assert (
        None in git_auth and git_auth[-1] == "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()
    )

    # ... and the token is nowhere else.
    assert TOKEN not in caplog.text and TOKEN not in repr(remote)
    assert argv_log.read_text().count("push") >= 1 and TOKEN not in argv_log.read_text()
    assert "password=$QUASAR_GIT_TOKEN" in trace.read_text()  # the helper ran, from the environment
    assert TOKEN not in trace.read_text()
    config = (workspace.path / ".git" / "config").read_text()
    assert TOKEN not in config and remote.push_url in config
    for path in (workspace.path / ".git").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert not (home / ".git-credentials").exists()
    for path in home.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
