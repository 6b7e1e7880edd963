"""kill -9 of the IMAP poller at random points while it ingests 1,000 messages."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from omnichannel.store.engine import create_engine
from omnichannel.store.tables import messages, raw_messages
from tests.test_imap import Mailbox, imap_options, mail, mailbox, write_config  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow
COUNT = 1000


def stored_message_ids(url: str) -> tuple[set[str], int, set[str]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        filed = set(conn.execute(sa.select(messages.c.message_id)).scalars())
        raws = conn.execute(sa.select(sa.func.count()).select_from(raw_messages)).scalar_one()
        statuses = set(conn.execute(sa.select(raw_messages.c.status).distinct()).scalars())
    engine.dispose()
    return filed, int(raws), statuses


def test_kill_9_while_polling_loses_and_doubles_nothing(
    dovecot: Any,
    mailbox: Mailbox,  # noqa: F811
    tmp_path: Path,
    database_url: str,
) -> None:
    """Killed at random points and restarted until done: exactly 1,000 outcomes, every message
    flagged, and never a message flagged before its commit."""
    for start in range(0, COUNT, 100):
        mailbox.client.multiappend("INBOX", [mail(i) for i in range(start, start + 100)])
    config = write_config(
        tmp_path / "omnichannel.toml", database_url, imap_options(dovecot, batch_size=40)
    )
    command = [sys.executable, "-m", "omnichannel", "--config", str(config), "poll", "--once"]
    rng, kills = random.Random(11), 0
    for _ in range(25):
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=rng.uniform(1.0, 3.0))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
            filed, _, _ = stored_message_ids(database_url)
            assert mailbox.seen_message_ids() <= filed  # nothing flagged before its commit
            continue
        assert proc.returncode == 0
        break
    else:
        pytest.fail("the poller never finished")
    assert kills >= 1
    filed, raws, statuses = stored_message_ids(database_url)
    assert raws == COUNT and statuses == {"processed"}
    assert filed == {f"<m{i}@example.id>" for i in range(COUNT)}
    assert mailbox.uids(criteria="UNSEEN") == [] and len(mailbox.uids()) == COUNT
