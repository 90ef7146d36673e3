"""A tiny Qwen2-architecture model with random weights, built offline and deterministic from a seed.

Tests, CI and the local subnet serve and verify this model, since nothing can be downloaded there.
It has the real architecture (the same transformers class as Qwen2.5), a real byte-level BPE
tokenizer trained with `tokenizers` on a short built-in text, and is saved with `save_pretrained`,
so every code path that loads a hub model loads it the same way.

The tokenizer does not depend on the seed; only the weights do. Two seeds therefore give two
different models over the same vocabulary — exactly the "another model" a dishonest miner serves.
"""

from __future__ import annotations

from pathlib import Path

# Our own text (written for this file): enough variety for a few hundred BPE merges.
_CORPUS = """
The validator draws a seed, builds a prompt from it and asks the miner to continue the prompt.
The miner answers with the tokens it chose and the scores behind a few of them.
The validator then reads the same tokens back through its own copy of the model and compares.
An honest server runs the model it names, in the precision it names, on any kind of hardware.
A server that runs a smaller model, a noisy copy, or a quantized copy lands further away.
Attention lets every position look back at the ones before it; the cache keeps what was computed.
Linear attention keeps a running state instead of the whole history, so long inputs stay cheap.
Kernels are small programs that run on the accelerator; a faster kernel saves time and energy.
Numbers reported by a miner are hints; numbers measured by the validator decide the reward.
Rounds open, miners commit, reveal later, and validators evaluate what was revealed.
One, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, twenty, hundred.
Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday; January, February, March, April.
red green blue yellow orange purple black white grey silver golden bright dark light shadow.
The quick brown fox jumps over the lazy dog while the cat sleeps near the warm stove.
def forward(self, x): return self.proj(x) + x  # residual connections keep gradients alive
for i in range(10): print(i * i, end=", ")  # squares of the first ten numbers
{"prompt": "hello", "max_new_tokens": 16, "logits_positions": [0, 3, 7]}
Weights, biases, layers, heads, tokens, logits, probabilities, distributions, samples.
"""

VOCAB_SIZE = 1024
HIDDEN_SIZE = 64
NUM_LAYERS = 2
NUM_HEADS = 4
NUM_KV_HEADS = 2
INTERMEDIATE_SIZE = 128
MAX_CONTEXT = 1024
# Random weights at the usual 0.02 give nearly flat next-token distributions (logit std ~0.15),
# unlike a trained model whose top token stands out. 1/sqrt(hidden) keeps each matmul's gain near 1
# (a wider init makes the random network chaotic: rounding noise then grows layer by layer far more
# than in a trained model), and scaling the output layer by 3 gives logits with std ~3 and a top
# token holding ~20 % of the mass, as in a trained model's next-token distributions.
INITIALIZER_RANGE = HIDDEN_SIZE**-0.5
LM_HEAD_SCALE = 3.0
SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>")


def build_tokenizer():  # -> PreTrainedTokenizerFast
    """Byte-level BPE over the built-in text: encodes any string, decodes back to it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([line for line in _CORPUS.splitlines() if line.strip()], trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=SPECIAL_TOKENS[0],
        pad_token=SPECIAL_TOKENS[1],
        model_max_length=MAX_CONTEXT,
    )


def tiny_config(vocab_size: int, eos_token_id: int, pad_token_id: int):  # -> Qwen2Config
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_KV_HEADS,
        max_position_embeddings=MAX_CONTEXT,
        initializer_range=INITIALIZER_RANGE,
        tie_word_embeddings=False,
        eos_token_id=eos_token_id,
        bos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )


def make_tiny_model(path: str | Path, seed: int = 0) -> Path:
    """Build the tiny model for ``seed`` and save it (weights + tokenizer) under ``path``.

    The same seed always gives bit-identical weights. Returns the directory.
    """
    import torch
    from transformers import Qwen2ForCausalLM

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    # Round the vocabulary up to a multiple of 64, as real models do; the extra rows are never
    # produced by the tokenizer but are valid ids.
    vocab = -(-len(tokenizer) // 64) * 64
    config = tiny_config(vocab, tokenizer.eos_token_id, tokenizer.pad_token_id)
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
        with torch.no_grad():
            model.lm_head.weight.mul_(LM_HEAD_SCALE)
    finally:
        torch.random.set_rng_state(generator_state)  # leave the caller's RNG as it was
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def ensure_default_tiny_model(settings: object, name_or_path: str) -> None:
    """On the embedded chain, build the tiny model at QUASAR_HOME/tiny-model the first time it is
    named (the default MODEL_NAME / REFERENCE_MODEL there), so `make demo` needs no download."""
    home = getattr(settings, "quasar_home", None)
    if not getattr(settings, "is_embedded", False) or home is None:
        return
    default = Path(home) / "tiny-model"
    if Path(name_or_path) == default and not (default / "config.json").exists():
        make_tiny_model(default, seed=0)
