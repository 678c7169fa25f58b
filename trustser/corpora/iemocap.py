"""IEMOCAP, as distributed (``IEMOCAP_full_release``).

Layout read::

    Session{1..5}/dialog/EmoEvaluation/Ses01F_impro01.txt    consensus labels per turn
    Session{1..5}/dialog/transcriptions/Ses01F_impro01.txt   (optional) the words
    Session{1..5}/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav

A label line is ``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]``
(start - end, turn, label, [valence, activation, dominance]). The speaker of a turn is the
session plus the gender letter that opens the turn id's last part (``F000`` → female): the
``Ses01F`` prefix names the dialog, not who speaks. Four classes as in the paper: neutral,
happy (happy + excited), sad, angry; frustration, surprise and the rest are left out.
Busso et al., "IEMOCAP: interactive emotional dyadic motion capture database", LRE 2008.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from trustser.corpora import CORPUS_API
from trustser.corpora._common import (
    PLACEHOLDER_DURATION,
    CorpusLayoutError,
    make_prepare,
    require_dir,
)
from trustser.folds import session_folds
from trustser.manifest import Fold, Utterance

__all__ = [*CORPUS_API, "FOLDS", "SESSIONS", "EvaluationRow", "parse_evaluation"]

NAME = "iemocap"
LABELS: dict[str, str] = {
    "neu": "neutral",
    "hap": "happy",
    "exc": "happy",
    "sad": "sad",
    "ang": "angry",
}
SESSIONS: tuple[str, ...] = tuple(f"Session{i}" for i in range(1, 6))
NUM_FOLDS = 5
FOLDS: tuple[Fold, ...] = session_folds(SESSIONS)  # fixed by the corpus: one per session
FOLD_SCHEME = "5 session folds: test = one session, dev = the next session, train = the other three"
VERSION = "IEMOCAP_full_release (4 classes, excited merged into happy)"
SOURCE = "https://sail.usc.edu/iemocap/ (licence request form)"

_LABEL_LINE = re.compile(
    r"^\[(?P<start>[\d.]+)\s*-\s*(?P<end>[\d.]+)\]\s+(?P<turn>Ses\S+)\s+(?P<label>\w+)\s+"
    r"\[(?P<vad>[^\]]*)\]"
)
_TURN = re.compile(r"^Ses(?P<session>\d\d)[FM]_.+_(?P<gender>[FM])\w*$")
_TRANSCRIPT_LINE = re.compile(r"^(?P<turn>Ses\S+)\s+\[[^\]]*\]:\s?(?P<text>.*)$")


class EvaluationRow(NamedTuple):
    """One consensus line of an ``EmoEvaluation`` file."""

    turn: str
    label: str
    start: float
    end: float
    vad: tuple[float, ...]  # valence, activation, dominance


def parse_evaluation(path: Path) -> list[EvaluationRow]:
    """The per-turn consensus lines of one ``EmoEvaluation/*.txt`` file (all labels)."""
    rows = []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            match = _LABEL_LINE.match(line.strip())
            if match is None:
                continue  # headers, per-evaluator lines (C-E1:, A-E2: ...), blank lines
            rows.append(
                EvaluationRow(
                    turn=match["turn"],
                    label=match["label"],
                    start=float(match["start"]),
                    end=float(match["end"]),
                    vad=tuple(float(x) for x in match["vad"].split(",") if x.strip()),
                )
            )
    return rows


def _transcripts(session_dir: Path, dialog: str) -> dict[str, str]:
    path = session_dir / "dialog" / "transcriptions" / f"{dialog}.txt"
    if not path.is_file():
        return {}
    texts = {}
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            match = _TRANSCRIPT_LINE.match(line.strip())
            if match is not None:
                texts[match["turn"]] = match["text"].strip()
    return texts


def _scan(root: Path) -> list[Utterance]:
    """Candidate turns of the 4 classes from every session's consensus labels."""
    missing = [s for s in SESSIONS if not (root / s).is_dir()]
    if missing:
        raise CorpusLayoutError(
            f"IEMOCAP: {missing} not found under {str(root)!r}; point ROOT at IEMOCAP_full_release "
            f"(the folder holding Session1 ... Session5). Get it from {SOURCE}."
        )
    candidates = []
    for session in SESSIONS:
        session_dir = root / session
        label_dir = require_dir(
            session_dir, "dialog/EmoEvaluation", "IEMOCAP", "the corpus looks incomplete"
        )
        for label_file in sorted(label_dir.glob("*.txt")):
            if label_file.name.startswith("._"):
                continue  # macOS resource forks shipped in some copies
            dialog = label_file.stem
            texts = _transcripts(session_dir, dialog)
            for row in parse_evaluation(label_file):
                label, turn = row.label, row.turn
                if label not in LABELS:
                    continue
                match = _TURN.match(turn)
                if match is None:
                    raise CorpusLayoutError(
                        f"IEMOCAP: turn id {turn!r} in {str(label_file)!r} does not look like "
                        "'Ses01F_impro01_F000'."
                    )
                letter = match["gender"]
                wav = session_dir / "sentences" / "wav" / dialog / f"{turn}.wav"
                custom: dict[str, object] = {"label": label, "dialog": dialog}
                if len(row.vad) == 3:
                    custom.update(valence=row.vad[0], activation=row.vad[1], dominance=row.vad[2])
                candidates.append(
                    Utterance(
                        id=f"{NAME}_{turn}",
                        path=str(wav.resolve()),
                        speaker=f"{NAME}_Ses{match['session']}{letter}",
                        gender="female" if letter == "F" else "male",
                        emotion=LABELS[label],
                        duration=PLACEHOLDER_DURATION,
                        session=session,
                        text=texts.get(turn),
                        custom=custom,
                    )
                )
    return candidates


prepare = make_prepare(
    _scan,
    FOLDS,
    doc="Manifest of IEMOCAP's 4-class set (5,531 turns in the full release), 5 session folds.",
)
