"""Small builders shared by the tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from omnichannel.schema import RawMessage

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


def json_doc(
    external_id: str, text: str = "Jalan menuju kantor desa rusak parah.", **fields: Any
) -> bytes:
    """A `.json` InboundMessage document."""
    doc: dict[str, Any] = {"channel": fields.pop("channel", "sms"), "external_id": external_id}
    if text is not None:
        doc["text"] = text
    doc.update(fields)
    return json.dumps(doc).encode()


def raw_json(
    external_id: str,
    text: str = "Jalan menuju kantor desa rusak parah.",
    connector: str = "files",
    received_at: datetime = T0,
    **fields: Any,
) -> RawMessage:
    """A raw message carrying a JSON document, as the files connector makes it."""
    return RawMessage(
        connector=connector,
        external_id=external_id,
        received_at=received_at,
        content_type="application/json",
        payload=json_doc(external_id, text, **fields),
    )


def run_threads(
    target: Callable[..., object], arguments: Iterable[tuple[Any, ...]], *, timeout: float = 60
) -> list[threading.Thread]:
    """Run ``target`` in one thread per argument tuple, all at once, and join them; the threads
    are returned so that a test can check none is still alive."""
    threads = [threading.Thread(target=target, args=args) for args in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return threads


def count(inbox: Any, table: sa.Table) -> int:
    """Rows of ``table`` in ``inbox``'s store."""
    with inbox.store.transaction() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
