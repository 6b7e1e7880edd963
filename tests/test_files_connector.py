"""The files connector: drop-folder polling, external ids, and the shared contract suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from omnichannel import Inbox, Outcome
from omnichannel.config import default_config, parse_config
from omnichannel.testing import DecodeCase, PollingContract
from tests.helpers import json_doc

EML = (
    b"From: Siti <siti@example.id>\r\nSubject: Pungli di loket\r\n"
    b"Message-ID: <x1@example.id>\r\n\r\nAda pungutan liar di loket perizinan.\r\n"
)


class TestFilesContract(PollingContract):
    """The files connector passes the contract every polling connector must pass."""

    connector_type = "files"
    ack_moves_source = True
    cases: ClassVar[list[DecodeCase]] = [
        DecodeCase(
            "json",
            json_doc("j1", text="Jalan rusak."),
            {"channel": "sms", "text": "Jalan rusak."},
            "application/json",
            "j1",
        ),
        DecodeCase(
            "eml", EML, {"channel": "email", "subject": "Pungli di loket"}, "message/rfc822"
        ),
    ]
    poll_items: ClassVar[list[tuple[str, bytes]]] = [
        ("a.json", json_doc("d1", text="Saluran air tersumbat.")),
        ("b.eml", EML),
        ("c.json", json_doc("d3", text="Lampu jalan padam.")),
    ]

    def setup_source(self, tmp_path: Path) -> dict[str, Any]:
        self.folder = tmp_path / "drop"
        self.folder.mkdir()
        return {"path": str(self.folder)}

    def deliver(self, item: Any) -> None:
        name, payload = item
        (self.folder / name).write_bytes(payload)

    # break_source: a local folder is not throttled, refused or down; a missing one is a
    # configuration mistake (FatalError by design), not the kit's retryable "unavailable"


def test_email_external_id_depends_on_content_not_only_message_id(tmp_path: Path) -> None:
    """Two different mails reusing one Message-ID get different external ids; CRLF/LF do not."""
    inbox = Inbox(default_config(url=f"sqlite:///{tmp_path / 'x.db'}"))
    files = inbox.connector("files")
    other = EML.replace(b"Ada pungutan", b"Ada lagi pungutan")
    lf = EML.replace(b"\r\n", b"\n")
    ids = [
        files.raw_from_file(tmp_path / "a.eml", p, inbox._clock()).external_id
        for p in (EML, other, lf)
    ]
    assert ids[0] != ids[1] and ids[0] == ids[2]
    assert ids[0].startswith("<x1@example.id>|sha256:")
    inbox.close()


def test_poll_drop_folder_files_and_moves_them(tmp_path: Path) -> None:
    """Polling the drop folder files each document once and moves it to processed/."""
    drop = tmp_path / "inbox"
    drop.mkdir()
    (drop / "a.json").write_bytes(json_doc("a", text="Satu."))
    (drop / "b.eml").write_bytes(EML)
    (drop / "bad.json").write_bytes(b"{oops")
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'x.db'}"},
            "connectors": [{"name": "drop", "type": "files", "path": str(drop)}],
        }
    )
    with Inbox(config) as inbox:
        results = inbox.poll("drop")
        assert sorted(r.outcome for r in results) == [Outcome.NEW, Outcome.NEW, Outcome.QUARANTINED]
        assert sorted(p.name for p in drop.iterdir() if p.is_file()) == []
        assert sorted(p.name for p in (drop / "processed").iterdir()) == [
            "a.json",
            "b.eml",
            "bad.json",
        ]
        assert inbox.poll("drop") == []
        (drop / "a.json").write_bytes(json_doc("a", text="Satu."))  # dropped again
        assert [r.outcome for r in inbox.poll("drop")] == [Outcome.DUPLICATE]
        assert sorted(p.name for p in (drop / "processed").iterdir())[:2] == ["a.1.json", "a.json"]
