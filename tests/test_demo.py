"""`omnichannel demo`: a deployment on loopback played over real HTTP; what it prints is what
its database holds."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from click.testing import CliRunner

from omnichannel.cli import main
from omnichannel.demo import mask
from omnichannel.store.tables import complaints, messages, outbox, quarantine, raw_messages
from tests.conftest import ROOT

SAMPLES = ROOT / "examples" / "complaints"
STEP = re.compile(
    r"^(?P<step>\d+[a-z]?)\s+(?P<channel>\S+)\s+(?P<what>.+?)\s+(?P<http>\d{3}|-)\s+"
    r"(?P<outcome>[a-z]+)\s+(?P<ticket>ADU-\d{4}-\d{6}|-)(?:\s+(?P<note>.*))?$"
)
SCENARIO = {
    "1": "new",
    "2": "duplicate",
    "3": "merged",
    "4a": "new",
    "4b": "new",
    "4c": "new",
    "4d": "new",
    "5a": "new",
    "5b": "merged",
    "6": "ignored",
    "7": "new",
    "8a": "refused",
    "8b": "refused",
    "8c": "refused",
}
"""Each scenario step's outcome (step 9 is the drop folder's files)."""


@dataclass
class Line:
    step: str
    channel: str
    what: str
    http: str
    outcome: str
    ticket: str | None
    note: str


def demo(cwd: Path, *args: str) -> tuple[list[str], list[Line]]:
    """Run the console command in a process of its own; its stdout lines and step lines."""
    proc = subprocess.run(
        [sys.executable, "-m", "omnichannel", "demo", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""  # nothing alarming: no warning, no traceback, no log line
    out = proc.stdout.splitlines()
    steps = []
    for text in out:
        match = STEP.match(text)
        if match:
            values = match.groupdict()
            ticket = None if values["ticket"] == "-" else values["ticket"]
            steps.append(Line(**(values | {"ticket": ticket, "note": values["note"] or ""})))
    return out, steps


def section(lines: list[str], title: str) -> list[str]:
    """The lines of a report section (from its title line to the next blank line)."""
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def test_demo_on_the_samples_prints_what_its_database_holds(tmp_path: Path) -> None:
    """Every step of the scenario ends as it should, and the steps, the queue, the cluster,
    the merges, the refused forgeries and the acknowledgements printed agree with the kept
    database."""
    kept = tmp_path / "kept"
    out, lines = demo(tmp_path, "--keep", str(kept), str(SAMPLES))
    scenario = {line.step: line for line in lines if line.step != "9"}
    assert {step: line.outcome for step, line in scenario.items()} == SCENARIO
    files = {line.what: line for line in lines if line.step == "9"}
    assert sorted(files) == sorted(p.name for p in SAMPLES.iterdir() if p.suffix != ".md")
    assert files["06-balasan.eml"].outcome == "merged"
    assert files["07-auto-reply.eml"].outcome == "ignored"
    assert files["99-rusak.json"].outcome == "quarantined"
    assert [f.outcome for f in files.values()].count("new") == 7

    engine = sa.create_engine(f"sqlite:///{kept / 'omnichannel.db'}")
    with engine.connect() as conn:
        tickets = dict(conn.execute(sa.select(complaints.c.ticket, complaints.c.id)).all())
        cluster = dict(conn.execute(sa.select(complaints.c.ticket, complaints.c.cluster_id)).all())
        message_rows = conn.execute(
            sa.select(
                messages.c.complaint_id, messages.c.channel, messages.c.merge_reason
            ).order_by(messages.c.id)
        ).all()
        raw_outcomes = [r[0] for r in conn.execute(sa.select(raw_messages.c.outcome)).all()]
        quarantined = conn.execute(sa.select(sa.func.count()).select_from(quarantine)).scalar()
        acks = conn.execute(
            sa.select(complaints.c.ticket)
            .join(outbox, outbox.c.complaint_id == complaints.c.id)
            .where(outbox.c.kind == "acknowledgement", outbox.c.status == "sent")
        ).all()
    engine.dispose()

    # one complaint per `new` line, each with the ticket printed
    new = [line.ticket for line in lines if line.outcome == "new"]
    assert sorted(new) == sorted(tickets)
    assert f"The team's queue ({len(tickets)} complaints" in "\n".join(out)

    # the redelivery and the same citizen on WhatsApp land on step 1's complaint
    road = scenario["1"].ticket
    assert scenario["2"].ticket == road and scenario["3"].ticket == road
    road_messages = [m for m in message_rows if m.complaint_id == tickets[road]]
    assert [(m.channel, m.merge_reason) for m in road_messages] == [
        ("sms", None),
        ("whatsapp", "same_sender"),
    ]

    # the e-mail reply joins its thread
    assert scenario["5b"].ticket == scenario["5a"].ticket
    reply = [m for m in message_rows if m.complaint_id == tickets[scenario["5a"].ticket]]
    assert [m.merge_reason for m in reply] == [None, "thread"]

    # four people's bridge reports: four complaints, one cluster, as printed
    bridge = [scenario[f"4{letter}"].ticket for letter in "abcd"]
    assert len(set(bridge)) == 4
    assert {cluster[t] for t in bridge} == {bridge[0]}
    printed = [line for line in section(out, "Clusters") if line.startswith(f"  {bridge[0]} ")]
    assert len(printed) == 1 and all(t in printed[0] for t in bridge)
    assert "4 complaints" in printed[0]

    # the portal's answer carried its ticket
    assert f"ticket: {scenario['7'].ticket}" in scenario["7"].note

    # forgeries: 403 and nothing stored (every raw row is one of the printed inputs but the
    # redelivery); the auto-replies ignored, the broken file quarantined
    assert {scenario[s].http for s in ("8a", "8b", "8c")} == {"403"}
    assert all(scenario[s].note == "nothing stored" for s in ("8a", "8b", "8c"))
    stored = [line for line in lines if line.outcome not in ("refused", "duplicate")]
    assert len(raw_outcomes) == len(stored)
    assert raw_outcomes.count("ignored") == 2 and quarantined == 1

    # the queue table: each complaint once, with its messages
    queue = section(out, "The team's queue")[2:]
    assert sorted(row.split()[0] for row in queue) == sorted(tickets)
    road_row = next(row for row in queue if row.startswith(road))
    assert "PUPR" in road_row and "2 (1 merged)" in road_row

    # acknowledgements: as many printed as the outbox sent, to the same complaints
    header = section(out, "Acknowledgements sent")
    count = int(re.search(r"Acknowledgements sent: (\d+)", header[0]).group(1))  # type: ignore[union-attr]
    assert count == len(acks) == len(header) - 2
    assert sorted(row.split()[0] for row in header[2:]) == sorted(t for (t,) in acks)
    assert all("stand-in" in row for row in header[2:])

    # the kept configuration reads the database and holds no secret of the run
    config = (kept / "omnichannel.toml").read_text()
    assert not re.search(r"secret|token|password", config.split("\n\n", 1)[1])
    command = ["--config", str(kept / "omnichannel.toml"), "queue", "list", "--format", "json"]
    listed = subprocess.run(
        [sys.executable, "-m", "omnichannel", *command, "--cluster", bridge[0]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 4


def test_demo_without_a_folder_plays_the_packaged_samples_and_cleans_up(tmp_path: Path) -> None:
    """Without FOLDER the packaged drop folder goes through the files connector (its broken
    file quarantined), and the temporary directory is gone afterwards."""
    out, lines = demo(tmp_path)
    assert {line.step: line.outcome for line in lines if line.step != "9"} == SCENARIO
    files = {line.what: line.outcome for line in lines if line.step == "9"}
    assert files == {
        "01-sms-gateway.json": "new",
        "02-drainase.eml": "new",
        "99-rusak.json": "quarantined",
    }
    workdir = Path(re.match(r"omnichannel demo in (\S+)", out[0]).group(1))  # type: ignore[union-attr]
    assert not workdir.exists()
    assert "every step as expected" in out[-2]
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran


def test_keep_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    """--keep takes a new or empty directory: another one is a one-line error, untouched."""
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(main, ["demo", "--keep", str(tmp_path)])
    assert result.exit_code == 1
    assert "not an empty directory" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_addresses_are_masked() -> None:
    """Phones keep their first six and last four characters, e-mail addresses two letters."""
    assert mask("+6281234567890") == "+62812****7890"
    assert mask("whatsapp:+6281234567890") == "+62812****7890"
    assert mask("budi.santoso@example.com") == "bu***@example.com"
