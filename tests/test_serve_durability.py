"""``omnichannel serve`` as a process: kill -9 under webhook load, and two servers on one
PostgreSQL. Signed Twilio webhooks (the official validator's signatures) from 8 client threads;
whatever happens to a server, a message answered 200 is stored, and after a restart every
stored message is filed exactly once."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from omnichannel.store.engine import create_engine
from omnichannel.store.tables import complaints, messages, raw_messages
from tests.helpers import json_doc
from tests.test_imap import mailbox  # noqa: F401 - fixture
from tests.test_twilio import ACCOUNT, FORM, TOKEN, sign, sms_fields

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(folder: Path, url: str) -> Path:
    """A twilio webhook connector, and a drop folder that ``run`` polls (``serve`` does not)."""
    path = folder / "omnichannel.toml"
    (folder / "drop").mkdir(exist_ok=True)
    path.write_text(
        f'[database]\nurl = "{url}"\n\n[filing]\ninterval = 0.2\n\n'
        f'[[connectors]]\nname = "sms"\ntype = "twilio"\nmode = "webhook"\n'
        f'account_sid = "{ACCOUNT}"\nauth_token = "{TOKEN}"\n\n'
        f'[[connectors]]\nname = "files"\ntype = "files"\npath = "{folder / "drop"}"\n'
        "poll_interval = 0.1\nbatch_size = 20\n",
        encoding="utf-8",
    )
    return path


@contextmanager
def serving(
    config: Path, port: int, log: Path, daemon: str = "serve"
) -> Iterator[subprocess.Popen[bytes]]:
    """``omnichannel serve`` (or ``run``) on ``port``, up (``/healthz`` answers) before this
    yields."""
    command = [sys.executable, "-m", "omnichannel", "--config", str(config), daemon]
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [*command, "--port", str(port)], stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while not health(port):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def health(port: int) -> dict[str, object] | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/healthz")
        body = connection.getresponse().read()
    except OSError:
        return None
    finally:
        connection.close()
    found: dict[str, object] = json.loads(body)
    return found


def send(port: int, n: int) -> int | None:
    """POST message ``n`` (signed); the status, or None when the connection broke."""
    url = f"http://127.0.0.1:{port}/webhooks/sms"
    fields = sms_fields(n, f"Pengaduan {n}: izin belum terbit.", f"+62813{n:08d}")
    headers = {"Content-Type": FORM, "X-Twilio-Signature": sign(url, fields)}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request("POST", "/webhooks/sms", urlencode(fields), headers)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def load(port: int, numbers: list[int], answered: dict[int, int | None]) -> None:
    """Send every message from 8 threads; each status goes into ``answered`` as it comes."""

    def one(n: int) -> None:
        answered[n] = send(port, n)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, numbers))


def filed(url: str) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        query = sa.select(raw_messages.c.external_id, raw_messages.c.status)
        raws = [(str(e), str(s)) for e, s in conn.execute(query)]
        msgs = list(conn.execute(sa.select(messages.c.external_id)).scalars())
        tickets = list(conn.execute(sa.select(complaints.c.ticket)).scalars())
    engine.dispose()
    return raws, msgs, tickets


def wait_drained(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while any(status == "received" for _, status in filed(url)[0]):
        assert time.monotonic() < deadline, "the backlog did not drain"
        time.sleep(0.1)


def assert_each_once(url: str, answered_ok: set[int]) -> None:
    from tests.test_twilio import sid

    raws, msgs, tickets = filed(url)
    stored = {e for e, _ in raws}
    assert {sid(n) for n in answered_ok} <= stored  # nothing answered 200 is lost
    assert {s for _, s in raws} == {"processed"}  # the backlog drained
    assert sorted(msgs) == sorted(stored)  # each stored message filed exactly once
    assert len(tickets) == len(set(tickets)) == len(stored)


@pytest.mark.parametrize(("daemon", "seed"), [("serve", 1), ("serve", 2), ("run", 3), ("run", 4)])
def test_kill_9_under_load(database_url: str, tmp_path: Path, daemon: str, seed: int) -> None:
    """``serve`` (webhooks) or ``run`` (webhooks and a drop folder it polls) is SIGKILLed at a
    random moment under load from 8 threads; after a restart (and the provider's retries)
    every message answered 200 before the kill is stored, every stored message and every
    dropped file is filed exactly once, and the raw backlog drains to zero."""
    url = database_url
    config, port, log = write_config(tmp_path, url), free_port(), tmp_path / "serve.log"
    numbers = list(range(1, 1001))
    answered: dict[int, int | None] = {}
    target = random.Random(seed).randint(20, 600)  # progress, not time, picks the moment
    dropped = 200 if daemon == "run" else 0
    for i in range(dropped):
        (tmp_path / "drop" / f"d{i:04d}.json").write_bytes(
            json_doc(f"drop-{i}", text=f"Keluhan berkas {i}.", sender={"phone": f"0815{i:08d}"})
        )
    with serving(config, port, log, daemon) as proc:
        loader = threading.Thread(target=load, args=(port, numbers, answered))
        loader.start()
        while len(answered) < target and loader.is_alive():
            time.sleep(0.001)
        time.sleep(random.Random(seed).uniform(0, 0.02))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        loader.join(timeout=120)
    ok_before = {n for n, status in answered.items() if status == 200}
    assert ok_before and len(ok_before) < len(numbers), "the kill came too early or too late"
    with serving(config, port, log, daemon):
        retries: dict[int, int | None] = {}
        load(port, numbers, retries)  # Twilio's retries (and redeliveries of the answered)
        assert set(retries.values()) == {200}
        deadline = time.monotonic() + 60
        while list((tmp_path / "drop").glob("*.json")):  # run polls the rest of the folder
            assert time.monotonic() < deadline, "the drop folder was not emptied"
            time.sleep(0.1)
        wait_drained(url)
    assert_each_once(url, ok_before | set(numbers))
    raws = filed(url)[0]
    assert sorted(e for e, _ in raws if e.startswith("drop-")) == sorted(
        f"drop-{i}" for i in range(dropped)
    )


@pytest.mark.postgres
def test_two_servers_on_one_postgresql_file_each_message_once(
    postgres_url: str, tmp_path: Path
) -> None:
    """Two ``serve`` processes on one PostgreSQL get the same webhook load (every message sent
    to both, as a provider's retry might reach either replica): each message is filed exactly
    once, with unique tickets."""
    from tests.conftest import _truncate

    _truncate(postgres_url)
    config = write_config(tmp_path, postgres_url)
    ports = [free_port(), free_port()]
    numbers = list(range(1, 301))
    answers: list[dict[int, int | None]] = [{}, {}]
    first, second = (serving(config, p, tmp_path / f"{p}.log") for p in ports)
    with first, second:
        loaders = [
            threading.Thread(target=load, args=(port, numbers, answers[i]))
            for i, port in enumerate(ports)
        ]
        for loader in loaders:
            loader.start()
        for loader in loaders:
            loader.join(timeout=120)
        assert all(set(a.values()) == {200} for a in answers)
        wait_drained(postgres_url)
    assert_each_once(postgres_url, set(numbers))


def test_kill_9_of_run_twenty_times_under_mixed_load(
    database_url: str,
    tmp_path: Path,
    mailbox: Any,  # noqa: F811 - the fixture
) -> None:
    """``run`` with a mailbox, a drop folder and webhooks, SIGKILLed at a random moment 20
    times while mail arrives, files are dropped and webhooks are posted; then run to the end
    (the providers' retries): every message answered 200, every mail flagged and every file
    taken ends as exactly one outcome, nothing is filed twice, the backlog drains."""
    from tests.test_imap import imap_options, mail

    url = database_url
    config = write_config(tmp_path, url)
    options = imap_options(mailbox.server, poll_interval=0.1, batch_size=5)
    config.write_text(
        config.read_text(encoding="utf-8")
        + "\n[[connectors]]\n"
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in options.items()),
        encoding="utf-8",
    )
    rng = random.Random(20)
    port, log = free_port(), tmp_path / "run.log"
    answered: dict[int, int | None] = {}
    sent = 0
    for round_ in range(20):
        for k in range(5):  # mail and files arrive between (and during) the runs
            n = round_ * 5 + k
            mailbox.client.append("INBOX", mail(n))
            (tmp_path / "drop" / f"d{n:04d}.json").write_bytes(
                json_doc(f"drop-{n}", text=f"Berkas {n}.", sender={"phone": f"0815{n:08d}"})
            )
        numbers = list(range(sent + 1, sent + 41))
        sent += 40
        with serving(config, port, log, "run") as proc:
            loader = threading.Thread(target=load, args=(port, numbers, answered))
            loader.start()
            time.sleep(rng.uniform(0.0, 0.4))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            loader.join(timeout=60)
    ok_before = {n for n, status in answered.items() if status == 200}
    with serving(config, port, log, "run"):
        retries: dict[int, int | None] = {}
        load(port, list(range(1, sent + 1)), retries)
        assert set(retries.values()) == {200}
        deadline = time.monotonic() + 120
        while list((tmp_path / "drop").glob("*.json")) or mailbox.uids(criteria="UNSEEN"):
            assert time.monotonic() < deadline, "the folder or the mailbox was not emptied"
            time.sleep(0.2)
        wait_drained(url)
    assert_each_once(url, ok_before | set(range(1, sent + 1)))
    raws = {e for e, _ in filed(url)[0]}
    assert {f"drop-{n}" for n in range(100)} <= raws
    assert len(raws) == sent + 100 + 100  # webhooks, files, mails: each stored once
