"""``trustser run``: prepare → extract → heads → probes → attack → cost → profile, resumable.

:mod:`.config` holds what a run is asked to do (options, a TOML file), :mod:`.ledger` what each
finished stage was made with, and :mod:`.run` runs the stages (docs/reproducing-the-paper.md).
"""

from trustser.pipeline.config import (
    STAGES,
    AttackSettings,
    CorpusSource,
    ExtractSettings,
    HeadSettings,
    MitigateSettings,
    PipelineConfig,
    PipelineConfigError,
    VariantSettings,
    config_from_options,
    load_config,
)
from trustser.pipeline.run import Notify, PipelineResult, StageEvent, run_pipeline

__all__ = [
    "STAGES",
    "AttackSettings",
    "CorpusSource",
    "ExtractSettings",
    "HeadSettings",
    "MitigateSettings",
    "Notify",
    "PipelineConfig",
    "PipelineConfigError",
    "PipelineResult",
    "StageEvent",
    "VariantSettings",
    "config_from_options",
    "load_config",
    "run_pipeline",
]
