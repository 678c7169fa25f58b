"""Reading the results layout into a profile: what each stage wrote under ``runs/``.

``collect_profile`` reads what the other stages wrote under ``runs/`` (see :mod:`trustser.runs`):
each registered axis (:mod:`trustser.profile.axes`) collects its raw figure and details from a
model's results directory — the emotion head's ``metrics.json`` and ``predictions.csv``
(performance, fairness), the gender and speaker heads and the probes (privacy),
``attack-*/summary.json`` (safety), ``cost.json`` (sustainability) — then the profile is
bootstrapped and scored (:mod:`trustser.profile.intervals`, :mod:`trustser.profile.scales`).
An axis that was not run is ``None`` and names the command that would fill it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trustser._validation import TrustSERError, check_choice
from trustser.heads.precision import precision_label
from trustser.metrics.bootstrap import DEFAULT_REPLICATES
from trustser.metrics.bootstrap import interval as bootstrap_interval
from trustser.profile.axes import axis_options, details_order, new_row, registered_axes
from trustser.profile.axis import Axis, Commands, Figure, Reading
from trustser.profile.intervals import DEFAULT_SEED, bootstrap_profile, comparison_table
from trustser.profile.model import (
    DEFAULT_ATTACK,
    MEAN_CORPUS,
    BackboneProfile,
    Profile,
    ProfileError,
)
from trustser.profile.paper import paper_reference
from trustser.profile.results import Results, maybe_json
from trustser.profile.scales import SCALE_MODES, score_profile
from trustser.runs import DEFAULT_RUNS, TASKS, ModelName, RunLayout, safe_name
from trustser.variants import parse as parse_variant

__all__ = [
    "collect_backbone",
    "collect_profile",
    "corpus_runs",
    "discover_backbones",
    "holds_results",
    "with_variants",
]


def _backbone_dir(runs: Path, name: str) -> Path:
    """``runs/<name>`` when that directory exists (any name), else the layout's directory."""
    given = runs / name
    if name and "/" not in name and given.is_dir():
        return given
    return RunLayout(runs).backbone_dir(name)


def _display_name(base: Path, name: str) -> str:
    """The backbone spec recorded by the stages (``tiny:whisper``), else the name as given."""
    for path in (
        base / "emotion" / "metrics.json",
        base / "cost.json",
        base / "gender" / "metrics.json",
    ):
        data = maybe_json(path) if path.is_file() else None
        if (
            data
            and isinstance(data.get("backbone"), str)
            and RunLayout(base.parent).backbone_dir(data["backbone"]).name == base.name
        ):
            return data["backbone"]
    return name


def _store_of(base: Path) -> str | None:
    config = maybe_json(base / "emotion" / "config.json")
    store = (config or {}).get("store")
    if isinstance(store, dict) and isinstance(store.get("path"), str):
        return store["path"]
    return None


def _apply(entry: BackboneProfile, axis: Axis, reading: Reading | None) -> None:
    """Put what ``axis`` read into the row."""
    if reading is None:
        return
    axis.set_details(entry, reading.details)
    entry.raw[axis.name] = reading.raw
    entry.context.update(reading.context)
    entry.notes.extend(reading.notes)
    if reading.not_measurable is not None:
        entry.not_measurable[axis.name] = reading.not_measurable


def collect_backbone(
    runs: str | Path,
    name: str,
    *,
    store: str | None = None,
    attack: tuple[str, float] = DEFAULT_ATTACK,
    options: Mapping[str, str] | None = None,
) -> BackboneProfile:
    """Everything measured for backbone ``name`` under ``runs``: every registered axis reads
    its figure; an axis not run names its command (one not measurable, its reason).
    ``options``: the axes' options (:func:`~trustser.profile.axes.axis_options`)."""
    root = Path(runs)
    base = _backbone_dir(root, name)
    display = _display_name(base, name)
    model_name = ModelName.parse(display)
    entry = new_row(display, directory=base.name)
    if model_name.is_variant:
        entry.base = _display_name(_backbone_dir(root, model_name.base), model_name.base)
        entry.variant = model_name.tag
    results = Results(base, attack=attack, options=options, model=display)
    entry.dev = _dev_figures(root, model_name)
    entry.training = _training(results.metrics("emotion"))
    entry.probe = results.probe()
    for axis in details_order():
        _apply(entry, axis, axis.collect(results))
    commands = Commands(display, str(runs), store or _store_of(base), attack)
    for axis in registered_axes():
        if entry.raw[axis.name] is None and axis.name not in entry.not_measurable:
            entry.missing[axis.name] = axis.command(commands)
    return entry


