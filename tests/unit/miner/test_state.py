"""Miner state on disk: atomic round trip, private file mode, one miner per directory."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from quasar.miner.state import MinerState, Payload, PendingSubmission, StateLocked, StateStore


def pending() -> PendingSubmission:
    return PendingSubmission(
        phase="committed", salt_hex="ab" * 32, commitment_hash="cd" * 32, tree_hash="ef" * 20,
        payload=Payload(repo_url="/srv/fork.git", commit_sha="12" * 20), submission_id=3, reveal_block=9,
        reveal_deadline_block=20,
    )  # fmt: skip


def test_round_trip_is_atomic_and_private(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    assert store.load() == MinerState()
    state = MinerState(pending=pending(), submitted_trees=["ef" * 20])
    store.save(state)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.load().pending == state.pending
    assert [p.name for p in store.directory.iterdir() if p.name.startswith(".state-")] == []


def test_a_second_miner_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    with StateStore(tmp_path) as first:
        with pytest.raises(StateLocked, match="another miner"):
            StateStore(tmp_path).acquire()
        first.save(MinerState())
    with StateStore(tmp_path):  # released on exit
        pass


def test_unreadable_state_says_what_is_at_stake(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(RuntimeError, match="salt of any pending commitment"):
        StateStore(tmp_path).load()
