"""LLM provider settings (TICKRUN_LLM_*): where the agent's model is and how to call it.

Only the provider connection lives here; which model a run uses comes from its model
record in the database. The key is a SecretStr end to end: it is handed to the client
and never logged, printed or stored (repr shows stars). OPENAI_API_KEY and
OPENROUTER_API_KEY are accepted too, so a Secret made for another tool works as is.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    app_title: str = Field(default="tickrun",
                           description="Sent to OpenRouter as X-Title (its usage dashboard)")

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
