"""Deciders: what to do at a step. Baselines here; the LLM agent plugs in the same way."""

from runner.deciders.base import (
    Decider,
    DeciderFailed,
    DecisionResult,
    StepBroker,
    StepContext,
)
from runner.deciders.factory import build_decider

__all__ = ["Decider", "DeciderFailed", "DecisionResult", "StepBroker", "StepContext",
           "build_decider"]
