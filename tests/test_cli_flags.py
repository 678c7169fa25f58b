"""The same short flag means the same thing in every command."""

from __future__ import annotations

import typer.main

from trustser.cli._common import SHARED_FLAGS
from trustser.cli.main import app


def _leaves(command, path=("trustser",)):
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield " ".join(path), command
        return
    for name, sub in subcommands.items():
        yield from _leaves(sub, (*path, name))


def test_shared_things_have_the_same_short_flags_everywhere():
    shorts = {short: long for long, short in SHARED_FLAGS.items()}
    problems, seen = [], set()
    for path, command in _leaves(typer.main.get_command(app)):
        for param in command.params:
            opts = set(getattr(param, "opts", ())) | set(getattr(param, "secondary_opts", ()))
            for long, short in SHARED_FLAGS.items():
                if long in opts:
                    seen.add(long)
                    if short not in opts:
                        problems.append(f"{path}: {long} lacks {short}")
            for short, long in shorts.items():
                if short in opts and long not in opts:
                    problems.append(f"{path}: {short} is not {long} here ({sorted(opts)})")
    assert not problems, "\n".join(problems)
    assert seen == set(SHARED_FLAGS)  # every shared flag is used somewhere


def test_help_texts_keep_their_bracketed_words():
    """Rich reads ``[word]`` in a help text as markup and drops it ("run the  stage"): a TOML
    section named in help must be written ``\\[word]``."""
    from rich.text import Text

    problems = []
    for path, command in _leaves(typer.main.get_command(app)):
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        for text in texts:
            shown = Text.from_markup(text).plain
            lost = [w for w in ("[", "]") if text.count(w) != shown.count(w)]
            if lost and "[/" not in text:
                problems.append(f"{path}: {text[:70]!r} is shown as {shown[:70]!r}")
    assert not problems, "\n".join(problems)
