"""Play one run by id: load, validate, take the run, play, save the result.

Everything a run does is loaded from the database by its id; the environment only
says where the database and the event log are. Exit codes tell the Job what to do:
0 for a run that ended (completed or stopped), EXIT_NO_RETRY when retrying cannot help
(bad spec, unknown run, a failure already recorded), 1 for what a new pod may fix.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from core.bars import Bar
from core.errors import (
    InvalidSpec,
    NoMarketData,
    NotFound,
    ProviderRefused,
    ProviderUnavailable,
    StoreUnavailable,
    Superseded,
)
from core.eventlog import EventLog, EventType
from core.eventlog.payloads import log_data, phase_progress
from core.exitcodes import EXIT_NO_RETRY, EXIT_OK, EXIT_RETRY, EXIT_SUPERSEDED
from core.lifecycle import Lifecycle
from core.live_options import Broker
from core.logs import run_context
from core.marketdata.cache import FillProgress
from core.marketdata.resolve import resolve_data_source
from core.marketdata.settings import MarketDataSettings
from core.records import Model, Run
from core.spec import DeciderKind
from core.spend import SpendSettings
from core.status import RunStatus
from core.store import Store
from runner import telemetry
from runner.brokers.settings import BrokerSettings
from runner.budget import Budget, SpendGuard, daily_limit_of
from runner.deciders import Decider, DeciderFailed
from runner.deciders.factory import build_decider, needs_llm, resolve_kind
from runner.events import EventPublisher
from runner.llm_ratelimit import RateLimiter
from runner.llm_settings import LlmSettings
from runner.marketdata import Timeline, market_data_for, timeline_for
from runner.research import run_research
from runner.session import Ending, Session
from runner.settings import RunnerSettings
from runner.shutdown import StopSignal

if TYPE_CHECKING:
    from runner.live.session import LiveSession

log = logging.getLogger(__name__)



@dataclass
class RunnerDeps:
    store: Store
    event_log: EventLog
    settings: RunnerSettings
    stop: StopSignal
    llm: LlmSettings | None = None
    # What is wrong with TICKRUN_LLM_* when they do not validate (llm is None then):
    # a run that needs the LLM fails with it; the others play.
    llm_error: str | None = None
    # The provider key's rate limit shared with every runner on it (Redis when there is
    # one); None: shared within this process only.
    llm_limiter: RateLimiter | None = None
    market_data: MarketDataSettings = field(default_factory=MarketDataSettings)
    # The run's user's paper account keys (a live run on alpaca_paper).
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    spend: SpendSettings = field(default_factory=SpendSettings)

    @property
    def llm_available(self) -> bool:
        return self.llm is not None and self.llm.available


def play_run(run_id: int, deps: RunnerDeps) -> int:
    try:
        run = deps.store.get_run(run_id)
    except NotFound:
        log.error("run %d does not exist", run_id)
        return EXIT_NO_RETRY
    with run_context(run.id, run.user_id):
        try:
            return _play(run, deps)
        except Superseded as exc:
            # A newer runner plays the run (this one was thought lost): leave it alone.
            log.warning("%s; exiting without finalizing", exc)
            return EXIT_SUPERSEDED


def _play(run: Run, deps: RunnerDeps) -> int:
    if run.status.is_terminal:
        log.info("run is already %s; nothing to do", run.status.value)
        return EXIT_OK
    if run.status is RunStatus.QUEUED:
        log.error("run is queued, not admitted: the reconciler admits it first")
        return EXIT_RETRY
    publisher = EventPublisher(deps.event_log, run.id)
    try:
        session = _prepare_through_outages(run, deps, publisher)
        if session is None:  # stopped while waiting for the database
            return EXIT_RETRY
    except (NoMarketData, ProviderRefused) as exc:
        # Retrying cannot help: the provider has no such bars, or refuses the key.
        log.error("market data: %s", exc)
        _finalize(deps, publisher, run, RunStatus.FAILED, str(exc), None)
        return EXIT_NO_RETRY
    except InvalidSpec as exc:
        log.error("run cannot be played: %s", exc)
        _finalize(deps, publisher, run, RunStatus.FAILED, f"invalid run: {exc}", None)
        return EXIT_NO_RETRY
    except DeciderFailed as exc:
        log.error("run cannot be played: %s", exc.reason)
        _finalize(deps, publisher, run, RunStatus.FAILED, exc.reason, None)
        return EXIT_NO_RETRY
    except ProviderUnavailable as exc:
        # The days fetched so far are cached; the Job's next pod goes on from them.
        log.warning("market data: %s; the next attempt resumes the fetch", exc)
        publisher.publish(EventType.LOG, log_data("warning", str(exc)))
        publisher.finish(1.0)
        return EXIT_RETRY
    try:
        return _play_session(session, run, deps, publisher)
    finally:
        session.close()


def _play_session(session: Session, run: Run, deps: RunnerDeps,
                  publisher: EventPublisher) -> int:
    try:
        stopping = session.run.status is RunStatus.STOPPING
        ending = Ending.STOPPED if stopping else session.play()
    except Superseded:
        raise
    except (DeciderFailed, ProviderRefused) as exc:
        # A refused key, an unknown model, a live stream refusing the key or the plan:
        # every step would fail the same way, and so would a new pod. The trades made so
        # far stay.
        why = exc.reason if isinstance(exc, DeciderFailed) else str(exc)
        log.error("run failed: %s", why)
        _finalize(deps, publisher, run, RunStatus.FAILED, why,
                  session.result(Ending.FAILED), attempt=session.attempt)
        return EXIT_NO_RETRY
    except Exception as exc:
        # The trades stay; a new pod resumes from the checkpoint.
        log.exception("session failed at a step; a retry resumes from the checkpoint")
        publisher.publish(EventType.LOG, log_data("error", f"runner error: {exc}"))
        publisher.finish(1.0)
        return EXIT_RETRY
    ended_itself = session.stop_reason is not None  # a budget: no one else to ask
    if ending is Ending.STOPPED and not ended_itself and not _stop_intended(run.id, deps):
        return _interrupted(run.id, deps, publisher)
    status = RunStatus.COMPLETED if ending is Ending.COMPLETED else RunStatus.STOPPED
    reason = (session.stop_reason or _stop_reason(deps)) if ending is Ending.STOPPED else None
    if ending is Ending.STOPPED:
        session.wind_down()  # a stop meant: cancel (and maybe flatten) a live run's book
    _finalize(deps, publisher, run, status, reason, session.result(ending),
              attempt=session.attempt)
    if deps.stop.received_at is not None:
        log.info("stopped %.2fs after the request, at step %d",
                 time.monotonic() - deps.stop.received_at,
                 deps.store.get_run(run.id).steps_done)
    return EXIT_OK


def _stop_reason(deps: RunnerDeps) -> str | None:
    """A signal names itself; a run that was `stopping` before this runner played a
    step keeps the reason whoever asked gave (None keeps it: "stop requested",
    "stopped: Job deleted")."""
    name = deps.stop.signal_name
    return f"stopped ({name})" if name and name.startswith("SIG") else None


def _stop_intended(run_id: int, deps: RunnerDeps) -> bool:
    """SIGINT is a person's stop, and so is a run `stopping` before it played a step
    (no signal). A SIGTERM is a stop only once the run says `stopping` (the API, or the
    controller seeing its Job deleted, says so); otherwise it is a disruption. The one
    read of the run's status a stop needs (runner.shutdown)."""
    if deps.stop.signal_name in (None, "SIGINT"):
        return True
    deadline = time.monotonic() + deps.settings.stop_intent_wait_seconds
    while True:
        if deps.store.get_run(run_id).status is not RunStatus.RUNNING:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def _interrupted(run_id: int, deps: RunnerDeps, publisher: EventPublisher) -> int:
    """Evicted or its pod deleted: leave the run running for the Job's next pod, which
    resumes after the checkpoint; exit 1 so the Job makes one."""
    steps = deps.store.get_run(run_id).steps_done
    log.warning("%s without a stop request (eviction or pod deletion); the next attempt "
                "resumes at step %d", deps.stop.signal_name, steps)
    publisher.publish(EventType.LOG, log_data(
        "warning", f"runner interrupted at step {steps}; the next attempt resumes there"))
    publisher.flush()
    return EXIT_RETRY


