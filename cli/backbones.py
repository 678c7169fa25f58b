"""`trustser backbones list` and `trustser backbones info NAME`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from trustser.cli._common import console, user_errors

__all__ = ["app"]

app = typer.Typer(help="List and inspect frozen encoders.", no_args_is_help=True)


def _millions(count: int | None) -> str:
    return "—" if count is None else f"{count / 1e6:.2f} M"


@app.command("list")
def list_command(
    tiny: Annotated[
        bool, typer.Option("--tiny", help="Also list the tiny:<family> test models.")
    ] = False,
) -> None:
    """Registry names: source, layers × dim, frame rate, parameters."""
    from trustser.backbones import list_backbones

    with user_errors():
        rows = list_backbones(include_tiny=tiny)
    table = Table(title="Backbones (parameters computed from each architecture config)")
    for column in ("name", "family", "source", "L × D", "frame rate", "parameters"):
        table.add_column(column, overflow="fold", no_wrap=column == "name")
    for row in rows:
        table.add_row(
            row["name"],
            row["family"],
            row["source"],
            f"{row['num_layers']} × {row['dim']}",
            f"{row['frame_rate']:g} Hz",
            _millions(row["parameters"]),
        )
    console.print(table)
    console.print(
        "Details: trustser backbones info NAME. Other encoders by spec: hf:<model id or dir>, "
        "ct2:<faster-whisper dir>, s3prl:<apc|tera>:<checkpoint>."
    )


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return "—" if value is None else str(value)


@app.command("info")
def info_command(
    name: Annotated[
        str, typer.Argument(help="Registry name or spec (hf:..., ct2:..., s3prl:..., tiny:...).")
    ],
    load: Annotated[
        bool, typer.Option("--load/--no-load", help="Load the weights and show their checksum.")
    ] = False,
    device: Annotated[
        str, typer.Option("--device", help="auto, cpu, or cuda (with --load).")
    ] = "cpu",
    window: Annotated[
        str, typer.Option("--window", help="Whisper window: trimmed or 30s (with --load).")
    ] = "trimmed",
) -> None:
    """Everything known about one backbone; with --load, its provenance and weight checksum."""
    from trustser.backbones import describe_backbone

    with user_errors():
        info = describe_backbone(name, load=load, device=device, window=window)
    table = Table(title=f"backbone {info['name']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in info.items():
        shown = (
            _millions(value) + f" ({info['parameters_basis']})"
            if key == "parameters" and value
            else _value(value)
        )
        if key != "parameters_basis":
            table.add_row(key, shown)
    console.print(table)
