"""The ``trustser`` command: one Typer app per area, joined with ``add_typer``."""

from __future__ import annotations

import typer

from trustser._version import __version__
from trustser.cli import (
    attack,
    backbones,
    compare,
    data,
    extract,
    heads,
    mitigate,
    pipeline,
    privacy,
    profile,
    results,
    robustness,
    store,
    synth,
    variants,
)

__all__ = ["app", "main"]

app = typer.Typer(
    name="trustser",
    help="Trust profiles for speech-emotion recognition on frozen speech encoders.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
data.app.add_typer(synth.app)  # `trustser data synth`
app.add_typer(data.app, name="data", help="Prepare corpus manifests and the synthetic demo corpus.")
app.add_typer(backbones.app, name="backbones", help="List and inspect frozen encoders.")
app.add_typer(store.app, name="store", help="Inspect and verify embedding stores.")
app.add_typer(heads.app, name="heads", help="Train heads and probes from the embedding cache.")
app.add_typer(mitigate.app, name="mitigate", help="Privacy, fairness and safety mitigations.")
app.add_typer(
    privacy.app, name="privacy", help="Privacy attacks: speaker verification on unseen speakers."
)
app.add_typer(
    results.app, name="results", help="Render a document's result tables from their artefacts."
)
# Single commands at the top level: extract, attack, cost, profile, recommend, compare, run, demo,
# variants, robustness.
for area in (extract, attack, profile, compare, pipeline, variants, robustness):
    app.add_typer(area.app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"trustser {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Trust profiles for speech-emotion recognition on frozen speech encoders."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
