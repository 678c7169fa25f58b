"""Shared input checks: picking names by name or 1-based index, and the only name of a list."""

from __future__ import annotations

import pytest

from trustser._validation import TrustSERError, select_names, sole_name

NAMES = ["fold1", "fold2", "fold3"]


class PickError(TrustSERError, ValueError):
    pass


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (None, []),
        ("", []),
        (" , ", []),
        ("2", ["fold2"]),
        ("fold3, 1", ["fold3", "fold1"]),
        ("1,fold1,1", ["fold1"]),
        (["3", 2, " fold1 "], ["fold3", "fold2", "fold1"]),
    ],
)
def test_select_names_by_name_or_index(requested, expected):
    assert select_names(requested, NAMES) == expected


@pytest.mark.parametrize("bad", ["0", "4", "fold9", "-1"])
def test_select_names_refuses_what_does_not_exist(bad):
    with pytest.raises(PickError, match=rf"fold '{bad}' does not exist for task 'x'.*1\.\.3"):
        select_names(f"1,{bad}", NAMES, context=" for task 'x'", error=PickError)


def test_sole_name_picks_the_only_one_or_lists_them():
    assert sole_name(["a"], what="backbones", where="store 's'", option="--backbone") == "a"
    with pytest.raises(PickError, match=r"store 's' holds 2 backbones \(a, b\); choose one with"):
        sole_name(["a", "b"], what="backbones", where="store 's'", option="--b", error=PickError)
    with pytest.raises(ValueError, match=r"holds 0 backbones \(none\)"):
        sole_name([], what="backbones", where="store 's'", option="--backbone")
