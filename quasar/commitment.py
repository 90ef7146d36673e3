"""Commit–reveal hashing (DESIGN §4).

commitment = sha256("quasar-commit-v1" || salt (32 bytes) || canonical_json(payload)),
where payload = {"repo_url", "commit_sha", "inference_url"?} and canonical JSON has sorted keys,
no spaces and UTF-8. Miners compute it before revealing anything; the API recomputes it at reveal.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from typing import Any

DOMAIN = b"quasar-commit-v1"
SALT_BYTES = 32


def canonical_json(payload: Mapping[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8; keys whose value is None are left out."""
    cleaned = {key: value for key, value in payload.items() if value is not None}
    return json.dumps(cleaned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_BYTES)


def commitment_hash(salt: bytes, payload: Mapping[str, Any]) -> str:
    """Lowercase hex sha256 of the domain tag, the salt and the canonical payload."""
    if len(salt) != SALT_BYTES:
        raise ValueError(f"salt must be {SALT_BYTES} bytes, got {len(salt)}")
    return hashlib.sha256(DOMAIN + salt + canonical_json(payload)).hexdigest()


def matches(commitment: str, salt: bytes, payload: Mapping[str, Any]) -> bool:
    """Constant-time check that salt and payload reproduce the commitment."""
    return hmac.compare_digest(commitment_hash(salt, payload), commitment.lower())
