"""Ranks and devices of a scaled-out run (trustser.ranks): one rule for extraction and attacks."""

from __future__ import annotations

import pytest
import torch

from trustser.ranks import RankError, Ranks, rank_device, resolve_ranks

LAUNCH = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")


@pytest.fixture
def env(monkeypatch):
    for name in LAUNCH:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_ranks_come_from_arguments_torchrun_or_slurm(env):
    assert resolve_ranks() == Ranks(0, 1, "single", None)
    env.setenv("SLURM_PROCID", "2")
    env.setenv("SLURM_NTASKS", "4")
    env.setenv("SLURM_LOCALID", "1")
    assert resolve_ranks() == Ranks(2, 4, "SLURM", 1)
    env.setenv("RANK", "1")
    env.setenv("WORLD_SIZE", "2")
    env.setenv("LOCAL_RANK", "0")
    assert resolve_ranks() == Ranks(1, 2, "torchrun", 0)
    assert resolve_ranks(0, 3).rank == 0 and resolve_ranks(0, 3).source == "arguments"
    with pytest.raises(RankError, match="rank 3 is outside"):
        resolve_ranks(3, 3)


def test_one_of_rank_and_world_size_alone_is_an_error(env):
    with pytest.raises(RankError, match="--world-size was given without --rank"):
        resolve_ranks(world_size=2)
    with pytest.raises(RankError, match="--rank was given without --world-size"):
        resolve_ranks(rank=1)


def test_a_launcher_counts_only_with_both_of_its_variables(env):
    """A batch script without srun has SLURM_NTASKS but is one process: not 1/N of the work."""
    env.setenv("SLURM_NTASKS", "8")
    assert resolve_ranks() == Ranks()
    env.delenv("SLURM_NTASKS")
    env.setenv("SLURM_PROCID", "3")
    assert resolve_ranks() == Ranks()
    env.setenv("WORLD_SIZE", "4")
    assert resolve_ranks() == Ranks()
    with pytest.raises(RankError, match="SLURM_PROCID"):
        env.setenv("SLURM_NTASKS", "2")  # PROCID 3 of 2
        resolve_ranks()


def test_cuda_without_index_means_the_local_rank_under_a_launcher(env):
    env.setattr(torch.cuda, "is_available", lambda: True)
    env.setattr(torch.cuda, "device_count", lambda: 4)
    ranks = Ranks(5, 8, "torchrun", 5)
    assert rank_device("auto", ranks) == torch.device("cuda:1")
    assert rank_device("cuda", ranks) == torch.device("cuda:1")
    assert rank_device("cuda:3", ranks) == torch.device("cuda:3")
    assert rank_device("cpu", ranks) == torch.device("cpu")
    assert rank_device("cuda", Ranks()) == torch.device("cuda")


def test_extract_and_attack_resolve_ranks_in_the_same_place():
    """Both stages call trustser.ranks (the one rule), not their own copies."""
    import inspect

    import trustser.attacks.runner as runner
    import trustser.extract as extraction

    for module in (extraction, runner):
        source = inspect.getsource(module)
        assert "resolve_ranks(" in source and "rank_device(" in source
        assert "SLURM_PROCID" not in source.replace("``SLURM_PROCID``", "")
