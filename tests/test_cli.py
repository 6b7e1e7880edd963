"""The command line: ingest, complaints, quarantine, check, and clean failures."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from omnichannel.cli import main
from omnichannel.store.migrate import head_revision
from tests.helpers import json_doc

EML = b"""From: Budi Santoso <budi@example.id>
To: pengaduan@example.go.id
Subject: Izin PBG belum selesai
Message-ID: <pbg-1@example.id>
Date: Mon, 30 Nov 2026 09:00:00 +0800
Content-Type: text/plain; charset=utf-8

Selamat pagi, permohonan PBG saya sudah 3 bulan belum selesai. Mohon dibantu.
"""


@pytest.fixture
def workdir(tmp_path: Path, database_url: str) -> Path:
    """A folder with a config pointing at the backend under test, and some payload files."""
    (tmp_path / "omnichannel.toml").write_text(
        f'[database]\nurl = "{database_url}"\n\n[[connectors]]\nname = "files"\ntype = "files"\n',
        encoding="utf-8",
    )
    (tmp_path / "a.json").write_bytes(json_doc("doc-a", sender={"phone": "081234567890"}))
    (tmp_path / "b.eml").write_bytes(EML)
    (tmp_path / "broken.json").write_bytes(b'{"channel": "sms", "external_id": "x", ')
    return tmp_path


def run(workdir: Path, *args: str) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(main, ["--config", str(workdir / "omnichannel.toml"), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout.splitlines(), result.stderr


def ingest(workdir: Path, *names: str) -> list[dict]:  # type: ignore[type-arg]
    code, lines, _ = run(
        workdir, "ingest", "--connector", "files", *(str(workdir / n) for n in names)
    )
    assert code == 0
    return [json.loads(line) for line in lines]


def test_ingest_twice_new_then_duplicate(workdir: Path) -> None:
    """Ingesting the same files twice: `new` then `duplicate`, the corrupt one `quarantined`."""
    first = ingest(workdir, "a.json", "b.eml", "broken.json")
    assert [r["outcome"] for r in first] == ["new", "new", "quarantined"]
    assert set(first[0]) == {"file", "outcome", "complaint_id", "ticket", "error"}
    assert first[2]["error"] and first[2]["ticket"] is None
    second = ingest(workdir, "a.json", "b.eml", "broken.json")
    assert [r["outcome"] for r in second] == ["duplicate"] * 3
    assert [r["ticket"] for r in second[:2]] == [r["ticket"] for r in first[:2]]
    code, lines, _ = run(workdir, "complaints", "list", "--format", "json")
    assert code == 0 and len(lines) == 2


def test_quarantine_list_and_replay_with_fixed_payload(workdir: Path) -> None:
    """A corrupt file is listed in quarantine and replaying a corrected copy makes a complaint."""
    ingest(workdir, "broken.json")
    code, lines, _ = run(workdir, "quarantine", "list", "--format", "json")
    entry = json.loads(lines[0])
    assert code == 0 and len(lines) == 1 and entry["meta"]["file"] == "broken.json"
    (workdir / "fixed.json").write_bytes(json_doc("x", text="Sudah saya perbaiki."))
    code, lines, _ = run(
        workdir, "quarantine", "replay", str(entry["id"]), "--payload", str(workdir / "fixed.json")
    )
    assert code == 0 and json.loads(lines[0])["outcome"] == "new"
    code, lines, _ = run(workdir, "quarantine", "list", "--format", "json")
    assert lines == []
    code, _, err = run(workdir, "quarantine", "replay", str(entry["id"]))
    assert code == 1 and "not quarantined" in err


def test_quarantine_replay_names_the_decoder(workdir: Path) -> None:
    """A WhatsApp payload no decoder can read is replayed as an InboundMessage document with
    ``--decoder inbound``; through the connector's own decoder the same document fails again,
    and the original payload and its content type are kept."""
    config = workdir / "omnichannel.toml"
    config.write_text(
        config.read_text()
        + '\n[[connectors]]\nname = "wa"\ntype = "whatsapp-cloud"\napp_secret = "s3cret"\n'
        'verify_token = "v3rify"\naccess_token = "t0ken"\nphone_number_ids = ["10987"]\n'
    )
    (workdir / "wa.json").write_bytes(b'{"object": "whatsapp_business_account", "entry": [')
    code, lines, _ = run(workdir, "ingest", "--connector", "wa", str(workdir / "wa.json"))
    assert code == 0 and json.loads(lines[0])["outcome"] == "quarantined"
    entry = json.loads(run(workdir, "quarantine", "list", "--format", "json")[1][0])
    fixed = workdir / "fixed.json"
    fixed.write_bytes(json_doc("wa-1", sender={"phone": "081234567890"}))
    replay = ["quarantine", "replay", str(entry["id"]), "--payload", str(fixed)]
    code, lines, _ = run(workdir, *replay)
    assert code == 0 and json.loads(lines[0])["outcome"] == "quarantined"
    code, lines, _ = run(workdir, *replay, "--decoder", "inbound")
    assert code == 0 and json.loads(lines[0])["outcome"] == "new"
    code, lines, _ = run(workdir, "audit", "verify")
    assert code == 0, lines  # the replacement is in the tamper-evident record
    code, _, err = run(workdir, "quarantine", "replay", "--decoder", "inbound")
    assert code == 2 and "--decoder needs --payload" in err
    engine = sa.create_engine(_url(workdir))
    with engine.connect() as conn:
        original = conn.execute(
            sa.text("SELECT original_payload, original_content_type FROM quarantine")
        ).one()
    engine.dispose()
    assert original[0].startswith(b'{"object"') and original[1] == "application/octet-stream"


def _url(workdir: Path) -> str:
    text = (workdir / "omnichannel.toml").read_text()
    return text.split('url = "', 1)[1].split('"', 1)[0]


def test_show_and_export(workdir: Path) -> None:
    """show by ticket prints the complaint; export writes JSON lines and CSV of every complaint."""
    tickets = [r["ticket"] for r in ingest(workdir, "a.json", "b.eml")]
    code, lines, _ = run(workdir, "complaints", "show", tickets[1])
    assert code == 0 and tickets[1] in lines[0] and any("PBG" in line for line in lines)
    code, lines, _ = run(workdir, "complaints", "export", "--format", "jsonl")
    assert [json.loads(line)["ticket"] for line in lines] == tickets
    code, lines, _ = run(workdir, "complaints", "export", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    assert [r["ticket"] for r in rows] == tickets
    assert rows[0]["sender_phone"] == "'+6281234567890"  # OWASP: no cell may start with +
    assert rows[1]["sender_email"] == "budi@example.id"
    code, _, err = run(workdir, "complaints", "show", "ADU-2026-999999")
    assert code == 1 and "no complaint" in err


def test_table_output(workdir: Path) -> None:
    """The default list output is a table with a header row."""
    ingest(workdir, "a.json")
    code, lines, _ = run(workdir, "complaints", "list")
    assert code == 0 and lines[0].split()[:3] == ["ID", "TICKET", "STATUS"] and len(lines) == 2


def test_unreadable_file_is_reported_and_exit_nonzero(workdir: Path) -> None:
    """A file that cannot be read gets an error line (no outcome) and a non-zero exit."""
    code, lines, _ = run(workdir, "ingest", str(workdir / "a.json"), str(workdir / "missing.json"))
    results = [json.loads(line) for line in lines]
    assert code == 1
    assert results[0]["outcome"] == "new"
    assert results[1]["outcome"] is None and "cannot read" in results[1]["error"]


def test_check_and_init_db(workdir: Path) -> None:
    """check validates the config; init-db reports the schema revision (the newest)."""
    code, lines, _ = run(workdir, "check")
    assert code == 0 and "configuration OK" in lines[0]
    code, lines, _ = run(workdir, "init-db")
    assert code == 0 and f"revision {head_revision()} " in lines[0]


BAD_CONFIGS = {
    "missing key": ('[[connectors]]\ntype = "files"\n', "connectors[0].name: missing"),
    "wrong type": ('[server]\nport = "http"\n', "server.port: Input should be a valid integer"),
    "unknown connector type": (
        '[[connectors]]\nname = "mail"\ntype = "imapp"\n',
        "connectors[0].type: unknown connector type 'imapp'",
    ),
    "unset env": (
        '[database]\nurl = "${OMNI_TEST_UNSET_DB}"\n',
        "database.url: environment variable OMNI_TEST_UNSET_DB is not set",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_with_clear_message(tmp_path: Path, case: str) -> None:
    """A bad config gives one clear line per problem on stderr, exit 2, and no traceback."""
    text, expected = BAD_CONFIGS[case]
    path = tmp_path / "omnichannel.toml"
    path.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "omnichannel", "--config", str(path), "check"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"omnichannel: configuration: {expected}" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_storage_unavailable_exits_3_without_traceback(tmp_path: Path) -> None:
    """An unreachable database is one line on stderr and exit code 3."""
    path = tmp_path / "omnichannel.toml"
    path.write_text(
        '[database]\nurl = "postgresql+psycopg://nobody@127.0.0.1:1/none"\n', encoding="utf-8"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "omnichannel", "--config", str(path), "complaints", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3
    assert proc.stderr.startswith("omnichannel: storage unavailable")
    assert "Traceback" not in proc.stderr


def test_work_once_files_what_other_processes_stored(workdir: Path, database_url: str) -> None:
    """``work --once`` files every stored, unfiled message (as a webhook server or a poller
    that died before filing left them), says how many, and exits; a second run finds none."""
    from omnichannel.config import default_config
    from omnichannel.inbox import Inbox
    from omnichannel.pipeline import store_raw
    from tests.helpers import T0, raw_json

    with Inbox(default_config(url=database_url)) as inbox, inbox.store.transaction() as conn:
        store_raw(conn, [raw_json(f"w-{i}", text=f"Keluhan {i}.") for i in range(7)], T0)
    code, lines, _ = run(workdir, "work", "--once")
    assert code == 0 and lines == ["filed 7 messages; 0 waiting", "outbox: nothing due"]
    code, lines, _ = run(workdir, "complaints", "list", "--format", "json")
    assert len(lines) == 7
    assert run(workdir, "work", "--once")[1] == [
        "filed 0 messages; 0 waiting",
        "outbox: nothing due",
    ]


def test_ingest_takes_folders_as_demo_does(workdir: Path) -> None:
    """A folder given to ``ingest`` stands for its .eml and .json files in name order (not
    its other files or subfolders); a folder with none is a usage error."""
    folder = workdir / "inbox"
    (folder / "sub").mkdir(parents=True)
    (folder / "2.eml").write_bytes(EML)
    (folder / "1.json").write_bytes(json_doc("doc-1", text="Lampu jalan di Jl. Melati mati."))
    (folder / "notes.txt").write_text("not a payload", encoding="utf-8")
    (folder / "sub" / "3.json").write_bytes(json_doc("doc-3"))
    code, lines, _ = run(workdir, "ingest", str(folder), str(workdir / "a.json"))
    assert code == 0
    files = [Path(json.loads(line)["file"]).name for line in lines]
    assert files == ["1.json", "2.eml", "a.json"]
    empty = workdir / "empty"
    empty.mkdir()
    code, _, err = run(workdir, "ingest", str(empty))
    assert code == 2 and "no .eml or .json files" in err


def test_complaints_list_says_when_it_shows_only_part(workdir: Path) -> None:
    """``complaints list --limit N`` with more complaints says so (on stderr for JSON, whose
    lines stay complaints only); with all of them shown it says nothing."""
    ingest(workdir, "a.json", "b.eml")
    code, lines, _ = run(workdir, "complaints", "list", "--limit", "1")
    assert code == 0 and "more complaints match" in lines[-1]
    code, lines, err = run(workdir, "complaints", "list", "--limit", "1", "--format", "json")
    assert len(lines) == 1 and json.loads(lines[0]) and "more complaints match" in err
    code, lines, _ = run(workdir, "complaints", "list", "--limit", "2")
    assert "more complaints match" not in "\n".join(lines)
