"""Result tables and figures of a Markdown document, rendered from the artefacts they come from.

A results document (docs/results.md) keeps its prose by hand and its numbers as data. Every
table and figure sits between two markers and is rendered, with the current code, from the small
files the stages wrote::

    <!-- results:begin emodb/scores -->
    (generated: never edit by hand)
    <!-- results:end emodb/scores -->

A block's name is ``<profile>/<view>``. The profile is a ``[profiles.<name>]`` entry of
``results.toml`` in the document's data directory (docs/results/ beside docs/results.md): a
results directory laid out as the stages write it — per-clip predictions, ``metrics.json``,
attack summaries and per-clip results, ``cost.json``, no weights and no store
(:func:`import_results` copies exactly those) — and the settings it is profiled with (models,
the paper's rows, scale, bootstrap replicates and seed, the safety attack). The view is one of
:data:`VIEWS`: a table or figure of that profile, made by the profile's own renderers where they
have one. Figures are SVG files in the document's figure directory (docs/img/results/).

:func:`render_document` renders; :func:`write_rendering` writes the document and its figures;
:func:`drift` says what differs from the files on disk, so a test can fail when a scoring rule
changed and the document did not.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trustser._toml import tomllib
from trustser._validation import TrustSERError
from trustser.formatting import MISSING, percent
from trustser.manifest import read_manifest, write_manifest
from trustser.metrics.bootstrap import DEFAULT_REPLICATES
from trustser.profile.axes import details_order, get_axis
from trustser.profile.axes.robustness import DROP
from trustser.profile.cells import interval_text
from trustser.profile.collect import collect_profile, discover_backbones
from trustser.profile.intervals import DEFAULT_SEED
from trustser.profile.model import DEFAULT_ATTACK, BackboneProfile, Profile
from trustser.profile.radar import figure_svg, radar_figure
from trustser.profile.recommend import (
    SCENARIOS,
    recommend,
    saturated_text,
    unweighed_text,
    weights_text,
)
from trustser.profile.results import maybe_json
from trustser.profile.scales import SCALE_MODES
from trustser.profile.tables import profile_to_markdown
from trustser.runs import RunLayout, read_json
from trustser.verification.table import summary_table, verification_runs

__all__ = [
    "DATA_FILES",
    "MAX_FILE_BYTES",
    "SETTINGS_FILE",
    "TRIAL_FILES",
    "VIEWS",
    "Block",
    "ImportedResults",
    "ProfileSettings",
    "Rendering",
    "ResultsDocError",
    "View",
    "drift",
    "import_results",
    "parse_blocks",
    "read_settings",
    "render_document",
    "write_rendering",
]

SETTINGS_FILE = "results.toml"
BEGIN = "<!-- results:begin {name} -->"
END = "<!-- results:end {name} -->"
_BEGIN_PREFIX, _END_PREFIX, _SUFFIX = "<!-- results:begin ", "<!-- results:end ", " -->"

# The files of one model's results directory that a profile is computed from (relative globs):
# the heads' and probes' metrics and per-clip predictions, the heads' configuration (what was
# trained on which store), the attacks' summaries and per-clip results (with the plain attack
# beside a randomized defence's adaptive one), the robustness suite's figures, the speaker
# verification runs' figures and per-trial scores, and the cost. Never weights, audio or the
# store.
DATA_FILES = (
    "cost.json",
    "*/config.json",
    "*/metrics.json",
    "*/predictions.csv",
    "probe/predictions-*.csv",
    "attack-*/summary.json",
    "attack-*/clips.csv",
    "attack-*/plain/summary.json",
    "attack-*/plain/clips.csv",
    "robustness/summary.json",
    "robustness/clips.csv",
    "verification/trials.csv",
    "verification/*/metrics.json",
    "verification/*/trials.csv",
)
# The verification runs' per-trial scores: what a profile redraws the EER's interval from on its
# own speaker draws (and pairs two models' EERs by). The `verification` view needs only each
# run's metrics.json, so an import may leave these out (their size grows with the speakers).
TRIAL_FILES = ("verification/trials.csv", "verification/*/trials.csv")
MAX_FILE_BYTES = 2_000_000  # a larger file is not a small result: refuse it rather than commit it


class ResultsDocError(TrustSERError, ValueError):
    """A results document, its markers or its data directory is not what the renderer needs."""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class ProfileSettings:
    """One ``[profiles.<name>]`` entry of ``results.toml``: which results, profiled how."""

    name: str
    runs: Path
    models: tuple[str, ...] = ()  # empty: every results directory under ``runs``
    paper: tuple[str, ...] = ()
    scale: str = "paper"
    bootstrap: int = DEFAULT_REPLICATES
    seed: int = DEFAULT_SEED
    attack: tuple[str, float] = DEFAULT_ATTACK

    def collect(self) -> Profile:
        """The profile, as ``trustser profile`` collects it from these files."""
        return collect_profile(
            self.runs,
            backbones=list(self.models) or None,
            scale=self.scale,
            attack=self.attack,
            paper=list(self.paper) or None,
            bootstrap=self.bootstrap,
            seed=self.seed,
        )


_SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "runs": (str,),
    "models": (list,),
    "paper": (list,),
    "scale": (str,),
    "bootstrap": (int,),
    "seed": (int,),
    "attack": (str,),
    "snr_db": (int, float),
}


def _profile_settings(path: Path, name: str, table: Any) -> ProfileSettings:
    where = f"{path}: [profiles.{name}]"
    if not isinstance(table, dict):
        raise ResultsDocError(f"{where} must be a table of settings.")
    unknown = sorted(set(table) - set(_SETTING_TYPES))
    if unknown:
        raise ResultsDocError(
            f"{where}: unknown key(s) {unknown}; allowed: {', '.join(sorted(_SETTING_TYPES))}."
        )
    for key, value in table.items():
        if not isinstance(value, _SETTING_TYPES[key]) or isinstance(value, bool):
            allowed = " or ".join(t.__name__ for t in _SETTING_TYPES[key])
            raise ResultsDocError(f"{where}: {key} must be {allowed}, got {value!r}.")
        if key in ("models", "paper") and not all(isinstance(v, str) for v in value):
            raise ResultsDocError(f"{where}: {key} must be a list of names, got {value!r}.")
    if "runs" not in table:
        raise ResultsDocError(
            f"{where} lacks runs: the results directory, relative to {SETTINGS_FILE}."
        )
    runs = path.parent / table["runs"]
    if not runs.is_dir():
        raise ResultsDocError(
            f"{where}: runs = {table['runs']!r} is not a directory beside {path.name}; copy the "
            "results there with `trustser results import`."
        )
    scale = table.get("scale", "paper")
    if scale not in SCALE_MODES:
        raise ResultsDocError(f"{where}: scale {scale!r} is not one of {', '.join(SCALE_MODES)}.")
    if table.get("bootstrap", 0) < 0:
        raise ResultsDocError(f"{where}: bootstrap must be 0 (no intervals) or more replicates.")
    return ProfileSettings(
        name=name,
        runs=runs,
        models=tuple(table.get("models", ())),
        paper=tuple(table.get("paper", ())),
        scale=scale,
        bootstrap=table.get("bootstrap", DEFAULT_REPLICATES),
        seed=table.get("seed", DEFAULT_SEED),
        attack=(
            table.get("attack", DEFAULT_ATTACK[0]),
            float(table.get("snr_db", DEFAULT_ATTACK[1])),
        ),
    )


def read_settings(data: str | Path) -> dict[str, ProfileSettings]:
    """The profiles of a data directory's ``results.toml``, by name."""
    path = Path(data) / SETTINGS_FILE
    if not path.is_file():
        raise ResultsDocError(
            f"{str(path)!r} does not exist; a results document's data directory needs it to say "
            "which results each block's profile is collected from ([profiles.<name>] runs = ...)."
        )
    try:
        content = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ResultsDocError(f"{path}: not valid TOML ({error}).") from None
    unknown = sorted(set(content) - {"profiles"})
    if unknown:
        raise ResultsDocError(f"{path}: unknown table(s) {unknown}; only [profiles.<name>].")
    profiles = content.get("profiles", {})
    if not isinstance(profiles, dict) or not profiles:
        raise ResultsDocError(f"{path}: no [profiles.<name>] table.")
    return {name: _profile_settings(path, name, table) for name, table in profiles.items()}


