"""Contamination (core.contamination): model names matched with and without provider
prefixes and snapshot dates, the model record's override, runs before, after and
straddling the cutoff, an unknown model, and the mark in a run's result (None for a
baseline; a replay carries its source's)."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlparse

import pytest

from core import contamination, lifecycle
from core.store import Store
from core.store.sqlite import SqliteStore
from tests.factories import daily_spec, intraday_spec, make_model, make_run

D = dt.date


@pytest.mark.parametrize(("name", "key"), [
    ("gpt-4.1-mini", "gpt-4.1-mini"),
    ("openai/gpt-4.1-mini", "gpt-4.1-mini"),
    ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
    ("GPT-4.1", "gpt-4.1"),
    ("gpt-4.1-nano", "gpt-4.1-nano"),
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("openai/gpt-4o-mini", "gpt-4o-mini"),
    ("ft:gpt-4o-mini-2024-07-18:acme::abc123", "gpt-4o-mini"),
    ("o3", "o3"),
    ("o3-2025-04-16", "o3"),
    ("o3-mini", "o3-mini"),
    ("openai/o4-mini", "o4-mini"),
    ("gpt-5", "gpt-5"),
    ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
    ("openai/gpt-5-nano", "gpt-5-nano"),
    ("gpt-5-chat-latest", "gpt-5-chat"),
    ("gpt-5.1", "gpt-5.1"),
    ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
    ("anthropic/claude-3.5-sonnet", "claude-3-5-sonnet"),
    ("anthropic/claude-3.7-sonnet:thinking", "claude-3-7-sonnet"),
    ("claude-sonnet-4-20250514", "claude-sonnet-4"),
    ("anthropic/claude-opus-4", "claude-opus-4"),
    ("claude-opus-4-1-20250805", "claude-opus-4-1"),
    ("claude-sonnet-4-5", "claude-sonnet-4-5"),
    ("google/gemini-2.5-flash", "gemini-2.5-flash"),
    ("gemini-2.5-flash-lite-preview-06-17", "gemini-2.5-flash-lite"),
    ("gemini-2.0-flash-001", "gemini-2.0-flash"),
    ("gemini-2.5-pro", "gemini-2.5-pro"),
    ("meta-llama/Meta-Llama-3-70B-Instruct", "llama-3-70b"),
    ("meta-llama/llama-3.1-8b-instruct", "llama-3.1"),
    ("meta-llama/Llama-3.3-70B-Instruct", "llama-3.3"),
    ("llama3.2:3b", "llama-3.2"),
    ("deepseek-ai/DeepSeek-V3", "deepseek-v3"),
    ("deepseek/deepseek-chat-v3-0324", "deepseek-chat-v3-0324"),
    ("deepseek/deepseek-r1", "deepseek-r1"),
    ("deepseek-ai/DeepSeek-R1-0528", "deepseek-r1-0528"),
    ("Qwen/Qwen2.5-72B-Instruct", "qwen2.5"),
    ("qwen/qwen-2.5-72b-instruct", "qwen2.5"),
    ("qwen/qwen3-235b-a22b", "qwen3"),
])
def test_model_names_match_with_and_without_prefixes(name: str, key: str) -> None:
    found = contamination.lookup(name)
    assert found is not None and found[0] == key


@pytest.mark.parametrize("name", [
    "gpt-5.2",  # a later version than the table's gpt-5, not gpt-5
    "claude-opus-4-7",  # not claude-opus-4
    "qwen3.5-plus",
    "gpt-4-1106-preview",  # not gpt-4.1
    "my-own-model",
    "",
])
def test_unknown_models_and_later_versions_are_not_matched(name: str) -> None:
    assert contamination.lookup(name) is None


def test_every_entry_has_a_providers_page() -> None:
    assert len(contamination.CUTOFFS) >= 30
    for key, cutoff in contamination.CUTOFFS.items():
        assert urlparse(cutoff.source).scheme == "https", key
        assert D(2023, 1, 1) <= cutoff.date <= D(2026, 1, 1), key
        assert contamination.lookup(key) == (key, cutoff)
    # A month-only cutoff counts to that month's last day.
    assert contamination.CUTOFFS["claude-3-5-sonnet"].date == D(2024, 4, 30)
    assert contamination.CUTOFFS["gpt-4.1-mini"].date == D(2024, 6, 1)


def test_runs_before_after_and_straddling_the_cutoff() -> None:
    # gpt-4.1-mini: 2024-06-01
    before = contamination.mark("openai/gpt-4.1-mini", {}, [D(2024, 5, 31)])
    assert before == {"llm": "openai/gpt-4.1-mini", "knowledge_cutoff": "2024-06-01",
                      "source": "table", "inside_training_data": True,
                      "first_day": "2024-05-31", "last_day": "2024-05-31"}
    on = contamination.mark("gpt-4.1-mini", {}, [D(2024, 6, 1)])
    assert on["inside_training_data"] is True  # on the cutoff day is inside
    after = contamination.mark("gpt-4.1-mini", {}, [D(2024, 6, 3), D(2024, 6, 4)])
    assert after["inside_training_data"] is False
    straddling = contamination.mark("gpt-4.1-mini", {},
                                    [D(2024, 5, 30), D(2024, 5, 31), D(2024, 6, 3)])
    assert straddling["inside_training_data"] is True
    assert (straddling["first_day"], straddling["last_day"]) == ("2024-05-30", "2024-06-03")


def test_the_model_record_overrides_the_table() -> None:
    own = {"knowledge_cutoff": "2025-01-15"}
    m = contamination.mark("gpt-4.1-mini", own, [D(2024, 12, 2)])
    assert (m["knowledge_cutoff"], m["source"], m["inside_training_data"]) == \
        ("2025-01-15", "model", True)
    # A model the table does not know: the record alone says.
    m = contamination.mark("acme/house-model", own, [D(2025, 2, 3)])
    assert (m["knowledge_cutoff"], m["source"], m["inside_training_data"]) == \
        ("2025-01-15", "model", False)


@pytest.mark.parametrize("bad", ["2025-13-01", "January 2025", "2025-01", 20250115, True])
def test_a_malformed_override_is_refused_and_the_table_used(bad: object) -> None:
    with pytest.raises(ValueError, match="ISO date"):
        contamination.override({"knowledge_cutoff": bad})
    m = contamination.mark("gpt-4.1-mini", {"knowledge_cutoff": bad}, [D(2025, 2, 3)])
    assert (m["knowledge_cutoff"], m["source"]) == ("2024-06-01", "table")


def test_an_unknown_model_is_unknown_not_clean() -> None:
    m = contamination.mark("acme/house-model", {}, [D(2020, 1, 2)])
    assert (m["knowledge_cutoff"], m["source"], m["inside_training_data"]) == \
        (None, None, None)
    assert contamination.mark(None, None, [D(2020, 1, 2)])["inside_training_data"] is None


# -- in a run's result -------------------------------------------------------------------

@pytest.fixture
def store(sqlite_store: SqliteStore) -> Store:
    return sqlite_store


def test_a_runs_mark_comes_from_its_sessions_and_model(store: Store) -> None:
    model = make_model(store, llm="openai/gpt-4.1-mini")
    # Daily, 2024-05-25 (a Saturday) to 2024-06-07: sessions from Tuesday 05-28.
    run = make_run(store, daily_spec(D(2024, 5, 25), D(2024, 6, 7), decider="llm"),
                   model=model)
    m = lifecycle.run_contamination(store, run, "llm")
    assert m is not None
    assert (m["first_day"], m["last_day"], m["inside_training_data"]) == \
        ("2024-05-28", "2024-06-07", True)
    # The first session after the cutoff: clean.
    later = make_run(store, daily_spec(D(2024, 6, 1), D(2024, 6, 7), decider="llm"),
                     model=model)
    m = lifecycle.run_contamination(store, later, "llm")
    assert m is not None and (m["first_day"], m["inside_training_data"]) == \
        ("2024-06-03", False)


def test_baselines_are_never_contaminated_and_a_replay_carries_its_source(
        store: Store) -> None:
    model = make_model(store, llm="gpt-4o")
    source = make_run(store, intraday_spec(D(2023, 6, 1), decider="llm"), model=model)
    assert lifecycle.run_contamination(store, source, "sma_crossover") is None
    baseline = make_run(store, intraday_spec(D(2023, 6, 1), decider="sma_crossover"),
                        model=model)
    result = lifecycle.run_result(store, baseline, "completed")
    assert result["contamination"] is None
    assert result["metrics"]["trades"] == 0  # a run without steps has its metrics
    replay = make_run(store, intraday_spec(
        D(2023, 6, 1), decider="replay", decider_params={"source_run_id": source.id}),
        model=make_model(store, signature="no-llm"))
    m = lifecycle.run_contamination(store, replay, "replay")
    assert m is not None and (m["llm"], m["inside_training_data"]) == ("gpt-4o", True)
    gone = make_run(store, intraday_spec(
        D(2023, 6, 1), decider="replay", decider_params={"source_run_id": 10_000}),
        model=model)
    assert lifecycle.run_contamination(store, gone, "replay") is None
