"""``quasar.kernels`` and ``quasar.bench`` import with torch (and rich) alone: the GPU machine has no
FastAPI, pydantic, bittensor or typer, and the CPU path must not need Triton."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
FORBIDDEN = ("pydantic", "fastapi", "bittensor", "typer", "sqlalchemy", "httpx", "triton")


def test_imports_pull_in_nothing_else() -> None:
    script = (
        "import sys\n"
        "import quasar.kernels, quasar.bench, quasar.bench.__main__, quasar.kernels.template\n"
        "from quasar.kernels import QuasarAttention\n"
        f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"imported: {result.stdout.strip()}"
