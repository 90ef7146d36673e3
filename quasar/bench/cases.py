"""Correctness cases of the bench: which shapes are checked, their random inputs, and the trusted answer.

The cases cover what DESIGN §2 asks for: the benchmark shape scaled to the device, T not a multiple of
any chunk size, B > 1, initial_state, output_final_state and packed uneven sequences (cu_seqlens); on
CPU at least one case reaches past T = 2,048 so a kernel that is right only at small T is caught, and
every case has H > 1 so a kernel that confuses [B, T, H, K] with [B, H, T, K] is caught.

Inputs are drawn fresh from the run's seed: never zeros, keys not normalised (so alpha varies from
token to token), beta > 0. Isotropic keys of ordinary norm make the state forget within a few hundred
tokens, so history hardly matters and a kernel that approximates it (restarting from zero every few
thousand tokens, dropping or decaying the initial state) would pass; the *long-memory* kinds of keys
(``KEY_KINDS``) make every token's output depend on the whole history:

* ``low_rank``: each head's keys span a random low-dimensional subspace, so the part of the state
  outside it (the initial state's included) persists to the last token, and the isotropic queries read it;
* ``tiny``: keys with tiny norms (alpha ~ beta, alpha * ||k||^2 ~ 1e-3): the state forgets over tens of
  thousands of tokens;
* ``overwrite``: unit keys with a large beta, so each update nearly overwrites the state along k;
* ``large_values``: values a hundred times larger than usual;
* ``mixed``: ``low_rank`` or ``tiny``, drawn from the seed. Timed runs use it: every run has long
  memory, so a kernel that approximates only at the timed shape fails every run that is checked.

The reference is computed in fp32 from the very inputs the kernel gets; it is the naive recurrence
where that is fast enough, and the chunked PyTorch path in fp32 (TF32 off) for the GPU benchmark shape,
where a token-by-token loop over 100,000 steps is too slow.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from quasar.kernels.chunked import chunk_quasar_torch
from quasar.kernels.reference import naive_quasar

#: Up to this many tokens per case the naive recurrence is the reference; beyond, the chunked path.
#: (The CPU cases stay under it, so on CPU the judge never shares the baseline's chunked code.)
NAIVE_REFERENCE_MAX_TOKENS = 16_384

#: How a case draws its keys (and values): see the module docstring.
KEY_KINDS = ("random", "low_rank", "tiny", "overwrite", "large_values", "mixed")
#: What ``mixed`` draws from.
MIXED_KINDS = ("low_rank", "tiny")


@dataclass(frozen=True)
class CaseSpec:
    """One correctness case. ``seqlens`` packs sequences of these lengths along T (then B == 1)."""

    name: str
    batch: int
    seq_len: int
    heads: int
    key_dim: int
    value_dim: int
    dtype: torch.dtype
    seqlens: tuple[int, ...] | None = None
    initial_state: bool = False
    output_final_state: bool = False
    keys: str = "random"

    def __post_init__(self) -> None:
        if self.seqlens is not None and (self.batch != 1 or sum(self.seqlens) != self.seq_len):
            raise ValueError(f"case {self.name}: packed seqlens need B == 1 and sum(seqlens) == T")
        if self.keys not in KEY_KINDS:
            raise ValueError(f"case {self.name}: keys must be one of {KEY_KINDS}, got {self.keys!r}")

    @property
    def bounds(self) -> list[tuple[int, int]] | None:
        """The token range of every packed sequence, or None when the case is not packed."""
        if self.seqlens is None:
            return None
        offsets = [0]
        for n in self.seqlens:
            offsets.append(offsets[-1] + n)
        return list(zip(offsets, offsets[1:], strict=False))

    @property
    def num_states(self) -> int:
        return len(self.seqlens) if self.seqlens is not None else self.batch

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def reference_name(self) -> str:
        kind = "naive" if self.batch * self.seq_len <= NAIVE_REFERENCE_MAX_TOKENS else "chunked"
        return f"{kind}_fp32"

    def shape_dict(self) -> dict[str, object]:
        shape: dict[str, object] = {
            "B": self.batch, "T": self.seq_len, "H": self.heads,
            "K": self.key_dim, "V": self.value_dim, "N": self.num_states,
        }  # fmt: skip
        # Hundreds of packed lengths say little in a report; their count (N) and total (T) do.
        if self.seqlens is not None and len(self.seqlens) <= 64:
            shape["seqlens"] = list(self.seqlens)
        if self.keys != "random":
            shape["keys"] = self.keys
        return shape


@dataclass
class CaseInputs:
    """The arguments of one kernel call, in ``chunk_quasar``'s order."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    beta: torch.Tensor
    initial_state: torch.Tensor | None
    output_final_state: bool
    cu_seqlens: torch.Tensor | None

    def args(self) -> tuple:
        return (self.q, self.k, self.v, self.beta, self.initial_state, self.output_final_state,
                self.cu_seqlens)  # fmt: skip

    def tensors(self) -> list[torch.Tensor | None]:
        return [self.q, self.k, self.v, self.beta, self.initial_state, self.cu_seqlens]


