"""The progress bars fit an 80-column terminal: the bar shrinks, counts and names stay whole."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from trustser.cli._progress import AttackBar, ExtractBar


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=80, force_terminal=True, color_system=None), out


def test_extraction_bar_keeps_its_counts_at_80_columns():
    console, out = _console()
    event = SimpleNamespace(
        label="whisper_tiny_en_offline",
        done=339,
        total=339,
        clips_per_second=30.3,
        audio_seconds_per_second=84.6,
    )
    with ExtractBar(console=console) as bar:
        bar(event)
    text = out.getvalue()
    assert "whisper_tiny_en_offline" in text and "339/339 clips" in text
    assert "30.3 clips/s" in text and "…" not in text


def test_attack_bar_names_its_unit_at_80_columns():
    console, out = _console()
    event = SimpleNamespace(description="fold5: fgsm @ 45 dB", done=678, total=678)
    with AttackBar(console=console) as bar:
        bar.update(event)
    text = out.getvalue()
    assert "fold5: fgsm @ 45 dB" in text and "678/678 clip passes" in text and "…" not in text
