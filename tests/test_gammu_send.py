"""GammuConnector.send: SMS written to the outbox of real Gammu SMSD databases (SQLite, MariaDB,
PostgreSQL; schema v17 and v18), read back the way Gammu SMSD reads them."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from connectors.gammu import MAX_PARTS, GammuConnector, GammuOptions, sms_parts
from omnichannel.connector import ConnectorContext
from omnichannel.errors import FatalError, RetryableError, Undeliverable
from omnichannel.outbound import Outbound, Sender
from tests.gammu_schema import (  # noqa: F401 - fixtures
    Gateway,
    gateway,
    mariadb_url,
    open_gateway,
    postgres_gateway_url,
)

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
LOCAL_NOW = datetime(2026, 11, 30, 11, 0)  # NOW in WITA, the gateway's time zone
TO = "+6281234567890"
FULLWIDTH = "+" + "".join(chr(0xFF10 + int(d)) for d in "62812345678")  # not ASCII digits
ACK = (
    "Terima kasih, laporan Anda sudah kami terima dengan nomor tiket LPR-2026-000123. "
    "Kami akan menindaklanjutinya dalam 3 hari kerja."
)
SENTENCE = (
    "Yth. Bapak/Ibu, laporan Anda tentang lampu penerangan jalan yang mati di Jalan Poros "
    "Maros sudah diteruskan ke Dinas Perhubungan. Petugas akan memeriksa lokasi minggu ini. "
)
# 152 septets, then the euro sign (2 septets) which does not fit part 1's 153 any more
LONG_GSM = SENTENCE[:152] + "€ biaya [tidak ada]; {info} ~ ^ | \\ " + SENTENCE
# Indonesian, Arabic and emoji; the first emoji's surrogate pair would straddle units 67/68
LONG_UCS2 = (
    "Laporan Anda sudah diterima. Terima kasih atas partisipasi Anda ya" + "🙏"
    " شكرا جزيلا على بلاغكم، سنتابع الموضوع قريبا. Salam hangat dari Pemkab Maros 😊🇮🇩"
)


class Clock:
    def __call__(self) -> datetime:
        return NOW


def make_connector(gateway: Gateway, **options: Any) -> GammuConnector:  # noqa: F811
    options.setdefault("gateway_timezone", "Asia/Makassar")
    return GammuConnector(
        "sms", GammuOptions(url=gateway.url, **options), ConnectorContext(), clock=Clock()
    )


@pytest.fixture
def gammu(gateway: Gateway) -> Iterator[GammuConnector]:  # noqa: F811
    """The connector on the parametrized gateway, closed afterwards."""
    connector = make_connector(gateway)
    yield connector
    connector.close()


@pytest.fixture
def sqlite_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    """One SQLite gateway (schema v18), for the tests that need no matrix."""
    db = open_gateway(request, "sqlite-18", tmp_path)
    yield db
    db.dispose()


def outbound(text: str = ACK, delivery_id: str = "dlv-0001", to: str = TO) -> Outbound:
    return Outbound(
        delivery_id=delivery_id, kind="acknowledgement", to=to, text=text, ticket="LPR-2026-000123"
    )


# -- reading the gateway back --------------------------------------------------------------------


def rows(gateway: Gateway, table: str, order: str = "ID") -> list[dict[str, Any]]:  # noqa: F811
    """Every row of ``table`` (all columns), in ``order``."""
    source = sa.table(table, sa.column(order))
    query: sa.Select[Any] = (
        sa.select(sa.literal_column("*")).select_from(source).order_by(source.c[order])
    )
    with gateway.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def is_true(value: Any) -> bool:
    return value in (True, "true")


def local_time(value: Any) -> datetime:
    """A gateway time column as a naive datetime (SQLite stores text)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=None)


def message(gateway: Gateway, row_id: int) -> list[dict[str, Any]]:  # noqa: F811
    """The parts of outbox message ``row_id``: its outbox row, then its outbox_multipart rows."""
    [first] = [r for r in rows(gateway, "outbox") if r["ID"] == row_id]
    more = [r for r in rows(gateway, "outbox_multipart", "SequencePosition") if r["ID"] == row_id]
    return [first, *more]


