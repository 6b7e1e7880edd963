"""Crash and concurrency: kill -9 mid-ingest, and two processes ingesting the same files."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from omnichannel.store.engine import create_engine
from omnichannel.store.tables import complaints, messages, raw_messages
from tests.helpers import json_doc

pytestmark = pytest.mark.slow


def make_files(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    paths = []
    for i in range(count):
        path = folder / f"c{i:05d}.json"
        path.write_bytes(
            json_doc(
                f"doc-{i}",
                text=f"Keluhan nomor {i}: pelayanan izin lambat.",
                sender={"phone": f"0812{i:08d}"},
            )
        )
        paths.append(path)
    return paths


def write_config(folder: Path, url: str) -> Path:
    path = folder / "omnichannel.toml"
    path.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    return path


def ingest_command(config: Path, files: list[Path], batch: int = 200) -> list[str]:
    return [
        sys.executable,
        "-m",
        "omnichannel",
        "--config",
        str(config),
        "ingest",
        "--connector",
        "files",
        "--batch-size",
        str(batch),
        *map(str, files),
    ]


def filed_count(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        value = conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one()
    engine.dispose()
    return int(value)


def kill_after_first_output(command: list[str], out: Path, delay: float) -> None:
    """Start, wait until some files were reported (committed), wait `delay`, then SIGKILL."""
    with out.open("wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while out.stat().st_size == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def assert_each_file_once(url: str, count: int) -> None:
    engine = create_engine(url)
    with engine.connect() as conn:
        raws = conn.execute(sa.select(raw_messages.c.external_id, raw_messages.c.status)).all()
        tickets = conn.execute(sa.select(complaints.c.ticket)).scalars().all()
        filed = conn.execute(sa.select(messages.c.external_id)).scalars().all()
    engine.dispose()
    assert sorted(e for e, _ in raws) == sorted(f"doc-{i}" for i in range(count))
    assert {s for _, s in raws} == {"processed"}
    assert sorted(filed) == sorted(f"doc-{i}" for i in range(count))
    assert len(tickets) == count and len(set(tickets)) == count


def test_kill_9_mid_ingest_then_rerun_files_everything_once(
    tmp_path: Path, database_url: str
) -> None:
    """Killed with SIGKILL at random points during a large ingest, a rerun files every file once."""
    count = 600
    files = make_files(tmp_path / "in", count)
    config = write_config(tmp_path, database_url)
    rng = random.Random(7)
    for round_ in range(4):
        kill_after_first_output(
            ingest_command(config, files, batch=25),
            tmp_path / f"out{round_}.jsonl",
            rng.uniform(0.0, 0.3),
        )
        if round_ == 0:
            assert 0 < filed_count(database_url) < count  # the kill really interrupted it
    final = subprocess.run(
        ingest_command(config, files), capture_output=True, text=True, timeout=600
    )
    assert final.returncode == 0, final.stderr
    outcomes = Counter(json.loads(line)["outcome"] for line in final.stdout.splitlines())
    assert sum(outcomes.values()) == count
    assert set(outcomes) <= {"new", "duplicate"}
    assert_each_file_once(database_url, count)


def test_two_processes_ingesting_the_same_files_file_each_once(
    tmp_path: Path, database_url: str
) -> None:
    """Two processes ingesting the same files at once: one `new` per file, unique tickets."""
    count = 400
    files = make_files(tmp_path / "in", count)
    config = write_config(tmp_path, database_url)
    procs = [
        subprocess.Popen(
            ingest_command(config, files), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    results = [json.loads(line) for out, _ in outputs for line in out.splitlines()]
    new = Counter(r["file"] for r in results if r["outcome"] == "new")
    assert len(results) == 2 * count
    assert sorted(new) == sorted(map(str, files)) and set(new.values()) == {1}
    assert_each_file_once(database_url, count)
