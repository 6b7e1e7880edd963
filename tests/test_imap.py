"""The IMAP connector against a real Dovecot on loopback: outcomes, flags, folders, failures."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from imapclient import IMAPClient

from connectors.imap import ImapConnector
from omnichannel import Inbox, Outcome
from omnichannel.cli import main
from omnichannel.config import parse_config
from omnichannel.errors import FatalError
from omnichannel.poller import run_pollers
from omnichannel.store.tables import raw_messages
from omnichannel.testing import DecodeCase, PollingContract
from tests.proxy import DroppingProxy, SwitchableProxy


def mail(
    n: int,
    *,
    sender: str | None = None,
    body: str | None = None,
    subject: str | None = None,
    size: int = 0,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender or f"Warga {n} <warga{n}@example.id>"
    message["To"] = "pengaduan@example.go.id"
    message["Subject"] = subject or f"Keluhan nomor {n}"
    message["Message-ID"] = f"<m{n}@example.id>"
    message["Date"] = "Mon, 30 Nov 2026 09:00:00 +0800"
    message.set_content(
        (body or f"Pengaduan {n}: izin usaha saya belum diproses.")
        + ("\n" + "x" * size if size else "")
    )
    return bytes(message)


class Mailbox:
    """Direct access to the test mailbox, to deliver mail and look at flags and folders."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.client = IMAPClient(server.host, port=server.port, ssl=False)
        self.client.login(server.user, server.password)

    def reset(self) -> None:
        for _flags, _sep, name in self.client.list_folders():
            folder = name if isinstance(name, str) else name.decode()
            if folder != "INBOX":
                self.client.delete_folder(folder)
        self.client.select_folder("INBOX")
        uids = self.client.search(["ALL"])
        if uids:
            self.client.add_flags(uids, [b"\\Deleted"])
            self.client.expunge()

    def deliver(self, *messages: bytes, folder: str = "INBOX") -> None:
        if not self.client.folder_exists(folder):
            self.client.create_folder(folder)
        for message in messages:
            self.client.append(folder, message)

    def uids(self, folder: str = "INBOX", criteria: str = "ALL") -> list[int]:
        self.client.select_folder(folder, readonly=True)
        return sorted(self.client.search([criteria]))

    def seen_message_ids(self, folder: str = "INBOX") -> set[str]:
        self.client.select_folder(folder, readonly=True)
        uids = self.client.search(["SEEN"])
        data = self.client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]) if uids else {}
        return {
            v[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].decode().split(":", 1)[1].strip()
            for v in data.values()
        }

    def close(self) -> None:
        self.client.logout()


@pytest.fixture
def mailbox(dovecot: Any) -> Iterator[Mailbox]:
    """The test user's mailbox, emptied before each test."""
    box = Mailbox(dovecot)
    box.reset()
    yield box
    box.close()


def imap_options(server: Any, **extra: Any) -> dict[str, Any]:
    return {
        "name": "email",
        "type": "imap",
        "host": server.host,
        "port": server.port,
        "ssl": False,
        "username": server.user,
        "password": server.password,
        "retry_wait": 0.01,
        "idle": False,
        **extra,
    }


def imap(server: Any, **extra: Any) -> ImapConnector:
    options = {k: v for k, v in imap_options(server, **extra).items() if k not in ("name", "type")}
    connector = ImapConnector.from_options("email", options)
    assert isinstance(connector, ImapConnector)
    return connector


