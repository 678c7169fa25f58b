"""Which share of the work this process does, and on which GPU: one rule for every stage.

Extraction and attacks scale out the same way: ``rank`` of ``world_size`` processes, each doing
a fixed share. Ranks come from explicit arguments (both or neither), else torchrun's ``RANK`` and
``WORLD_SIZE``, else SLURM's ``SLURM_PROCID`` and ``SLURM_NTASKS``; a launcher counts only when
both of its variables are set, so a stray ``SLURM_NTASKS`` in a batch script without ``srun``
does not shrink a run to one task's share. Under a launcher, ``--device auto`` and a plain
``--device cuda`` mean ``cuda:LOCAL_RANK`` (torchrun's ``LOCAL_RANK``, SLURM's
``SLURM_LOCALID``), one GPU per process on a node.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from trustser._validation import TrustSERError
from trustser.devices import resolve_device

__all__ = ["LAUNCHERS", "RankError", "Ranks", "rank_device", "resolve_ranks"]

# (name, rank variable, world-size variable, local-rank variable), in order of precedence.
LAUNCHERS = (
    ("torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"),
    ("SLURM", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
)


class RankError(TrustSERError, ValueError):
    """Rank arguments or launcher variables that do not describe one share of the work."""


@dataclass(frozen=True)
class Ranks:
    """This process's share: ``rank`` of ``world_size``, and where that came from.

    ``source`` is ``"arguments"``, ``"torchrun"``, ``"SLURM"`` or ``"single"``; ``local_rank``
    is the process's index on its node under a launcher (``None`` otherwise).
    """

    rank: int = 0
    world_size: int = 1
    source: str = "single"
    local_rank: int | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        if not self.distributed:
            return "a single process"
        return f"rank {self.rank} of {self.world_size} ({self.source})"


def _integer(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise RankError(f"${name}={value!r} is not an integer.") from None


def _check(rank: int, world_size: int, where: str) -> None:
    if world_size < 1:
        raise RankError(f"world size must be >= 1, got {world_size} ({where}).")
    if not 0 <= rank < world_size:
        raise RankError(
            f"rank {rank} is outside [0, {world_size - 1}] for world size {world_size} ({where})."
        )


def resolve_ranks(
    rank: int | None = None,
    world_size: int | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Ranks:
    """This process's :class:`Ranks` from the arguments, else the launcher, else a single process.

    ``rank`` and ``world_size`` go together: one without the other is a :class:`RankError`.
    """
    env = os.environ if environ is None else environ
    if (rank is None) != (world_size is None):
        given, missing = (
            ("--rank", "--world-size") if world_size is None else ("--world-size", "--rank")
        )
        raise RankError(
            f"{given} was given without {missing}; pass both (e.g. --rank 0 --world-size 2) or "
            "neither (ranks then come from torchrun or SLURM)."
        )
    local = None
    for name, rank_var, size_var, local_var in LAUNCHERS:
        if env.get(rank_var, "") != "" and env.get(size_var, "") != "":
            if local is None and env.get(local_var, "") != "":
                local = _integer(local_var, env[local_var])
            if rank is None:
                rank = _integer(rank_var, env[rank_var])
                world_size = _integer(size_var, env[size_var])
                _check(rank, world_size, f"${rank_var} and ${size_var} from {name}")
                return Ranks(rank, world_size, name, local)
            break
    if rank is None or world_size is None:
        return Ranks()
    _check(rank, world_size, "--rank/--world-size")
    return Ranks(int(rank), int(world_size), "arguments", local)


def rank_device(device: str | torch.device, ranks: Ranks) -> torch.device:
    """``resolve_device``, but ``auto`` and a plain ``cuda`` pick ``cuda:LOCAL_RANK`` under a launcher.

    An explicit index (``cuda:1``) or a ``torch.device`` is taken as given.
    """
    if (
        isinstance(device, str)
        and device in ("auto", "cuda")
        and ranks.distributed
        and ranks.local_rank is not None
        and torch.cuda.is_available()
    ):
        return torch.device(f"cuda:{ranks.local_rank % torch.cuda.device_count()}")
    return resolve_device(device)
