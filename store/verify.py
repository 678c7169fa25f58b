"""``trustser store verify``: is every planned clip present, and is the layout intact?

Completeness is what a multi-rank extraction needs checked at the end (which units are still
missing, and which clips they hold); a finished unit whose data files are gone is damage, found
by the quick check already. ``deep`` additionally reads every finished unit back and checks that
its frames are finite and agree with the stored time-means. Units computed under different
library versions or devices are reported (``mixed_origins``), not counted as damage.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trustser.manifest import Manifest, read_manifest
from trustser.store.format import StoreError
from trustser.store.quantize import INT8_LEVELS, dequantize
from trustser.store.reader import Part, StoreGroup, open_store

__all__ = ["EXIT_COMPLETE", "EXIT_INCOMPLETE", "GroupReport", "VerifyReport", "verify_store"]

EXIT_COMPLETE = 0
EXIT_INCOMPLETE = 1
FLOAT16_MAX = 65504.0


@dataclass
class GroupReport:
    """What ``verify`` found in one backbone group."""

    name: str
    planned: int = 0
    done: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # planned, unit not written
    missing_units: list[str] = field(default_factory=list)  # "part-…/unit k"
    not_extracted: list[str] = field(default_factory=list)  # manifest ids the group never planned
    problems: list[str] = field(default_factory=list)  # layout or data damage
    deep_checked: int = 0  # clips read back by a deep check
    flagged: dict[str, list[str]] = field(default_factory=dict)  # done clips with warnings
    mixed_origins: list[str] = field(default_factory=list)  # units of other versions/devices
    damaged_units: list[str] = field(default_factory=list)  # "part-…/unit k": done, data gone

    @property
    def complete(self) -> bool:
        return not (self.missing or self.not_extracted or self.problems)

    @property
    def status(self) -> str:
        """``complete``, ``damaged`` (layout or data problems) or ``incomplete`` (clips missing)."""
        if self.complete:
            return "complete"
        return "damaged" if self.problems else "incomplete"


@dataclass
class VerifyReport:
    path: str
    groups: list[GroupReport]

    @property
    def complete(self) -> bool:
        return all(g.complete for g in self.groups)

    @property
    def exit_code(self) -> int:
        """0 when every group is complete and intact, 1 otherwise."""
        return EXIT_COMPLETE if self.complete else EXIT_INCOMPLETE


def _check_layout(part: Part, group: StoreGroup, report: GroupReport) -> None:
    where = f"{group.name}/{part.key}"
    offsets, frames = part.offsets, part.num_frames
    S, F, U = part.clips_per_unit, part.unit_frames, part.num_units
    n = len(part.ids)
    if -(-n // S) != U:
        report.problems.append(f"{where}: num_units={U} but ceil({n}/{S}) = {-(-n // S)}")
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        report.problems.append(f"{where}: offsets do not start at 0 and increase")
    if offsets[-1] != U * F or part.emb.shape[0] != U * F:
        report.problems.append(
            f"{where}: offsets end at {offsets[-1]}, emb has {part.emb.shape[0]} rows, expected {U * F}"
        )
    units = np.arange(n) // S
    if n and (np.any(offsets[:-1] < units * F) or np.any(offsets[:-1] + frames > (units + 1) * F)):
        report.problems.append(f"{where}: a clip's frames cross its unit's shard boundary")
    expected = (group.num_layers, group.dim)
    if tuple(part.emb.shape[1:]) != expected or tuple(part.means_array.shape) != (n, *expected):
        report.problems.append(
            f"{where}: emb {part.emb.shape} / means {part.means_array.shape} disagree with L, D = {expected}"
        )
    if str(part.emb.dtype) != group.dtype:
        report.problems.append(
            f"{where}: emb dtype {part.emb.dtype} but the group records {group.dtype}"
        )
    if part.quantized and tuple(part.scales_array.shape) != (U * F, group.num_layers):
        report.problems.append(
            f"{where}: scales {part.scales_array.shape} disagree with emb rows and L = "
            f"{(U * F, group.num_layers)}"
        )
    for unit, record in sorted(part.records.items()):
        missing = part.missing_files(unit)
        if missing:
            report.problems.append(part.damage(unit, missing, group.name))
            report.damaged_units.append(f"{part.key}/unit {unit}")
        ids = {part.ids[i] for i in part.unit_clips(unit)}
        stray = sorted(set(record["skipped"]) - ids)
        if stray:
            report.problems.append(
                f"{where}: unit {unit} records skipped ids that are not its clips: {stray[:3]}"
            )


def _deep_check(part: Part, group: StoreGroup, report: GroupReport) -> None:
    where = f"{group.name}/{part.key}"
    for unit, record in sorted(part.records.items()):
        clips = [i for i in part.unit_clips(unit) if part.ids[i] not in record["skipped"]]
        if not clips or part.missing_files(unit):  # damage already reported by the layout check
            continue
        base = unit * part.unit_frames
        stored, scales = part.read_stored(base, part.unit_frames, group.name)
        if scales is not None:
            if np.any(stored == -INT8_LEVELS - 1):
                report.problems.append(f"{where}: unit {unit} holds the int8 code -128")
            if not (np.isfinite(scales).all() and (scales >= 0).all()):
                report.problems.append(f"{where}: unit {unit} has negative or non-finite scales")
                continue
            block = dequantize(stored, scales)
        else:
            block = np.asarray(stored, dtype=np.float32)
        start = unit * part.clips_per_unit
        means = np.asarray(part.means_array[start : start + len(part.unit_clips(unit))])
        for i in clips:
            rows = block[part.offsets[i] - base : part.offsets[i] - base + part.num_frames[i]]
            report.deep_checked += 1
            if not np.isfinite(rows).all():
                hint = (
                    " (float16 overflow: extract with --dtype float32)"
                    if group.dtype == "float16"
                    else ""
                )
                report.problems.append(
                    f"{where}: clip {part.ids[i]!r} has non-finite features{hint}"
                )
                continue
            mean = rows.mean(axis=0)
            scale = np.abs(rows).mean(axis=0)
            rtol = 2.0**-10 if group.dtype == "float16" else 1e-5
            allowed = rtol * scale + 1e-5
            if scales is not None:  # each value lies within half its row's scale (§6.5)
                first = part.offsets[i] - base
                row_scales = scales[first : first + part.num_frames[i]].astype(np.float32)
                allowed = allowed + 0.5 * row_scales.mean(axis=0)[:, None] * (1 + 1e-3)
            if np.any(np.abs(mean - means[i - start]) > allowed):
                report.problems.append(
                    f"{where}: clip {part.ids[i]!r}: stored time-mean disagrees with its frames"
                )


def verify_store(
    path: str | os.PathLike,
    *,
    backbones: Sequence[str] | None = None,
    manifest: Manifest | str | os.PathLike | None = None,
    deep: bool = False,
) -> VerifyReport:
    """Check completeness (and with ``deep``, the data) of the named groups (default: all).

    With ``manifest`` (a ``Manifest`` or a manifest file), also list its clips that no group
    part planned, and restrict the missing clips to its ids.
    """
    if manifest is not None and not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest, check_files=False)
    store = open_store(path)
    names = list(backbones) if backbones else store.backbones
    if not names:
        raise StoreError(f"store {path} has no backbone groups yet; run `trustser extract` first.")
    wanted = None if manifest is None else set(manifest.ids)
    reports = []
    for name in names:
        report = GroupReport(name=name)
        reports.append(report)
        try:
            group = store.group(name)
        except StoreError as error:
            if name not in store:
                raise
            report.problems.append(str(error))
            continue
        planned: set[str] = set()
        for part in group.parts:
            planned.update(part.ids)
            _check_layout(part, group, report)
            for unit in range(part.num_units):
                if unit not in part.records and (
                    wanted is None
                    or wanted.intersection(part.ids[i] for i in part.unit_clips(unit))
                ):
                    report.missing_units.append(f"{part.key}/unit {unit}")
            if deep:
                _deep_check(part, group, report)
        in_scope = (lambda i: True) if wanted is None else (lambda i: i in wanted)
        report.planned = sum(1 for i in planned if in_scope(i))
        report.done = sum(1 for i in group.ids if in_scope(i))
        report.skipped = {i: r for i, r in group.skipped.items() if in_scope(i)}
        report.missing = [i for i in group.pending if in_scope(i)]
        report.flagged = {i: f for i, f in group.flags.items() if in_scope(i)}
        report.mixed_origins = group.mixed_origins()
        if manifest is not None:
            report.not_extracted = [i for i in manifest.ids if i not in planned]
    return VerifyReport(path=str(Path(path)), groups=reports)
