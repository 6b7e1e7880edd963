"""Open data: ``complaints export --format opendata`` and ``--format open311`` of the seeded
month (tests/test_report.py) hold no phone, e-mail address or name in any written form and no
confidential complaint, and every other complaint of the period; Open311 ``requests.json``
is valid against a JSON Schema written here from the GeoReport v2 specification."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from omnichannel.cli import main
from omnichannel.opendata import OPENDATA_FIELDS
from tests.test_report import END, START, Seeded, sqlite_month, write_config

W3_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
NULLABLE_TEXT = {"type": ["string", "null"]}
REQUESTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Open311 GeoReport v2 GET requests.json",
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "service_request_id",
            "status",
            "service_code",
            "service_name",
            "requested_datetime",
            "lat",
            "long",
        ],
        "properties": {
            "service_request_id": {"type": "string", "minLength": 1},
            "status": {"enum": ["open", "closed"]},
            "status_notes": NULLABLE_TEXT,
            "service_name": {"type": "string", "minLength": 1},
            "service_code": {"type": "string", "minLength": 1},
            "description": NULLABLE_TEXT,
            "agency_responsible": NULLABLE_TEXT,
            "service_notice": NULLABLE_TEXT,
            "requested_datetime": {"type": "string", "pattern": W3_TIME},
            "updated_datetime": {"type": ["string", "null"], "pattern": W3_TIME},
            "expected_datetime": {"type": ["string", "null"], "pattern": W3_TIME},
            "address": NULLABLE_TEXT,
            "address_id": NULLABLE_TEXT,
            "zipcode": NULLABLE_TEXT,
            "lat": {"type": "number", "minimum": -90, "maximum": 90},
            "long": {"type": "number", "minimum": -180, "maximum": 180},
            "media_url": {"type": ["string", "null"], "format": "uri"},
        },
    },
}
"""Every field of a service request in the GeoReport v2 ``GET requests`` response
(wiki.open311.org/GeoReport_v2): times in the W3C profile of ISO 8601 with a zone, status
``open`` or ``closed``, WGS84 latitude and longitude."""


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """The seeded month on SQLite (tests/test_report.py checks the export on PostgreSQL)."""
    return sqlite_month(tmp_path_factory)


def export(seeded: Seeded, tmp_path: Path, *args: str) -> str:
    config = write_config(seeded, tmp_path)
    base = ["--config", str(config), "complaints", "export", "--from", str(START)]
    done = CliRunner().invoke(main, [*base, "--to", str(END), *args])
    assert done.exit_code == 0, done.output
    return done.stdout


def tickets(seeded: Seeded, where: str) -> set[str]:
    """Tickets of the period's complaints matching ``where``, straight from the table."""
    engine = sa.create_engine(seeded.url)
    since, until = seeded.period.since, seeded.period.until
    if engine.dialect.name == "sqlite":
        stored = "%Y-%m-%d %H:%M:%S.%f"
        bounds: dict[str, Any] = {"s": since.strftime(stored), "u": until.strftime(stored)}
    else:
        bounds = {"s": since, "u": until}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT ticket FROM complaints WHERE received_at >= :s AND received_at < :u "
                f"AND {where}"
            ),
            bounds,
        )
        found = {r[0] for r in rows}
    engine.dispose()
    return found


def assert_no_identity(seeded: Seeded, text: str) -> None:
    """No phone in any written form, no e-mail address, no word of any complainant's name."""
    for phone in seeded.phones:
        digits = phone[1:]
        for form in (phone, "+62" + digits, "62" + digits, digits, f"{phone[:4]}-{phone[4:8]}"):
            assert form not in text, form
    for email in seeded.emails:
        assert email not in text and email.split("@")[0] not in text
    local_parts = re.findall(r"([^\s\"',;<>]*)@", text)
    assert all(re.fullmatch(r"\w{0,2}\*\*\*", p) for p in local_parts), local_parts  # masked
    for name in seeded.names:
        for word in name.split():
            if word != "Bridge":
                assert not re.search(rf"\b{word}\b", text), word


