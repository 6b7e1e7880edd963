"""The examples run as documented (they are part of the contract users copy from)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from omnichannel.cli import main
from omnichannel.config import load_config
from omnichannel.errors import ConfigError
from tests.conftest import ROOT

EXAMPLES = ROOT / "examples"


def run_example(name: str, cwd: Path) -> list[str]:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_portal_integration_example(tmp_path: Path) -> None:
    """The portal example gets a ticket, and a double submit shows the same ticket."""
    lines = run_example("portal_integration.py", tmp_path)
    assert lines[0] == (
        "thank-you page shows: ADU-2026-000001; double submit shows: ADU-2026-000001"
    )
    assert lines[-1] == "complaints stored: 1"


def test_custom_connector_example(tmp_path: Path) -> None:
    """The custom connector example files new, duplicate and quarantined messages."""
    lines = run_example("custom_connector.py", tmp_path)
    assert [line.split()[0] for line in lines] == ["new", "duplicate", "quarantined"]


def test_example_config_is_valid(tmp_path: Path) -> None:
    """examples/omnichannel.toml passes validation."""
    env = {
        "IMAP_PASSWORD": "s3cret",
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": "t0ken",
        "GAMMU_DATABASE_URL": "mysql+pymysql://smsd@db/smsd",
        "PORTAL_WEBHOOK_SECRET": "whsec_c2VjcmV0",
        "FORWARD_SECRET": "whsec_Zm9yd2FyZA==",
        "WHATSAPP_APP_SECRET": "app-s3cret",
        "WHATSAPP_VERIFY_TOKEN": "v3rify",
        "WHATSAPP_ACCESS_TOKEN": "EAAG-t0ken",
        "WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
    }
    config = load_config(EXAMPLES / "omnichannel.toml", env=env)
    assert config.database.url == "sqlite:///omnichannel.db"
    types = sorted(c.type for c in config.connectors)
    assert types == ["files", "gammu", "imap", "twilio", "web", "whatsapp-cloud"]
    with pytest.raises(ConfigError, match="IMAP_PASSWORD is not set"):
        load_config(EXAMPLES / "omnichannel.toml", env={})


def test_demo_on_sample_complaints(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The README's demo plays its scenario and the samples: each sample ends as the samples'
    README says (new, a merged reply, an ignored auto-reply, one quarantined), every step goes
    as expected, and the kept database exports one complaint per `new` line."""
    monkeypatch.chdir(tmp_path)
    kept = tmp_path / "kept"
    first = CliRunner().invoke(main, ["demo", "--keep", str(kept), str(EXAMPLES / "complaints")])
    assert first.exit_code == 0, first.output
    steps = [line.split() for line in first.stdout.splitlines() if line[:1].isdigit()]
    outcomes = {cells[2]: cells[4] for cells in steps if cells[0] == "9"}
    assert outcomes["06-balasan.eml"] == "merged"
    assert outcomes["07-auto-reply.eml"] == "ignored"
    assert outcomes["99-rusak.json"] == "quarantined"
    assert list(outcomes.values()).count("new") == 7
    assert "every step as expected" in first.stdout
    config = str(kept / "omnichannel.toml")
    export = CliRunner().invoke(main, ["--config", config, "complaints", "export"])
    exported = [json.loads(line) for line in export.stdout.splitlines()]
    assert len(exported) == sum(1 for cells in steps if "new" in cells)


def test_deployment_example_config_is_valid(postgres_url: str) -> None:
    """examples/deploy/omnichannel.toml (what the compose file mounts) passes validation,
    and `check --connect` accepts it against a real PostgreSQL."""
    env = {"DATABASE_URL": postgres_url, "PORTAL_WEBHOOK_SECRET": "rahasia-portal"}
    config = load_config(EXAMPLES / "deploy" / "omnichannel.toml", env=env)
    assert config.server.host == "0.0.0.0"
    assert [c.type for c in config.connectors] == ["web"]
    path = str(EXAMPLES / "deploy" / "omnichannel.toml")
    result = CliRunner().invoke(main, ["check", "--connect", "--config", path], env=env)
    assert result.exit_code == 0, result.output
    assert "connector portal: OK" in result.stdout
