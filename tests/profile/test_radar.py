"""Radar charts: drawn once per profile, then saved as files and embedded in the report."""

from __future__ import annotations

import base64
import re

import pytest

from trustser.profile import collect_profile, write_profile
from trustser.profile import radar as radar_module
from trustser.profile.radar import draw_radar_charts, figure_svg, write_radar_charts
from trustser.profile.report import render_report


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    return collect_profile(empty, paper=["Whisper tiny", "WavLM Base+"])


def test_write_profile_draws_each_chart_once(profile, tmp_path, monkeypatch):
    calls = []
    original = radar_module.radar_figure

    def counting(entries, **kwargs):
        calls.append(kwargs["title"])
        return original(entries, **kwargs)

    monkeypatch.setattr(radar_module, "radar_figure", counting)
    files = write_profile(profile, tmp_path)
    # one chart per backbone and the overlay, shared by the image files and the report
    assert sorted(calls) == [
        "Trust profile: paper: WavLM Base+",
        "Trust profile: paper: Whisper tiny",
        "Trust profiles compared",
    ]
    assert files["overlay_svg"].is_file() and files["report"].is_file()


def test_shared_charts_equal_charts_drawn_afresh(profile, tmp_path):
    charts = draw_radar_charts(profile)
    # the report retitles the charts first; the files must still carry their own titles
    shared_page = render_report(profile, charts=charts)
    shared_files = write_radar_charts(profile, tmp_path / "shared", charts=charts)
    fresh_files = write_radar_charts(profile, tmp_path / "fresh")
    assert shared_files.keys() == fresh_files.keys()
    for key, path in shared_files.items():
        assert path.read_bytes() == fresh_files[key].read_bytes(), key
    assert shared_page == render_report(profile)
    embedded = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', shared_page)
    assert len(embedded) == 3  # overlay + one per backbone
    overlay = charts.overlay
    assert overlay is not None and overlay.stem == "radar_overlay"
    assert base64.b64decode(embedded[0]) == figure_svg(overlay.titled("All backbones"))
    assert (tmp_path / "shared" / "radar_overlay.svg").read_bytes() == figure_svg(overlay.titled())


def test_single_backbone_report_draws_no_overlay(profile):
    (first, _) = profile.backbones
    single = type(profile)(
        backbones=[first], scale=profile.scale, scales=profile.scales, attack=profile.attack
    )
    assert draw_radar_charts(single, overlay=False).overlay is None
    page = render_report(single)
    assert page.count("data:image/svg+xml;base64,") == 1


def test_a_one_backbone_overlay_names_its_model(tmp_path):
    single = collect_profile(tmp_path, paper=["Whisper tiny"])
    charts = draw_radar_charts(single)
    assert charts.overlay.title == "Trust profile: paper: Whisper tiny"
    svg = figure_svg(charts.overlay.titled()).decode()
    assert "Trust profile: paper: Whisper tiny" in svg


def test_radar_draws_an_interval_band_and_says_so(tmp_path, write_fake_runs):
    from trustser.profile import collect_profile
    from trustser.profile.radar import draw_radar_charts

    write_fake_runs(tmp_path, clips=True)
    profile = collect_profile(tmp_path, bootstrap=100)
    chart = draw_radar_charts(profile).backbones[0]
    texts = [t.get_text() for t in chart.figure.texts]
    assert any("Shaded band: the 95 % interval" in t for t in texts)
    (ax,) = [a for a in chart.figure.axes if a.name == "polar"]
    assert len(ax.collections) >= 1  # the band (fill_between)
    uar = profile.backbones[0].intervals["performance"]
    spoke = f"[{100 * uar['low']:.1f}, {100 * uar['high']:.1f}] %"
    assert any(spoke in t.get_text() for t in ax.texts)  # the spoke label names the interval
    plain = draw_radar_charts(collect_profile(tmp_path, bootstrap=0)).backbones[0]
    assert not any("Shaded band" in t.get_text() for t in plain.figure.texts)


def test_a_figure_not_measured_yet_is_a_gap_never_a_zero(tmp_path, write_fake_runs):
    """A row whose cost has not run has no sustainability score: no point at the centre of
    that spoke, the outline broken there, the spoke dashed and labelled "not measured"."""
    import math

    from trustser.profile.axes import scored_axes
    from trustser.profile.radar import radar_shape

    write_fake_runs(tmp_path, cost=False)
    profile = collect_profile(tmp_path, bootstrap=0, scale="absolute")
    entry = profile.backbones[0]
    axes = scored_axes(profile.scale)
    shape = radar_shape(entry, axes)
    assert shape.gaps == {"sustainability": "not measured"}
    (gap,) = [s for s in shape.spokes if s.gap]
    at_gap = round(gap.angle % (2 * math.pi), 9)
    assert len(shape.outline) == 1  # one run: the other spokes, broken at the gap
    angles = [round(a % (2 * math.pi), 9) for a, _ in shape.outline[0]]
    assert len(angles) == len(axes) - 1 and at_gap not in angles
    assert at_gap not in {round(a % (2 * math.pi), 9) for a, _ in shape.fill}
    chart = draw_radar_charts(profile).backbones[0]
    (ax,) = [a for a in chart.figure.axes if a.name == "polar"]
    for line in ax.lines:  # at the gap only the dashed spoke mark: no point, no 0
        if at_gap in {round(a % (2 * math.pi), 9) for a in line.get_xdata()}:
            assert line.get_linestyle() == "--" and list(line.get_ydata()) == [0, 1]
    texts = [t.get_text() for t in chart.figure.texts]
    assert any("a gap, not a 0" in t for t in texts)
    # Nothing missing: one closed ring through every spoke.
    write_fake_runs(tmp_path / "full")
    full = collect_profile(tmp_path / "full", bootstrap=0, scale="absolute").backbones[0]
    ring = radar_shape(full, axes)
    assert ring.closed and len(ring.outline) == 1 and len(ring.outline[0]) == len(axes) + 1
