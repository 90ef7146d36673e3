"""``quasar kernel init PATH``: create the git repository a miner starts from.

The repository has the layout every submission must have: a package ``fla/ops/quasar`` exporting
``chunk_quasar`` (DESIGN §2). It starts from the project's baseline: verbatim copies of the op's files
(the definition, the chunked PyTorch path, the dispatch that sends CUDA tensors to the Triton kernel
and everything else to the PyTorch path, and, when present, the fast Triton kernels) under an
``__init__`` that re-exports them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

#: The op's own files; they import torch, triton and each other only, so they work anywhere.
OP_FILES = ("alpha.py", "reference.py", "chunked.py", "dispatch.py")
FAST_PACKAGE = "fast"
TEMPLATE_AUTHOR = ("QUASAR kernel template", "template@quasar.invalid")

_FLA_INIT = '''"""Minimal fla package of a QUASAR submission: only ``fla.ops.quasar`` is used by validators."""
'''

_OPS_INIT = '''"""Ops of a QUASAR submission."""
'''

_QUASAR_INIT = '''"""QuasarAttention, the op this repository submits to the QUASAR subnet.

``chunk_quasar`` is the entry point validators import (``fla.ops.quasar:chunk_quasar``). As shipped by
``quasar kernel init`` it runs the Triton kernels in ``fast/`` on CUDA tensors when they are present,
and the chunked PyTorch path everywhere else (``dispatch.py``). Make it faster; keep its signature and
results.
"""

from .alpha import quasar_alpha
from .chunked import chunk_quasar_torch
from .dispatch import chunk_quasar
from .reference import naive_quasar

__all__ = ["chunk_quasar", "chunk_quasar_torch", "naive_quasar", "quasar_alpha"]
'''

_README = """# QuasarAttention kernel submission

This repository is a submission to the QUASAR subnet, which pays for making the QuasarAttention op
faster. It was created by `quasar kernel init` from the subnet's baseline.

## The contract

Validators import `fla.ops.quasar:chunk_quasar` and call

```
chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None)
    q, k: [B, T, H, K]   v: [B, T, H, V]   beta: [H] (fp32, > 0)
    initial_state: [N, H, K, V] or None   (N = B, or the number of sequences when cu_seqlens is given)
    cu_seqlens: int32/int64 [N+1] offsets of packed variable-length sequences (then B == 1)
    returns (o: [B, T, H, V] in q's dtype, final_state: [N, H, K, V] fp32 or None)
```

computing, for each sequence and head, with state `S [K, V]` starting at `initial_state` (zeros if None):

```
lam_t   = ||k_t||^2                                   (fp32)
alpha_t = (1 - exp(-beta_h * lam_t)) / (lam_t + 1e-8)
S_t     = S_{t-1} + alpha_t * k_t (v_t - S_{t-1}^T k_t)^T
o_t     = S_t^T q_t
```

`reference.py` (`naive_quasar`) is that definition, written out; `chunked.py` is a readable chunked
PyTorch version; `dispatch.py` picks the path for each call; `fast/` (when present) holds the Triton baseline kernels. Their launch settings
(segment length, warps, stages) are knobs declared in `fast/tuning.py`; `fast/tuned.json` holds the
settings tuned for each GPU, by the name `torch.cuda.get_device_name` gives, and the kernels read it at
import (the miner's `tune` strategy searches the knobs and writes it). Validators run your commit, so
they launch with your table's settings on a GPU it names, and with the defaults elsewhere.

## What is checked

* Correctness on fresh random inputs drawn from a seed you do not know in advance: the benchmark shape,
  T not a multiple of any chunk size, B > 1, initial_state, output_final_state and packed uneven
  sequences (cu_seqlens). Relative L2 error of `o` and of the final state against the validator's own
  fp32 reference: below 1e-2 for bf16/fp16 inputs, below 2e-3 for fp32 inputs. NaN or Inf anywhere fails.
* Speed: forward at B=1, T=100,000, H=8, K=V=64, bf16 (also reported: H=16, K=V=128 and T=1,000,000).
  The timed region is the whole call, alpha included, over several rotating input sets.
* Returning inputs, cached results, work hidden on a side stream, or anything that is not the honest
  computation of these inputs fails the submission.

## What you may change

Anything under `fla/ops/quasar/` (the submitted kernel is identified by that folder's git tree hash),
as long as `chunk_quasar` keeps the signature and results above. The validator uses its own copy of the
reference, so editing `reference.py` here changes nothing it checks. The code runs in a sandbox without
network access: depend only on torch and triton.

Check your work the way validators do (from a checkout of the subnet's repository):

```
python -m quasar.bench --repo /path/to/this/repo            # correctness, then timing
python -m quasar.bench --repo /path/to/this/repo --json     # the machine-readable report
```
"""

_GITIGNORE = "__pycache__/\n*.pyc\n"


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": TEMPLATE_AUTHOR[0],
        "GIT_AUTHOR_EMAIL": TEMPLATE_AUTHOR[1],
        "GIT_COMMITTER_NAME": TEMPLATE_AUTHOR[0],
        "GIT_COMMITTER_EMAIL": TEMPLATE_AUTHOR[1],
    }
    # Fixed settings, so a user's signing or hook configuration cannot break or alter the template.
    command = [
        "git",
        "-c",
        "init.defaultBranch=main",
        "-c",
        "commit.gpgsign=false",
        "-c",
        "core.hooksPath=/dev/null",
    ]
    result = subprocess.run([*command, *args], cwd=repo, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"git {' '.join(args)} failed in {repo}: {result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout.strip()


def init_kernel_repo(path: str | Path, *, force: bool = False) -> str:
    """Create the submission repository at ``path`` and return the 40-hex SHA of its first commit.

    Refuses a non-empty directory unless ``force`` (then the files are written over and committed on
    top of any repository already there).
    """
    if shutil.which("git") is None:
        raise RuntimeError("git is not installed; install git to create a kernel repository")
    target = Path(path).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory; choose another path")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise FileExistsError(
            f"{target} is not empty; choose a new or empty directory, or pass --force to write the template into it"
        )
    source = Path(__file__).resolve().parent
    package = target / "fla" / "ops" / "quasar"
    package.mkdir(parents=True, exist_ok=True)
    (target / "fla" / "__init__.py").write_text(_FLA_INIT)
    (target / "fla" / "ops" / "__init__.py").write_text(_OPS_INIT)
    (package / "__init__.py").write_text(_QUASAR_INIT)
    for name in OP_FILES:
        shutil.copy2(source / name, package / name)
    if (source / FAST_PACKAGE / "__init__.py").is_file():
        shutil.copytree(
            source / FAST_PACKAGE,
            package / FAST_PACKAGE,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            dirs_exist_ok=True,
        )
    (target / "README.md").write_text(_README)
    (target / ".gitignore").write_text(_GITIGNORE)

    if not (target / ".git").exists():
        _git(target, "init", "-q")
    _git(target, "add", "-A")
    if _git(target, "status", "--porcelain"):
        _git(target, "commit", "-q", "-m", "QuasarAttention kernel: baseline from quasar kernel init")
    return _git(target, "rev-parse", "HEAD")
