"""The `trustser` command line (`trustser.cli.main:app`); the library API is `trustser`."""

__all__: list[str] = []
