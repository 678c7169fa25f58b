"""Transcription check of the offline Whisper checkpoints: are they the real, trained models?

    python bench/transcribe.py --backbone whisper_base_offline --emodb ../shared/data/emodb
    python bench/transcribe.py --backbone whisper_tiny_en_offline --english 6 --emodb-clips 0

Two sets of clips, each decoded greedily with the converted encoder and decoder
(``trustser.backbones.transcription``) and scored by word error rate against what was said:

* **English**: the first ``--english`` sentences below, spoken by espeak-ng (``en-us``, 130 words
  per minute; skipped when espeak-ng is missing);
* **German**: ``--emodb-clips`` EmoDB clips (default 10: text ``k`` of EmoDB's ten spoken by
  speaker ``k``, the first take in file order), against the corpus's ten sentences. A
  multilingual model is told the language (``de``); an English-only one (tiny.en) can only decode
  as English — its German WER shows what it makes of speech it was not trained on.

Prints one Markdown row per clip and each set's WER (Σ edits / Σ reference words). Deterministic:
greedy decoding, fixed clips.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from trustser.audio import load_audio
from trustser.backbones import ct2
from trustser.backbones.loading import ct2_model_dir
from trustser.backbones.transcription import WhisperTranscriber, word_error_rate, words

ENGLISH = (
    "Please call the office tomorrow morning and ask for the report.",
    "She opened the window and looked at the garden.",
    "The train to the city leaves at noon every day.",
    "We should buy some bread and milk on the way home.",
    "My brother plays the piano in a small band.",
    "It was raining all night, so the roads are wet.",
)
# EmoDB's ten sentences (Burkhardt et al., 2005), by the text code in each file name.
EMODB_TEXTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
EMODB_SPEAKERS = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")


def english_clips(count: int, directory: Path) -> list[tuple[str, str, torch.Tensor]]:
    """``(id, reference, waveform)`` of the first ``count`` sentences, spoken by espeak-ng."""
    from trustser.corpora.synth import find_espeak

    executable = find_espeak()
    clips = []
    for index, sentence in enumerate(ENGLISH[:count]):
        wav = directory / f"en{index}.wav"
        command = [executable, "-v", "en-us", "-s", "130", "-w", str(wav), sentence]
        subprocess.run(command, check=True, capture_output=True)
        clips.append((f"en{index}", sentence, load_audio(wav, max_seconds=30).waveform))
    return clips


def emodb_clips(root: Path, count: int) -> list[tuple[str, str, torch.Tensor]]:
    """Clip ``k``: EmoDB text ``k mod 10`` by speaker ``k mod 10`` (first take in file order)."""
    files = sorted((root / "wav").glob("*.wav"))
    texts = list(EMODB_TEXTS)
    clips = []
    for k in range(count):
        speaker, text = EMODB_SPEAKERS[k % 10], texts[k % 10]
        takes = [f for f in files if f.name[:2] == speaker and f.name[2:5] == text]
        if len(takes) <= k // 10:
            raise SystemExit(f"EmoDB at {root} has no take {k // 10} of {speaker}{text}.")
        path = takes[k // 10]
        clips.append((path.stem, EMODB_TEXTS[text], load_audio(path, max_seconds=30).waveform))
    return clips


def transcribe_set(
    transcriber: WhisperTranscriber,
    clips: list[tuple[str, str, torch.Tensor]],
    language: str | None,
) -> tuple[float, list[str]]:
    """The set's WER and one Markdown row per clip."""
    pairs, rows = [], []
    for clip_id, reference, waveform in clips:
        started = time.perf_counter()
        text = transcriber(waveform, language=language)
        seconds = time.perf_counter() - started
        pair = (words(reference), words(text))
        pairs.append(pair)
        rows.append(
            f"| {clip_id} | {reference} | {text} | {word_error_rate([pair]):.2f} | {seconds:.1f} |"
        )
    return word_error_rate(pairs), rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="whisper_base_offline")
    parser.add_argument("--english", type=int, default=len(ENGLISH), help="sentences (max 6)")
    parser.add_argument("--emodb", type=Path, default=Path("../shared/data/emodb"))
    parser.add_argument("--emodb-clips", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # generate()'s deprecation notes, once per clip
    directory, facts = ct2_model_dir(args.backbone)
    multilingual = ct2.is_multilingual(directory)
    transcriber = WhisperTranscriber(directory, device=args.device)
    print(
        f"# {args.backbone} ({facts.get('resolved_revision')}; "
        f"{'multilingual' if multilingual else 'English-only'}), torch {torch.__version__}, "
        f"{platform.machine()}, {args.device}\n"
    )
    sets = []
    with tempfile.TemporaryDirectory() as scratch:
        if args.english > 0:
            sets.append(("English (espeak-ng)", english_clips(args.english, Path(scratch)), "en"))
    if args.emodb_clips > 0:
        if not args.emodb.is_dir():
            print(f"EmoDB not found at {args.emodb}; German set skipped.", file=sys.stderr)
        else:
            german = "de" if multilingual else None  # tiny.en can only decode as English
            sets.append(("German (EmoDB)", emodb_clips(args.emodb, args.emodb_clips), german))
    print("| set | language token | clips | words | WER |\n|---|---|---|---|---|")
    details = []
    for name, clips, language in sets:
        wer, rows = transcribe_set(transcriber, clips, language)
        count = sum(len(words(reference)) for _, reference, _ in clips)
        print(
            f"| {name} | {language or 'none (English-only)'} | {len(clips)} | {count} | {wer:.3f} |"
        )
        details += [
            f"\n## {name}\n",
            "| clip | said | transcribed | WER | s |",
            "|---|---|---|---|---|",
        ]
        details += rows
    print("\n".join(details))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
