"""A profile across corpora: per-corpus rows and the mean over corpora with its interval."""

from __future__ import annotations

import numpy as np
import pytest

from trustser.profile import ProfileError, collect_profile, run_profile
from trustser.profile.collect import collect_corpora, corpus_runs
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
    profile = collect_corpora([two_corpora], bootstrap=200)
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
    one = collect_corpora([two_corpora], bootstrap=50)
    two = collect_corpora([two_corpora / "crema", two_corpora / "msp"], bootstrap=50)
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
