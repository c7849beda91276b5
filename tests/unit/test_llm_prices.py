"""The price table (runner/data/llm_prices.toml), its settings override, and invalid
TICKRUN_LLM_* settings described without their values."""

from __future__ import annotations

import json
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from runner.llm_prices import ModelPrice, PriceTable, bundled_prices
from runner.llm_settings import LlmSettings, load_llm_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TICKRUN_LLM_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY",
                 "TICKRUN_LLM_PRICES", "TICKRUN_LLM_REQUEST_TIMEOUT_SECONDS"):
        monkeypatch.delenv(name, raising=False)


def test_the_table_ships_with_the_package_and_prices_current_openai_models() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]
    assert "data/*.toml" in package_data["runner"]  # in the wheel, so in the image
    table = bundled_prices()
    for model in ("gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-4.1", "gpt-4.1-mini",
                  "gpt-4.1-nano", "gpt-4o", "gpt-4o-mini", "o3", "o4-mini"):
        price = table[model]
        assert price.cached_input is not None and price.cached_input <= price.input
        assert 0 < price.input < price.output
    assert table["gpt-4.1-mini"] == ModelPrice(input=Decimal("0.40"),
                                               cached_input=Decimal("0.10"),
                                               output=Decimal("1.60"))


@pytest.mark.parametrize(("name", "priced_as"), [
    ("gpt-4.1-mini", "gpt-4.1-mini"),
    ("openai/gpt-4.1-mini", "gpt-4.1-mini"),
    ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
    ("openai/gpt-4.1-2025-04-14", "gpt-4.1"),
    ("GPT-4o-mini", "gpt-4o-mini"),
    ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # the snapshot with its own price
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-5-nano-2025-08-07", "gpt-5-nano"),
])
def test_a_model_is_found_as_named_without_its_prefix_or_its_date(
        name: str, priced_as: str) -> None:
    assert PriceTable.load().price(name) == bundled_prices()[priced_as]


@pytest.mark.parametrize("name", ["anthropic/claude-sonnet-4", "gpt-4.1-mini-search",
                                  "my-model", "gpt-4.1x", "openai/"])
def test_a_model_the_table_does_not_know_has_no_price(name: str) -> None:
    assert PriceTable.load().price(name) is None
    assert PriceTable.load().cost(name, 100, 0, 10) is None


def test_a_family_price_is_never_taken_for_another_model() -> None:
    # Without its own entry gpt-4.1-mini is unknown: never priced as gpt-4.1.
    without = PriceTable({k: v for k, v in bundled_prices().items() if k != "gpt-4.1-mini"})
    assert without.price("gpt-4.1-mini") is None
    assert without.price("gpt-4.1-mini-2025-04-14") is None
    assert without.price("gpt-4.1-2025-04-14") == bundled_prices()["gpt-4.1"]


def test_cost_bills_cached_prompt_tokens_at_the_cached_price() -> None:
    price = ModelPrice(input=Decimal("2"), cached_input=Decimal("0.5"), output=Decimal("8"))
    assert price.cost(1_000_000, 0, 0) == Decimal(2)
    assert price.cost(1000, 400, 100) == (600 * Decimal(2) + 400 * Decimal("0.5")
                                          + 100 * Decimal(8)) / 10**6
    assert price.cost(10, 50, 0) == 10 * Decimal("0.5") / 10**6  # cached <= prompt
    no_discount = ModelPrice(input=Decimal("1"), output=Decimal("1"))
    assert no_discount.cost(100, 100, 0) == no_discount.cost(100, 0, 0)


def test_settings_add_and_override_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKRUN_LLM_PRICES", json.dumps({
        "gpt-4.1-mini": {"input": "1", "cached_input": "0.5", "output": "2"},
        "Local/Llama-3": {"input": 0, "output": 0}}))
    table = PriceTable.load(LlmSettings().prices)
    assert table.price("openai/gpt-4.1-mini-2025-04-14") == ModelPrice(
        input=Decimal(1), cached_input=Decimal("0.5"), output=Decimal(2))
    assert table.cost("local/llama-3", 1000, 0, 1000) == 0
    assert table.price("gpt-4.1") == bundled_prices()["gpt-4.1"]


def test_invalid_settings_are_described_by_name_never_by_value(
        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-very-secret-value-1234567890"
    monkeypatch.setenv("TICKRUN_LLM_API_KEY", secret)
    monkeypatch.setenv("TICKRUN_LLM_REQUEST_TIMEOUT_SECONDS", "-1")
    monkeypatch.setenv("TICKRUN_LLM_PRICES", json.dumps(
        {"m": {"input": secret, "output": "1", "cached": "1"}}))
    settings, error = load_llm_settings()
    assert settings is None and error is not None
    assert error == ("TICKRUN_LLM_REQUEST_TIMEOUT_SECONDS: Input should be greater than 0; "
                     "TICKRUN_LLM_PRICES m.input: Input should be a valid decimal; "
                     "TICKRUN_LLM_PRICES m.cached: Extra inputs are not permitted")
    monkeypatch.setenv("TICKRUN_LLM_PRICES", "{not json " + secret)
    monkeypatch.delenv("TICKRUN_LLM_REQUEST_TIMEOUT_SECONDS")
    assert load_llm_settings() == (None, "TICKRUN_LLM_PRICES: not valid JSON")
    monkeypatch.delenv("TICKRUN_LLM_PRICES")
    settings, error = load_llm_settings()
    assert error is None and settings is not None and settings.available
