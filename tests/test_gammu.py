"""The gammu connector against real Gammu SMSD databases (SQLite, MariaDB, PostgreSQL; v17, v18)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from connectors.gammu import GammuConnector, GammuOptions
from normalizer.sms import GAMMU_INBOX_TYPE, MISSING_MARK, inbox_payload
from omnichannel import Inbox, Outcome
from omnichannel.cli import main
from omnichannel.config import parse_config
from omnichannel.connector import ConnectorContext
from omnichannel.errors import ConfigError, FatalError, RetryableError
from omnichannel.schema import ReceiveResult
from omnichannel.store.tables import messages, raw_messages
from omnichannel.testing import DecodeCase, PollingContract
from tests.gammu_schema import (  # noqa: F401 - fixtures
    Gateway,
    gateway,
    mariadb_url,
    open_gateway,
    postgres_gateway_url,
    sms,
)

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)  # one hour after the rows' 10:00 WITA
TEXT = "Jalan di Desa Bontoa rusak parah sejak bulan lalu, mohon segera diperbaiki."
LONG = (
    "Yth. Bapak/Ibu, kami warga RT 03 Kelurahan Tanralili melaporkan bahwa lampu penerangan "
    "jalan di sepanjang Jalan Poros Maros mati sejak dua minggu. Pada malam hari jalan gelap "
    "sekali dan sudah terjadi dua kecelakaan motor. Mohon segera ditindaklanjuti, terima kasih."
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def connector(
    gateway: Gateway,  # noqa: F811
    *,
    clock: Clock | None = None,
    context: ConnectorContext | None = None,
    **options: Any,
) -> GammuConnector:
    options.setdefault("gateway_timezone", "Asia/Makassar")
    return GammuConnector(
        "sms",
        GammuOptions(url=gateway.url, **options),
        context or ConnectorContext(),
        clock=clock or Clock(),
    )


@pytest.fixture
def inbox(sqlite_inbox: Inbox) -> Iterator[Inbox]:
    """The omnichannel store for the gateway tests (SQLite; the gateways vary)."""
    yield sqlite_inbox


def poll(inbox: Inbox, gammu: GammuConnector) -> list[ReceiveResult]:
    if gammu.name in inbox.connector_names():
        inbox.connector(gammu.name).close()
    inbox.add_connector(gammu)
    return inbox.poll(gammu.name)


def bodies(inbox: Inbox) -> list[str]:
    return sorted(c.body for c in inbox.complaints(limit=None))


def stored(inbox: Inbox, external_id: str) -> Any:
    with inbox.store.transaction() as conn:
        return conn.execute(
            sa.select(raw_messages, messages.c.flags, messages.c.sent_at)
            .join(messages, messages.c.raw_id == raw_messages.c.id)
            .where(raw_messages.c.external_id == external_id)
        ).one()


# -- the matrix: every gateway backend, schema v17 and v18 ---------------------------------------


def test_single_sms_is_filed_once_and_claimed(gateway: Gateway, inbox: Inbox) -> None:  # noqa: F811
    """One SMS: one complaint, its row Processed afterwards, the raw payload the row as read."""
    [row_id] = gateway.deliver(sms("081234567890", TEXT))
    [result] = poll(inbox, connector(gateway))
    assert result.outcome is Outcome.NEW
    complaint = inbox.complaint(result.ticket or "")
    assert complaint is not None and complaint.channel == "sms" and complaint.body == TEXT
    assert complaint.sender.phone == "+6281234567890"
    assert gateway.processed() == {row_id: True}
    assert poll(inbox, connector(gateway)) == []
    raw = stored(inbox, result.external_id)
    assert result.external_id.startswith(f"sms:{row_id}:")
    assert raw.content_type == GAMMU_INBOX_TYPE and raw.meta["ids"] == [row_id]
    document = json.loads(raw.payload)
    assert document["schema"] == gateway.version and document["timezone"] == "Asia/Makassar"
    [stored_row] = document["rows"]
    assert stored_row["ID"] == row_id and stored_row["TextDecoded"] == TEXT
    assert {"UpdatedInDB", "SMSCNumber", "Class", "RecipientID", "Status"} <= set(stored_row)
    assert ("MessageID" in stored_row) is (gateway.version == 18)


def test_three_parts_inserted_out_of_order(gateway: Gateway, inbox: Inbox) -> None:  # noqa: F811
    """Parts stored 3, 1, 2 are reassembled in part order into one complaint."""
    message = sms("081234567891", LONG, 3)
    gateway.deliver(message, order=[3, 1, 2])
    results = poll(inbox, connector(gateway))
    assert [r.outcome for r in results] == [Outcome.NEW]
    assert bodies(inbox) == [LONG]
    assert stored(inbox, results[0].external_id).meta["ids"] == sorted(message.ids.values())
    assert all(gateway.processed().values())


def test_ucs2_emoji_split_across_parts(gateway: Gateway, inbox: Inbox) -> None:  # noqa: F811
    """A surrogate pair split between part 1 and 2 of a UCS-2 SMS comes out as the emoji."""
    text = "Lampu jalan mati 🙏 tolong diperbaiki 😊"
    cut = (text.index("🙏") + 1) * 2  # after the high surrogate D83D
    message = sms("081234567892", text, cuts=[cut], coding="Unicode_No_Compression", decoded="each")
    assert message.chunks[0][-2:] == b"\xd8\x3d" and message.chunks[1][:2] == b"\xde\x4f"
    gateway.deliver(message)
    [result] = poll(inbox, connector(gateway))
    assert result.outcome is Outcome.NEW and bodies(inbox) == [text]


def test_16_bit_reference(gateway: Gateway, inbox: Inbox) -> None:  # noqa: F811
    """Parts carrying the 16-bit concatenation element are joined."""
    gateway.deliver(sms("081234567893", LONG, 2, reference=0xBEEF, reference_bits=16))
    [result] = poll(inbox, connector(gateway))
    rows = json.loads(stored(inbox, result.external_id).payload)["rows"]
    assert [r["UDH"] for r in rows] == ["060804BEEF0201", "060804BEEF0202"]
    assert bodies(inbox) == [LONG]


def test_two_senders_same_reference_at_the_same_time(gateway: Gateway, inbox: Inbox) -> None:  # noqa: F811
    """Two phones using 8-bit reference 0x21 at the same second: two separate messages."""
    first = sms("081234567894", "Sampah di pasar Maros menumpuk sudah seminggu.", 2, reference=0x21)
    second = sms("081234567895", "Air PDAM di Turikale tak mengalir tiga hari.", 2, reference=0x21)
    gateway.insert_part(first, 1)
    gateway.insert_part(second, 1)
    gateway.insert_part(second, 2)
    gateway.insert_part(first, 2)
    results = poll(inbox, connector(gateway))
    assert [r.outcome for r in results] == [Outcome.NEW, Outcome.NEW]
    assert bodies(inbox) == sorted([first.text, second.text])


def test_incomplete_multipart_waits_for_the_timeout(gateway: Gateway, inbox: Inbox) -> None:  # noqa: F811
    """Part 2 of 3 never comes: nothing before the timeout, then one complaint flagged so."""
    message = sms("081234567896", LONG, 3, at="2026-11-30 10:00:00")
    gateway.insert_part(message, 1)
    gateway.insert_part(message, 3, ReceivingDateTime="2026-11-30 10:00:05")
    clock = Clock(datetime(2026, 11, 30, 2, 10, 4, tzinfo=UTC))  # 599 s after the newest part
    assert poll(inbox, connector(gateway, clock=clock)) == []
    assert not any(gateway.processed().values())
    clock.now += timedelta(seconds=1)
    [result] = poll(inbox, connector(gateway, clock=clock))
    assert result.outcome is Outcome.NEW
    [body] = bodies(inbox)
    part_1 = message.chunks[0].decode("utf-16-be")
    part_3 = message.chunks[2].decode("utf-16-be")
    assert body == f"{part_1}{MISSING_MARK}{part_3}".strip()
    raw = stored(inbox, result.external_id)
    assert raw.flags["incomplete"] is True and raw.flags["missing_parts"] == [2]
    assert raw.meta["incomplete"] is True and all(gateway.processed().values())


def test_operator_messages_are_ignored(gateway: Gateway, inbox: Inbox) -> None:  # noqa: F811
    """TELKOMSEL and a short code are stored and claimed, but ignored: no complaint."""
    gateway.deliver(
        sms("TELKOMSEL", "Selamat! Anda mendapat bonus kuota 2GB."),
        sms("3636", "Sisa pulsa Anda Rp 1.250."),
    )
    results = poll(inbox, connector(gateway))
    assert [r.outcome for r in results] == [Outcome.IGNORED, Outcome.IGNORED]
    assert inbox.complaints() == [] and all(gateway.processed().values())
    flags = stored(inbox, results[0].external_id).flags
    assert flags["operator_message"] and flags["non_personal_sender"]


def test_wita_gateway_time_is_converted_to_utc(gateway: Gateway, inbox: Inbox) -> None:  # noqa: F811
    """10:15 on a WITA gateway is 02:15Z, the message's received_at and sent_at."""
    gateway.deliver(sms("081234567897", TEXT, at="2026-11-30 10:15:00"))
    [result] = poll(inbox, connector(gateway, gateway_timezone="Asia/Makassar"))
    complaint = inbox.complaint(result.ticket or "")
    assert complaint is not None
    assert complaint.received_at == datetime(2026, 11, 30, 2, 15, tzinfo=UTC)
    assert stored(inbox, result.external_id).sent_at == datetime(2026, 11, 30, 2, 15, tzinfo=UTC)