def _short_seqlens(count: int, longest: int) -> tuple[int, ...]:
    """``count`` short packed lengths from 1 to ``longest``, in a fixed scattered order."""
    return tuple(1 + (i * 7 + i * i * 3) % longest for i in range(count))


def _cpu_cases() -> list[CaseSpec]:
    f32, f16 = torch.float32, torch.float16
    # fmt: off
    return [
        # The benchmark shape (B=1, H=8, K=V=64, T=100k) scaled to a CPU, still past T = 2,048.
        CaseSpec("bench_shape_scaled", 1, 4096, 4, 32, 32, f32),
        # 2,113 is odd: no power-of-two chunk divides it; K != V catches swapped dimensions.
        CaseSpec("odd_t_long", 1, 2113, 4, 32, 16, f16),
        CaseSpec("batch", 3, 515, 4, 32, 32, f32),
        CaseSpec("initial_state", 2, 777, 4, 32, 32, f32, initial_state=True, output_final_state=True),
        CaseSpec("final_state", 2, 300, 4, 16, 16, f16, output_final_state=True),
        CaseSpec("varlen", 1, 2000, 4, 32, 32, f32, seqlens=(137, 1063, 1, 799), output_final_state=True),
        CaseSpec(
            "varlen_initial_state", 1, 875, 4, 32, 32, f16,
            seqlens=(300, 64, 511), initial_state=True, output_final_state=True,
        ),
        # Long memory, cheaply (small H and K): three times past 4,096 tokens, so a kernel that restarts
        # any window of up to 4,096 tokens from a truncated history, or lets the initial state fade,
        # is wrong on thousands of tokens.
        CaseSpec("long_memory_tiny_keys", 1, 12_288, 2, 16, 16, f32, keys="tiny",
                 initial_state=True, output_final_state=True),
        CaseSpec("long_memory_low_rank", 1, 9000, 2, 16, 16, f16, keys="low_rank",
                 initial_state=True, output_final_state=True),
        CaseSpec("overwrite", 2, 1000, 4, 32, 32, f32, keys="overwrite", initial_state=True,
                 output_final_state=True),
        CaseSpec("large_values", 1, 1500, 4, 32, 32, f16, keys="large_values"),
        CaseSpec("many_short_sequences", 1, sum(_short_seqlens(300, 13)), 2, 16, 16, f32,
                 seqlens=_short_seqlens(300, 13), initial_state=True, output_final_state=True,
                 keys="low_rank"),
    ]
    # fmt: on


def _cuda_cases(quick: bool) -> list[CaseSpec]:
    bf16, f16 = torch.bfloat16, torch.float16
    # fmt: off
    cases = [
        CaseSpec("bench_shape", 1, 100_000, 8, 64, 64, bf16),
        CaseSpec("wide_heads_odd_t", 1, 8191, 16, 128, 128, bf16),
        CaseSpec("odd_t_long", 1, 4099, 8, 64, 32, f16),
        CaseSpec("batch", 4, 2113, 8, 64, 64, bf16),
        CaseSpec("initial_state", 2, 3001, 8, 64, 64, bf16, initial_state=True, output_final_state=True),
        CaseSpec("final_state", 3, 1000, 8, 64, 64, f16, output_final_state=True),
        CaseSpec(
            "varlen", 1, 8192, 8, 64, 64, bf16,
            seqlens=(1, 4000, 333, 2705, 64, 1089), output_final_state=True,
        ),
        CaseSpec(
            "varlen_initial_state", 1, 3500, 8, 64, 64, f16,
            seqlens=(1500, 129, 1871), initial_state=True, output_final_state=True,
        ),
        # The benchmark shape with long memory: an approximation anywhere in 100,000 tokens shows.
        CaseSpec("bench_shape_tiny_keys", 1, 100_000, 8, 64, 64, bf16, keys="tiny",
                 initial_state=True, output_final_state=True),
        CaseSpec("bench_shape_low_rank", 1, 100_000, 8, 64, 64, bf16, keys="low_rank",
                 initial_state=True, output_final_state=True),
        CaseSpec("overwrite", 2, 4096, 8, 64, 64, bf16, keys="overwrite", initial_state=True,
                 output_final_state=True),
        CaseSpec("large_values", 1, 8192, 8, 128, 128, f16, keys="large_values"),
        CaseSpec("many_short_sequences", 1, sum(_short_seqlens(700, 29)), 8, 64, 64, bf16,
                 seqlens=_short_seqlens(700, 29), initial_state=True, output_final_state=True,
                 keys="low_rank"),
    ]
    # fmt: on
    if not quick:
        cases.insert(1, CaseSpec("bench_shape_fp16", 1, 100_000, 8, 64, 64, f16))
    return cases


