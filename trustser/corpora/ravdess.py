"""RAVDESS speech audio, as distributed (``Audio_Speech_Actors_01-24.zip`` on Zenodo).

Layout read: ``Actor_01/03-01-05-01-02-01-01.wav`` directly under the root or under the zip's
``Audio_Speech_Actors_01-24/`` folder. The seven fields are modality (03 audio-only),
vocal channel (01 speech), emotion, intensity (01 normal, 02 strong), statement (01, 02),
repetition and actor (01-24; odd = male, even = female). Emotions kept: 01 neutral, 03 happy,
04 sad, 05 angry; 02 calm is dropped, not merged into neutral, and so are fearful, disgust and
surprised. Song and video files are ignored.
Livingstone and Russo, "The Ryerson Audio-Visual Database of Emotional Speech and Song
(RAVDESS)", PLoS ONE 2018.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

from trustser.corpora import CORPUS_API
from trustser.corpora._common import (
    PLACEHOLDER_DURATION,
    CorpusLayoutError,
    make_prepare,
)
from trustser.folds import gender_balanced_speaker_folds
from trustser.manifest import Utterance

__all__ = [*CORPUS_API, "STATEMENTS", "gender_of_actor"]

NAME = "ravdess"
LABELS: dict[str, str] = {"01": "neutral", "03": "happy", "04": "sad", "05": "angry"}
STATEMENTS: dict[str, str] = {
    "01": "Kids are talking by the door",
    "02": "Dogs are sitting by the door",
}
NUM_FOLDS = 6
FOLD_SCHEME = (
    "6 speaker folds of 4 actors (2 female, 2 male): test = one group, dev = the next group, "
    "train = the other four"
)
VERSION = "RAVDESS speech audio (Audio_Speech_Actors_01-24; 4 classes, calm dropped)"
SOURCE = "https://zenodo.org/record/1188976 (Audio_Speech_Actors_01-24.zip; CC BY-NC-SA 4.0)"
_NAME_PATTERN = re.compile(
    r"^(?P<modality>\d\d)-(?P<channel>\d\d)-(?P<emotion>\d\d)-(?P<intensity>\d\d)-"
    r"(?P<statement>\d\d)-(?P<repetition>\d\d)-(?P<actor>\d\d)$"
)
_INTENSITY = {"01": "normal", "02": "strong"}


def gender_of_actor(actor: int) -> str:
    """RAVDESS numbers male actors odd and female actors even."""
    return "male" if actor % 2 == 1 else "female"


def _actor_dirs(root: Path) -> list[Path]:
    for base in (root, root / "Audio_Speech_Actors_01-24"):
        dirs = sorted(p for p in base.glob("Actor_*") if p.is_dir())
        if dirs:
            return dirs
    raise CorpusLayoutError(
        f"RAVDESS: no Actor_XX folders under {str(root)!r}; extract Audio_Speech_Actors_01-24.zip "
        f"from {SOURCE} and point ROOT at the folder holding Actor_01 ... Actor_24."
    )


def _scan(root: Path) -> list[Utterance]:
    """Candidate speech clips of the 4 classes, each in its own actor's folder."""
    candidates = []
    mislabelled = []
    for actor_dir in _actor_dirs(root):
        for path in sorted(actor_dir.glob("*.wav")):
            match = _NAME_PATTERN.match(path.stem)
            if match is None or match["modality"] != "03" or match["channel"] != "01":
                continue  # song, video or stray files
            if match["emotion"] not in LABELS:
                continue
            if actor_dir.name != f"Actor_{match['actor']}":
                mislabelled.append(f"{path.name} in {actor_dir.name}")
                continue
            actor = int(match["actor"])
            candidates.append(
                Utterance(
                    id=f"{NAME}_{path.stem}",
                    path=str(path.resolve()),
                    speaker=f"{NAME}_{match['actor']}",
                    gender=gender_of_actor(actor),
                    emotion=LABELS[match["emotion"]],
                    duration=PLACEHOLDER_DURATION,
                    text=STATEMENTS.get(match["statement"]),
                    custom={
                        "intensity": _INTENSITY.get(match["intensity"], match["intensity"]),
                        "repetition": int(match["repetition"]),
                    },
                )
            )
    if mislabelled:
        raise CorpusLayoutError(
            f"RAVDESS: {len(mislabelled)} file(s) sit in another actor's folder: {mislabelled[:5]}."
        )
    return candidates


prepare = make_prepare(
    _scan,
    partial(gender_balanced_speaker_folds, num_folds=NUM_FOLDS),
    doc="Manifest of RAVDESS speech in four classes (672 clips, 24 actors), 6 speaker folds.",
)
