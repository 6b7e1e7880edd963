"""The portal examples (Flask, Django, FastAPI), each run as a user runs it, driven by a real
headless Chromium: a complaint sent through the form gets a ticket, shows on the team queue, is
claimed, assigned and resolved through the queue page, and a signed webhook reaches the mounted
omnichannel app on the portal's own port.

Chromium and chromedriver come from Debian (``apt-get install chromium chromium-driver``);
without them the tests are skipped with the reason, unless ``OMNICHANNEL_REQUIRE_BROWSER=1``
(set by CI). A screenshot of each queue page is saved to ``$OMNICHANNEL_ARTIFACTS`` (else
``build/screenshots/``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from connectors.web import standard_signature
from omnichannel import Inbox
from tests.browser import chromium, keep_screenshot
from tests.conftest import ROOT

EXAMPLES = ROOT / "examples"
KEY = b"portal-example-signing-key-32by!"
TICKET = re.compile(r"ADU-\d{4}-\d{6}")
WAIT = 20.0
"""Seconds a page or a server may take before the test fails (a hang, not a measure)."""

COMMANDS: dict[str, Callable[[int], list[str]]] = {
    "flask": lambda port: [sys.executable, str(EXAMPLES / "flask_portal.py"), f"--port={port}"],
    "fastapi": lambda port: [sys.executable, str(EXAMPLES / "fastapi_portal.py"), f"--port={port}"],
    "django": lambda port: [
        sys.executable,
        str(EXAMPLES / "django_portal" / "manage.py"),
        "runserver",
        "--noreload",
        f"127.0.0.1:{port}",
    ],
}


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the module."""
    with chromium(page_load_timeout=WAIT) as driver:
        yield driver


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path) -> Path:
    """A deployment of one ``web`` connector named ``portal`` on a SQLite database in tmp_path."""
    secret = "whsec_" + base64.b64encode(KEY).decode()
    path = tmp_path / "omnichannel.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "portal.db"}"\n\n'
        f'[[connectors]]\nname = "portal"\ntype = "web"\nsecret = "{secret}"\n',
        encoding="utf-8",
    )
    return path


