"""A pytest plugin: every log record the test suite emits is scanned for personal data and
secrets — a full phone number, an e-mail address, or a secret or token defined by the tests —
and the run fails, naming the test and the line, when one is found.

Records are read as the handlers see them, after their filters (the daemon's redacting filter
has replaced known secrets by then), so this checks what an operator's log would hold. The
``omnichannel``, ``connectors`` and ``normalizer`` loggers are scanned from INFO up, the level
the daemon logs at by default. ``OMNICHANNEL_LOGSCAN=0`` turns it off (to debug a failure).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest

PHONE = re.compile(r"(?<![\w*])(?:\+?62|0)8\d{7,12}(?![\w*])|(?<![\w*])\+[1-9]\d{9,14}(?![\w*])")
"""A full Indonesian mobile number (``+62812…``, ``62812…``, ``0812…``) or any E.164 number."""
EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
MESSAGE_ID = re.compile(r"<[^<>\s]+@[^<>\s]+>")
"""An RFC 5322 Message-ID (``<id@host>``): an identifier of a mail, not a person's address."""
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_KEY|AUTH", re.IGNORECASE)
LOGGERS = ("omnichannel", "connectors", "normalizer")


@dataclass
class Scanner:
    """Collects what the records of one session leaked."""

    test: str = "(collection)"
    found: list[str] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    secrets: list[str] = field(default_factory=list)

    def check(self, record: logging.LogRecord, text: str) -> None:
        if id(record) in self.seen:
            return
        self.seen.add(id(record))
        for kind, value in self.leaks(text):
            self.found.append(f"{self.test}: {record.name} {record.levelname}: {kind} {value!r}")

    def leaks(self, text: str) -> Iterator[tuple[str, str]]:
        for match in PHONE.finditer(text):
            yield "phone", match.group()
        for match in EMAIL.finditer(MESSAGE_ID.sub(" ", text)):
            yield "e-mail", match.group()
        for secret in self.secrets:
            if secret in text:
                yield "secret", secret[:4] + "…"


def declared_secrets(modules: Iterable[ModuleType]) -> list[str]:
    """String constants the test modules name as secrets or tokens (``SECRET``,
    ``ACCESS_TOKEN``, ``APP_SECRET``, ``PASSWORD``…)."""
    found: set[str] = set()
    for module in modules:
        for attr, value in vars(module).items():
            secret = attr.isupper() and SECRET_NAME.search(attr) and isinstance(value, str)
            if secret and len(value) >= 8:
                found.add(value)
    return sorted(found, key=len, reverse=True)


_SCANNER = Scanner()
_ORIGINAL_HANDLE = logging.Handler.handle


def _handle(self: logging.Handler, record: logging.LogRecord) -> Any:
    passed = _ORIGINAL_HANDLE(self, record)
    if passed:
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += "\n" + (
                    record.exc_text or logging.Formatter().formatException(record.exc_info)
                )
        except Exception:  # a record that cannot be formatted is the handler's business
            return passed
        _SCANNER.check(record, text)
    return passed


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("OMNICHANNEL_LOGSCAN", "1") == "0":
        return
    logging.Handler.handle = _handle  # type: ignore[method-assign]
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)


def pytest_collection_finish(session: pytest.Session) -> None:
    helpers = [m for n, m in sys.modules.items() if n == "tests" or n.startswith("tests.")]
    collected = [getattr(item, "module", None) for item in session.items]
    _SCANNER.secrets = declared_secrets({*helpers, *(m for m in collected if m is not None)})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _SCANNER.test = item.nodeid
    yield
    _SCANNER.test = "(between tests)"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _SCANNER.found:
        return
    shown = _SCANNER.found[:50]
    more = len(_SCANNER.found) - len(shown)
    lines = "\n  ".join(shown) + (f"\n  … and {more} more" if more else "")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = f"personal data or secrets in the logs ({len(_SCANNER.found)} records):\n  {lines}"
    if reporter is not None:
        reporter.write_sep("=", "log scan", red=True)
        reporter.write_line(message)
    else:
        print(message, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
