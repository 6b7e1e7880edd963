"""The README's code blocks work exactly as written: Python blocks run (and print what their
comments say), TOML blocks load, and every `omnichannel` command line parses with the real CLI.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest

from omnichannel.cli import main
from omnichannel.config import parse_config
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = [
    (match["lang"], match["code"])
    for match in re.finditer(r"^```(?P<lang>\w*)\n(?P<code>.*?)^```$", README, re.M | re.S)
]
CONFIG = """\
[database]
url = "sqlite:///{folder}/readme.db"

[[connectors]]
name = "portal"
type = "web"
secret = "whsec_cmVhZG1lLXBvcnRhbC1zZWNyZXQ="
"""


def blocks(lang: str) -> list[str]:
    return [code for kind, code in BLOCKS if kind == lang]


def expected_output(code: str) -> list[str]:
    """What the block's ``print(...)  # shown`` comments say it prints, line by line."""
    return [line.split("# ", 1)[1].strip() for line in code.splitlines() if "print(" in line]


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_blocks_run_as_written(tmp_path: Path, index: int) -> None:
    """Each Python block runs in a folder with an omnichannel.toml (a `web` connector named
    `portal`) and prints what its comments say; a contract-kit block passes under pytest."""
    code = blocks("python")[index]
    (tmp_path / "omnichannel.toml").write_text(CONFIG.format(folder=tmp_path))
    if "class Test" in code:
        (tmp_path / "test_readme_block.py").write_text(code)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore"]
        proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert " passed" in proc.stdout and " failed" not in proc.stdout, proc.stdout[-2000:]
        return
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == expected_output(code)


@pytest.mark.parametrize("index", range(len(blocks("toml"))))
def test_toml_blocks_load(index: int) -> None:
    """Each TOML block is valid TOML; a configuration block passes the config loader."""
    document = tomllib.loads(blocks("toml")[index])
    if "project" in document:
        assert document["project"]["entry-points"]["omnichannel.connectors"]
        return
    environment = {"GATEWAY_SECRET": "s3cret-gateway"}
    parse_config(document, env=environment)


def command_lines() -> list[list[str]]:
    """Every `omnichannel ...` command in the shell blocks, as arguments (comments dropped)."""
    found = []
    for code in blocks("sh"):
        for line in code.splitlines():
            words = shlex.split(line, comments=True)
            for start, word in enumerate(words):
                if word.endswith("bin/omnichannel") or word == "omnichannel":
                    found.append(words[start + 1 :])
                    break
    return found


@pytest.mark.parametrize("args", command_lines(), ids=lambda a: " ".join(a)[:60])
def test_command_lines_parse(args: list[str], tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each documented command line names real commands and options, with valid values (the
    files it names exist, as they would where it is run)."""
    monkeypatch.chdir(tmp_path)
    for arg in args:
        if arg.endswith("/") or ("/" in arg and "." not in arg):
            (tmp_path / arg).mkdir(parents=True, exist_ok=True)
        elif re.fullmatch(r"[\w.-]+\.(json|eml|toml)", arg):
            (tmp_path / arg).write_text("{}")
    context = main.make_context("omnichannel", list(args), resilient_parsing=False)
    command: click.Command = main
    while isinstance(command, click.Group) and _pending(context):
        name, *rest = _pending(context)
        sub = command.get_command(context, name)
        assert sub is not None, f"no command {name!r}"
        context = sub.make_context(name, rest, parent=context)
        command = sub
    assert not isinstance(command, click.Group), f"{args}: names a group, not a command"


def _pending(context: click.Context) -> list[str]:
    """The arguments a group left for its subcommand (click 8.2 keeps the first apart)."""
    protected = getattr(context, "_protected_args", None) or []
    return [*protected, *context.args]