def start_portal(framework: str, config: Path, cwd: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The example's own command on a free port; returns once the form page answers."""
    port = free_port()
    env = {**os.environ, "OMNICHANNEL_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}
    with (cwd / f"{framework}.log").open("wb") as log:  # the child keeps its own copy
        proc = subprocess.Popen(
            COMMANDS[framework](port), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if requests.get(url + "/", timeout=2).status_code == 200:
                return proc, url
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    stop(proc)
    pytest.fail(f"{framework} portal did not start:\n{(cwd / f'{framework}.log').read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def row_text(driver: WebDriver, ticket: str, cell: str) -> str:
    return str(driver.find_element(By.ID, ticket).find_element(By.CLASS_NAME, cell).text)


def wait_for_cell(driver: WebDriver, ticket: str, cell: str, expected: str) -> None:
    """Wait until the queue page (reloaded by the action's redirect) shows ``expected``."""
    WebDriverWait(driver, WAIT, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: row_text(d, ticket, cell) == expected,
        f"{ticket} {cell} never became {expected!r}",
    )


def click_in_row(driver: WebDriver, ticket: str, button: str) -> None:
    driver.find_element(By.ID, ticket).find_element(By.CLASS_NAME, button).click()


def save_screenshot(driver: WebDriver, tmp_path: Path, framework: str) -> Path:
    """The queue page as a PNG in tmp_path, copied to the artifacts folder."""
    shot = tmp_path / f"portal-{framework}.png"
    assert driver.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    keep_screenshot(shot)
    return shot


def signed(body: bytes, webhook_id: str) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": stamp,
        "webhook-signature": standard_signature(KEY, webhook_id, stamp, body),
    }


def send_form(driver: WebDriver, url: str, fields: dict[str, str], anonymous: bool) -> str:
    """Fill the complaint form in the browser, send it; the ticket the thank-you page shows."""
    driver.get(url + "/")
    for name, value in fields.items():
        driver.find_element(By.NAME, name).send_keys(value)
    if anonymous:
        driver.find_element(By.NAME, "anonymous").click()
    driver.find_element(By.ID, "send").click()
    shown = WebDriverWait(driver, WAIT).until(lambda d: d.find_element(By.ID, "ticket"))
    return str(shown.text)


def work_the_queue(driver: WebDriver, url: str, ticket: str, subject: str) -> None:
    """On the queue page: the ticket is open, then claimed, assigned to PUPR and resolved;
    resolving it again shows the queue's refusal."""
    driver.get(url + "/queue")
    assert row_text(driver, ticket, "status") == "open"
    assert row_text(driver, ticket, "subject") == subject  # shown as text, not markup
    assert not driver.find_element(By.ID, ticket).find_elements(By.TAG_NAME, "b")
    driver.find_element(By.ID, "claim").click()
    wait_for_cell(driver, ticket, "status", "in_progress")
    assert row_text(driver, ticket, "claimed") == "petugas"
    driver.find_element(By.ID, ticket).find_element(By.NAME, "agency").send_keys("PUPR")
    click_in_row(driver, ticket, "assign")
    wait_for_cell(driver, ticket, "agency", "PUPR")
    assert row_text(driver, ticket, "status") == "assigned"
    click_in_row(driver, ticket, "resolve")
    wait_for_cell(driver, ticket, "status", "resolved")
    click_in_row(driver, ticket, "resolve")
    error = WebDriverWait(driver, WAIT).until(lambda d: d.find_element(By.ID, "error"))
    assert f"{ticket} is resolved" in error.text


def post_webhooks(url: str, framework: str) -> str:
    """An unsigned webhook to the portal's port is refused; a signed one is filed: its ticket."""
    form = {"id": f"hook-{framework}", "phone": "0813 1111 2222", "message": "Lampu jalan padam."}
    body = json.dumps(form).encode()
    hook = f"{url}/webhooks/portal"
    unsigned = {"Content-Type": "application/json"}
    assert requests.post(hook, data=body, headers=unsigned, timeout=WAIT).status_code == 403
    answer = requests.post(hook, data=body, headers=signed(body, "msg_1"), timeout=WAIT)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "new"
    return str(answer.json()["ticket"])


@pytest.mark.parametrize(
    ("framework", "anonymous"), [("flask", False), ("django", True), ("fastapi", False)]
)
def test_portal_form_queue_and_webhook(
    framework: str, anonymous: bool, browser: WebDriver, tmp_path: Path
) -> None:
    """A form sent from Chromium gets a ticket shown on the thank-you page and on the queue;
    claim, assign and resolve on the queue page change it in the database; a signed webhook to
    the portal's own port is filed and shows on the queue, an unsigned one is refused."""
    config = write_config(tmp_path)
    fields = {
        "name": "Siti Aminah",
        "phone": "0812-3456-7890",
        "email": "siti@example.id",
        "subject": f"Jalan <b>rusak</b> ({framework})",
        "message": "Jalan menuju kantor desa rusak parah sejak bulan lalu.",
    }
    proc, url = start_portal(framework, config, tmp_path)
    try:
        ticket = send_form(browser, url, fields, anonymous)
        assert TICKET.fullmatch(ticket)
        work_the_queue(browser, url, ticket, fields["subject"])
        hooked = post_webhooks(url, framework)
        browser.get(url + "/queue")
        assert row_text(browser, hooked, "status") == "open"
        save_screenshot(browser, tmp_path, framework)
    finally:
        stop(proc)

    with Inbox.from_config(config) as inbox:
        complaint = inbox.complaint(ticket, team=True)
        assert complaint is not None
        assert (complaint.status, complaint.agency) == ("resolved", "PUPR")
        assert (complaint.channel, complaint.connector, complaint.anonymous) == (
            "web",
            "portal",
            anonymous,
        )
        assert complaint.subject == fields["subject"]
        # anonymous: no one, the team included, sees who sent it
        assert complaint.sender.email == (None if anonymous else fields["email"])
        kinds = [event["kind"] for event in inbox.queue.events(ticket)]
        assert kinds[-3:] == ["claimed", "assigned", "resolved"]
        assert [c.ticket for c in inbox.complaints(limit=None)] == [ticket, hooked]
