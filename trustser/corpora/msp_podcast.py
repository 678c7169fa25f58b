"""MSP-Podcast, as distributed by the MSP lab (UT Dallas).

Layout read::

    Labels/labels_consensus.csv     FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
    Audios/MSP-PODCAST_0001_0008.wav

``EmoClass`` letters N, H, S, A are kept (neutral, happy, sad, angry); the other classes
(surprise, fear, disgust, contempt, other, no agreement) are left out. The fold is the
corpus's own split, as in the paper: train = ``Train``, dev = ``Development``, test = ``Test1``
(one split, not five); clips of other sets (``Test2``, ...) are left out. Older releases spell
the label file ``labels_concensus.csv`` and the dev set ``Validation``: both are read (the
split is stored as ``Development``). Clips whose speaker is ``Unknown`` are kept with speaker
``unknown`` (exempt from the speaker checks); clips of unknown gender are left out, since every
fairness and privacy measure needs the gender.
Lotfian and Busso, "Building naturalistic emotionally balanced speech corpus by retrieving
emotional speech from existing podcast recordings", IEEE TAC 2019.
"""

from __future__ import annotations

import csv
from pathlib import Path

from trustser.corpora import CORPUS_API
from trustser.corpora._common import (
    PLACEHOLDER_DURATION,
    CorpusLayoutError,
    find_file,
    make_prepare,
    require_dir,
)
from trustser.manifest import UNKNOWN_SPEAKER, Fold, Utterance

__all__ = [*CORPUS_API, "FOLD", "FOLDS", "SPLITS"]

NAME = "msp_podcast"
LABELS: dict[str, str] = {"N": "neutral", "H": "happy", "S": "sad", "A": "angry"}
# Split_Set value → the split stored in the manifest.
SPLITS: dict[str, str] = {
    "Train": "Train",
    "Development": "Development",
    "Validation": "Development",
    "Test1": "Test1",
}
NUM_FOLDS = 1
FOLD = Fold(name="standard", by="split", train=("Train",), dev=("Development",), test=("Test1",))
FOLDS: tuple[Fold, ...] = (FOLD,)  # the corpus defines the split
FOLD_SCHEME = "the standard split: train = Train, dev = Development, test = Test1 (one fold)"
VERSION = "MSP-Podcast (labels_consensus.csv, 4 classes)"
SOURCE = (
    "https://ecs.utdallas.edu/research/researchlabs/msp-lab/MSP-Podcast.html (academic licence)"
)
LABEL_FILES: tuple[str, ...] = ("Labels/labels_consensus.csv", "Labels/labels_concensus.csv")
COLUMNS: tuple[str, ...] = ("FileName", "EmoClass", "SpkrID", "Gender", "Split_Set")
_DIMENSIONS = {"EmoAct": "activation", "EmoVal": "valence", "EmoDom": "dominance"}


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _scan(root: Path) -> list[Utterance]:
    """Candidate clips of the 4 classes in Train, Development (or Validation) and Test1."""
    label_file = find_file(root, LABEL_FILES, "MSP-Podcast", f"get it from {SOURCE}")
    audio_dir = require_dir(
        root, "Audios", "MSP-Podcast", "extract Audios.zip (or Audio.tar) there"
    )
    candidates = []
    bad_gender = []
    with open(label_file, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = {c.strip() for c in (reader.fieldnames or [])}
        missing = [c for c in COLUMNS if c not in columns]
        if missing:
            raise CorpusLayoutError(
                f"MSP-Podcast: {str(label_file)!r} lacks column(s) {missing}; expected "
                f"{', '.join(COLUMNS)} (and EmoAct, EmoVal, EmoDom)."
            )
        for number, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            letter, split = row["EmoClass"], SPLITS.get(row["Split_Set"])
            if letter not in LABELS or split is None:
                continue
            gender = row["Gender"].lower()
            if gender not in ("female", "male"):
                if gender not in ("unknown", ""):
                    bad_gender.append(f"line {number}: Gender={row['Gender']!r}")
                continue  # unknown gender: no place in gender-based measures
            speaker = row["SpkrID"]
            known = speaker and speaker.lower() not in ("unknown", "nan")
            name = row["FileName"]
            stem = name[:-4] if name.lower().endswith(".wav") else name
            custom: dict[str, object] = {}
            for column, key in _DIMENSIONS.items():
                value = _float(row.get(column))
                if value is not None:
                    custom[key] = value
            candidates.append(
                Utterance(
                    id=f"{NAME}_{stem}",
                    path=str((audio_dir / f"{stem}.wav").resolve()),
                    speaker=f"{NAME}_{speaker}" if known else UNKNOWN_SPEAKER,
                    gender=gender,
                    emotion=LABELS[letter],
                    duration=PLACEHOLDER_DURATION,
                    split=split,
                    custom=custom,
                )
            )
    if bad_gender:
        raise CorpusLayoutError(
            f"MSP-Podcast: {len(bad_gender)} row(s) of {str(label_file)!r} have a Gender other "
            f"than Female/Male/Unknown: {bad_gender[:5]}."
        )
    return candidates


prepare = make_prepare(
    _scan,
    FOLDS,
    doc="Manifest of MSP-Podcast's 4-class Train/Development/Test1 clips, one standard fold.",
)
