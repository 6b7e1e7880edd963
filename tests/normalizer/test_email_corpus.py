"""The e-mail corpus: every ``tests/testdata/email/*.eml`` against its ``.expected.json``.

Each fixture is decoded with :func:`decode_email` and normalized as the pipeline does; the
expectation file lists only the fields that matter for that fixture (see the README there):
InboundMessage field names, plus ``body``, ``text_full``, ``language`` and ``message_id`` from
the normalized message (``flags`` too come from it, so ``quoted_text_trimmed`` can be checked).

Matching: dicts are subsets (a ``null`` value means "absent or null"), lists are exact, other
values equal; ``{"contains": ..., "not_contains": [...], "starts_with": ..., "ends_with": ...}``
checks a long text, ``{"includes": [...]}`` a list that may hold more.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from normalizer.email import decode_email, email_external_id
from normalizer.normalize import normalize

FIXTURES = Path(__file__).resolve().parent.parent / "testdata" / "email"
RECEIVED = datetime(2026, 11, 30, 2, 15, tzinfo=UTC)
EXPECTED_SUFFIX = ".expected.json"
MATCHERS = frozenset({"contains", "not_contains", "starts_with", "ends_with", "includes"})
NORMALIZED_FIELDS = ("body", "text_full", "language", "message_id", "flags")
MIN_FIXTURES = 40
MAX_CORPUS_BYTES = 2 * 1024 * 1024

FIXTURE_NAMES = sorted(path.stem for path in FIXTURES.glob("*.eml"))


def observe(payload: bytes) -> dict[str, Any]:
    """What the decoder and normalizer make of one payload, as plain JSON values."""
    inbound = decode_email(payload, connector="imap", external_id=email_external_id(payload))
    normalized = normalize(inbound, connector="imap", received_at=RECEIVED, region="ID")
    observed: dict[str, Any] = inbound.model_dump(mode="json", exclude={"attachments"})
    observed["attachments"] = [
        attachment.model_dump(mode="json", include={"filename", "content_type", "size", "sha256"})
        for attachment in inbound.attachments
    ]
    normalized_json = normalized.model_dump(mode="json")
    observed.update({name: normalized_json[name] for name in NORMALIZED_FIELDS})
    return observed


def mismatches(actual: Any, expected: Any, path: str = "$") -> list[str]:
    """Every way ``actual`` fails ``expected`` (empty when it matches)."""
    if isinstance(expected, dict) and expected and set(expected) <= MATCHERS:
        return _matcher_mismatches(actual, expected, path)
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {actual!r}"]
        return [
            problem
            for key, value in expected.items()
            for problem in _field_mismatches(actual, key, value, f"{path}.{key}")
        ]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {expected!r}, got {actual!r}"]
        return [
            problem
            for index, (got, want) in enumerate(zip(actual, expected, strict=True))
            for problem in mismatches(got, want, f"{path}[{index}]")
        ]
    return [] if actual == expected else [f"{path}: expected {expected!r}, got {actual!r}"]


def _field_mismatches(actual: dict[str, Any], key: str, expected: Any, path: str) -> list[str]:
    if expected is None:
        value = actual.get(key)
        return [] if value is None else [f"{path}: expected absent or null, got {value!r}"]
    if key not in actual:
        return [f"{path}: missing"]
    return mismatches(actual[key], expected, path)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matcher_mismatches(actual: Any, expected: dict[str, Any], path: str) -> list[str]:
    if "includes" in expected:
        items = actual if isinstance(actual, list) else []
        return [
            f"{path}: no item matches {want!r}"
            for want in expected["includes"]
            if not any(not mismatches(got, want) for got in items)
        ]
    if not isinstance(actual, str):
        return [f"{path}: expected text, got {actual!r}"]
    problems = [
        f"{path}: {wanted!r} not in {actual!r}"
        for wanted in _as_list(expected.get("contains", []))
        if wanted not in actual
    ]
    problems += [
        f"{path}: {unwanted!r} in {actual!r}"
        for unwanted in expected.get("not_contains", [])
        if unwanted in actual
    ]
    if not actual.startswith(expected.get("starts_with", "")):
        problems.append(f"{path}: does not start with {expected['starts_with']!r}: {actual!r}")
    if not actual.endswith(expected.get("ends_with", "")):
        problems.append(f"{path}: does not end with {expected['ends_with']!r}: {actual!r}")
    return problems


def _expected(name: str) -> Any:
    path = FIXTURES / f"{name}{EXPECTED_SUFFIX}"
    if not path.exists():
        pytest.fail(f"{name}.eml has no {path.name}: every fixture needs its expectations")
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_decodes_as_expected(name: str) -> None:
    """Each fixture decodes and normalizes to what its .expected.json says."""
    expected = _expected(name)
    assert isinstance(expected, dict) and expected, f"{name}: empty expectations"
    problems = mismatches(observe((FIXTURES / f"{name}.eml").read_bytes()), expected)
    assert not problems, f"{name}.eml:\n" + "\n".join(problems)


def test_every_expectation_has_its_fixture() -> None:
    """No .expected.json is left without the .eml it describes."""
    orphans = [
        path.name
        for path in FIXTURES.glob(f"*{EXPECTED_SUFFIX}")
        if not (FIXTURES / (path.name.removesuffix(EXPECTED_SUFFIX) + ".eml")).exists()
    ]
    assert orphans == []


def test_corpus_is_large_enough_and_small_enough() -> None:
    """At least 40 fixtures, and the whole folder stays under 2 MB."""
    assert len(FIXTURE_NAMES) >= MIN_FIXTURES
    assert sum(path.stat().st_size for path in FIXTURES.iterdir()) < MAX_CORPUS_BYTES


def test_reused_message_id_gets_two_keys() -> None:
    """Two mails with one Message-ID and different content get different external ids."""
    first, second = (
        (FIXTURES / f"reused-message-id-{suffix}.eml").read_bytes() for suffix in ("a", "b")
    )
    assert first != second
    assert email_external_id(first) != email_external_id(second)
    assert observe(first)["headers"]["message-id"] == observe(second)["headers"]["message-id"]


@pytest.mark.parametrize(
    ("expected", "problem"),
    [
        ({"subject": "Another subject"}, "$.subject: expected 'Another subject'"),
        ({"flags": {"auto_reply": True}}, "$.flags.auto_reply: missing"),
        ({"in_reply_to": "<x@example.id>"}, "$.in_reply_to: expected '<x@example.id>'"),
        ({"references": []}, "$.references: expected []"),
        ({"headers": {"message-id": None}}, "$.headers.message-id: expected absent or null"),
        ({"body": {"contains": "tidak ada"}}, "$.body: 'tidak ada' not in"),
        ({"body": {"not_contains": ["SIMBG"]}}, "$.body: 'SIMBG' in"),
        ({"body": {"starts_with": "Halo"}}, "$.body: does not start with 'Halo'"),
        ({"text": {"ends_with": "Halo"}}, "$.text: does not end with 'Halo'"),
        ({"attachments": {"includes": [{"filename": "x.pdf"}]}}, "$.attachments: no item"),
        ({"attachments": [{"filename": "x.pdf"}]}, "$.attachments: expected [{"),
        ({"no_such_field": 1}, "$.no_such_field: missing"),
    ],
)
def test_mismatches_are_reported(expected: dict[str, Any], problem: str) -> None:
    """The checker fails a fixture on any wrong field (it is not vacuously true)."""
    observed = observe((FIXTURES / "reply-thread.eml").read_bytes())
    found = mismatches(observed, expected)
    assert any(line.startswith(problem) for line in found), found
