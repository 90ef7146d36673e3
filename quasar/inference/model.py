"""Loading the served (or reference) model with transformers, and describing it.

`load_model` accepts a Hugging Face id already in the local cache or a local directory (what
`quasar model make-tiny` writes). It returns a :class:`LoadedModel` with what `/model_info`
publishes: the declared dtype and device, the vocabulary size, the context length, and a sha256 over
the weights as loaded, so two servers of the same weights in the same dtype report the same hash.

Needs torch and transformers only (no pydantic/FastAPI), so the GPU calibration script can use it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch

from quasar.devices import parse_device, resolve_auto

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says what to fetch or set."""


def resolve_device(device: str) -> torch.device:
    """DEVICE as a torch device: 'auto' picks the first CUDA device when there is one, else the CPU."""
    try:
        resolved = resolve_auto(parse_device(device))
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None
    if resolved.kind == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"DEVICE={device} but no CUDA device is visible; set DEVICE=cpu or auto")
    return torch.device(str(resolved))


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """'auto' is bfloat16 on CUDA (what miners serve) and float32 on CPU (bf16 is slow there)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of auto, {', '.join(DTYPES)}") from None


@dataclass
class LoadedModel:
    """A causal LM ready for inference, with the facts `/model_info` publishes."""

    model: Any  # transformers PreTrainedModel (typed loosely: transformers is imported lazily)
    tokenizer: Any | None
    name: str
    dtype: torch.dtype
    device: torch.device
    _weights_sha256: str | None = field(default=None, repr=False)

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES.get(self.dtype, str(self.dtype).removeprefix("torch."))

    @property
    def vocab_size(self) -> int:
        """Rows of the output layer: the length of every logits row."""
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def max_context(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 0) or 0)

    @property
    def eos_token_id(self) -> int | None:
        eos = getattr(self.model.config, "eos_token_id", None)
        if isinstance(eos, list):
            eos = eos[0] if eos else None
        return None if eos is None else int(eos)

    @property
    def weights_sha256(self) -> str:
        """sha256 over (name, dtype, shape, bytes) of every parameter and buffer, in name order."""
        if self._weights_sha256 is None:
            self._weights_sha256 = weights_sha256(self.model)
        return self._weights_sha256

    def token_ids_for_prompts(self) -> list[int]:
        """Ids a challenge may draw: the tokenizer's ordinary tokens (no specials, no padding rows)."""
        limit = self.vocab_size if self.tokenizer is None else min(len(self.tokenizer), self.vocab_size)
        special = set() if self.tokenizer is None else set(self.tokenizer.all_special_ids)
        return [i for i in range(limit) if i not in special]


def weights_sha256(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().contiguous().cpu()
        digest.update(f"{name}|{str(data.dtype)}|{tuple(data.shape)}\n".encode())
        # view as bytes so bfloat16 (which numpy lacks) hashes too
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_model(
    name_or_path: str,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    *,
    attn_implementation: str | None = None,
    with_tokenizer: bool = True,
) -> LoadedModel:
    """Load a causal LM (HF id from the local cache, or a local directory) for inference."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = device if isinstance(device, torch.device) else resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path) if with_tokenizer else None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot load model {name_or_path!r}: {exc}. Give a local directory, or fetch the model "
            f"into the Hugging Face cache first (`huggingface-cli download {name_or_path}`); for the "
            "local subnet build the tiny model with `quasar model make-tiny .quasar/tiny-model`."
        ) from exc
    model.to(dev)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name=name_or_path, dtype=torch_dtype, device=dev)