def correctness_cases(device_type: str, quick: bool = False) -> list[CaseSpec]:
    """The cases for ``cpu`` or ``cuda``. ``quick`` never drops a kind of case, only GPU repeats."""
    if device_type == "cuda":
        return _cuda_cases(quick)
    if device_type == "cpu":
        return _cpu_cases()
    raise ValueError(f"unsupported device type {device_type!r}; use 'cpu' or 'cuda'")


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` in a run seeded ``seed``: independent streams per case."""
    return (seed * 1_000_003 + index * 7_919) % (2**63 - 1)


def make_inputs(spec: CaseSpec, seed: int, device: torch.device | str) -> CaseInputs:
    """Random inputs for ``spec`` from ``seed``; deterministic for a given seed and device."""
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    b, t, h, kd, vd = spec.batch, spec.seq_len, spec.heads, spec.key_dim, spec.value_dim

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, device=device, dtype=torch.float32)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=gen, device=device, dtype=torch.float32)

    q = randn(b, t, h, kd) / kd**0.5
    v = randn(b, t, h, vd)
    beta = uniform(0.5, 2.0, h)
    keys = spec.keys
    if keys == "mixed":
        keys = MIXED_KINDS[int(torch.randint(len(MIXED_KINDS), (1,), generator=gen, device=device).item())]
    if keys == "low_rank":
        # Each head's keys span its own random subspace of a quarter of K (2 dimensions at least).
        rank = max(2, kd // 4)
        basis = torch.linalg.qr(randn(h, kd, rank)).Q  # [H, K, rank], orthonormal columns
        coords = randn(b, t, h, rank) / rank**0.5
        k = torch.einsum("bthr,hkr->bthk", coords, basis) * uniform(0.2, 3.0, b, t, h, 1)
    elif keys == "tiny":
        # ||k|| from 0.02 to 0.1: alpha ~ beta, and every direction forgets over ~K / (beta ||k||^2) tokens.
        k = randn(b, t, h, kd) * uniform(0.02, 0.1, b, t, h, 1) / kd**0.5
    elif keys == "overwrite":
        k = randn(b, t, h, kd)
        k = k / torch.linalg.vector_norm(k, dim=-1, keepdim=True)
        # alpha * ||k||^2 = 1 - exp(-beta): from 1 - 7e-3 to 1 - 2e-9, a near-exact overwrite along k.
        beta = uniform(5.0, 20.0, h)
    else:
        # Per-token key norms from ~0.2 to ~3 give ||k||^2 from ~0.04 to ~9, so alpha * ||k||^2 spans
        # nearly all of [0, 1): both gentle and almost-overwriting updates are exercised.
        k = randn(b, t, h, kd) * uniform(0.2, 3.0, b, t, h, 1) / kd**0.5
        if keys == "large_values":
            v = v * 100.0
    initial_state = randn(spec.num_states, h, kd, vd) * 0.5 if spec.initial_state else None
    cu_seqlens = None
    if spec.bounds is not None:
        offsets = [0] + [end for _, end in spec.bounds]
        cu_seqlens = torch.tensor(offsets, dtype=torch.int32, device=device)
    return CaseInputs(
        q.to(spec.dtype), k.to(spec.dtype), v.to(spec.dtype), beta,
        initial_state, spec.output_final_state, cu_seqlens,
    )  # fmt: skip


@contextmanager
def strict_fp32() -> Iterator[None]:
    """Full fp32 matmuls (no TF32) while the trusted reference is computed."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


@contextmanager
def one_cpu_thread(device: torch.device) -> Iterator[None]:
    """One intra-op thread for the token loop on CPU: its ops are tiny, and extra threads only contend
    (several times slower on a shared 2-core machine)."""
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@torch.no_grad()
def reference_outputs(spec: CaseSpec, inputs: CaseInputs) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The trusted fp32 ``(o, final_state)`` for ``inputs``; the final state always (None if not asked)."""
    reference = naive_quasar if spec.reference_name.startswith("naive") else chunk_quasar_torch
    with strict_fp32(), one_cpu_thread(inputs.q.device):
        o, final = reference(
            inputs.q.float(), inputs.k.float(), inputs.v.float(), inputs.beta.float(),
            inputs.initial_state, True, inputs.cu_seqlens,
        )  # fmt: skip
    return o, (final if spec.output_final_state else None)
