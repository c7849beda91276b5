"""Choose and build the decider a run asks for."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from core.errors import InvalidSpec
from core.records import Model, Run
from core.spec import DeciderKind
from core.store import Store
from runner.deciders.base import Decider
from runner.deciders.baselines import BuyAndHold, SmaCrossover
from runner.deciders.replay import ReplayDecider


def resolve_kind(run: Run, model: Model, llm_available: bool) -> DeciderKind:
    """The spec's decider; by default the model's LLM when one can be called."""
    if run.spec.decider is not None:
        return run.spec.decider
    return DeciderKind.LLM if (model.llm and llm_available) else DeciderKind.SMA_CROSSOVER


def build_decider(kind: DeciderKind, run: Run, model: Model, store: Store) -> Decider:
    params = run.spec.decider_params
    try:
        if kind is DeciderKind.BUY_AND_HOLD:
            return BuyAndHold()
        if kind is DeciderKind.SMA_CROSSOVER:
            return SmaCrossover(int(params.get("fast", 5)), int(params.get("slow", 20)),
                                Decimal(str(params.get("size_buffer", "0.98"))))
        if kind is DeciderKind.REPLAY:
            return ReplayDecider(store, int(params["source_run_id"]), run.user_id,
                                 run.spec.symbols)
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise InvalidSpec(f"bad decider_params for {kind.value}: {exc}") from exc
    raise InvalidSpec(f"decider {kind.value} is not available in this runner")
