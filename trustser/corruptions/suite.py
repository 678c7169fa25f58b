"""The corruption registry: each corruption's transform and its severities, and per-clip seeds.

A :class:`Corruption` carries its own facts (transform, severities, whether it draws from the
seed or needs babble talkers, how it keeps the length); a :class:`CorruptionCase` is one
(corruption, severity) pair with ``apply(waveform, seed)`` and a JSON-able :meth:`record
<CorruptionCase.record>`. Callers loop over :func:`suite` and ask; nothing branches on a name.
Seeds for one clip come from :func:`clip_seed`, a SHA-256 of (suite seed, clip id, corruption,
severity): stable across runs, machines and Python versions, unlike ``hash()``.
The severities and the reasons for them are in docs/robustness.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from types import MappingProxyType
from typing import Any

import numpy as np
import soundfile as sf

from trustser._version import __version__
from trustser.corruptions.babble import MAX_TALKERS, MIN_TALKERS, Talker, babble
from trustser.corruptions.codec import lossy_codec
from trustser.corruptions.functional import (
    SAMPLE_RATE,
    CorruptionError,
    clipping,
    gain,
    pink_noise,
    spectral_tilt,
    telephone,
    white_noise,
)
from trustser.corruptions.rooms import diffuse_drr_db, reverberate

__all__ = [
    "CORRUPTIONS",
    "DEFAULT_SUITE",
    "SUITE_VERSION",
    "Corruption",
    "CorruptionCase",
    "Severity",
    "clip_seed",
    "corruption_names",
    "derive_seed",
    "get_case",
    "get_corruption",
    "suite",
]

# Bump when a transform or a severity changes its output, so cached corrupted copies made
# with the old definitions can be told apart (the number is in every record).
SUITE_VERSION = 1

_LENGTH_SAMPLEWISE = "sample for sample: the output is the same length and aligned"
_LENGTH_RESAMPLED = "resampled 16→8→16 kHz with zero-phase filters: aligned, cut to the length"
_LENGTH_REVERB = (
    "direct path at lag 0, so aligned; the reverberant tail past the clip's end is cut off"
)
_LENGTH_CODEC = (
    "the codec's fixed delay (measured once per setting on a probe) is removed; "
    "then cut or zero-padded to the length"
)


@dataclass(frozen=True)
class Severity:
    """One level of a corruption: 1 is the mildest. ``params`` are the transform's keywords."""

    level: int
    label: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Corruption:
    """A named corruption: its transform, severities and the facts a caller needs to run it."""

    name: str
    summary: str
    transform: Callable[..., np.ndarray]
    severities: tuple[Severity, ...]
    length: str  # how the output keeps the input's length
    seeded: bool  # whether the output depends on the seed
    needs_talkers: bool = False  # babble: apply() needs speaker= and talkers=
    notes: Mapping[str, Any] = field(default_factory=dict)  # constants behind the params

    def severity(self, level: int) -> Severity:
        for severity in self.severities:
            if severity.level == level:
                return severity
        levels = ", ".join(str(s.level) for s in self.severities)
        raise CorruptionError(
            f"corruption {self.name!r} has no severity {level!r}; its levels are {levels}."
        )

    def case(self, level: int) -> CorruptionCase:
        return CorruptionCase(self, self.severity(level))

    def cases(self) -> tuple[CorruptionCase, ...]:
        return tuple(CorruptionCase(self, s) for s in self.severities)


