"""The llm decider's parts that need no server: settings, calculator, prompt, broker."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from core.bars import Bar
from core.records import (
    Model,
    Order,
    OrderOrigin,
    OrderRecord,
    OrderState,
    OrderType,
    Portfolio,
    Refusal,
    Run,
    Side,
    TimeInForce,
    Trade,
    TradeStatus,
)
from core.spec import RunSpec
from core.status import RunStatus
from runner.broker import DeciderBroker, StepClosed
from runner.deciders.base import StepContext
from runner.deciders.llm import LlmParams
from runner.deciders.llm_prompt import step_message, system_prompt
from runner.deciders.llm_tools import CalculatorError, build_tools, calculate
from runner.llm_settings import LlmSettings, Provider

KEYS = ("TICKRUN_LLM_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY", "TICKRUN_LLM_PROVIDER",
        "TICKRUN_LLM_BASE_URL")
NOW = dt.datetime(2025, 3, 3, 15, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)


# -- settings ----------------------------------------------------------------------------
def test_no_key_means_the_llm_is_not_available() -> None:
    settings = LlmSettings()
    assert not settings.available and settings.provider is Provider.OPENAI
    assert settings.base_url == "https://api.openai.com/v1"


def test_an_openrouter_key_alone_selects_openrouter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-very-secret")
    settings = LlmSettings()
    assert settings.available and settings.provider is Provider.OPENROUTER
    assert settings.base_url == "https://openrouter.ai/api/v1"
    assert settings.model_name("openai/gpt-4.1-mini") == "openai/gpt-4.1-mini"
    assert "sk-or-very-secret" not in repr(settings) + str(settings)
    assert "sk-or-very-secret" not in str(settings.model_dump())


def test_the_provider_picks_its_own_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-openrouter")
    assert LlmSettings().api_key == SecretStr("sk-openai")
    monkeypatch.setenv("TICKRUN_LLM_PROVIDER", "openrouter")
    assert LlmSettings().api_key == SecretStr("sk-openrouter")
    monkeypatch.setenv("TICKRUN_LLM_API_KEY", "sk-tickrun")
    monkeypatch.setenv("TICKRUN_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    settings = LlmSettings()
    assert settings.api_key == SecretStr("sk-tickrun") and settings.base_url.endswith(":9/v1")


def test_openai_gets_the_bare_model_name() -> None:
    settings = LlmSettings(provider="openai", api_key=SecretStr("k"))
    assert settings.model_name("openai/gpt-4.1-mini") == "gpt-4.1-mini"
    assert settings.model_name("gpt-4o") == "gpt-4o"


def test_model_parameters_are_validated_and_other_keys_ignored() -> None:
    params = LlmParams.model_validate({"max_tool_calls": 2, "risk": "low"})
    assert params.max_tool_calls == 2 and params.context_bars == 30
    with pytest.raises(ValidationError):
        LlmParams.model_validate({"max_tool_calls": -1})
    with pytest.raises(ValidationError):
        LlmParams.model_validate({"temperature": 7})


# -- calculator --------------------------------------------------------------------------
@pytest.mark.parametrize("expression, value", [
    ("1 + 2 * 3", "7"), ("(10000 - 250.5) / 187.25", "52.06675567423230974632843792"),
    ("-2 ** 2", "-4"), ("10 // 3 + 10 % 3", "4"), ("max(1, 2.5, -3)", "2.5"),
    ("round(2.345, 2)", "2.34"), ("sqrt(16)", "4"), ("abs(-0.1)", "0.1"),
])
def test_the_calculator_does_exact_arithmetic(expression: str, value: str) -> None:
    assert calculate(expression) == Decimal(value)


@pytest.mark.parametrize("expression", [
    "__import__('os').system('true')", "open('/etc/passwd')", "x", "(1).real",
    "[1, 2]", "10 ** 10 ** 10", "2 ** 0.5", "1 / 0", "lambda: 1", "1 if 1 else 2",
    "9" * 201, "sqrt(-1)", "max(x=1)",
])
def test_the_calculator_refuses_anything_else(expression: str) -> None:
    with pytest.raises(CalculatorError):
        calculate(expression)


# -- prompt and tools over a step context --------------------------------------------------
class Broker:
    """A StepBroker with a book in memory: market orders fill at 10 (refused past the
    cash), resting orders rest, a buy's stop_loss places its stop."""

    step = 2

    def __init__(self) -> None:
        self.orders: list[Order] = []
        self.book: dict[int, OrderRecord] = {}
        self.cash = Decimal(1000)
        self.holdings = {"AAPL": Decimal(3)}

    def submit(self, order: Order, reasoning: str | None = None) -> Trade:
        self.orders.append(order)
        refused = order.quantity * 10 > self.cash
        trade = Trade(id=1, run_id=1, step=2, seq=len(self.orders) - 1, bar_time=NOW,
                      filled_at=None if refused else NOW, side=order.side,
                      symbol=order.symbol, quantity=order.quantity, price=Decimal(10),
                      fees=Decimal(0),
                      status=TradeStatus.REFUSED if refused else TradeStatus.FILLED,
                      reason="insufficient cash" if refused else None,
                      cash_after=self.cash, reasoning=reasoning, created_at=NOW,
                      order_id=100 + len(self.orders))
        if not refused and order.stop_loss is not None:
            self._rest(Order(Side.SELL, order.symbol, order.quantity, OrderType.STOP,
                             stop_price=order.stop_loss, time_in_force=TimeInForce.GTC),
                       origin=OrderOrigin.STOP_LOSS, parent_id=trade.order_id)
        return trade

    def _rest(self, order: Order, *, origin: OrderOrigin = OrderOrigin.DECIDER,
              parent_id: int | None = None) -> OrderRecord:
        rec = OrderRecord(
            id=200 + len(self.book), run_id=1, step=2, seq=len(self.orders), bar_time=NOW,
            active_from=3, side=order.side, symbol=order.symbol, quantity=order.quantity,
            type=order.type, limit_price=order.limit_price, stop_price=order.stop_price,
            time_in_force=order.time_in_force, stop_loss=order.stop_loss, origin=origin,
            parent_id=parent_id, state=OrderState.OPEN, reason=None, triggered_at=None,
            filled_at=None, fill_price=None, reasoning=None, created_at=NOW, updated_at=NOW)
        self.book[rec.id] = rec
        return rec

    def place(self, order: Order, reasoning: str | None = None) -> OrderRecord | Trade:
        if order.type is OrderType.MARKET:
            return self.submit(order, reasoning)
        self.orders.append(order)
        return self._rest(order)

    def cancel(self, order_id: int, reasoning: str | None = None) -> OrderRecord | Refusal:
        rec = self.book.pop(order_id, None)
        if rec is None:
            return Refusal(f"no order {order_id} in this run")
        return dataclasses.replace(rec, state=OrderState.CANCELLED, reason="cancelled")

    def open_orders(self) -> list[OrderRecord]:
        return list(self.book.values())

    def close_all(self, reasoning: str | None = None) -> list[Trade]:
        self.book.clear()
        return [self.submit(Order(Side.SELL if q > 0 else Side.COVER, s, abs(q)))
                for s, q in self.holdings.items()]

    def portfolio(self) -> Portfolio:
        return Portfolio(run_id=1, cash=self.cash, holdings=dict(self.holdings))


