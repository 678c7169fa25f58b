"""Every ``trustser …`` command and ``make`` target the docs write runs as written.

The rule (docs/architecture.md, "Documented commands run"): every line of a fenced code block in
README.md and docs/*.md, and every inline code span, is read as shell. A trailing ``\\`` joins the
next line, ``# …`` starts a comment, ``&&``, ``||``, ``;`` and ``|`` separate commands, and
leading ``VAR=value`` words are dropped. A ``<…>`` placeholder stands for one value and is left
out. In a synopsis, ``[…]`` marks an optional part: the brackets go and the part is checked too,
taking the first of alternatives written ``a|b`` or ``x | y``. Each ``trustser`` command is
parsed by the real CLI (click's ``make_context`` on the typer-generated command: nothing runs):
an unknown command, an unknown option, a bad value or a leftover argument fails. Paths need not
exist (they are the reader's files). A code-block line must be a complete command (its required
arguments given) unless an ellipsis (``...``/``…``) stands for some of them; an inline span may
name a command without them ("`trustser heads fit` trains …"). Each ``make`` target must be a
target of the Makefile.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
import typer.main
from typer._click import exceptions as click_errors

from trustser.cli.main import app

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*(```|~~~)")
PLACEHOLDER = re.compile(r"<[^<>\n]*>")
OPTIONAL = re.compile(r"\[([^\[\]\n]*)\]")
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
SEPARATORS = {"&&", "||", ";", "|", "&"}
ELLIPSIS = {"...", "…"}


@dataclass(frozen=True)
class Command:
    where: str  # file:line
    words: tuple[str, ...]
    complete: bool  # a code-block line (True) or an inline mention (False)

    def __str__(self) -> str:
        return f"{self.where}: {' '.join(self.words)}"


def _optional_parts(match: re.Match) -> str:
    """``[--scale paper|absolute]`` → ``--scale paper``; ``[--a x | --b y]`` → ``--a x``."""
    first = match.group(1).split(" | ")[0]
    return " " + re.sub(r"(?<=\w)(\|[\w.-]+)+", "", first) + " "


def _shell_words(line: str) -> list[tuple[list[str], bool]]:
    """``line`` as shell: its commands, each a list of words (placeholders and comments gone)
    and whether an ellipsis stood in it."""
    line = re.sub(r"(^|\s)#.*$", "", line)
    line = PLACEHOLDER.sub(" ", line)
    line = OPTIONAL.sub(_optional_parts, line)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: prose, not a command
        return []
    commands, current, elided = [], [], False
    for token in tokens:
        if token in SEPARATORS:
            commands.append((current, elided))
            current, elided = [], False
        elif token in ELLIPSIS:
            elided = True
        else:
            current.append(token)
    commands.append((current, elided))
    out = []
    for words, elided in commands:
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]
        if words:
            out.append((words, elided))
    return out


def _source_lines(path: Path):
    """``(line number, text, in a code block)`` of every line that may hold a command."""
    in_block, pending, start = False, "", 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(raw):
            in_block, pending = not in_block, ""
            continue
        if in_block:
            text = raw.strip()
            if text.startswith("$ "):
                text = text[2:]
            if not pending:
                start = number
            if text.endswith("\\"):
                pending += text[:-1] + " "
                continue
            yield start, pending + text, True
            pending = ""
        else:
            for span in INLINE.findall(raw):
                yield number, span, False


def documented(program: str) -> list[Command]:
    found = []
    for path in DOCS:
        for number, text, complete in _source_lines(path):
            for words, elided in _shell_words(text):
                if Path(words[0]).name == program:
                    where = f"{path.relative_to(REPO)}:{number}"
                    found.append(Command(where, tuple(words[1:]), complete and not elided))
    return found


def _relaxed_paths(command, monkeypatch) -> None:
    """Paths in docs are the reader's files: parse them without checking they exist."""
    for param in command.params:
        info = getattr(getattr(param, "type_descriptor", None), "parameter_info", None)
        if info is not None and getattr(info, "exists", False):
            monkeypatch.setattr(info, "exists", False)
    for sub in getattr(command, "commands", {}).values():
        _relaxed_paths(sub, monkeypatch)


