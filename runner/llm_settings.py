"""LLM provider settings (TICKRUN_LLM_*): where the agent's model is and how to call it.

Only the provider connection lives here; which model a run uses comes from its model
record in the database. The key is a SecretStr end to end: it is handed to the client
and never logged, printed or stored (repr shows stars). OPENAI_API_KEY and
OPENROUTER_API_KEY are accepted too, so a Secret made for another tool works as is.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from runner.llm_prices import PriceOverrides


class Provider(StrEnum):
    OPENAI = "openai"
    OPENROUTER = "openrouter"


DEFAULT_BASE_URLS = {
    Provider.OPENAI: "https://api.openai.com/v1",
    Provider.OPENROUTER: "https://openrouter.ai/api/v1",
}


class LlmSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKRUN_LLM_", extra="ignore",
                                      populate_by_name=True)

    provider: Provider | None = Field(
        default=None,
        description="openai or openrouter; unset: openrouter when only an OpenRouter key "
                    "is set, else openai")
    base_url: str | None = Field(
        default=None, description="Chat completions base URL; unset: the provider's own")
    api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TICKRUN_LLM_API_KEY", "api_key"),
        description="The provider key; unset: OPENAI_API_KEY or OPENROUTER_API_KEY")
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "openai_api_key"),
        exclude=True)
    openrouter_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENROUTER_API_KEY", "openrouter_api_key"),
        exclude=True)
    request_timeout_seconds: float = Field(
        default=20.0, gt=0,
        description="One HTTP attempt; each is also cut to what is left of the decision's "
                    "deadline, so a slow provider never outlives the step")
    max_retries: int = Field(
        default=2, ge=0, le=10,
        description="Retries of a transient failure (429, 5xx, connection) within the "
                    "deadline; 1-3 s per LLM answer leaves room for about two")
    retry_initial_seconds: float = Field(
        default=0.25, ge=0, description="First backoff; doubles with jitter per retry")
    retry_max_seconds: float = Field(default=4.0, ge=0, description="Longest single backoff")
    decision_timeout_seconds: float | None = Field(
        default=None, gt=0,
        description="Per-decision deadline; unset: the runner's decision timeout minus a "
                    "margin, so the decider answers HOLD itself before the loop abandons it")
    requests_per_minute: int | None = Field(
        default=None, ge=1,
        description="Requests per minute allowed on the provider key, shared by every run on "
                    "it (across runner pods through Redis); unset: learned from the "
                    "provider's x-ratelimit-limit-requests header. When both are known the "
                    "lower applies, so this can keep tickrun under a key's full limit")
    tokens_per_minute: int | None = Field(
        default=None, ge=1,
        description="Tokens per minute allowed on the provider key (prompt estimate plus "
                    "max_tokens per request), shared like requests_per_minute; unset: "
                    "learned from x-ratelimit-limit-tokens")
    rate_limit_burst_seconds: float = Field(
        default=0.5, ge=0, le=60,
        description="How many seconds' worth of the limit may go at once; half a second "
                    "leaves a provider bucket of a second's worth slack for network jitter")
    app_title: str = Field(default="tickrun",
                           description="Sent to OpenRouter as X-Title (its usage dashboard)")
    prices: PriceOverrides = Field(
        default_factory=dict,
        description='JSON {"model": {"input": .., "cached_input": .., "output": ..}}, USD per '
                    "million tokens: adds to or overrides runner/data/llm_prices.toml, which "
                    "costs the answers a provider does not price itself (OpenAI)")

    mcp_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts (host or host:port, comma-separated) whose MCP servers a model's "
                    "mcp_servers may name; a server elsewhere is left out of the run (logged). "
                    "Empty: no outside tools. A model chooses the URL and which MCP_* "
                    "variables it sends there, so only servers the operator trusts qualify")

    @field_validator("mcp_allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [h.strip().lower() for h in value.split(",") if h.strip()]
        return value

    @model_validator(mode="after")
    def _resolve_provider_and_key(self) -> LlmSettings:
        if self.provider is None:
            only_openrouter = (self.api_key is None and self.openai_api_key is None
                               and self.openrouter_api_key is not None)
            self.provider = Provider.OPENROUTER if only_openrouter else Provider.OPENAI
        if self.api_key is None:
            self.api_key = (self.openrouter_api_key if self.provider is Provider.OPENROUTER
                            else self.openai_api_key)
        if self.base_url is None:
            self.base_url = DEFAULT_BASE_URLS[self.provider]
        return self

    @property
    def available(self) -> bool:
        """A key is configured: the llm decider can be used (and is the default)."""
        return self.api_key is not None and bool(self.api_key.get_secret_value().strip())

    def model_name(self, llm: str) -> str:
        """The name to send: OpenRouter takes "openai/gpt-4.1-mini", OpenAI "gpt-4.1-mini"."""
        if self.provider is Provider.OPENAI:
            return llm.removeprefix("openai/")
        return llm


def load_llm_settings() -> tuple[LlmSettings | None, str | None]:
    """The settings, or None and what is wrong with them for people. Invalid settings
    must not crash the runner (exit 1 is retried, and a traceback may quote the input):
    only the runs that need the LLM fail, with this message."""
    try:
        return LlmSettings(), None
    except ValidationError as exc:
        return None, describe_invalid(exc)
    except SettingsError as exc:  # not JSON where JSON is due; names the field, not its value
        field = re.search(r'field "(\w+)"', str(exc))
        return None, (f"{_env_name(field.group(1))}: not valid JSON" if field
                      else _first_line(exc))


def describe_invalid(exc: ValidationError) -> str:
    """Each problem as `TICKRUN_LLM_<FIELD>: message`, from the error's location and
    message only: the input values (the key among them) never appear."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = [str(part) for part in error["loc"]]
        where = _env_name(loc[0]) if loc else "TICKRUN_LLM_*"
        if len(loc) > 1:
            where += " " + ".".join(loc[1:])
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def _env_name(field: str) -> str:
    name = field.upper()  # an alias (OPENAI_API_KEY) is its own variable's name
    return name if name.startswith(("TICKRUN_", "OPENAI_", "OPENROUTER_")) \
        else f"TICKRUN_LLM_{name}"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
