"""Files: ``.eml`` and ``.json`` payload files from a drop folder or the ``ingest`` command.

- **Channel**: ``email`` for ``.eml`` (RFC 822); whatever the document says for ``.json``
  (an :class:`~omnichannel.schema.InboundMessage` in JSON).
- **Mode**: poll (the drop folder) and ``omnichannel ingest --connector NAME FILE...``.
- **Configuration**: ``path`` (drop folder, default ``./inbox``), ``pattern`` (glob, default
  ``*``), ``processed_folder`` (sub-folder that filed files are moved to; empty keeps them),
  ``batch_size``. No secrets.
- **Cursor**: none; the folder's content is the state, and moving filed files empties it.
- **Dedupe key**: JSON: the document's ``external_id``. E-mail: ``Message-ID`` together with a
  hash of the content (a sender may reuse a Message-ID for another mail), the content hash
  alone without a Message-ID. Anything unreadable: the content hash, and it is quarantined.
- **Webhook verification**: none; files are trusted local input.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from normalizer.email import decode_email, email_external_id
from normalizer.jsondoc import decode_json_document, json_external_id
from omnichannel.connector import Batch, PollingConnector
from omnichannel.errors import DecodeError, FatalError
from omnichannel.schema import InboundMessage, RawMessage

__all__ = ["FilesConnector", "FilesOptions"]

EMAIL_TYPE = "message/rfc822"
JSON_TYPE = "application/json"


class FilesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = "./inbox"
    pattern: str = "*"
    processed_folder: str = "processed"
    batch_size: int = Field(default=200, ge=1, le=10_000)
    poll_interval: float = Field(default=10, gt=0)
    """Seconds between looks at the folder (``omnichannel poll`` / ``run``)."""


def content_type_of(path: Path, payload: bytes) -> str:
    """By extension, else by a look at the first bytes."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return JSON_TYPE
    if suffix in (".eml", ".msg", ".mbox", ".txt"):
        return EMAIL_TYPE
    return JSON_TYPE if payload.lstrip()[:1] in (b"{", b"[") else EMAIL_TYPE


class FilesConnector(PollingConnector[FilesOptions]):
    """``.eml`` and ``.json`` files."""

    type = "files"
    channel = "email"
    Options = FilesOptions

    def raw_from_file(self, path: Path, payload: bytes, received_at: datetime) -> RawMessage:
        content_type = content_type_of(path, payload)
        if content_type == JSON_TYPE:
            external_id = json_external_id(payload)
        else:
            external_id = email_external_id(payload)
        return RawMessage(
            connector=self.name,
            external_id=external_id,
            received_at=received_at,
            content_type=content_type,
            payload=payload,
            meta={"file": path.name},
        )

    def decode(self, raw: RawMessage) -> InboundMessage:
        if raw.content_type == JSON_TYPE:
            return decode_json_document(
                raw.payload,
                connector=self.name,
                received_at=raw.received_at,
                timezone=self.context.timezone,
            )
        if raw.content_type == EMAIL_TYPE:
            return decode_email(
                raw.payload,
                connector=self.name,
                external_id=raw.external_id,
                received_at=raw.received_at,
            )
        raise DecodeError(f"files connector cannot decode content type {raw.content_type!r}")

    def check(self) -> None:
        folder = self._folder()
        if not folder.is_dir():
            raise FatalError(f"drop folder {folder} does not exist")
        if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
            raise FatalError(f"drop folder {folder} is not readable and writable")

    # -- drop folder ---------------------------------------------------------------------------

    def _folder(self) -> Path:
        return Path(self.options.path).expanduser()

    def _pending(self) -> list[Path]:
        folder = self._folder()
        self.check()  # a missing drop folder is a mistake to report, not an empty one
        return sorted(
            p
            for p in folder.glob(self.options.pattern)
            if p.is_file() and not p.name.startswith(".")
        )

    def fetch(self, cursor: Any, *, since: date | None = None) -> Iterator[Batch]:
        batch: list[RawMessage] = []
        for path in self._pending():
            try:
                payload = path.read_bytes()
                mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            except OSError:
                continue  # vanished or unreadable now; it stays in the folder for next time
            raw = self.raw_from_file(path, payload, mtime)
            raw.meta["path"] = str(path)
            batch.append(raw)
            if len(batch) >= self.options.batch_size:
                yield Batch(batch)
                batch = []
        if batch:
            yield Batch(batch)

    def ack(self, messages: Sequence[RawMessage]) -> None:
        """Move filed files to the processed folder (kept in place when it is empty)."""
        if not self.options.processed_folder:
            return
        target = self._folder() / self.options.processed_folder
        target.mkdir(parents=True, exist_ok=True)
        for raw in messages:
            source = Path(str(raw.meta.get("path", "")))
            if source.is_file():
                os.replace(source, _free_name(target / source.name))


def _free_name(path: Path) -> Path:
    candidate, counter = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}.{counter}{path.suffix}")
        counter += 1
    return candidate
