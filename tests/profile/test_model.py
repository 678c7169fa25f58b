"""profile.json: the format version is checked on reading."""

from __future__ import annotations

import json

import pytest

from trustser.profile import Profile, ProfileError, read_profile, run_profile


def test_profile_json_refuses_other_versions(tmp_path, write_fake_runs):
    write_fake_runs(tmp_path / "runs")
    run_profile(tmp_path / "runs", tmp_path / "out", charts=False)
    data = json.loads((tmp_path / "out" / "profile.json").read_text())
    data["format_version"] = 99
    (tmp_path / "out" / "profile.json").write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="version 99"):
        read_profile(tmp_path / "out")
    with pytest.raises(ProfileError, match="no profile"):
        read_profile(tmp_path / "nowhere")
    assert isinstance(Profile.from_dict({**data, "format_version": 1}), Profile)
