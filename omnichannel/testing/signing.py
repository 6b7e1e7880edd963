"""Signers for the built-in webhook schemes: requests signed as the providers sign them.

One implementation for the contract kit's ``sign`` methods and for every test that posts a
webhook (not a ``sign`` helper per test file)::

    headers = {"Content-Type": "application/json", **standard_webhooks_headers(secret, body)}
    headers = {"X-Hub-Signature-256": meta_signature(body, app_secret)}
    headers = {"X-Twilio-Signature": twilio_signature(url, fields, auth_token)}

Twilio's signature is computed by the official library (``RequestValidator``), the scheme's
reference; Standard Webhooks by :mod:`omnichannel.webhook`'s own ``standard_signature``, which
the spec's test vectors pin down.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Literal
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator

from omnichannel.webhook import WebhookRequest, signing_key, standard_signature

__all__ = [
    "form_fields",
    "hmac_header",
    "meta_signature",
    "standard_webhooks_headers",
    "twilio_signature",
    "with_headers",
]


class _Fields(dict[str, list[str]]):
    """Form fields with every value of a repeated one, as the validator reads them."""

    def getall(self, key: str) -> list[str]:
        return self[key]


def twilio_signature(
    url: str, params: Mapping[str, str] | Iterable[tuple[str, str]], auth_token: str
) -> str:
    """``X-Twilio-Signature`` of a form POST to ``url`` (as Twilio called it, query included),
    by the official ``RequestValidator.compute_signature``. ``params`` are the form's fields: a
    mapping, or ``(name, value)`` pairs when a field is repeated (every value is signed)."""
    pairs = params.items() if isinstance(params, Mapping) else params
    fields = _Fields()
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    signature: str = RequestValidator(auth_token).compute_signature(url, fields)
    return signature


def form_fields(body: bytes) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of a URL-encoded form body, blank values kept (what a form
    signature covers)."""
    return parse_qsl(body.decode("utf-8"), keep_blank_values=True)


def meta_signature(body: bytes, app_secret: str) -> str:
    """Meta's ``X-Hub-Signature-256``: ``sha256=`` and the HMAC-SHA256 of the raw body with the
    app secret, lower-case hex."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def standard_webhooks_headers(
    secret: str | bytes,
    body: bytes,
    *,
    webhook_id: str | None = None,
    timestamp: float | None = None,
) -> dict[str, str]:
    """The Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature``) of ``body``. ``secret`` as configured (``whsec_`` + base64, or plain
    text), or the key's bytes; a fresh ``msg_`` id and the current time unless given."""
    key = secret if isinstance(secret, bytes) else signing_key(secret)
    message_id = webhook_id if webhook_id is not None else f"msg_{uuid.uuid4().hex}"
    stamp = str(int(time.time() if timestamp is None else timestamp))
    return {
        "webhook-id": message_id,
        "webhook-timestamp": stamp,
        "webhook-signature": standard_signature(key, message_id, stamp, body),
    }


def hmac_header(
    body: bytes,
    secret: str | bytes,
    *,
    prefix: str = "sha256=",
    encoding: Literal["hex", "base64"] = "hex",
) -> str:
    """One HMAC-SHA256 header over the raw body (the web connector's ``hmac-header`` mode, its
    ``hmac_prefix`` and ``hmac_encoding``); ``secret`` as configured, or the key's bytes."""
    key = secret if isinstance(secret, bytes) else signing_key(secret)
    digest = hmac.new(key, body, hashlib.sha256).digest()
    return prefix + (digest.hex() if encoding == "hex" else base64.b64encode(digest).decode())


def with_headers(request: WebhookRequest, headers: Mapping[str, str]) -> WebhookRequest:
    """A copy of ``request`` with ``headers`` added (replacing any of the same name)."""
    merged = {**request.headers, **{name.lower(): value for name, value in headers.items()}}
    return WebhookRequest.build(
        request.method, request.url, merged, request.body, request.remote_addr
    )