def gammu_would_send(gateway: Gateway, now: datetime = LOCAL_NOW) -> dict[int, list[str]]:  # noqa: F811
    """What Gammu SMSD would take from the outbox at ``now`` (gateway-local), read as SMSD reads
    it: rows whose SendingDateTime and SendingTimeOut have passed; of a MultiPart one, the
    outbox_multipart rows 2, 3, … up to the first one missing. ``{ID: [UDH of each part]}``."""
    found: dict[int, list[str]] = {}
    multipart = rows(gateway, "outbox_multipart", "SequencePosition")
    for row in rows(gateway, "outbox"):
        if local_time(row["SendingDateTime"]) > now or local_time(row["SendingTimeOut"]) > now:
            continue
        udhs = [row["UDH"] or ""]
        sequence = 2
        while is_true(row["MultiPart"]):
            part = [
                r for r in multipart if r["ID"] == row["ID"] and r["SequencePosition"] == sequence
            ]
            if not part:
                break
            udhs.append(part[0]["UDH"])
            sequence += 1
        found[int(row["ID"])] = udhs
    return found


def complete(udhs: list[str]) -> bool:
    """Whether the parts read are the whole message their UDHs announce."""
    if udhs == [""]:
        return True
    total = int(udhs[0][8:10], 16)
    return [int(u[10:12], 16) for u in udhs] == list(range(1, total + 1))


def septets(text: str) -> int:
    return sum(2 if c in "€[]{}^~\\|\f" else 1 for c in text)


def move_to_sentitems(gateway: Gateway, row_id: int) -> None:  # noqa: F811
    """What Gammu SMSD does once it sent a message: each part to sentitems, then the outbox
    and outbox_multipart rows deleted."""
    parts = message(gateway, row_id)
    sent = [
        {
            "ID": row_id,
            "SequencePosition": sequence,
            "CreatorID": parts[0]["CreatorID"],
            "DestinationNumber": parts[0]["DestinationNumber"],
            "Text": part["Text"] or "",
            "TextDecoded": part["TextDecoded"] or "",
            "UDH": part["UDH"] or "",
            "Coding": part["Coding"],
            "SenderID": "modem1",
            "Status": "SendingOKNoReport",
        }
        for sequence, part in enumerate(parts, start=1)
    ]
    table = sa.table("sentitems", *(sa.column(k) for k in sent[0]))
    with gateway.engine.connect() as conn:
        conn.execute(sa.insert(table), sent)
        for name in ("outbox", "outbox_multipart"):
            source = sa.table(name, sa.column("ID"))
            conn.execute(sa.delete(source).where(source.c["ID"] == row_id))


# -- the matrix: every gateway backend, schema v17 and v18 ---------------------------------------


def test_short_acknowledgement_is_one_outbox_row(gateway: Gateway, gammu: GammuConnector) -> None:  # noqa: F811
    """A short Indonesian acknowledgement is one outbox row: the number with its +, the text,
    the delivery id as CreatorID, GSM-7, class -1, default delivery report, no SenderID, no UDH,
    released at the gateway's local time; nothing in outbox_multipart."""
    assert isinstance(gammu, Sender)
    returned = gammu.send(outbound())
    [row] = rows(gateway, "outbox")
    assert returned == str(row["ID"])
    assert row["DestinationNumber"] == TO and row["TextDecoded"] == ACK
    assert row["CreatorID"] == "dlv-0001" and row["Coding"] == "Default_No_Compression"
    assert row["Class"] == -1 and row["DeliveryReport"] == "default" and row["SenderID"] is None
    assert not is_true(row["MultiPart"]) and not row["UDH"]
    assert bytes.fromhex(row["Text"]).decode("utf-16-be") == ACK  # as gammu-smsd-inject writes
    assert local_time(row["SendingDateTime"]) == LOCAL_NOW
    assert local_time(row["InsertIntoDB"]) == LOCAL_NOW
    assert rows(gateway, "outbox_multipart") == []
    assert gammu_would_send(gateway) == {row["ID"]: [""]}