def _prepare_through_outages(run: Run, deps: RunnerDeps, publisher: EventPublisher
                             ) -> Session | None:
    """Prepare the session; while the database does not answer (a restart, or a path
    to it lost until the connection's TCP timeout), wait and prepare again, as a step
    does, rather than fail the pod and wait out the Job's backoff for a new one.
    None when a stop comes while waiting."""
    deadline = time.monotonic() + deps.settings.store_outage_seconds
    delay = 0.5
    fresh = run  # read just now by play_run; read again only after an outage
    while True:
        try:
            return _prepare(fresh, deps, publisher)
        except StoreUnavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("preparing: %s; retrying in %.1fs", exc, delay)
            telemetry.STORE_OUTAGE_RETRIES.inc()
            if deps.stop.wait(delay):
                return None
            delay = min(delay * 2, 5.0)
            try:
                fresh = deps.store.get_run(run.id)
            except StoreUnavailable:
                continue  # still away: the next round waits longer


def _prepare(run: Run, deps: RunnerDeps, publisher: EventPublisher) -> Session:
    model = deps.store.get_model(run.model_id)
    if run.spec.live is None:  # a live run plays its session even if resumed after it
        run.spec.check_playable()
    if run.spec.data is None:  # stored without the API (tests, tools): resolve it now
        run = replace(run, spec=resolve_data_source(run.spec, deps.store, deps.market_data))
    timeline = timeline_for(run.spec)
    decider, why = _decider(run, deps)
    data = run.spec.data.value if run.spec.data else None
    started = Lifecycle(deps.store).start(run.id, decider=decider.name, decider_reason=why,
                                          publish=publisher.publish, details={"data": data})
    run = replace(started, spec=run.spec)
    bars = ({s: [] for s in run.spec.symbols} if run.spec.live is not None
            else _load_bars(run, timeline, deps, publisher))
    log.info("playing %s %s with %s on %s bars from step %d of %d", run.spec.mode.value,
             ",".join(run.spec.symbols), decider.name, data, run.steps_done, len(timeline))
    # Only an agent reads research (the baselines and a replay never ask), and not in a
    # blind run (research is dated by nature).
    research = (run_research(run.spec.data, deps.store, deps.market_data)
                if decider.name == DeciderKind.LLM.value and not run.spec.blind else None)
    parts: dict[str, Any] = dict(
        store=deps.store, publisher=publisher, run=run, model=model, decider=decider,
        timeline=timeline, bars=bars, stop=deps.stop, settings=deps.settings,
        guard=_spend_guard(run, model, decider, deps), research=research)
    if run.spec.live is not None:
        return _live_session(run, deps, parts)
    return Session(**parts)


