"""The demo's honest kernel: the same math as the definition, and a loud error when the template it
patches has changed (its speed is measured in docs/benchmarks.md, not asserted here)."""

from __future__ import annotations

import importlib.util
import secrets
import sys
from pathlib import Path

import pytest
import torch

from quasar.demo_kernels import TemplateChanged, faster_chunked
from quasar.kernels.chunked import chunk_quasar_torch
from quasar.kernels.reference import naive_quasar
from quasar.local import make_kernel_repo


def _load_package(repo: Path):  # noqa: ANN202 - a module
    """The repository's fla/ops/quasar as a package of its own name (relative imports work)."""
    directory = repo / "fla" / "ops" / "quasar"
    name = f"demo_kernel_{secrets.token_hex(4)}"
    spec = importlib.util.spec_from_file_location(
        name, directory / "__init__.py", submodule_search_locations=[str(directory)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return importlib.import_module(f"{name}.chunked")


@pytest.fixture(scope="module")
def faster(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    repo = tmp_path_factory.mktemp("demo") / "honest"
    make_kernel_repo(repo, faster=True)
    return _load_package(repo).chunk_quasar_torch


@pytest.mark.parametrize("seq_len,chunk_size", [(1, 64), (100, 16), (257, 64), (300, 128)])
def test_the_change_keeps_the_math(faster, seq_len: int, chunk_size: int) -> None:
    gen = torch.Generator().manual_seed(seq_len)
    q, k = torch.randn(2, seq_len, 3, 8, generator=gen), torch.randn(2, seq_len, 3, 8, generator=gen) * 0.5
    v, beta = torch.randn(2, seq_len, 3, 6, generator=gen), torch.rand(3, generator=gen) + 0.5
    h0 = torch.randn(2, 3, 8, 6, generator=gen)
    want_o, want_h = naive_quasar(q.double(), k.double(), v.double(), beta.double(), h0.double(), True)
    got_o, got_h = faster(q, k, v, beta, h0, True, chunk_size=chunk_size)
    assert torch.allclose(got_o.double(), want_o, rtol=1e-4, atol=1e-5)
    assert torch.allclose(got_h.double(), want_h, rtol=1e-4, atol=1e-5)


def test_the_change_keeps_packed_sequences(faster) -> None:
    gen = torch.Generator().manual_seed(5)
    q, k = torch.randn(1, 200, 2, 8, generator=gen), torch.randn(1, 200, 2, 8, generator=gen) * 0.5
    v, beta = torch.randn(1, 200, 2, 8, generator=gen), torch.rand(2, generator=gen) + 0.5
    cu = torch.tensor([0, 7, 130, 200], dtype=torch.int32)
    want_o, want_h = chunk_quasar_torch(q, k, v, beta, None, True, cu)
    got_o, got_h = faster(q, k, v, beta, None, True, cu)
    assert torch.allclose(got_o, want_o, rtol=1e-4, atol=1e-5) and torch.allclose(
        got_h, want_h, rtol=1e-4, atol=1e-5
    )


def test_a_changed_template_is_said_in_one_line() -> None:
    with pytest.raises(TemplateChanged, match="update quasar/demo_kernels.py"):
        faster_chunked("def _chunked():\n    pass\n")
