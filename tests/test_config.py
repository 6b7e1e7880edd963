"""Configuration: defaults, ${ENV} interpolation, every problem by key path, secrets hidden."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr

from omnichannel import registry
from omnichannel.config import load_config, parse_config
from omnichannel.connector import PollingConnector
from omnichannel.errors import ConfigError


class SecretOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account_sid: str
    auth_token: SecretStr
    poll_interval: int = 60


class SecretConnector(PollingConnector):
    type = "secretive"
    Options = SecretOptions


@pytest.fixture(autouse=True)
def _secretive_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._extra, "secretive", SecretConnector)


def problems(data: dict, env: dict[str, str] | None = None) -> list[str]:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env=env or {})
    return caught.value.problems


def test_no_file_gives_embedded_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a file: SQLite, 127.0.0.1:8080, Asia/Makassar, ID and one files connector."""
    monkeypatch.chdir(tmp_path)
    config = load_config(env={})
    assert config.database.url == "sqlite:///omnichannel.db"
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert (config.timezone, config.region) == ("Asia/Makassar", "ID")
    assert [(c.name, c.type, c.options) for c in config.connectors] == [
        ("files", "files", {"path": "./inbox"})
    ]


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    """A config path that does not exist is reported, not silently replaced by defaults."""
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "nope.toml", env={})


def test_env_interpolation_and_defaults() -> None:
    """${NAME} is replaced from the environment; ${NAME:-x} falls back to x."""
    config = parse_config(
        {
            "database": {"url": "${DB_URL}"},
            "tickets": {"prefix": "${PREFIX:-LAP}"},
            "connectors": [
                {"name": "sms", "type": "secretive", "account_sid": "AC1", "auth_token": "${TOKEN}"}
            ],
        },
        env={"DB_URL": "sqlite:///x.db", "TOKEN": "tok-123"},
    )
    assert config.database.url == "sqlite:///x.db"
    assert config.tickets.prefix == "LAP"
    assert config.connectors[0].options["auth_token"] == "tok-123"


def test_every_problem_is_reported_by_key_path() -> None:
    """Missing key, wrong type, unknown type and unset variable are all reported at once."""
    found = problems(
        {
            "server": {"port": "eighty"},
            "connectors": [
                {"name": "files", "type": "files"},
                {"name": "sms", "type": "secretive", "auth_token": "${UNSET_TOKEN}"},
                {"name": "mail", "type": "imapp"},
            ],
        }
    )
    assert "connectors[1].auth_token: environment variable UNSET_TOKEN is not set" in found
    assert (
        "server.port: Input should be a valid integer, unable to parse string as an integer"
        in found
    )
    assert any(p.startswith("connectors[2].type: unknown connector type 'imapp'") for p in found)
    assert "connectors[1].account_sid: missing" in found
    assert len(found) == 4


def test_connector_option_problems_have_paths() -> None:
    """Connector option errors name connectors[i].key; unknown types list the known ones."""
    found = problems(
        {
            "connectors": [
                {"name": "files", "type": "files", "bogus": 1},
                {"name": "sms", "type": "secretive", "poll_interval": "soon"},
                {"name": "mail", "type": "imapp"},
            ]
        }
    )
    assert "connectors[0].bogus: unknown key" in found
    assert "connectors[1].account_sid: missing" in found
    assert "connectors[1].auth_token: missing" in found
    assert any(p.startswith("connectors[1].poll_interval: ") for p in found)
    assert any(
        p.startswith("connectors[2].type: unknown connector type 'imapp' (known: ") for p in found
    )


def test_duplicate_connector_names_and_bad_timezone() -> None:
    """Two connectors with one name, and an unknown timezone, are errors."""
    found = problems(
        {
            "timezone": "Asia/Atlantis",
            "connectors": [{"name": "a", "type": "files"}, {"name": "a", "type": "files"}],
        }
    )
    assert "timezone: unknown timezone 'Asia/Atlantis'" in found
    assert "connectors: connector name 'a' is used twice" in found


def test_secrets_never_in_repr_or_errors() -> None:
    """A secret option is hidden in the validated options' repr and never echoed in errors."""
    options = SecretOptions(account_sid="AC1", auth_token=SecretStr("s3cr3t-value"))
    assert "s3cr3t-value" not in repr(options)
    found = problems(
        {"connectors": [{"name": "sms", "type": "secretive", "auth_token": ["s3cr3t-value"]}]}
    )
    assert found and not any("s3cr3t-value" in p for p in found)


def test_bad_toml_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not TOML is a ConfigError naming the file."""
    path = tmp_path / "bad.toml"
    path.write_text("[database\nurl = 1", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, env={})
