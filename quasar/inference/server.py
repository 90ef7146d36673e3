"""The miner's inference server: greedy generation with the logits validators check (DESIGN §4).

    POST /inference   {"input_ids": [int] | "prompt": str, "max_new_tokens": int,
                       "logits_positions": [int], "stop_at_eos"?: bool}
                      -> {"output_ids", "text", "logits": {"<pos>": base64 float16}, "prefill_ms", "decode_ms"}
    GET  /health      -> {"status": "ok" | "loading", "busy", "queued"}
    GET  /model_info  -> {"model_name", "weights_sha256", "dtype", "device", "vocab_size", "max_context", "hotkey"}
    GET  /metrics     -> Prometheus text (requests by route and status, generation latency, tokens)

`create_app` builds it; `quasar inference [--host H] [--port P]` (`quasar.inference.cli.serve`) is
the one entry point that serves it. `miner/inference_server.py` keeps the older ways to start it
(`python miner/inference_server.py`, `uvicorn miner.inference_server:app`) as a thin module over this
one. It serves MODEL_NAME (a Hugging Face id in the local cache, or a directory) on DEVICE in
MODEL_DTYPE.

One generation runs at a time (one device); up to INFERENCE_QUEUE_SIZE more wait, and the rest get
503 ``busy`` at once rather than piling up. Requests outside the limits get 422 with a stable
``code``. On a real chain (SUBTENSOR_NETWORK other than ``embedded``) `/inference` serves only
btauth/1-signed requests addressed to this miner's hotkey from validator-permit hotkeys, each
rate-limited (see `quasar.inference.auth`). Errors are ``{"code", "detail"}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from quasar.config import Settings, get_settings
from quasar.gate import Refusal
from quasar.inference.auth import InferenceGate, error_response
from quasar.inference.schemas import InferenceRequest, InferenceResponse, ModelInfo
from quasar.metrics import CONTENT_TYPE_LATEST, InferenceMetrics

if TYPE_CHECKING:
    from quasar.chain import Chain
    from quasar.inference.model import LoadedModel

log = logging.getLogger("quasar.inference")


class DeviceQueue:
    """One generation at a time; at most ``bound`` waiting behind it, the rest refused at once."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.running = False
        self.waiting = 0
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._lock.locked() and self.waiting >= self.bound:
            raise Refusal(
                503, "busy", f"the device is busy and {self.waiting} requests are queued; retry shortly"
            )
        self.waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self.waiting -= 1
        self.running = True
        try:
            yield
        finally:
            self.running = False
            self._lock.release()


def load_served_model(settings: Settings) -> LoadedModel:
    """MODEL_NAME on DEVICE in MODEL_DTYPE; on the embedded chain the tiny model is built if missing."""
    from quasar.inference.model import load_model
    from quasar.models.tiny import ensure_default_tiny_model

    assert settings.model_name is not None
    ensure_default_tiny_model(settings, settings.model_name)
    return load_model(settings.model_name, settings.device, settings.model_dtype)


def _own_hotkey(settings: Settings) -> str:
    from quasar.wallets import WalletNotFound, load_wallet

    assert settings.wallet_path is not None
    try:
        wallet = load_wallet(settings.wallet_miner_name, settings.wallet_hotkey, settings.wallet_path)
    except WalletNotFound as exc:
        raise RuntimeError(
            f"the inference server needs the miner's hotkey on a real chain (signed requests are addressed "
            f"to it): {exc}. Set WALLET_MINER_NAME / WALLET_HOTKEY / WALLET_PATH."
        ) from exc
    return wallet.hotkey.ss58_address


