"""Configuration: one TOML file, typed and validated at start.

Any string may be ``${ENV_NAME}`` (or ``${ENV_NAME:-default}``); secrets should be.  Every problem
is reported by key path (``connectors[2].auth_token: missing``) in one :class:`ConfigError`, and
secrets never appear in ``repr``, logs or error messages.  Without a file the embedded defaults
apply: SQLite at ``./omnichannel.db`` and one ``files`` connector reading ``./inbox``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from normalizer.similarity import MERGE_THRESHOLD, RELATED_THRESHOLD
from omnichannel.errors import ConfigError, UnknownConnector
from omnichannel.mail import SmtpOptions
from omnichannel.privacy import DEFAULT_TEXT_KINDS, KINDS
from omnichannel.routing import Route, Router, compile_pattern

__all__ = [
    "AcknowledgementConfig",
    "Config",
    "ConnectorConfig",
    "DatabaseConfig",
    "DeadlinesConfig",
    "FilingConfig",
    "PrivacyConfig",
    "RetentionConfig",
    "ServerConfig",
    "SurveyConfig",
    "TicketsConfig",
    "default_config",
    "format_validation_error",
    "load_config",
]

ENV_VAR = "OMNICHANNEL_CONFIG"
DEFAULT_PATH = "omnichannel.toml"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


STATUS_ALLOW = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
)
"""Who may read /healthz and /metrics by default: loopback and private networks (a monitor
beside the daemon, a container network), not the internet."""

SUPPORTED_STORES = {"sqlite": None, "postgresql": "postgres"}
"""Backends of the store, and the extra that installs each one's driver."""