def bars(n: int) -> list[Bar]:
    return [Bar(NOW + dt.timedelta(minutes=i), Decimal(10 + i), Decimal(11 + i),
                Decimal(9 + i), Decimal("10.5") + i, Decimal(100)) for i in range(n)]


def context(broker: Broker | None = None, **model_kw: Any) -> StepContext:
    spec = RunSpec.model_validate({"mode": "intraday", "date": dt.date(2025, 3, 3),
                                   "symbols": ["AAPL"],
                                   "flat_at_close": model_kw.get("flat", False)})
    broker = broker or Broker()
    run = Run(id=1, user_id="u", model_id=1, spec=spec, status=RunStatus.RUNNING,
              status_reason=None, steps_total=390, steps_done=2, created_at=NOW,
              admitted_at=None, started_at=None, finished_at=None, stop_requested_at=None,
              result=None)
    model = Model(id=1, user_id="u", signature="alpha", llm="openai/gpt-4.1-mini",
                  custom_rules=model_kw.get("rules"), custom_instructions=model_kw.get("inst"),
                  parameters={}, created_at=NOW, updated_at=NOW)
    return StepContext(run=run, model=model, step=2, steps_total=390, bar_time=NOW
                       + dt.timedelta(minutes=2), history={"AAPL": bars(3)},
                       portfolio=broker.portfolio(), recent_trades=[], broker=broker,
                       open_orders=broker.open_orders())


