"""`quasar model make-tiny PATH [--seed N]` (mounted by `quasar.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Models the project builds itself.", no_args_is_help=True)


@app.command("make-tiny")
def make_tiny(
    path: Annotated[Path, typer.Argument(help="Directory to write the model and tokenizer to.")],
    seed: Annotated[int, typer.Option(help="Weights seed; the same seed gives the same weights.")] = 0,
) -> None:
    """Build the tiny random-init Qwen2 model (tests, CI, the local subnet) and print its weights hash."""
    from quasar.inference.model import load_model
    from quasar.models.tiny import make_tiny_model

    out = make_tiny_model(path, seed)
    loaded = load_model(str(out), "cpu", "float32", with_tokenizer=False)
    typer.echo(f"tiny model (seed {seed}) at {out}: vocab {loaded.vocab_size}", err=True)
    typer.echo(loaded.weights_sha256)