# --------------------------------------------------------------------------- markers


@dataclass(frozen=True)
class Block:
    """One generated block: ``name`` (``<profile>/<view>``) and the lines of its markers."""

    name: str
    begin: int  # 0-based line index of the begin marker
    end: int  # 0-based line index of the end marker

    @property
    def profile(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def view(self) -> str:
        return self.name.split("/", 1)[1]


def _marker(line: str, prefix: str) -> str | None:
    stripped = line.strip()
    if stripped.startswith(prefix) and stripped.endswith(_SUFFIX):
        return stripped[len(prefix) : -len(_SUFFIX)].strip()
    return None


def parse_blocks(text: str, source: str | Path = "<document>") -> list[Block]:
    """The generated blocks of ``text``, checked: each begin has its end, no nesting, no name
    twice, every name ``<profile>/<view>``."""
    blocks: list[Block] = []
    open_name: str | None = None
    open_line = 0
    for index, line in enumerate(text.splitlines()):
        begin, end = _marker(line, _BEGIN_PREFIX), _marker(line, _END_PREFIX)
        where = f"{source}:{index + 1}"
        if begin is not None:
            if open_name is not None:
                raise ResultsDocError(
                    f"{where}: block {begin!r} begins inside block {open_name!r} (begun on line "
                    f"{open_line + 1}); end that one first with {END.format(name=open_name)}."
                )
            if begin.count("/") != 1 or not all(begin.split("/")):
                raise ResultsDocError(
                    f"{where}: block name {begin!r} is not <profile>/<view> (e.g. emodb/scores)."
                )
            if any(b.name == begin for b in blocks):
                raise ResultsDocError(f"{where}: block {begin!r} appears twice.")
            open_name, open_line = begin, index
        elif end is not None:
            if open_name is None:
                raise ResultsDocError(f"{where}: {end!r} ends a block that was never begun.")
            if end != open_name:
                raise ResultsDocError(
                    f"{where}: block {open_name!r} (line {open_line + 1}) ends as {end!r}; the two "
                    "markers must name the same block."
                )
            blocks.append(Block(open_name, open_line, index))
            open_name = None
    if open_name is not None:
        raise ResultsDocError(
            f"{source}:{open_line + 1}: block {open_name!r} is never ended; add "
            f"{END.format(name=open_name)}."
        )
    return blocks


# --------------------------------------------------------------------------- views


@dataclass(frozen=True)
class ViewInput:
    """What a view renders from: the block, its profile's settings and collected profile, and
    where its figures go (``figure_link`` is the figure directory as the document links it).
    The profile is collected when a view first asks for it (``collect``: once per profile), so
    a view that reads its files directly renders results no profile is computed from."""

    block: Block
    settings: ProfileSettings
    collect: Callable[[], Profile]
    figure_link: str

    @property
    def profile(self) -> Profile:
        return self.collect()


@dataclass(frozen=True)
class Rendered:
    """A block's Markdown and the figure files it links (file name → bytes)."""

    markdown: str
    figures: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class View:
    """One kind of block: its name (the part after ``/``), what it shows, how it is made."""

    name: str
    summary: str
    render: Callable[[ViewInput], Rendered]


def _profile_sections(profile: Profile) -> dict[str, str]:
    """profile.md (:func:`trustser.profile.tables.profile_to_markdown`) by section title; the
    text before the first section, without the document title, is ``""``."""
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in profile_to_markdown(profile).splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        elif not (current == "" and line.startswith("# ")):
            sections[current].append(line)
    return {title: "\n".join(lines).strip() + "\n" for title, lines in sections.items()}


def _section_view(name: str, title: str, summary: str) -> View:
    def render(given: ViewInput) -> Rendered:
        sections = _profile_sections(given.profile)
        if title not in sections or not sections[title].strip():
            raise ResultsDocError(
                f"block {given.block.name!r}: profile {given.settings.name!r} has no "
                f"{title or 'introduction'!r} section (models: "
                f"{', '.join(b.name for b in given.profile.backbones)})."
            )
        return Rendered(sections[title])

    return View(name, summary, render)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def _raw(given: ViewInput) -> Rendered:
    """The raw metrics table of profile.md turned on its side: a row per figure, grouped by
    axis, a column per model (profile.md's one row per model is too wide to read in a page)."""
    rows = given.profile.backbones
    body = []
    for axis in details_order():
        if axis.markdown is None:
            continue
        for index, column in enumerate(axis.markdown(given.profile)):
            body.append(
                [axis.title if index == 0 else "", column.header, *(column.cell(b) for b in rows)]
            )
    return Rendered(_md_table(["axis", "figure", *(b.name for b in rows)], body))


def _measured(profile: Profile, *, bases_only: bool = False) -> list[BackboneProfile]:
    return [b for b in profile.backbones if not b.reference and not (bases_only and b.is_variant)]


def _fold_list(values: Any) -> str:
    return ", ".join(str(v) for v in values) if isinstance(values, list) else MISSING


def _head_epochs(metrics: dict[str, Any]) -> str:
    """``best dev epoch / epochs run`` per fold: whether training stopped while the model was
    still improving on dev."""
    folds = [f for f in metrics.get("folds") or [] if isinstance(f, dict)]
    cells = []
    for fold in folds:
        best, history = fold.get("best_epoch"), fold.get("history")
        if best is None or not isinstance(history, list):
            return MISSING
        cells.append(f"{best}/{len(history)}")
    return ", ".join(cells) if cells else MISSING


_HEAD_TASKS = (
    ("emotion", "uar", "emotion UAR %"),
    ("gender", "accuracy", "gender acc. %"),
    ("speaker", "accuracy", "speaker-ID acc. %"),
)


def _mean_sd(data: dict[str, Any] | None, key: str) -> str:
    return MISSING if data is None else percent(data.get(f"{key}_mean"), data.get(f"{key}_std"))


def _heads(given: ViewInput) -> Rendered:
    """Emotion, gender and speaker-ID figures of each frozen backbone: the linear probes on all
    layers and on the layer chosen on dev (per fold), and the trained heads (with their best
    dev epochs). Fold means ± population sd over folds; every choice was made on dev."""
    body = []
    for entry in _measured(given.profile, bases_only=True):
        directory = given.settings.runs / (entry.directory or entry.name)
        probe = _json(directory / "probe" / "metrics.json")
        heads = {task: _json(directory / task / "metrics.json") for task, _, _ in _HEAD_TASKS}
        rows = [
            (
                "linear probe, all layers",
                [_mean_sd(probe, f"{t}_test_{m}") for t, m, _ in _HEAD_TASKS],
            ),
            (
                "linear probe, layer chosen on dev",
                [_mean_sd(probe, f"{t}_dev_chosen_layer_test_{m}") for t, m, _ in _HEAD_TASKS],
            ),
            (
                "layer chosen on dev, per fold",
                [
                    _fold_list((probe or {}).get(f"{t}_dev_chosen_layers"))
                    for t, _, _ in _HEAD_TASKS
                ],
            ),
            ("head", [_mean_sd(heads[t], f"test_{m}") for t, m, _ in _HEAD_TASKS]),
            (
                "head: best dev epoch / epochs run, per fold",
                [
                    MISSING if heads[t] is None else _head_epochs(heads[t])
                    for t, _, _ in _HEAD_TASKS
                ],
            ),
        ]
        body += [
            [entry.name if i == 0 else "", label, *cells] for i, (label, cells) in enumerate(rows)
        ]
    header = ["model", "classifier", *(title for _, _, title in _HEAD_TASKS)]
    return Rendered(_md_table(header, body))


def _json(path: Path) -> dict[str, Any] | None:
    data = read_json(path) if path.is_file() else None
    return data if isinstance(data, dict) else None


def _snr_range(path: Path) -> str:
    """``min–max (mean)`` of the measured SNR of a per-clip attack file."""
    if not path.is_file():
        return MISSING
    with open(path, newline="", encoding="utf-8") as handle:
        values = [float(r["snr_db"]) for r in csv.DictReader(handle) if r.get("snr_db")]
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return MISSING
    low, high, mean = min(values), max(values), sum(values) / len(values)
    return f"{low:.1f}" if high - low < 0.05 else f"{low:.1f}–{high:.1f} (mean {mean:.1f})"


def _attack_row(
    name: str, label: str, folds: str, summary: dict[str, Any], clips: Path
) -> list[str]:
    """One row of the attacks view from an attack's ``summary.json`` and its per-clip file."""
    attacked, pooled = summary.get("num_attacked"), summary.get("asr_pooled")
    one_fold = len(summary.get("folds") or []) == 1  # no spread over folds to show
    flipped = (
        f"{round(pooled * attacked)} / {attacked}"
        if isinstance(attacked, int) and isinstance(pooled, (int, float))
        else MISSING
    )
    return [
        name,
        label,
        f"{float(summary.get('snr_db', math.nan)):g}",
        folds,
        percent(summary.get("asr_mean"), None if one_fold else summary.get("asr_std")),
        flipped,
        _snr_range(clips),
    ]


def _attacks(given: ViewInput) -> Rendered:
    """Every attack of every measured model: the folds attacked (named when fewer than the
    most any attack in the table covers), ASR over the clips the clean model got right (fold
    mean ± sd), flipped / attacked over those folds, and the SNR each clip was measured at. A
    randomized variant's attack is the adaptive one (``EOT-E``: E noise draws per gradient),
    with the plain attack on the same clips in the row below it."""
    found = []
    for entry in _measured(given.profile):
        directory = given.settings.runs / (entry.directory or entry.name)
        for attack in (entry.safety or {}).get("attacks") or []:
            folder = directory / str(attack.get("directory", ""))
            summary = {**attack, **(maybe_json(folder / "summary.json") or {})}
            found.append((entry.name, folder, summary))
    most = max((len(s.get("folds") or []) for _, _, s in found), default=0)

    def folds_text(summary: dict[str, Any]) -> str:
        names = [str(f.get("fold", "?")) for f in summary.get("folds") or []]
        if not names:
            return MISSING
        return str(len(names)) if len(names) == most else f"{len(names)}: {', '.join(names)}"

    body, shown = [], set()
    for name, folder, summary in found:
        first = "" if name in shown else name
        shown.add(name)
        settings = summary.get("settings") or {}
        eot = settings.get("eot_samples")
        method = str(summary.get("method", MISSING))
        label = f"{method}, EOT-{eot}" if eot else method
        body.append(_attack_row(first, label, folds_text(summary), summary, folder / "clips.csv"))
        plain = folder / "plain" / "summary.json"
        if eot and plain.is_file():
            plain_summary = read_json(plain)
            body.append(
                _attack_row(
                    "",
                    f"{method}, plain",
                    folds_text(plain_summary),
                    plain_summary,
                    plain.parent / "clips.csv",
                )
            )
    header = ["model", "attack", "SNR dB", "folds", "ASR % (fold mean ± sd)", "flipped / attacked"]
    return Rendered(_md_table([*header, "measured SNR dB"], body))


def _intervals(given: ViewInput) -> Rendered:
    """How each interval of each frozen backbone was computed: the figure's key in
    profile.json, its value and interval, the bootstrap's method and undefined replicates."""
    body = []
    for entry in _measured(given.profile, bases_only=True):
        for index, (key, found) in enumerate(sorted((entry.intervals or {}).items())):
            value, low, high = found.get("value"), found.get("low"), found.get("high")
            shown = MISSING if value is None else f"{value:.4g}"
            if low is not None and high is not None and (low != value or high != value):
                shown += f" [{low:.4g}, {high:.4g}]"
            undefined = found.get("undefined_replicates")
            body.append(
                [
                    entry.name if index == 0 else "",
                    f"`{key}`",
                    shown,
                    str(found.get("method", MISSING)),
                    MISSING if undefined is None else str(undefined),
                ]
            )
    header = ["model", "figure", "value [95 % interval]", "method", "undefined replicates"]
    return Rendered(_md_table(header, body))


def _verification_markdown(metrics_path: Path) -> tuple[str, str | None]:
    """One verification run's summary (:func:`trustser.verification.table.summary_table`, as
    ``trustser privacy verify`` prints it) as a titled Markdown table, and why its trials were
    pooled across folds (None: they were not)."""
    metrics = _json(metrics_path)
    if metrics is None:
        raise ResultsDocError(f"{metrics_path} is not a JSON object; rerun the verification.")
    summary = summary_table(metrics, where=str(metrics_path))
    rows = [row for group in summary.groups.values() for row in group]
    layers = "; ".join(f"{name} {text}" for name, text in summary.layers.items())
    markdown = (
        f"**{summary.title}** — {summary.caption}.\n\n"
        + _md_table(summary.header, rows)
        + f"\nLayer chosen on dev: {layers}.\n"
    )
    return markdown, summary.pooled_reason


def _verification(given: ViewInput) -> Rendered:
    """Linkability from each model's speaker-verification runs (``verification/metrics.json``
    and each emotion's ``verification/<emotion>/metrics.json``): per run, EER and minDCF of
    each attacker with the run's own speaker-bootstrap intervals, in all and per gender. Read
    from those files alone (the profile is not collected; no ``trials.csv`` is needed)."""
    settings = given.settings
    names = list(settings.models) or discover_backbones(settings.runs)
    layout = RunLayout(settings.runs)
    parts: list[str] = []
    lacking: list[str] = []
    reasons: dict[str, None] = {}
    for name in names:
        runs = verification_runs(layout.verification_dir(name))
        if not runs:
            lacking.append(name)
            continue
        for metrics_path in runs.values():
            markdown, pooled_reason = _verification_markdown(metrics_path)
            parts.append(markdown)
            if pooled_reason:
                reasons[pooled_reason] = None
    if not parts:
        raise ResultsDocError(
            f"block {given.block.name!r}: no model of profile {settings.name!r} has speaker "
            f"verification results (verification/metrics.json under {settings.runs}/<model>/; "
            f"models: {', '.join(names) or 'none'}). Run `trustser privacy verify` and import "
            "the results with `trustser results import`."
        )
    notes = [f"Trials pooled across folds: {reason.rstrip('.')}." for reason in reasons]
    if lacking:
        notes.append(f"No speaker verification for {', '.join(lacking)}.")
    return Rendered("\n".join(parts) + "".join(f"\n{note}\n" for note in notes))


def _radar(given: ViewInput) -> Rendered:
    """The radar chart of every row of the profile (the paper's rows included), as SVG."""
    profile = given.profile
    names = ", ".join(b.name for b in profile.backbones)
    figure = radar_figure(
        profile.backbones,
        scale=profile.scale,
        scales=profile.scales,
        attack=profile.attack,
        title="Trust profiles compared"
        if len(profile.backbones) > 1
        else profile.backbones[0].name,
    )
    name = given.block.name.replace("/", "-") + ".svg"
    link = f"{given.figure_link}/{name}" if given.figure_link else name
    return Rendered(f"![Radar chart: {names}]({link})\n", {name: figure_svg(figure)})


def _robustness(given: ViewInput) -> Rendered:
    """Each measured row under the corruption suite: clean UAR, the UAR drop and the share of
    unchanged predictions (suite means with intervals, per gender), the ranking by UAR clean
    and corrupted; then every case, a column per row (UAR drop in points / unchanged %)."""
    axis = get_axis("robustness")
    rows = [(b, axis.details(b)) for b in _measured(given.profile)]
    rows = [(b, d) for b, d in rows if d]
    if not rows:
        raise ResultsDocError(
            f"block {given.block.name!r}: no model of profile {given.settings.name!r} has "
            "robustness results; run `trustser robustness` and import them with "
            "`trustser results import`."
        )

    def corrupted(d: dict[str, Any]) -> float | None:
        clean, drop = d.get("clean_uar"), d.get("uar_drop")
        return None if clean is None or drop is None else clean - drop

    def ranks(key: Callable[[dict[str, Any]], float | None]) -> dict[str, int]:
        """1 + the number of rows strictly ahead (tied rows share a rank)."""
        values = {b.name: round(key(d) or 0.0, 9) for b, d in rows}
        return {n: 1 + sum(other > v for other in values.values()) for n, v in values.items()}

    clean_rank, corrupted_rank = ranks(lambda d: d.get("clean_uar")), ranks(corrupted)
    summary = [
        [
            b.name,
            percent(d.get("clean_uar")),
            percent(corrupted(d)),
            interval_text(b, DROP, d.get("uar_drop")),
            interval_text(b, axis.name, b.raw.get(axis.name)),
            " / ".join(
                percent(((d.get("per_gender") or {}).get(g) or {}).get("unchanged"))
                for g in ("female", "male")
            ),
            f"{clean_rank[b.name]} → {corrupted_rank[b.name]}",
        ]
        for b, d in rows
    ]
    header = [
        "model",
        "clean UAR %",
        "corrupted UAR % (suite mean)",
        "UAR drop pts",
        "unchanged %",
        "unchanged F / M %",
        "rank by UAR: clean → corrupted",
    ]
    cases: dict[str, dict[str, str]] = {}
    for b, d in rows:
        for case in d.get("cases", []):
            drop, same = case.get("uar_drop"), case.get("unchanged")
            cases.setdefault(case["name"], {})[b.name] = (
                f"{MISSING if drop is None else f'{100 * drop:.1f}'} / {percent(same)}"
            )
    detail = [
        [name, *(found.get(b.name, MISSING) for b, _ in rows)] for name, found in cases.items()
    ]
    return Rendered(
        _md_table(header, summary)
        + "\nPer case: UAR drop in points / unchanged predictions %.\n\n"
        + _md_table(["case", *(b.name for b, _ in rows)], detail)
    )


def _recommend(given: ViewInput) -> Rendered:
    """``trustser recommend`` for each of the paper's Table 5 scenarios over the profile's rows:
    the ranking with weighted scores and how often each row ranks first over the speaker
    bootstrap, the choice (a tie where no row is first in 95 % of the replicates), and the
    paper's own choice beside it. Only measured rows are ranked: the paper's rows of the
    profile are its reference, not candidates."""
    measured = [b for b in given.profile.backbones if not b.reference]
    profile = dataclasses.replace(given.profile, backbones=measured)
    lines = [
        "| scenario | ranking: weighted score (first in % of replicates) | choice | paper's Table 5 |",
        "|---|---|---|---|",
    ]
    notes: list[str] = []
    for scenario in SCENARIOS:
        result = recommend(profile, scenario=scenario)
        ranked = "; ".join(
            f"{r.rank}. {r.backbone} {r.score:.3f}"
            + ("" if r.first_share is None else f" ({r.first_share:.0%})")
            for r in result.ranking
        )
        lines.append(
            f"| **{scenario}** | {ranked} | {result.verdict} | {result.paper_choice or MISSING} |"
        )
        notes.append(f"- **{scenario}** ({result.description}): {weights_text(result)}.")
        notes += [f"  - not ranked: {k} — {v}" for k, v in result.excluded.items()]
        notes += [
            f"  - {text}" for text in [unweighed_text(result), saturated_text(result)] if text
        ]
    return Rendered("\n".join([*lines, "", "Weights per scenario:", "", *notes]) + "\n")


VIEWS: dict[str, View] = {
    view.name: view
    for view in (
        _section_view("design", "", "the scale and the interval design (profile.md's opening)"),
        _section_view("scores", "Scores", "the scores per axis with intervals (profile.md)"),
        View(
            "raw", "every raw figure with its interval: a row per figure, a column per model", _raw
        ),
        _section_view(
            "mitigations", "Mitigations", "each mitigation against its base (profile.md)"
        ),
        _section_view("comparisons", "Paired comparisons", "paired differences (profile.md)"),
        _section_view(
            "training", "Training cost", "what each variant's training cost (profile.md)"
        ),
        _section_view("scales", "Scales", "each axis's scale (profile.md)"),
        _section_view("notes", "Notes", "the profile's notes (profile.md)"),
        View("heads", "linear probes (all layers, layer chosen on dev) and heads", _heads),
        View("attacks", "every attack: ASR, flipped / attacked, measured SNR", _attacks),
        View("intervals", "how each interval of a frozen backbone was computed", _intervals),
        View("radar", "the radar chart of every row (SVG)", _radar),
        View(
            "robustness",
            "the corruption suite: clean and corrupted UAR, unchanged predictions, the ranking "
            "clean → corrupted, and every case per model",
            _robustness,
        ),
        View(
            "recommend",
            "trustser recommend for the paper's three scenarios beside its Table 5 choice",
            _recommend,
        ),
        View(
            "verification",
            "linkability: each model's speaker-verification runs (EER, minDCF per attacker, "
            "intervals, per gender), from their metrics.json",
            _verification,
        ),
    )
}


# --------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class Rendering:
    """A document as the current code renders it: its text and its figure files."""

    path: Path
    text: str
    figures: dict[Path, bytes]
    figure_dir: Path
    blocks: list[Block]


def _default_dirs(path: Path) -> tuple[Path, Path]:
    """docs/results.md → data docs/results/, figures docs/img/results/."""
    return path.with_suffix(""), path.parent / "img" / path.stem


def render_document(
    path: str | Path,
    *,
    data: str | Path | None = None,
    figures: str | Path | None = None,
) -> Rendering:
    """Render every block of the document at ``path`` from the data directory ``data``
    (default: the document's path without ``.md``), with figures in ``figures`` (default:
    ``img/<document stem>/`` beside the document). Each profile is collected once, however
    many blocks show it."""
    path = Path(path)
    default_data, default_figures = _default_dirs(path)
    data = Path(data) if data is not None else default_data
    figure_dir = Path(figures) if figures is not None else default_figures
    original = path.read_text(encoding="utf-8")
    blocks = parse_blocks(original, path)
    if not blocks:
        raise ResultsDocError(
            f"{path} has no generated block; mark one with {BEGIN.format(name='<profile>/<view>')}"
            f" … {END.format(name='<profile>/<view>')}."
        )
    settings = read_settings(data)
    link = os.path.relpath(figure_dir, path.parent).replace(os.sep, "/")
    profiles: dict[str, Profile] = {}
    lines = original.splitlines(keepends=True)
    out: list[str] = []
    position = 0
    rendered_figures: dict[Path, bytes] = {}
    for block in blocks:
        if block.profile not in settings:
            raise ResultsDocError(
                f"{path}:{block.begin + 1}: block {block.name!r} names profile {block.profile!r}, "
                f"which {data / SETTINGS_FILE} does not define (it has: {', '.join(settings)})."
            )
        view = VIEWS.get(block.view)
        if view is None:
            raise ResultsDocError(
                f"{path}:{block.begin + 1}: block {block.name!r} names view {block.view!r}; the "
                f"views are {', '.join(VIEWS)}."
            )
        chosen = settings[block.profile]

        def collect(name: str = block.profile, chosen: ProfileSettings = chosen) -> Profile:
            if name not in profiles:
                profiles[name] = chosen.collect()
            return profiles[name]

        result = view.render(ViewInput(block, chosen, collect, link))
        out += lines[position : block.begin + 1]
        out += ["\n", result.markdown.rstrip("\n") + "\n", "\n"]
        position = block.end
        for name, content in result.figures.items():
            rendered_figures[figure_dir / name] = content
    out += lines[position:]
    return Rendering(path, "".join(out), rendered_figures, figure_dir, blocks)


def _stale_figures(rendering: Rendering) -> list[Path]:
    """SVG files in the figure directory that no block renders any more."""
    if not rendering.figure_dir.is_dir():
        return []
    return sorted(p for p in rendering.figure_dir.glob("*.svg") if p not in rendering.figures)


def drift(rendering: Rendering) -> list[str]:
    """What on disk differs from ``rendering``: each block whose text changed, each figure that
    is missing, different or no longer rendered. Empty when the document is up to date."""
    problems: list[str] = []
    current = rendering.path.read_text(encoding="utf-8")
    if current != rendering.text:
        old_lines, new_lines = current.splitlines(), rendering.text.splitlines()
        old_blocks = {b.name: b for b in parse_blocks(current, rendering.path)}
        new_blocks = {b.name: b for b in parse_blocks(rendering.text, rendering.path)}
        for name, new in new_blocks.items():
            old = old_blocks.get(name)
            if old is None or old_lines[old.begin : old.end] != new_lines[new.begin : new.end]:
                problems.append(f"{rendering.path}: block {name!r} differs from its rendering")
        if not problems:
            problems.append(f"{rendering.path}: differs from its rendering outside the blocks")
    for figure, content in sorted(rendering.figures.items()):
        if not figure.is_file():
            problems.append(f"{figure}: missing")
        elif figure.read_bytes() != content:
            problems.append(f"{figure}: differs from its rendering")
    problems += [f"{p}: no block renders it any more" for p in _stale_figures(rendering)]
    return problems


def write_rendering(rendering: Rendering) -> list[Path]:
    """Write the document and its figures where they changed, and remove figures no block
    renders any more; returns the files written or removed."""
    changed: list[Path] = []
    if rendering.path.read_text(encoding="utf-8") != rendering.text:
        rendering.path.write_text(rendering.text, encoding="utf-8")
        changed.append(rendering.path)
    for figure, content in sorted(rendering.figures.items()):
        if not figure.is_file() or figure.read_bytes() != content:
            figure.parent.mkdir(parents=True, exist_ok=True)
            figure.write_bytes(content)
            changed.append(figure)
    for stale in _stale_figures(rendering):
        stale.unlink()
        changed.append(stale)
    return changed


# --------------------------------------------------------------------------- importing results


@dataclass(frozen=True)
class ImportedResults:
    """What :func:`import_results` copied: the files (relative to ``out``) and their bytes."""

    out: Path
    files: list[Path]
    total_bytes: int


def _relative_text(text: str, root: Path) -> str:
    """``text`` with the absolute paths of ``root`` made relative to it (a JSON file's store
    and weights paths: the copy must not name the machine it was made on), and those of the
    directories above it too (a store beside the results: ``../cache.zarr``), up to the
    filesystem's root."""
    for form in {str(root), str(root.resolve())}:
        escaped = form.replace("\\", "\\\\")
        text = text.replace(escaped + "/", "").replace(f'"{escaped}"', '"."')
    for depth, ancestor in enumerate(root.resolve().parents, start=1):
        if ancestor.parent == ancestor:
            break
        escaped = re.escape(str(ancestor).replace("\\", "\\\\"))
        up = "/".join([".."] * depth)
        text = re.sub(rf'(?<![\w.\-/]){escaped}(?=["/])', up, text)
    return text


def _copy_result(source: Path, target: Path, root: Path) -> int:
    size = source.stat().st_size
    if size > MAX_FILE_BYTES:
        hint = (
            " A verification run's trials.csv: pass --no-trials (the verification view needs "
            "only its metrics.json)."
            if source.name == "trials.csv"
            else ""
        )
        raise ResultsDocError(
            f"{source} has {size} bytes (over {MAX_FILE_BYTES}); a results document's data must "
            f"stay small. Import fewer models, or leave this file out.{hint}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix == ".json":
        target.write_text(
            _relative_text(source.read_text(encoding="utf-8"), root), encoding="utf-8"
        )
        read_json(target)  # still valid JSON
    else:
        shutil.copyfile(source, target)
    return target.stat().st_size


def _copy_manifest(source: Path, target: Path) -> int:
    """The manifest with each audio path relative to the corpus root (or, when the root does not
    hold them all, to the audio's common directory) and no root: folds, speakers, genders and
    labels, without naming where the audio lives."""
    manifest = read_manifest(source, check=False)
    paths = [Path(u.path) for u in manifest.utterances]
    base = Path(manifest.root) if manifest.root else None
    if base is None or not all(p.is_relative_to(base) for p in paths):
        base = Path(os.path.commonpath(paths)) if paths else Path()
    utterances = tuple(
        u.with_path(Path(u.path).relative_to(base).as_posix()) for u in manifest.utterances
    )
    write_manifest(dataclasses.replace(manifest, utterances=utterances, root=""), target)
    return target.stat().st_size


def import_results(
    runs: str | Path,
    out: str | Path,
    *,
    models: Sequence[str] | None = None,
    replace: bool = False,
    trials: bool = True,
) -> ImportedResults:
    """Copy the files a profile of ``models`` (default: every results directory) is computed
    from (:data:`DATA_FILES`) from the results directory ``runs`` to ``out``, with ``runs``'s
    ``manifest.jsonl`` when it has one. Absolute paths under ``runs`` (and the directories above
    it) become relative; audio paths become relative to the corpus root. ``replace`` first
    removes a model's directory already in ``out`` (otherwise that is refused: old files would
    mix with new). ``trials=False`` leaves out the verification runs' per-trial scores
    (:data:`TRIAL_FILES`): the ``verification`` view shows each run's own figures and intervals
    without them, but a profile then has no interval of the EER on its own draws and no paired
    comparison of it."""
    root, out = Path(runs), Path(out)
    names = list(models) if models else discover_backbones(root)
    if not names:
        raise ResultsDocError(
            f"no results under {str(root)!r}; pass the directory `trustser run` wrote."
        )
    layout, copied, total = RunLayout(root), [], 0
    for name in names:
        source = layout.backbone_dir(name)
        if not source.is_dir():
            raise ResultsDocError(
                f"no results directory for {name!r} under {str(root)!r} (looked for {source.name}); "
                f"there are: {', '.join(discover_backbones(root)) or 'none'}."
            )
        target = out / source.name
        if target.exists():
            if not replace:
                raise ResultsDocError(
                    f"{target} exists; pass --replace to replace it with the files of {source}."
                )
            shutil.rmtree(target)
        patterns = [p for p in DATA_FILES if trials or p not in TRIAL_FILES]
        files = sorted({f for pattern in patterns for f in source.glob(pattern) if f.is_file()})
        for file in files:
            total += _copy_result(file, target / file.relative_to(source), root)
            copied.append(target.relative_to(out) / file.relative_to(source))
    manifest = root / "manifest.jsonl"
    if manifest.is_file():
        total += _copy_manifest(manifest, out / manifest.name)
        copied.append(Path(manifest.name))
    return ImportedResults(out, copied, total)
