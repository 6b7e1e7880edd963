"""The log scan (tests/logscan.py) that the whole suite runs under: it must catch what it is
there to catch, or its silence proves nothing."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

LEAKY = """
import logging

ACCESS_TOKEN = "EAAG-uji-token-rahasia-123"

def test_logs() -> None:
    log = logging.getLogger("omnichannel.probe")
    log.info({line!r})
"""


def run(pytester: pytest.Pytester, line: str) -> pytest.RunResult:
    pytester.makepyfile(test_probe=LEAKY.format(line=line))
    pytester.makeconftest("")
    return pytester.runpytest_subprocess(
        "-p", "tests.logscan", "-p", "no:cacheprovider", "--rootdir", str(pytester.path)
    )


@pytest.fixture
def pytester_with_tests(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("OMNICHANNEL_LOGSCAN", raising=False)
    return pytester


@pytest.mark.parametrize(
    "line, kind",
    [
        ("filed a message from +6281234567890", "phone"),
        ("reply to 081234567890 queued", "phone"),
        ("mail from warga.desa@example.co.id refused", "e-mail"),
        ("graph said: bad token EAAG-uji-token-rahasia-123", "secret"),
    ],
)
def test_a_phone_an_address_or_a_secret_in_an_info_line_fails_the_run(
    pytester_with_tests: pytest.Pytester, line: str, kind: str
) -> None:
    """A passing test whose code logs a full phone number, an e-mail address or a secret the
    tests declare makes the whole run fail, naming the test and what leaked."""
    result = run(pytester_with_tests, line)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*1 passed*"])
    result.stdout.fnmatch_lines([f"*test_probe.py::test_logs: omnichannel.probe INFO: {kind} *"])


@pytest.mark.parametrize(
    "line",
    [
        "filed a message from +62812****7890",
        "mail <0f3a9c.ADU-2026-000001@omnichannel.example> sent",
        "ticket ADU-2026-000123 filed, 3 messages",
    ],
)
def test_masked_numbers_and_message_ids_pass(
    pytester_with_tests: pytest.Pytester, line: str
) -> None:
    """A masked phone, a Message-ID and a ticket are not personal data: the run passes."""
    result = run(pytester_with_tests, line)
    assert result.ret == pytest.ExitCode.OK