class DatabaseConfig(_Section):
    url: str = "sqlite:///omnichannel.db"
    auto_migrate: bool = True
    """Bring the schema to the newest revision when the store is opened."""

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        """A URL SQLAlchemy can read, of a backend the store supports, whose driver is here."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        from omnichannel.store.engine import normalize_url

        try:
            url = normalize_url(make_url(value))
        except (ArgumentError, ValueError):
            raise ValueError("not a database URL (sqlite:///PATH or postgresql://…)") from None
        backend = url.get_backend_name()
        if backend not in SUPPORTED_STORES:
            raise ValueError(
                f"{backend} is not supported as the store (use sqlite or postgresql; "
                "MariaDB/MySQL is read only as a Gammu gateway's database)"
            )
        try:
            url.get_dialect().import_dbapi()
        except (ImportError, NoSuchModuleError):
            extra = SUPPORTED_STORES[backend]
            raise ValueError(
                f"the {backend} driver is not installed: pip install 'omnichannel[{extra}]'"
            ) from None
        return value


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = None
    connection_limit: int = Field(default=1000, ge=10)
    """Open connections the server keeps before it stops accepting: well above what slow or
    idle clients can hold, so that they cannot keep a provider's webhook out."""
    idle_timeout: int = Field(default=30, ge=1)
    """Seconds a connection may send nothing before it is closed."""
    storage_timeout: float = Field(default=0.8, gt=0, le=60)
    """Seconds each database transaction of an HTTP request may take (PostgreSQL): past
    that the connection is cut and the request answered 503, so a database that hangs costs a
    provider a quick retry, not a wait."""
    status_token: SecretStr | None = None
    """A bearer token /healthz and /metrics require (``Authorization: Bearer …``), else 401;
    none by default. Empty (``${STATUS_TOKEN:-}`` unset) is none."""
    status_allow: list[str] = Field(default_factory=lambda: list(STATUS_ALLOW))
    """Client networks (CIDR) that may read /healthz and /metrics, else 403: checked against
    the connecting address (``REMOTE_ADDR``; ``X-Forwarded-For`` is never trusted). Loopback
    and private networks by default; ``["0.0.0.0/0", "::/0"]`` for anyone, ``[]`` for none."""

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        from omnichannel.webhook import http_url

        return http_url(value) if value else None

    @field_validator("status_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @field_validator("status_allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for index, item in enumerate(value):
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                raise ValueError(f"item {index} is not an IP network (CIDR)") from None
        return [item.strip() for item in value]

    def status_networks(self) -> list[IPNetwork]:
        """``status_allow`` as networks."""
        return [ipaddress.ip_network(item, strict=False) for item in self.status_allow]


class TicketsConfig(_Section):
    prefix: str = Field(default="ADU", pattern=r"^[A-Z][A-Z0-9]{0,9}$")


class AcknowledgementConfig(_Section):
    enabled: bool = True
    language: str = Field(default="id", pattern=r"^(id|en)$")
    """The language of what is sent when the complaint's own is neither ``id`` nor ``en``."""
    template: str | None = None
    """The acknowledgement text (with ``{ticket}``) for every channel and language."""
    templates: dict[str, str] = Field(default_factory=dict)
    """Texts by ``kind[.channel].language`` (``acknowledgement.email.en``,
    ``notification.resolved.id``, ``reply.id``, ``subject.en``), overriding the defaults."""
    daily_limit: int = Field(default=3, ge=0)
    """Automatic messages (acknowledgements, notifications) per citizen address per day;
    0 for no limit."""
    sms_connector: str | None = None
    """A connector that sends SMS (twilio, gammu) for complaints that came in on another
    channel (web, files) with only a phone number to answer."""
    reply_window_days: int = Field(default=7, ge=0)
    """An SMS or WhatsApp message from a citizen the team answered within this many days is
    the citizen's answer: it joins that complaint."""


class SurveyConfig(_Section):
    """Satisfaction surveys: a resolved complaint's citizen is asked for a rating of 1 to 5
    on the channel it is answered on (``docs/survey.md``). Texts: the kinds ``survey``,
    ``survey.reminder`` and ``survey.ambiguous`` under ``[acknowledgements.templates]``."""

    enabled: bool = True
    """Ask (with ``[acknowledgements] enabled``; never an anonymous complaint)."""
    delay_hours: float = Field(default=1, ge=0, le=24 * 30)
    """Hours after the resolution the survey is sent (its notification goes first)."""
    window_days: int = Field(default=14, ge=1, le=365)
    """How long after the survey (or its reminder) an answer counts as one."""
    reminder_days: int = Field(default=3, ge=0, le=60)
    """Days after the survey one reminder goes when no answer came; 0 for none."""


class OutboxConfig(_Section):
    max_attempts: int = Field(default=10, ge=1, le=100)
    """Attempts of one delivery before it is ``dead`` (``outbox retry`` sends it again)."""
    backoff: float = Field(default=30.0, gt=0, le=86_400)
    """Seconds before the second attempt; doubling each time (with jitter) to ``backoff_max``.
    A ``Retry-After`` from the far side is waited for when it asks for longer."""
    backoff_max: float = Field(default=3600.0, gt=0, le=7 * 86_400)
    lease: float = Field(default=120.0, gt=0, le=3600)
    """Seconds a worker holds a delivery it is sending; a worker killed meanwhile leaves it to
    another after that."""
    batch_size: int = Field(default=20, ge=1, le=1000)
    interval: float = Field(default=2.0, gt=0, le=3600)
    """Seconds between a worker's looks for due deliveries when it found none."""


class ForwarderConfig(BaseModel):
    """One ``[[forwarders]]`` entry: name, type, which events of which agencies, and the
    type's own options (``url``/``secret`` for ``webhook``, ``to``/``addresses`` for
    ``email``)."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    type: str
    events: list[str] = Field(
        default_factory=lambda: [
            "complaint.created",
            "complaint.assigned",
            "complaint.status_changed",
        ]
    )
    """Among ``created``, ``assigned``, ``status_changed`` (or ``complaint.``-prefixed)."""
    agencies: list[str] = Field(default_factory=list)
    """Only complaints routed to these agencies (every agency when empty)."""

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: list[str]) -> list[str]:
        from omnichannel.forwarders import EVENTS

        full = [v if v.startswith("complaint.") else f"complaint.{v}" for v in value]
        unknown = sorted(set(full) - set(EVENTS))
        if unknown:
            raise ValueError(f"unknown events {unknown}; known: {list(EVENTS)}")
        return full

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class DedupeConfig(_Section):
    window_hours: float = Field(default=72, ge=0, le=24 * 365)
    """A person's message that is the same complaint as one of their open complaints with a
    message within this many hours is ``merged`` into it (0: never)."""
    same_sender_window_days: float | None = Field(default=None, ge=0, le=365)
    """The same window in days (the older name; overrides ``window_hours`` when set)."""
    merge_threshold: float = Field(default=MERGE_THRESHOLD, gt=0, le=1)
    """How alike (Dice over normalized words, 0 to 1) a resend must be; see docs/dedupe.md."""
    related_threshold: float = Field(default=RELATED_THRESHOLD, gt=0, le=1)
    """How alike two complaints must be to share a cluster."""
    clusters: bool = True
    """Put complaints about the same matter in clusters."""
    cluster_window_days: float = Field(default=30, gt=0, le=3650)
    """A new complaint is clustered with related complaints received within this many days."""

    @property
    def window(self) -> timedelta:
        if self.same_sender_window_days is not None:
            return timedelta(days=self.same_sender_window_days)
        return timedelta(hours=self.window_hours)


class FilingConfig(_Section):
    wait: float = Field(default=5.0, ge=0, le=60)
    """Seconds a webhook whose answer carries the filing result (``web``, inline TwiML) waits
    for its message to be filed before it answers without it (202, or an empty TwiML)."""
    batch_size: int = Field(default=100, ge=1, le=10_000)
    """Raw messages a worker claims and files per transaction."""
    interval: float = Field(default=1.0, gt=0, le=3600)
    """Seconds between a worker's looks for rows stored by other processes."""


class PrivacyConfig(_Section):
    """Masking of personal data: phones, e-mail addresses, NIK and NPWP numbers (see
    ``docs/privacy.md``)."""

    mask_in_text: list[str] = Field(default_factory=lambda: list(DEFAULT_TEXT_KINDS))
    """What is masked inside a complaint's text (subject, body, messages) in exports and
    forwards: ``nik``, ``npwp``, ``phones``, ``emails``. The team's own view shows the text
    as written."""
    mask_logs: bool = True
    """Mask phone numbers, e-mail addresses and NIK and NPWP numbers in every log line."""
    keywords_anonymous: list[str] = Field(default_factory=lambda: ["#ANONIM"])
    """What a citizen writes in an SMS, WhatsApp message or e-mail to complain anonymously
    (a whole word, any case; taken out of the text)."""
    keywords_confidential: list[str] = Field(default_factory=lambda: ["#RAHASIA"])
    """What a citizen writes to complain confidentially: the team sees who, exports and
    forwards never do."""

    @field_validator("keywords_anonymous", "keywords_confidential")
    @classmethod
    def _keywords(cls, value: list[str]) -> list[str]:
        words = [word.strip() for word in value]
        if any(not word or len(word) > 64 or any(c.isspace() for c in word) for word in words):
            raise ValueError("each keyword is one word of at most 64 characters")
        return list(dict.fromkeys(words))

    @field_validator("mask_in_text")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown kinds {unknown}; known: {list(KINDS)}")
        return list(dict.fromkeys(value))


class RetentionConfig(_Section):
    """How long a finished complaint keeps its personal data after its last update
    (``omnichannel purge``, see ``docs/retention.md``): ``5y``, ``18m``, ``90d``, ``2w``.
    Complaints still being worked on (open, assigned, in progress) are never purged."""

    closed: str = "5y"
    """Age at which a closed complaint is purged."""
    resolved: str = "5y"
    """Age at which a resolved complaint is purged."""
    rejected: str = "5y"
    """Age at which a rejected complaint is purged."""

    @field_validator("closed", "resolved", "rejected")
    @classmethod
    def _an_age(cls, value: str) -> str:
        from omnichannel.retention import parse_age

        return parse_age(value).text


class CategoryDeadlines(_Section):
    verify_days: int | None = Field(default=None, ge=0, le=365)
    follow_up_days: int | None = Field(default=None, ge=0, le=365)


class DeadlinesConfig(_Section):
    """Working days in the office's timezone (weekends and ``holidays`` skipped)."""

    verify_days: int = Field(default=3, ge=0, le=365)
    """A new complaint is due (``due_at``) this many working days after it was received."""
    follow_up_days: int = Field(default=5, ge=0, le=365)
    """Once assigned to an agency, it is due this many working days after the assignment."""
    holidays: list[date] = Field(default_factory=list)
    categories: dict[str, CategoryDeadlines] = Field(default_factory=dict)
    """Per category: ``[deadlines.categories.licensing] verify_days = 2``."""

    def days(self, category: str | None) -> tuple[int, int]:
        """(verify, follow-up) working days for a category."""
        own = self.categories.get(category or "")
        verify = own.verify_days if own and own.verify_days is not None else self.verify_days
        follow = (
            own.follow_up_days if own and own.follow_up_days is not None else self.follow_up_days
        )
        return verify, follow


class RouteConfig(_Section):
    """One ``[[routes]]`` rule: conditions, then where a matching complaint goes."""

    name: str | None = None
    pattern: str | None = None
    """A regular expression searched in the subject and body, case-insensitive."""
    keywords: list[str] = Field(default_factory=list)
    """Words, any of which (whole, case-insensitive) in the subject and body matches."""
    channel: str | None = None
    connector: str | None = None
    agency: str = Field(min_length=1, max_length=64)
    category: str | None = Field(default=None, max_length=64)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value


class RoutingConfig(_Section):
    default_agency: str = Field(default="DPMPTSP", min_length=1, max_length=64)
    """The coordinating office: where a complaint no rule matches goes."""
    default_category: str = "other"
    categories: list[str] = Field(
        default_factory=lambda: [
            "investment",
            "licensing",
            "non-licensing",
            "service-quality",
            "other",
        ]
    )


class ConnectorConfig(BaseModel):
    """One ``[[connectors]]`` entry: name, type, and the type's own options."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    type: str
    enabled: bool = True

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Config(_Section):
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    tickets: TicketsConfig = Field(default_factory=TicketsConfig)
    acknowledgements: AcknowledgementConfig = Field(default_factory=AcknowledgementConfig)
    dedupe: DedupeConfig = Field(default_factory=DedupeConfig)
    filing: FilingConfig = Field(default_factory=FilingConfig)
    deadlines: DeadlinesConfig = Field(default_factory=DeadlinesConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    routes: list[RouteConfig] = Field(default_factory=list)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    smtp: SmtpOptions | None = None
    """Outgoing mail (e-mail acknowledgements, replies, the email forwarder); none without."""
    forwarders: list[ForwarderConfig] = Field(default_factory=list)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    survey: SurveyConfig = Field(default_factory=SurveyConfig)
    timezone: str = "Asia/Makassar"
    region: str = Field(default="ID", pattern=r"^[A-Z]{2}$")
    connectors: list[ConnectorConfig] = Field(
        default_factory=lambda: [
            ConnectorConfig.model_validate({"name": "files", "type": "files", "path": "./inbox"})
        ]
    )
    source: str | None = Field(default=None, exclude=True)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value

    @field_validator("forwarders")
    @classmethod
    def _unique_forwarders(cls, value: list[ForwarderConfig]) -> list[ForwarderConfig]:
        names = [item.name for item in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"forwarder name {twice[0]!r} is used twice")
        return value

    @field_validator("connectors")
    @classmethod
    def _unique_names(cls, value: list[ConnectorConfig]) -> list[ConnectorConfig]:
        seen: set[str] = set()
        for item in value:
            if item.name in seen:
                raise ValueError(f"connector name {item.name!r} is used twice")
            seen.add(item.name)
        return value

    def router(self) -> Router:
        """The routing rules, compiled, in their order."""
        rules = tuple(
            Route(
                name=rule.name or f"routes[{index}]",
                agency=rule.agency,
                category=rule.category,
                pattern=compile_pattern(rule.pattern, rule.keywords),
                channel=rule.channel,
                connector=rule.connector,
            )
            for index, rule in enumerate(self.routes)
        )
        return Router(rules, self.routing.default_agency, self.routing.default_category)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def connector(self, name: str) -> ConnectorConfig:
        for item in self.connectors:
            if item.name == name:
                return item
        raise UnknownConnector("name", name, [c.name for c in self.connectors])


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def format_validation_error(
    error: ValidationError, prefix: tuple[int | str, ...] = ()
) -> list[str]:
    """One ``key.path: problem`` line per error, never echoing the offending value."""
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        loc = prefix + tuple(p for p in item["loc"] if not str(p).startswith("function-"))
        if item["type"] == "missing":
            what = "missing"
        elif item["type"] == "extra_forbidden":
            what = "unknown key"
        else:
            what = item["msg"].removeprefix("Value error, ")
        lines.append(f"{_path(loc)}: {what}")
    return lines


def _interpolate(
    value: Any, loc: tuple[int | str, ...], env: Mapping[str, str], problems: list[str]
) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, (*loc, k), env, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*loc, i), env, problems) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(f"{_path(loc)}: environment variable {name} is not set")
        return ""

    return _ENV_PATTERN.sub(substitute, value)


def _validate_connectors(data: Mapping[str, Any], problems: list[str]) -> None:
    """Each entry's type must be registered and its options valid for that type."""
    from omnichannel.registry import connector_class

    items = data.get("connectors")
    if not isinstance(items, list):
        return
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            continue  # reported by the top-level validation
        try:
            cls = connector_class(item["type"])
        except UnknownConnector as exc:
            problems.append(f"connectors[{index}].type: {exc}")
            continue
        options = {k: v for k, v in item.items() if k not in ConnectorConfig.model_fields}
        try:
            cls.Options.model_validate(options)
        except ValidationError as exc:
            problems.extend(format_validation_error(exc, ("connectors", index)))


def _validate_forwarders(data: Mapping[str, Any], problems: list[str]) -> None:
    """Each forwarder's type must exist and its options be valid for that type."""
    from omnichannel.forwarders import forwarder_class

    items = data.get("forwarders")
    if not isinstance(items, list):
        return
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            continue  # reported by the top-level validation
        try:
            cls = forwarder_class(item["type"])
        except LookupError as exc:
            problems.append(f"forwarders[{index}].type: {exc.args[0]}")
            continue
        model = getattr(cls, "Options", None)
        if model is None:
            continue
        options = {k: v for k, v in item.items() if k not in ForwarderConfig.model_fields}
        try:
            model.model_validate(options)
        except ValidationError as exc:
            problems.extend(format_validation_error(exc, ("forwarders", index)))
        if item["type"] == "email" and data.get("smtp") is None:
            problems.append(f"forwarders[{index}]: the email forwarder needs an [smtp] section")


def _check_references(config: Config, problems: list[str]) -> None:
    """Names that must name a connector."""
    names = {c.name for c in config.connectors}
    via = config.acknowledgements.sms_connector
    if via is not None and via not in names:
        problems.append(f"acknowledgements.sms_connector: no connector named {via!r}")


def parse_config(
    data: Mapping[str, Any], *, source: str | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Validate a mapping (as read from TOML); raise ConfigError listing every problem."""
    problems: list[str] = []
    data = _interpolate(dict(data), (), os.environ if env is None else env, problems)
    config = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += format_validation_error(exc)
    _validate_connectors(data, problems)
    _validate_forwarders(data, problems)
    if config is not None:
        _check_references(config, problems)
    if problems or config is None:
        raise ConfigError(problems)
    config.source = source
    return config


def default_config(**database: Any) -> Config:
    """The embedded defaults (optionally with another database URL)."""
    config = Config()
    if database:
        config.database = DatabaseConfig(**database)
    return config


def load_config(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> Config:
    """Read ``path`` (or ``$OMNICHANNEL_CONFIG``, or ``./omnichannel.toml``, or the defaults)."""
    environ = os.environ if env is None else env
    explicit = path is not None or ENV_VAR in environ
    chosen = Path(path if path is not None else environ.get(ENV_VAR, DEFAULT_PATH))
    if not chosen.exists():
        if explicit:
            raise ConfigError([f"{chosen}: no such configuration file"])
        return parse_config({}, source=None, env=environ)
    try:
        data = tomllib.loads(chosen.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{chosen}: not valid TOML: {exc}"]) from None
    except OSError as exc:
        raise ConfigError([f"{chosen}: cannot be read: {exc.strerror}"]) from None
    return parse_config(data, source=str(chosen), env=environ)
