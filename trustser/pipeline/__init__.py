"""``trustser run``: prepare → extract → heads → probes → verify → attack → cost → profile.

:mod:`.config` holds what a run is asked to do (options, a TOML file), :mod:`.ledger` what each
finished stage was made with, and :mod:`.run` runs the stages (docs/reproducing-the-paper.md).
The package's names are those of :mod:`.config` and :mod:`.run`.
"""

from trustser.pipeline import config, run
from trustser.pipeline.config import *  # noqa: F403 - re-exported: config.__all__
from trustser.pipeline.run import *  # noqa: F403 - re-exported: run.__all__

__all__ = [*config.__all__, *run.__all__]
