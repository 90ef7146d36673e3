"""Wire shapes of the miner inference server (HTTP contract v1, DESIGN §4), for server and client.

Fixed: other teams' validators and miners code against these. Fields may be added, never renamed.
Unknown request fields are ignored (a newer validator may send more than this server knows).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input_ids: list[int] | None = Field(None, description="Prompt as token ids (give this or prompt).")
    prompt: str | None = Field(None, description="Prompt as text, tokenized by the served tokenizer.")
    max_new_tokens: int = Field(16, description="Tokens to generate greedily.")
    logits_positions: list[int] = Field(
        default_factory=list, description="Generated positions (0 = first new token) whose logits to return."
    )
    stop_at_eos: bool = Field(
        True,
        description="Stop after the end-of-sequence token (validators send false for full-length answers).",
    )


class InferenceResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    output_ids: list[int] = Field(description="The generated token ids (the prompt excluded).")
    text: str = Field("", description="The generated ids decoded.")
    logits: dict[str, str] = Field(
        default_factory=dict,
        description="Position -> base64 of little-endian float16 logits over the whole vocabulary "
        "(quasar.inference.encoding). The logits of position i are the scores token i was chosen from.",
    )
    prefill_ms: float = 0.0
    decode_ms: float = 0.0


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model_name: str
    weights_sha256: str
    dtype: str
    device: str
    vocab_size: int
    max_context: int
    hotkey: str | None = Field(None, description="The miner hotkey signed requests must be addressed to.")
    auth_required: bool = False
