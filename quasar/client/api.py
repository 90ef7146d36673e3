"""`ValidatorApiClient`: one method per route of the Validator API, signed, with retries where they are safe."""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
from bittensor.signing import WalletLike, resolve_signer
from pydantic import BaseModel, ValidationError

from quasar import __version__
from quasar.client.errors import (
    REQUEST_ID_HEADER,
    ApiUnavailable,
    InvalidResponse,
    NotFound,
    ServerError,
    error_from_response,
    retry_after_seconds,
)
from quasar.schemas import (
    CommitRequest,
    CommitResponse,
    Health,
    Heartbeat,
    Info,
    Job,
    JobResult,
    JobResultAccepted,
    Leaderboard,
    RevealPayload,
    RevealRequest,
    Round,
    RoundCreate,
    RoundPage,
    Submission,
    TargetShape,
    Weights,
)
from quasar.signing import BtAuth

log = logging.getLogger("quasar.client")

CLIENT_VERSION_HEADER = "X-Quasar-Client-Version"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)

ModelT = TypeVar("ModelT", bound=BaseModel)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


class ValidatorApiClient:
    """Synchronous client of the Validator API.

    ``wallet`` (a ``bittensor.Wallet`` or an sr25519 ``Keypair``) signs requests; without it only
    public routes work. ``retries`` is the number of extra attempts an idempotent call gets;
    ``backoff`` the first delay in seconds (doubled per attempt up to ``max_backoff``, with jitter).
    A ``Retry-After`` longer than ``max_retry_after`` is not waited for: the error is raised at once.
    """

    def __init__(
        self,
        base_url: str,
        wallet: WalletLike | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_retry_after: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.wallet = wallet
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={CLIENT_VERSION_HEADER: __version__, "User-Agent": f"quasar-client/{__version__}"},
            follow_redirects=False,  # a redirect would change the signed path; the API never sends one
        )
        self._info: Info | None = None
        self._auth: BtAuth | None = None

    # -- lifecycle --
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ValidatorApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def hotkey(self) -> str | None:
        """The ss58 hotkey this client signs with (None without a wallet)."""
        if self.wallet is None:
            return None
        return resolve_signer(self.wallet, role="hotkey").ss58_address

    # -- service --
    def health(self) -> Health:
        """Liveness: 200 while the process serves; ``status`` is ``degraded`` while the chain is not."""
        return self._call("GET", "/health", model=Health)

    def ready(self) -> bool:
        """Readiness: True when the API can serve (its database answers), False on 503."""
        try:
            self._send("GET", "/ready", idempotent=True, retry_statuses=frozenset({429, 502, 504}))
        except ServerError as exc:
            if exc.status == 503:
                return False
            raise
        return True

    def info(self, *, refresh: bool = False) -> Info:
        """The API's identity and timings (cached: its ``api_hotkey`` is what requests are signed for)."""
        if self._info is None or refresh:
            info = self._call("GET", "/v1/info", model=Info)
            if _version_tuple(__version__) < _version_tuple(info.min_client_version):
                log.warning(
                    "this client (%s) is older than the API's minimum client version %s; upgrade quasar-subnet",
                    __version__,
                    info.min_client_version,
                )
            self._info = info
            self._auth = None
        return self._info

    # -- rounds --
    def create_round(
        self, duration_blocks: int, target_shape: TargetShape | Mapping[str, Any] | None = None
    ) -> Round:
        """Open a round now (owner hotkey). Not retried."""
        shape = None if target_shape is None else TargetShape.model_validate(target_shape)
        body = RoundCreate(duration_blocks=duration_blocks, target_shape=shape)
        return self._call("POST", "/v1/rounds", body=body, model=Round, signed=True, idempotent=False)

    def finalize_round(self, round_id: int) -> Round:
        """Finalize a round now and fix its winner and weights (owner hotkey). Not retried."""
        return self._call(
            "POST", f"/v1/rounds/{int(round_id)}/finalize", model=Round, signed=True, idempotent=False
        )

    def list_rounds(self, limit: int = 20, offset: int = 0) -> RoundPage:
        """Rounds, newest first, one page."""
        return self._call("GET", "/v1/rounds", params={"limit": limit, "offset": offset}, model=RoundPage)

    def current_round(self) -> Round | None:
        """The open round, or None when there is none."""
        try:
            response = self._send("GET", "/v1/rounds/current", idempotent=True)
        except NotFound as exc:
            if exc.code.startswith("http_"):  # the route itself is missing: wrong URL, not "no round"
                raise
            return None
        if not response.content or response.content.strip() == b"null":
            return None
        return self._decode(response, Round)

    def get_round(self, round_id: int) -> Round:
        return self._call("GET", f"/v1/rounds/{int(round_id)}", model=Round)

    # -- submissions (miner) --
    def commit(self, commitment_hash: str) -> CommitResponse:
        """Record a commitment (miner hotkey); see `quasar.commitment.commitment_hash`. Not retried."""
        body = CommitRequest(commitment_hash=commitment_hash.lower())
        return self._call(
            "POST", "/v1/submissions/commit", body=body, model=CommitResponse, signed=True, idempotent=False
        )

    def reveal(
        self, submission_id: int, salt: bytes | str, payload: RevealPayload | Mapping[str, Any]
    ) -> Submission:
        """Reveal salt and payload of an earlier commit (same hotkey). Not retried.

        ``salt`` is the 32 raw bytes or their hex; ``payload`` holds repo_url, commit_sha and
        optionally inference_url, exactly as hashed into the commitment.
        """
        salt_hex = salt.hex() if isinstance(salt, bytes | bytearray) else salt.lower()
        body = RevealRequest(salt=salt_hex, payload=RevealPayload.model_validate(payload))
        return self._call(
            "POST",
            f"/v1/submissions/{int(submission_id)}/reveal",
            body=body,
            model=Submission,
            signed=True,
            idempotent=False,
        )

    def get_submission(self, submission_id: int) -> Submission:
        return self._call("GET", f"/v1/submissions/{int(submission_id)}", model=Submission)

    def get_submission_by_commitment(self, commitment_hash: str) -> Submission:
        """The submission of a commitment hash (``NotFound``, code ``submission_not_found``, if none):
        how a miner whose commit went unconfirmed learns its submission id."""
        digest = commitment_hash.lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError("a commitment hash is 64 hex characters")
        return self._call("GET", f"/v1/submissions/by-commitment/{digest}", model=Submission)

    # -- jobs (validator) --
    def claim_job(self) -> Job | None:
        """Claim the oldest queued job (validator hotkey), or None when the queue is empty. Not retried."""
        response = self._send("POST", "/v1/jobs/claim", signed=True, idempotent=False)
        if response.status_code == 204 or not response.content:
            return None
        return self._decode(response, Job)

    def heartbeat(self, job_id: int) -> Heartbeat:
        """Extend the lease on a job this hotkey holds."""
        return self._call(
            "POST", f"/v1/jobs/{int(job_id)}/heartbeat", model=Heartbeat, signed=True, idempotent=True
        )

    def post_result(self, job_id: int, result: JobResult | Mapping[str, Any]) -> JobResultAccepted:
        """Post the result of a held job (an identical repeat is accepted, so this is retried)."""
        body = JobResult.model_validate(result)
        return self._call(
            "POST",
            f"/v1/jobs/{int(job_id)}/result",
            body=body,
            model=JobResultAccepted,
            signed=True,
            idempotent=True,
        )

    # -- scores --
    def leaderboard(self, round_id: int | None = None) -> Leaderboard:
        """Ranked submissions of a round (default: the current one)."""
        params = None if round_id is None else {"round_id": int(round_id)}
        return self._call("GET", "/v1/leaderboard", params=params, model=Leaderboard)

    def weights(self) -> Weights:
        """Weights from the last finalized round (all to the burn uid before any)."""
        return self._call("GET", "/v1/weights", model=Weights)

    # -- machinery --
    def _signer_auth(self, receiver: str) -> BtAuth:
        if self.wallet is None:
            raise ValueError(
                "this route needs a signed request: create the client with a wallet, "
                "ValidatorApiClient(url, bittensor.Wallet(name=..., hotkey=...))"
            )
        return BtAuth(self.wallet, receiver=receiver)

    def _auth_for_api(self) -> BtAuth:
        if self._auth is None:
            self._auth = self._signer_auth(receiver=self.info().api_hotkey)
        return self._auth

    def _call(
        self,
        method: str,
        path: str,
        *,
        model: type[ModelT],
        body: BaseModel | None = None,
        params: Mapping[str, Any] | None = None,
        signed: bool = False,
        idempotent: bool = True,
    ) -> ModelT:
        response = self._send(method, path, body=body, params=params, signed=signed, idempotent=idempotent)
        return self._decode(response, model)

    def _decode(self, response: httpx.Response, model: type[ModelT]) -> ModelT:
        try:
            return model.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise InvalidResponse(
                response.status_code,
                "invalid_response",
                f"{response.request.method} {response.request.url.path} answered something that is not a "
                f"{model.__name__} ({str(exc).splitlines()[0]}); is {self.base_url} a QUASAR Validator API "
                "of a compatible version?",
                response.headers.get(REQUEST_ID_HEADER),
            ) from None

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: BaseModel | None = None,
        params: Mapping[str, Any] | None = None,
        signed: bool = False,
        idempotent: bool,
        retry_statuses: frozenset[int] = RETRY_STATUSES,
    ) -> httpx.Response:
        """Send one call: sign, retry what may be retried, and turn failures into typed errors."""
        # Serialise once: the signature covers exactly these bytes, on every attempt.
        content = (
            b"" if body is None else json.dumps(body.model_dump(mode="json", exclude_none=True)).encode()
        )
        headers = {"Content-Type": "application/json"} if body is not None else {}
        auth = self._auth_for_api() if signed else None
        attempts = 1 + (self.retries if idempotent else 0)
        receiver_refreshed = False
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    method,
                    path,
                    content=content,
                    params=params,
                    headers=headers,
                    auth=auth or httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as exc:
                if attempt < attempts:
                    self._wait(attempt, None, f"{type(exc).__name__} on {method} {path}")
                    continue
                raise self._unavailable(exc, method, path, idempotent, attempt) from exc
            if response.is_success:
                return response
            error = error_from_response(response)
            if signed and not receiver_refreshed and error.code == "wrong_receiver" and auth is not None:
                # The API's hotkey changed since we read /v1/info; nothing was recorded, so resend once.
                receiver_refreshed = True
                self.info(refresh=True)
                auth = self._auth_for_api()
                continue
            if response.status_code in retry_statuses and attempt < attempts:
                retry_after = retry_after_seconds(response)
                if retry_after is None or retry_after <= self.max_retry_after:
                    self._wait(
                        attempt, retry_after, f"HTTP {response.status_code} ({error.code}) on {method} {path}"
                    )
                    continue
            raise error

    def _wait(self, attempt: int, retry_after: float | None, why: str) -> None:
        if retry_after is not None:
            delay = retry_after
        else:
            ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            delay = ceiling / 2 + random.uniform(
                0, ceiling / 2
            )  # jitter spreads out clients retrying together
        log.info("%s; retry %d/%d in %.2fs", why, attempt, self.retries, delay)
        time.sleep(delay)

    def _unavailable(
        self, exc: httpx.TransportError, method: str, path: str, idempotent: bool, attempts: int
    ) -> ApiUnavailable:
        sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        if idempotent:
            advice = f"gave up after {attempts} attempt(s); check that the API at {self.base_url} is running"
        elif sent:
            advice = (
                "not retried because this call is not idempotent, and the request may have reached the API: "
                "check its effect (e.g. get_submission) before sending it again"
            )
        else:
            advice = f"not retried (not idempotent); nothing was sent, so it is safe to call again once {self.base_url} is up"
        return ApiUnavailable(
            None, "api_unavailable", f"{method} {path}: {type(exc).__name__}: {exc}; {advice}"
        )
