"""The variant registry: a kind declared here (not shipped) and registered with one line goes
through fitting, the attack, cost and the profile like a built-in one; the layout and the
registry agree on the kinds' words."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

from trustser import variants
from trustser.attacks.runner import run_attack
from trustser.cost import run_cost
from trustser.deployed import evaluate_end_to_end
from trustser.extract import extract
from trustser.heads.estimator import HeadClassifier
from trustser.heads.training import fit_heads
from trustser.profile import collect_profile
from trustser.profile.mitigations import mitigation_rows
from trustser.runs import ModelName, RunLayout, read_json, variant_words
from trustser.variants import FitRequest, Variant, VariantError, VariantFit, VariantKind

BASE = "tiny:whisper"


class _Quiet(nn.Module):
    """The deployed model behind an attenuation of the waveform by ``gain_db``."""

    def __init__(self, model: nn.Module, gain_db: float) -> None:
        super().__init__()
        self.model, self.scale = model, 10.0 ** (-gain_db / 20.0)

    @property
    def num_classes(self) -> int:
        return int(self.model.num_classes)

    @property
    def masks_padding(self) -> bool:
        return bool(getattr(self.model, "masks_padding", False))

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(waveforms * self.scale, lengths)


class QuietKind(VariantKind):
    """A toy defence at inference: ``quiet-g<dB>`` attenuates the input, classifies with the
    base's heads and runs the base twice per clip (to show the cost factor)."""

    word = "quiet"
    label = "attenuation"
    summary = "input attenuated by g dB before the base model (quiet-g<dB>)"
    form = "quiet-g<dB> (e.g. quiet-g6)"
    _TAG = re.compile(r"^quiet-g(?P<g>[0-9]+)$")

    def parse(self, tag: str) -> dict[str, Any] | None:
        match = self._TAG.match(tag)
        return {"gain_db": int(match["g"])} if match else None

    def tag(self, *, gain_db: int) -> str:
        return f"quiet-g{gain_db}"

    def describe(self, params: Mapping[str, Any]) -> str:
        return f"input attenuated by {params['gain_db']} dB"

    def uses_base_heads(self, params: Mapping[str, Any]) -> bool:
        return True

    def exposes_base_representation(self, params: Mapping[str, Any]) -> bool:
        return True

    def inference_passes(self, params: Mapping[str, Any]) -> int:
        return 2

    def fit(self, variant: Variant, request: FitRequest) -> VariantFit:
        metrics = evaluate_end_to_end(
            request.store,
            variant.name,
            variant,
            description=self.description(variant, request),
            runs=request.runs,
            device="cpu",
        )
        return VariantFit(variant.name, metrics=metrics)

    def wrap(self, variant: Variant, model: nn.Module, *, fold: str, seed: int) -> nn.Module:
        return _Quiet(model, variant.params["gain_db"])


@pytest.fixture
def quiet():
    kind = variants.register(QuietKind())  # the one line a new kind needs
    yield kind
    variants.unregister("quiet")


def test_the_layout_and_the_registry_know_the_same_words():
    assert {k.word for k in variants.kinds()} == set(variant_words())
    for kind in variants.kinds():
        assert kind.label and kind.summary and kind.form


def test_a_registered_kind_parses_and_an_unregistered_one_does_not(quiet):
    parsed = variants.parse(f"{BASE}@quiet-g6")
    assert parsed.kind is quiet and parsed.params == {"gain_db": 6}
    assert RunLayout("runs").backbone_dir(parsed.name).name == "tiny-whisper@quiet-g6"
    with pytest.raises(VariantError, match="quiet-g<dB>"):
        variants.parse(f"{BASE}@quiet-gx")
    with pytest.raises(VariantError, match="registered already"):
        variants.register(QuietKind())
    with pytest.raises(VariantError, match="built-in"):
        variants.unregister("top")


def test_after_unregistering_the_word_is_a_base_name_again():
    variants.register(QuietKind())
    variants.unregister("quiet")
    assert not ModelName.parse(f"{BASE}@quiet-g6").is_variant
    assert variants.parse(f"{BASE}@quiet-g6") is None


def test_a_toy_kind_runs_through_fit_attack_cost_and_profile(quiet, tmp_path, toy_manifest):
    store, runs = tmp_path / "cache.zarr", tmp_path / "runs"
    extract(toy_manifest, store, BASE, device="cpu", progress=False)
    head = HeadClassifier(epochs=3, lr=1e-2, device="cpu")
    fit_heads(store, None, head, task="all", runs=runs, folds="1")
    name = f"{BASE}@quiet-g6"
    fitted = variants.fit_variant(store, name, head, runs=runs)
    assert fitted.emotion_metrics["variant"]["kind"] == "quiet"
    assert set(fitted.inherited) == {"gender", "speaker"}  # it exposes its base's representation
    layout = RunLayout(runs)
    assert (layout.head_dir(name, "emotion") / "predictions.csv").is_file()
    # the attack deploys the kind's wrapper over the base's heads
    attack = run_attack(store, name, runs=runs, method="fgsm", snr_db=30, device="cpu")
    assert attack.results[0].out_dir == layout.attack_dir(name, "fgsm", 30)
    # cost: the kind's forward passes per clip
    report, _ = run_cost(name, runs=runs, device="cpu", timing=False, seconds=1.0)
    base, _ = run_cost(BASE, runs=runs, device="cpu", timing=False, seconds=1.0, write=False)
    assert report.total_macs == 2 * base.total_macs and report.inference_passes == 2
    assert "attenuation: 2 forward passes" in report.basis
    # the profile: a row of its own, described by its kind, in the Mitigations section
    profile = collect_profile(runs)
    row = profile.get(name)
    assert (row.base, row.variant) == (BASE, "quiet-g6")
    assert row.variant_description == "input attenuated by 6 dB"
    (mitigation,) = mitigation_rows(profile)
    assert mitigation["variant"] == name and mitigation["mitigation"] == row.variant_description
    assert read_json(layout.head_dir(name, "gender") / "metrics.json")["inherited_from"] == BASE