def create_app(
    settings: Settings | None = None,
    model: LoadedModel | None = None,
    *,
    chain: Chain | None = None,
    hotkey: str | None = None,
) -> FastAPI:
    """The inference server. ``model`` defaults to MODEL_NAME, loaded at startup; ``chain`` and
    ``hotkey`` (this miner's ss58 address) default to the configured chain and miner wallet."""
    settings = settings or get_settings()
    gate: InferenceGate | None = None
    if not settings.is_embedded:
        if chain is None:
            from quasar.chain import get_chain

            chain = get_chain(settings)
        hotkey = hotkey or _own_hotkey(settings)
        gate = InferenceGate.from_settings(settings, chain=chain, hotkey=hotkey)
    state: dict[str, Any] = {"model": model}
    queue = DeviceQueue(settings.inference_queue_size)
    metrics = InferenceMetrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if state["model"] is None:
            log.info("loading %s on %s (%s)", settings.model_name, settings.device, settings.model_dtype)
            state["model"] = await anyio.to_thread.run_sync(load_served_model, settings)
            served = state["model"]
            log.info(
                "serving %s: %s on %s, weights sha256 %s",
                served.name,
                served.dtype_name,
                served.device,
                served.weights_sha256,
            )
        yield

    app = FastAPI(title="QUASAR miner inference server", version="1", lifespan=lifespan)

    @app.middleware("http")
    async def _count(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        # The route template, not the raw path: unknown paths must not grow the label set.
        route = getattr(request.scope.get("route"), "path", None) or "unmatched"
        metrics.observe_request(request.method, route, response.status_code)
        return response

    @app.get("/metrics", response_class=Response)
    async def prometheus() -> Response:
        metrics.queue.set(queue.waiting)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(Refusal)
    async def _refused(_: Request, exc: Refusal) -> JSONResponse:
        return error_response(exc)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok" if state["model"] is not None else "loading",
            "busy": queue.running,
            "queued": queue.waiting,
        }

    @app.get("/model_info", response_model=ModelInfo)
    async def model_info() -> ModelInfo:
        served = _served()
        return ModelInfo(
            model_name=served.name,
            weights_sha256=served.weights_sha256,
            dtype=served.dtype_name,
            device=str(served.device),
            vocab_size=served.vocab_size,
            max_context=served.max_context,
            hotkey=hotkey,
            auth_required=gate is not None,
        )

    @app.post("/inference", response_model=InferenceResponse)
    async def inference(request: Request) -> Any:
        body = await _read_body(request, settings.max_body_bytes)
        if gate is not None:
            from quasar.signing import asgi_request_target

            caller = gate.admit(
                request.headers, body, method=request.method, target=asgi_request_target(request.scope)
            )
            log.debug("inference request from %s", caller)
        try:
            req = InferenceRequest.model_validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
            )
            raise Refusal(422, "invalid_request", f"not a v1 inference request: {problems}") from None
        served = _served()
        prompt_ids = _validated_prompt(req, served, settings)
        async with queue.slot():
            generation = await anyio.to_thread.run_sync(_generate, served, prompt_ids, req)
        metrics.observe_generation(
            (generation.prefill_ms + generation.decode_ms) / 1000, len(generation.output_ids[0])
        )
        return _response(served, req, generation)

    def _served() -> LoadedModel:
        served = state["model"]
        if served is None:
            raise Refusal(503, "loading", "the model is still loading; retry shortly")
        return served

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refusal(413, "body_too_large", f"request bodies are limited to {limit} bytes")
    body = await request.body()
    if len(body) > limit:
        raise Refusal(413, "body_too_large", f"request bodies are limited to {limit} bytes")
    return body


def _validated_prompt(req: InferenceRequest, served: LoadedModel, settings: Settings) -> list[int]:
    """The prompt ids, or a 422 naming the limit that was crossed."""

    def reject(code: str, detail: str) -> Refusal:
        return Refusal(422, code, detail)

    if (req.input_ids is None) == (req.prompt is None):
        raise reject(
            "prompt_xor_input_ids", "send exactly one of 'prompt' (text) and 'input_ids' (token ids)"
        )
    if req.prompt is not None:
        if served.tokenizer is None:
            raise reject("prompt_unsupported", "this server has no tokenizer; send 'input_ids'")
        ids = list(served.tokenizer(req.prompt, add_special_tokens=False)["input_ids"])
    else:
        ids = list(req.input_ids or [])
    if not ids:
        raise reject("empty_prompt", "the prompt has no tokens")
    if len(ids) > settings.inference_max_input_tokens:
        raise reject(
            "too_many_tokens",
            f"the prompt has {len(ids)} tokens; the limit is {settings.inference_max_input_tokens}",
        )
    vocab = served.vocab_size
    if any(i < 0 or i >= vocab for i in ids):
        raise reject("token_id_out_of_range", f"input_ids must lie in [0, {vocab})")
    if not 1 <= req.max_new_tokens <= settings.inference_max_new_tokens:
        raise reject(
            "max_new_tokens_out_of_range",
            f"max_new_tokens must be between 1 and {settings.inference_max_new_tokens}",
        )
    if served.max_context and len(ids) + req.max_new_tokens > served.max_context:
        raise reject(
            "context_too_long",
            f"prompt ({len(ids)}) + max_new_tokens ({req.max_new_tokens}) exceeds the context of {served.max_context}",
        )
    if len(req.logits_positions) > settings.inference_max_logits_positions:
        raise reject(
            "too_many_positions",
            f"{len(req.logits_positions)} logits positions; the limit is {settings.inference_max_logits_positions}",
        )
    if any(p < 0 or p >= req.max_new_tokens for p in req.logits_positions):
        raise reject(
            "position_out_of_range", f"logits_positions must lie in [0, max_new_tokens={req.max_new_tokens})"
        )
    return ids


def _generate(served: LoadedModel, prompt_ids: list[int], req: InferenceRequest) -> Any:
    import torch

    from quasar.inference.generate import greedy_generate

    return greedy_generate(
        served.model,
        torch.tensor([prompt_ids], dtype=torch.long),
        req.max_new_tokens,
        req.logits_positions,
        eos_token_id=served.eos_token_id,
        stop_at_eos=req.stop_at_eos,
    )


def _response(served: LoadedModel, req: InferenceRequest, generation: Any) -> InferenceResponse:
    from quasar.inference.encoding import encode_logits

    output = generation.output_ids[0]
    text = served.tokenizer.decode(output) if served.tokenizer is not None else ""
    logits = {
        str(p): encode_logits(generation.logits[p][0].numpy())
        for p in sorted(set(req.logits_positions))
        if p in generation.logits
    }
    return InferenceResponse(
        output_ids=output,
        text=text,
        logits=logits,
        prefill_ms=round(generation.prefill_ms, 3),
        decode_ms=round(generation.decode_ms, 3),
    )
