"""A crash after the commit request left but before its answer was saved: the miner must not commit twice.

In process against the real API and dev chain: the commitment is sent (as the crashed miner did), the
state says only "committing"; the restarted loop re-sends the same hash, learns the API already holds
it, looks its submission up by the commitment hash (`GET /v1/submissions/by-commitment/{hash}`),
and reveals it at the reveal block; a hash that another hotkey holds is given up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bittensor.sp_core import Keypair

from quasar import commitment
from quasar.client import ValidatorApiClient
from quasar.miner.bench import BenchRunner
from quasar.miner.forge import SubmitRemote, local_remote
from quasar.miner.loop import Miner, MinerOptions
from quasar.miner.state import Payload, PendingSubmission, StateStore
from quasar.miner.strategies import Context, ManualStrategy
from quasar.miner.workspace import Workspace

from .conftest import ApiServer
from .miner_helpers import remote_refs


@dataclass
class Crashed:
    """A miner restarted after its commit left: the state says only "committing"."""

    miner: Miner
    client: ValidatorApiClient
    store: StateStore
    remote: SubmitRemote
    sha: str
    digest: str
    tree: str


def crashed_while_committing(api: ApiServer, tmp_path: Path, *, sent_by: Keypair) -> Crashed:
    """Prepare a workspace and a payload, send its commitment as ``sent_by``, and build the restarted
    miner whose state holds the pending submission in phase "committing"."""
    remote = local_remote(tmp_path / "fork.git")
    workspace = Workspace(tmp_path / "ws", "quasar-miner")
    workspace.prepare(source=None, submit_url=remote.push_url)
    sha = workspace.head()
    salt = commitment.new_salt()
    payload = Payload(repo_url=remote.repo_url, commit_sha=sha)
    digest = payload.commitment(salt)
    assert digest == commitment.commitment_hash(salt, payload.wire())

    client = ValidatorApiClient(api.base_url, api.miner, retries=0)
    with ValidatorApiClient(api.base_url, sent_by, retries=0) as sender:
        sender.commit(digest)  # reached the API; the crashed miner never saved the answer
    store = StateStore(tmp_path / "state")
    state = store.load()
    tree = workspace.kernel_tree()
    state.pending = PendingSubmission(
        phase="committing", salt_hex=salt.hex(), payload=payload, commitment_hash=digest, tree_hash=tree
    )
    store.save(state)

    stop = threading.Event()
    ctx = Context(workspace, state, lambda: store.save(state), BenchRunner(device="cpu", stop=stop), stop)
    miner = Miner(
        client=client, chain=api.chain, remote=remote, strategy=ManualStrategy(), store=store, context=ctx,
        options=MinerOptions(block_time_seconds=0.4), stop=stop,
    )  # fmt: skip
    return Crashed(miner, client, store, remote, sha, digest, tree)


def test_unconfirmed_commit_is_recovered_not_repeated(
    start_api: Callable[..., ApiServer], tmp_path: Path
) -> None:
    api = start_api("sqlite")
    api.new_round()
    crashed = crashed_while_committing(api, tmp_path, sent_by=api.miner)
    api.advance(api.settings.blocks_until_reveal or 5)
    assert crashed.miner.finish_pending()

    mine = [e for e in api.get("/v1/leaderboard").json()["entries"] if e["hotkey"] == api.miner.ss58_address]
    assert len(mine) == 1  # the re-sent hash did not make a second submission
    sub = api.get(f"/v1/submissions/{mine[0]['submission_id']}").json()
    assert sub["status"] == "revealed" and sub["commit_sha"] == crashed.sha
    assert sub["commitment_hash"] == crashed.digest
    assert remote_refs(Path(crashed.remote.push_url))["refs/heads/quasar-miner"] == crashed.sha
    saved = crashed.store.load()
    assert (
        saved.pending is None and saved.following == [sub["id"]] and saved.submitted_trees == [crashed.tree]
    )
    crashed.client.close()


def test_a_commitment_another_hotkey_holds_is_dropped_not_taken(
    start_api: Callable[..., ApiServer], tmp_path: Path
) -> None:
    """The lookup by hash finds the submission, but not ours: the pending state is given up, its kernel
    free to be submitted again, and nothing is pushed."""
    api = start_api("sqlite")
    api.new_round()
    crashed = crashed_while_committing(api, tmp_path, sent_by=api.miners[1])
    api.advance(api.settings.blocks_until_reveal or 5)
    assert not crashed.miner.finish_pending()

    saved = crashed.store.load()
    assert saved.pending is None and saved.following == [] and saved.submitted_trees == []
    assert [(h.status, h.commit_sha, h.submission_id) for h in saved.history] == [("lost", crashed.sha, None)]
    held = api.get(f"/v1/submissions/by-commitment/{crashed.digest}").json()
    assert held["hotkey"] == api.miners[1].ss58_address and held["status"] == "committed"
    assert remote_refs(Path(crashed.remote.push_url)) == {}
    crashed.client.close()
