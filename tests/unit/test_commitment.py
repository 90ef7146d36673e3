"""quasar.commitment: the commit–reveal hash of DESIGN §4, pinned by a golden vector.

The expected value is built here by hand with hashlib from the spec's words, not from the module,
so a change of canonical form (key order, spacing, None handling, domain tag) breaks this test.
"""

from __future__ import annotations

import hashlib

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
