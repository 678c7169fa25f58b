"""A profile across corpora: per-corpus rows and the mean over corpora with its interval."""

from __future__ import annotations

import numpy as np
import pytest

from trustser.profile import ProfileError, collect_profile, run_profile
from trustser.profile.collect import corpus_runs
from trustser.profile.recommend import recommend


@pytest.fixture
def two_corpora(tmp_path, write_fake_runs):
    out = tmp_path / "out"  # as a multi-corpus `trustser run` writes it: out/<corpus>/<backbone>
    for index, corpus in enumerate(("crema", "msp")):
        write_fake_runs(out / corpus, "good", accuracy=0.9, asr=0.4, seed=index, clips=True)
        write_fake_runs(out / corpus, "bad", accuracy=0.5, asr=0.8, seed=9 + index, clips=True)
    (out / "crema" / "report").mkdir()  # other folders are not corpora's backbones
    return out


def test_mean_over_corpora_with_the_interval_of_the_mean(two_corpora):
    profile = collect_profile([two_corpora], bootstrap=200)
    names = [b.name for b in profile.backbones]
    assert names[:2] == ["bad (mean)", "good (mean)"]  # discovery order (sorted)
    assert {"good (crema)", "good (msp)", "bad (crema)", "bad (msp)"} <= set(names)
    assert [c["name"] for c in profile.corpora] == ["crema", "msp"]
    mean, crema, msp = (profile.get(f"good ({c})") for c in ("mean", "crema", "msp"))
    assert mean.corpus == "mean" and crema.corpus == "crema"
    for axis in ("performance", "safety"):
        assert mean.raw[axis] == pytest.approx((crema.raw[axis] + msp.raw[axis]) / 2)
        expected = (np.array(crema.replicates[axis]) + np.array(msp.replicates[axis])) / 2
        assert np.allclose(mean.replicates[axis], expected, atol=1e-6)
        found = mean.intervals[axis]
        assert found["low"] <= mean.raw[axis] <= found["high"]
    # each corpus is its own seeded draw: the corpora's replicates are not the same draws
    assert crema.replicates["performance"] != msp.replicates["performance"]
    # paired comparisons only between rows tested on the same speakers
    pairs = {(p["a"], p["b"]) for p in profile.comparisons}
    assert ("bad (mean)", "good (mean)") in pairs and ("bad (crema)", "good (crema)") in pairs
    assert all(p["a"].split(" (")[1] == p["b"].split(" (")[1] for p in profile.comparisons)
    # recommend ranks the means over corpora
    result = recommend(profile, scenario="critical")
    assert {r.backbone for r in result.ranking} == {"good (mean)", "bad (mean)"}


def test_several_runs_directories_equal_the_run_output(two_corpora, tmp_path):
    one = collect_profile([two_corpora], bootstrap=50)
    two = collect_profile([two_corpora / "crema", two_corpora / "msp"], bootstrap=50)
    assert one.to_dict()["backbones"] == two.to_dict()["backbones"]
    profile, files = run_profile(two_corpora, tmp_path / "report", bootstrap=50, charts=False)
    assert profile.corpora and "good (mean)" in files["markdown"].read_text()


def test_a_single_corpus_stays_a_plain_profile(two_corpora):
    plain = collect_profile(two_corpora / "crema", bootstrap=50)
    assert not plain.corpora and {b.name for b in plain.backbones} == {"good", "bad"}
    assert corpus_runs([two_corpora / "crema"]) == {"crema": two_corpora / "crema"}


def test_no_results_anywhere_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProfileError, match="no backbone results"):
        corpus_runs([tmp_path / "empty"])


@pytest.fixture(scope="module")
def linked_corpora(tmp_path_factory):
    """Two corpora, each with ``voice`` (a planted speaker signal) and ``noise`` (none): fake
    heads, attacks and cost, plus a real speaker-verification run of each on its store."""
    from trustser.verification import run_verification

    from ..test_verification_run import planted, write_store
    from ..test_verification_trials import speaker_manifest
    from .conftest import write_fake_runs

    out = tmp_path_factory.mktemp("linked") / "out"
    for index, corpus in enumerate(("crema", "msp")):
        manifest = speaker_manifest(groups=4, per_gender=2, clips=6)
        store = out.parent / f"{corpus}.zarr"
        for offset, (name, signal) in enumerate((("voice", 2.0), ("noise", 0.0))):
            seed = 10 * index + offset
            write_store(store, name, manifest, planted(manifest, signal=signal, seed=seed))
            write_fake_runs(out / corpus, name, seed=seed, clips=True)
            run_verification(store, name, runs=out / corpus, replicates=20)
    return out


def test_the_mean_over_corpora_carries_the_verification_eer(linked_corpora):
    from trustser.profile.axes import linkability
    from trustser.profile.tables import profile_to_markdown

    profile = collect_profile([linked_corpora], bootstrap=60)
    mean, crema, msp = (profile.get(f"voice ({c})") for c in ("mean", "crema", "msp"))
    for attacker in ("ignorant", "informed"):
        key = linkability.eer_key(attacker)
        expected = (crema.intervals[key]["value"] + msp.intervals[key]["value"]) / 2
        found = mean.intervals[key]
        assert found["value"] == pytest.approx(expected)
        assert found["low"] <= found["value"] <= found["high"]
        assert "mean over corpora (crema, msp)" in found["method"]
        replicates = (np.array(crema.replicates[key]) + np.array(msp.replicates[key])) / 2
        assert np.allclose(mean.replicates[key], replicates, atol=1e-6)
        # the details (report, profile.csv) hold the mean of the runs' own figures
        details = mean.privacy["verification"]["attackers"][attacker]
        runs = [r.privacy["verification"]["attackers"][attacker] for r in (crema, msp)]
        assert details["eer"]["value"] == pytest.approx(
            (runs[0]["eer"]["value"] + runs[1]["eer"]["value"]) / 2
        )
        assert set(details["by_gender"]) == {"female", "male"}
    values, _ = linkability.csv_values(mean)
    assert values["eer_informed"] == pytest.approx(
        mean.privacy["verification"]["attackers"]["informed"]["eer"]["value"]
    )
    # profile.md's raw metrics show the mean's EER with its interval, not "–"
    cell = linkability.markdown_columns()[0].cell(mean)
    assert "[" in cell
    lines = profile_to_markdown(profile).splitlines()
    assert any("| voice (mean) |" in x and cell in x for x in lines)
    # the two means were tested on the same trials in every corpus: their EERs pair
    pair = next(p for p in profile.comparisons if {p["a"], p["b"]} == {"noise (mean)", mean.name})
    verdict = pair["axes"]["eer_informed"]["verdict"]
    assert verdict in ("A better", "B better", "no significant difference")


def test_a_corpus_without_verification_leaves_the_mean_without_eer(linked_corpora, tmp_path):
    import shutil

    from trustser.profile.axes import linkability

    copy = tmp_path / "out"
    shutil.copytree(linked_corpora, copy)
    shutil.rmtree(copy / "msp" / "voice" / "verification")
    profile = collect_profile([copy], bootstrap=20)
    mean = profile.get("voice (mean)")
    assert linkability.eer_key("informed") not in mean.intervals
    assert "verification" not in (mean.privacy or {})
    assert any("EER (informed): not measured on msp" in n for n in mean.notes)
    assert linkability.markdown_columns()[0].cell(mean) == "–"
    # the other model has it on both corpora
    assert profile.get("noise (mean)").intervals[linkability.eer_key("informed")]["low"] is not None
