"""A single self-contained HTML report of a trust profile, for sharing.

Everything is inside one file: CSS inline, radar charts embedded as base64 SVG images (no external
requests, no scripts), tables of scores and raw metrics per axis (a section per axis, drawn by the
axis's record: ``Axis.section``), the deployment rankings of the paper's Table 5 scenarios, the
scales used, and the commands that would fill missing axes.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

from trustser._version import __version__
from trustser.formatting import MISSING
from trustser.profile.axes import details_order, scored_axes
from trustser.profile.cells import NOT_MEASURABLE
from trustser.profile.cells import escape as _e
from trustser.profile.cells import html_table as _table
from trustser.profile.intervals import resampled_text
from trustser.profile.mitigations import mitigations_html
from trustser.profile.model import Profile
from trustser.profile.radar import RadarChart, RadarCharts, draw_radar_charts, figure_svg
from trustser.profile.recommend import (
    SCENARIOS,
    RecommendError,
    recommend,
    saturated_text,
    unweighed_text,
    weights_text,
)
from trustser.profile.tables import (
    TRAINING_HEADER,
    comparison_header,
    comparison_rows,
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
td.unmeasurable{background:repeating-linear-gradient(135deg,#f6f6f6 0 6px,#ececec 6px 12px);
color:#555;text-align:center;max-width:12rem}
td.unmeasurable .why{font-size:.78rem;color:#666}
p.unmeasurable,li.unmeasurable{color:#7a5b00}
"""


def _score_cell(
    score: float | None,
    clipped: bool,
    ends: Sequence[float] | None = None,
    unmeasurable: str | None = None,
) -> str:
    if score is None and unmeasurable is not None:  # the corpus cannot measure it: say why
        return (
            f'<td class="unmeasurable" title="{_e(unmeasurable)}">{NOT_MEASURABLE}'
            f'<br><span class="why">{_e(unmeasurable)}</span></td>'
        )
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
    axes = scored_axes(profile.scale)
    head = "".join(f"<th>{_e(a.title)}</th>" for a in axes)
    rows = []
    for b in profile.backbones:
        cells = "".join(
            _score_cell(
                b.scores.get(a.name),
                bool(b.clipped.get(a.name)),
                (b.score_intervals or {}).get(a.name),
                b.not_measurable.get(a.name),
            )
            for a in axes
        )
        rows.append(f"<tr><td>{_e(b.name)}</td>{cells}</tr>")
    return f"<table><thead><tr><th>backbone</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _training(profile: Profile) -> str:
    """Training cost beside inference cost, when variants are profiled (an h3 closing the
    axes' sections, after the costs)."""
    if not any(b.is_variant for b in profile.backbones):
        return ""
    return (
        "<h3>Training cost</h3>"
        '<p class="note">Fine-tuning changes weights, not the computation: a variant\'s '
        "inference cost is its base's. What it adds is training.</p>"
        + _table(TRAINING_HEADER, training_rows(profile))
    )


def _axis_sections(profile: Profile) -> list[str]:
    """A heading and a section per axis that draws one, in the order of their details."""
    sections = []
    for axis in details_order():
        if axis.section is not None:
            sections += [f"<h2>{_e(axis.section.title)}</h2>", axis.section.render(profile)]
    if sections:
        sections[-1] += _training(profile)
    return sections


def _recommendations(profile: Profile) -> str:
    parts = []
    for scenario in SCENARIOS:
        try:
            result = recommend(profile, scenario=scenario)
        except RecommendError as error:
            parts.append(f'<h3>{_e(scenario)}</h3><p class="missing">{_e(error)}</p>')
            continue
        weights = weights_text(result)
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
                f'<p class="note">chosen on dev: {_e(c["chosen"])} ({_e(c["rule"])})</p>'
                for c in result.dev_choices
            )
            + "".join(
                f'<p class="missing">not ranked: {_e(k)} — {_e(v)}</p>'
                for k, v in result.excluded.items()
            )
            + "".join(
                f'<p class="unmeasurable">{_e(text.capitalize())} (see the scores).</p>'
                for text in [unweighed_text(result, reasons=False)]
                if text
            )
            + "".join(
                f'<p class="note">{_e(text.capitalize())}.</p>'
                for text in [saturated_text(result)]
                if text
            )
        )
    return "".join(parts)


def _scales(profile: Profile) -> str:
    rows = [
        [
            a.title,
            str(profile.scales[a.name]["metric"]),
            str(profile.scales[a.name]["description"]),
            str(profile.scales[a.name].get("basis", MISSING)),
        ]
        for a in scored_axes(profile.scale)
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
        f"interval of a speaker-level bootstrap: {design['replicates']} replicates resampling "
        f"{_e(resampled_text(design))} (seed {design['seed']}; "
        f"strata: {_e(design['strata'])}). GMACs and parameters are exact; latency shows the "
        "spread of its repeated timings.</p>"
    )


def _comparisons(profile: Profile) -> list[str]:
    if not profile.comparisons:
        return []
    return [
        "<h2>Paired comparisons</h2>",
        _table(comparison_header(), comparison_rows(profile)),
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
    unmeasurable = [
        f'<li class="unmeasurable"><b>{_e(b.name)}</b> — {_e(a)}: {_e(r)}</li>'
        for b in profile.backbones
        for a, r in b.not_measurable.items()
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
        *(
            [
                '<p class="note">Not measurable: the corpus cannot give this figure (one gender, '
                "no gender labels, too few speakers), so it has no score; the radar leaves a gap "
                "there and the rankings leave the axis out.</p>",
                f'<ul class="note">{"".join(unmeasurable)}</ul>',
            ]
            if unmeasurable
            else []
        ),
        f'<div class="charts">{"".join(figures)}</div>',
        *_axis_sections(profile),
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
