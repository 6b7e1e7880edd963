"""Connector registry (entry points, lazy, did-you-mean) and the public import surface."""

from __future__ import annotations

import subprocess
import sys

import pytest

import omnichannel
from omnichannel import registry
from omnichannel.errors import UnknownConnector


def test_public_all_is_sorted_and_importable() -> None:
    """omnichannel.__all__ is sorted, and every name in it exists."""
    assert omnichannel.__all__ == sorted(omnichannel.__all__)
    for name in omnichannel.__all__:
        assert getattr(omnichannel, name) is not None


def test_builtin_connectors_come_from_entry_points() -> None:
    """The files connector is found through the omnichannel.connectors entry-point group."""
    from connectors.files import FilesConnector

    assert "files" in registry.available_types()
    assert registry.connector_class("files") is FilesConnector


def test_unknown_type_lists_known_names_and_suggests() -> None:
    """An unknown type fails with the known names and a close match."""
    with pytest.raises(UnknownConnector) as caught:
        registry.connector_class("filez")
    message = str(caught.value)
    assert "unknown connector type 'filez'" in message
    assert "files" in message and "did you mean 'files'?" in message


def test_connectors_are_loaded_lazily() -> None:
    """Importing omnichannel does not import any connector module."""
    code = "import sys, omnichannel; print(any(m.startswith('connectors.') for m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"


def test_pure_packages_import_first_without_cycles() -> None:
    """normalizer modules and omnichannel.errors import on their own, in any order."""
    for module in (
        "normalizer.email",
        "normalizer.jsondoc",
        "normalizer.normalize",
        "omnichannel.errors",
        "connectors.imap",
    ):
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)


def test_every_shipped_package_is_marked_typed() -> None:
    """``omnichannel``, ``connectors`` and ``normalizer`` each carry ``py.typed`` (PEP 561)
    and list it as package data, so a user's mypy checks against our annotations."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    data = project["tool"]["setuptools"]["package-data"]
    for package in ("omnichannel", "connectors", "normalizer"):
        assert (root / package / "py.typed").is_file(), package
        assert "py.typed" in data.get(package, []), package


@pytest.mark.parametrize("connector_type", ["web", "files", "memory", "whatsapp-cloud"])
def test_receive_inbound_files_through_any_connector(tmp_path, connector_type: str) -> None:  # type: ignore[no-untyped-def]
    """A message given already decoded files as new through a connector of any type (the
    portal snippet in the README with a `web` connector), and again as a duplicate."""
    from omnichannel import InboundMessage, Inbox, Outcome, Sender
    from omnichannel.config import parse_config

    options = {
        "web": {"secret": "whsec_c2VjcmV0"},
        "files": {"path": str(tmp_path / "inbox")},
        "memory": {},
        "whatsapp-cloud": {
            "app_secret": "s3cret",
            "verify_token": "v3rify",
            "access_token": "t0ken",
            "phone_number_ids": ["1234567890"],
        },
    }[connector_type]
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'api.db'}"},
            "connectors": [{"name": "portal", "type": connector_type, **options}],
        }
    )
    message = InboundMessage(
        channel="web",
        external_id="form-77",
        sender=Sender(phone="0812 3456 7890"),
        text="Jalan menuju kantor desa rusak.",
    )
    with Inbox(config) as inbox:
        first = inbox.receive_inbound(message, connector="portal")
        again = inbox.receive_inbound(message, connector="portal")
        complaint = inbox.complaint(first.complaint_id) if first.complaint_id else None
    assert (first.outcome, first.error, again.outcome) == (Outcome.NEW, None, Outcome.DUPLICATE)
    assert complaint is not None and complaint.sender.phone == "+6281234567890"


def test_invalid_connector_options_never_repeat_a_value() -> None:
    """Building a connector from invalid options is a ConfigError that names the key, and
    holds no value given (a refused secret stays out of errors and logs)."""
    from connectors.web import WebConnector
    from omnichannel.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        WebConnector.from_options("portal", {"secret": "top-s3cret-value", "signature": "nope"})
    assert "portal: signature" in str(caught.value)
    assert "top-s3cret-value" not in str(caught.value) and "nope" not in str(caught.value)


def test_pollers_wait_at_least_what_the_source_asked() -> None:
    """A RetryableError with retry_after makes the poller wait at least that long (capped at
    an hour); without it, the exponential backoff with jitter."""
    import tenacity

    from omnichannel.errors import RetryableError
    from omnichannel.poller import _wait

    def state(error: Exception) -> tenacity.RetryCallState:
        call = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        call.set_exception((type(error), error, None))
        return call

    assert _wait(state(RetryableError("429", retry_after=120.0))) >= 120.0
    assert _wait(state(RetryableError("429", retry_after=1e9))) <= 3600.0
    assert _wait(state(RetryableError("503"))) <= 1.0
