"""What every CLI command shares: one console, the shared flags, bad input shown as one line."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from trustser._validation import TrustSERError
from trustser.workspace import Workspace, load_workspace

__all__ = [
    "BACKBONE",
    "MANIFEST",
    "OUT",
    "PRIVACY_SCORE",
    "RUNS",
    "SHARED_FLAGS",
    "STORE",
    "USER_ERRORS",
    "PrivacyScoreOption",
    "StoreOption",
    "console",
    "err_console",
    "user_errors",
    "workspace",
]

console = Console(stderr=False)
err_console = Console(stderr=True)

# The same short flag for the same thing in every command (tests/test_cli_flags.py checks it).
STORE = ("--store", "-s")
BACKBONE = ("--backbone", "-b")
MANIFEST = ("--manifest", "-m")
OUT = ("--out", "-o")
RUNS = ("--runs", "-r")
SHARED_FLAGS = dict((STORE, BACKBONE, MANIFEST, OUT, RUNS))

# The store a cache-reading command (heads, mitigations) works on.
StoreOption = Annotated[
    Path | None,
    typer.Option(
        *STORE,
        help="Embedding store written by `trustser extract`.",
        file_okay=False,
        show_default="cache.zarr, or trustser.toml's",
    ),
]

# What the profile's privacy axis scores (the axis option privacy_score, docs/metrics.md).
PRIVACY_SCORE = "gender"
PRIVACY_SCORE_HELP = (
    "What the privacy axis scores: gender (gender inference, the paper's definition) or "
    "strongest (the stronger of gender inference and speaker-verification linkability; "
    "--scale absolute or relative)."
)
PrivacyScoreOption = Annotated[str, typer.Option("--privacy-score", help=PRIVACY_SCORE_HELP)]

# Errors caused by the user's input or environment: shown without a traceback, exit code 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    TrustSERError,
    FileNotFoundError,
    ValueError,
    KeyError,
)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a bad-input exception into ``error: <message>`` on stderr and exit status 2."""
    try:
        yield
    except USER_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        err_console.print(Text.assemble(("error: ", "bold red"), str(message)))
        raise typer.Exit(code=2) from None


def workspace() -> Workspace:
    """The current directory's workspace (``trustser.toml`` or the defaults), errors as one line."""
    with user_errors():
        return load_workspace()
