"""``manual``: you edit the workspace; the miner benches your edits and commits them when they are better.

Each cycle looks at ``fla/ops/quasar/`` in the workspace. Uncommitted edits are benched (once per
distinct content: results are cached by tree hash) and committed when correct and faster than HEAD;
edits that are not better are left exactly as they are, with the reason logged, for you to keep
working on. Commits you make yourself on the miner's branch are picked up as HEAD.
"""

from __future__ import annotations

import logging

from quasar.miner.strategies.base import Context, Outcome

log = logging.getLogger("quasar.miner.manual")


class ManualStrategy:
    name = "manual"

    def improve(self, ctx: Context) -> list[Outcome]:
        if not ctx.workspace.kernel_dirty():
            log.info("manual: no uncommitted change in %s/fla/ops/quasar", ctx.workspace.path)
            return []
        outcome = ctx.try_change("manual: your changes to the kernel", discard=False)
        if not outcome.kept:
            log.info("manual: your changes are not submitted yet: %s", outcome.reason)
        return [outcome]
