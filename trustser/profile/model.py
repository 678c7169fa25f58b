"""What a trust profile is: the five axes, the profile dataclasses, the paper's rows, profile.json.

Every other part of :mod:`trustser.profile` builds on this module and it imports none of them:
``scales`` scores a :class:`Profile`, ``collect`` fills one from the results layout, the renderers
(``tables``, ``radar``, ``report``) and ``recommend`` read one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trustser._validation import TrustSERError
from trustser._version import __version__
from trustser.runs import ModelName, read_json
from trustser.variants import parse as parse_variant

__all__ = [
    "AXES",
    "AXIS_TITLES",
    "DEFAULT_ATTACK",
    "MEAN_CORPUS",
    "PAPER_TABLE4",
    "PROFILE_FORMAT_VERSION",
    "BackboneProfile",
    "Profile",
    "ProfileError",
    "paper_reference",
    "read_profile",
]

AXES: tuple[str, ...] = ("performance", "privacy", "safety", "fairness", "sustainability")
AXIS_TITLES = {
    "performance": "Performance",
    "privacy": "Privacy",
    "safety": "Safety",
    "fairness": "Fairness",
    "sustainability": "Sustainability",
}
PROFILE_FORMAT_VERSION = 1
MEAN_CORPUS = "mean"  # the corpus of a profile-across-corpora row that averages the corpora
DEFAULT_ATTACK = ("fgsm", 45.0)  # the attack behind the safety axis: (method, SNR in dB)

# The paper's Table 4 (NOTES §1; read off the reference repo's profile images, ±0.4). GMAC are
# thop MACs (the paper calls them GFLOPs); WavLM's is undercounted there (thop misses attention).
PAPER_TABLE4: dict[str, dict[str, float]] = {
    "APC": {"uar": 0.588, "eo": 0.209, "gmacs": 2.5, "asr": 0.881, "gender_accuracy": 0.957},
    "TERA": {"uar": 0.580, "eo": 0.205, "gmacs": 12.7, "asr": 0.706, "gender_accuracy": 0.960},
    "wav2vec2": {"uar": 0.646, "eo": 0.171, "gmacs": 41.6, "asr": 0.539, "gender_accuracy": 0.972},
    "WavLM Base+": {
        "uar": 0.671,
        "eo": 0.164,
        "gmacs": 33.1,
        "asr": 0.579,
        "gender_accuracy": 0.983,
    },
    "Whisper tiny": {
        "uar": 0.637,
        "eo": 0.164,
        "gmacs": 2.4,
        "asr": 0.788,
        "gender_accuracy": 0.922,
    },
    "Whisper base": {
        "uar": 0.662,
        "eo": 0.169,
        "gmacs": 5.9,
        "asr": 0.731,
        "gender_accuracy": 0.976,
    },
    "Whisper small": {
        "uar": 0.670,
        "eo": 0.166,
        "gmacs": 26.4,
        "asr": 0.627,
        "gender_accuracy": 0.974,
    },
}


class ProfileError(TrustSERError, ValueError):
    """A profile that cannot be built or read as asked (nothing run, bad profile.json)."""


@dataclass
class BackboneProfile:
    """One backbone's measurements (per axis, ``None`` when not run) and, once scored, scores."""

    name: str
    directory: str | None = None
    performance: dict[str, Any] | None = None
    fairness: dict[str, Any] | None = None
    privacy: dict[str, Any] | None = None
    safety: dict[str, Any] | None = None
    sustainability: dict[str, Any] | None = None
    probe: dict[str, float] | None = None  # linear probes on time-means: a reference attacker
    raw: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(AXES))
    scores: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(AXES))
    clipped: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(AXES, False))
    missing: dict[str, str] = field(default_factory=dict)  # axis -> the command that fills it
    context: dict[str, float] = field(default_factory=dict)  # chance levels for absolute scales
    notes: list[str] = field(default_factory=list)
    reference: bool = False  # a row from the paper, not measured here
    # A variant (``base@tag``, e.g. ``@top1``: top block fine-tuned) is a row of its own that
    # names its base; ``training`` holds what training cost (trainable parameters, seconds).
    base: str | None = None
    variant: str | None = None
    training: dict[str, Any] | None = None
    # 95 % intervals (figure -> value, low, high, method; the axes under their own names), the
    # score intervals, and the axes' bootstrap replicates (paired across rows, same draws).
    intervals: dict[str, Any] = field(default_factory=dict)
    score_intervals: dict[str, list[float] | None] = field(default_factory=dict)
    replicates: dict[str, list[float | None]] = field(default_factory=dict)
    # In a profile across corpora: the corpus of a row, or MEAN_CORPUS for the mean over corpora.
    corpus: str | None = None

    @property
    def complete(self) -> bool:
        return all(self.scores.get(axis) is not None for axis in AXES)

    @property
    def privacy_attacker(self) -> str | None:
        """Whose figure the privacy axis holds: ``gender head`` or a ``linear probe (…)``."""
        if self.reference:
            return "gender head" if self.raw.get("privacy") is not None else None
        return ((self.privacy or {}).get("axis") or {}).get("attacker")

    @property
    def is_variant(self) -> bool:
        return self.variant is not None

    @property
    def variant_description(self) -> str | None:
        """``"top 1 block fine-tuned"`` for ``@top1`` (None for a base backbone)."""
        if self.variant is None:
            return None
        try:
            parsed = parse_variant(ModelName(self.base or self.name, self.variant))
        except (ValueError, TrustSERError):  # a kind this version does not know
            parsed = None
        return parsed.describe() if parsed is not None else f"variant {self.variant}"