def holds_results(directory: str | Path) -> bool:
    """Whether ``directory`` is a backbone's results directory, whatever its name: it holds a
    head's or probe's ``metrics.json``, an attack's ``summary.json``, a speaker verification's
    ``verification/metrics.json`` or a ``cost.json``.

    Other folders under a results root — a ``trustser run`` folder's ``cache.zarr`` and
    ``report/``, say — are not backbones.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return False
    if (directory / "cost.json").is_file() or (
        directory / "verification" / "metrics.json"
    ).is_file():
        return True
    for part, files in [
        *((t, ("metrics.json", "predictions.csv")) for t in TASKS),
        ("probe", ("metrics.json",)),
    ]:
        if any((directory / part / f).is_file() for f in files):
            return True
    return any(directory.glob("attack-*/summary.json"))


def discover_backbones(runs: str | Path, store: str | None = None) -> list[str]:
    """The backbones to profile: every directory under ``runs`` holding results
    (:func:`holds_results`), then the groups of ``store`` (when given) that have none yet, so a
    freshly extracted backbone shows which commands would fill its axes."""
    root = Path(runs)
    names = [d for d in RunLayout(root).backbones() if holds_results(root / d)]
    if store is not None:
        from trustser.store import open_store

        have = {safe_name(name) for name in names}
        names += [g for g in open_store(store).backbones if safe_name(g) not in have]
    return _variants_after_bases(RunLayout(root), names)


def _variants_after_bases(layout: RunLayout, names: Sequence[str]) -> list[str]:
    """``names`` reordered so that each base's variants (``<base>@top1`` …) follow it; a variant
    whose base is not among ``names`` keeps its place."""

    def directory(name: str) -> str:
        return layout.backbone_dir(name).name

    variants: dict[str, list[str]] = {}
    for name in names:
        parsed = ModelName.parse(name)
        if parsed.is_variant and any(directory(parsed.base) == directory(n) for n in names):
            variants.setdefault(directory(parsed.base), []).append(name)
    placed = {v for group in variants.values() for v in group}
    out: list[str] = []
    for name in names:
        if name in placed:
            continue
        out.append(name)
        out += variants.get(directory(name), []) if not ModelName.parse(name).is_variant else []
    return out


def with_variants(layout: RunLayout, names: Sequence[str]) -> list[str]:
    """``names`` with the variant directories of each (``<backbone>@top1`` …) right after it."""
    out: list[str] = []
    for name in names:
        out.append(name)
        out += [v for v in layout.variants(name) if v not in out and v not in names]
    return out


def _dev_figures(root: Path, model: ModelName) -> dict[str, Any]:
    """A variant's dev figures, as its kind reads them (empty for a backbone or a kind that
    chooses nothing on dev)."""
    try:
        variant = parse_variant(model) if model.is_variant else None
    except (ValueError, TrustSERError):  # a malformed tag: the row says so elsewhere
        variant = None
    if variant is None:
        return {}
    return dict(variant.dev_figures(RunLayout(root)) or {})


def _mean_dev(rows: Sequence[BackboneProfile]) -> dict[str, Any]:
    """The mean over corpora of the rows' numeric dev figures (empty unless every row has
    them)."""
    figures = [r.dev for r in rows]
    if not figures or not all(figures):
        return {}
    keys = [
        k for k, v in figures[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    out: dict[str, Any] = {}
    for key in keys:
        values = [f.get(key) for f in figures]
        if all(isinstance(v, (int, float)) for v in values):
            out[key] = float(np.mean(values))
    return out


def _training(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """What training the emotion model cost: trainable parameters and seconds (all folds), and
    for a fine-tuned variant K, the blocks' parameters and learning rate."""
    if metrics is None:
        return None
    variant = metrics.get("variant") if isinstance(metrics.get("variant"), dict) else {}
    training = {
        "trainable_parameters": metrics.get("trainable_parameters"),
        "fit_seconds": metrics.get("fit_seconds_total"),
        "num_folds": metrics.get("num_folds"),
        "trained": variant.get("trained", "head only (backbone frozen)"),
    }
    for key in ("k", "block_parameters", "block_lr"):
        if key in variant:
            training[key] = variant[key]
    precision = _precision(metrics.get("precision"))
    if precision is not None:  # runs made before it was recorded have none
        training["precision"] = precision
    return training


