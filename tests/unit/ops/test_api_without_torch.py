"""The Validator API runs without torch: its image installs `.[api]`, which has neither torch nor transformers.

Each check runs in a fresh interpreter. The first imports the app as uvicorn does and asserts that no
ML library was imported. The second makes those libraries unimportable (as in the API image) and runs
what the image runs: the app's import, `quasar db upgrade` and `quasar api --help`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ML = ("torch", "transformers", "tokenizers", "triton", "numpy", "fla")

# Set to None in sys.modules, a module cannot be imported (ImportError), as if it were not installed.
BLOCK = "import sys\nfor name in {ml!r}:\n    sys.modules[name] = None\n"


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUBTENSOR", "DATABASE", "QUASAR"))}
    env.update(QUASAR_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )


def test_importing_the_api_imports_no_ml_library(tmp_path: Path) -> None:
    code = (
        "import sys, validator_api.app\n"
        f"loaded = sorted(m for m in {ML!r} if m in sys.modules)\n"
        "assert not loaded, loaded\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
    )
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_api_image_commands_work_without_torch_installed(tmp_path: Path) -> None:
    block = BLOCK.format(ml=ML)
    app = _python(block + "import validator_api.app\nprint(validator_api.app.app.title)", tmp_path)
    assert app.returncode == 0 and "QUASAR Validator API" in app.stdout, app.stderr[-3000:]
    run_cli = block + "from quasar.cli import main\nsys.argv = ['quasar', *{argv!r}]\nmain()\n"
    upgrade = _python(run_cli.format(argv=["db", "upgrade"]), tmp_path)
    assert upgrade.returncode == 0 and "is at revision head" in upgrade.stderr, upgrade.stderr[-3000:]
    helped = _python(run_cli.format(argv=["api", "--help"]), tmp_path)
    assert helped.returncode == 0 and "--port" in helped.stdout, helped.stderr[-3000:]


def test_the_api_extra_and_the_base_name_no_ml_library() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for where, deps in (
        ("dependencies", project["dependencies"]),
        ("api", project["optional-dependencies"]["api"]),
    ):
        names = {d.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in deps}
        assert not names & {"torch", "transformers", "tokenizers", "triton", "numpy"}, (where, names)
    dev = project["optional-dependencies"]["dev"]
    assert "quasar-subnet[api,neuron]" in dev  # the tests need every role's dependencies
