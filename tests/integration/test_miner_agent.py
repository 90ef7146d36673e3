"""The ``agent`` strategy against a scripted OpenAI-compatible server on loopback.

The server (a small FastAPI app in uvicorn) answers chat completions from a script: a patch that is
correct and faster (kept, committed), a patch that breaks the results (benched, discarded, reason
logged) and a patch reaching outside fla/ops/quasar (refused before it touches the disk). Patches are
made with real git from the repository's own files, the kept one with the wrong hunk line counts
models often write (applied only because the workspace recounts them), and one that applies no way
(refused, each way's reason logged); every candidate goes through the real bench.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request

from quasar.kernels.template import init_kernel_repo
from quasar.miner.bench import BenchRunner
from quasar.miner.llm import OpenAIChat
from quasar.miner.state import MinerState
from quasar.miner.strategies import AgentStrategy, Context
from quasar.miner.workspace import Workspace

from .conftest import free_port, serve
from .miner_helpers import git

pytestmark = pytest.mark.slow

API_KEY = "sk-scripted-test-key-0123456789"
CALL = "    return chunk_quasar_torch(q, k, v, beta, initial_state, output_final_state, cu_seqlens)\n"
SLEEP = "    import time\n\n    time.sleep(0.4)  # deliberately slow starting point\n"


def make_patch(repo: Path, rel: str, old: str, new: str) -> str:
    """A `git diff` of replacing ``old`` by ``new`` in ``rel``; the file is restored afterwards."""
    path = repo / rel
    original = path.read_text()
    assert old in original
    path.write_text(original.replace(old, new, 1))
    diff = git("diff", "--", rel, cwd=repo) + "\n"
    path.write_text(original)
    return diff


def scripted_llm(answers: list[str]) -> tuple[FastAPI, list[dict[str, Any]]]:
    app = FastAPI()
    seen: list[dict[str, Any]] = []
    lock = threading.Lock()

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> dict[str, Any]:
        body = await request.json()
        with lock:
            seen.append({"auth": request.headers.get("authorization"), "body": body})
            content = answers[min(len(seen), len(answers)) - 1]
        return {
            "id": f"chatcmpl-{len(seen)}",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
        }

    return app, seen


def test_agent_keeps_the_faster_patch_and_discards_broken_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    upstream = tmp_path / "upstream"
    init_kernel_repo(upstream)
    init = "fla/ops/quasar/dispatch.py"
    # The starting kernel is correct but slow; the scripted "LLM" knows how to fix that.
    text = (upstream / init).read_text()
    (upstream / init).write_text(text.replace(CALL, SLEEP + CALL, 1))
    git("commit", "-qam", "slow kernel", cwd=upstream)

    workspace = Workspace(tmp_path / "ws", "quasar-miner")
    workspace.prepare(source=str(upstream), submit_url=None)
    faster = make_patch(workspace.path, init, SLEEP, "")
    # The broken patch is made against the kernel as it is once the first one is in: the template's.
    template = tmp_path / "template"
    init_kernel_repo(template)
    halved = CALL.replace("return", "o, s =", 1) + "    return o * 0.5, s\n"
    broken = make_patch(template, init, CALL, halved)
    outside = make_patch(workspace.path, "README.md", "# QuasarAttention", "# Quasar")
    miscounted = re.sub(r"^@@ -(\d+),\d+ \+(\d+),\d+ @@", r"@@ -\1,40 +\2,2 @@", faster, flags=re.M)
    assert miscounted != faster
    # Made against a kernel this repository never had (the model misremembered a line).
    stale = make_patch(workspace.path, init, SLEEP, SLEEP.replace("0.4", "0.5")).replace(
        "-    time.sleep(0.4)", "-    time.sleep(9.9)"
    )
    assert "-    time.sleep(9.9)" in stale
    answers = [
        f"Remove the sleep from chunk_quasar.\n```diff\n{miscounted}```",
        f"Halve the output to save time.\n```diff\n{broken}```",
        f"Shorten the README title.\n```diff\n{outside}```",
        f"Sleep a little longer.\n```diff\n{stale}```",
    ]
    app, seen = scripted_llm(answers)
    port = free_port()
    server, thread = serve(app, port)
    try:
        state = MinerState()
        ctx = Context(
            workspace=workspace,
            state=state,
            save=lambda: None,
            bench=BenchRunner(device="cpu", quick=True, timeout_seconds=600),
            stop=threading.Event(),
            min_improvement=0.02,
        )
        model = OpenAIChat(f"http://127.0.0.1:{port}/v1", "scripted-model", API_KEY, timeout=30)
        start = workspace.head()
        with caplog.at_level(logging.INFO):
            outcomes = AgentStrategy(model, iterations=4).improve(ctx)
        model.close()
    finally:
        server.should_exit = True
        thread.join(timeout=15)

    assert len(outcomes) == 4 and len(seen) == 4
    kept, bad, refused, stale_outcome = outcomes
    # 1. correct and faster: committed on the branch.
    assert kept.kept and kept.commit == workspace.head() != start
    assert "time.sleep" not in (workspace.path / init).read_text()
    assert git("log", "-1", "--format=%s", cwd=workspace.path).startswith("agent: Remove the sleep")
    assert kept.result is not None and kept.result.passed
    # 2. wrong results: benched, failed, discarded with the bench's reason in the log.
    assert not bad.kept and bad.result is not None and bad.result.verdict == "fail"
    assert "rejected by the bench" in bad.reason and bad.result.reason
    assert any("discarded" in r.getMessage() and bad.result.reason in r.getMessage() for r in caplog.records)
    # 3. outside the kernel folder: refused before anything was written.
    assert not refused.kept and "outside fla/ops/quasar" in refused.reason and refused.result is None
    # 4. made against a kernel that never was: no way applies it; the log says what each way said.
    assert not stale_outcome.kept and stale_outcome.result is None
    assert stale_outcome.reason.startswith("patch refused: the patch does not apply: `git apply --recount`: ")
    assert "`git apply --recount --3way`: " in stale_outcome.reason
    discarded = [r.getMessage() for r in caplog.records if "iteration 4 discarded" in r.getMessage()]
    assert len(discarded) == 1 and "`git apply --recount --ignore-whitespace`: " in discarded[0], discarded
    # Only the good patch remains; the workspace is clean.
    assert workspace.head() == kept.commit and not workspace.kernel_dirty()
    assert git("status", "--porcelain", cwd=workspace.path) == ""
    # The model saw the kernel and the earlier attempts; the key went only into the header.
    assert all(call["auth"] == f"Bearer {API_KEY}" for call in seen)
    prompt = seen[2]["body"]["messages"][1]["content"]
    assert "fla/ops/quasar/dispatch.py" in prompt and "Halve the output" in prompt
    assert API_KEY not in caplog.text
