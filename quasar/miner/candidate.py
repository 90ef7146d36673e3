"""The sandboxed side of a miner's bench: ``python -I -B -m quasar.miner.candidate REPLY_FD``.

``bench`` (``quasar.miner.bench``) starts this module inside the validators' sandbox
(``quasar.evaluation.sandbox``, through ``channel.start_process``) with the candidate's ``fla/``
mounted read-only. It speaks the evaluation's line protocol (``quasar.evaluation.protocol``): one
command, ``bench`` (repo, device, quick), runs what ``python -m quasar.bench --repo REPO --json
--no-layer [--quick]`` runs and replies with the report as one JSON line on ``REPLY_FD``; logs go
to stderr, which the sandbox keeps the tail of.

The candidate's code runs in this process, so it could write its own reply: the report only tells
the miner what to submit, and validators measure every submission themselves.
"""

from __future__ import annotations

import sys

from quasar.evaluation.protocol import CommandServer


class CandidateBench(CommandServer):
    def handlers(self) -> dict:
        return {"bench": self.bench}

    def bench(self, repo: str, device: str | None = None, quick: bool = False) -> None:
        from quasar.bench.suite import DEFAULT_ENTRY, run_bench
        from quasar.devices import Device, resolve_auto

        chosen = device or resolve_auto(Device("auto")).kind
        report = run_bench(
            DEFAULT_ENTRY, device=chosen, json_mode=True, include_layer=False, quick=quick, repo_path=repo
        )
        self.reply(ok=True, report=report.to_dict())


if __name__ == "__main__":
    CandidateBench(int(sys.argv[1])).serve_and_exit()