def _precision(record: Any) -> str | None:
    """The emotion heads' training precision as a short text (``mixed`` when folds differ)."""
    if isinstance(record, list):
        labels = {precision_label(r) for r in record} - {None}
        return labels.pop() if len(labels) == 1 else ("mixed" if labels else None)
    return precision_label(record)


def collect_profile(
    runs: str | Path | Sequence[str | Path] = DEFAULT_RUNS,
    *,
    store: str | None = None,
    backbones: Sequence[str] | None = None,
    scale: str = "paper",
    attack: tuple[str, float] = DEFAULT_ATTACK,
    paper: Sequence[str] | None = None,
    bootstrap: int = DEFAULT_REPLICATES,
    seed: int = DEFAULT_SEED,
    options: Mapping[str, str] | None = None,
) -> Profile:
    """Collect and score the profile of ``backbones`` (default: :func:`discover_backbones` —
    every results directory under ``runs``, and the store's groups without results yet),
    optionally beside the paper's rows named in ``paper``; ``options`` chooses how axes are
    measured (``{"privacy_score": "strongest"}``, :func:`~trustser.profile.axes.axis_options`).

    ``bootstrap`` speaker-level replicates (seeded by ``seed``; 0 = none) give every figure its
    95 % interval and, with several measured rows, the paired comparisons of every pair
    (:mod:`trustser.profile.intervals`).

    Several ``runs`` (one corpus each), or one directory holding corpus directories (a
    multi-corpus ``trustser run``'s output), give a profile across corpora: per backbone the
    mean over corpora with the interval of the mean (``name (mean)``), then per corpus a row per
    backbone (``name (corpus)``); ``store`` then plays no part."""
    check_choice("scale", scale, SCALE_MODES)
    check_choice("attack method", attack[0], ("fgsm", "pgd", "noise"))
    several = [runs] if isinstance(runs, (str, Path)) else list(runs)
    if not several:
        raise ProfileError("nothing to profile: no results directory given")
    multi = len(several) > 1 or _multi_corpus(several[0])
    directories = corpus_runs(several) if multi else {}
    if len(directories) > 1:
        per_corpus = {
            corpus: collect_profile(
                directory,
                backbones=backbones,
                scale=scale,
                attack=attack,
                bootstrap=bootstrap,
                seed=seed + index,  # corpora are independent draws
                options=options,
            )
            for index, (corpus, directory) in enumerate(directories.items())
        }
        notes = _option_notes(axis_options(options, scale))
        return _across_corpora(
            per_corpus, directories, paper=paper, bootstrap=bootstrap, seed=seed, notes=notes
        )
    runs = next(iter(directories.values())) if directories else several[0]
    chosen_options = axis_options(options, scale)
    names = list(backbones) if backbones else discover_backbones(runs, store)
    if not names and not paper:
        raise ProfileError(
            f"nothing to profile: no backbone results under {str(runs)!r}"
            + (f" and no backbone in store {store!r}" if store else "")
            + "; run `trustser heads fit --store <cache.zarr> --backbone NAME` first, or pass "
            "--runs pointing at your results."
        )
    seen: set[str] = set()
    chosen = []  # one row per results directory
    for name in names:
        if safe_name(name) not in seen:
            seen.add(safe_name(name))
            chosen.append(name)
    entries = [
        collect_backbone(runs, n, store=store, attack=attack, options=chosen_options)
        for n in chosen
    ]
    if paper:
        entries += paper_reference(paper)
    method, snr = attack
    profile = Profile(
        backbones=entries,
        scale=scale,
        scales={},
        attack={"method": method, "snr_db": float(snr)},
        runs=str(runs),
        store=store,
        notes=_option_notes(chosen_options),
    )
    profile = score_profile(
        bootstrap_profile(profile, runs, replicates=bootstrap, seed=seed), scale
    )
    profile.comparisons = comparison_table(profile)
    return profile


def _option_notes(options: Mapping[str, str]) -> list[str]:
    """A note per axis option set to other than its default: what the axis then measures."""
    return [
        f"{axis.name}: {option.name} = {options[option.name]} — "
        f"{option.meaning[options[option.name]]}"
        for axis in registered_axes()
        for option in axis.options
        if options.get(option.name, option.default) != option.default
    ]


