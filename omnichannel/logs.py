"""Logging set-up for the command line: plain lines on stderr, secrets scrubbed."""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from omnichannel.privacy import LOG_MASKER, Masker

__all__ = [
    "JsonFormatter",
    "MaskingFilter",
    "OncePerInterval",
    "RedactingFilter",
    "TextFormatter",
    "configure_logging",
    "configure_server_logging",
    "one_line",
]


class RedactingFilter(logging.Filter):
    """Replace every known secret in a log record's final text with ``[redacted]``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg, record.args = self.scrub(record.getMessage()), None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
        return True

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return text


class MaskingFilter(logging.Filter):
    """Mask phone numbers, e-mail addresses and NIK and NPWP numbers in a log record's final
    text, its message and its exception's (``[privacy] mask_logs``, on by default)."""

    def __init__(self, masker: Masker = LOG_MASKER) -> None:
        super().__init__()
        self.masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # arguments that do not fit the format: their text, masked
            text = f"{record.msg} {record.args}"
        record.msg, record.args = self.masker.text(text), None
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.masker.text(exc_text)
        return True


class OncePerInterval(logging.Filter):
    """Let one record through per ``interval`` seconds; the next one let through says how many
    were held back meanwhile.

    For messages that come with every request while they hold: waitress warns "Task queue
    depth is N" each time a request has to wait for a free server thread."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval, self.clock = interval, clock
        self._lock = threading.Lock()
        self._next = -math.inf
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        with self._lock:
            if now < self._next:
                self._held += 1
                return False
            held, self._held = self._held, 0
            self._next = now + self.interval
        if held:
            record.msg = f"{record.getMessage()} ({held} more like it not shown since the last)"
            record.args = None
        return True


_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped (``\\n``,
    ``\\x1b``), so that what a sender wrote cannot start a forged log line or drive the
    operator's terminal."""
    return _CONTROLS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class TextFormatter(logging.Formatter):
    """``time level logger: message``, the message on one line (:func:`one_line`); a
    traceback follows on its own lines, as usual."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601 UTC), ``level``, ``logger``, ``message``
    and, for an error, ``exception`` (its text, scrubbed like the message)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text or record.exc_info:
            line["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(line, ensure_ascii=False)


def configure_logging(
    level: int = logging.INFO,
    secrets: Iterable[str] = (),
    *,
    fmt: str = "text",
    mask: bool = True,
) -> None:
    """Log to stderr as ``time level logger: message`` (or JSON lines, ``fmt="json"``), with
    ``secrets`` scrubbed and, with ``mask`` (``[privacy] mask_logs``), personal data masked
    (:class:`MaskingFilter`)."""
    _configure(["omnichannel"], level, secrets, fmt, mask)


def configure_server_logging(
    level: int = logging.INFO,
    secrets: Iterable[str] = (),
    *,
    queue_interval: float = 60.0,
    fmt: str = "text",
    mask: bool = True,
) -> None:
    """``configure_logging`` for ``omnichannel serve``: waitress's own lines too (that it
    serves, and its errors), in the same form and scrubbed the same way; its "Task queue
    depth" warning at most once per ``queue_interval`` seconds, with a count of the others."""
    _configure(["omnichannel", "waitress"], level, secrets, fmt, mask)
    queue = logging.getLogger("waitress.queue")
    for old in [f for f in queue.filters if isinstance(f, OncePerInterval)]:
        queue.removeFilter(old)
    queue.addFilter(OncePerInterval(queue_interval))


def _configure(
    names: list[str], level: int, secrets: Iterable[str], fmt: str, mask: bool = True
) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter(secrets))
    if mask:
        handler.addFilter(MaskingFilter())
    for name in names:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
