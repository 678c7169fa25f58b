"""The deployed end-to-end model of each fold (backbone + trained head + what a variant changes),
loaded and checked against the store: what attacks differentiate, cost times and end-to-end
evaluations classify with."""

from trustser.deployed.evaluate import evaluate_end_to_end
from trustser.deployed.loading import (
    DeployedModelError,
    Deployment,
    FoldPlan,
    deploy_plan,
    open_deployed_group,
    plan_folds,
)

__all__ = [
    "DeployedModelError",
    "Deployment",
    "FoldPlan",
    "deploy_plan",
    "evaluate_end_to_end",
    "open_deployed_group",
    "plan_folds",
]
