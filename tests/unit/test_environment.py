"""Settings as an operator meets them: every TICKRUN_* name a process reads is known,
a misspelt one fails the start naming the nearest, a bad value fails it in one line
naming the variable, and TICKRUN_LOG_LEVEL sets the level of every process."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import AliasChoices

from core.environment import (
    SETTINGS,
    SettingsError,
    check_environment,
    read_settings,
    unknown_variables,
)
from core.settings import CoreSettings
from tests.apiserver import wait_for
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]
SETTINGS_CLASSES = {
    "core.settings": "CoreSettings", "core.spend": "SpendSettings",
    "core.marketdata.settings": "MarketDataSettings", "runner.settings": "RunnerSettings",
    "runner.llm_settings": "LlmSettings", "runner.brokers.settings": "BrokerSettings",
    "controller.settings": "ControllerSettings",
    "controller.kubernetes.settings": "KubernetesSettings", "api.settings": "ApiSettings"}


def variables_read_by_settings() -> set[str]:
    names: set[str] = set()
    for module, name in SETTINGS_CLASSES.items():
        cls = getattr(importlib.import_module(module), name)
        prefix = cls.model_config.get("env_prefix", "")
        for field, info in cls.model_fields.items():
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):  # only the TICKRUN_ choices are ours
                names |= {c.upper() for c in alias.choices
                          if isinstance(c, str) and c.upper().startswith("TICKRUN_")}
            else:
                names.add(f"{prefix}{field}".upper())
    return names


def test_the_list_of_known_variables_is_every_settings_field() -> None:
    assert variables_read_by_settings() == set(SETTINGS)


def test_a_misspelt_variable_is_named_with_the_nearest_known_one() -> None:
    env = {"TICKRUN_DATABSE_URL": "x", "TICKRUN_DATABASE_URL": "sqlite:///x", "HOME": "/",
           "TICKRUN_K8S_RESOURCES__LIMITS__MEMORY": "2Gi", "TICKRUN_API_URL": "http://a"}
    assert unknown_variables(env) == ["TICKRUN_DATABSE_URL"]
    with pytest.raises(SettingsError, match=r"^unknown setting TICKRUN_DATABSE_URL "
                                            r"\(did you mean TICKRUN_DATABASE_URL\?\)$"):
        check_environment(env)
    with pytest.raises(SettingsError, match=r"^unknown setting TICKRUN_QQQQQQQQQQQQQQQQQQQ$"):
        check_environment({"TICKRUN_QQQQQQQQQQQQQQQQQQQ": "1"})


def test_an_invalid_value_is_one_line_naming_the_variable_never_the_value(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKRUN_DB_POOL_SIZE", "0")
    monkeypatch.setenv("TICKRUN_REDIS_KEY_PREFIX", "has space")
    with pytest.raises(SettingsError) as caught:
        read_settings(CoreSettings)
    message = str(caught.value)
    assert "\n" not in message and "has space" not in message
    assert sorted(message.split("; ")) == [
        "TICKRUN_DB_POOL_SIZE: Input should be greater than or equal to 1",
        r"TICKRUN_REDIS_KEY_PREFIX: String should match pattern '^[A-Za-z0-9_.\-]+$'"]
    monkeypatch.setenv("TICKRUN_DB_POOL_SIZE", "5")
    monkeypatch.setenv("TICKRUN_REDIS_KEY_PREFIX", "ok")
    monkeypatch.setenv("TICKRUN_LOG_LEVEL", "debug")
    assert read_settings(CoreSettings).log_level == "DEBUG"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKRUN_")}
    return {**env, "PYTHONPATH": str(REPO), **extra}


@pytest.mark.parametrize(("command", "env", "line"), [
    (["runner", "--run-id", "1"], {"TICKRUN_DATABSE_URL": "sqlite:///x"},
     "tickrun-runner: unknown setting TICKRUN_DATABSE_URL (did you mean "
     "TICKRUN_DATABASE_URL?)"),
    (["api"], {"TICKRUN_AUTH_MODE": "dev"},
     "tickrun-api: dev auth mode needs TICKRUN_DEV_TOKEN"),
    (["controller"], {"TICKRUN_PER_USER_LIMIT": "none"},
     "tickrun-controller: TICKRUN_PER_USER_LIMIT: Input should be a valid integer, unable "
     "to parse string as an integer"),
    (["core.migrate"], {"TICKRUN_LOG_LEVEL": "LOUD"},
     "tickrun-migrate: TICKRUN_LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING' or "
     "'ERROR'"),
])
def test_a_process_with_a_bad_setting_stops_at_once_in_one_line(
        command: list[str], env: dict[str, str], line: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", *command], env=clean_env(**env),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (78, line + "\n")


@pytest.mark.parametrize("level", ["INFO", "WARNING"])
def test_the_log_level_is_the_processes_own(level: str, tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(TICKRUN_LOG_LEVEL=level, TICKRUN_AUTH_MODE="dev", TICKRUN_DEV_TOKEN="t",
                    TICKRUN_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
                    TICKRUN_MIGRATE_ON_START="true", TICKRUN_EXECUTOR="local",
                    TICKRUN_LOCAL_LOG_DIR=str(tmp_path / "logs"))
    with open(tmp_path / "api.log", "w") as log:
        api = subprocess.Popen([sys.executable, "-m", "api", "--port", str(port)], env=env,
                               cwd=tmp_path, stderr=log)
    try:
        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
            except httpx.TransportError:
                return False
        wait_for(ready, timeout=60)
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(30)
    levels = {line.split('"level": "')[1].split('"')[0]
              for line in (tmp_path / "api.log").read_text().splitlines() if '"level"' in line}
    if level == "INFO":
        assert "INFO" in levels  # uvicorn's start-up lines, the reconciler's
    else:
        assert levels <= {"WARNING", "ERROR", "CRITICAL"}