def test_sender_id_names_the_sending_phone(gateway: Gateway) -> None:  # noqa: F811
    """With ``sender_id``, the message is for that Gammu phone only (SenderID)."""
    gammu = make_connector(gateway, sender_id="modem-maros")
    try:
        gammu.send(outbound())
    finally:
        gammu.close()
    [row] = rows(gateway, "outbox")
    assert row["SenderID"] == "modem-maros"


def test_long_text_is_a_multipart_message(gateway: Gateway, gammu: GammuConnector) -> None:  # noqa: F811
    """A long GSM-7 text: part 1 in outbox (MultiPart), parts 2..n in outbox_multipart under the
    same ID; the TextDecoded parts join to the text, each at most 153 septets, the euro sign's
    escape sequence not cut; the UDHs share one reference and count 1..n of n."""
    returned = gammu.send(outbound(LONG_GSM))
    [row] = rows(gateway, "outbox")
    assert returned == str(row["ID"]) and is_true(row["MultiPart"])
    parts = message(gateway, row["ID"])
    assert len(parts) == 3
    assert [p.get("SequencePosition", 1) for p in parts] == [1, 2, 3]
    assert "".join(p["TextDecoded"] for p in parts) == LONG_GSM
    assert all(septets(p["TextDecoded"]) <= 153 for p in parts)
    assert parts[0]["TextDecoded"] == SENTENCE[:152] and parts[1]["TextDecoded"].startswith("€")
    assert {p["Coding"] for p in parts} == {"Default_No_Compression"}
    assert {p["Class"] for p in parts} == {-1}
    assert all(bytes.fromhex(p["Text"]).decode("utf-16-be") == p["TextDecoded"] for p in parts)
    udhs = [p["UDH"] for p in parts]
    assert all(u.startswith("050003") and len(u) == 12 for u in udhs)
    assert len({u[6:8] for u in udhs}) == 1
    assert [u[8:] for u in udhs] == ["0301", "0302", "0303"]
    assert gammu_would_send(gateway) == {row["ID"]: udhs}


