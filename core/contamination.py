"""Contamination: did a run trade bars that lie inside its model's training data?

A model that was trained on the prices it trades "knows" them, so its run says nothing
about its skill. The training-data cutoff of common models is kept here, each with the
page of its provider that states it (a month-only cutoff counts to the month's last day,
as data of that whole month may be in). A provider that publishes no cutoff (DeepSeek,
Qwen) is bounded by the model's release: data after it cannot be in the training set, so
the release date is an upper bound of the cutoff. A model record overrides the table
with `parameters.knowledge_cutoff` (an ISO date, "2024-06-01").

A run is inside its model's training data when any of its sessions is on or before the
cutoff; an unknown cutoff is None (unknown), never a guess. Runs no LLM played (the
baselines) are never contaminated: their mark is None.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

log = logging.getLogger(__name__)

OVERRIDE = "knowledge_cutoff"  # the model record's parameters key

_OPENAI = "https://platform.openai.com/docs/models/"
_ANTHROPIC = "https://docs.anthropic.com/en/docs/about-claude/models/overview"
_GEMINI = "https://ai.google.dev/gemini-api/docs/models/"
_LLAMA = "https://github.com/meta-llama/llama-models/blob/main/models/"
_LLAMA3 = "https://github.com/meta-llama/llama3/blob/main/MODEL_CARD.md"
_RELEASE = "no cutoff published: the release date, an upper bound"


@dataclass(frozen=True)
class Cutoff:
    date: dt.date
    source: str  # the provider's page that states it
    note: str | None = None


def _cutoff(when: str, source: str, note: str | None = None) -> Cutoff:
    """"YYYY-MM-DD", or "YYYY-MM" for the last day of that month."""
    if len(when) == 7:
        year, month = (int(part) for part in when.split("-"))
        return Cutoff(dt.date(year, month, calendar.monthrange(year, month)[1]), source, note)
    return Cutoff(dt.date.fromisoformat(when), source, note)


_DEEPSEEK_V3_0324 = _cutoff("2025-03-24", "https://huggingface.co/deepseek-ai/DeepSeek-V3-0324",
                            _RELEASE)

# Model names as their providers spell them (without dates or provider prefixes);
# matching (below) ignores case and the difference between ".", "-" and "_".
CUTOFFS: dict[str, Cutoff] = {
    # OpenAI: "knowledge cutoff" on each model's page.
    "gpt-4o": _cutoff("2023-10-01", _OPENAI + "gpt-4o"),
    "gpt-4o-mini": _cutoff("2023-10-01", _OPENAI + "gpt-4o-mini"),
    "gpt-4.1": _cutoff("2024-06-01", _OPENAI + "gpt-4.1"),
    "gpt-4.1-mini": _cutoff("2024-06-01", _OPENAI + "gpt-4.1-mini"),
    "gpt-4.1-nano": _cutoff("2024-06-01", _OPENAI + "gpt-4.1-nano"),
    "o1": _cutoff("2023-10-01", _OPENAI + "o1"),
    "o3-mini": _cutoff("2023-10-01", _OPENAI + "o3-mini"),
    "o3": _cutoff("2024-06-01", _OPENAI + "o3"),
    "o4-mini": _cutoff("2024-06-01", _OPENAI + "o4-mini"),
    "gpt-5": _cutoff("2024-09-30", _OPENAI + "gpt-5"),
    "gpt-5-mini": _cutoff("2024-05-31", _OPENAI + "gpt-5-mini"),
    "gpt-5-nano": _cutoff("2024-05-31", _OPENAI + "gpt-5-nano"),
    "gpt-5-chat": _cutoff("2024-09-30", _OPENAI + "gpt-5-chat-latest"),
    "gpt-5.1": _cutoff("2024-09-30", _OPENAI + "gpt-5.1"),
    # Anthropic: "training data cutoff" (later than the "reliable knowledge cutoff").
    "claude-3-opus": _cutoff("2023-08", _ANTHROPIC),
    "claude-3-5-sonnet": _cutoff("2024-04", _ANTHROPIC),
    "claude-3-5-haiku": _cutoff("2024-07", _ANTHROPIC),
    "claude-3-7-sonnet": _cutoff("2024-11", _ANTHROPIC),
    "claude-sonnet-4": _cutoff("2025-03", _ANTHROPIC),
    "claude-opus-4": _cutoff("2025-03", _ANTHROPIC),
    "claude-opus-4-1": _cutoff("2025-03", _ANTHROPIC),
    "claude-sonnet-4-5": _cutoff("2025-07", _ANTHROPIC),
    "claude-haiku-4-5": _cutoff("2025-07", _ANTHROPIC),
    # Google: "knowledge cutoff" on each model's page.
    "gemini-2.0-flash": _cutoff("2024-08", _GEMINI + "gemini-2.0-flash"),
    "gemini-2.0-flash-lite": _cutoff("2024-08", _GEMINI + "gemini-2.0-flash-lite"),
    "gemini-2.5-pro": _cutoff("2025-01", _GEMINI + "gemini-2.5-pro"),
    "gemini-2.5-flash": _cutoff("2025-01", _GEMINI + "gemini-2.5-flash"),
    "gemini-2.5-flash-lite": _cutoff("2025-01", _GEMINI + "gemini-2.5-flash-lite"),
    # Meta: "data freshness" in each model card.
    "llama-3-8b": _cutoff("2023-03", _LLAMA3),
    "llama-3-70b": _cutoff("2023-12", _LLAMA3),
    "llama-3.1": _cutoff("2023-12", _LLAMA + "llama3_1/MODEL_CARD.md"),
    "llama-3.2": _cutoff("2023-12", _LLAMA + "llama3_2/MODEL_CARD.md"),
    "llama-3.3": _cutoff("2023-12", _LLAMA + "llama3_3/MODEL_CARD.md"),
    "llama-4": _cutoff("2024-08", _LLAMA + "llama4/MODEL_CARD.md"),
    # DeepSeek and Qwen publish no cutoff: their release dates bound it.
    "deepseek-v3": _cutoff("2024-12-26", "https://huggingface.co/deepseek-ai/DeepSeek-V3",
                           _RELEASE),
    "deepseek-v3-0324": _DEEPSEEK_V3_0324,
    "deepseek-r1": _cutoff("2025-01-20", "https://huggingface.co/deepseek-ai/DeepSeek-R1",
                           _RELEASE),
    "deepseek-r1-0528": _cutoff("2025-05-28",
                                "https://huggingface.co/deepseek-ai/DeepSeek-R1-0528",
                                _RELEASE),
    "deepseek-chat-v3-0324": _DEEPSEEK_V3_0324,  # OpenRouter's name of it
    "qwen2.5": _cutoff("2024-09-19", "https://qwenlm.github.io/blog/qwen2.5/", _RELEASE),
    "qwq-32b": _cutoff("2025-03-06", "https://qwenlm.github.io/blog/qwq-32b/", _RELEASE),
    "qwen3": _cutoff("2025-04-29", "https://qwenlm.github.io/blog/qwen3/", _RELEASE),
}


class ContaminationMark(TypedDict):
    llm: str | None  # the model name looked up
    knowledge_cutoff: str | None  # YYYY-MM-DD
    source: Literal["table", "model"] | None  # the table above, or the model record
    inside_training_data: bool | None  # None: the cutoff is unknown
    first_day: str
    last_day: str


def _tokens(name: str) -> list[str]:
    """Lower case words and numbers; a number glued after letters is its own token
    (qwen2.5 -> qwen 2 5, o3 -> o 3), letters after a number stay with it (4o, 70b)."""
    words = re.split(r"[^a-z0-9]+", name.lower())
    return [t for w in words for t in re.split(r"(?<=[a-z])(?=\d)", w) if t]


_TABLE = sorted(((tuple(_tokens(key)), key) for key in CUTOFFS), key=lambda kv: -len(kv[0]))


def _version(token: str) -> bool:
    """A version number (4.1 -> "1", 5.2 -> "2"), as opposed to a date or snapshot tag
    (2025-04-14, 20241022, 0528, 001), which names the same model."""
    return token.isdigit() and len(token) <= 2


def lookup(llm: str) -> tuple[str, Cutoff] | None:
    """The table's entry for a model name: with or without a provider prefix
    (openai/gpt-4.1-mini, meta-llama/Llama-3.3-70B-Instruct), a snapshot date
    (gpt-4.1-mini-2025-04-14, claude-3-5-sonnet-20241022) or a suffix (-instruct, :free,
    ft:gpt-4o-mini:org::id). The longest name of the table whose words the model name
    holds in a row wins, unless a version number follows it: gpt-5.2 is not gpt-5, and
    claude-sonnet-4-5 is not claude-sonnet-4."""
    name = _tokens(llm.rsplit("/", 1)[-1]) or _tokens(llm)
    for key_tokens, key in _TABLE:
        n = len(key_tokens)
        for start in range(len(name) - n + 1):
            if tuple(name[start:start + n]) != key_tokens:
                continue
            rest = name[start + n:]
            if not rest or not _version(rest[0]):
                return key, CUTOFFS[key]
    return None


def override(parameters: Mapping[str, Any] | None) -> dt.date | None:
    """The model record's own cutoff (`parameters.knowledge_cutoff`, an ISO date).
    Raises ValueError when it is set but is not one."""
    value = (parameters or {}).get(OVERRIDE)
    if value is None:
        return None
    problem = f"parameters.{OVERRIDE} must be an ISO date (YYYY-MM-DD), not {value!r}"
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError(problem)
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(problem) from None


def knowledge_cutoff(llm: str | None, parameters: Mapping[str, Any] | None = None
                     ) -> tuple[dt.date | None, Literal["table", "model"] | None]:
    """The model's cutoff and where it comes from: the record's override, else the
    table, else (None, None). A malformed override is logged and the table is used."""
    try:
        own = override(parameters)
    except ValueError as exc:
        log.warning("model %s: %s; using the table", llm, exc)
        own = None
    if own is not None:
        return own, "model"
    found = lookup(llm) if llm else None
    if found is None:
        return None, None
    return found[1].date, "table"


def mark(llm: str | None, parameters: Mapping[str, Any] | None,
         days: Sequence[dt.date]) -> ContaminationMark:
    """The contamination mark of a run that `llm` played over the sessions `days`."""
    cutoff, source = knowledge_cutoff(llm, parameters)
    first, last = min(days), max(days)
    return {"llm": llm,
            "knowledge_cutoff": None if cutoff is None else cutoff.isoformat(),
            "source": source,
            "inside_training_data": None if cutoff is None else first <= cutoff,
            "first_day": first.isoformat(), "last_day": last.isoformat()}