def _live_session(run: Run, deps: RunnerDeps, parts: dict[str, Any]) -> LiveSession:
    """A live run's session: the provider's stream, the run's clock, and on a paper
    account the broker's book and the trading service that books its fills."""
    assert run.spec.live is not None
    # Imported here, by live runs alone: the broker's and the providers' clients (alpaca,
    # massive, pandas) were half a second of every replay's start and 40 MB of its pod.
    from runner.brokers.alpaca_paper import AlpacaPaperBook
    from runner.live.clock import LiveClock
    from runner.live.feeds import live_feed_for
    from runner.live.paper import PaperTrading
    from runner.live.session import LiveSession

    clock = LiveClock.parse(deps.settings.live_clock)
    feed = live_feed_for(run.spec, deps.market_data, clock)
    if run.spec.live.broker is not Broker.ALPACA_PAPER:
        return LiveSession(feed=feed, clock=clock, **parts)
    keys = deps.broker
    if keys.alpaca_key_id is None or keys.alpaca_secret_key is None:
        raise InvalidSpec("a live run on alpaca_paper needs its user's paper keys "
                          "(TICKRUN_BROKER_ALPACA_KEY_ID, TICKRUN_BROKER_ALPACA_SECRET_KEY; "
                          "on the cluster the user's Secret, see the README)")
    book = AlpacaPaperBook(keys.alpaca_key_id, keys.alpaca_secret_key, url=keys.alpaca_url,
                           stream_url=keys.alpaca_stream_url)
    spec = run.spec
    trading = PaperTrading(deps.store, book, fill_wait_seconds=keys.fill_wait_seconds,
                           fee_per_trade=spec.fee_per_trade, attempt=run.attempts,
                           initial_margin=spec.initial_margin,
                           maintenance_margin=spec.maintenance_margin)
    return LiveSession(feed=feed, clock=clock, broker=book, trading=trading, **parts)


