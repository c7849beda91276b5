"""The llm decider's parts that need no server: settings, calculator, prompt, broker."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from core.records import Model, Order, Portfolio, Run, Side, Trade, TradeStatus
from core.spec import RunSpec
from core.status import RunStatus
from runner.deciders.base import StepContext
from runner.deciders.llm import LlmParams
from runner.deciders.llm_prompt import step_message, system_prompt
from runner.deciders.llm_tools import CalculatorError, build_tools, calculate
from runner.llm_settings import LlmSettings, Provider
from runner.marketdata import Bar
from runner.session import DeciderBroker, StepClosed

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
    step = 2

    def __init__(self) -> None:
        self.orders: list[Order] = []
        self.cash = Decimal(1000)

    def submit(self, order: Order, reasoning: str | None = None) -> Trade:
        self.orders.append(order)
        refused = order.quantity * 10 > self.cash
        return Trade(id=1, run_id=1, step=2, seq=len(self.orders) - 1, bar_time=NOW,
                     filled_at=None if refused else NOW, side=order.side,
                     symbol=order.symbol, quantity=order.quantity, price=Decimal(10),
                     fees=Decimal(0),
                     status=TradeStatus.REFUSED if refused else TradeStatus.FILLED,
                     reason="insufficient cash" if refused else None,
                     cash_after=self.cash, reasoning=reasoning, created_at=NOW)

    def portfolio(self) -> Portfolio:
        return Portfolio(run_id=1, cash=self.cash, holdings={"AAPL": Decimal(3)})


def bars(n: int) -> list[Bar]:
    return [Bar(NOW + dt.timedelta(minutes=i), Decimal(10 + i), Decimal(11 + i),
                Decimal(9 + i), Decimal("10.5") + i, Decimal(100)) for i in range(n)]


def context(**model_kw: Any) -> StepContext:
    spec = RunSpec(mode="intraday", date=dt.date(2025, 3, 3), symbols=["AAPL"])  # type: ignore[arg-type]
    run = Run(id=1, user_id="u", model_id=1, spec=spec, status=RunStatus.RUNNING,
              status_reason=None, steps_total=390, steps_done=2, created_at=NOW,
              admitted_at=None, started_at=None, finished_at=None, stop_requested_at=None,
              result=None)
    model = Model(id=1, user_id="u", signature="alpha", llm="openai/gpt-4.1-mini",
                  custom_rules=model_kw.get("rules"), custom_instructions=model_kw.get("inst"),
                  parameters={}, created_at=NOW, updated_at=NOW)
    return StepContext(run=run, model=model, step=2, steps_total=390, bar_time=NOW
                       + dt.timedelta(minutes=2), history={"AAPL": bars(3)},
                       portfolio=Broker().portfolio(), recent_trades=[], broker=Broker())


def test_the_system_prompt_states_the_run_and_the_owner_rules() -> None:
    ctx = context(rules="Max 10 shares.", inst="Be brief.")
    text = system_prompt(ctx.run, ctx.model, max_tool_calls=4)
    assert "Intraday session on 2025-03-03" in text and "09:30-16:00" in text
    assert "AAPL" in text and "next bar's open" in text and "No short selling" in text
    assert "At most 4 tool calls" in text
    assert text.index("Max 10 shares.") < text.index("Be brief.")


def test_the_step_message_shows_bars_up_to_now_only() -> None:
    ctx = context()
    text = step_message(ctx, context_bars=2)
    assert text.startswith("Step 3 of 390")
    shown = [b.time.isoformat() for b in bars(3)]
    assert shown[0] not in text.split("bar time")[1].split("\n", 1)[1]  # 2 bars of context
    assert shown[1] in text and shown[2] in text
    assert "cash 1000" in text and "AAPL 3" in text


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


def test_a_closed_decider_broker_refuses_late_orders() -> None:
    inner = Broker()
    broker = DeciderBroker(inner)  # type: ignore[arg-type]
    broker.submit(Order(Side.BUY, "AAPL", Decimal(1)))
    made = broker.close()
    assert len(made) == 1
    with pytest.raises(StepClosed):
        broker.submit(Order(Side.BUY, "AAPL", Decimal(1)))
    assert len(inner.orders) == 1
