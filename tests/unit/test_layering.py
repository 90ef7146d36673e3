"""The package `quasar` never imports `miner/` (the thin module of older start commands sits above it).

The inference server lives in `quasar.inference.server`; `miner/inference_server.py` only keeps
`uvicorn miner.inference_server:app` and `python miner/inference_server.py` working on top of it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_nothing_under_quasar_imports_miner() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(n for n in names if n == "miner" or n.startswith("miner."))
        for path in sorted((ROOT / "quasar").rglob("*.py"))
        if (names := _imported(path))
    }
    assert {path: found for path, found in offenders.items() if found} == {}


def test_the_thin_module_adds_no_server_code_of_its_own() -> None:
    thin = ROOT / "miner" / "inference_server.py"
    tree = ast.parse(thin.read_text())
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    assert defined == {"__getattr__", "main"}
    assert {"quasar.inference.server", "quasar.inference.cli"} <= _imported(thin)
