"""CREMA-D, as distributed (the GitHub repository, audio fetched with git-lfs).

Layout read::

    AudioWAV/1001_DFA_ANG_XX.wav     actor _ sentence _ emotion _ intensity (LO/MD/HI/XX)
    VideoDemographics.csv            ActorID,Age,Sex,Race,Ethnicity (Sex: Male/Female)

Labels come from the file name (the emotion the actor was asked to portray): ANG, HAP, NEU and
SAD are kept; DIS and FEA are left out. 91 actors (1001-1091) split into 5 consecutive blocks
of about 20 % each. Cao et al., "CREMA-D: Crowd-sourced emotional multimodal actors dataset",
IEEE Trans. Affective Computing 2014.
"""

from __future__ import annotations

import csv
import re
from functools import partial
from pathlib import Path

from trustser.corpora import CORPUS_API
from trustser.corpora._common import (
    PLACEHOLDER_DURATION,
    CorpusLayoutError,
    find_file,
    make_prepare,
    require_dir,
)
from trustser.folds import block_speaker_folds
from trustser.manifest import Utterance

__all__ = [*CORPUS_API, "KNOWN_BAD", "SENTENCES", "read_demographics"]

NAME = "crema_d"
LABELS: dict[str, str] = {"NEU": "neutral", "HAP": "happy", "SAD": "sad", "ANG": "angry"}
SENTENCES: dict[str, str] = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
# An empty recording in the official release (the reference implementation skips it too).
KNOWN_BAD: frozenset[str] = frozenset({"1076_MTI_SAD_XX"})
NUM_FOLDS = 5
FOLD_SCHEME = (
    "5 speaker folds: the sorted actors in 5 consecutive blocks (~20 % each); "
    "test = one block, dev = the next block, train = the other three"
)
VERSION = "CREMA-D (AudioWAV; labels from file names, 4 classes)"
SOURCE = "https://github.com/CheyneyComputerScience/CREMA-D (Open Database License; git lfs pull)"
_NAME_PATTERN = re.compile(
    r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})$"
)


def read_demographics(path: Path) -> dict[str, str]:
    """Actor id → ``"female"``/``"male"`` from ``VideoDemographics.csv``."""
    genders: dict[str, str] = {}
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = {f.strip() for f in (reader.fieldnames or [])}
        if not {"ActorID", "Sex"} <= fields:
            raise CorpusLayoutError(
                f"CREMA-D: {str(path)!r} has columns {sorted(fields)}; expected ActorID and Sex "
                "(ActorID,Age,Sex,Race,Ethnicity)."
            )
        for number, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            sex = row["Sex"].lower()
            if sex not in ("female", "male"):
                raise CorpusLayoutError(
                    f"CREMA-D: {str(path)!r} line {number}: Sex={row['Sex']!r} for actor "
                    f"{row['ActorID']!r}, expected 'Female' or 'Male'."
                )
            genders[row["ActorID"]] = sex
    return genders


def _scan(root: Path) -> list[Utterance]:
    """Candidate utterances of the 4 classes, with each actor's gender from the CSV."""
    wav_dir = require_dir(root, "AudioWAV", "CREMA-D", f"clone {SOURCE}")
    genders = read_demographics(
        find_file(root, ["VideoDemographics.csv"], "CREMA-D", f"it ships with {SOURCE}")
    )
    candidates = []
    unknown_actors: set[str] = set()
    for path in sorted(wav_dir.glob("*.wav")):
        match = _NAME_PATTERN.match(path.stem)
        if match is None or match["emotion"] not in LABELS or path.stem in KNOWN_BAD:
            continue  # disgust, fear, the known-bad file and stray files
        actor = match["actor"]
        if actor not in genders:
            unknown_actors.add(actor)
            continue
        candidates.append(
            Utterance(
                id=f"{NAME}_{path.stem}",
                path=str(path.resolve()),
                speaker=f"{NAME}_{actor}",
                gender=genders[actor],
                emotion=LABELS[match["emotion"]],
                duration=PLACEHOLDER_DURATION,
                text=SENTENCES.get(match["sentence"]),
                custom={"sentence": match["sentence"], "intensity": match["level"]},
            )
        )
    if unknown_actors:
        raise CorpusLayoutError(
            f"CREMA-D: actor(s) {sorted(unknown_actors)[:10]} have recordings but no row in "
            "VideoDemographics.csv, so their gender is unknown; restore the official CSV."
        )
    return candidates


prepare = make_prepare(
    _scan,
    partial(block_speaker_folds, num_folds=NUM_FOLDS),
    doc="Manifest of CREMA-D's 4-class subset with 5 speaker-block folds.",
)
