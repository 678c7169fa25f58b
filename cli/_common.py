"""What every CLI command shares: one console, and bad input shown as one clear line."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.text import Text

from trustser._validation import TrustSERError

console = Console(stderr=False)
err_console = Console(stderr=True)

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
