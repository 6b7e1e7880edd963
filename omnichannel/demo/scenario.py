"""The demo's citizens, as providers deliver them: signed webhook requests over real HTTP
(Twilio's form, Meta's notification, the portal's Standard Webhooks post) and files through
the ``files`` connector, each followed to its outcome in the store.

A provider webhook is answered before it is filed (Twilio gets an empty ``<Response/>``, Meta
``{"received": 1}``), so an outcome is read where the team would find it: the raw row stored
under the provider's message id. A redelivery stores no row of its own (connector + external
id is unique): its outcome is ``duplicate`` when that row was there before the request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
import sqlalchemy as sa
from twilio.request_validator import RequestValidator

from omnichannel import pipeline
from omnichannel.inbox import Inbox
from omnichannel.store.tables import complaints, raw_messages
from omnichannel.webhook import signing_key, standard_signature

__all__ = ["Credentials", "Player", "Step"]

FILED_WAIT = 15.0
"""Seconds to wait for the filing worker to file a webhook's message."""


@dataclass(frozen=True)
class Credentials:
    """The secrets of one demo run, made afresh each time (never printed, never written)."""

    account_sid: str = field(default_factory=lambda: "AC" + secrets.token_hex(16))
    auth_token: str = field(default_factory=lambda: secrets.token_hex(16))
    app_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    verify_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    access_token: str = field(default_factory=lambda: "EAAG" + secrets.token_urlsafe(24))
    portal_secret: str = field(
        default_factory=lambda: "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    )
    forward_secret: str = field(
        default_factory=lambda: "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    )

    def all(self) -> list[str]:
        return [str(value) for value in self.__dict__.values()]


@dataclass
class Step:
    """One line of the scenario: what was sent, how it was answered, what became of it."""

    number: str
    channel: str
    what: str
    status: int | None
    outcome: str
    ticket: str | None = None
    expected: str | None = None
    note: str = ""
    external_id: str | None = None
    connector: str | None = None

    @property
    def unexpected(self) -> bool:
        return self.expected is not None and self.outcome != self.expected


@dataclass
class Player:
    """Sends the scenario's requests to the server at ``base_url`` and reads their outcomes
    from ``inbox``'s store."""

    inbox: Inbox
    base_url: str
    credentials: Credentials
    numbers: dict[str, str]
    names: dict[str, str]
    """Connector names by kind: ``twilio``, ``cloud``, ``web``, ``files``."""
    report: Callable[[Step], None]
    session: requests.Session = field(default_factory=requests.Session)
    steps: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.session.trust_env = False  # straight to the loopback server, whatever the proxy

    def close(self) -> None:
        self.session.close()

    def _done(self, step: Step) -> Step:
        self.steps.append(step)
        self.report(step)
        return step

    # -- Twilio -------------------------------------------------------------------------------

    def twilio_form(
        self, phone: str, text: str, *, whatsapp: bool = False, name: str | None = None
    ) -> dict[str, str]:
        """The form Twilio POSTs for an inbound SMS (or WhatsApp message) to our number."""
        sid = "SM" + secrets.token_hex(16)
        ours = self.numbers["twilio_whatsapp"] if whatsapp else self.numbers["sms"]
        sender = f"whatsapp:{phone}" if whatsapp else phone
        form = {
            "ToCountry": "ID",
            "ToState": "",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ToCity": "",
            "FromZip": "",
            "SmsSid": sid,
            "FromState": "",
            "SmsStatus": "received",
            "FromCity": "",
            "Body": text,
            "FromCountry": "ID",
            "To": ours,
            "ToZip": "",
            "NumSegments": "1",
            "ReferralNumMedia": "0",
            "MessageSid": sid,
            "AccountSid": self.credentials.account_sid,
            "From": sender,
            "ApiVersion": "2010-04-01",
        }
        if whatsapp:
            form.update(ProfileName=name or "", WaId=phone.lstrip("+"), MessageType="text")
        return form

    def post_twilio(self, form: dict[str, str], *, token: str | None = None) -> int:
        """POST ``form`` signed with ``X-Twilio-Signature`` (with ``token``: a forgery)."""
        url = f"{self.base_url}/webhooks/{self.names['twilio']}"
        validator = RequestValidator(token or self.credentials.auth_token)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": validator.compute_signature(url, form),
            "User-Agent": "TwilioProxy/1.1",
        }
        return self._post(url, urlencode(form).encode(), headers)[0]

    # -- Meta ---------------------------------------------------------------------------------

    def meta_notification(self, phone: str, name: str, text: str) -> tuple[str, bytes]:
        """A WhatsApp Cloud API notification of one text message: its wamid and body (JSON with
        non-ASCII escaped, as Meta sends it)."""
        digits = phone.lstrip("+")
        wamid = "wamid.HBgN" + base64.b64encode(f"{digits}{secrets.token_hex(9)}".encode()).decode()
        value = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": self.numbers["cloud_display_number"],
                "phone_number_id": self.numbers["cloud_phone_number_id"],
            },
            "contacts": [{"profile": {"name": name}, "wa_id": digits}],
            "messages": [
                {
                    "from": digits,
                    "id": wamid,
                    "timestamp": str(int(time.time())),
                    "type": "text",
                    "text": {"body": text},
                }
            ],
        }
        envelope = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": self.numbers["cloud_account_id"],
                    "changes": [{"value": value, "field": "messages"}],
                }
            ],
        }
        return wamid, json.dumps(envelope, separators=(",", ":")).encode()

    def post_meta(self, body: bytes, *, secret: str | None = None) -> int:
        """POST a notification signed with ``X-Hub-Signature-256`` (``secret``: a forgery)."""
        key = (secret or self.credentials.app_secret).encode()
        digest = hmac.new(key, body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": f"sha256={digest}",
            "User-Agent": "facebookexternalua",
        }
        return self._post(f"{self.base_url}/webhooks/{self.names['cloud']}", body, headers)[0]

    # -- the portal ---------------------------------------------------------------------------

    def post_portal(
        self, form: dict[str, Any], *, secret: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """POST the portal's form as JSON, signed with Standard Webhooks (``secret``: a
        forgery); the answer's status and JSON."""
        body = json.dumps(form, ensure_ascii=False).encode()
        webhook_id = "msg_" + secrets.token_urlsafe(12)
        stamp = str(int(time.time()))
        key = signing_key(secret or self.credentials.portal_secret)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": stamp,
            "webhook-signature": standard_signature(key, webhook_id, stamp, body),
        }
        return self._post(f"{self.base_url}/webhooks/{self.names['web']}", body, headers)

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        response = self.session.post(url, data=body, headers=headers, timeout=30)
        with response:
            try:
                answer = response.json()
            except ValueError:
                answer = {}
        return response.status_code, answer if isinstance(answer, dict) else {}

    # -- steps --------------------------------------------------------------------------------

    def webhook_step(
        self,
        number: str,
        channel: str,
        what: str,
        connector: str,
        external_id: str,
        send: Callable[[], int],
        expected: str,
    ) -> Step:
        """Send one provider webhook and follow its message to its outcome."""
        before = self.raw_state(connector, external_id)
        status = send()
        step = Step(number, channel, what, status, "?", expected=expected)
        step.connector, step.external_id = connector, external_id
        if status != 200:
            step.outcome, step.note = "refused", f"HTTP {status}"
        elif before is not None:
            step.outcome, step.ticket = "duplicate", before.ticket
            step.note = "already stored: nothing changes"
        else:
            self._follow(step)
        return self._done(step)

    def portal_step(self, number: str, what: str, form: dict[str, Any], expected: str) -> Step:
        """Post the portal's form: its answer carries the ticket."""
        status, answer = self.post_portal(form)
        step = Step(number, "web/portal", what, status, "?", expected=expected)
        step.connector, step.external_id = self.names["web"], str(form["id"])
        if status == 200:
            step.outcome, step.ticket = str(answer.get("outcome")), answer.get("ticket")
            step.note = f"answered {{ticket: {step.ticket}}}"
            self._annotate(step)
        elif status == 202:  # filed later than filing.wait: its receipt, then the store
            self._follow(step)
        else:
            step.outcome, step.note = "refused", f"HTTP {status}"
        return self._done(step)

    def forged_step(
        self,
        number: str,
        channel: str,
        what: str,
        connector: str,
        external_id: str,
        send: Callable[[], int],
    ) -> Step:
        """A request signed with the wrong secret: 403, and nothing of it stored."""
        rows = self.raw_count()
        status = send()
        stored = self.raw_state(connector, external_id) is not None or self.raw_count() != rows
        outcome = "stored" if stored else "refused" if 400 <= status < 500 else "accepted"
        step = Step(number, channel, what, status, outcome, expected="refused")
        step.connector, step.external_id = connector, external_id
        step.note = "STORED: it should not be" if stored else "nothing stored"
        return self._done(step)

    def file_steps(
        self,
        numbers: Sequence[str],
        channel: str,
        paths: Sequence[Path],
        expected: Sequence[str | None],
    ) -> list[Step]:
        """Files through the ``files`` connector (``omnichannel ingest``): one step each."""
        out = []
        results = self.inbox.ingest_files(self.names["files"], paths)
        for number, item, wanted in zip(numbers, results, expected, strict=True):
            result = item.result
            step = Step(number, channel, item.path.name, None, "?", expected=wanted)
            if result is None:
                step.outcome, step.note = "unreadable", item.error or ""
            else:
                step.outcome, step.ticket = result.outcome.value, result.ticket
                step.connector, step.external_id = result.connector, result.external_id
                if result.error:
                    step.note = _first_line(result.error)
                else:
                    self._annotate(step)
            out.append(self._done(step))
        return out

    # -- reading the store --------------------------------------------------------------------

    def _follow(self, step: Step) -> None:
        """Wait for the worker to file the step's message; its outcome and ticket."""
        assert step.connector is not None and step.external_id is not None
        deadline = time.monotonic() + FILED_WAIT
        state = self.raw_state(step.connector, step.external_id)
        while (state is None or not state.done) and time.monotonic() < deadline:
            time.sleep(0.02)
            state = self.raw_state(step.connector, step.external_id)
        if state is None or not state.done:
            step.outcome, step.note = "pending", "not filed in time"
            return
        step.outcome = state.outcome.value if state.outcome else state.status
        step.ticket = state.ticket
        if state.error:
            step.note = _first_line(state.error)
        else:
            self._annotate(step)

    def _annotate(self, step: Step) -> None:
        """What the team sees of a filed step: the agency of a new complaint, the complaint a
        merged message joined."""
        if step.ticket is None:
            return
        with self.inbox.store.transaction() as conn:
            agency, category = conn.execute(
                sa.select(complaints.c.agency, complaints.c.category).where(
                    complaints.c.ticket == step.ticket
                )
            ).one()
        if step.outcome == "new":
            routed = f"-> {agency} ({category})"
            step.note = f"{step.note}; {routed}" if step.note else routed
        elif step.outcome == "merged":
            step.note = f"joined {step.ticket}"

    def raw_state(self, connector: str, external_id: str) -> pipeline.Filing | None:
        """The stored raw message of ``connector`` with ``external_id``, if any."""
        with self.inbox.store.transaction() as conn:
            raw_id = conn.execute(
                sa.select(raw_messages.c.id).where(
                    raw_messages.c.connector == connector,
                    raw_messages.c.external_id == external_id,
                )
            ).scalar()
            return None if raw_id is None else pipeline.describe(conn, [raw_id])[raw_id]

    def raw_count(self) -> int:
        with self.inbox.store.transaction() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(raw_messages)).scalar_one()
            )


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 60 else line[:59] + "…"
