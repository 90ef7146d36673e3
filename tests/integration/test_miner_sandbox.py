"""Candidates are benched in the validators' sandbox, or (opted in) visibly without one.

The candidate is the template's kernel plus a probe, run at import, of what it can reach: the miner's
wallet file, WALLET_PATH in its environment (not a secret-looking name, so the old scrubbing kept
it), and a port the test listens on. It raises on its first call if it reached any of them, so its
bench fails with the list. In the sandbox it reaches nothing and passes; as a plain child process
(MINER_ALLOW_UNSANDBOXED_CANDIDATES) it reaches all three, and each such run logs one warning.
Where no sandbox can be built and nobody opted in, nothing runs at all.
"""

from __future__ import annotations

import logging
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from quasar.evaluation import sandbox as sandbox_module
from quasar.kernels.template import init_kernel_repo
from quasar.miner.bench import BenchRunner, CandidatesRefused, Isolation
from tests.failing_bwrap import put_failing_bwrap_first

pytestmark = pytest.mark.slow

PROBE = """
import os as _os
import socket as _socket

_REACHED = []
if _os.path.exists({wallet!r}):
    _REACHED.append("the wallet file")
if _os.environ.get("WALLET_PATH"):
    _REACHED.append("WALLET_PATH")
try:
    _socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
    _REACHED.append("the network")
except OSError:
    pass

_template_chunk_quasar = chunk_quasar


def chunk_quasar(*args, **kwargs):
    if _REACHED:
        raise RuntimeError("the candidate reached " + ", ".join(_REACHED))
    return _template_chunk_quasar(*args, **kwargs)
"""


@pytest.fixture
def candidate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A snapshot (``fla/`` only, as ``Context`` benches it) of the probing kernel, with a wallet and a
    listening port on this machine for it to find."""
    wallet = tmp_path / "wallets" / "miner" / "hotkeys" / "default"
    wallet.parent.mkdir(parents=True)
    wallet.write_text('{"secretPhrase": "not a real one"}')
    monkeypatch.setenv("WALLET_PATH", str(tmp_path / "wallets"))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        repo = tmp_path / "repo"
        init_kernel_repo(repo)
        init = repo / "fla" / "ops" / "quasar" / "__init__.py"
        init.write_text(init.read_text() + PROBE.format(wallet=str(wallet), port=listener.getsockname()[1]))
        snapshot = tmp_path / "candidate"
        shutil.copytree(repo / "fla", snapshot / "fla")
        yield snapshot


def runner(**isolation: object) -> BenchRunner:
    return BenchRunner(device="cpu", quick=True, timeout_seconds=600, isolation=Isolation(**isolation))  # type: ignore[arg-type]


def test_in_the_sandbox_the_candidate_reaches_nothing(candidate: Path) -> None:
    sandbox_module.forget_probes()
    bench = runner()
    how = bench.check_isolation()
    if "bwrap" not in how and "unshare" not in how:
        pytest.skip(f"no sandbox on this machine: {how}")
    assert how.startswith("in the validators' sandbox (")
    result = bench.run(candidate, "a" * 40)
    assert result.verdict == "pass", result.summary()
    assert result.speedup is not None and result.median_ms is not None


def test_without_a_sandbox_candidates_are_refused_unless_opted_in(
    candidate: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    put_failing_bwrap_first(tmp_path, monkeypatch, only=["git"])  # and no unshare
    try:
        refused = runner()
        with pytest.raises(CandidatesRefused, match="MINER_ALLOW_UNSANDBOXED_CANDIDATES=true"):
            refused.check_isolation()
        result = refused.run(candidate, "b" * 40)
        assert (result.verdict, result.reason) == ("error", "sandbox_unavailable")
        assert "not run: no sandbox can be built" in (result.detail or "")

        opted_in = runner(allow_unsandboxed=True)
        assert opted_in.check_isolation().startswith(
            "WITHOUT a sandbox (MINER_ALLOW_UNSANDBOXED_CANDIDATES=true"
        )
        with caplog.at_level(logging.WARNING, logger="quasar.miner.bench"):
            first = opted_in.run(candidate, "c" * 40)
            second = opted_in.run(candidate, "d" * 40)
    finally:
        monkeypatch.undo()
        sandbox_module.forget_probes()
    for result in (first, second):
        assert result.verdict == "fail", result.summary()
        assert "the candidate reached the wallet file, WALLET_PATH, the network" in (result.detail or ""), (
            result.detail
        )
    said = [r.getMessage() for r in caplog.records if "WITHOUT a sandbox" in r.getMessage()]
    assert len(said) == 2 and "c" * 12 in said[0] and "d" * 12 in said[1], said
