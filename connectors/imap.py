"""IMAP: a mailbox that citizens write to, read with ``imapclient``.

- **Channel**: ``email``.
- **Mode**: poll, with IMAP IDLE between polls when the server has it (re-issued every
  ``idle_timeout`` seconds, well inside the 29 minutes servers allow), a catch-up search after
  every wake-up or reconnect; plain interval polling otherwise.
- **Configuration**: ``host``, ``port`` (default 993 with ``ssl``, else 143), ``ssl`` (implicit
  TLS, default on), ``starttls``, ``username``, ``password`` (**secret**), ``folder``,
  ``processed_folder`` (move there after commit) or ``mark_seen``, ``oversized_folder``, ``idle``,
  ``idle_timeout``, ``poll_interval``, ``batch_size``, ``max_message_bytes`` (default 10 MB),
  ``timeout``, ``tls_verify``, ``ca_file``, ``retry_attempts``, ``retry_wait``.
- **Cursor**: ``{folder, uidvalidity, uid}`` — the last UID whose batch is committed; kept by the
  core in the same transaction as the messages. A changed UIDVALIDITY resets it (with a warning):
  the folder is scanned again and content keys absorb the repeats.
- **Dedupe key**: ``Message-ID`` together with a hash of the raw bytes (the hash alone without a
  Message-ID), so a reused Message-ID with other content is not taken for a redelivery. Never
  the UID, which means nothing after a UIDVALIDITY change.
- **Acknowledgement**: after the commit only: ``\\Seen`` or ``UID MOVE`` (fallback COPY +
  ``\\Deleted`` + ``UID EXPUNGE``). Messages at or below the cursor still waiting for their
  acknowledgement (a crash between commit and flag) are acknowledged on the next connect.
- **Oversized mail** (``RFC822.SIZE`` over ``max_message_bytes``) is not downloaded: its headers
  are, and become a complaint that says so, so the team knows to look in the mailbox.
- **Errors**: login and TLS-verification failures are fatal for this connector; network errors
  are retried with exponential backoff (tenacity), reconnecting and resuming after the cursor.
- **Provider docs**: RFC 9051 (IMAP4rev2), RFC 2177 (IDLE), RFC 6851 (MOVE), RFC 4315 (UIDPLUS).
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, LoginError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from normalizer.email import decode_email, email_external_id
from omnichannel.connector import Batch, PollingConnector
from omnichannel.errors import FatalError, RetryableError
from omnichannel.schema import InboundMessage, RawMessage

__all__ = ["ImapConnector", "ImapOptions"]

log = logging.getLogger("omnichannel.connectors.imap")

EMAIL_TYPE = "message/rfc822"
HEADERS_TYPE = "text/rfc822-headers"
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # sockets, timeouts, refused connections, TLS errors below verification
    imaplib.IMAP4.abort,
    IMAPClientAbortError,
    EOFError,
)
_QUIET_ERRORS: tuple[type[BaseException], ...] = (*NETWORK_ERRORS, imaplib.IMAP4.error)
T = TypeVar("T")


class ImapOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    ssl: bool = True
    starttls: bool = False
    username: str
    password: SecretStr
    folder: str = "INBOX"
    processed_folder: str | None = None
    mark_seen: bool = True
    oversized_folder: str | None = None
    idle: bool = True
    idle_timeout: float = Field(default=300, gt=0, le=1740)
    poll_interval: float = Field(default=60, gt=0)
    batch_size: int = Field(default=100, ge=1, le=5000)
    max_message_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    timeout: float = Field(default=60, gt=0)
    tls_verify: bool = True
    ca_file: str | None = None
    retry_attempts: int = Field(default=5, ge=1)
    retry_wait: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _one_tls_mode(self) -> ImapOptions:
        if self.ssl and self.starttls:
            raise ValueError("choose ssl (implicit TLS) or starttls, not both")
        return self


@dataclass
class _Position:
    folder: str
    uidvalidity: int
    uid: int

    def value(self) -> dict[str, Any]:
        return {"folder": self.folder, "uidvalidity": self.uidvalidity, "uid": self.uid}


class _UidValidityChanged(Exception):
    """The folder's UIDVALIDITY changed while we were reading it."""


