"""A crash after the commit request left but before its answer was saved: the miner must not commit twice.

In process against the real API and dev chain: the commitment is sent (as the crashed miner did), the
state says only "committing"; the restarted loop re-sends the same hash, learns the API already holds
it, finds its submission id, and reveals it at the reveal block.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from quasar import commitment
from quasar.client import ValidatorApiClient
from quasar.miner.bench import BenchRunner
from quasar.miner.forge import local_remote
from quasar.miner.loop import Miner, MinerOptions
from quasar.miner.state import Payload, PendingSubmission, StateStore
from quasar.miner.strategies import Context, ManualStrategy
from quasar.miner.workspace import Workspace

from .conftest import ApiServer
from .miner_helpers import remote_refs


def test_unconfirmed_commit_is_recovered_not_repeated(
    start_api: Callable[..., ApiServer], tmp_path: Path
) -> None:
    api = start_api("sqlite")
    api.new_round()
    remote = local_remote(tmp_path / "fork.git")
    workspace = Workspace(tmp_path / "ws", "quasar-miner")
    workspace.prepare(source=None, submit_url=remote.push_url)
    sha = workspace.head()
    salt = commitment.new_salt()
    payload = Payload(repo_url=remote.repo_url, commit_sha=sha)
    digest = commitment.commitment_hash(salt, payload.wire())

    client = ValidatorApiClient(api.base_url, api.miner, retries=0)
    client.commit(digest)  # reached the API; the crashed miner never saved the answer
    store = StateStore(tmp_path / "state")
    state = store.load()
    state.pending = PendingSubmission(
        phase="committing", salt_hex=salt.hex(), payload=payload, commitment_hash=digest,
        tree_hash=workspace.kernel_tree(),
    )  # fmt: skip
    store.save(state)

    stop = threading.Event()
    ctx = Context(workspace, state, lambda: store.save(state), BenchRunner(device="cpu", stop=stop), stop)
    miner = Miner(
        client=client, chain=api.chain, remote=remote, strategy=ManualStrategy(), store=store, context=ctx,
        options=MinerOptions(block_time_seconds=0.4), stop=stop,
    )  # fmt: skip
    api.advance(api.settings.blocks_until_reveal or 5)
    assert miner.finish_pending()

    mine = [e for e in api.get("/v1/leaderboard").json()["entries"] if e["hotkey"] == api.miner.ss58_address]
    assert len(mine) == 1  # the re-sent hash did not make a second submission
    sub = api.get(f"/v1/submissions/{mine[0]['submission_id']}").json()
    assert sub["status"] == "revealed" and sub["commit_sha"] == sha
    assert remote_refs(Path(remote.push_url))["refs/heads/quasar-miner"] == sha
    saved = store.load()
    assert (
        saved.pending is None
        and saved.following == [sub["id"]]
        and saved.submitted_trees == [state.submitted_trees[0]]
    )
    client.close()
