"""What a trust profile is: the profile dataclasses and profile.json.

Every other part of :mod:`trustser.profile` builds on this module and it imports none of them.
It names no axis: a row keeps its figures in dicts keyed by axis name (``raw``, ``scores``, …),
and which axes there are is the registry's to say (:mod:`trustser.profile.axes`), so adding an
axis never touches the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trustser._validation import TrustSERError
from trustser._version import __version__
from trustser.runs import ModelName, read_json
from trustser.variants import parse as parse_variant

__all__ = [
    "DEFAULT_ATTACK",
    "MEAN_CORPUS",
    "PROFILE_FORMAT_VERSION",
    "BackboneProfile",
    "Profile",
    "ProfileError",
    "read_profile",
]

PROFILE_FORMAT_VERSION = 1
MEAN_CORPUS = "mean"  # the corpus of a profile-across-corpora row that averages the corpora
DEFAULT_ATTACK = ("fgsm", 45.0)  # the attack behind the safety axis: (method, SNR in dB)


class ProfileError(TrustSERError, ValueError):
    """A profile that cannot be built or read as asked (nothing run, bad profile.json)."""


# Fields written to profile.json only when they hold something, so a profile whose axes all have
# fields of their own (format 1's five) reads exactly as before these fields existed.
_WRITTEN_WHEN_SET = ("axis_details", "not_measurable", "dev")


@dataclass
class BackboneProfile:
    """One model's measurements and, once scored, its scores.

    ``raw``, ``scores``, ``clipped``, ``missing`` (the command that fills an axis) and
    ``not_measurable`` (why an axis cannot be measured on these results) are keyed by axis name.
    An axis's details (everything its collector read) are the field of its name for the paper's
    five axes (``performance`` … ``sustainability``, the profile.json format 1 layout) and
    ``axis_details[name]`` for an axis added since (``Axis.details`` reads either).
    """

    name: str
    directory: str | None = None
    performance: dict[str, Any] | None = None
    fairness: dict[str, Any] | None = None
    privacy: dict[str, Any] | None = None
    safety: dict[str, Any] | None = None
    sustainability: dict[str, Any] | None = None
    probe: dict[str, float] | None = None  # linear probes on time-means: a reference attacker
    raw: dict[str, float | None] = field(default_factory=dict)
    scores: dict[str, float | None] = field(default_factory=dict)
    clipped: dict[str, bool] = field(default_factory=dict)
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
    axis_details: dict[str, dict[str, Any]] = field(default_factory=dict)
    not_measurable: dict[str, str] = field(default_factory=dict)  # axis -> why, in words
    # A variant's figures on dev clips (its kind's ``dev_figures``): what ``recommend`` chooses
    # among variants of one backbone by (λ of privacy-l<λ>), never the test figures it ranks by.
    dev: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every axis of the row scored."""
        return bool(self.scores) and all(v is not None for v in self.scores.values())

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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in _WRITTEN_WHEN_SET:
            if not data[key]:
                del data[key]
        return data


@dataclass
class Profile:
    """Several backbones side by side, scored on one scale over ``axes`` (their names)."""

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
    axes: list[str] = field(default_factory=list)  # set when scored: the registry's axes

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
            "axes": list(self.axes),
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
            "backbones": [b.to_dict() for b in self.backbones],
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
            axes=list(data.get("axes", [])),
        )


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