@dataclass(frozen=True)
class CorruptionCase:
    """One (corruption, severity) pair: a deterministic function of (waveform, seed)."""

    corruption: Corruption
    severity: Severity

    @property
    def name(self) -> str:
        """``<corruption>-<level>``, e.g. ``babble-3``: one name per case, safe as a file name."""
        return f"{self.corruption.name}-{self.severity.level}"

    def apply(
        self,
        waveform: np.ndarray,
        seed: int,
        *,
        speaker: str | None = None,
        talkers: Sequence[Talker] | None = None,
    ) -> np.ndarray:
        """Corrupt a float 16 kHz mono ``waveform``; float32 of the same length comes back.

        ``seed`` is the clip's seed (:meth:`clip_seed`). ``speaker`` (the clip's speaker id) and
        ``talkers`` (candidate babble clips of other speakers) are required when
        ``corruption.needs_talkers`` and ignored otherwise, so one loop can pass them to every
        case.
        """
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise CorruptionError(f"seed must be a non-negative integer, got {seed!r}.")
        params = dict(self.severity.params)
        if self.corruption.seeded:
            params["seed"] = int(seed)
        if self.corruption.needs_talkers:
            if talkers is None:
                raise CorruptionError(
                    f"{self.name} mixes other speakers' clips: pass talkers=[Talker, ...] and "
                    "speaker=<the clip's speaker> (see trustser.corruptions.babble_pool)."
                )
            params.update(speaker=speaker, talkers=talkers)
        return self.corruption.transform(waveform, **params)

    def clip_seed(self, suite_seed: int, clip_id: str) -> int:
        """This case's seed for ``clip_id`` under ``suite_seed`` (:func:`clip_seed`)."""
        return clip_seed(suite_seed, clip_id, self.corruption.name, self.severity.level)

    def record(self) -> dict[str, Any]:
        """Everything needed to say what was done, as plain JSON types."""
        return {
            "name": self.name,
            "corruption": self.corruption.name,
            "severity": self.severity.level,
            "label": self.severity.label,
            "params": dict(self.severity.params),
            "notes": dict(self.corruption.notes),
            "seeded": self.corruption.seeded,
            "needs_talkers": self.corruption.needs_talkers,
            "length": self.corruption.length,
            "sample_rate": SAMPLE_RATE,
            "suite_version": SUITE_VERSION,
            "versions": _library_versions(),
        }


