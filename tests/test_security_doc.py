"""docs/security.md names, for every threat, the test that shows its defence: each named test
must exist, so the page cannot drift from the suite."""

from __future__ import annotations

import ast
import re

from tests.conftest import ROOT

DOC = ROOT / "docs" / "security.md"
THREATS = [
    "Forged webhooks",
    "Replayed webhooks",
    "Slow and oversized requests",
    "Poison values",
    "SSRF",
    "decompression bombs",
    "Path traversal in filenames",
    "HTML and script",
    "CSV injection",
    "SQL injection",
    "Secrets in config files and the environment",
    "Log injection",
]


def named_tests(text: str) -> list[tuple[str, str | None]]:
    """``(file, test)`` for every ``tests/x.py::name`` and following ``::name`` in a row."""
    found: list[tuple[str, str | None]] = []
    for row in text.splitlines():
        current = None
        for match in re.finditer(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", row):
            path, name = match.groups()
            current = path or current
            if current and (path or name):
                found.append((current, name))
    return found


def defined(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def test_every_threat_of_the_issue_is_listed() -> None:
    """The threat list covers every class the security issue names."""
    text = DOC.read_text()
    missing = [t for t in THREATS if t.lower() not in text.lower()]
    assert missing == []


def test_every_test_the_page_names_exists() -> None:
    """Each ``tests/…py::test_name`` on the page is a file with that test in it."""
    references = named_tests(DOC.read_text())
    assert len(references) >= 30
    missing = [
        f"{path}::{name}"
        for path, name in references
        if not (ROOT / path).is_file() or (name is not None and name not in defined(path))
    ]
    assert missing == []
