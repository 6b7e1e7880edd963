"""Two pollers on one gateway, and kill -9 of the poller: every SMS filed exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.gammu import GammuConnector, GammuOptions
from omnichannel import Inbox, Outcome
from omnichannel.config import default_config
from omnichannel.connector import ConnectorContext
from omnichannel.store.engine import create_engine
from omnichannel.store.tables import complaints, raw_messages
from tests.gammu_schema import (  # noqa: F401 - fixtures
    Gateway,
    mariadb_url,
    open_gateway,
    postgres_gateway_url,
    sms,
)
from tests.helpers import run_threads

pytestmark = pytest.mark.slow


def load(gateway: Gateway, count: int) -> list[str]:
    """``count`` SMS from distinct senders with distinct texts; every fifth has 3 parts."""
    texts = []
    for i in range(count):
        text = f"Pengaduan nomor {i}: jalan lingkungan {i} berlubang dan tergenang air."
        if i % 5 == 0:
            text += " Sudah dilaporkan ke kelurahan tetapi belum ada tindak lanjut sama sekali."
        parts = 3 if i % 5 == 0 else 1
        gateway.deliver(sms(f"0812{i:08d}", text, parts, reference=i % 256))
        texts.append(text)
    return sorted(texts)


def store_state(url: str) -> tuple[list[str], int, set[int]]:
    """Complaint bodies, raw message count, and the inbox IDs of every stored raw message."""
    engine = create_engine(url)
    with engine.connect() as conn:
        bodies = sorted(conn.execute(sa.select(complaints.c.body)).scalars())
        raws = conn.execute(sa.select(raw_messages.c.status, raw_messages.c.meta)).all()
    engine.dispose()
    stored = {int(i) for _, meta in raws for i in meta["ids"]}
    return bodies, len(raws), stored


@pytest.fixture(params=["sqlite-17", "mariadb-18"])
def shared_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    """The gateway both pollers read: SQLite v17 and MariaDB v18."""
    db = open_gateway(request, request.param, tmp_path)
    yield db
    db.dispose()


def test_two_pollers_file_each_sms_once(shared_gateway: Gateway, database_url: str) -> None:
    """Two inboxes polling one gateway into one store at once: one complaint per SMS."""
    expected = load(shared_gateway, 120)
    Inbox(default_config(url=database_url)).close()  # init-db first, as replicas would
    start = threading.Barrier(2, timeout=60)
    outcomes: list[Counter[str]] = [Counter(), Counter()]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            with Inbox(default_config(url=database_url)) as inbox:
                inbox.add_connector(
                    GammuConnector(
                        "sms",
                        GammuOptions(url=shared_gateway.url, batch_size=5),
                        ConnectorContext(),
                    )
                )
                start.wait()
                while not all(shared_gateway.processed().values()):
                    outcomes[index].update(r.outcome.value for r in inbox.poll("sms"))
        except BaseException as exc:
            errors.append(exc)

    threads = run_threads(run, [(i,) for i in range(2)], timeout=240)
    assert not errors and not any(t.is_alive() for t in threads)
    bodies, raws, _ = store_state(database_url)
    assert bodies == expected and raws == len(expected)
    assert outcomes[0][Outcome.NEW.value] + outcomes[1][Outcome.NEW.value] == len(expected)
    assert all(shared_gateway.processed().values())


def write_config(folder: Path, database_url: str, gateway: Gateway) -> Path:
    config = folder / "omnichannel.toml"
    config.write_text(
        f"""
[database]
url = "{database_url}"
[[connectors]]
name = "sms"
type = "gammu"
url = "{gateway.url}"
batch_size = 7
""",
        encoding="utf-8",
    )
    return config


def poll_command(config: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "omnichannel", "--config", str(config)),
        *("poll", "--once", "--format", "json"),
    ]


def kill_after_first_commit(command: list[str], out: Path, delay: float) -> int | None:
    """Run; once a batch is reported (committed), wait ``delay`` and SIGKILL. The exit code
    when it finished first, else None."""
    with out.open("wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while out.stat().st_size == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        if proc.poll() is not None:
            return proc.returncode
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        return None


def test_kill_9_while_polling_loses_and_doubles_nothing(
    shared_gateway: Gateway, database_url: str, tmp_path: Path
) -> None:
    """Killed at random points after a commit (so also between commit and claim) and restarted
    until done: one complaint per SMS, every row Processed, no row claimed before its commit."""
    expected = load(shared_gateway, 300)
    command = poll_command(write_config(tmp_path, database_url, shared_gateway))
    rng, kills = random.Random(17), 0
    for _ in range(60):
        code = kill_after_first_commit(command, tmp_path / "out.jsonl", rng.uniform(0.0, 0.6))
        if code is not None:
            assert code == 0
            break
        kills += 1
        claimed = {i for i, done in shared_gateway.processed().items() if done}
        assert claimed <= store_state(database_url)[2]  # nothing claimed before its commit
    else:
        pytest.fail("the poller never finished")
    assert kills >= 1
    bodies, raws, filed = store_state(database_url)
    assert bodies == expected and raws == len(expected)
    assert all(shared_gateway.processed().values())
    assert filed == set(shared_gateway.processed())


CRASH_IN_ACK = """
import os, sys
from connectors.gammu import GammuConnector
from omnichannel.cli import main

GammuConnector.ack = lambda self, messages: os._exit(9)  # dies after the commit, before the claim
main(sys.argv[1:])
"""


def test_process_dying_between_commit_and_claim(
    shared_gateway: Gateway, database_url: str, tmp_path: Path
) -> None:
    """A poller process that dies right after its first commit: the restart stores nothing
    twice and files everything once."""
    expected = load(shared_gateway, 20)
    config = write_config(tmp_path, database_url, shared_gateway)
    crash = [sys.executable, "-c", CRASH_IN_ACK, "--config", str(config), "poll", "--once"]
    assert subprocess.run(crash, capture_output=True, timeout=120).returncode == 9
    bodies, raws, _ = store_state(database_url)
    # the raw payloads are committed; filing comes after the claim, so it never came
    assert len(bodies) == 0 and raws == 7 and not any(shared_gateway.processed().values())
    done = subprocess.run(poll_command(config), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    outcomes = Counter(json.loads(line)["outcome"] for line in done.stdout.splitlines())
    assert outcomes == {"new": 20}  # the 7 stored before are filed by their redelivery
    bodies, raws, _ = store_state(database_url)
    assert bodies == expected and raws == len(expected)
    assert all(shared_gateway.processed().values())