def test_the_system_prompt_states_the_run_and_the_owner_rules() -> None:
    ctx = context(rules="Max 10 shares.", inst="Be brief.")
    text = system_prompt(ctx.run, ctx.model, max_tool_calls=4)
    assert "Intraday session on 2025-03-03" in text and "09:30-16:00" in text
    assert "AAPL" in text and "next bar's open" in text and "At most 4 tool calls" in text
    assert text.index("Max 10 shares.") < text.index("Be brief.")
    # The orders there are, how they fill, and the run's margin rates.
    for words in ("short(symbol, quantity, stop_loss?)", "place_limit_order(",
                  "place_stop_order(", "cancel_order(order_id)", "close_all()",
                  "under 0.5 x the value of your shorts", "under 0.3 x that value",
                  "at min(open, L)", "at max(open, S)", "gtc: until filled"):
        assert words in text, words
    assert "Flat at the close" not in text
    assert "Flat at the close" in system_prompt(context(flat=True).run, ctx.model,
                                                max_tool_calls=4)


def test_the_step_message_shows_bars_up_to_now_only() -> None:
    ctx = context()
    text = step_message(ctx, context_bars=2)
    assert text.startswith("Step 3 of 390")
    shown = [b.time.isoformat() for b in bars(3)]
    assert shown[0] not in text.split("bar time")[1].split("\n", 1)[1]  # 2 bars of context
    assert shown[1] in text and shown[2] in text
    assert "cash 1000" in text and "AAPL 3" in text and "Open orders: none." in text


def test_the_step_message_shows_open_orders_and_shorts() -> None:
    broker = Broker()
    broker.holdings = {"AAPL": Decimal(-4)}
    broker._rest(Order(Side.COVER, "AAPL", Decimal(4), OrderType.LIMIT,
                       limit_price=Decimal("9.50"), time_in_force=TimeInForce.GTC))
    broker._rest(Order(Side.COVER, "AAPL", Decimal(4), OrderType.STOP,
                       stop_price=Decimal(15)), origin=OrderOrigin.STOP_LOSS, parent_id=7)
    text = step_message(context(broker), context_bars=2)
    assert "holdings AAPL -4" in text and "short value 50.0" in text  # 4 x close 12.5
    assert "cash free for buys 950.0" in text
    assert "- #200 limit cover 4 AAPL limit 9.5, gtc, placed step 3" in text
    assert "- #201 stop cover 4 AAPL stop 15, day, placed step 3, stop-loss of #7" in text


def test_tools_trade_through_the_step_broker_and_reject_other_symbols() -> None:
    ctx = context()
    made: list[Trade] = []
    tools = {t.name: t for t in build_tools(ctx, max_lookback=2, on_trade=made.append)}
    assert tools["buy"].invoke({"symbol": "aapl", "quantity": 5})["status"] == "filled"
    assert tools["sell"].invoke({"symbol": "MSFT", "quantity": 1})["status"] == "rejected"
    assert tools["buy"].invoke({"symbol": "AAPL", "quantity": 500})["reason"] == (
        "insufficient cash")
    assert [(o.side, o.symbol, o.quantity) for o in ctx.broker.orders] == [  # type: ignore[attr-defined]
        (Side.BUY, "AAPL", Decimal(5)), (Side.BUY, "AAPL", Decimal(500))]
    assert len(made) == 2
    history = tools["price_history"].invoke({"symbol": "AAPL", "lookback": 50})
    assert len(history["bars"]) == 2  # capped at max_lookback, ending at the current bar
    assert history["bars"][-1]["time"] == bars(3)[-1].time.isoformat()
    assert tools["portfolio"].invoke({})["equity"] == str(Decimal(1000) + 3 * Decimal("12.5"))
    assert tools["calculator"].invoke({"expression": "1/0"})["error"].startswith("Division")
    with pytest.raises(ValidationError):
        tools["buy"].invoke({"symbol": "AAPL", "quantity": "many"})


