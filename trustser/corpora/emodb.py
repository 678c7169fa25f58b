"""EmoDB (Berlin Database of Emotional Speech), as distributed: ``wav/03a01Fa.wav``.

File name: speaker (2 digits), text code (3), emotion letter (index 5), version letter.
Burkhardt et al., "A database of German emotional speech", Interspeech 2005.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from trustser.corpora._common import finish, require_dir, reuse_existing, with_audio_headers
from trustser.folds import gender_balanced_speaker_groups, rotating_folds
from trustser.manifest import Manifest, Utterance, speakers_by_gender

__all__ = ["NAME", "LABELS", "GENDERS", "NUM_FOLDS", "FOLD_SCHEME", "prepare"]

NAME = "emodb"
# W anger, L boredom, E disgust, A fear, F happiness, T sadness, N neutral.
LABELS: dict[str, str] = {"N": "neutral", "F": "happy", "T": "sad", "W": "angry"}
GENDERS: dict[str, str] = {
    **{s: "male" for s in ("03", "10", "11", "12", "15")},
    **{s: "female" for s in ("08", "09", "13", "14", "16")},
}
NUM_FOLDS = 5
FOLD_SCHEME = "5 speaker folds, each testing one male and one female speaker; dev = next fold's pair"
_NAME_PATTERN = re.compile(r"^(?P<speaker>\d\d)(?P<text>[a-z]\d\d)(?P<emotion>[A-Z])(?P<version>[a-z])$")


def prepare(root: str | os.PathLike, out: str | os.PathLike | None = None) -> Manifest:
    """Manifest of EmoDB's four-class subset (339 clips, 10 speakers) with 5 speaker folds."""
    existing = reuse_existing(out, NAME)
    if existing is not None:
        return existing
    root = Path(root)
    wav_dir = require_dir(root, "wav", "EmoDB", "download it from http://emodb.bilderbar.info/")
    utterances = []
    for path in sorted(wav_dir.glob("*.wav")):
        match = _NAME_PATTERN.match(path.stem)
        if match is None or match["emotion"] not in LABELS:
            continue  # other emotions (boredom, disgust, fear) and stray files are not used
        speaker = match["speaker"]
        if speaker not in GENDERS:
            continue
        utterances.append(
            Utterance(
                id=f"emodb_{path.stem}",
                path=str(path.resolve()),
                speaker=f"emodb_{speaker}",
                gender=GENDERS[speaker],
                emotion=LABELS[match["emotion"]],
                duration=1.0,  # replaced from the header below
                text=match["text"],
            )
        )
    utterances = with_audio_headers(utterances, corpus=NAME)
    groups = gender_balanced_speaker_groups(speakers_by_gender(utterances), NUM_FOLDS)
    return finish(
        corpus=NAME,
        utterances=utterances,
        folds=rotating_folds(groups, by="speaker"),
        fold_scheme=FOLD_SCHEME,
        version="emodb-1.0 (535 clips, 4-class subset)",
        out=out,
    )
