"""A headless Chromium (Debian's, driven by Playwright) on the demo, for the browser tests.

Skips when Playwright or Chromium is missing, unless `COUNTERSIGN_REQUIRE_BROWSER=1` (CI),
which turns that into a failure. Screenshots go to `$COUNTERSIGN_SCREENSHOTS` when set (e.g.
`docs/screenshots`), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from bot.demo import Demo
from tests.sandbox.harness import running_demo

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRED = os.environ.get("COUNTERSIGN_REQUIRE_BROWSER") == "1"


def need_browser() -> Any:
    """The `playwright.sync_api` module, or skip (fail when the browser is required)."""
    try:
        import playwright.sync_api as api
    except ImportError:
        _missing("Playwright is not installed (.venv/bin/pip install playwright)")
    if not CHROMIUM.exists():
        _missing(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    return api


def _missing(problem: str) -> NoReturn:
    if REQUIRED:
        pytest.fail(f"the browser is required (COUNTERSIGN_REQUIRE_BROWSER=1): {problem}")
    pytest.skip(problem)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    need_browser()
    with running_demo(tmp_path_factory.mktemp("demo")) as running:
        yield running


@pytest.fixture(scope="module")
def browser_context() -> Iterator[Any]:
    api = need_browser()
    profile = tempfile.mkdtemp(prefix="countersign-chromium-")
    try:
        with api.sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=ARGS,
                viewport={"width": 1360, "height": 900},
                device_scale_factor=1,
                locale="en-US",
                timezone_id="UTC",
            )
            context.set_default_timeout(15_000)
            api.expect.set_options(timeout=15_000)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser_context: Any) -> Iterator[Any]:
    tab = browser_context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield tab
    finally:
        tab.close()
    assert not errors, f"the page threw: {errors}"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("COUNTERSIGN_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