# --------------------------------------------------------------------------- across corpora


def _multi_corpus(path: str | Path) -> bool:
    """Whether ``path`` holds no backbone results itself but corpus directories that do (the
    output directory of a multi-corpus ``trustser run``)."""
    path = Path(path)
    if not path.is_dir() or discover_backbones(path):
        return False
    return any(d.is_dir() and discover_backbones(d) for d in path.iterdir())


def corpus_runs(paths: Sequence[str | Path]) -> dict[str, Path]:
    """The results directory of each corpus: every path that holds backbone results is one
    corpus (named after its directory); a path that holds none but has subdirectories that do —
    the output of a multi-corpus ``trustser run --config`` (``out/<corpus>/<backbone>/``) —
    gives one corpus per such subdirectory."""
    found: dict[str, Path] = {}
    for path in map(Path, paths):
        if discover_backbones(path):
            candidates = [path]
        elif path.is_dir():
            candidates = [d for d in sorted(path.iterdir()) if d.is_dir() and discover_backbones(d)]
        else:
            candidates = []
        if not candidates:
            raise ProfileError(
                f"no backbone results under {str(path)!r} nor under its subdirectories; pass a "
                "results directory (runs/) or the output directory of `trustser run`."
            )
        for directory in candidates:
            name = directory.resolve().name
            if name in found:
                raise ProfileError(
                    f"two results directories are both named {name!r} ({str(found[name])!r}, "
                    f"{str(directory)!r}); a corpus is named after its directory."
                )
            found[name] = directory
    return found


def _mean_axis(
    entry: BackboneProfile,
    axis: Axis,
    rows: dict[str, BackboneProfile],
    replicates: int,
) -> None:
    """The mean over corpora of one axis's figure, and its interval: the range over corpora for
    a counted axis, else the mean of the corpora's replicates."""
    name = axis.name
    values = [r.raw.get(name) for r in rows.values()]
    unmeasurable = {c: r.not_measurable[name] for c, r in rows.items() if name in r.not_measurable}
    if unmeasurable:  # a corpus that cannot measure it leaves the mean not measurable too
        entry.not_measurable[name] = "; ".join(f"on {c}: {why}" for c, why in unmeasurable.items())
        return
    if any(v is None for v in values):
        lacking = [c for c, r in rows.items() if r.raw.get(name) is None]
        entry.notes.append(f"{name}: not measured on {', '.join(lacking)}; no mean.")
        entry.missing[name] = next(
            (r.missing[name] for r in rows.values() if name in r.missing), "not measured"
        )
        return
    entry.raw[name] = float(np.mean(values))
    if axis.counted:
        entry.intervals[name] = {
            "value": entry.raw[name],
            "low": float(min(values)),
            "high": float(max(values)),
            "method": "exact per corpus (the range over corpora)",
        }
    elif not _interval_of_mean(entry, name, entry.raw[name], rows, replicates) and replicates:
        entry.notes.append(f"{name}: some corpus has no interval, so the mean has none.")


def _interval_of_mean(
    entry: BackboneProfile,
    key: str,
    value: float,
    rows: dict[str, BackboneProfile],
    replicates: int,
) -> bool:
    """The interval of the mean of figure ``key`` (``intervals[key]``, and its replicates): each
    replicate the mean of the corpora's replicates (independent draws per corpus). False when
    some corpus has none."""
    samples = [r.replicates.get(key) for r in rows.values()]
    if not replicates or not all(s and len(s) == replicates for s in samples):
        return False
    matrix = np.array([[np.nan if v is None else v for v in s] for s in samples])
    mean = matrix.mean(axis=0)
    result = bootstrap_interval(value, mean)
    result.method = f"mean over corpora ({', '.join(rows)}) of their speaker bootstraps"
    entry.intervals[key] = result.to_dict()
    entry.replicates[key] = [None if np.isnan(x) else round(float(x), 6) for x in mean]
    return True


