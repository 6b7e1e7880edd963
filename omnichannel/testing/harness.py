"""The shared harness of the contract kit: secrets watched, webhooks signed and posted.

Used by :mod:`omnichannel.testing.contract`, and by a connector's own tests when they need the
same steps (one harness for every connector, not a ``sign``/``post`` helper per test file)::

    with watch_secrets(connector) as watch:
        response = post_webhook(inbox, "sms", request)
        watch.response(response)
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, SecretStr

from omnichannel.connector import Connector
from omnichannel.inbox import Inbox
from omnichannel.store.tables import raw_messages
from omnichannel.webhook import WebhookRequest, WebhookResponse

__all__ = [
    "WEBHOOK_URL",
    "SecretWatch",
    "post_webhook",
    "raw_count",
    "secret_fields",
    "stored_external_ids",
    "watch_secrets",
    "with_wrong_secrets",
]

WEBHOOK_URL = "http://127.0.0.1:8080/webhooks/{name}"
"""The URL the kit's requests are addressed to (what a signature over the URL covers)."""

_OWN_PACKAGES = ("omnichannel", "connectors", "normalizer")


class SecretWatch(logging.Handler):
    """Every log record of the connector's own code, and every error and answer it is shown,
    checked for the connector's secrets; :meth:`verify` fails naming where one appeared."""

    def __init__(self, connector: Connector) -> None:
        super().__init__(logging.DEBUG)
        self.secrets = [s for s in connector.secrets() if len(s) >= 4]
        package = type(connector).__module__.split(".", 1)[0]
        self.packages = tuple(dict.fromkeys((*_OWN_PACKAGES, package)))
        """Whose log records are watched: ours and the connector's package's (a library's
        own debug lines are not the connector's; the daemon's log handler redacts them)."""
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + _chain_text(record.exc_info[1])
        self._check(f"log record of {record.name!r} ({record.levelname})", text)

    def error(self, exc: BaseException) -> None:
        """Check an error the connector raised (its message and the errors chained to it)."""
        self._check(f"{type(exc).__name__} raised", _chain_text(exc))

    def response(self, response: WebhookResponse) -> None:
        """Check a webhook answer's body and headers."""
        headers = " ".join(f"{k}: {v}" for k, v in response.headers.items())
        self._check(f"HTTP {response.status} answer", response.body.decode("utf-8", "replace"))
        self._check(f"HTTP {response.status} answer headers", headers)

    def text(self, where: str, text: str) -> None:
        self._check(where, text)

    def _check(self, where: str, text: str) -> None:
        for secret in self.secrets:
            if secret in text:
                self.leaks.append(f"a secret option value appears in the {where}")

    def verify(self) -> None:
        assert not self.leaks, "secret leaked: " + "; ".join(dict.fromkeys(self.leaks))


def _chain_text(exc: BaseException) -> str:
    """What a traceback of ``exc`` would print of messages: its own and the chained ones."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current!s} {current!r}")
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return " ".join(parts)


@contextmanager
def watch_secrets(connector: Connector) -> Iterator[SecretWatch]:
    """Watch the logs (DEBUG up) for the connector's secrets while the block runs; an error
    escaping the block is checked too. Fails at the end of the block when one leaked."""
    watch = SecretWatch(connector)
    loggers = [logging.getLogger(name) for name in watch.packages]
    levels = [logger.level for logger in loggers]
    for logger in loggers:  # our own code's loggers only: libraries' debug output stays off
        logger.addHandler(watch)
        logger.setLevel(logging.DEBUG)
    try:
        yield watch
    except BaseException as exc:
        watch.error(exc)
        raise
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(watch)
            logger.setLevel(level)
    watch.verify()


def secret_fields(model: type[BaseModel]) -> list[str]:
    """The options that are secrets: fields typed ``SecretStr`` (alone, optional or in a list)."""
    return [
        name for name, info in model.model_fields.items() if SecretStr in _leaves(info.annotation)
    ]


def _leaves(annotation: Any) -> set[Any]:
    args = typing.get_args(annotation)
    if not args:
        return {annotation}
    return set().union(*(_leaves(a) for a in args))


def with_wrong_secrets(model: type[BaseModel], options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with every secret replaced by a different value of the same form."""
    changed = dict(options)
    for name in secret_fields(model):
        value = changed.get(name)
        if isinstance(value, str):
            changed[name] = _wrong(value)
        elif isinstance(value, list):
            changed[name] = [_wrong(v) if isinstance(v, str) else v for v in value]
    return changed


def _wrong(value: str) -> str:
    """A value that is not ``value`` (a ``whsec_`` key stays a valid ``whsec_`` key)."""
    if value.startswith("whsec_"):
        return "whsec_" + ("d3JvbmcxMjM0NTY3OA==" if "d3Jvbm" not in value else "b3RoZXIxMjM0NQ==")
    return "wrong-" + value


def post_webhook(inbox: Inbox, name: str, request: WebhookRequest) -> WebhookResponse:
    """Hand a request to the inbox as the HTTP app does (verify, store, file, answer)."""
    return inbox.handle_webhook(name, request.method, request.url, request.headers, request.body)


def raw_count(inbox: Inbox, connector: str) -> int:
    """How many raw payloads of ``connector`` are stored."""
    with inbox.store.transaction() as conn:
        query = sa.select(sa.func.count()).where(raw_messages.c.connector == connector)
        return int(conn.execute(query).scalar_one())


def stored_external_ids(inbox: Inbox, connector: str) -> set[str]:
    """The external ids of ``connector``'s committed raw payloads."""
    with inbox.store.transaction() as conn:
        query = sa.select(raw_messages.c.external_id).where(raw_messages.c.connector == connector)
        return set(conn.execute(query).scalars())