def test_indonesian_number_formats_become_e164(gateway: Gateway, inbox: Inbox) -> None:  # noqa: F811
    """0812…, +62812… and 0062812… senders all become +62812…."""
    gateway.deliver(
        sms("081234567801", "Izin usaha saya belum terbit setelah sebulan."),
        sms("+6281234567802", "Jembatan di Dusun Kassi retak dan berbahaya."),
        sms("006281234567803", "Puskesmas Bantimurung tutup pada jam layanan."),
    )
    poll(inbox, connector(gateway))
    phones = sorted(str(c.sender.phone) for c in inbox.complaints())
    assert phones == ["+6281234567801", "+6281234567802", "+6281234567803"]


def count_raw(inbox: Inbox) -> int:
    with inbox.store.transaction() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(raw_messages)).scalar_one())


def test_crash_between_commit_and_claim_files_each_once(
    gateway: Gateway,  # noqa: F811
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dying after the commit but before the claim (and before filing): the raw rows are
    kept, the re-read stores nothing twice and files each once, then claims them."""
    gateway.deliver(sms("081234567898", LONG, 2), sms("081234567899", TEXT))
    crashing = connector(gateway)

    def crash(_messages: object) -> None:
        raise SystemExit(9)

    monkeypatch.setattr(crashing, "ack", crash)
    with pytest.raises(SystemExit):
        poll(inbox, crashing)
    assert count_raw(inbox) == 2 and not any(gateway.processed().values())
    assert len(inbox.complaints()) == 0
    results = poll(inbox, connector(gateway))
    assert [r.outcome for r in results] == [Outcome.NEW, Outcome.NEW]
    assert count_raw(inbox) == 2
    assert len(inbox.complaints()) == 2 and all(gateway.processed().values())


def test_reused_id_with_other_content_is_a_new_message(gateway: Gateway, inbox: Inbox) -> None:  # noqa: F811
    """A recreated gateway database reuses IDs: other content under the same ID is new."""
    [first_id] = gateway.deliver(sms("081234567811", TEXT))
    [first] = poll(inbox, connector(gateway))
    gateway.create()
    [second_id] = gateway.deliver(sms("081234567812", LONG))
    [second] = poll(inbox, connector(gateway))
    assert first_id == second_id
    assert (first.outcome, second.outcome) == (Outcome.NEW, Outcome.NEW)
    assert first.external_id != second.external_id
    assert first.external_id.split(":")[:2] == second.external_id.split(":")[:2]


def test_messages_spanning_pages_are_read_whole(gateway: Gateway, inbox: Inbox) -> None:  # noqa: F811
    """With batch_size 2, a 3-part message interleaved with others over 3 pages is one complaint."""
    texts = [f"Laporan nomor {i}: saluran air di lingkungan {i} tersumbat." for i in range(3)]
    long_message = sms("081234567824", LONG, 3)
    for i, text in enumerate(texts):
        gateway.deliver(sms(f"08123456782{i}", text))
        gateway.insert_part(long_message, i + 1)
    results = poll(inbox, connector(gateway, batch_size=2))
    assert [r.outcome for r in results] == [Outcome.NEW] * 4
    assert bodies(inbox) == sorted([*texts, LONG]) and all(gateway.processed().values())


def test_backfill_since_reads_claimed_rows_again(gateway: Gateway, inbox: Inbox) -> None:  # noqa: F811
    """``since`` re-reads rows already claimed; they come back as duplicates."""
    gateway.deliver(sms("081234567830", TEXT), sms("081234567831", LONG, 2))
    assert len(poll(inbox, connector(gateway))) == 2
    poll(inbox, connector(gateway))  # the same connector again, for the backfill
    results = inbox.poll("sms", since=date(2026, 11, 30))
    assert [r.outcome for r in results] == [Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert inbox.poll("sms", since=date(2026, 12, 1)) == []


def test_schema_version_is_checked(gateway: Gateway) -> None:  # noqa: F811
    """An unknown schema version or missing tables are fatal, with a clear message."""
    gammu = connector(gateway)
    gammu.check()
    gateway.set_version(16)
    with pytest.raises(FatalError, match=r"version 16 .* not supported"):
        list(gammu.fetch(None))
    gateway.execute_script("DROP TABLE gammu;")
    with pytest.raises(FatalError, match="table 'gammu' is missing"):
        gammu.check()
    gammu.close()


# -- one backend is enough ---------------------------------------------------------------------


@pytest.fixture
def sqlite_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    """A v18 SQLite gateway."""
    db = open_gateway(request, "sqlite-18", tmp_path)
    yield db
    db.dispose()


def test_v18_message_id_separates_a_reused_reference(sqlite_gateway: Gateway, inbox: Inbox) -> None:
    """v18: one phone reusing a reference for two messages at once; MessageID keeps them apart."""
    first = sms("081234567840", "Pohon tumbang menutup jalan desa Baji Pamai.", 2, reference=7)
    second = sms("081234567840", "Selokan di depan SD Inpres 12 tersumbat sampah.", 2, reference=7)
    sqlite_gateway.insert_part(first, 1)
    sqlite_gateway.insert_part(second, 2)
    sqlite_gateway.insert_part(second, 1)
    sqlite_gateway.insert_part(first, 2)
    poll(inbox, connector(sqlite_gateway))
    assert bodies(inbox) == sorted([first.text, second.text])


@pytest.mark.parametrize(
    ("options", "hour"),
    [
        ({"gateway_timezone": "Asia/Jakarta"}, 3),
        ({"gateway_timezone": "Asia/Jayapura"}, 1),
        ({"gateway_timezone": None}, 2),  # the deployment's timezone (Asia/Makassar)
    ],
    ids=["WIB", "WIT", "default"],
)
def test_gateway_timezones(
    sqlite_gateway: Gateway, inbox: Inbox, options: dict[str, Any], hour: int
) -> None:
    """WIB and WIT gateways, and the deployment's timezone when none is configured."""
    sqlite_gateway.deliver(sms("081234567850", TEXT))
    context = ConnectorContext(timezone=ZoneInfo("Asia/Makassar"))
    [result] = poll(inbox, connector(sqlite_gateway, context=context, **options))
    complaint = inbox.complaint(result.ticket or "")
    assert complaint is not None
    assert complaint.received_at == datetime(2026, 11, 30, hour, 0, tzinfo=UTC)


def test_operator_messages_kept_when_asked(sqlite_gateway: Gateway, inbox: Inbox) -> None:
    """With ignore_operator_messages off, TELKOMSEL files as a complaint with a handle."""
    sqlite_gateway.deliver(sms("TELKOMSEL", "Gangguan jaringan di Maros sedang diperbaiki."))
    [result] = poll(inbox, connector(sqlite_gateway, ignore_operator_messages=False))
    complaint = inbox.complaint(result.ticket or "")
    assert result.outcome is Outcome.NEW and complaint is not None
    assert complaint.sender.handle == "TELKOMSEL" and complaint.sender.phone is None


def test_text_decoded_when_text_is_empty(sqlite_gateway: Gateway, inbox: Inbox) -> None:
    """A row without Text is read from TextDecoded."""
    sqlite_gateway.insert(SenderNumber="081234567860", Text="", TextDecoded=TEXT, MessageID=0)
    [result] = poll(inbox, connector(sqlite_gateway))
    assert bodies(inbox) == [TEXT]
    assert stored(inbox, result.external_id).flags["text_source"] == "TextDecoded"


def test_message_claimed_by_another_poller_is_not_cut_short(
    sqlite_gateway: Gateway, inbox: Inbox
) -> None:
    """A timed-out message whose rows were claimed meanwhile is left alone (no fragment)."""
    message = sms("081234567870", LONG, 3)
    sqlite_gateway.insert_part(message, 1)
    gammu = connector(sqlite_gateway, clock=Clock(NOW + timedelta(hours=1)))
    pages = gammu._pages  # claim the rows between reading them and the timeout check

    def pages_then_claim(since: date | None) -> Iterator[list[dict[str, Any]]]:
        yield from pages(since)
        with sqlite_gateway.engine.connect() as conn:
            conn.execute(sa.text("UPDATE inbox SET Processed = 'true'"))

    gammu._pages = pages_then_claim  # type: ignore[method-assign]
    assert poll(inbox, gammu) == []


def test_missing_schema_and_unreachable_database(tmp_path: Path) -> None:
    """No tables is fatal; an absent SQLite file or a refused connection is retryable."""
    empty = tmp_path / "empty.db"
    sa.create_engine(f"sqlite:///{empty}").connect().close()
    with pytest.raises(FatalError, match="no Gammu SMSD schema"):
        GammuConnector("sms", GammuOptions(url=f"sqlite:///{empty}")).check()
    with pytest.raises(RetryableError, match="no such file"):
        GammuConnector("sms", GammuOptions(url=f"sqlite:///{tmp_path / 'nope.db'}")).check()
    refused = GammuConnector(
        "sms", GammuOptions(url="mysql://gammu:rahasia-sms-77@127.0.0.1:1/smsd", connect_timeout=2)
    )
    with pytest.raises(RetryableError) as caught:
        list(refused.fetch(None))
    assert "rahasia-sms-77" not in str(caught.value) and "***" in str(caught.value)


def test_unknown_mariadb_database_is_fatal(mariadb_url: str) -> None:  # noqa: F811
    """A database name the server does not know is a fatal error, not a retry."""
    url = sa.make_url(mariadb_url).set(database="gammu_tidak_ada").render_as_string(False)
    with pytest.raises(FatalError, match="Unknown database"):
        GammuConnector("sms", GammuOptions(url=url)).check()


def test_password_never_shown(tmp_path: Path) -> None:
    """The URL's password is a secret: not in repr, scrubbed from CLI output and errors; a
    URL without one is no secret."""
    url = "mysql://gammu:rahasia-sms-77@127.0.0.1:1/smsd"
    gammu = GammuConnector.from_options("sms", {"url": url, "connect_timeout": 1})
    assert "rahasia-sms-77" not in repr(gammu) and "rahasia-sms-77" not in repr(gammu.options)
    assert "rahasia-sms-77" in gammu.secrets()
    sqlite = GammuConnector.from_options("sms", {"url": f"sqlite:///{tmp_path / 'smsd.db'}"})
    assert sqlite.secrets() == []  # no password, nothing to hide: logs name the file, not ***
    assert isinstance(gammu, GammuConnector) and "***" in gammu.shown_url
    config = tmp_path / "omnichannel.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "o.db"}"\n'
        f'[[connectors]]\nname = "sms"\ntype = "gammu"\nurl = "{url}"\nconnect_timeout = 1\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["--config", str(config), "poll", "--once"])
    assert result.exit_code == 1 and "sms: FAILED: Gammu database" in result.output
    assert "rahasia-sms-77" not in result.output


def test_configuration_errors_name_the_key() -> None:
    """Bad options are reported by key path, without echoing the URL."""
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "connectors": [
                    {"name": "sms", "type": "gammu", "url": "bukan url", "gateway_timezone": "WITA"}
                ]
            }
        )
    problems = caught.value.problems
    assert "connectors[0].url: not a SQLAlchemy database URL" in problems
    assert "connectors[0].gateway_timezone: unknown timezone 'WITA'" in problems
    with pytest.raises(ConfigError, match=r"connectors\[0\].url: missing"):
        parse_config({"connectors": [{"name": "sms", "type": "gammu"}]})


