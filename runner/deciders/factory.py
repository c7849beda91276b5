"""Choose and build the decider a run asks for."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from core.errors import InvalidSpec
from core.records import Model, Run
from core.spec import DeciderKind
from core.store import Store
from runner.deciders.base import Decider
from runner.deciders.baselines import BuyAndHold, RandomTrader, SmaCrossover
from runner.deciders.replay import ReplayDecider
from runner.llm_ratelimit import RateLimiter
from runner.llm_settings import LlmSettings

# The llm decider answers HOLD itself this long before the session loop would abandon it.
LLM_DEADLINE_MARGIN_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class DeciderChoice:
    kind: DeciderKind
    # Why the run is not played by the LLM its model names (or by what, when the model
    # names none): shown with the run and its result. None: the LLM it names plays it.
    reason: str | None = None


def resolve_kind(run: Run, model: Model, llm_available: bool) -> DeciderChoice:
    """The spec's decider; by default the model's LLM when one can be called."""
    kind = run.spec.decider
    who = f"model {model.signature!r}"
    if kind is not None:
        if kind is DeciderKind.LLM or not model.llm:
            return DeciderChoice(kind)
        return DeciderChoice(kind, f"the run asks for {kind.value} ({who} names {model.llm})")
    if model.llm and llm_available:
        return DeciderChoice(DeciderKind.LLM)
    default = DeciderKind.SMA_CROSSOVER
    if model.llm:
        return DeciderChoice(default, f"{who} names {model.llm} but this runner has no LLM "
                                      f"key (TICKRUN_LLM_API_KEY): played by {default.value}")
    return DeciderChoice(default, f"{who} names no LLM: played by {default.value}, the default")


def needs_llm(run: Run, model: Model) -> bool:
    """The run asks for the LLM, or leaves the choice to a model that names one."""
    decider = run.spec.decider
    return decider is DeciderKind.LLM or (decider is None and bool(model.llm))


def build_decider(kind: DeciderKind, run: Run, model: Model, store: Store, *,
                  llm: LlmSettings | None = None,
                  decision_timeout_seconds: float = 30.0,
                  limiter: RateLimiter | None = None) -> Decider:
    """`limiter`: the provider key's shared rate limit (None: this process's)."""
    params: dict[str, Any] = run.spec.decider_params  # JSON: each read is checked below
    if kind is DeciderKind.LLM:
        return _llm_decider(run, model, llm, decision_timeout_seconds, limiter)
    try:
        if kind is DeciderKind.BUY_AND_HOLD:
            return BuyAndHold()
        if kind is DeciderKind.SMA_CROSSOVER:
            return SmaCrossover(int(params.get("fast", 5)), int(params.get("slow", 20)),
                                Decimal(str(params.get("size_buffer", "0.98"))))
        if kind is DeciderKind.RANDOM:
            return RandomTrader(run.spec.seed,
                                float(params.get("trade_probability", 0.1)),
                                Decimal(str(params.get("size_buffer", "0.98"))))
        if kind is DeciderKind.REPLAY:
            return ReplayDecider(store, int(params["source_run_id"]), run.user_id, run.spec)
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise InvalidSpec(f"bad decider_params for {kind.value}: {exc}") from exc
    raise InvalidSpec(f"decider {kind.value} is not available in this runner")


def _llm_decider(run: Run, model: Model, llm: LlmSettings | None,
                 decision_timeout_seconds: float, limiter: RateLimiter | None) -> Decider:
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
        return LlmDecider(run=run, model=model, settings=llm, deadline_seconds=deadline,
                          limiter=limiter)
    except ValidationError as exc:
        raise InvalidSpec(f"bad llm parameters of model {model.signature!r}: "
                          f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc
