"""Choose and build the decider a run asks for."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from pydantic import ValidationError

from core.errors import InvalidSpec
from core.records import Model, Run
from core.spec import DeciderKind
from core.store import Store
from runner.deciders.base import Decider
from runner.deciders.baselines import BuyAndHold, SmaCrossover
from runner.deciders.replay import ReplayDecider
from runner.llm_settings import LlmSettings

# The llm decider answers HOLD itself this long before the session loop would abandon it.
LLM_DEADLINE_MARGIN_SECONDS = 1.0


def resolve_kind(run: Run, model: Model, llm_available: bool) -> DeciderKind:
    """The spec's decider; by default the model's LLM when one can be called."""
    if run.spec.decider is not None:
        return run.spec.decider
    return DeciderKind.LLM if (model.llm and llm_available) else DeciderKind.SMA_CROSSOVER


def build_decider(kind: DeciderKind, run: Run, model: Model, store: Store, *,
                  llm: LlmSettings | None = None,
                  decision_timeout_seconds: float = 30.0) -> Decider:
    params = run.spec.decider_params
    if kind is DeciderKind.LLM:
        return _llm_decider(run, model, llm, decision_timeout_seconds)
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


def _llm_decider(run: Run, model: Model, llm: LlmSettings | None,
                 decision_timeout_seconds: float) -> Decider:
    if llm is None or not llm.available:
        raise InvalidSpec("the llm decider needs a provider key: set TICKRUN_LLM_API_KEY "
                          "(or OPENAI_API_KEY / OPENROUTER_API_KEY)")
    if not model.llm:
        raise InvalidSpec(f"model {model.signature!r} has no llm configured")
    from runner.deciders.llm import LlmDecider  # LangChain loads only for LLM runs

    margin = min(LLM_DEADLINE_MARGIN_SECONDS, decision_timeout_seconds / 10)
    deadline = decision_timeout_seconds - margin
    if llm.decision_timeout_seconds is not None:
        deadline = min(deadline, llm.decision_timeout_seconds)
    try:
        return LlmDecider(run=run, model=model, settings=llm, deadline_seconds=deadline)
    except ValidationError as exc:
        raise InvalidSpec(f"bad llm parameters of model {model.signature!r}: "
                          f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc
