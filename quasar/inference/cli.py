"""`quasar inference [--host H] [--port P]`: serve the miner's inference server (mounted by `quasar.cli`).

`serve` is the server's one entry point; `python miner/inference_server.py` runs it too.
"""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default HOST).")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default MINER_INFERENCE_PORT, 8001).")
    ] = None,
) -> None:
    """Serve MODEL_NAME for logit verification (POST /inference, GET /health, GET /model_info)."""
    import uvicorn

    from quasar.config import get_settings
    from quasar.inference.model import ModelLoadError
    from quasar.inference.server import create_app, load_served_model

    try:
        settings = get_settings()
    except Exception as exc:  # pydantic names the bad variable
        typer.echo(f"error: invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None
    from quasar.logging_setup import configure_logging

    configure_logging(settings, "inference")
    try:
        # Load before listening: a bad MODEL_NAME is one clear message, not a failed startup trace.
        app = create_app(settings, load_served_model(settings))
    except (ModelLoadError, RuntimeError) as exc:  # no miner hotkey on a real chain, chain adapter trouble
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    # JSON logs: uvicorn's own lines (start-up, access) go through the JSON handler too.
    extra = {"log_config": None} if settings.log_format == "json" else {}
    uvicorn.run(app, host=host or settings.host, port=port or settings.miner_inference_port, **extra)
