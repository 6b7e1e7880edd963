"""Webhooks, framework-neutral: the request and response types and the connector base class.

``Inbox.handle_webhook(name, method, url, headers, body)`` runs the steps in this order, so
that nothing is parsed before it is verified and nothing is acknowledged before it is stored:

1. the connector exists and receives webhooks (else 404); the method is allowed (else 405);
2. the body is within the connector's limit (413) and of a type it accepts (415);
3. ``verify`` checks the signature over the raw bytes (403 — and nothing is stored);
4. ``parse`` turns the body into raw messages (400 for a malformed body);
5. the raw messages are committed (503 when storage is down, so providers retry); they are
   filed in the caller's thread, or by the worker when it runs in the process (``serve``);
6. ``respond`` builds the provider's expected answer (TwiML, JSON, ...), with the outcomes when
   they are known; ``respond_pending`` when the request waited for them in vain.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

from omnichannel.connector import Connector, ConnectorProtocol, OptionsT
from omnichannel.errors import WebhookRejected
from omnichannel.schema import RawMessage, ReceiveResult

__all__ = [
    "DEFAULT_MAX_BYTES",
    "WebhookConnector",
    "WebhookProtocol",
    "WebhookRejected",
    "WebhookRequest",
    "WebhookResponse",
    "checked_url",
    "http_url",
    "json_response",
    "same_secret",
    "signing_key",
    "standard_signature",
    "valid_host",
]

DEFAULT_MAX_BYTES = 1024 * 1024
_ORIGIN = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*:)?//([^/?#]*)")
_HOST = re.compile(
    r"(?:\[(?P<ip6>[0-9A-Fa-f:.]{2,45})\]|(?P<name>[A-Za-z0-9_.-]{1,254}))(?::(?P<port>[0-9]{1,5}))?",
    re.ASCII,
)


@dataclass(frozen=True)
class WebhookRequest:
    """One HTTP request as a provider sent it; ``headers`` keys are lower-case."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    remote_addr: str | None = None
    scratch: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """What a connector worked out while verifying, for its ``parse`` of the same request
    (a parsed form, say), so that the body is not read twice; and ``inline_acks``, the
    acknowledgement texts ``respond`` may carry, by complaint id (set by the core, which has
    recorded them as sent)."""

    @classmethod
    def build(
        cls,
        method: str,
        url: str,
        headers: Mapping[str, str] | Sequence[tuple[str, str]],
        body: bytes,
        remote_addr: str | None = None,
    ) -> WebhookRequest:
        """A request from any framework's parts; a header given twice is joined with ", " as
        WSGI servers do (RFC 9110), so that no copy of a security header is silently dropped."""
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        joined: dict[str, str] = {}
        for key, value in pairs:
            name = key.lower()
            joined[name] = f"{joined[name]}, {value}" if name in joined else value
        return cls(method.upper(), url, joined, body, remote_addr)

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> str:
        return urlsplit(self.url).query

    def query_params(self) -> dict[str, str]:
        return dict(parse_qsl(self.query, keep_blank_values=True))

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-case (``application/json``)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass
class WebhookResponse:
    """What to answer: status, body and headers."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    results: list[ReceiveResult] = field(default_factory=list)


def json_response(status: int, data: Any) -> WebhookResponse:
    import json

    return WebhookResponse(
        status, json.dumps(data, ensure_ascii=False).encode(), "application/json; charset=utf-8"
    )


class WebhookConnector(Connector[OptionsT]):
    """A connector that providers call over HTTP."""

    content_types: ClassVar[tuple[str, ...]] = ("application/json",)
    default_max_bytes: ClassVar[int] = DEFAULT_MAX_BYTES

    def max_bytes(self) -> int:
        return int(getattr(self.options, "max_bytes", None) or self.default_max_bytes)

    def public_url(self) -> str | None:
        """How the provider reaches this connector (``server.public_url``), when configured:
        the request URL is then rebuilt from it, whatever the ``Host`` header says."""
        return self.context.public_url

    def handshake(self, request: WebhookRequest) -> WebhookResponse:
        """Answer a GET (a subscription handshake); most providers have none."""
        raise WebhookRejected(405, "method not allowed")

    def verify(self, request: WebhookRequest) -> None:
        """Check the signature over the raw body; raise WebhookRejected(403) if it fails."""
        raise NotImplementedError

    def parse(self, request: WebhookRequest) -> list[RawMessage]:
        """The raw messages in a verified request (may be none, e.g. a status callback)."""
        raise NotImplementedError

    def waits_for_filing(self) -> bool:
        """Whether the answer carries the filing result (a ticket), so that the request waits,
        up to ``filing.wait`` seconds, for its message to be filed. Provider webhooks do not:
        they are answered once their payload is stored. Default: when acknowledging inline."""
        return self.acknowledges_inline

    def respond(self, request: WebhookRequest, results: list[ReceiveResult]) -> WebhookResponse:
        """The answer the provider expects once the payload is stored: ``results`` are the
        filing results when they are known (filed in the caller's thread, or waited for), and
        empty when the message is filed later."""
        return json_response(200, {"results": [r.model_dump(mode="json") for r in results]})

    def respond_pending(
        self, request: WebhookRequest, receipt: str, status_url: str
    ) -> WebhookResponse:
        """The answer when the request waited (``waits_for_filing``) and its message is stored
        but not filed yet: by default the answer without results."""
        return self.respond(request, [])


@runtime_checkable
class WebhookProtocol(ConnectorProtocol, Protocol):
    """A connector providers call over HTTP (what :class:`WebhookConnector` provides)."""

    content_types: ClassVar[tuple[str, ...]]

    def max_bytes(self) -> int:
        """The largest body accepted (413 past it)."""
        ...

    def verify(self, request: WebhookRequest) -> None:
        """Raise WebhookRejected(403) unless the request is signed by the provider."""
        ...

    def parse(self, request: WebhookRequest) -> list[RawMessage]:
        """The raw messages of a verified request."""
        ...

    def respond(self, request: WebhookRequest, results: list[ReceiveResult]) -> WebhookResponse:
        """The answer the provider expects once the payload is stored."""
        ...


# -- Standard Webhooks (our web portal's webhooks, and the forwards we send) ------------------


def signing_key(secret: str) -> bytes:
    """Standard Webhooks: ``whsec_`` + base64 is the key's bytes; any other secret its UTF-8."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_") :], validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode("utf-8")


def standard_signature(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``."""
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


# -- values from outside, checked before they are used ----------------------------------------


def same_secret(expected: str | bytes, given: str | bytes) -> bool:
    """Constant-time equality of a secret (or a signature) and a value from a request, whatever
    characters the value holds: ``hmac.compare_digest`` raises TypeError on a non-ASCII str, so
    both are compared as UTF-8 bytes (a lone surrogate as its own bytes: it can never match)."""
    return hmac.compare_digest(_utf8(expected), _utf8(given))


def _utf8(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")


def valid_host(value: str) -> bool:
    """Whether ``value`` is a ``host[:port]`` a URL may be rebuilt from: a DNS name or IPv4
    address (labels of letters, digits, ``-`` and ``_``, at most 63 each, 253 in all), or a
    bracketed IPv6 address; a port from 1 to 65535."""
    match = _HOST.fullmatch(value)
    if match is None or (match["port"] is not None and not 0 < int(match["port"]) < 65536):
        return False
    if match["ip6"] is not None:
        try:
            ipaddress.IPv6Address(match["ip6"])
        except ValueError:
            return False
        return True
    labels = match["name"].removesuffix(".").split(".")
    return len(match["name"]) <= 254 and all(0 < len(label) <= 63 for label in labels)


def http_url(value: str) -> str:
    """``value`` without a trailing ``/`` when it is an ``http://`` or ``https://`` URL with a
    valid ``host[:port]`` (a configured public URL, an API base); else ValueError (config)."""
    match = _ORIGIN.match(value)
    if not value.lower().startswith(("http://", "https://")) or match is None:
        raise ValueError("must be an http:// or https:// URL")
    if not valid_host(match.group(1)):
        raise ValueError("must be an http:// or https:// URL with a valid host[:port]")
    return value.rstrip("/")


def checked_url(url: str, public_url: str | None) -> str:
    """The request URL a connector may rebuild a signature (or a status URL) from. With a
    public URL configured, its scheme and host replace the request's, so that the ``Host``
    header does not matter at all; without one, the request's host must be a valid
    ``host[:port]`` (else 400: a malformed request, RFC 9112)."""
    match = _ORIGIN.match(url)
    rest = url[match.end() :] if match else url
    if public_url:
        public = _ORIGIN.match(public_url)
        return (public.group(0) if public else "") + rest
    if match is not None and not valid_host(match.group(1)):
        raise WebhookRejected(400, "malformed Host header")
    return url
