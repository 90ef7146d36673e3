"""The agent's local model (``TransformersChat``) on a real tiny Qwen2 model built offline.

Its tokenizer gets Qwen3's way of turning thinking off: with ``enable_thinking=False`` the template
writes an empty ``<think></think>`` block after the assistant header, so the model answers at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from quasar.miner.llm import TransformersChat, strip_thinking
from quasar.models.tiny import make_tiny_model

#: The generation prompt of Qwen3's chat template, reduced to what decides thinking.
QWEN3_LIKE_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)
MESSAGES = [
    {"role": "system", "content": "You optimise kernels."},
    {"role": "user", "content": "Make it fast."},
]


@pytest.fixture(scope="module")
def qwen3_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer

    path = make_tiny_model(tmp_path_factory.mktemp("model") / "tiny", seed=3)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = QWEN3_LIKE_TEMPLATE
    tokenizer.save_pretrained(path)
    return path


def test_thinking_is_turned_off_in_the_chat_template(qwen3_like: Path) -> None:
    chat = TransformersChat(str(qwen3_like), device="cpu", max_new_tokens=8)
    prompt = chat.prompt(MESSAGES)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n"), prompt
    answer = chat.complete(MESSAGES)  # real greedy decoding of the random model: some text, no thinking
    assert isinstance(answer, str) and "<think>" not in answer


def test_the_model_loads_in_float32_on_cpu(qwen3_like: Path) -> None:
    chat = TransformersChat(str(qwen3_like), device="cpu", max_new_tokens=2)
    chat.complete(MESSAGES)
    assert chat.dtype == torch.float32 and chat._model.dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_model_loads_in_bfloat16_on_gpu(qwen3_like: Path) -> None:
    chat = TransformersChat(str(qwen3_like), device="cuda", max_new_tokens=2)
    chat.complete(MESSAGES)
    assert chat.dtype == torch.bfloat16 and chat._model.dtype == torch.bfloat16
    assert chat._model.device.type == "cuda"


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        (
            "<think>\nthe diff should...\n</think>\n\nRemove the sleep.\n```diff\n",
            "Remove the sleep.\n```diff",
        ),
        ("Remove the sleep.", "Remove the sleep."),
        # Out of tokens while thinking: nothing of the thinking is taken for an answer.
        ("<think>\nfirst, the kernel", ""),
    ],
)
def test_thinking_a_model_writes_anyway_is_dropped(text: str, answer: str) -> None:
    assert strip_thinking(text) == answer