def test_the_open_data_export_holds_no_identity_and_no_confidential_complaint(
    seeded: Seeded, tmp_path: Path
) -> None:
    """``--format opendata`` of the month: one anonymized record per complaint that is
    neither confidential nor merged away, anonymous ones included; no phone, e-mail address
    or name anywhere (also where the citizen wrote them in the text: masked); places rounded
    to three decimals."""
    out = export(seeded, tmp_path, "--format", "opendata")
    records = [json.loads(line) for line in out.splitlines()]
    assert all(list(r) == list(OPENDATA_FIELDS) for r in records)
    published = {r["ticket"] for r in records}
    assert published == tickets(seeded, "NOT confidential AND status <> 'merged'")
    confidential = tickets(seeded, "confidential")
    assert len(confidential) >= 10 and not confidential & published
    assert not confidential & set(re.findall(r"ADU-\d{4}-\d{6}", out))
    assert tickets(seeded, "anonymous AND NOT confidential") <= published
    assert_no_identity(seeded, out)
    masked = [r["description"] for r in records if "ubungi saya" in (r["description"] or "")]
    assert masked and all("****" in text and "***@contoh.id" in text for text in masked)
    located = [r for r in records if r["lat"] is not None]
    assert located and all(round(r["lat"], 3) == r["lat"] for r in located)
    assert any(r["resolved_at"] for r in records) and any(r["first_response_at"] for r in records)


def test_open311_requests_are_valid_geo_report_v2_with_a_location_each(
    seeded: Seeded, tmp_path: Path
) -> None:
    """``--format open311`` is a JSON array of GeoReport v2 service requests, valid against
    the schema: the located complaints, none confidential, ``open`` while worked on,
    ``closed`` after; no identity."""
    out = export(seeded, tmp_path, "--format", "open311")
    requests = json.loads(out)
    jsonschema.validate(requests, REQUESTS_SCHEMA)
    expected = tickets(
        seeded, "NOT confidential AND status <> 'merged' AND location_lat IS NOT NULL"
    )
    assert {r["service_request_id"] for r in requests} == expected and len(expected) > 10
    statuses = {r["status_notes"]: r["status"] for r in requests}
    assert statuses.get("open") == "open" and statuses.get("resolved") == "closed"
    assert_no_identity(seeded, out)


def test_withheld_text_and_csv(seeded: Seeded, tmp_path: Path) -> None:
    """``--withhold-text`` leaves out every free text (subject, description, address);
    ``--output x.csv`` writes the records as CSV with the same columns."""
    out = export(seeded, tmp_path, "--format", "opendata", "--withhold-text")
    records = [json.loads(line) for line in out.splitlines()]
    assert records and {(r["subject"], r["description"], r["address"]) for r in records} == {
        (None, None, None)
    }
    requests = json.loads(export(seeded, tmp_path, "--format", "open311", "--withhold-text"))
    assert {(r["description"], r["address"]) for r in requests} == {(None, None)}
    target = tmp_path / "open.csv"
    export(seeded, tmp_path, "--format", "opendata", "--output", str(target))
    text = target.read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(OPENDATA_FIELDS) and len(rows) == len(records)
    assert_no_identity(seeded, text)


def test_open_formats_refuse_what_they_cannot_do(seeded: Seeded, tmp_path: Path) -> None:
    """Open data never gives confidential complaints (``--include-confidential`` is refused),
    and ``--from``/``--withhold-text`` are refused with the contract formats."""
    config = write_config(seeded, tmp_path)
    runner = CliRunner()
    base = ["--config", str(config), "complaints", "export"]
    done = runner.invoke(
        main,
        [*base, "--format", "open311", "--include-confidential", "--actor", "a", "--reason", "b"],
    )
    assert done.exit_code == 2 and "never includes confidential" in done.output
    done = runner.invoke(main, [*base, "--format", "jsonl", "--withhold-text"])
    assert done.exit_code == 2 and "go with opendata and open311" in done.output