def test_mysql_url_uses_pymysql() -> None:
    """``mysql://`` and ``postgresql://`` get the drivers the project ships."""
    assert GammuConnector.from_options("a", {"url": "mysql://u@h/smsd"}).url.drivername == (  # type: ignore[attr-defined]
        "mysql+pymysql"
    )
    assert GammuConnector.from_options("a", {"url": "postgresql://u@h/smsd"}).url.drivername == (  # type: ignore[attr-defined]
        "postgresql+psycopg"
    )


# -- the shared contract -----------------------------------------------------------------------


def _payload(*rows: dict[str, Any]) -> bytes:
    return inbox_payload(list(rows), gateway="sms", schema=18, timezone="Asia/Makassar")


def _row(row_id: int, text: str, **extra: Any) -> dict[str, Any]:
    return {
        "ID": row_id,
        "SenderNumber": "081234567890",
        "Text": text.encode("utf-16-be").hex().upper(),
        "Coding": "Default_No_Compression",
        "UDH": "",
        "TextDecoded": text,
        "ReceivingDateTime": "2026-11-30 10:00:00",
        "MessageID": row_id,
        "SequencePosition": 1,
        "PartCount": 1,
        **extra,
    }


class TestGammuContract(PollingContract):
    """The shared connector contract, on recorded inbox payloads, and the polling contract on
    a Gammu SMSD database (SQLite, schema v18: rows as Gammu writes them, claimed on ack)."""

    connector_type = "gammu"
    ack_moves_source = True
    options: ClassVar[dict[str, Any]] = {"url": "mysql://gammu:rahasia-sms-77@127.0.0.1/smsd"}
    cases: ClassVar[list[DecodeCase]] = [
        DecodeCase(
            "single",
            payload=_payload(_row(1, "Jalan rusak di Maros.")),
            expect={"channel": "sms", "text": "Jalan rusak di Maros."},
            content_type=GAMMU_INBOX_TYPE,
        ),
        DecodeCase(
            "two-parts",
            payload=_payload(
                _row(3, "Jalan ", SequencePosition=1, PartCount=2),
                _row(4, "rusak", SequencePosition=2, PartCount=2, MessageID=3),
            ),
            expect={"text": "Jalan rusak", "flags": {"sms_parts": 2}},
            content_type=GAMMU_INBOX_TYPE,
        ),
        DecodeCase(
            "operator",
            payload=_payload(_row(5, "Promo kuota", SenderNumber="TELKOMSEL")),
            expect={"flags": {"operator_message": True, "ignore": True}},
            content_type=GAMMU_INBOX_TYPE,
            outcome=Outcome.IGNORED,
        ),
    ]
    poll_items: ClassVar[list[tuple[str, str, int]]] = [
        ("081234567001", "Lampu jalan di Jl. Poros Maros padam sejak Senin.", 1),
        ("+6281234567002", LONG, 2),
        ("0062812345670030", "Sampah menumpuk di pasar Bantimurung.", 1),
    ]

    def setup_source(self, tmp_path: Path) -> dict[str, Any]:
        self.file = tmp_path / "smsd.db"
        self.gateway = Gateway(f"sqlite:///{self.file}", "sqlite", 18).create()
        return {"url": self.gateway.url, "gateway_timezone": "Asia/Makassar"}

    def deliver(self, item: Any) -> None:
        sender, text, parts = item
        self.gateway.deliver(sms(sender, text, parts))

    def break_source(self, how: str) -> bool:
        if how != "unavailable":
            return False  # SQLite has no credentials, no throttling, no server
        self.gateway.dispose()
        self.file.unlink()  # the gateway's database file is gone (a disk unmounted)
        return True

    def teardown_source(self) -> None:
        self.gateway.dispose()
