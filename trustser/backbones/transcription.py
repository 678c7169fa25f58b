"""Speech in, the same words out: the check that a converted Whisper checkpoint is the real model.

A converted encoder can load, return the right shapes and still be wrong (a transposed or
swapped projection gives plausible features). Transcribing speech with the converted encoder
*and* decoder exercises every tensor of the file at once: if the words come back, the mapping is
right and the weights are trained ones. Used by ``tests/test_ct2.py`` and ``bench/transcribe.py``.

Word error rate (WER): with the reference and the hypothesis as word sequences (:func:`words`:
lower-cased, punctuation dropped, Unicode letters and digits kept, so "Kühlschrank," →
"kühlschrank"), a clip's edits are the fewest substitutions, deletions and insertions that turn
the reference into the hypothesis (S + D + I, the Levenshtein distance over words); a set's WER
is Σ edits / Σ N over its clips, N the reference words. It can exceed 1 (many insertions).
Numbers are not normalised: "sieben" against "7" is a substitution.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

from trustser.backbones.ct2 import load_whisper_model, whisper_generation_config
from trustser.backbones.logmel import HOP_LENGTH, WINDOW_SAMPLES, WhisperLogMel

__all__ = ["WhisperTranscriber", "word_edits", "word_error_rate", "words"]

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def words(text: str) -> list[str]:
    """The words of ``text`` for scoring: lower case, without punctuation."""
    return _WORD.findall(text.lower())


def word_edits(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """The fewest substitutions + deletions + insertions turning ``reference`` into
    ``hypothesis`` (Levenshtein distance over words)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def word_error_rate(pairs: Sequence[tuple[Sequence[str], Sequence[str]]]) -> float:
    """WER of a set of (reference words, hypothesis words) pairs: Σ edits / Σ reference words
    (each clip aligned on its own, so no alignment crosses from one clip into the next)."""
    total = sum(len(reference) for reference, _ in pairs)
    if total == 0:
        raise ValueError("the word error rate needs at least one reference word.")
    return sum(word_edits(reference, hypothesis) for reference, hypothesis in pairs) / total


class WhisperTranscriber:
    """Greedy Whisper transcription with a converted faster-whisper directory (CPU or CUDA).

    Each clip is one 30 s window (Whisper's training setting: the clip, then silence), decoded
    with the directory's own tokenizer and suppressed tokens, without timestamps.
    """

    def __init__(
        self, directory: str | Path, *, device: str = "cpu", max_new_tokens: int = 64
    ) -> None:
        from tokenizers import Tokenizer

        self.directory = Path(directory)
        self.device = torch.device(device)
        self.model = load_whisper_model(self.directory, with_decoder=True).to(self.device)
        self.tokenizer = Tokenizer.from_file(str(self.directory / "tokenizer.json"))
        self.max_new_tokens = max_new_tokens
        self.log_mel = WhisperLogMel(self.model.config.num_mel_bins).to(self.device)

    def __call__(self, waveform: torch.Tensor, *, language: str | None = None) -> str:
        """The text spoken in ``waveform`` ([S] float32, 16 kHz, at most 30 s)."""
        if waveform.ndim != 1 or not 0 < waveform.numel() <= WINDOW_SAMPLES:
            raise ValueError(
                f"transcription takes one clip [S] of 1..{WINDOW_SAMPLES} samples (30 s), got "
                f"shape {tuple(waveform.shape)}."
            )
        generation = whisper_generation_config(
            self.directory, language=language, max_new_tokens=self.max_new_tokens
        )
        batch = waveform.to(self.device, torch.float32)[None]
        lengths = torch.tensor([batch.shape[1]], device=self.device)
        with torch.no_grad():
            mel = self.log_mel(batch, lengths, num_frames=WINDOW_SAMPLES // HOP_LENGTH)
            tokens = self.model.generate(mel, generation_config=generation)
        return self.tokenizer.decode(tokens[0].tolist(), skip_special_tokens=True).strip()