def _library_versions() -> dict[str, str]:
    versions = {"trustser": __version__, "libsndfile": sf.__libsndfile_version__}
    for package in ("numpy", "scipy", "soundfile"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:  # pragma: no cover - installed as a dependency
            versions[package] = "unknown"
    return versions


def _levels(label: Callable[[Any], str], key: str, values: Iterable[Any], **fixed: Any):
    """Severities 1, 2, ... setting ``key`` to each of ``values`` on top of ``fixed``."""
    return tuple(
        Severity(level, label(value), MappingProxyType({key: value, **fixed}))
        for level, value in enumerate(values, start=1)
    )


def _snr_label(snr_db: float) -> str:
    return f"{snr_db:g} dB SNR"


# A talker about 1 m from the microphone in a 60 m³ room (5 × 4 × 3 m), facing it (Q = 2).
_ROOM = {"volume_m3": 60.0, "distance_m": 1.0, "directivity": 2.0}
_RT60S = (0.3, 0.6, 1.0)
_TILT = {"reference_hz": 1000.0, "low_hz": 125.0, "high_hz": 8000.0}


def _reverb_severities() -> tuple[Severity, ...]:
    return tuple(
        Severity(
            level,
            f"RT60 {rt60:g} s",
            MappingProxyType({"rt60_s": rt60, "drr_db": round(diffuse_drr_db(rt60, **_ROOM), 2)}),
        )
        for level, rt60 in enumerate(_RT60S, start=1)
    )


def _codec_corruption(codec: str, what: str, bitrates_kbps: tuple[int, ...]) -> Corruption:
    return Corruption(
        codec,
        f"{what}: encoded and decoded",
        lossy_codec,
        _levels(lambda kbps: f"{kbps:g} kbit/s", "bitrate_kbps", bitrates_kbps, codec=codec),
        _LENGTH_CODEC,
        seeded=False,
    )


_REGISTRY: tuple[Corruption, ...] = (
    Corruption(
        "white_noise",
        "additive white Gaussian noise",
        white_noise,
        _levels(_snr_label, "snr_db", (20.0, 10.0, 0.0)),
        _LENGTH_SAMPLEWISE,
        seeded=True,
    ),
    Corruption(
        "pink_noise",
        "additive pink (1/f) Gaussian noise above 20 Hz",
        pink_noise,
        _levels(_snr_label, "snr_db", (20.0, 10.0, 0.0), low_hz=20.0),
        _LENGTH_SAMPLEWISE,
        seeded=True,
    ),
    Corruption(
        "babble",
        f"{MIN_TALKERS} to {MAX_TALKERS} other speakers talking at once",
        babble,
        _levels(
            _snr_label,
            "snr_db",
            (20.0, 10.0, 0.0),
            min_talkers=MIN_TALKERS,
            max_talkers=MAX_TALKERS,
        ),
        _LENGTH_SAMPLEWISE,
        seeded=True,
        needs_talkers=True,
    ),
    Corruption(
        "reverb",
        "a reverberant room (stochastic impulse response of the given RT60)",
        reverberate,
        _reverb_severities(),
        _LENGTH_REVERB,
        seeded=True,
        notes={"drr_from_diffuse_room": dict(_ROOM)},
    ),
    Corruption(
        "telephone",
        "narrowband telephone line: 8 kHz, 300-3400 Hz, 8-bit mu-law (G.711)",
        telephone,
        (
            Severity(
                1,
                "G.711 narrowband",
                MappingProxyType(
                    {
                        "low_hz": 300.0,
                        "high_hz": 3400.0,
                        "channel_rate": 8000,
                        "mu": 255,
                        "bits": 8,
                        "filter_order": 8,
                    }
                ),
            ),
        ),
        _LENGTH_RESAMPLED,
        seeded=False,
    ),
    _codec_corruption("mp3", "MPEG-2 Layer III, constant bitrate", (32, 16, 8)),
    _codec_corruption("opus", "Opus in Ogg, variable bitrate around the target", (24, 12, 6)),
    Corruption(
        "attenuation",
        "a quieter input (gain below 0 dB, no clipping)",
        gain,
        _levels(lambda db: f"{db:g} dB", "gain_db", (-10.0, -20.0, -30.0)),
        _LENGTH_SAMPLEWISE,
        seeded=False,
    ),
    Corruption(
        "clipping",
        "an overdriven input: gain above 0 dB, then hard clipping to [-1, 1]",
        clipping,
        _levels(lambda db: f"+{db:g} dB, clipped", "gain_db", (6.0, 12.0, 18.0), limit=1.0),
        _LENGTH_SAMPLEWISE,
        seeded=False,
    ),
    Corruption(
        "tilt_up",
        "spectral tilt towards the highs (a thin, bright channel), RMS kept",
        spectral_tilt,
        _levels(lambda s: f"+{s:g} dB/octave", "db_per_octave", (2.0, 4.0, 6.0), **_TILT),
        _LENGTH_SAMPLEWISE,
        seeded=False,
    ),
    Corruption(
        "tilt_down",
        "spectral tilt towards the lows (a muffled channel), RMS kept",
        spectral_tilt,
        _levels(lambda s: f"{s:g} dB/octave", "db_per_octave", (-2.0, -4.0, -6.0), **_TILT),
        _LENGTH_SAMPLEWISE,
        seeded=False,
    ),
)

CORRUPTIONS: Mapping[str, Corruption] = MappingProxyType({c.name: c for c in _REGISTRY})
DEFAULT_SUITE: tuple[str, ...] = tuple(CORRUPTIONS)


def corruption_names() -> list[str]:
    """Every registered corruption, in the registry's order."""
    return list(CORRUPTIONS)


def get_corruption(name: str) -> Corruption:
    try:
        return CORRUPTIONS[name]
    except KeyError:
        raise CorruptionError(
            f"unknown corruption {name!r}; choose one of {', '.join(CORRUPTIONS)}."
        ) from None


def get_case(name: str) -> CorruptionCase:
    """The case named ``<corruption>-<level>`` (``CorruptionCase.name``), e.g. ``reverb-2``."""
    corruption, sep, level = name.rpartition("-")
    if not sep or not level.isdigit():
        raise CorruptionError(
            f"{name!r} is not a case name; write <corruption>-<level>, e.g. 'babble-2'."
        )
    return get_corruption(corruption).case(int(level))


def suite(
    names: Iterable[str] | None = None, *, levels: Iterable[int] | None = None
) -> tuple[CorruptionCase, ...]:
    """The cases of ``names`` (default :data:`DEFAULT_SUITE`), optionally only some ``levels``.

    A corruption without one of the requested levels (``telephone`` has only level 1) simply
    contributes the levels it has; a level that no chosen corruption has is an error.
    """
    chosen = [get_corruption(n) for n in (DEFAULT_SUITE if names is None else names)]
    if not chosen:
        raise CorruptionError("the suite is empty; name at least one corruption.")
    if levels is None:
        return tuple(case for c in chosen for case in c.cases())
    wanted = set(levels)
    cases = tuple(CorruptionCase(c, s) for c in chosen for s in c.severities if s.level in wanted)
    missing = sorted(wanted - {case.severity.level for case in cases})
    if missing:
        raise CorruptionError(f"no chosen corruption has severity level(s) {missing}.")
    return cases


def derive_seed(*parts: str | int) -> int:
    """A 63-bit seed from ``parts`` (strings and integers): SHA-256 of their JSON list."""
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, (str, int)):
            raise CorruptionError(f"seed parts must be strings or integers, got {part!r}.")
    digest = hashlib.sha256(json.dumps(list(parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def clip_seed(suite_seed: int, clip_id: str, corruption: str, severity: int) -> int:
    """The seed of one clip under one (corruption, severity) of a suite run with ``suite_seed``."""
    return derive_seed("trustser.corruptions", suite_seed, clip_id, corruption, severity)