def _load_bars(run: Run, timeline: Timeline, deps: RunnerDeps,
               publisher: EventPublisher) -> dict[str, list[Bar]]:
    """Every symbol's bars before step 1; a fetch from a provider says what it is doing
    in the run's status reason and in events, so a long one is visibly not stuck."""
    source = run.spec.data.value if run.spec.data else "synthetic"
    noted = run.status_reason is not None  # an earlier attempt's fetch note, if any

    def fetching(p: FillProgress) -> None:
        nonlocal noted
        noted = True
        note = (f"fetching {p.interval.value} bars of {p.symbol} from {source}: "
                f"{p.days_done}/{p.days_total} days")
        Lifecycle(deps.store).note(run.id, RunStatus.RUNNING, note)
        publisher.progress(phase_progress(step=run.steps_done, total=len(timeline),
                                          phase=note))
        publisher.publish(EventType.LOG, log_data(
            "info", note, phase="fetching_data", symbol=p.symbol, days_done=p.days_done,
            days_total=p.days_total, bars=p.bars))

    provider = market_data_for(run.spec, deps.store, deps.settings.data_dir,
                               deps.market_data, on_fetch=fetching)
    bars = {symbol: provider.bars(symbol, timeline) for symbol in run.spec.symbols}
    if noted:  # no write at all for the runs that fetched nothing
        Lifecycle(deps.store).note(run.id, RunStatus.RUNNING, None)
    return bars


def _spend_guard(run: Run, model: Model, decider: Decider, deps: RunnerDeps
                 ) -> SpendGuard | None:
    """Only a run an LLM plays spends: its budget and its user's daily limit."""
    if decider.name != DeciderKind.LLM.value:
        return None
    budget = Budget.of(run, model, deps.settings)
    daily = daily_limit_of(deps.store, run.user_id, deps.spend.user_daily_cost_usd)
    log.info("LLM budget %s, daily limit %s", budget.to_json(), daily)
    return SpendGuard(deps.store, run, budget, daily, llm=model.llm,
                      refresh_seconds=deps.settings.spend_check_seconds)


def _decider(run: Run, deps: RunnerDeps) -> tuple[Decider, str | None]:
    """The decider that plays the run, and why when it is not the LLM its model names."""
    model = deps.store.get_model(run.model_id)
    if deps.llm_error is not None and needs_llm(run, model):
        # Not a fallback to a baseline: the operator meant an LLM and mistyped a setting.
        raise DeciderFailed(f"invalid TICKRUN_LLM_* settings: {deps.llm_error}")
    choice = resolve_kind(run, model, deps.llm_available)
    decider = build_decider(choice.kind, run, model, deps.store, llm=deps.llm,
                            decision_timeout_seconds=deps.settings.decision_timeout_seconds,
                            limiter=deps.llm_limiter)
    return decider, choice.reason


def _finalize(deps: RunnerDeps, publisher: EventPublisher, run: Run, status: RunStatus,
              reason: str | None, result: dict[str, Any] | None, *,
              attempt: int | None = None) -> None:
    """Through the one owner of a run's life: the final status, the result and the
    final events; the events go through the publisher, which holds them if Redis is
    down."""
    final = Lifecycle(deps.store).finish(run, status, reason, result=result, attempt=attempt,
                                         publish=publisher.publish)
    if final is not None:
        log.info("run %s: %s", status.value, _summary_line(final))
    publisher.finish(min(3.0, deps.settings.stop_budget_seconds / 3))


def _summary_line(run: Run) -> str:
    r = run.result or {}
    return (f"{run.steps_done}/{run.steps_total} steps, equity {r.get('final_equity')}, "
            f"return {r.get('return_pct')}%, {r.get('trades', 0)} trades "
            f"({r.get('refused', 0)} refused)")
