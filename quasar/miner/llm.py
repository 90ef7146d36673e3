"""Chat models for the ``agent`` strategy: any OpenAI-compatible endpoint, or a local transformers model.

Both take a list of ``{"role", "content"}`` messages and return the assistant's text. The API key is
sent only in the Authorization header and never appears in logs or error messages.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol

import httpx

from quasar.config import Settings

log = logging.getLogger("quasar.miner.llm")

Message = dict[str, str]


class LlmError(RuntimeError):
    """The model could not answer; the message says why (never the API key)."""


class ChatModel(Protocol):
    name: str

    def complete(self, messages: list[Message]) -> str: ...


class OpenAIChat:
    """``POST {base_url}/chat/completions`` of an OpenAI-compatible server (OpenAI, vLLM, llama.cpp ...)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout: float = 300.0,
        temperature: float = 0.2,
        max_tokens: int = 8192,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=timeout, headers=headers)

    def complete(self, messages: list[Message]) -> str:
        body: dict[str, Any] = {
            "model": self.name,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        url = f"{self.base_url}/chat/completions"
        try:
            response = self._http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise LlmError(f"{url} did not answer: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            hint = " (check MINER_LLM_API_KEY)" if response.status_code in (401, 403) else ""
            raise LlmError(f"{url} answered HTTP {response.status_code}{hint}: {response.text[:300]}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LlmError(
                f"{url} answered something that is not a chat completion: {response.text[:300]}"
            ) from None
        if not isinstance(content, str):
            raise LlmError(f"{url} returned no text content")
        return content

    def close(self) -> None:
        self._http.close()


#: A reasoning model's thinking, closed or cut off by the token limit.
_THINKING = re.compile(r"<think>.*?(?:</think>|\Z)\s*", flags=re.S)


def strip_thinking(text: str) -> str:
    """``text`` without ``<think>...</think>`` blocks (an unclosed one runs to the end and is dropped too)."""
    return _THINKING.sub("", text).strip()


class TransformersChat:
    """A local chat model through transformers (loaded on first use; greedy decoding).

    It loads as the inference server loads models (``quasar.inference.model.load_model``): on DEVICE,
    in bfloat16 on a GPU and float32 on the CPU. Thinking is turned off in the chat template
    (``enable_thinking=False``, which Qwen3's template reads and others ignore), and any thinking a
    model still writes is dropped from the answer, so the token budget goes to the patch.
    """

    def __init__(self, model: str, *, device: str = "auto", max_new_tokens: int = 4096) -> None:
        self.name = model
        self.device = device
        self.max_new_tokens = max_new_tokens
        self._model: Any = None
        self._tokenizer: Any = None
        self.dtype: Any = None

    def _load(self) -> None:
        from quasar.inference.model import load_model

        loaded = load_model(self.name, self.device, "auto")
        self._model, self._tokenizer, self.dtype = loaded.model, loaded.tokenizer, loaded.dtype
        log.info(
            "agent: loaded %s on %s in %s", self.name, loaded.device, str(loaded.dtype).removeprefix("torch.")
        )

    def _ensure_loaded(self) -> None:
        if self._model is None:
            try:
                self._load()
            except Exception as exc:
                raise LlmError(f"cannot load the local model {self.name!r}: {exc}") from None

    def prompt(self, messages: list[Message]) -> str:
        """The text the model is given for ``messages`` (the chat template, thinking off)."""
        self._ensure_loaded()
        return str(
            self._tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False, enable_thinking=False
            )
        )

    def complete(self, messages: list[Message]) -> str:
        self._ensure_loaded()
        import torch

        inputs = self._tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True, enable_thinking=False
        ).to(self._model.device)
        with torch.no_grad():
            out = self._model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        text = str(self._tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
        return strip_thinking(text)

    def close(self) -> None:
        self._model = None


def chat_model_from_settings(settings: Settings) -> OpenAIChat | TransformersChat:
    if settings.miner_llm_base_url:
        return OpenAIChat(
            settings.miner_llm_base_url,
            settings.miner_llm_model,
            settings.miner_llm_api_key,
            timeout=settings.miner_llm_timeout_seconds,
        )
    return TransformersChat(settings.miner_llm_model, device=settings.device)