@dataclass
class Profile:
    """Several backbones side by side, scored on one scale."""

    backbones: list[BackboneProfile]
    scale: str
    scales: dict[str, dict[str, Any]]
    attack: dict[str, Any]
    runs: str | None = None
    store: str | None = None
    notes: list[str] = field(default_factory=list)
    bootstrap: dict[str, Any] | None = None  # the design of the intervals (None: switched off)
    comparisons: list[dict[str, Any]] = field(default_factory=list)  # paired, per pair of rows
    corpora: list[dict[str, Any]] = field(default_factory=list)  # a profile across corpora

    def variants_of(self, base: BackboneProfile) -> list[BackboneProfile]:
        """The measured variants of ``base`` in this profile (profile order)."""
        if base.is_variant or base.reference:
            return []
        return [b for b in self.backbones if b.is_variant and b.base == base.name]

    def get(self, name: str) -> BackboneProfile:
        for entry in self.backbones:
            if entry.name == name or entry.directory == name:
                return entry
        names = ", ".join(b.name for b in self.backbones) or "none"
        raise ProfileError(f"backbone {name!r} is not in this profile (it has: {names}).")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "trustser-profile",
            "format_version": PROFILE_FORMAT_VERSION,
            "trustser_version": __version__,
            "axes": list(AXES),
            "direction": "higher is more trustworthy on every axis (scores in [0, 1])",
            "scale": self.scale,
            "scales": self.scales,
            "attack": self.attack,
            "runs": self.runs,
            "store": self.store,
            "notes": list(self.notes),
            "bootstrap": self.bootstrap,
            "comparisons": self.comparisons,
            "corpora": self.corpora,
            "backbones": [asdict(b) for b in self.backbones],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        if data.get("format") != "trustser-profile":
            raise ProfileError("not a trustser profile.json (missing format 'trustser-profile').")
        if data.get("format_version") != PROFILE_FORMAT_VERSION:
            raise ProfileError(
                f"profile format version {data.get('format_version')!r} is not supported (this "
                f"trustser reads {PROFILE_FORMAT_VERSION}); rerun `trustser profile`."
            )
        known = {f for f in BackboneProfile.__dataclass_fields__}
        backbones = [
            BackboneProfile(**{k: v for k, v in b.items() if k in known}) for b in data["backbones"]
        ]
        return cls(
            backbones=backbones,
            scale=data["scale"],
            scales=data["scales"],
            attack=data["attack"],
            runs=data.get("runs"),
            store=data.get("store"),
            notes=list(data.get("notes", [])),
            bootstrap=data.get("bootstrap"),
            comparisons=list(data.get("comparisons", [])),
            corpora=list(data.get("corpora", [])),
        )


def paper_reference(names: Sequence[str] | None = None) -> list[BackboneProfile]:
    """The paper's Table 4 rows as unscored profiles (``reference=True``), for side-by-side views."""
    chosen = list(PAPER_TABLE4) if names is None else list(names)
    entries = []
    for name in chosen:
        if name not in PAPER_TABLE4:
            raise ProfileError(f"no paper row {name!r}; choose from {', '.join(PAPER_TABLE4)}.")
        row = PAPER_TABLE4[name]
        entries.append(
            BackboneProfile(
                name=f"paper: {name}",
                raw={
                    "performance": row["uar"],
                    "privacy": row["gender_accuracy"],
                    "safety": row["asr"],
                    "fairness": row["eo"],
                    "sustainability": row["gmacs"],
                },
                context={"emotion_chance": 0.25, "gender_chance": 0.5},
                notes=["the paper's Table 4 (read off its figures, ±0.4 points)"],
                reference=True,
            )
        )
    return entries


def read_profile(path: str | Path) -> Profile:
    """A ``profile.json`` (or a directory holding one) written by
    :func:`~trustser.profile.run.write_profile`."""
    path = Path(path)
    if path.is_dir():
        path = path / "profile.json"
    if not path.is_file():
        raise ProfileError(
            f"no profile at {str(path)!r}; create one with `trustser profile -o DIR`."
        )
    return Profile.from_dict(read_json(path))