def test_order_tools_place_cancel_list_and_close_through_the_broker() -> None:
    broker = Broker()
    ctx = context(broker)
    made: list[Trade] = []
    actions: list[str] = []
    tools = {t.name: t for t in build_tools(ctx, max_lookback=2, on_trade=made.append,
                                            on_action=actions.append)}
    assert sorted(tools) == ["buy", "calculator", "cancel_order", "close_all", "cover",
                             "open_orders", "place_limit_order", "place_stop_order",
                             "portfolio", "price_history", "sell", "short"]
    bought = tools["buy"].invoke({"symbol": "AAPL", "quantity": 2, "stop_loss": 8.5})
    assert bought["status"] == "filled" and bought["stop_loss_order_id"] == 200
    assert tools["short"].invoke({"symbol": "AAPL", "quantity": 1})["status"] == "filled"
    limit = tools["place_limit_order"].invoke({
        "side": "Buy", "symbol": "aapl", "quantity": 5, "limit_price": 9.25,
        "time_in_force": "GTC"})
    assert limit == {"order_id": 201, "status": "open", "type": "limit", "side": "buy",
                     "symbol": "AAPL", "quantity": "5", "limit_price": "9.25",
                     "time_in_force": "gtc", "placed_at_step": 3}
    stop_limit = tools["place_stop_order"].invoke({
        "side": "sell", "symbol": "AAPL", "quantity": 2, "stop_price": 9, "limit_price": 8.8})
    assert (stop_limit["type"], stop_limit["stop_price"], stop_limit["limit_price"],
            stop_limit["time_in_force"]) == ("stop_limit", "9", "8.8", "day")
    assert tools["place_stop_order"].invoke({"side": "cover", "symbol": "AAPL",
                                             "quantity": 1, "stop_price": 12})["type"] == "stop"
    listed = tools["open_orders"].invoke({})["open_orders"]
    assert [(o["order_id"], o.get("placed_by")) for o in listed] == [
        (200, "stop_loss"), (201, None), (202, None), (203, None)]
    assert tools["cancel_order"].invoke({"order_id": 201})["status"] == "cancelled"
    refused = tools["cancel_order"].invoke({"order_id": 999})
    assert refused == {"status": "refused", "order_id": 999,
                       "reason": "no order 999 in this run"}
    assert tools["cancel_order"].invoke({"order_id": 10**30})["reason"] == (
        f"no order {10**30} in this run")
    closed = tools["close_all"].invoke({"reason": "risk off"})
    assert closed["cancelled_order_ids"] == [200, 202, 203]
    assert [(t["side"], t["quantity"]) for t in closed["trades"]] == [("sell", "3")]
    assert len(made) == 3  # buy, short, the close-all's sell: every trade is heard of
    assert actions == ["buy", "sell", "cover", "cancel", "close_all"]


@pytest.mark.parametrize("tool, args, reason", [
    ("place_limit_order", {"side": "long", "limit_price": 10},
     "side must be one of buy, sell, short, cover; got 'long'"),
    ("place_limit_order", {"side": "buy", "limit_price": 0},
     "limit_price must be a positive price, got 0"),
    ("place_limit_order", {"side": "buy", "limit_price": 10, "time_in_force": "week"},
     "time_in_force must be one of day, gtc; got 'week'"),
    ("place_stop_order", {"side": "sell", "stop_price": -1},
     "stop_price must be a positive price, got -1"),
    ("place_stop_order", {"side": "sell", "stop_price": 9, "stop_loss": 8},
     "a stop_loss goes with a buy or a short only"),
    ("place_limit_order", {"side": "buy", "limit_price": 10, "quantity": 0},
     "quantity must be positive, got 0"),
    ("buy", {"quantity": -3}, "quantity must be positive, got -3"),
    ("short", {"stop_loss": float("nan")}, "stop_loss must be a positive price, got nan"),
    ("cover", {"symbol": "MSFT"}, "'MSFT' is not traded in this run; symbols: ['AAPL']"),
    # Past what the ledger's columns hold: a refusal, not a database error.
    ("sell", {"quantity": 10**15},
     "quantity must be at most 1,000,000,000,000 shares, got 1000000000000000"),
    ("place_stop_order", {"side": "buy", "stop_price": 1e20},
     "stop_price must be at most 1,000,000,000, got 1e+20"),
])
def test_order_tools_reject_bad_arguments_with_a_reason_and_send_nothing(
        tool: str, args: dict[str, Any], reason: str) -> None:
    broker = Broker()
    tools = {t.name: t for t in build_tools(context(broker), max_lookback=2,
                                            on_trade=lambda t: None)}
    answer = tools[tool].invoke({"symbol": "AAPL", "quantity": 1, **args})
    assert answer == {"status": "rejected", "reason": reason}
    assert broker.orders == [] and broker.book == {}


def test_a_closed_decider_broker_refuses_late_orders() -> None:
    inner = Broker()
    broker = DeciderBroker(inner)  # type: ignore[arg-type]
    broker.place(Order(Side.BUY, "AAPL", Decimal(1)))
    made = broker.close()
    assert len(made) == 1
    with pytest.raises(StepClosed):
        broker.place(Order(Side.BUY, "AAPL", Decimal(1)))
    assert len(inner.orders) == 1