def _check_extra(path: list[str], words: tuple[str, ...], extra: list[str]) -> None:
    """Leftover words are accepted only where a command reads them (``--snr 45 35``,
    ``mitigate privacy --lambda 0.1 0.3 1``)."""
    leaf = path[-1]
    if leaf == "attack" or path[-2:] in (["mitigate", "privacy"], ["mitigate", "smoothing"]):
        for word in extra:
            float(word)  # ValueError: not an SNR
        return
    if leaf in ("profile", "recommend") and any(w in ("--backbone", "-b") for w in words):
        return
    if leaf == "recommend" and "--scenario" in words:
        return
    raise click_errors.UsageError(f"unexpected argument(s) {extra}")


def parse(root, command: Command) -> list[str]:
    """Parse ``command`` with the real CLI; return its command path. Raises on any error."""
    if not command.words:  # the program's name alone
        return ["trustser"]
    ctx = root.make_context("trustser", list(command.words))
    current, path = root, ["trustser"]
    while hasattr(current, "commands"):
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            if command.complete:
                raise click_errors.UsageError(f"{' '.join(path)} needs a command")
            return path
        name, current, rest = current.resolve_command(ctx, rest)
        path.append(name)
        try:
            ctx = current.make_context(name, rest, parent=ctx)
        except (click_errors.MissingParameter, click_errors.NoArgsIsHelpError):
            if command.complete:
                raise
            return path
    if ctx.args:
        _check_extra(path, command.words, ctx.args)
    return path


@pytest.fixture
def cli(monkeypatch):
    root = typer.main.get_command(app)
    _relaxed_paths(root, monkeypatch)
    return root


def test_docs_hold_many_commands():
    commands = documented("trustser")
    assert len([c for c in commands if c.complete]) > 40
    assert any(c.words[:2] == ("heads", "fit") for c in commands)


def test_every_documented_trustser_command_parses(cli):
    failures = []
    for command in documented("trustser"):
        try:
            parse(cli, command)
        except typer.Exit as stop:  # --help, --version
            if stop.exit_code != 0:
                failures.append(f"{command}\n    exits {stop.exit_code}")
        except (click_errors.ClickException, ValueError) as error:
            message = error.format_message() if hasattr(error, "format_message") else str(error)
            failures.append(f"{command}\n    {message}")
    assert not failures, "documented commands the CLI rejects:\n" + "\n".join(failures)


def test_the_parser_rejects_what_a_user_would_hit(cli):
    def check(line: str, complete: bool = True) -> None:
        parse(cli, Command("test", tuple(shlex.split(line)), complete))

    check("attack -s cache.zarr -b x --snr 45 35 25")
    check("heads fit")
    check("heads fit", complete=False)
    with pytest.raises(click_errors.NoSuchOption):
        check("attack --sotre cache.zarr")
    with pytest.raises(click_errors.UsageError, match="No such command"):
        check("heads train")
    with pytest.raises(click_errors.MissingParameter):
        check("data prepare emodb")
    check("data prepare emodb", complete=False)  # an inline mention of the command
    with pytest.raises(click_errors.BadParameter):
        check("attack --batch-size many")
    with pytest.raises(ValueError):
        check("attack --snr 45 loud")
    with pytest.raises(click_errors.UsageError):
        check("profile whisper_tiny")


def _makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, flags=re.MULTILINE))


def test_every_documented_make_target_exists():
    targets = _makefile_targets()
    assert {"demo", "test"} <= targets
    missing = []
    for command in documented("make"):
        named = [w for w in command.words if not w.startswith("-") and "=" not in w]
        missing += [f"{command.where}: make {t}" for t in named if t not in targets]
    assert not missing, "make targets the Makefile does not have:\n" + "\n".join(missing)


def test_inline_commands_fit_on_one_line():
    """An inline span broken across lines would escape the checks above."""
    broken = []
    for path in DOCS:
        in_block = False
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if FENCE.match(line):
                in_block = not in_block
            elif not in_block and re.search(r"(?<!`)`(trustser|make) [^`]*$", line):
                broken.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not broken, "inline commands split over lines:\n" + "\n".join(broken)