def _mean_figure(
    entry: BackboneProfile, figure: Figure, rows: dict[str, BackboneProfile], replicates: int
) -> None:
    """The mean over corpora of a figure beside an axis (``Axis.figures``: the privacy axis's
    speaker-verification EER), with the interval of the mean as an axis's; a corpus without the
    figure leaves the mean without it (and says so)."""
    values = {corpus: figure.value(r) for corpus, r in rows.items()}
    lacking = [corpus for corpus, value in values.items() if value is None]
    if lacking:
        if len(lacking) < len(rows):
            entry.notes.append(
                f"{figure.title}: not measured on {', '.join(lacking)}; no mean over corpora."
            )
        return
    value = float(np.mean(list(values.values())))
    if not _interval_of_mean(entry, figure.key, value, rows, replicates):
        why = "; no interval: some corpus has no replicates of it" if replicates else ""
        entry.intervals[figure.key] = {
            "value": value,
            "low": None,
            "high": None,
            "method": f"mean over corpora ({', '.join(rows)}){why}",
        }


def _mean_row(name: str, rows: dict[str, BackboneProfile], replicates: int) -> BackboneProfile:
    """One backbone's mean over corpora (the paper's Table 4 averages its four corpora): each
    axis's figure is the mean of the corpora's figures, each bootstrap replicate the mean of the
    corpora's replicates (independent draws per corpus: the bootstrap of the mean); each axis
    gives the row what its details and context become (``Axis.combine``)."""
    first = next(iter(rows.values()))
    entry = new_row(name, base=first.base, variant=first.variant, corpus=MEAN_CORPUS)
    for axis in registered_axes():
        _mean_axis(entry, axis, rows, replicates)
        for figure in axis.figures:
            _mean_figure(entry, figure, rows, replicates)
    for axis in registered_axes():
        if axis.combine is not None:
            combined = axis.combine(list(rows.values()))
            axis.set_details(entry, combined.details)
            entry.context.update(combined.context)
    entry.dev = _mean_dev(list(rows.values()))
    entry.notes.append(f"mean over {len(rows)} corpora: {', '.join(rows)}")
    return entry


def _across_corpora(
    per_corpus: dict[str, Profile],
    directories: dict[str, Path],
    *,
    paper: Sequence[str] | None,
    bootstrap: int,
    seed: int,
    notes: list[str],
) -> Profile:
    """A profile across corpora from each corpus's own profile: per backbone measured on every
    corpus, the mean over corpora with the interval of the mean (``name (mean)``), then per
    corpus a row per backbone (``name (corpus)``). Each corpus was bootstrapped over its own
    speakers with its own seed (``seed + index``), so corpora are independent draws."""
    rows: list[BackboneProfile] = []
    by_name: dict[str, dict[str, BackboneProfile]] = {}
    for corpus, profile in per_corpus.items():
        for entry in profile.backbones:
            by_name.setdefault(entry.name, {})[corpus] = entry
    for name, found in by_name.items():
        if len(found) == len(per_corpus):
            rows.append(_mean_row(f"{name} ({MEAN_CORPUS})", found, bootstrap))
        else:
            notes.append(f"{name}: measured on {', '.join(found)} only; no mean over all corpora.")
    for corpus, profile in per_corpus.items():
        for entry in profile.backbones:
            entry.corpus = corpus
            entry.name = f"{entry.name} ({corpus})"
            rows.append(entry)
    if paper:
        rows += paper_reference(paper)
    first = next(iter(per_corpus.values()))  # every corpus's profile has the same settings
    scale = first.scale
    design = next((p.bootstrap for p in per_corpus.values() if p.bootstrap), None)
    combined = Profile(
        backbones=rows,
        scale=scale,
        scales={},
        attack=dict(first.attack),
        runs=", ".join(str(d) for d in directories.values()),
        notes=notes,
        bootstrap=None
        if design is None
        else {
            **design,
            "num_speakers": sum(
                (p.bootstrap or {}).get("num_speakers", 0) for p in per_corpus.values()
            ),
            "seed": seed,
            "per_corpus": {c: p.bootstrap for c, p in per_corpus.items()},
            "resampled": "; ".join(
                f"{c}: {p.bootstrap.get('resampled') or 'its test speakers'}"
                for c, p in per_corpus.items()
                if p.bootstrap
            ),
            "design": "per corpus",
            "strata": "per corpus (see per_corpus); each corpus bootstrapped on its own "
            "(seed + index)",
        },
        corpora=[
            {"name": c, "runs": str(d), "backbones": [b.name for b in per_corpus[c].backbones]}
            for c, d in directories.items()
        ],
    )
    combined = score_profile(combined, scale)
    combined.comparisons = comparison_table(combined)
    return combined
