"""The contract every connector proves: subclass one of these in the connector's tests.

::

    class TestChatbot(WebhookContract):          # or PollingContract, or ConnectorContract
        connector_type = "chatbot"
        options = {"secret": "s3cret-token"}
        cases = [DecodeCase("text", b'{"id": "1", "text": "Halo"}', {"text": "Halo"})]
        webhook_cases = [WebhookCase("text", b'{"id": "1", "text": "Halo"}')]

        def sign(self, request, *, options, now):
            return signed_copy_of(request, options["secret"], now)   # the provider's scheme

What it checks, with a message saying what is wrong when a check fails:

- **every connector** (:class:`ConnectorContract`): the options schema (a pydantic model that
  refuses unknown keys, secrets typed ``SecretStr``, the type registered); every case decodes
  to a valid message with the expected fields and a set, stable external id; garbage raises
  ``DecodeError`` (quarantined, never a crash); secrets never in ``repr``, logs or errors; each
  case gets its outcome through the real pipeline once, then ``duplicate``.
- **webhooks** (:class:`WebhookContract`): each ``webhook_cases`` request, signed by the
  subclass's ``sign``, is stored and answered 2xx; unsigned, wrongly signed (every secret
  changed), tampered and — with ``replay_tolerance`` — stale copies are refused 403 and store
  nothing; a redelivered copy is a ``duplicate``; garbage is refused before it is parsed.
- **pollers** (:class:`PollingContract`): a second fetch from the returned cursor yields
  nothing new, and then only what arrived since; external ids set and stable; ``ack`` only
  after the messages are committed (never when the commit fails); with ``break_source``,
  429/5xx and unreachable sources raise ``RetryableError``, 401/403 ``FatalError``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ValidationError

from omnichannel.connector import Connector, PollingConnector
from omnichannel.errors import (
    DecodeError,
    FatalError,
    RetryableError,
    StorageUnavailable,
    UnknownConnector,
)
from omnichannel.inbox import Inbox
from omnichannel.registry import connector_class
from omnichannel.schema import InboundMessage, Outcome, RawMessage
from omnichannel.testing.harness import (
    WEBHOOK_URL,
    post_webhook,
    raw_count,
    secret_fields,
    stored_external_ids,
    watch_secrets,
    with_wrong_secrets,
)
from omnichannel.webhook import WebhookConnector, WebhookRequest

__all__ = [
    "SOURCE_ERRORS",
    "ConnectorContract",
    "DecodeCase",
    "PollingContract",
    "WebhookCase",
    "WebhookContract",
]

GARBAGE = [b"", b"\x00\xff\xfe\x00", b"\x89PNG\r\n\x1a\n" + bytes(range(256))]
FIXED_TIME = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
SECRET_NAMES = ("secret", "token", "password", "passwd", "api_key", "apikey", "private_key")
"""Option names that hold a secret: such an option must be typed ``SecretStr``."""
SOURCE_ERRORS = {
    "unavailable": RetryableError,
    "throttled": RetryableError,
    "server_error": RetryableError,
    "unauthorized": FatalError,
    "forbidden": FatalError,
}
"""How a source can fail (``break_source``) and the error the connector must raise: an
unreachable host or HTTP 5xx and 429 are temporary, 401 and 403 are bad credentials."""


@dataclass
class DecodeCase:
    """One stored payload and the InboundMessage fields it must decode to."""

    id: str
    payload: bytes
    expect: dict[str, Any] = field(default_factory=dict)
    content_type: str = "application/octet-stream"
    external_id: str | None = None
    outcome: Outcome = Outcome.NEW


@dataclass
class WebhookCase:
    """One request a provider sends, and what it must give: ``messages`` raw messages stored
    (0 for a status callback), the first filed with ``outcome`` and decoded to ``expect``."""

    id: str
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    query: str = ""
    messages: int = 1
    outcome: Outcome | None = Outcome.NEW
    expect: dict[str, Any] = field(default_factory=dict)


class ConnectorContract:
    """Subclass with ``connector_type``, ``options`` and ``cases``; pytest runs the rest."""

    connector_type: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    cases: ClassVar[list[DecodeCase]] = []

    def make_connector(
        self, name: str = "contract", options: Mapping[str, Any] | None = None
    ) -> Connector:
        chosen = dict(self.options if options is None else options)
        return connector_class(self.connector_type).from_options(name, chosen)

    def raw_for(self, connector: Connector, case: DecodeCase) -> RawMessage:
        return RawMessage(
            connector=connector.name,
            external_id=case.external_id or case.id,
            received_at=FIXED_TIME,
            content_type=case.content_type,
            payload=case.payload,
        )

    # -- options ------------------------------------------------------------------------------

    def test_type_is_registered(self) -> None:
        """The connector type is found by name (an entry point) and declares its channel."""
        assert self.connector_type, "set connector_type on the contract class"
        try:
            cls = connector_class(self.connector_type)
        except UnknownConnector as exc:
            pytest.fail(f"{exc}: register it under the 'omnichannel.connectors' entry points")
        assert cls.type == self.connector_type, (
            f"{cls.__name__}.type is {cls.type!r}, registered as {self.connector_type!r}"
        )
        assert cls.channel, f"{cls.__name__}.channel is empty: declare the default channel"

    def test_options_schema(self) -> None:
        """Options are a pydantic model that takes the given options, refuses unknown keys
        (a typo is a configuration error, not ignored) and types every secret SecretStr."""
        model = connector_class(self.connector_type).Options
        assert issubclass(model, BaseModel), "Options must be a pydantic BaseModel"
        model.model_validate(dict(self.options))
        with pytest.raises(ValidationError):
            model.model_validate({**self.options, "no_such_option_x": "1"})
        secrets = set(secret_fields(model))
        for name in model.model_fields:
            if any(word in name.lower() for word in SECRET_NAMES) and name not in secrets:
                pytest.fail(f"option {name!r} looks like a secret but is not typed SecretStr")

    def test_secrets_never_shown(self) -> None:
        """Secret options do not appear in the connector's repr, str or its options' repr."""
        connector = self.make_connector()
        for name in secret_fields(type(connector.options)):
            given = self.options.get(name)
            values = given if isinstance(given, list) else [given]
            missing = [v for v in values if isinstance(v, str) and v not in connector.secrets()]
            assert not missing, f"secrets() leaves out option {name!r}: logs would show it"
        shown = [repr(connector), str(connector), repr(connector.options), str(connector.options)]
        for secret in connector.secrets():
            assert all(secret not in text for text in shown), "a secret shows in a repr"

    # -- decoding -----------------------------------------------------------------------------

    def test_cases_decode_to_valid_messages(self) -> None:
        """Every case decodes to a valid InboundMessage with the declared fields and a set,
        stable external id; the logs and errors hold no secret."""
        assert self.cases, "declare at least one DecodeCase in `cases`"
        connector = self.make_connector()
        with watch_secrets(connector):
            for case in self.cases:
                raw = self.raw_for(connector, case)
                first, again = connector.decode(raw), connector.decode(raw)
                _check_message(first, case.id)
                assert first.external_id == again.external_id, (
                    f"{case.id}: external id not stable ({first.external_id!r}, "
                    f"{again.external_id!r})"
                )
                decoded = first.model_dump()
                for key, expected in case.expect.items():
                    assert decoded[key] == expected, f"{case.id}: {key}"

    @pytest.mark.parametrize("garbage", GARBAGE, ids=["empty", "binary", "png"])
    def test_garbage_raises_decode_error(self, garbage: bytes) -> None:
        """Undecodable bytes raise DecodeError (to be quarantined), never anything else, and
        its message holds no secret."""
        connector = self.make_connector()
        raw = RawMessage(
            connector=connector.name,
            external_id="garbage",
            received_at=FIXED_TIME,
            content_type="application/octet-stream",
            payload=garbage or b" ",
        )
        with watch_secrets(connector), pytest.raises(DecodeError):
            connector.decode(raw)

    def test_pipeline_gives_one_outcome_then_duplicate(self, omnichannel_inbox: Inbox) -> None:
        """Each case files with its expected outcome once, then is a duplicate."""
        connector = self.make_connector()
        omnichannel_inbox.add_connector(connector)
        for case in self.cases:
            first = omnichannel_inbox.receive(self.raw_for(connector, case))
            again = omnichannel_inbox.receive(self.raw_for(connector, case))
            assert first.outcome is case.outcome, f"{case.id}: {first.outcome} ({first.error})"
            assert again.outcome is Outcome.DUPLICATE, case.id


def _check_message(message: InboundMessage, where: str) -> None:
    assert isinstance(message, InboundMessage), f"{where}: decode must return InboundMessage"
    assert isinstance(message.external_id, str) and message.external_id.strip(), (
        f"{where}: the decoded message has no external id (the dedupe key must always be set)"
    )
    InboundMessage.model_validate(message.model_dump())


class WebhookContract(ConnectorContract):
    """The webhook checks: implement ``sign`` with the provider's scheme, list the requests."""

    webhook_cases: ClassVar[list[WebhookCase]] = []
    replay_tolerance: ClassVar[float | None] = None
    """Seconds a signed timestamp is accepted, when the scheme signs one (Standard Webhooks:
    300): a copy signed longer ago than that must be refused."""
    webhook_name: ClassVar[str] = "contract"
    signs_body: ClassVar[bool] = True
    """False when the provider's scheme is a shared token that does not cover the body
    (Telegram's ``X-Telegram-Bot-Api-Secret-Token``): tampered copies cannot be told apart."""

    def sign(
        self, request: WebhookRequest, *, options: Mapping[str, Any], now: float
    ) -> WebhookRequest:
        """``request`` signed as the provider signs it, with the secrets in ``options`` (the
        contract passes wrong ones too), at unix time ``now``."""
        raise NotImplementedError("a WebhookContract subclass implements sign()")

    def request_for(
        self,
        case: WebhookCase,
        *,
        options: Mapping[str, Any] | None = None,
        signed: bool = True,
        now: float | None = None,
    ) -> WebhookRequest:
        url = WEBHOOK_URL.format(name=self.webhook_name) + (f"?{case.query}" if case.query else "")
        headers = {"content-type": case.content_type, **case.headers}
        request = WebhookRequest.build("POST", url, headers, case.body, "127.0.0.1")
        if not signed:
            return request
        chosen = self.options if options is None else options
        return self.sign(request, options=chosen, now=time.time() if now is None else now)

    def webhook_connector(self, options: Mapping[str, Any] | None = None) -> WebhookConnector:
        connector = self.make_connector(self.webhook_name, options)
        assert isinstance(connector, WebhookConnector), (
            f"{type(connector).__name__} is not a WebhookConnector"
        )
        return connector

    def _inbox_with(self, inbox: Inbox) -> WebhookConnector:
        connector = self.webhook_connector()
        inbox.add_connector(connector)
        return connector

    def _cases(self) -> list[WebhookCase]:
        assert self.webhook_cases, "declare at least one WebhookCase in `webhook_cases`"
        return self.webhook_cases

    def test_signed_requests_are_stored(self, omnichannel_inbox: Inbox) -> None:
        """Each signed case is answered 2xx with its messages stored and filed, each with a
        set external id that parsing again reproduces."""
        connector = self._inbox_with(omnichannel_inbox)
        stored = 0
        with watch_secrets(connector) as watch:
            for case in self._cases():
                request = self.request_for(case)
                response = post_webhook(omnichannel_inbox, self.webhook_name, request)
                watch.response(response)
                assert 200 <= response.status < 300, (
                    f"{case.id}: a correctly signed request was answered {response.status} "
                    f"{response.body[:200]!r}"
                )
                stored += case.messages
                assert raw_count(omnichannel_inbox, self.webhook_name) == stored, (
                    f"{case.id}: expected {case.messages} raw message(s) stored"
                )
                self._check_parse(connector, request, case)
                if case.messages and case.outcome is not None:
                    outcome = response.results[0].outcome if response.results else None
                    assert outcome is case.outcome, f"{case.id}: outcome {outcome}"

    def _check_parse(
        self, connector: WebhookConnector, request: WebhookRequest, case: WebhookCase
    ) -> None:
        raws = connector.parse(request)
        ids = [raw.external_id for raw in raws]
        assert all(isinstance(i, str) and i.strip() for i in ids), (
            f"{case.id}: a raw message has no external id (the dedupe key must always be set)"
        )
        assert ids == [raw.external_id for raw in connector.parse(request)], (
            f"{case.id}: external ids change between two parses of the same request"
        )
        assert len(set(ids)) == len(ids), f"{case.id}: two messages share an external id"
        if raws and case.expect:
            decoded = connector.decode(raws[0]).model_dump()
            for key, expected in case.expect.items():
                assert decoded[key] == expected, f"{case.id}: {key}"

    def _assert_refused(
        self, inbox: Inbox, request: WebhookRequest, what: str, case: WebhookCase
    ) -> None:
        connector = self._inbox_with(inbox)
        before = raw_count(inbox, self.webhook_name)
        with watch_secrets(connector) as watch:
            response = post_webhook(inbox, self.webhook_name, request)
            watch.response(response)
        assert response.status == 403, (
            f"{case.id}: {what} request was answered {response.status}, not 403: the "
            "connector accepts requests it cannot have received from the provider"
        )
        assert raw_count(inbox, self.webhook_name) == before, (
            f"{case.id}: {what} request stored something"
        )

    def test_unsigned_requests_are_refused(self, omnichannel_inbox: Inbox) -> None:
        """A request without a signature is refused 403 and stores nothing."""
        for case in self._cases():
            request = self.request_for(case, signed=False)
            self._assert_refused(omnichannel_inbox, request, "an unsigned", case)

    def test_wrongly_signed_requests_are_refused(self, omnichannel_inbox: Inbox) -> None:
        """A request signed with other secrets is refused 403 and stores nothing."""
        model = connector_class(self.connector_type).Options
        assert secret_fields(model), "a webhook connector needs a secret option to verify with"
        wrong = with_wrong_secrets(model, self.options)
        for case in self._cases():
            request = self.request_for(case, options=wrong)
            self._assert_refused(omnichannel_inbox, request, "a wrongly signed", case)

    def test_tampered_requests_are_refused(self, omnichannel_inbox: Inbox) -> None:
        """A correctly signed request whose body was changed afterwards is refused 403."""
        if not self.signs_body:
            pytest.skip(f"{self.connector_type}: the provider's scheme does not sign the body")
        for case in self._cases():
            signed = self.request_for(case)
            body = _tampered(signed.body)
            tampered = WebhookRequest.build(
                signed.method, signed.url, dict(signed.headers), body, "127.0.0.1"
            )
            self._assert_refused(omnichannel_inbox, tampered, "a tampered", case)

    def test_replayed_requests_change_nothing(self, omnichannel_inbox: Inbox) -> None:
        """A redelivered copy of a signed request stores nothing new and files as duplicate;
        with ``replay_tolerance``, a copy signed longer ago is refused 403."""
        connector = self._inbox_with(omnichannel_inbox)
        for case in self._cases():
            request = self.request_for(case)
            post_webhook(omnichannel_inbox, self.webhook_name, request)
            count = raw_count(omnichannel_inbox, self.webhook_name)
            with watch_secrets(connector):
                again = post_webhook(omnichannel_inbox, self.webhook_name, request)
            assert raw_count(omnichannel_inbox, self.webhook_name) == count, (
                f"{case.id}: a redelivered copy stored a second raw message"
            )
            assert all(r.outcome is Outcome.DUPLICATE for r in again.results), (
                f"{case.id}: a redelivered copy was filed again"
            )
        if self.replay_tolerance is not None:
            stale = time.time() - self.replay_tolerance - 60
            for case in self._cases():
                request = self.request_for(case, now=stale)
                self._assert_refused(omnichannel_inbox, request, "a stale (replayed)", case)

    def test_garbage_is_refused_before_parsing(self, omnichannel_inbox: Inbox) -> None:
        """An unsigned request of garbage is a 403 (verified before parsed), not a 400 or 500."""
        case = WebhookCase("garbage", b"\x00\xff{{not a payload", self._cases()[0].content_type)
        request = self.request_for(case, signed=False)
        self._assert_refused(omnichannel_inbox, request, "an unsigned garbage", case)


