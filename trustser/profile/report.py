"""A single self-contained HTML report of a trust profile, for sharing.

Everything is inside one file: CSS inline, radar charts embedded as base64 SVG images (no external
requests, no scripts), tables of scores and raw metrics per axis, the deployment rankings of the
paper's Table 5 scenarios, the scales used, and the commands that would fill missing axes.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trustser._version import __version__
from trustser.formatting import MISSING, number, percent
from trustser.profile.mitigations import mitigations_html
from trustser.profile.model import AXES, AXIS_TITLES, Profile
from trustser.profile.radar import RadarChart, RadarCharts, draw_radar_charts, figure_svg
from trustser.profile.recommend import SCENARIOS, RecommendError, recommend
from trustser.profile.tables import (
    NOT_DEFINED,
    TRAINING_HEADER,
    comparison_rows,
    fold_eo,
    interval_text,
    training_rows,
)

__all__ = ["render_report", "write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#222;line-height:1.45;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
.meta{color:#666;font-size:.9rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.88rem}
th,td{border:1px solid #ddd;padding:.3rem .55rem;text-align:right;vertical-align:top}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
td.reasons{text-align:left;max-width:520px}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.charts figure{margin:0;flex:1 1 420px}
.charts img{width:100%;height:auto;border:1px solid #eee}
code{background:#f6f6f6;padding:.05rem .3rem;border-radius:3px;font-size:.85rem}
.missing{color:#a33}.note{color:#555;font-size:.88rem}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, raw_last: bool = False) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = [f"<td>{_e(c)}</td>" for c in row]
        if raw_last:  # the last cell is pre-rendered HTML
            cells[-1] = f'<td class="reasons">{row[-1]}</td>'
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _score_cell(score: float | None, clipped: bool, ends: Sequence[float] | None = None) -> str:
    if score is None:
        return '<td class="missing">not measured</td>'
    hue = int(120 * score)  # red (0) → green (1)
    mark = " ✂" if clipped else ""
    title = ' title="clipped at the end of the scale"' if clipped else ""
    bounds = ""
    if ends and ends[0] != ends[1]:
        bounds = f' <span class="note">[{ends[0]:.2f}, {ends[1]:.2f}]</span>'
    return f'<td style="background:hsl({hue},70%,85%)"{title}>{score:.2f}{bounds}{mark}</td>'


def _chart(chart: RadarChart, title: str) -> str:
    data = base64.b64encode(figure_svg(chart.titled(title))).decode("ascii")
    return (
        f'<figure><img alt="{_e(title)}" src="data:image/svg+xml;base64,{data}">'
        f'<figcaption class="note">{_e(title)}</figcaption></figure>'
    )


def _scores(profile: Profile) -> str:
    head = "".join(f"<th>{_e(AXIS_TITLES[a])}</th>" for a in AXES)
    rows = []
    for b in profile.backbones:
        cells = "".join(
            _score_cell(b.scores.get(a), bool(b.clipped.get(a)), (b.score_intervals or {}).get(a))
            for a in AXES
        )
        rows.append(f"<tr><td>{_e(b.name)}</td>{cells}</tr>")
    return f"<table><thead><tr><th>backbone</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _performance(profile: Profile) -> str:
    labels: list[str] = []
    for b in profile.backbones:
        for label in (b.performance or {}).get("labels", []):
            if label not in labels:
                labels.append(label)
    rows = []
    for b in profile.backbones:
        p = b.performance or {}
        recall = (
            p.get("per_class_recall_mean") or (p.get("pooled") or {}).get("per_class_recall") or {}
        )
        rows.append(
            [
                b.name,
                interval_text(b, "performance", b.raw.get("performance"), spread=p.get("uar_std")),
                interval_text(b, "accuracy", p.get("accuracy_mean"), spread=p.get("accuracy_std")),
                interval_text(b, "macro_f1", p.get("macro_f1_mean"), spread=p.get("macro_f1_std")),
                str(p.get("num_folds", MISSING)),
                *(percent(recall.get(label)) for label in labels),
            ]
        )
    header = [
        "backbone",
        "UAR %",
        "weighted acc. %",
        "macro-F1 %",
        "folds",
        *(f"recall {x} %" for x in labels),
    ]
    return _table(header, rows)


def _fairness(profile: Profile) -> str:
    rows = []
    for b in profile.backbones:
        f = b.fairness or {}
        undefined = NOT_DEFINED if f else MISSING
        spread = (f.get("pooled") or {}).get("speakers") or {}
        rows.append(
            [
                b.name,
                fold_eo(b),
                interval_text(
                    b,
                    "sp_multiclass",
                    f.get("multiclass_statistical_parity_fold_mean"),
                    missing=undefined,
                ),
                interval_text(
                    b, "eo_max_class", f.get("equalized_odds_max_fold_mean"), missing=undefined
                ),
                percent(f.get("equalized_odds_mean_fold_mean"), missing=undefined),
                percent(f.get("statistical_parity_max_fold_mean"), missing=undefined),
                interval_text(
                    b,
                    "eo_multiclass_pooled",
                    (f.get("pooled") or {}).get("multiclass_equalized_odds"),
                ),
                f"{percent(spread.get('min'))} / {percent(spread.get('max'))} / {percent(spread.get('sd'))}"
                if spread
                else MISSING,
                spread.get("worst_speaker", MISSING),
            ]
        )
    header = [
        "backbone",
        "EO multiclass % (fold mean)",
        "SP multiclass %",
        "EO worst class %",
        "EO class mean %",
        "SP worst class %",
        "EO multiclass pooled %",
        "speaker UAR min / max / sd %",
        "worst speaker",
    ]
    out = _table(header, rows)
    for b in profile.backbones:
        per_class = ((b.fairness or {}).get("pooled") or {}).get("per_class") or {}
        if not per_class:
            continue
        class_rows = []
        for label, c in per_class.items():
            groups = sorted(c["tpr"])
            class_rows.append(
                [
                    label,
                    " / ".join(percent(c["tpr"][g]) for g in groups),
                    " / ".join(percent(c["fpr"][g]) for g in groups),
                    " / ".join(percent(c["selection_rate"][g]) for g in groups),
                    percent(c.get("equalized_odds_difference")),
                    percent(c.get("statistical_parity_difference")),
                ]
            )
        groups_text = " / ".join(sorted(next(iter(per_class.values()))["tpr"]))
        out += (
            f'<p class="note">{_e(b.name)} — per class, pooled over folds ({_e(groups_text)}):</p>'
        )
        out += _table(
            ["class", "TPR %", "FPR %", "selection rate %", "EO difference %", "SP difference %"],
            class_rows,
        )
    return out


def _privacy(profile: Profile) -> str:
    rows = []
    for b in profile.backbones:
        priv = b.privacy or {}
        g, s = priv.get("gender") or {}, priv.get("speaker") or {}
        probe = b.probe or {}
        head = g.get("accuracy") if not b.reference else b.raw.get("privacy")
        rows.append(
            [
                b.name,
                interval_text(b, "privacy", b.raw.get("privacy")),
                b.privacy_attacker or MISSING,
                interval_text(b, "gender_accuracy_head", head, spread=g.get("accuracy_std")),
                interval_text(b, "gender_uar_head", g.get("uar")),
                f"{percent(g.get('chance_majority'))} / {percent(g.get('chance_uniform'))}",
                f"{percent(probe.get('gender_test_accuracy_mean'))} / "
                f"{percent(probe.get('gender_dev_chosen_layer_test_accuracy_mean'))}",
                interval_text(b, "speaker_accuracy", s.get("accuracy")),
                f"{percent(s.get('chance_majority'))} / {percent(s.get('chance_uniform'))}",
            ]
        )
    header = [
        "backbone",
        "gender acc. % (privacy axis)",
        "strongest attacker",
        "gender head acc. % (the paper's)",
        "gender head UAR %",
        "gender chance % (majority / 1/K)",
        "linear probe acc. % (all layers / layer chosen on dev)",
        "speaker-ID acc. %",
        "speaker chance % (majority / 1/K)",
    ]
    return _table(header, rows) + (
        '<p class="note">The privacy axis holds the <b>strongest</b> gender attacker that was run: '
        "the highest test accuracy (fold mean) of the trained gender head (the paper's attack) "
        "and the linear probes on time-averaged layers (<code>trustser heads probe</code>: all "
        "layers, and the layer chosen on dev). The embeddings leak at least what the strongest "
        "attacker finds; the head's own figure stays beside it.</p>"
    )


def _safety(profile: Profile) -> str:
    rows = []
    for b in profile.backbones:
        for a in (b.safety or {}).get("attacks", []):
            rows.append(
                [
                    b.name,
                    a["method"].upper(),
                    f"{a['snr_db']:g}",
                    interval_text(
                        b,
                        f"asr_{a['method']}_{a['snr_db']:g}db",
                        a["asr_mean"],
                        spread=a.get("asr_std"),
                    ),
                    str(a.get("num_attacked", MISSING)),
                    percent(a.get("clean_accuracy")),
                ]
            )
        if not (b.safety or {}).get("attacks") and b.raw.get("safety") is not None:
            rows.append(
                [
                    b.name,
                    profile.attack["method"].upper(),
                    f"{profile.attack['snr_db']:g}",
                    percent(b.raw["safety"]),
                    MISSING,
                    MISSING,
                ]
            )
    if not rows:
        return '<p class="missing">No attack results.</p>'
    return _table(
        ["backbone", "method", "SNR dB", "ASR %", "clips attacked", "clean accuracy %"], rows
    )


def _sustainability(profile: Profile) -> str:
    rows = []
    for b in profile.backbones:
        c = b.sustainability or {}
        params = MISSING
        if c.get("backbone_params") is not None:
            params = f"{c['backbone_params'] / 1e6:.2f} M + {c['head_params'] / 1e3:.1f} k"
        rows.append(
            [
                b.name,
                params,
                number(b.raw.get("sustainability")),
                number(
                    (c.get("attention_macs") or 0) / 1e9
                    if c.get("attention_macs") is not None
                    else None,
                    3,
                ),
                number(
                    (c.get("torch_flops") or 0) / 1e9 if c.get("torch_flops") is not None else None
                ),
                interval_text(b, "latency_ms", c.get("latency_ms"), as_percent=False),
                number(c.get("throughput_clips_per_s"), 1),
                str(c.get("device") or MISSING),
            ]
        )
    header = [
        "backbone",
        "params (backbone + head)",
        "GMAC / 6 s",
        "attention GMAC",
        "GFLOPs (torch)",
        "latency ms (batch 1)",
        "throughput clips/s",
        "device",
    ]
    out = _table(header, rows) + (
        '<p class="note">MACs counted by fvcore with eager attention (1 MAC = one multiply–add, '
        "≈ 2 FLOPs); GFLOPs by torch's FlopCounterMode on the same model. Latency and throughput "
        "are measured with the default attention kernel on the device named.</p>"
    )
    if any(b.is_variant for b in profile.backbones):
        out += (
            "<h3>Training cost</h3>"
            '<p class="note">Fine-tuning changes weights, not the computation: a variant\'s '
            "inference cost is its base's. What it adds is training.</p>"
            + _table(TRAINING_HEADER, training_rows(profile))
        )
    return out


def _recommendations(profile: Profile) -> str:
    parts = []
    for scenario in SCENARIOS:
        try:
            result = recommend(profile, scenario=scenario)
        except RecommendError as error:
            parts.append(f'<h3>{_e(scenario)}</h3><p class="missing">{_e(error)}</p>')
            continue
        weights = ", ".join(
            f"{AXIS_TITLES[a]} {result.weights[a]:.2f} ({result.priorities[a]})" for a in AXES
        )
        rows = [
            [str(r.rank), r.backbone, f"{r.score:.3f}", "<br>".join(_e(x) for x in r.reasons)]
            for r in result.ranking
        ]
        parts.append(
            f"<h3>{_e(scenario)} — {_e(result.description)}</h3>"
            f'<p class="note">Weights: {_e(weights)}. The paper recommends '
            f"{_e(result.paper_choice)}.</p>"
            f"<p>Choice: <b>{_e(result.verdict)}</b></p>"
            + _table(["rank", "backbone", "weighted score", "reasons"], rows, raw_last=True)
            + "".join(
                f'<p class="missing">not ranked: {_e(k)} — {_e(v)}</p>'
                for k, v in result.excluded.items()
            )
        )
    return "".join(parts)


def _scales(profile: Profile) -> str:
    rows = [
        [
            AXIS_TITLES[a],
            str(profile.scales[a]["metric"]),
            str(profile.scales[a]["description"]),
            str(profile.scales[a].get("basis", MISSING)),
        ]
        for a in AXES
    ]
    return _table(["axis", "raw metric", "worst → best (score 0 → 1)", "derived from"], rows) + (
        '<p class="note">A value past an end scores 0 or 1 and is marked ✂ (clipped); the notes '
        "name it.</p>"
    )


def _design(profile: Profile) -> str:
    design = profile.bootstrap
    if not design:
        return '<p class="note">Intervals: switched off (<code>--bootstrap 0</code>).</p>'
    return (
        f'<p class="note">Intervals: <code>value [low, high]</code> is the {design["level"]:.0%} '
        f"interval of a speaker-level bootstrap: {design['replicates']} replicates resampling the "
        f"{design['num_speakers']} test speakers with replacement (seed {design['seed']}; "
        f"strata: {_e(design['strata'])}). GMACs and parameters are exact; latency shows the "
        "spread of its repeated timings.</p>"
    )


def _comparisons(profile: Profile) -> list[str]:
    if not profile.comparisons:
        return []
    return [
        "<h2>Paired comparisons</h2>",
        _table(["A vs B", *(AXIS_TITLES[a] for a in AXES)], comparison_rows(profile)),
        '<p class="note">A − B on the same test speakers (points for rates, GMAC for '
        "sustainability) with its paired bootstrap interval and two-sided p-value; significant "
        "when p &lt; 0.05.</p>",
    ]


def render_report(
    profile: Profile,
    *,
    title: str = "TrustSER trust profile",
    charts: RadarCharts | None = None,
) -> str:
    """The report as one HTML string (no external resources).

    ``charts`` are the profile's radar charts when already drawn (:func:`draw_radar_charts`);
    otherwise the report draws them.
    """
    several = len(profile.backbones) > 1
    drawn = charts if charts is not None else draw_radar_charts(profile, overlay=several)
    figures = (
        [_chart(drawn.overlay, "All backbones")] if several and drawn.overlay is not None else []
    )
    figures += [_chart(chart, chart.title) for chart in drawn.variants]
    figures += [
        _chart(chart, b.name) for chart, b in zip(drawn.backbones, profile.backbones, strict=True)
    ]
    missing = [
        f"<li><b>{_e(b.name)}</b> — {_e(a)}: <code>{_e(c)}</code></li>"
        for b in profile.backbones
        for a, c in b.missing.items()
    ]
    notes = [f"<li>{_e(n)}</li>" for n in profile.notes]
    notes += [f"<li>{_e(b.name)}: {_e(n)}</li>" for b in profile.backbones for n in b.notes]
    attack = profile.attack
    sections = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">trustser {_e(__version__)} · scale <b>{_e(profile.scale)}</b> · '
        f"safety axis: {_e(attack['method'].upper())} at {attack['snr_db']:g} dB · runs "
        f"<code>{_e(profile.runs)}</code>"
        + (f" · store <code>{_e(profile.store)}</code>" if profile.store else "")
        + "</p>",
        "<p>Every axis reads <b>higher is more trustworthy</b>; scores lie in [0, 1] on the scale "
        "below (✂ marks a value clipped at the end of the scale).</p>",
        _design(profile),
        "<h2>Scores</h2>",
        _scores(profile),
        f'<div class="charts">{"".join(figures)}</div>',
        "<h2>Performance</h2>",
        _performance(profile),
        "<h2>Fairness (gender)</h2>",
        _fairness(profile),
        "<h2>Privacy</h2>",
        _privacy(profile),
        "<h2>Safety</h2>",
        _safety(profile),
        "<h2>Sustainability</h2>",
        _sustainability(profile),
        *_comparisons(profile),
        mitigations_html(profile),
        "<h2>Deployment scenarios (the paper's Table 5)</h2>",
        _recommendations(profile),
        "<h2>Scales</h2>",
        _scales(profile),
    ]
    if missing:
        sections += ["<h2>Missing axes</h2>", f"<ul>{''.join(missing)}</ul>"]
    if notes:
        sections += ["<h2>Notes</h2>", f'<ul class="note">{"".join(notes)}</ul>']
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def write_report(
    profile: Profile,
    path: str | Path,
    *,
    title: str = "TrustSER trust profile",
    charts: RadarCharts | None = None,
) -> Path:
    """Write :func:`render_report` to ``path`` (UTF-8)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(profile, title=title, charts=charts), encoding="utf-8")
    return path
