"""``agent``: ask a chat model for a patch to the kernel, and keep it only if the bench says it is better.

Each iteration (AGENT_ITERATIONS per cycle) sends the op's contract, the kernel's current files, the
current bench result and what earlier attempts of this cycle got, and asks for one unified diff.
The diff may change files under ``fla/ops/quasar/`` only (anything else is refused before it touches
the disk); it is applied with ``git apply``, benched through the validators' harness and committed
only when every correctness case passes and it is faster. Every discarded patch is logged with why.
"""

from __future__ import annotations

import logging
import re

from quasar.miner.llm import ChatModel, LlmError, Message
from quasar.miner.strategies.base import Context, Outcome
from quasar.miner.workspace import KERNEL_DIR

log = logging.getLogger("quasar.miner.agent")

#: Most characters of kernel source put into one prompt (big files are left out beyond it).
MAX_SOURCE_CHARS = 60_000
MAX_ATTEMPTS_SHOWN = 8

SYSTEM_PROMPT = f"""You optimise one PyTorch/Triton op, chunk_quasar, for speed. It lives in {KERNEL_DIR}/.

Contract (must not change): chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False,
cu_seqlens=None) with q, k: [B, T, H, K], v: [B, T, H, V], beta: [H] fp32 > 0; returns (o [B, T, H, V]
in q's dtype, final_state [N, H, K, V] fp32 or None). Per batch and head, with state S [K, V]:
lam_t = ||k_t||^2; alpha_t = (1 - exp(-beta_h * lam_t)) / (lam_t + 1e-8);
S_t = S_(t-1) + alpha_t * k_t (v_t - S_(t-1)^T k_t)^T; o_t = S_t^T q_t.
Correctness is checked on fresh random inputs (odd T, B > 1, initial_state, output_final_state,
cu_seqlens) to a relative L2 error of 1e-2 (bf16/fp16) or 2e-3 (fp32). Cached or fake results fail.
The code runs without network access and may import only torch, triton and its own modules.

Answer with exactly one unified diff (as `git diff` prints it, paths a/{KERNEL_DIR}/... and
b/{KERNEL_DIR}/...) in a ```diff fenced block, changing only files under {KERNEL_DIR}/, and one
sentence saying what it changes. Do not repeat an attempt that already failed."""


def extract_patch(text: str) -> str | None:
    """The unified diff in a model's answer: a ```diff/```patch block, else the raw text if it is one."""
    blocks = re.findall(r"```(?:diff|patch)?[^\n]*\n(.*?)```", text, flags=re.S)
    for block in blocks:
        if re.search(r"^(diff --git |--- )", block, flags=re.M):
            return block if block.endswith("\n") else block + "\n"
    start = re.search(r"^(diff --git |--- a/)", text, flags=re.M)
    if start:
        patch = text[start.start() :]
        return patch if patch.endswith("\n") else patch + "\n"
    return None


def _summary_line(text: str) -> str:
    outside = re.sub(r"```.*?```", "", text, flags=re.S).strip()
    line = next((s.strip() for s in outside.splitlines() if s.strip()), "LLM patch")
    return line[:120]


class AgentStrategy:
    name = "agent"

    def __init__(self, model: ChatModel, iterations: int, *, exclude: tuple[str, ...] = ()) -> None:
        self.model = model
        self.iterations = iterations
        self.exclude = exclude

    def _messages(self, ctx: Context, attempts: list[tuple[str, str]]) -> list[Message]:
        files = ctx.workspace.kernel_files(exclude=self.exclude)
        parts, used = [], 0
        for rel, text in files.items():
            if used + len(text) > MAX_SOURCE_CHARS:
                parts.append(f"### {rel}\n(left out: {len(text)} characters)")
                continue
            used += len(text)
            parts.append(f"### {rel}\n```python\n{text}\n```")
        head = ctx.head()
        tried = "\n".join(f"- {what}: {why}" for what, why in attempts[-MAX_ATTEMPTS_SHOWN:]) or "- none yet"
        user = (
            f"Current kernel files:\n\n{chr(10).join(parts)}\n\n"
            f"Current bench result: {head.summary()}\n\nAttempts so far in this session:\n{tried}\n\n"
            "Propose one patch that makes chunk_quasar faster while keeping its results."
        )
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def improve(self, ctx: Context) -> list[Outcome]:
        outcomes: list[Outcome] = []
        attempts: list[tuple[str, str]] = []
        for i in range(1, self.iterations + 1):
            if ctx.stop.is_set():
                break
            try:
                answer = self.model.complete(self._messages(ctx, attempts))
            except LlmError as exc:
                log.warning("agent: iteration %d: the model did not answer: %s", i, exc)
                outcomes.append(Outcome(False, f"model error: {exc}"))
                break
            what = _summary_line(answer)
            patch = extract_patch(answer)
            if patch is None:
                outcome = Outcome(False, "the answer held no unified diff")
            else:
                try:
                    ctx.workspace.apply_patch(patch)
                except ValueError as exc:
                    outcome = Outcome(False, f"patch refused: {exc}")
                else:
                    outcome = ctx.try_change(f"agent: {what}")
            if not outcome.kept:
                ctx.workspace.discard_kernel_changes()
                log.info("agent: iteration %d discarded (%s): %s", i, what, outcome.reason)
            else:
                log.info(
                    "agent: iteration %d kept %s (%s): %s",
                    i,
                    (outcome.commit or "")[:12],
                    what,
                    outcome.reason,
                )
            attempts.append((what, ("kept: " if outcome.kept else "discarded: ") + outcome.reason))
            outcomes.append(outcome)
        return outcomes
