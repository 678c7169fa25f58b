"""MSP-Improv, as distributed by the MSP lab (UT Dallas).

Layout read (the archive's own structure; an ``Audio/`` folder above the sessions is accepted
too, as some copies have one)::

    Evaluation.txt                                   consensus + per-rater labels
    session{1..6}/S01A/P/MSP-IMPROV-S01A-F01-P-FM01.wav

File name ``MSP-IMPROV-S01A-F01-P-FM01``: sentence ``S01`` with target emotion ``A``; speaker
``F01`` (gender letter + session number: each session pairs one female and one male actor);
recording condition ``P`` (one of P, R, S, T); turn ``FM01``. ``Evaluation.txt`` names each
turn by its video, ``UTD-IMPROV-S01A-F01-P-FM01.avi; A; A:2.8; V:2.2; D:3.0 ; N:3.4;``: the
second field is the consensus label (A angry, H happy, S sad, N neutral, O other, X no
agreement); the indented rater lines that follow are ignored. Some releases spell the file
``Evalution.txt``: both names are read. The paper's 4-class set holds 7,798 turns.
Busso et al., "MSP-IMPROV: an acted corpus of dyadic interactions...", IEEE TAC 2017.
"""

from __future__ import annotations

import re
from pathlib import Path

from trustser.corpora import CORPUS_API
from trustser.corpora._common import (
    PLACEHOLDER_DURATION,
    CorpusLayoutError,
    find_file,
    make_prepare,
)
from trustser.folds import session_folds
from trustser.manifest import Fold, Utterance

__all__ = [*CORPUS_API, "FOLDS", "SESSIONS", "parse_evaluation"]

NAME = "msp_improv"
LABELS: dict[str, str] = {"N": "neutral", "H": "happy", "S": "sad", "A": "angry"}
SESSIONS: tuple[str, ...] = tuple(f"session{i}" for i in range(1, 7))
NUM_FOLDS = 6
FOLDS: tuple[Fold, ...] = session_folds(SESSIONS)  # fixed by the corpus: one per session
FOLD_SCHEME = "6 session folds: test = one session, dev = the next session, train = the other four"
VERSION = "MSP-IMPROV (Evaluation.txt consensus labels, 4 classes)"
SOURCE = "https://ecs.utdallas.edu/research/researchlabs/msp-lab/MSP-Improv.html (academic licence)"
LABEL_FILES: tuple[str, ...] = ("Evaluation.txt", "Evalution.txt")

_CONSENSUS_LINE = re.compile(
    r"^UTD-IMPROV-(?P<turn>[A-Z0-9-]+)\.avi\s*;\s*(?P<label>[A-Z])\s*;(?P<rest>.*)$"
)
_TURN = re.compile(
    r"^(?P<sentence>S\d\d(?P<target>[AHSN]))-(?P<gender>[FM])(?P<session>\d\d)-(?P<condition>[A-Z])-(?P<turn>\w+)$"
)
_DIMENSION = re.compile(r"(?P<key>[AVDN])\s*:\s*(?P<value>[-\d.]+|NaN)")
_DIMENSION_NAMES = {"A": "activation", "V": "valence", "D": "dominance", "N": "naturalness"}


def parse_evaluation(path: Path) -> dict[str, tuple[str, dict[str, float]]]:
    """Turn id (``S01A-F01-P-FM01``) → (consensus letter, dimensional scores) from the file."""
    out: dict[str, tuple[str, dict[str, float]]] = {}
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            match = _CONSENSUS_LINE.match(line.strip())
            if match is None:
                continue  # rater lines and blank lines
            scores = {
                _DIMENSION_NAMES[d["key"]]: float(d["value"])
                for d in _DIMENSION.finditer(match["rest"])
                if d["value"] != "NaN"
            }
            out[match["turn"]] = (match["label"], scores)
    return out


def _audio_base(root: Path) -> Path:
    for base in (root, root / "Audio"):
        if all((base / s).is_dir() for s in SESSIONS):
            return base
    present = [s for s in SESSIONS if (root / s).is_dir() or (root / "Audio" / s).is_dir()]
    raise CorpusLayoutError(
        f"MSP-Improv: expected the folders {list(SESSIONS)} under {str(root)!r} (or its Audio/ "
        f"folder); found {present or 'none'}. Point ROOT at the extracted corpus ({SOURCE})."
    )


def _scan(root: Path) -> list[Utterance]:
    """Candidate turns of the 4 classes from the consensus labels, in all four conditions."""
    labels = parse_evaluation(find_file(root, LABEL_FILES, "MSP-Improv", f"get it from {SOURCE}"))
    base = _audio_base(root)
    candidates = []
    malformed = []
    for turn_id, (letter, scores) in sorted(labels.items()):
        if letter not in LABELS:
            continue  # other (O) and no agreement (X)
        match = _TURN.match(turn_id)
        if match is None:
            malformed.append(turn_id)
            continue
        session = f"session{int(match['session'])}"
        stem = f"MSP-IMPROV-{turn_id}"
        wav = base / session / match["sentence"] / match["condition"] / f"{stem}.wav"
        candidates.append(
            Utterance(
                id=f"{NAME}_{stem}",
                path=str(wav.resolve()),
                speaker=f"{NAME}_{match['gender']}{match['session']}",
                gender="female" if match["gender"] == "F" else "male",
                emotion=LABELS[letter],
                duration=PLACEHOLDER_DURATION,
                session=session,
                custom={
                    "sentence": match["sentence"],
                    "target_emotion": LABELS[match["target"]],
                    "condition": match["condition"],
                    **scores,
                },
            )
        )
    if malformed:
        raise CorpusLayoutError(
            f"MSP-Improv: {len(malformed)} turn id(s) in the label file do not look like "
            f"'S01A-F01-P-FM01': {malformed[:5]}."
        )
    return candidates


prepare = make_prepare(
    _scan,
    FOLDS,
    doc="Manifest of MSP-Improv's 4-class set (all four recording conditions), 6 session folds.",
)