def _tampered(body: bytes) -> bytes:
    """``body`` changed in one value: a digit or letter replaced (a form stays a form)."""
    for index in range(len(body) - 1, -1, -1):
        char = body[index : index + 1]
        if char.isalnum():
            replacement = b"7" if char != b"7" else b"8"
            return body[:index] + replacement + body[index + 1 :]
    return body + b" "


class PollingContract(ConnectorContract):
    """The polling checks: implement ``setup_source`` and ``deliver``, list ``poll_items``."""

    poll_items: ClassVar[Sequence[Any]] = []
    """What ``deliver`` takes, at least two; each must become exactly one raw message."""
    poll_name: ClassVar[str] = "contract"
    ack_moves_source: ClassVar[bool] = False
    """True when the source keeps the state (rows claimed, files moved) and the cursor is
    None: the cursor check acknowledges what it fetched before fetching again, as the core
    does once the messages are committed."""

    def setup_source(self, tmp_path: Path) -> dict[str, Any]:
        """Prepare an empty source (a folder, a mailbox, a local server); the options that
        point the connector at it (merged over ``options``)."""
        raise NotImplementedError("a PollingContract subclass implements setup_source()")

    def deliver(self, item: Any) -> None:
        """Put one item of ``poll_items`` into the source."""
        raise NotImplementedError("a PollingContract subclass implements deliver()")

    def teardown_source(self) -> None:
        """Stop what ``setup_source`` started."""

    def break_source(self, how: str) -> bool:
        """Make the source fail ``how`` (a key of ``SOURCE_ERRORS``) for the next fetch;
        False when it cannot fail that way (the check is then skipped)."""
        return False

    @pytest.fixture
    def polling_options(self, tmp_path: Path) -> Iterator[dict[str, Any]]:
        options = self.setup_source(tmp_path)
        try:
            yield {**self.options, **options}
        finally:
            self.teardown_source()

    def poller(self, options: Mapping[str, Any]) -> PollingConnector:
        connector = self.make_connector(self.poll_name, options)
        assert isinstance(connector, PollingConnector), (
            f"{type(connector).__name__} is not a PollingConnector"
        )
        return connector

    def _items(self) -> Sequence[Any]:
        assert len(self.poll_items) >= 2, "declare at least two items in `poll_items`"
        return self.poll_items

    def test_fetch_gives_set_and_stable_external_ids(self, polling_options: dict[str, Any]) -> None:
        """Fetching from the start gives one raw message per item, each with a set external
        id, the same ids when fetched again, each decoding to a valid message."""
        for item in self._items():
            self.deliver(item)
        connector = self.poller(polling_options)
        with watch_secrets(connector):
            first, _ = _drain(connector, None)
            again, _ = _drain(connector, None)
            ids = [raw.external_id for raw in first]
            assert len(ids) == len(self._items()), f"fetched {len(ids)} of {len(self._items())}"
            assert all(isinstance(i, str) and i.strip() for i in ids), (
                "a fetched raw message has no external id (the dedupe key must always be set)"
            )
            assert len(set(ids)) == len(ids), "two fetched messages share an external id"
            assert [raw.external_id for raw in again] == ids, (
                "external ids change between two fetches of the same messages"
            )
            for raw in first:
                _check_message(connector.decode(raw), raw.external_id)
        connector.close()

    def test_fetch_from_cursor_gives_only_what_is_new(
        self, polling_options: dict[str, Any]
    ) -> None:
        """A fetch from the returned cursor (as stored: through JSON; after an ``ack`` when the
        source keeps the state) gives nothing, and once another item arrives, only that one."""
        *earlier, last = self._items()
        for item in earlier:
            self.deliver(item)
        connector = self.poller(polling_options)
        with watch_secrets(connector):
            first, cursor = _drain(connector, None)
            if self.ack_moves_source:
                connector.ack(first)
            stored = json.loads(json.dumps(cursor))  # what the core keeps, in its JSON column
            nothing, _ = _drain(connector, stored)
            assert not nothing, (
                f"a fetch from the returned cursor gave {len(nothing)} message(s) again"
            )
            self.deliver(last)
            new, _ = _drain(connector, stored)
        assert len(new) == 1, f"after one more item, a fetch from the cursor gave {len(new)}"
        assert new[0].external_id not in {raw.external_id for raw in first}
        connector.close()

    def test_ack_only_after_commit(
        self, polling_options: dict[str, Any], omnichannel_inbox: Inbox
    ) -> None:
        """``ack`` is not called when the commit fails (the source keeps the messages), and is
        called once they are committed, with the committed messages."""
        for item in self._items():
            self.deliver(item)
        connector = self.poller(polling_options)
        omnichannel_inbox.add_connector(connector)
        acked: list[tuple[str, bool]] = []
        real_ack = connector.ack

        def spy(messages: Sequence[RawMessage]) -> None:
            committed = stored_external_ids(omnichannel_inbox, connector.name)
            acked.extend((m.external_id, m.external_id in committed) for m in messages)
            real_ack(messages)

        connector.ack = spy  # type: ignore[method-assign]
        real_store = omnichannel_inbox._store

        def failing_store(*args: Any, **kwargs: Any) -> Any:
            raise StorageUnavailable("storage unavailable (contract)")

        omnichannel_inbox._store = failing_store  # type: ignore[method-assign]
        with pytest.raises(StorageUnavailable):
            omnichannel_inbox.poll(connector.name)
        assert not acked, "ack was called although nothing was committed"
        omnichannel_inbox._store = real_store  # type: ignore[method-assign]
        results = omnichannel_inbox.poll(connector.name)
        assert len(results) == len(self._items()), (
            "after a failed commit, the next poll did not get every message again"
        )
        assert len(acked) == len(self._items()), f"acked {len(acked)} of {len(self._items())}"
        early = [external_id for external_id, committed in acked if not committed]
        assert not early, f"ack was called before the commit of {early}"
        assert not omnichannel_inbox.poll(connector.name), "a second poll gave messages again"

    @pytest.mark.parametrize("how", sorted(SOURCE_ERRORS))
    def test_source_errors_are_mapped(self, how: str, polling_options: dict[str, Any]) -> None:
        """A source failing ``how`` raises the error the daemon acts on: retry later for an
        unreachable source, 429 and 5xx; disable the connector for 401 and 403."""
        connector = self.poller(polling_options)
        if not self.break_source(how):
            pytest.skip(f"{self.connector_type}: the source cannot be made to fail {how!r}")
        expected = SOURCE_ERRORS[how]
        with watch_secrets(connector) as watch:
            try:
                _drain(connector, None)
            except Exception as exc:  # checked just below, with a message saying what is wrong
                watch.error(exc)
                assert isinstance(exc, expected), (
                    f"a source failing {how!r} raised {type(exc).__name__}, not "
                    f"{expected.__name__}: map the library's errors in one place"
                )
            else:
                pytest.fail(f"a source failing {how!r} raised nothing")
        connector.close()


def _drain(connector: PollingConnector, cursor: Any) -> tuple[list[RawMessage], Any]:
    """Every raw message a fetch from ``cursor`` yields, and the last cursor."""
    messages: list[RawMessage] = []
    for batch in connector.fetch(cursor):
        messages += batch.messages
        cursor = batch.cursor
    return messages, cursor
