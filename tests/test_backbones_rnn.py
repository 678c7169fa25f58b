"""cuDNN RNN backward in eval mode: recurrent layers run with cuDNN off exactly when a backward
may follow on CUDA (gradients on, eval mode, CUDA input). Checked on CPU by pretending the
input is on CUDA and recording the cuDNN switch."""

from __future__ import annotations

import contextlib

import pytest
import torch

import trustser.backbones.rnn as rnn
from trustser.backbones import load_backbone


@pytest.fixture
def cudnn_switch(monkeypatch):
    """Every input counts as CUDA; records each ``torch.backends.cudnn.flags(enabled=...)``."""
    calls = []

    @contextlib.contextmanager
    def flags(**kwargs):
        calls.append(kwargs)
        yield

    monkeypatch.setattr(rnn, "_on_cuda", lambda value: True)
    monkeypatch.setattr(torch.backends.cudnn, "flags", flags)
    return calls


@pytest.fixture(scope="module")
def apc():
    torch.manual_seed(0)
    return load_backbone("tiny:apc", device="cpu")


def _wave() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 8000, generator=generator) * 0.1, torch.tensor([8000, 6000])


def test_apc_runs_every_gru_with_cudnn_off_when_a_waveform_gradient_is_needed(apc, cudnn_switch):
    waves, lengths = _wave()
    waves.requires_grad_(True)
    assert not apc.training  # frozen: dropout stays off
    hidden, _ = apc(waves, lengths)
    assert cudnn_switch == [{"enabled": False}] * len(apc.model.rnn_layers)
    hidden.sum().backward()
    assert waves.grad is not None and torch.isfinite(waves.grad).all()


def test_cudnn_stays_on_for_extraction_and_training(apc, cudnn_switch):
    waves, lengths = _wave()
    with torch.inference_mode():
        apc(waves, lengths)
    assert cudnn_switch == []  # extraction keeps cuDNN's kernels
    gru = apc.model.rnn_layers[0]
    gru.train()
    try:
        features = torch.randn(2, 5, gru.input_size)
        rnn.run_rnn(gru, features)
    finally:
        gru.eval()
    assert cudnn_switch == []  # train mode: cuDNN's backward works


def test_apc_top_blocks_use_the_same_switch(apc, cudnn_switch):
    blocks = apc.top_blocks(1)
    hidden = torch.randn(2, 7, apc.dim, requires_grad=True)
    mask = torch.ones(2, 7, dtype=torch.bool)
    states = blocks.run_blocks(hidden, mask, torch.tensor([7, 5]))
    assert cudnn_switch == [{"enabled": False}]
    states[-1].sum().backward()
    assert hidden.grad is not None


def test_features_do_not_change_with_the_switch(apc, monkeypatch):
    waves, lengths = _wave()
    with torch.no_grad():
        plain, _ = apc(waves, lengths)
    monkeypatch.setattr(rnn, "_on_cuda", lambda value: True)
    with torch.enable_grad():
        switched, _ = apc(waves.clone().requires_grad_(True), lengths)  # the switch applies
    torch.testing.assert_close(plain, switched.detach())


def test_the_decision_itself():
    gru = torch.nn.GRU(3, 4).eval()
    cpu = torch.randn(2, 3, 3)
    assert not rnn.needs_cudnn_off(gru, cpu)  # CPU never needs it
    with torch.no_grad():
        assert not rnn.needs_cudnn_off(gru, cpu)


def test_apc_gradients_after_an_extraction_in_the_same_process():
    """Extraction runs in inference mode; APC's first fbank there imports torchaudio's kaldi
    module, whose constant must not become an inference tensor that breaks later attacks."""
    import subprocess
    import sys

    program = """
import torch
from trustser.backbones import load_backbone
model = load_backbone("tiny:apc", device="cpu")
x, n = torch.randn(1, 8000) * 0.1, torch.tensor([8000])
with torch.inference_mode():
    model(x, n)
x = x.clone().requires_grad_(True)
model(x, n)[0].sum().backward()
assert torch.isfinite(x.grad).all()
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1500:]
