"""The espeak-ng driver: find the executable, ask its version and voices, render text to audio.

espeak-ng runs as a subprocess (``--stdout``, SSML ``<prosody>``); its WAV output is read back and
resampled to :data:`~trustser.corpora.synth.design.SAMPLE_RATE`.
"""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import subprocess
from functools import lru_cache

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from trustser.corpora.synth.design import SAMPLE_RATE, Prosody
from trustser.corpora.synth.errors import EspeakNotFoundError, SynthesisError

__all__ = ["ESPEAK_AMPLITUDE", "espeak_variants", "espeak_version", "find_espeak", "speak"]

# espeak-ng amplitude (0-200, default 100): low enough that even the loudest built-in voice at
# 230 % volume stays below full scale in its int16 output (measured peak 0.80); levels are
# normalised per voice afterwards.
ESPEAK_AMPLITUDE = 30

_INSTALL_HINT = (
    "install espeak-ng: Debian/Ubuntu `sudo apt-get install espeak-ng` (or `make system-deps` as "
    "root); macOS `brew install espeak-ng`; Windows: the .msi from "
    "https://github.com/espeak-ng/espeak-ng/releases, then add its folder to PATH. Or point "
    "TRUSTSER_ESPEAK at the executable."
)


def find_espeak() -> str:
    """Path of the espeak-ng executable (``$TRUSTSER_ESPEAK`` first, then PATH)."""
    override = os.environ.get("TRUSTSER_ESPEAK")
    if override:
        found = shutil.which(override)
        if found is None:
            raise EspeakNotFoundError(
                f"TRUSTSER_ESPEAK={override!r} is not an executable; unset it or {_INSTALL_HINT}"
            )
        return found
    found = shutil.which("espeak-ng")
    if found is None:
        raise EspeakNotFoundError(
            "espeak-ng was not found on PATH; the synthetic corpus needs it to render speech. "
            + _INSTALL_HINT
        )
    return found


@lru_cache(maxsize=8)
def espeak_version(executable: str) -> str:
    """``"espeak-ng 1.51"``-style version of ``executable`` (recorded with the corpus)."""
    result = _run([executable, "--version"], what="espeak-ng --version")
    match = re.search(r"text-to-speech:\s*(\S+)", result.decode(errors="replace"))
    return f"espeak-ng {match.group(1) if match else 'unknown'}"


@lru_cache(maxsize=8)
def espeak_variants(executable: str) -> frozenset[str]:
    """Variant names (``f3``, ``Andrea``) espeak-ng knows, from ``--voices=variant``."""
    listing = _run([executable, "--voices=variant"], what="espeak-ng --voices=variant")
    names = set()
    for line in listing.decode(errors="replace").splitlines()[1:]:
        parts = line.split()
        for part in parts:
            if part.startswith("!v/"):
                names.add(part[3:].lower())
    return frozenset(names)


def _run(command: list[str], *, what: str) -> bytes:
    try:
        result = subprocess.run(command, capture_output=True, check=False, timeout=60)
    except OSError as error:
        raise SynthesisError(f"could not run {what}: {error}. {_INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise SynthesisError(f"{what} did not finish within 60 s.") from None
    if result.returncode != 0:
        message = (
            result.stderr.decode(errors="replace").strip() or f"exit status {result.returncode}"
        )
        raise SynthesisError(f"{what} failed: {message}")
    return result.stdout


def speak(executable: str, voice: str, prosody: Prosody, text: str) -> np.ndarray:
    """Render ``text`` with espeak-ng and return it as float64 at :data:`SAMPLE_RATE`."""
    settings = prosody.rounded()
    command = [
        executable,
        "--stdout",
        "-m",
        "-v",
        voice,
        "-a",
        str(ESPEAK_AMPLITUDE),
        "-g",
        str(int(settings.gap)),
        settings.ssml(text),
    ]
    raw = _run(command, what=f"espeak-ng (voice {voice!r})")
    try:
        data, rate = sf.read(io.BytesIO(raw), dtype="float64", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as error:
        raise SynthesisError(
            f"espeak-ng (voice {voice!r}) returned no readable audio ({error})."
        ) from None
    mono = data.mean(axis=1)
    if mono.size == 0 or not np.any(mono):
        raise SynthesisError(f"espeak-ng (voice {voice!r}) returned silence for {text!r}.")
    if rate != SAMPLE_RATE:
        gcd = math.gcd(int(rate), SAMPLE_RATE)
        mono = resample_poly(mono, SAMPLE_RATE // gcd, int(rate) // gcd)
    return mono