def write_config(path: Path, database_url: str, *connectors: dict[str, Any]) -> Path:
    """An omnichannel.toml with this database and these [[connectors]] tables."""
    lines = ["[database]", f'url = "{database_url}"']
    for connector in connectors:
        lines += ["", "[[connectors]]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in connector.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_inbox(database_url: str, *connectors: dict[str, Any]) -> Inbox:
    return Inbox(parse_config({"database": {"url": database_url}, "connectors": list(connectors)}))


def test_poll_files_each_message_once_and_flags_it_seen(
    dovecot: Any, mailbox: Mailbox, database_url: str
) -> None:
    """Each mail becomes one complaint, is flagged \\Seen after commit, and a re-poll is empty."""
    mailbox.deliver(*(mail(i) for i in range(5)))
    with make_inbox(database_url, imap_options(dovecot)) as inbox:
        results = inbox.poll("email")
        assert [r.outcome for r in results] == [Outcome.NEW] * 5
        assert mailbox.uids(criteria="UNSEEN") == []
        assert inbox.poll("email") == []
        complaint = inbox.complaint(results[0].ticket or "")
        assert complaint is not None
        assert complaint.sender.email == "warga0@example.id" and complaint.channel == "email"
        assert complaint.subject == "Keluhan nomor 0"
        assert complaint.received_at.tzinfo is not None


def test_processed_folder_receives_filed_mail(
    dovecot: Any, mailbox: Mailbox, sqlite_inbox: Inbox
) -> None:
    """With processed_folder set, filed mail is moved there (UID MOVE) and INBOX is empty."""
    mailbox.deliver(mail(1), mail(2))
    sqlite_inbox.add_connector(imap(dovecot, processed_folder="Diproses"))
    results = sqlite_inbox.poll("email")
    assert len(results) == 2
    assert mailbox.uids() == [] and len(mailbox.uids("Diproses")) == 2


def test_copy_delete_expunge_fallback_without_move(
    dovecot: Any, mailbox: Mailbox, sqlite_inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server without MOVE gets COPY, \\Deleted and UID EXPUNGE instead."""
    original = IMAPClient.has_capability
    monkeypatch.setattr(
        IMAPClient, "has_capability", lambda self, cap: cap != "MOVE" and original(self, cap)
    )
    mailbox.deliver(mail(1))
    sqlite_inbox.add_connector(imap(dovecot, processed_folder="Diproses"))
    assert [r.outcome for r in sqlite_inbox.poll("email")] == [Outcome.NEW]
    assert mailbox.uids() == [] and len(mailbox.uids("Diproses")) == 1


def test_duplicate_message_id_with_other_content_is_a_new_complaint(
    dovecot: Any, mailbox: Mailbox, sqlite_inbox: Inbox
) -> None:
    """A Message-ID reused for different content is not taken for a redelivery."""
    first = mail(1, body="Jalan rusak di Desa Bontoa.", sender="a@example.id")
    second = mail(1, body="Lampu jalan mati di Maros.", sender="b@example.id")
    mailbox.deliver(first, second, first)
    sqlite_inbox.add_connector(imap(dovecot))
    outcomes = [r.outcome for r in sqlite_inbox.poll("email")]
    assert outcomes == [Outcome.NEW, Outcome.NEW, Outcome.DUPLICATE]


def test_uidvalidity_change_rescans_without_duplicating(
    dovecot: Any, mailbox: Mailbox, sqlite_inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    """After the folder is recreated (new UIDVALIDITY) the rescan finds only duplicates."""
    mailbox.deliver(mail(1), mail(2), folder="Pengaduan")
    sqlite_inbox.add_connector(imap(dovecot, folder="Pengaduan"))
    assert len(sqlite_inbox.poll("email")) == 2
    sqlite_inbox.connector("email").close()
    mailbox.client.select_folder("INBOX")
    mailbox.client.delete_folder("Pengaduan")
    mailbox.deliver(mail(1), mail(2), mail(3), folder="Pengaduan")
    with caplog.at_level("WARNING", logger="omnichannel"):
        outcomes = [r.outcome for r in sqlite_inbox.poll("email")]
    assert outcomes == [Outcome.DUPLICATE, Outcome.DUPLICATE, Outcome.NEW]
    assert "UIDVALIDITY" in caplog.text


def test_oversized_mail_is_not_downloaded_but_reported(
    dovecot: Any, mailbox: Mailbox, sqlite_inbox: Inbox
) -> None:
    """Mail over max_message_bytes is stored as headers only and becomes a complaint saying so."""
    mailbox.deliver(mail(1, size=20_000))
    sqlite_inbox.add_connector(imap(dovecot, max_message_bytes=4096))
    [result] = sqlite_inbox.poll("email")
    assert result.outcome is Outcome.NEW
    complaint = sqlite_inbox.complaint(result.ticket or "")
    assert complaint is not None and "tidak diunduh" in complaint.body
    with sqlite_inbox.store.transaction() as conn:
        stored = conn.execute(sa.select(raw_messages.c.size, raw_messages.c.meta)).one()
    assert stored.size < 4096 and stored.meta["oversized"] and stored.meta["size"] > 20_000


def test_since_backfill_refetches_and_dedupes(
    dovecot: Any, mailbox: Mailbox, sqlite_inbox: Inbox
) -> None:
    """A --since backfill reads the folder again; what is stored comes back as duplicates."""
    from datetime import date

    mailbox.deliver(mail(1), mail(2))
    sqlite_inbox.add_connector(imap(dovecot))
    sqlite_inbox.poll("email")
    again = sqlite_inbox.poll("email", since=date(2020, 1, 1))
    assert [r.outcome for r in again] == [Outcome.DUPLICATE, Outcome.DUPLICATE]


@pytest.mark.parametrize("mode", ["ssl", "starttls"])
def test_tls_modes_with_the_servers_certificate(
    dovecot: Any, mailbox: Mailbox, sqlite_inbox: Inbox, mode: str
) -> None:
    """Implicit TLS and STARTTLS both work when the server's certificate is trusted."""
    port = dovecot.tls_port if mode == "ssl" else dovecot.port
    mailbox.deliver(mail(1))
    sqlite_inbox.add_connector(
        imap(
            dovecot,
            host="localhost",
            port=port,
            ssl=mode == "ssl",
            starttls=mode == "starttls",
            ca_file=str(dovecot.root / "cert.pem"),
        )
    )
    assert [r.outcome for r in sqlite_inbox.poll("email")] == [Outcome.NEW]


def test_untrusted_certificate_is_fatal(dovecot: Any, sqlite_inbox: Inbox) -> None:
    """A certificate that does not verify is a fatal error for the connector, not a retry."""
    if dovecot.tls_port is None:
        pytest.skip("needs the private Dovecot's self-signed TLS port")
    sqlite_inbox.add_connector(imap(dovecot, port=dovecot.tls_port, ssl=True))
    with pytest.raises(FatalError, match="certificate"):
        sqlite_inbox.poll("email")


def test_wrong_password_fails_that_connector_only(
    dovecot: Any, mailbox: Mailbox, tmp_path: Path
) -> None:
    """poll --once with a wrong password: that connector FAILED, the other one still polls."""
    mailbox.deliver(mail(1))
    broken = imap_options(dovecot, password="salah-sandi-123") | {"name": "broken"}
    config = write_config(
        tmp_path / "omnichannel.toml",
        f"sqlite:///{tmp_path / 'x.db'}",
        broken,
        imap_options(dovecot),
    )
    result = CliRunner().invoke(main, ["--config", str(config), "poll", "--once"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("broken: FAILED: IMAP login failed for 'pengaduan'")
    assert lines[1] == "email: 1 messages: new 1"
    assert "salah-sandi-123" not in result.output


def test_connection_dropped_mid_batch_reconnects_and_finishes(
    dovecot: Any, mailbox: Mailbox, sqlite_inbox: Inbox
) -> None:
    """The server cutting the connection during a fetch: reconnect, resume, file each mail once."""
    mailbox.deliver(*(mail(i) for i in range(30)))
    proxy = DroppingProxy(dovecot.port, after_bytes=6000, drops=2)
    try:
        sqlite_inbox.add_connector(imap(dovecot, port=proxy.port, batch_size=7))
        results = sqlite_inbox.poll("email")
    finally:
        proxy.close()
    assert proxy.dropped >= 1 and proxy.connections >= 2
    assert sorted(
        r.external_id.split("|")[0] for r in results if r.outcome is Outcome.NEW
    ) == sorted(f"<m{i}@example.id>" for i in range(30))
    assert mailbox.uids(criteria="UNSEEN") == []


def test_idle_wakes_the_poller_for_new_mail(
    dovecot: Any, mailbox: Mailbox, sqlite_inbox: Inbox
) -> None:
    """With IDLE, mail arriving after the first poll is filed without waiting the interval."""
    sqlite_inbox.add_connector(imap(dovecot, idle=True, poll_interval=3600, idle_timeout=60))
    stop = threading.Event()
    runner = threading.Thread(target=run_pollers, args=(sqlite_inbox, ["email"], stop))
    runner.start()
    try:
        time.sleep(1.0)  # let the first (empty) poll finish and IDLE begin
        mailbox.deliver(mail(42))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not sqlite_inbox.complaints():
            time.sleep(0.1)
    finally:
        stop.set()
        runner.join(timeout=30)
    assert [c.subject for c in sqlite_inbox.complaints()] == ["Keluhan nomor 42"]


def test_poll_json_output(dovecot: Any, mailbox: Mailbox, tmp_path: Path) -> None:
    """poll --format json prints one line per message with the contract's keys."""
    mailbox.deliver(mail(1), mail(1))
    config = write_config(
        tmp_path / "omnichannel.toml", f"sqlite:///{tmp_path / 'x.db'}", imap_options(dovecot)
    )
    result = CliRunner().invoke(
        main, ["--config", str(config), "poll", "--once", "--format", "json"]
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0
    assert [line["outcome"] for line in lines] == ["new", "duplicate"]
    assert set(lines[0]) == {
        "connector",
        "external_id",
        "outcome",
        "complaint_id",
        "ticket",
        "error",
    }


CORPUS = Path(__file__).parent / "testdata" / "email"


def test_whole_corpus_through_poll_once(dovecot: Any, mailbox: Mailbox, tmp_path: Path) -> None:
    """Every corpus mail delivered to the mailbox gets exactly one outcome from `poll --once`:
    auto-replies and bounces `ignored`, the rest `new` or `merged`; all end up \\Seen."""
    names = sorted(p.stem for p in CORPUS.glob("*.eml"))
    mailbox.deliver(*((CORPUS / f"{n}.eml").read_bytes() for n in names))
    config = write_config(
        tmp_path / "omnichannel.toml", f"sqlite:///{tmp_path / 'x.db'}", imap_options(dovecot)
    )
    result = CliRunner().invoke(
        main, ["--config", str(config), "poll", "--once", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == len(names)
    for name, line in zip(names, lines, strict=True):
        flags = json.loads((CORPUS / f"{name}.expected.json").read_text()).get("flags", {})
        automatic = flags.get("auto_reply") or flags.get("bounce")
        expected = {"ignored"} if automatic else {"new", "merged"}
        assert line["outcome"] in expected, (name, line)
    assert mailbox.uids(criteria="UNSEEN") == []


# -- the shared contract -----------------------------------------------------------------------

CONTRACT_USER, CONTRACT_PASSWORD = "kontrak", "rahasia-imap-kontrak"


def _next_second() -> None:
    """Wait into the next second: Dovecot reads its passwd-file again at most once a second."""
    time.sleep(1.02 - time.time() % 1)


def _entry(password: str) -> str:
    return f"{CONTRACT_USER}:{{PLAIN}}{password}::::::"


def _set_password(server: Any, password: str) -> None:
    """Give the contract's own account on our Dovecot ``password`` (created if need be), so
    that the account the other tests share is never touched; effective from the next second."""
    users = Path(server.root) / "users"
    lines = [
        line for line in users.read_text().splitlines() if not line.startswith(f"{CONTRACT_USER}:")
    ]
    users.write_text("".join(f"{line}\n" for line in [*lines, _entry(password)]))
    _next_second()


class TestImapContract(PollingContract):
    """A mailbox on the real Dovecot passes the shared polling contract: UID cursor, stable
    content keys, flags only after the commit; a changed password is fatal, a closed port a
    retry."""

    connector_type = "imap"
    options: ClassVar[dict[str, Any]] = {
        "host": "127.0.0.1",
        "ssl": False,
        "username": CONTRACT_USER,
        "password": CONTRACT_PASSWORD,
        "idle": False,
        "retry_attempts": 2,
        "retry_wait": 0.01,
        "timeout": 10,
    }
    cases: ClassVar[list[DecodeCase]] = [
        DecodeCase(
            "mail",
            mail(200),
            {"channel": "email", "subject": "Keluhan nomor 200"},
            "message/rfc822",
        )
    ]
    poll_items: ClassVar[list[bytes]] = [mail(201), mail(202, size=3000), mail(203)]

    @pytest.fixture
    def polling_options(self, dovecot: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
        """The kit's fixture, with the session's Dovecot (``setup_source`` takes no fixture).
        imapclient's protocol trace stays off: the kit lowers the root logger to DEBUG, and
        the trace holds the mail's addresses (which tests/logscan.py rightly refuses)."""
        self.server = dovecot
        trace = logging.getLogger("imapclient")
        level = trace.level
        trace.setLevel(logging.INFO)
        options = self.setup_source(tmp_path)
        try:
            yield {**self.options, **options}
        finally:
            self.teardown_source()
            trace.setLevel(level)

    def setup_source(self, tmp_path: Path) -> dict[str, Any]:
        server, self.password_changed = self.server, False
        account = SimpleNamespace(
            host=server.host, port=server.port, user=server.user, password=server.password
        )
        if server.root is not None:  # our own Dovecot: an account of the contract's own
            if _entry(CONTRACT_PASSWORD) not in (Path(server.root) / "users").read_text():
                _set_password(server, CONTRACT_PASSWORD)
            account.user, account.password = CONTRACT_USER, CONTRACT_PASSWORD
        self.mailbox = Mailbox(account)
        self.mailbox.reset()
        self.proxy = SwitchableProxy(server.host, server.port)  # closed for "unavailable"
        return {"port": self.proxy.port, "username": account.user, "password": account.password}

    def deliver(self, item: Any) -> None:
        self.mailbox.deliver(item)

    def break_source(self, how: str) -> bool:
        if how == "unavailable":
            self.proxy.close()  # connections to its port are refused from now on
            return True
        if how == "unauthorized" and self.server.root is not None:
            _set_password(self.server, CONTRACT_PASSWORD + "-baru")  # changed on the server
            self.password_changed = True
            return True
        return False  # no HTTP status in IMAP: no throttling, server error or forbidden

    def teardown_source(self) -> None:
        self.proxy.close()
        self.mailbox.close()
        if self.password_changed:
            _set_password(self.server, CONTRACT_PASSWORD)
