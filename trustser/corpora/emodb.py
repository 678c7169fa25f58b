"""EmoDB (Berlin Database of Emotional Speech), as distributed: ``wav/03a01Fa.wav``.

File name: speaker (2 digits), text code (3), emotion letter (index 5), version letter.
Ten speakers, five per gender (see :data:`GENDERS`, from the corpus documentation).
Burkhardt et al., "A database of German emotional speech", Interspeech 2005.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

from trustser.corpora import CORPUS_API
from trustser.corpora._common import PLACEHOLDER_DURATION, make_prepare, require_dir
from trustser.folds import gender_balanced_speaker_folds
from trustser.manifest import Utterance

__all__ = [*CORPUS_API, "GENDERS"]

NAME = "emodb"
# W anger, L boredom, E disgust, A fear, F happiness, T sadness, N neutral.
LABELS: dict[str, str] = {"N": "neutral", "F": "happy", "T": "sad", "W": "angry"}
GENDERS: dict[str, str] = {
    **{s: "male" for s in ("03", "10", "11", "12", "15")},
    **{s: "female" for s in ("08", "09", "13", "14", "16")},
}
NUM_FOLDS = 5
FOLD_SCHEME = (
    "5 speaker folds, each testing one male and one female speaker; dev = next fold's pair"
)
VERSION = "EmoDB (535 clips; 4-class subset)"
SOURCE = "http://emodb.bilderbar.info/ (free for research; cite Burkhardt et al. 2005)"
_NAME_PATTERN = re.compile(
    r"^(?P<speaker>\d\d)(?P<text>[a-z]\d\d)(?P<emotion>[A-Z])(?P<version>[a-z])$"
)


def _scan(root: Path) -> list[Utterance]:
    """Candidate clips of the 4 classes by the ten documented speakers."""
    wav_dir = require_dir(root, "wav", "EmoDB", f"download it from {SOURCE}")
    candidates = []
    for path in sorted(wav_dir.glob("*.wav")):
        match = _NAME_PATTERN.match(path.stem)
        if match is None or match["emotion"] not in LABELS:
            continue  # other emotions (boredom, disgust, fear) and stray files are not used
        speaker = match["speaker"]
        if speaker not in GENDERS:
            continue  # not one of the ten documented speakers
        candidates.append(
            Utterance(
                id=f"{NAME}_{path.stem}",
                path=str(path.resolve()),
                speaker=f"{NAME}_{speaker}",
                gender=GENDERS[speaker],
                emotion=LABELS[match["emotion"]],
                duration=PLACEHOLDER_DURATION,
                text=match["text"],
                custom={"version": match["version"]},
            )
        )
    return candidates


prepare = make_prepare(
    _scan,
    partial(gender_balanced_speaker_folds, num_folds=NUM_FOLDS),
    doc="Manifest of EmoDB's four-class subset (339 clips, 10 speakers) with 5 speaker folds.",
)
