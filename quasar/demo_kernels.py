"""The honest change the local demo's miner submits (`quasar local up`): the same math, less work on CPU.

The demo needs an honest miner that beats the baseline under the validators' own timing, on any
machine the demo runs on, by a margin the CPU's noise cannot hide. The change rewrites the chunk
step of the template's `fla/ops/quasar/chunked.py` (a copy of `quasar/kernels/chunked.py`): `w` and
`u` come from one triangular solve with `alpha * [k | v]` on the right instead of forming
`A = system^-1 diag(alpha)` and multiplying it twice, masks become `tril`, and outputs are written in
place. The math is unchanged (same fp32 results to ~1e-7). Alone in a process it runs 1.1-1.8x
faster than the baseline at the CPU timing shapes, but under the validators' timing (allocator
thresholds fixed, sandboxed workers) it measured only 1.03-1.08x on this project's 2-core machine
(docs/benchmarks.md): not yet the margin the demo needs to win every run.
"""

from __future__ import annotations

#: What the demo prints about the honest miner's kernel.
HONEST_CHANGE = "one triangular solve for w and u instead of forming A"

#: The part of the template's `_chunked` that the change replaces, from its first line to its last.
_START = "    strictly_lower = torch.ones("
_END = "    return o[:, :, :seq_len].transpose(1, 2), state\n"

_FASTER = """    # w = system^-1 (alpha k) and u = system^-1 (alpha v) from one solve: A is never formed.
    alpha_c = ac.unsqueeze(-1)
    system = torch.tril(alpha_c * (kc @ kc.transpose(-1, -2)), -1)
    system.diagonal(dim1=-2, dim2=-1).fill_(1.0)
    key_dim = kc.shape[-1]
    rhs = alpha_c * torch.cat([kc, vc], dim=-1)
    wu = torch.linalg.solve_triangular(system, rhs, upper=False, unitriangular=True)
    w, u = wu[..., :key_dim], wu[..., key_dim:]
    attn = torch.tril(qc @ kc.transpose(-1, -2))

    o = qc.new_empty(batch, heads, num_chunks, chunk_size, value_dim)
    for i in range(num_chunks):
        delta = u[:, :, i] - w[:, :, i] @ state
        o[:, :, i] = qc[:, :, i] @ state + attn[:, :, i] @ delta
        state = state + kc[:, :, i].transpose(-1, -2) @ delta
    o = o.reshape(batch, heads, num_chunks * chunk_size, value_dim)
    return o[:, :, :seq_len].transpose(1, 2), state
"""


class TemplateChanged(ValueError):
    """The template's chunk step no longer has the lines the change replaces."""


def faster_chunked(source: str) -> str:
    """``source`` of the template's `chunked.py` with the honest change applied."""
    start = source.find(_START)
    end = source.find(_END, start)
    if start < 0 or end < 0:
        raise TemplateChanged(
            "the kernel template's chunk step changed; update quasar/demo_kernels.py to match it"
        )
    return source[:start] + _FASTER + source[end + len(_END) :]
