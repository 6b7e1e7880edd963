"""The Telegram example (``examples/telegram_connector``), a third-party connector in its own
package: installed, its type works in a config and its kit tests pass; broken copies of it
fail the kit with messages that say what is wrong; it passes ``mypy --strict``."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "telegram_connector"
PACKAGE = EXAMPLE / "omnichannel_telegram"
TOKEN = "123456789:AAF-config_check-token_0123456789"


def run(
    args: list[str], *, site: Path | None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """``args`` in a subprocess, with ``site`` (the installed example) on its path or not."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing written into the example's folders
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example pip-installed into a folder of its own (from a copy: a build writes into
    its source tree), without dependencies or the network: PYTHONPATH makes it installed."""
    work = tmp_path_factory.mktemp("telegram")
    ignore = shutil.ignore_patterns("__pycache__", "build", "*.egg-info", ".pytest_cache")
    shutil.copytree(EXAMPLE, work / "src", ignore=ignore)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    options = ["--no-deps", "--no-build-isolation", "--no-index", "--target", str(work / "site")]
    installed = run([*pip, *options, str(work / "src")], site=None)
    hint = "\n(building offline takes setuptools>=70.1, or wheel, in this environment)"
    assert installed.returncode == 0, installed.stdout + installed.stderr + hint
    return work / "site"


def config(tmp_path: Path, token: str = TOKEN) -> str:
    path = tmp_path / "omnichannel.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "check.db"}"\n\n'
        f'[[connectors]]\nname = "tg"\ntype = "telegram"\ntoken = "{token}"\n'
    )
    return str(path)


def test_installed_entry_point_makes_the_type_configurable(site: Path, tmp_path: Path) -> None:
    """With the package installed, ``type = "telegram"`` passes ``omnichannel check``; without
    it the type is unknown; a bad token is named by its key, its value not shown."""
    check = [sys.executable, "-m", "omnichannel", "--config", config(tmp_path), "check"]
    found = run(check, site=site)
    assert found.returncode == 0, found.stdout + found.stderr
    assert "connectors: tg (telegram)" in found.stdout
    missing = run(check, site=None)
    assert missing.returncode == 2
    assert "unknown connector type 'telegram'" in missing.stderr
    check[4] = config(tmp_path, token="123:abc/../sendMessage")
    bad = run(check, site=site)
    assert bad.returncode == 2
    assert "connectors[0].token: must be a bot token" in bad.stderr
    assert "abc/../sendMessage" not in bad.stdout + bad.stderr


def test_example_kit_tests_pass_against_the_installed_package(site: Path, tmp_path: Path) -> None:
    """The example's own tests pass, the kit's polling and webhook checks among them."""
    report = tmp_path / "report.xml"
    args = ["-q", "-p", "no:cacheprovider", f"--junitxml={report}", str(EXAMPLE / "tests")]
    done = run([sys.executable, "-m", "pytest", *args], site=site)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    passed = {
        case.get("name", "")
        for case in ElementTree.parse(report).iter("testcase")
        if not list(case)  # no failure, error or skipped element
    }
    kit = [
        "test_type_is_registered",
        "test_cases_decode_to_valid_messages",
        "test_pipeline_gives_one_outcome_then_duplicate",
        "test_signed_requests_are_stored",
        "test_wrongly_signed_requests_are_refused",
        "test_ack_only_after_commit",
        "test_fetch_from_cursor_gives_only_what_is_new",
        "test_source_errors_are_mapped[throttled]",
        "test_source_errors_are_mapped[unavailable]",
    ]
    assert not [name for name in kit if name not in passed], sorted(passed)


def test_example_passes_mypy_strict() -> None:
    """The example package type-checks under ``mypy --strict`` (the SDK is typed: py.typed)."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (it is in the dev extra)")
    checked = run([sys.executable, "-m", "mypy", "--strict", str(PACKAGE)], site=None)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# -- broken copies ------------------------------------------------------------------------------

BROKEN = {
    "accepts_every_request": (
        "    def verify(self, request: WebhookRequest) -> None:\n",
        "        return  # broken: every request is taken for Telegram's\n",
        "not 403: the connector accepts requests it cannot have received from the provider",
    ),
    "no_external_id": (
        '    if not is_int(update.get("update_id")):\n        return None\n',
        '    return " "  # broken: no dedupe key\n',
        "has no external id (the dedupe key must always be set)",
    ),
    "token_in_log": (
        '        url = f"{self.options.api_url}/bot{token}/{method}"\n',
        '        log.debug("calling %s", url)  # broken: the URL holds the token\n',
        "secret leaked: a secret option value appears in the log record of 'tg_token_in_log'",
    ),
    "url_in_error": (
        "        except requests.RequestException as exc:"
        "  # its message quotes the URL, and the token\n",
        '            raise RetryableError(f"unreachable: {exc}")  # broken: quotes the URL\n',
        "secret leaked: a secret option value appears in the RetryableError raised",
    ),
}


def broken_copy(folder: Path, name: str, anchor: str | None, insert: str) -> None:
    """A copy of the example's package, ``tg_<name>``, registered as type ``broken-<name>``,
    with ``insert`` after ``anchor`` in the module that has it."""
    copy = folder / f"tg_{name}"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    if anchor is not None:
        found = [p for p in copy.glob("*.py") if anchor in p.read_text()]
        assert len(found) == 1, f"{name}: {len(found)} of the example's modules have {anchor!r}"
        (module,) = found
        module.write_text(module.read_text().replace(anchor, anchor + insert, 1))
    init = copy / "__init__.py"
    init.write_text(init.read_text().replace('type = "telegram"', f'type = "broken-{name}"'))


def kit_report(pytester: pytest.Pytester) -> dict[str, list[str]]:
    """The example's kit tests, run once over every broken copy and an unbroken one: the
    failure messages of each."""
    lines = [
        "import sys",
        f"sys.path.insert(0, {str(EXAMPLE / 'tests')!r})",
        "import test_contract as base  # the example's contract class, not collected here",
        "from omnichannel.registry import register",
    ]
    faults = [(name, anchor, insert) for name, (anchor, insert, _) in BROKEN.items()]
    for name, anchor, insert in [*faults, ("sound", None, "")]:
        broken_copy(pytester.path, name, anchor, insert)
        lines += [
            f"import tg_{name}",
            f'register("broken-{name}", tg_{name}.TelegramConnector)',
            f"class Test_{name}(base.TestTelegramContract):",
            f'    connector_type = "broken-{name}"',
        ]
    pytester.makepyfile(test_broken=textwrap.dedent("\n".join(lines)))
    report = pytester.path / "report.xml"
    pytester.runpytest_subprocess(
        "-q", "-p", "no:cacheprovider", "-W", "ignore", f"--junitxml={report}"
    )
    failures: dict[str, list[str]] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        name = case.get("classname", "").rsplit(".Test_", 1)[-1]
        failures.setdefault(name, [])
        for failure in [*case.iter("failure"), *case.iter("error")]:
            failures[name].append(failure.get("message", "") + (failure.text or ""))
    return failures


def test_broken_copies_fail_the_kit_saying_why(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy of the Telegram connector broken one way (accepts every request, no external
    id, the token in a log line or in an error) fails the kit with a message naming the
    fault; the unbroken copy passes the same run."""
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # the example's tests are imported
    failures = kit_report(pytester)
    assert failures.get("sound") == [], failures.get("sound")
    for name, (_, _, message) in BROKEN.items():
        assert failures.get(name), f"{name}: the kit passed a broken connector"
        assert any(message in text for text in failures[name]), (name, failures[name][:3])
