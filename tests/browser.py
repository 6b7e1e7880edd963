"""Headless Chromium for the tests that look at a page (the portal examples, the HTML report).

Debian's Chromium and its chromedriver (``apt-get install chromium chromium-driver``): nothing is
downloaded. Without them a test is skipped with the reason, unless
``OMNICHANNEL_REQUIRE_BROWSER=1`` (CI), where it fails. Screenshots are copied to
``$OMNICHANNEL_ARTIFACTS`` (else ``build/screenshots/``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
REQUIRE_BROWSER = os.environ.get("OMNICHANNEL_REQUIRE_BROWSER") == "1"


@contextmanager
def chromium(*, console_log: bool = False, page_load_timeout: float = 20.0) -> Iterator[Any]:
    """A headless Chromium WebDriver (``console_log``: its console kept for ``get_log``)."""
    if not (CHROMIUM and CHROMEDRIVER):
        reason = (
            "Chromium and chromedriver not installed (apt-get install chromium chromium-driver)"
        )
        if REQUIRE_BROWSER:
            pytest.fail(reason + " (OMNICHANNEL_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    if console_log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(page_load_timeout)
    try:
        yield driver
    finally:
        driver.quit()


def keep_screenshot(shot: Path, name: str | None = None) -> None:
    """Copy a screenshot taken by a test to the artifacts folder."""
    artifacts = Path(os.environ.get("OMNICHANNEL_ARTIFACTS") or ROOT / "build" / "screenshots")
    artifacts.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, artifacts / (name or shot.name))
