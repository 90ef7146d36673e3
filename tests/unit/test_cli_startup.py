"""`quasar` starts fast: a role's CLI module is imported only when that role's group is run.

`quasar --help` and `quasar env` run on every START script and many times in the tests; before the
groups were lazy each spent about 1.5 s importing the chain client, the settings and httpx. The
help page is unchanged: the groups are listed in the same order with the same help.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from quasar import cli

HEAVY = ("bittensor", "quasar.config", "quasar.chain", "quasar.local", "quasar.neuron", "httpx", "sqlalchemy")
HEAVY += ("torch", "transformers", "pydantic_settings")


def _modules_after(argv: list[str], cwd: Path) -> set[str]:
    code = (
        "import json, sys\n"
        "from quasar.cli import main\n"
        f"sys.argv = ['quasar', *{argv!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUASAR_", "DATABASE_URL", "SUBTENSOR"))}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert "MODULES " in done.stderr, done.stderr[-3000:]
    return set(json.loads(done.stderr.rsplit("MODULES ", 1)[1]))


def test_help_imports_no_role_module(tmp_path: Path) -> None:
    loaded = _modules_after(["--help"], tmp_path)
    assert not [m for m in HEAVY if m in loaded]
    assert not [m for m in loaded if m.startswith(tuple(entry.module for entry in cli.LAZY_GROUPS.values()))]


def test_env_imports_neither_the_chain_nor_any_role(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("NETUID=24\n")
    loaded = _modules_after(["env"], tmp_path)
    assert not [m for m in HEAVY if m in loaded and m not in ("quasar.config", "pydantic_settings")]


def test_a_group_is_imported_when_it_runs(tmp_path: Path) -> None:
    loaded = _modules_after(["chain", "--help"], tmp_path)
    assert "quasar.chain.cli" in loaded and "quasar.miner.cli" not in loaded


def test_help_lists_the_groups_in_their_order_with_their_help() -> None:
    result = CliRunner().invoke(cli.app, ["--help"], env={"COLUMNS": "300", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    names = ["inference", "api", "bench", "evaluate", "env", "db", "wallet", "round", "kernel"]
    names += list(cli.LAZY_GROUPS)
    assert list(cli.LAZY_GROUPS) == ["chain", "local", "verify", "model", "miner", "validator"]
    positions = [result.output.index(f"│ {name} ") for name in names]
    assert positions == sorted(positions), names
    for entry in cli.LAZY_GROUPS.values():
        assert entry.help in result.output


def test_each_lazy_group_is_the_real_group_with_the_listed_help() -> None:
    for name, entry in cli.LAZY_GROUPS.items():
        group = cli.load_group(name)
        assert group.name == name and group.help == entry.help
        assert group.list_commands(None) or group.callback is not None, name
        own = getattr(importlib.import_module(entry.module), entry.attribute).info.help
        # verify and model keep their module's own help; the others are described here on purpose.
        if name in ("verify", "model"):
            assert own == entry.help, (name, own)
        sub = CliRunner().invoke(cli.app, [name, "--help"], env={"COLUMNS": "300", "NO_COLOR": "1"})
        assert sub.exit_code == 0 and entry.help in sub.output, (name, sub.output)


def test_an_invalid_setting_is_still_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUASAR_", "DATABASE_URL", "SUBTENSOR"))}
    env["NETUID"] = "not-a-number"
    done = subprocess.run(
        [sys.executable, "-m", "quasar.cli", "chain", "status"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "NETUID" in done.stderr
