"""pytest plugin: fixtures for testing connectors against a real (SQLite) omnichannel store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from omnichannel.config import default_config
from omnichannel.inbox import Inbox


@pytest.fixture
def omnichannel_inbox(tmp_path: Path) -> Iterator[Inbox]:
    """An Inbox on a fresh SQLite database in the test's temporary folder."""
    inbox = Inbox(default_config(url=f"sqlite:///{tmp_path / 'omnichannel-test.db'}"))
    yield inbox
    inbox.close()
