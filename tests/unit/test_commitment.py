"""quasar.commitment: the commit–reveal hash of DESIGN §4, pinned by a golden vector.

The expected value is built here by hand with hashlib from the spec's words, not from the module,
so a change of canonical form (key order, spacing, None handling, domain tag) breaks this test.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from quasar.commitment import SALT_BYTES, canonical_json, commitment_hash, matches, new_salt

SALT = bytes(range(32))
PAYLOAD = {
    "repo_url": "https://github.com/alice/flash-linear-attention",
    "commit_sha": "0123456789abcdef0123456789abcdef01234567",
    "inference_url": "http://203.0.113.9:8001",
}
# sorted keys, no spaces, UTF-8, written out literally
CANONICAL = (
    b'{"commit_sha":"0123456789abcdef0123456789abcdef01234567",'
    b'"inference_url":"http://203.0.113.9:8001",'
    b'"repo_url":"https://github.com/alice/flash-linear-attention"}'
)


GOLDEN = "aa71f19c37c0cd0dc2207087af731704cc72e8f268a38d27855af58c15d7e8ca"


def test_golden_vector():
    expected = hashlib.sha256(b"quasar-commit-v1" + SALT + CANONICAL).hexdigest()
    assert canonical_json(PAYLOAD) == CANONICAL
    assert commitment_hash(SALT, PAYLOAD) == expected
    # The literal value, for implementations in other languages to check themselves against.
    assert expected == GOLDEN


def test_key_order_does_not_matter_and_none_is_left_out():
    reordered = dict(reversed(list(PAYLOAD.items())))
    assert commitment_hash(SALT, reordered) == commitment_hash(SALT, PAYLOAD)
    without = {k: v for k, v in PAYLOAD.items() if k != "inference_url"}
    assert commitment_hash(SALT, {**without, "inference_url": None}) == commitment_hash(SALT, without)
    assert canonical_json(without) == (
        b'{"commit_sha":"0123456789abcdef0123456789abcdef01234567",'
        b'"repo_url":"https://github.com/alice/flash-linear-attention"}'
    )


def test_non_ascii_is_utf8_not_escaped():
    assert canonical_json({"repo_url": "/tmp/bücher"}) == '{"repo_url":"/tmp/bücher"}'.encode()


@pytest.mark.parametrize(
    "change",
    [{"commit_sha": "f" * 40}, {"repo_url": "https://github.com/mallory/fla"}, {"inference_url": None}],
)
def test_any_change_changes_the_hash(change):
    commitment = commitment_hash(SALT, PAYLOAD)
    assert not matches(commitment, SALT, {**PAYLOAD, **change})
    assert not matches(commitment, bytes(32), PAYLOAD)
    assert matches(commitment.upper(), SALT, PAYLOAD)


def test_salt_length_enforced():
    with pytest.raises(ValueError, match="32 bytes"):
        commitment_hash(b"short", PAYLOAD)
    assert len(new_salt()) == SALT_BYTES and new_salt() != new_salt()


# --- the one payload type that owns the hash ------------------------------------------------------
def test_the_reveal_payload_owns_the_hash():
    from quasar.schemas import RevealPayload

    payload = RevealPayload.model_validate(PAYLOAD)
    assert payload.commitment(SALT) == GOLDEN == payload.commitment(SALT.hex())
    assert payload.wire() == PAYLOAD
    assert payload.matches(GOLDEN, SALT) and payload.matches(GOLDEN.upper(), SALT.hex())
    assert not payload.matches(GOLDEN, bytes(32))
    without = RevealPayload(repo_url=PAYLOAD["repo_url"], commit_sha=PAYLOAD["commit_sha"])
    assert without.wire() == {k: v for k, v in PAYLOAD.items() if k != "inference_url"}
    assert without.commitment(SALT) == commitment_hash(SALT, without.wire()) != GOLDEN
    with pytest.raises(ValueError, match="32 bytes"):
        payload.commitment(b"short")


def test_the_miner_keeps_the_wire_payload_and_old_state_files_still_load(tmp_path):
    from quasar.miner.state import MinerState, Payload, PendingSubmission, StateStore
    from quasar.schemas import RevealPayload

    assert Payload is RevealPayload
    # A state file as the miner wrote it before the payload became the wire type.
    old_payload = {
        "repo_url": PAYLOAD["repo_url"],
        "commit_sha": PAYLOAD["commit_sha"],
        "inference_url": None,
    }
    pending_json = {"phase": "committing", "salt_hex": SALT.hex(), "payload": old_payload}
    pending_json.update(commitment_hash="0" * 64, tree_hash="t")
    (tmp_path / "state.json").write_text(json.dumps({"version": 1, "pending": pending_json}))
    pending = StateStore(tmp_path).load().pending
    assert isinstance(pending, PendingSubmission) and isinstance(pending.payload, RevealPayload)
    assert pending.payload.commitment(pending.salt_hex) == commitment_hash(
        SALT, {"repo_url": PAYLOAD["repo_url"], "commit_sha": PAYLOAD["commit_sha"]}
    )
    again = MinerState.model_validate_json(MinerState(pending=pending).model_dump_json())
    assert again.pending == pending
