"""The dashboard in a real browser: headless Chromium (Debian's, driven by
Playwright) logs in with an operator token and watches a DTMF verification
go from queued to verified through the real stack, without a reload. A
screenshot of the page is kept as a test artifact."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from ivr_auth import store as store_mod
from ivr_auth_devkit import sipp
from tests.e2e.conftest import Api, Starter, service_config

pytestmark = pytest.mark.e2e

PHONE = "090-1234-5678"
ARTIFACTS = Path(os.environ.get("IVR_AUTH_TEST_ARTIFACTS", Path(__file__).parents[2] / ".run" / "test-artifacts"))
# Every status the page shows in a row of the latest requests, in order, per request.
WATCH_STATUSES = """
() => {
  window.statusesSeen = {};
  const record = () => {
    for (const row of document.querySelectorAll("#recent tbody tr[data-id]")) {
      const seen = (window.statusesSeen[row.dataset.id] ||= []);
      if (seen[seen.length - 1] !== row.dataset.status) seen.push(row.dataset.status);
    }
  };
  new MutationObserver(record).observe(document.querySelector("#recent tbody"), { childList: true, subtree: true });
  record();
}
"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: `make setup` installs it"
    async with async_playwright() as pw:
        # No sandbox: the suite runs as root, which Chromium's sandbox refuses;
        # the browser only ever loads the test's own page on loopback.
        launched = await pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest.fixture
async def operator_token(store: store_mod.Store) -> AsyncIterator[str]:
    name = f"op-{uuid.uuid4().hex[:10]}"
    yield await store.operators.add(name)
    await store.operators.revoke(name)


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


async def log_in(page: Page, base_url: str, token: str) -> None:
    await page.goto(f"{base_url}/dashboard")
    await expect(page).to_have_url(f"{base_url}/dashboard/login")
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(f"{base_url}/dashboard")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")


async def test_the_page_shows_a_verification_go_from_queued_to_verified_live(
    api: Api, start_service: Starter, browser: Browser, operator_token: str, artifacts: Path
) -> None:
    page = await browser.new_page(viewport={"width": 1600, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):  # a CSP refusal is reported here too
            problems.append(f"console {message.type}: {message.text}")

    page.on("console", on_console)
    await log_in(page, api.base_url, operator_token)
    loads: list[str] = []
    page.on("load", lambda p: loads.append(p.url))
    await page.evaluate(WATCH_STATUSES)

    # No controller yet: the request waits in the queue, and the page says so.
    created = await api.create(PHONE)
    row = page.locator(f'#recent tbody tr[data-id="{created["id"]}"]')
    await expect(row).to_have_attribute("data-status", "queued")
    await expect(row.locator(".phone")).to_have_text("+81********78")
    await expect(page.locator("#queue-depth")).not_to_have_text("0")

    cfg = service_config()
    async with sipp.Handset(port=cfg.trunk.port, host=cfg.trunk.host, keys=created["code"] + "#") as phone:
        controller = await start_service(api=False)
        assert controller.node is not None
        # The controller reports itself: its node and trunk show as up.
        node = page.locator(f'#nodes tbody tr[data-node="{controller.node.name}"]')
        await expect(node.locator(".health")).to_have_text("up", timeout=15_000)
        await expect(page.locator(f'#trunks tbody tr[data-trunk="{cfg.trunk.name}"] .health')).to_have_text("up")
        await expect(row).to_have_attribute("data-status", "verified", timeout=60_000)
        assert (await phone.wait()).ok

    seen = await page.evaluate("(id) => window.statusesSeen[id]", created["id"])
    assert seen[0] == "queued", seen
    assert seen[-1] == "verified", seen
    assert loads == [], "the page was reloaded"
    assert await page.evaluate("() => window.statusesSeen !== undefined")  # the same document throughout

    # The request's detail: its event log, the call with its outcome.
    await row.locator("a").click()
    detail = page.locator("#detail")
    await expect(detail).to_be_visible()
    await expect(detail).to_have_attribute("data-status", "verified")
    events = detail.locator("#detail-events tbody tr")
    await expect(events.filter(has_text="in_call → verified")).to_have_count(1)
    await expect(detail.locator("#detail-calls tbody tr").first).to_contain_text("verified")
    assert "12345678" not in await page.content()

    await page.screenshot(path=artifacts / "dashboard-verified.png")
    assert problems == []
