"""The miner's inference server under the names the Dockerfiles, scripts and docs use.

The server lives in `quasar.inference.server`, and `quasar inference` (`quasar.inference.cli.serve`)
is its one entry point. This module keeps the two older ways to start it:

* `uvicorn miner.inference_server:app`: ``app`` is built from the settings on first access, so
  importing this module (tests, tools) never reads settings or touches a chain;
* `python miner/inference_server.py [--host H] [--port P]`: ``main`` runs `quasar inference`; as in
  the original subnet, a PORT variable in this script's environment is the default port
  (`PORT=8003 python miner/inference_server.py`), else MINER_INFERENCE_PORT.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # `python miner/inference_server.py` from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if TYPE_CHECKING:
    from fastapi import FastAPI

_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    global _app
    if name == "app":
        if _app is None:
            from quasar.config import get_settings
            from quasar.inference.server import create_app

            _app = create_app(get_settings())
        return _app
    raise AttributeError(name)


def main(argv: list[str] | None = None) -> None:
    """`python miner/inference_server.py [--host H] [--port P]`: `quasar inference`, PORT as the default port."""
    import typer

    from quasar.inference.cli import serve

    command = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    command.command()(serve)
    port = os.environ.get("PORT")
    typer.main.get_command(command).main(
        args=argv, prog_name="miner/inference_server.py", default_map={"port": port} if port else None
    )


if __name__ == "__main__":
    main()