class ImapConnector(PollingConnector[ImapOptions]):
    """One IMAP folder."""

    type = "imap"
    channel = "email"
    Options = ImapOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: IMAPClient | None = None
        self._uidvalidity: int | None = None

    # -- connection ----------------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.options.ca_file)
        if not self.options.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _open(self) -> IMAPClient:
        opts = self.options
        port = opts.port or (993 if opts.ssl else 143)
        context = self._tls_context() if (opts.ssl or opts.starttls) else None
        client = IMAPClient(
            opts.host, port=port, ssl=opts.ssl, ssl_context=context, timeout=opts.timeout
        )
        client.normalise_times = False
        try:
            if opts.starttls:
                client.starttls(context)
            client.login(opts.username, opts.password.get_secret_value())
        except LoginError:
            _quietly(client.shutdown)
            raise FatalError(f"IMAP login failed for {opts.username!r} at {opts.host}") from None
        except BaseException:
            _quietly(client.shutdown)
            raise
        return client

    def _session(self) -> IMAPClient:
        """The open connection with the folder selected (connecting if needed)."""
        if self._client is None:
            try:
                client = self._open()
            except ssl.SSLCertVerificationError as exc:
                raise FatalError(
                    f"TLS certificate of {self.options.host} rejected: {exc.verify_message}"
                ) from None
            try:
                selected = client.select_folder(self.options.folder)
            except imaplib.IMAP4.error as exc:
                _quietly(client.logout)
                raise FatalError(f"cannot open folder {self.options.folder!r}: {exc}") from None
            self._client = client
            self._uidvalidity = int(selected[b"UIDVALIDITY"])
        return self._client

    def _drop(self, _state: RetryCallState | None = None) -> None:
        client, self._client = self._client, None
        if client is not None:
            _quietly(client.shutdown)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            _quietly(client.logout)

    def _retrying(self) -> Retrying:
        return Retrying(
            stop=stop_after_attempt(self.options.retry_attempts),
            wait=wait_exponential(multiplier=self.options.retry_wait, max=60),
            retry=retry_if_exception_type(NETWORK_ERRORS),
            before_sleep=self._warn_and_drop,
            reraise=True,
        )

    def _warn_and_drop(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "imap %s: %s: reconnecting (attempt %d)",
            self.name,
            type(error).__name__,
            state.attempt_number,
        )
        self._drop()

    def _call(self, operation: Callable[[IMAPClient], T]) -> T:
        """Run ``operation`` on the session, reconnecting and retrying on network errors."""
        try:
            for attempt in self._retrying():
                with attempt:
                    return operation(self._session())
        except NETWORK_ERRORS as exc:
            self._drop()
            raise RetryableError(
                f"IMAP {self.options.host} unreachable: {type(exc).__name__}"
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def check(self) -> None:
        self._call(lambda client: client.noop())
        self.close()

    # -- fetching ------------------------------------------------------------------------------

    def fetch(self, cursor: Any, *, since: date | None = None) -> Iterator[Batch]:
        position = self._position(cursor)
        self._call(lambda client: self._acknowledge_committed(client, position.uid))
        uids = self._call(lambda client: self._search(client, position.uid, since))
        for start in range(0, len(uids), self.options.batch_size):
            chunk = uids[start : start + self.options.batch_size]
            raws = self._call(lambda client, chunk=chunk: self._download(client, chunk))  # type: ignore[misc]
            if self._uidvalidity != position.uidvalidity:
                raise RetryableError("UIDVALIDITY changed during the poll; will rescan")
            position.uid = max(position.uid, max(chunk))
            yield Batch(raws, position.value())

    def _position(self, cursor: Any) -> _Position:
        self._call(lambda client: client.noop())
        current = int(self._uidvalidity or 0)
        folder = self.options.folder
        if not isinstance(cursor, dict) or cursor.get("folder") != folder:
            return _Position(folder, current, 0)
        if cursor.get("uidvalidity") != current:
            log.warning(
                "imap %s: UIDVALIDITY of %s changed (%s -> %s): rescanning the folder; "
                "content keys absorb the repeats",
                self.name,
                folder,
                cursor.get("uidvalidity"),
                current,
            )
            return _Position(folder, current, 0)
        return _Position(folder, current, int(cursor.get("uid", 0)))

    def _search(self, client: IMAPClient, after_uid: int, since: date | None) -> list[int]:
        if since is not None:
            found = client.search(["SINCE", since])
        else:
            found = client.search(["UID", f"{after_uid + 1}:*"])
            found = [uid for uid in found if uid > after_uid]  # `n:*` always matches the last
        return sorted(int(uid) for uid in found)

    def _download(self, client: IMAPClient, uids: Sequence[int]) -> list[RawMessage]:
        """One FETCH for the bodies; mail over the size limit (found by a SEARCH) gets only
        its headers."""
        limit = self.options.max_message_bytes
        span = f"{min(uids)}:{max(uids)}"
        large = set(client.search(["UID", span, "LARGER", str(limit)])) & set(uids)
        small = [u for u in uids if u not in large]
        bodies = (
            client.fetch(small, ["RFC822.SIZE", "INTERNALDATE", "BODY.PEEK[]"]) if small else {}
        )
        heads = (
            client.fetch(sorted(large), ["RFC822.SIZE", "INTERNALDATE", "BODY.PEEK[HEADER]"])
            if large
            else {}
        )
        raws = []
        for uid in uids:
            if uid in bodies and b"BODY[]" in bodies[uid]:
                raws.append(self._raw(uid, bodies[uid][b"BODY[]"], bodies[uid], EMAIL_TYPE))
            elif uid in heads and b"BODY[HEADER]" in heads[uid]:
                raws.append(self._raw(uid, heads[uid][b"BODY[HEADER]"], heads[uid], HEADERS_TYPE))
        return raws

    def _raw(self, uid: int, payload: bytes, info: dict[bytes, Any], kind: str) -> RawMessage:
        size = int(info[b"RFC822.SIZE"])
        internal = info.get(b"INTERNALDATE")
        received = internal if isinstance(internal, datetime) and internal.tzinfo else None
        meta = {
            "folder": self.options.folder,
            "uidvalidity": self._uidvalidity,
            "uid": uid,
            "size": size,
        }
        external_id = email_external_id(payload)
        if kind == HEADERS_TYPE:
            meta["oversized"] = True
            external_id = f"oversized:{size}:{external_id}"[:512]
            log.warning(
                "imap %s: message UID %d is %d bytes, over max_message_bytes: headers "
                "only; it stays in the mailbox",
                self.name,
                uid,
                size,
            )
        return RawMessage(
            connector=self.name,
            external_id=external_id,
            received_at=(received or datetime.now(UTC)),
            content_type=kind,
            payload=payload,
            meta=meta,
        )

    # -- acknowledging -------------------------------------------------------------------------

    def ack(self, messages: Sequence[RawMessage]) -> None:
        """Flag or move what was committed; a failure here is repaired on the next connect."""
        mine = [m for m in messages if m.meta.get("uidvalidity") == self._uidvalidity]
        normal = [int(m.meta["uid"]) for m in mine if not m.meta.get("oversized")]
        oversized = [int(m.meta["uid"]) for m in mine if m.meta.get("oversized")]
        try:
            client = self._session()
            self._settle(client, normal, self.options.processed_folder)
            self._settle(
                client, oversized, self.options.oversized_folder or self.options.processed_folder
            )
        except NETWORK_ERRORS as exc:
            log.warning("imap %s: acknowledgement postponed (%s)", self.name, type(exc).__name__)
            self._drop()

    def _settle(self, client: IMAPClient, uids: list[int], folder: str | None) -> None:
        if not uids:
            return
        if folder is None:
            if self.options.mark_seen:
                client.add_flags(uids, [b"\\Seen"], silent=True)
            return
        if not client.folder_exists(folder):
            client.create_folder(folder)
        if client.has_capability("MOVE"):
            client.move(uids, folder)
            return
        client.copy(uids, folder)
        client.add_flags(uids, [b"\\Deleted"], silent=True)
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)
        else:
            client.expunge()

    def _acknowledge_committed(self, client: IMAPClient, up_to_uid: int) -> None:
        """Messages at or below the cursor are committed: finish their acknowledgement."""
        if up_to_uid <= 0:
            return
        if self.options.processed_folder is None and not self.options.mark_seen:
            return
        criteria: list[Any] = ["UID", f"1:{up_to_uid}"]
        if self.options.processed_folder is None:
            criteria.append("UNSEEN")
        waiting = [u for u in client.search(criteria) if u <= up_to_uid]
        if waiting:
            log.info("imap %s: acknowledging %d committed messages", self.name, len(waiting))
            self._settle(client, sorted(waiting), self.options.processed_folder)

    # -- waiting -------------------------------------------------------------------------------

    def wait(self, timeout: float, stop: threading.Event) -> None:
        """IDLE until the server reports new mail, ``timeout`` passes, or ``stop`` is set."""
        if not self.options.idle:
            stop.wait(timeout)
            return
        try:
            client = self._session()
            if not client.has_capability("IDLE"):
                stop.wait(timeout)
                return
            self._idle(client, min(timeout, self.options.idle_timeout), stop)
        except NETWORK_ERRORS as exc:
            log.warning("imap %s: IDLE interrupted (%s)", self.name, type(exc).__name__)
            self._drop()
            stop.wait(min(timeout, self.options.retry_wait))

    def _idle(self, client: IMAPClient, timeout: float, stop: threading.Event) -> None:
        deadline = time.monotonic() + timeout
        client.idle()
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                responses = client.idle_check(timeout=min(1.0, deadline - time.monotonic()))
                if any(r[1] in (b"EXISTS", b"RECENT") for r in responses if len(r) > 1):
                    return
        finally:
            client.idle_done()

    # -- decoding ------------------------------------------------------------------------------

    def decode(self, raw: RawMessage) -> InboundMessage:
        message = decode_email(
            raw.payload,
            connector=self.name,
            external_id=raw.external_id,
            received_at=raw.received_at,
        )
        if raw.content_type == HEADERS_TYPE or raw.meta.get("oversized"):
            size = int(raw.meta.get("size", 0))
            message.flags.update(oversized=True, size=size)
            message.text = (
                f"[Pesan e-mail ini berukuran {size / 1_048_576:.1f} MB, melebihi batas "
                f"unduhan, dan tidak diunduh; isi lengkapnya ada di kotak surat "
                f"{raw.meta.get('folder', '')} (UID {raw.meta.get('uid', '?')}).]"
            )
        return message


def _quietly(action: Callable[[], Any]) -> None:
    with contextlib.suppress(*_QUIET_ERRORS):
        action()
