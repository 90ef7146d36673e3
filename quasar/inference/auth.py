"""Who may call the miner's inference server on a real chain: validators, signed, rate-limited; and how
the server's refusals look on the wire.

On a real chain (SUBTENSOR_NETWORK is not `embedded`) every `POST /inference` passes the signed-request
gate (`quasar.gate`, the API's gate too): a btauth/1 request addressed to this miner's hotkey, within
its caller's INFERENCE_RATE_LIMIT_PER_MINUTE (a token bucket, so one validator — or someone replaying
nothing but valid signatures — cannot monopolise the GPU), from a validator of the subnet's metagraph
(`quasar.chain.roles.is_validator`). The metagraph is cached for METAGRAPH_TTL_SECONDS by
`CachedChain`; when the chain cannot be reached a stale copy keeps serving. Nonces live in this
process's memory: one server, one store.

Every refusal of the server is a `quasar.gate.Refusal`, answered by `error_response` as
``{"code", "detail"}``. The server's contract predates the API's role codes: a caller that is not a
validator, registered or not, is refused as ``not_a_validator`` here.
"""

from __future__ import annotations

from collections.abc import Mapping

from bittensor.http_auth import InMemoryNonceStore
from fastapi.responses import JSONResponse

from quasar.chain import Chain, ChainUnavailable
from quasar.chain.resilient import CachedChain
from quasar.config import Settings
from quasar.gate import Refusal, SignedRequestGate
from quasar.limits import TokenBucketLimiter, retry_after_header

# The gate's role codes, as this server's contract names them.
_CODES = {"not_registered": "not_a_validator", "not_validator": "not_a_validator"}


class InferenceGate:
    """The signed-request gate as the inference server runs it: validators only, nonces in memory."""

    def __init__(self, gate: SignedRequestGate) -> None:
        self.gate = gate
        self._nonces = InMemoryNonceStore()

    @classmethod
    def from_settings(cls, settings: Settings, *, chain: Chain, hotkey: str) -> InferenceGate:
        """The gate of the miner whose hotkey is ``hotkey``, reading roles from ``chain``."""
        cached = CachedChain(
            chain,
            metagraph_ttl_seconds=settings.metagraph_ttl_seconds,
            retry_seconds=settings.chain_retry_seconds,
        )
        limiter = TokenBucketLimiter(settings.inference_rate_limit_per_minute)
        return cls(
            SignedRequestGate.from_settings(
                settings,
                receiver=hotkey,
                chain=cached,
                limiter=limiter,
                limit_setting="INFERENCE_RATE_LIMIT_PER_MINUTE",
            )
        )

    def admit(self, headers: Mapping[str, str], body: bytes, *, method: str, target: str) -> str:
        """The calling validator's hotkey, or a `Refusal` (503 ``chain_unavailable`` when the chain
        has never answered, so nobody's role can be known)."""
        try:
            roles = self.gate.admit(
                headers, body, method=method, target=target, role="validator", nonce_store=self._nonces
            )
        except ChainUnavailable as exc:
            raise Refusal(
                503, "chain_unavailable", f"cannot read the metagraph to check the caller: {exc}"
            ) from exc
        return roles.hotkey


def error_response(refusal: Refusal) -> JSONResponse:
    """A refusal as the inference server answers it: ``{"code", "detail"}``, Retry-After when waiting helps."""
    headers = None if refusal.retry_after is None else {"Retry-After": retry_after_header(refusal.retry_after)}
    body = {"code": _CODES.get(refusal.code, refusal.code), "detail": refusal.detail}
    return JSONResponse(body, status_code=refusal.status, headers=headers)