def test_non_gsm_text_is_unicode_in_67_unit_parts(gateway: Gateway, gammu: GammuConnector) -> None:  # noqa: F811
    """Arabic and emoji make the message UCS-2: parts of at most 67 UTF-16 units, no surrogate
    pair cut (the 🙏 that would straddle units 67/68 opens part 2), stored and read back whole."""
    gammu.send(outbound(LONG_UCS2))
    [row] = rows(gateway, "outbox")
    parts = message(gateway, row["ID"])
    texts = [p["TextDecoded"] for p in parts]
    assert "".join(texts) == LONG_UCS2
    assert {p["Coding"] for p in parts} == {"Unicode_No_Compression"}
    units = [len(t.encode("utf-16-be")) // 2 for t in texts]
    assert all(u <= 67 for u in units) and units[0] == 66 and texts[1].startswith("🙏")
    for text in texts:
        text.encode("utf-8")  # a lone surrogate would raise here
    assert [p["UDH"][8:] for p in parts] == [f"{len(parts):02X}{i:02X}" for i in (1, 2, 3)]


def test_same_delivery_twice_is_one_message(gateway: Gateway, gammu: GammuConnector) -> None:  # noqa: F811
    """The same delivery id again (a retry after a crash, even from a new connector) writes
    nothing and answers the first ID, while the message waits in outbox and after Gammu moved
    it to sentitems."""
    first = gammu.send(outbound(LONG_GSM))
    again = make_connector(gateway)
    try:
        assert again.send(outbound(LONG_GSM)) == first
        assert len(rows(gateway, "outbox")) == 1 and len(rows(gateway, "outbox_multipart")) == 2
        assert first is not None
        move_to_sentitems(gateway, int(first))
        assert again.send(outbound(LONG_GSM)) == first
        assert rows(gateway, "outbox") == [] and rows(gateway, "outbox_multipart") == []
        other = again.send(outbound(delivery_id="dlv-0002"))
        assert other != first and len(rows(gateway, "outbox")) == 1
    finally:
        again.close()


def test_gammu_sees_a_multipart_message_only_whole(gateway: Gateway, gammu: GammuConnector) -> None:  # noqa: F811
    """After every statement send runs, whatever Gammu SMSD would send is a whole message: on
    MyISAM, where each statement shows at once, the outbox row is there but held back
    (SendingDateTime ahead) until the last part is written."""
    seen: list[tuple[int, dict[int, list[str]]]] = []

    def observe(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            seen.append((len(rows(gateway, "outbox")), gammu_would_send(gateway)))

    event.listen(gammu._engine_for_use(), "after_cursor_execute", observe)
    row_id = int(gammu.send(outbound(LONG_GSM)) or 0)
    assert len(seen) == 3  # outbox row, outbox_multipart rows, release
    for _count, view in seen:
        assert all(complete(udhs) for udhs in view.values()), view
    assert list(gammu_would_send(gateway)) == [row_id]
    assert complete(gammu_would_send(gateway)[row_id])
    if gateway.backend == "mariadb":  # no transaction: the held row was visible, not sendable
        assert seen[0] == (1, {}) and seen[1] == (1, {})


def test_crash_before_release_leaves_nothing_to_send(
    gateway: Gateway,  # noqa: F811
    gammu: GammuConnector,
) -> None:
    """A crash between writing the parts and releasing them leaves nothing Gammu would send (a
    held row on MyISAM, nothing where the transaction rolls back); the retry writes the
    message whole, once, and no stray part remains."""

    class Crash(Exception):
        pass

    def crash(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            raise Crash

    engine = gammu._engine_for_use()
    event.listen(engine, "before_cursor_execute", crash)
    with pytest.raises(Crash):
        gammu.send(outbound(LONG_GSM))
    event.remove(engine, "before_cursor_execute", crash)
    assert gammu_would_send(gateway) == {}
    assert len(rows(gateway, "outbox")) == (1 if gateway.backend == "mariadb" else 0)
    row_id = int(gammu.send(outbound(LONG_GSM)) or 0)
    [row] = rows(gateway, "outbox")
    assert row["ID"] == row_id and local_time(row["SendingDateTime"]) == LOCAL_NOW
    assert {r["ID"] for r in rows(gateway, "outbox_multipart")} == {row_id}
    assert "".join(p["TextDecoded"] for p in message(gateway, row_id)) == LONG_GSM
    assert list(gammu_would_send(gateway)) == [row_id]


# -- one backend ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "to",
    [
        "081234567890",
        "+62 812 3456 7890",
        "+6281234",
        "+62812345678901234",
        "+62812abc90",
        "",
        "warga@example.id",
        "whatsapp:+6281234567890",
        FULLWIDTH,
    ],
)
def test_bad_destination_is_undeliverable(sqlite_gateway: Gateway, to: str) -> None:
    """A destination that is not + and 8 to 15 ASCII digits is refused for good, unwritten."""
    gammu = make_connector(sqlite_gateway)
    try:
        with pytest.raises(Undeliverable) as caught:
            gammu.send(outbound(to=to))
    finally:
        gammu.close()
    assert rows(sqlite_gateway, "outbox") == []
    assert not to or to not in str(caught.value)


def test_unreachable_gateway_is_retryable(tmp_path: Path) -> None:
    """A refused connection (a closed port) and an absent SQLite file are retryable; the
    message shows neither the password nor the number."""
    refused = GammuConnector(
        "sms", GammuOptions(url="mysql://gammu:rahasia-sms-77@127.0.0.1:1/smsd", connect_timeout=2)
    )
    with pytest.raises(RetryableError) as caught:
        refused.send(outbound())
    refused.close()
    message = str(caught.value)
    assert "unreachable" in message and "rahasia-sms-77" not in message and TO not in message
    missing = GammuConnector("sms", GammuOptions(url=f"sqlite:///{tmp_path / 'nope.db'}"))
    with pytest.raises(RetryableError, match="no such file"):
        missing.send(outbound())
    assert not (tmp_path / "nope.db").exists()


def test_locked_gateway_is_retryable_without_parameters(sqlite_gateway: Gateway) -> None:
    """Gammu holding the SQLite write lock past the timeout is a retryable error whose message
    is the driver's, without the statement, its parameters or the number."""
    database = sa.make_url(sqlite_gateway.url).database
    assert database is not None
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    gammu = make_connector(sqlite_gateway, connect_timeout=0.2)
    try:
        with pytest.raises(RetryableError, match="database is locked") as caught:
            gammu.send(outbound())
    finally:
        gammu.close()
        holder.execute("ROLLBACK")
        holder.close()
    message = str(caught.value)
    assert TO not in message and TO[1:] not in message and "INSERT" not in message.upper()
    assert "dlv-0001" not in message and "[SQL" not in message


def test_gateway_without_outbox_is_fatal(sqlite_gateway: Gateway) -> None:
    """A gateway database without Gammu's outbox table is a fatal error naming the problem."""
    sqlite_gateway.execute_script("DROP TABLE outbox;")
    gammu = make_connector(sqlite_gateway)
    try:
        with pytest.raises(FatalError, match="no such table: outbox") as caught:
            gammu.send(outbound())
    finally:
        gammu.close()
    assert TO not in str(caught.value)


def test_pending_message_to_the_same_number_keeps_its_reference(sqlite_gateway: Gateway) -> None:
    """Two multipart messages waiting for the same phone get different UDH references, even
    when their delivery ids would give the same one."""
    by_reference: dict[int, str] = {}
    for n in range(1000):  # two delivery ids whose hash starts with the same byte
        second = f"dlv-{n}"
        reference = hashlib.sha256(second.encode()).digest()[0]
        if reference in by_reference:
            break
        by_reference[reference] = second
    first = by_reference[reference]
    gammu = make_connector(sqlite_gateway)
    try:
        gammu.send(outbound(LONG_GSM, delivery_id=first))
        gammu.send(outbound(LONG_GSM, delivery_id=second))
    finally:
        gammu.close()
    udhs = [row["UDH"] for row in rows(sqlite_gateway, "outbox")]
    assert udhs[0][6:8] == f"{reference:02X}" and udhs[1][6:8] != udhs[0][6:8]


# -- splitting, without a database ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "coding", "lengths"),
    [
        ("a" * 160, "Default_No_Compression", [160]),
        ("a" * 161, "Default_No_Compression", [153, 8]),
        ("a" * 158 + "€", "Default_No_Compression", [159]),  # 160 septets: one SMS
        ("a" * 152 + "€" + "a" * 10, "Default_No_Compression", [152, 11]),  # € opens part 2
        ("Çà\n\r§¿ÆΔ_" * 10, "Default_No_Compression", [90]),
        ("ç", "Unicode_No_Compression", [1]),  # not in the default alphabet (Ç is)
        ("ش" * 70, "Unicode_No_Compression", [70]),
        ("ش" * 71, "Unicode_No_Compression", [67, 4]),
        ("😊" * 35, "Unicode_No_Compression", [70]),  # 70 units: one SMS
        ("😊" * 36, "Unicode_No_Compression", [66, 6]),  # 33 pairs fit in 67 units, not 34
    ],
    ids=[
        "gsm160",
        "gsm161",
        "euro160",
        "euro-cut",
        "alphabet",
        "c-cedilla",
        "ucs70",
        "ucs71",
        "emoji70",
        "emoji-cut",
    ],
)
def test_sms_parts(text: str, coding: str, lengths: list[int]) -> None:
    """Coding and part sizes (in UTF-16 units here) at the one-SMS and part boundaries."""
    found_coding, parts = sms_parts(text)
    assert found_coding == coding and "".join(parts) == text
    assert [len(p.encode("utf-16-be")) // 2 for p in parts] == lengths


def test_sms_parts_refuses_empty_and_overlong_text() -> None:
    """An empty text, or one needing more parts than Gammu SMSD sends, is Undeliverable."""
    assert len(sms_parts("a" * 153 * MAX_PARTS)[1]) == MAX_PARTS
    with pytest.raises(Undeliverable, match="empty"):
        sms_parts("")
    with pytest.raises(Undeliverable, match=f"at most {MAX_PARTS}"):
        sms_parts("a" * (153 * MAX_PARTS + 1))
