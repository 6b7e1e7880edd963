"""kill -9 of the IMAP poller at random points while it ingests 1,000 messages."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from omnichannel.store.engine import create_engine
from omnichannel.store.tables import messages, raw_messages
from tests.test_imap import Mailbox, imap_options, mail, mailbox, write_config  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow
COUNT = 1000
KILLS = 6


def _stored_count(watcher: sa.Engine) -> int:
    with watcher.connect() as conn:
        try:
            stored = conn.execute(sa.select(sa.func.count()).select_from(raw_messages))
            return int(stored.scalar_one())
        except (sa.exc.OperationalError, sa.exc.ProgrammingError):  # no schema yet
            return 0


def _kill_when_stored(
    proc: subprocess.Popen[bytes], watcher: sa.Engine, target: int, rng: random.Random
) -> bool:
    """SIGKILL ``proc`` a random moment (0-50 ms) after ``target`` raw rows are committed;
    False if it finished first. Progress, not wall-clock time, picks the point, so the test
    kills mid-run on a fast machine as on a slow one."""
    while proc.poll() is None:
        if _stored_count(watcher) >= target:
            time.sleep(rng.uniform(0, 0.05))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return True
        time.sleep(0.002)
    return False


def stored_message_ids(url: str) -> tuple[set[str], int, set[str]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        filed = set(conn.execute(sa.select(messages.c.message_id)).scalars())
        raws = conn.execute(sa.select(sa.func.count()).select_from(raw_messages)).scalar_one()
        statuses = set(conn.execute(sa.select(raw_messages.c.status).distinct()).scalars())
    engine.dispose()
    return filed, int(raws), statuses


def stored_raw_ids(url: str) -> set[str]:
    """The Message-IDs of the mails whose raw payload is committed."""
    from email.parser import BytesHeaderParser

    engine = create_engine(url)
    with engine.connect() as conn:
        payloads = list(conn.execute(sa.select(raw_messages.c.payload)).scalars())
    engine.dispose()
    parser = BytesHeaderParser()
    return {str(parser.parsebytes(p)["Message-ID"]).strip() for p in payloads}


def test_kill_9_while_polling_loses_and_doubles_nothing(
    dovecot: Any,
    mailbox: Mailbox,  # noqa: F811
    tmp_path: Path,
    database_url: str,
) -> None:
    """Killed at random points (and restarted) while it ingests, then run to the end: exactly
    1,000 outcomes, every message flagged, and never a message flagged before its commit."""
    for start in range(0, COUNT, 100):
        mailbox.client.multiappend("INBOX", [mail(i) for i in range(start, start + 100)])
    config = write_config(
        tmp_path / "omnichannel.toml", database_url, imap_options(dovecot, batch_size=40)
    )
    command = [sys.executable, "-m", "omnichannel", "--config", str(config), "poll", "--once"]
    rng, kills = random.Random(11), 0
    watcher = create_engine(database_url)
    try:
        for _ in range(KILLS):  # kill -9 once a run has stored more, at a random point
            stored = _stored_count(watcher)
            if stored >= COUNT:
                break
            target = rng.randint(stored + 1, COUNT)
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if not _kill_when_stored(proc, watcher, target, rng):
                break  # it finished first
            kills += 1
            assert mailbox.seen_message_ids() <= stored_raw_ids(database_url)  # flagged only
            # once its raw payload is committed (filing may come after, on the next run)
        proc = subprocess.run(command, stdout=subprocess.DEVNULL, timeout=300, check=False)
        assert proc.returncode == 0
    finally:
        watcher.dispose()
    assert kills >= 1
    filed, raws, statuses = stored_message_ids(database_url)
    assert raws == COUNT and statuses == {"processed"}
    assert filed == {f"<m{i}@example.id>" for i in range(COUNT)}
    assert mailbox.uids(criteria="UNSEEN") == [] and len(mailbox.uids()) == COUNT
