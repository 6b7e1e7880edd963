"""Background attachment downloads: stored with sha256, retried with backoff, refused, failed."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.files import FilesConnector
from omnichannel import Inbox, RetryableError, SkippableError
from omnichannel.connector import Media
from omnichannel.store.tables import attachments
from tests.helpers import json_doc, raw_json

NOW = datetime.now(UTC)
PHOTO = b"\xff\xd8\xff\xe0 pretend jpeg"


class ScriptedMedia(FilesConnector):
    """Files connector whose downloads follow a script of results per URL."""

    script: dict[str, list[object]] = {}  # noqa: RUF012

    def fetch_media(self, url: str, *, max_bytes: int) -> Media:
        step = self.script[url].pop(0)
        if isinstance(step, Exception):
            raise step
        assert isinstance(step, bytes)
        return Media(step, "image/jpeg")


@pytest.fixture
def media_inbox(inbox: Inbox) -> Inbox:
    inbox.add_connector(ScriptedMedia("files"))
    return inbox


def rows(inbox: Inbox) -> list[sa.Row]:  # type: ignore[type-arg]
    with inbox.store.transaction() as conn:
        return list(conn.execute(sa.select(attachments).order_by(attachments.c.id)))


def test_pending_attachment_is_downloaded_after_a_retry(media_inbox: Inbox) -> None:
    """A URL attachment is filed `pending`; a failed try backs off; the next one stores it."""
    ScriptedMedia.script = {"https://media/1": [RetryableError("HTTP 503"), PHOTO]}
    media_inbox.receive(
        raw_json("m1", attachments=[{"url": "https://media/1", "content_type": "image/jpeg"}])
    )
    assert [r.status for r in rows(media_inbox)] == ["pending"]
    assert [r.status for r in media_inbox.fetch_media()] == ["pending"]
    assert media_inbox.fetch_media() == []  # not due yet: backing off
    media_inbox._clock = lambda: NOW + timedelta(days=1)
    assert [r.status for r in media_inbox.fetch_media()] == ["stored"]
    [row] = rows(media_inbox)
    assert row.content == PHOTO and row.sha256 == hashlib.sha256(PHOTO).hexdigest()
    assert row.attempts == 2 and row.last_error is None
    complaint = media_inbox.complaints()[0]
    assert complaint.attachments[0].sha256 == row.sha256


def test_refused_and_exhausted_downloads(media_inbox: Inbox) -> None:
    """A refused URL is `refused` at once; a URL failing every time ends `failed`."""
    ScriptedMedia.script = {
        "https://evil/x": [SkippableError("host not allowed")],
        "https://media/2": [RetryableError("timeout")] * 3,
    }
    media_inbox.receive(
        raw_json(
            "m2",
            attachments=[
                {"url": "https://evil/x", "content_type": "image/png"},
                {"url": "https://media/2", "content_type": "image/png"},
            ],
        )
    )
    clock = NOW
    for _ in range(3):
        clock += timedelta(days=1)
        media_inbox._clock = lambda at=clock: at  # type: ignore[misc]
        media_inbox.fetch_media(max_attempts=3)
    statuses = [(r.status, r.last_error) for r in rows(media_inbox)]
    assert statuses == [("refused", "host not allowed"), ("failed", "timeout")]


def test_declared_sha256_mismatch_is_retried_then_failed(media_inbox: Inbox) -> None:
    """When the provider declared a sha256, a download that does not match is not stored."""
    ScriptedMedia.script = {"https://media/3": [b"other bytes", b"other bytes"]}
    media_inbox.receive(
        raw_json(
            "m3",
            attachments=[
                {
                    "url": "https://media/3",
                    "content_type": "image/jpeg",
                    "sha256": hashlib.sha256(PHOTO).hexdigest(),
                }
            ],
        )
    )
    media_inbox._clock = lambda: NOW + timedelta(days=1)
    media_inbox.fetch_media(max_attempts=2)
    media_inbox._clock = lambda: NOW + timedelta(days=2)
    [result] = media_inbox.fetch_media(max_attempts=2)
    assert result.status == "failed" and "sha256" in (result.error or "")
    assert rows(media_inbox)[0].content is None


def test_worker_downloads_until_stopped(media_inbox: Inbox) -> None:
    """The background worker stores pending attachments as they come, until told to stop."""
    import threading

    from omnichannel.media import run_media_worker

    ScriptedMedia.script = {"https://media/w": [PHOTO]}
    media_inbox.receive(
        raw_json("w1", attachments=[{"url": "https://media/w", "content_type": "image/jpeg"}])
    )
    stop = threading.Event()
    worker = threading.Thread(
        target=run_media_worker, args=(media_inbox.fetch_media, stop), kwargs={"interval": 0.05}
    )
    worker.start()
    try:
        for _ in range(600):
            if rows(media_inbox)[0].status == "stored":
                break
            stop.wait(0.05)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive() and rows(media_inbox)[0].content == PHOTO


def test_media_fetch_command(tmp_path: Path) -> None:
    """`omnichannel media fetch` runs one round and prints one JSON line per attachment."""
    import json

    from click.testing import CliRunner

    from omnichannel.cli import main

    config = tmp_path / "omnichannel.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "x.db"}"\n', encoding="utf-8")
    doc = tmp_path / "a.json"
    doc.write_bytes(
        json_doc(
            "a",
            attachments=[{"url": "https://example.invalid/x.jpg", "content_type": "image/jpeg"}],
        )
    )
    runner = CliRunner()
    assert runner.invoke(main, ["--config", str(config), "ingest", str(doc)]).exit_code == 0
    result = runner.invoke(main, ["--config", str(config), "media", "fetch"])
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0
    assert lines == [
        {
            "attachment_id": 1,
            "status": "refused",
            "error": "connector 'files' cannot download attachments",
        }
    ]
