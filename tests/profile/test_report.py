"""The HTML report: one self-contained file that survives sparse and hostile inputs."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

from trustser.profile import BackboneProfile, Profile, score_profile
from trustser.profile.report import render_report, write_report


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.sources: list[str] = []
        self.stack: list[str] = []
        self.unbalanced = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.sources += [v for k, v in attrs if k in ("src", "href") and v]
        if tag not in ("meta", "img", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.unbalanced = True


def _profile() -> Profile:
    measured = BackboneProfile(name="<b>evil</b> & co")
    measured.raw.update(performance=0.7, fairness=0.12)
    measured.missing.update(
        privacy="trustser heads fit --store '<x>' --backbone e --task gender",
        safety="trustser attack ...",
        sustainability="trustser cost --backbone e",
    )
    other = BackboneProfile(name="full")
    other.raw.update(performance=0.6, fairness=0.2, privacy=0.9, safety=0.5, sustainability=5.0)
    profile = Profile(
        backbones=[measured, other],
        scale="paper",
        scales={},
        attack={"method": "fgsm", "snr_db": 45.0},
        runs="runs",
        notes=["a <note>"],
    )
    return score_profile(profile, "paper")


def test_report_is_self_contained_valid_and_escaped(tmp_path):
    path = write_report(_profile(), tmp_path / "deep" / "report.html")
    page = path.read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(page)
    assert not parser.unbalanced
    assert "script" not in parser.tags
    # every resource is inline: images are data: URIs, nothing is fetched
    assert parser.sources and all(
        s.startswith("data:image/svg+xml;base64,") for s in parser.sources
    )
    for source in parser.sources:
        svg = base64.b64decode(source.split(",", 1)[1]).decode("utf-8")
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "<b>evil</b>" not in page and "&lt;b&gt;evil&lt;/b&gt; &amp; co" in page
    assert "a &lt;note&gt;" in page
    assert "trustser cost --backbone e" in page  # the missing axes say what to run


def test_report_sections_and_rankings():
    page = render_report(_profile(), title="My SER")
    for heading in (
        "Scores",
        "Performance",
        "Fairness (gender)",
        "Privacy",
        "Safety",
        "Sustainability",
        "Scales",
    ):
        assert f"<h2>{heading}</h2>" in page
    assert "<title>My SER</title>" in page
    # the sparse backbone cannot be ranked; the complete one can, in every scenario
    assert page.count("not ranked: &lt;b&gt;evil") == 3
    assert len(re.findall(r"<td>1</td><td>full</td>", page)) == 3
    assert page.count("not measured") == 3
