"""The kernels of `quasar local up`'s miners: repositories from `quasar kernel init`, the honest change
and the cheater's zeros, and the commit-reveal the cheater is scripted through."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from quasar.local.processes import DemoError, wait_for

ZEROS_KERNEL = '''"""A cheating QuasarAttention: skips the work and returns zeros of the right shape."""

import torch


def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    n = q.shape[0] if cu_seqlens is None else len(cu_seqlens) - 1
    final = torch.zeros(n, q.shape[2], k.shape[-1], v.shape[-1]) if output_final_state else None
    return torch.zeros_like(v), final
'''


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=QUASAR demo", "-c", "user.email=demo@quasar.invalid",
               "-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null", *args]  # fmt: skip
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def make_kernel_repo(path: Path, *, faster: bool = False, init_source: str | None = None) -> str:
    """A fresh kernel repository from `quasar kernel init`, changed as asked (``faster``: the honest
    miner's change, `quasar.demo_kernels`) and committed; its SHA."""
    from quasar.demo_kernels import TemplateChanged, faster_chunked
    from quasar.kernels.template import init_kernel_repo

    shutil.rmtree(path, ignore_errors=True)
    init_kernel_repo(path)
    package = path / "fla" / "ops" / "quasar"
    if faster:
        chunked = package / "chunked.py"
        try:
            chunked.write_text(faster_chunked(chunked.read_text()))
        except TemplateChanged as exc:
            raise DemoError(str(exc)) from None
    if init_source is not None:
        (package / "__init__.py").write_text(init_source)
    _git(path, "commit", "-qam", "QuasarAttention: demo change")
    return _git(path, "rev-parse", "HEAD")


def submit_scripted(
    client: Any, chain: Any, repo: Path, sha: str, inference_url: str | None, timeout: float = 120.0
) -> int:
    """Commit–reveal ``repo @ sha`` through the API (what a miner does), waiting for the reveal block."""
    from quasar import commitment
    from quasar.schemas import RevealPayload

    payload = RevealPayload(repo_url=str(repo), commit_sha=sha, inference_url=inference_url or None)
    salt = commitment.new_salt()
    committed = client.commit(payload.commitment(salt))
    wait_for(
        f"block {committed.reveal_block} to reveal submission {committed.submission_id}",
        lambda: chain.current_block() >= committed.reveal_block,
        timeout,
    )
    client.reveal(committed.submission_id, salt, payload)
    return int(committed.submission_id)

