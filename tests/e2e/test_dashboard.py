"""The dashboard in a real browser (Debian's Chromium driven by Playwright): submit a job over
the API, watch its page update live to done, screenshot it, check what it shows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from budgetprune.client import Client
from budgetprune.schemas import JobCreate
from budgetprune.stack import Stack, stack_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (make browser)", allow_module_level=True)

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    data = tmp_path_factory.mktemp("stack-ui")
    with Stack(data, stack_env(data, embedded=True)) as s:
        s.start_all(agents=("ui-agent",))
        yield s


@pytest.fixture
def page(stack):
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.add_init_script(f"localStorage.setItem('bp_token', '{stack.user_token}')")
        yield page
        browser.close()


def test_job_page_updates_live_to_done(stack, page):
    with Client(stack.url, stack.user_token) as client:
        job = client.submit(
            JobCreate(model="deit_tiny_patch16_224", img_size=64, budget_fraction=0.6)
        )
    page.goto(f"{stack.url}/ui/#/jobs/{job.id}")
    page.wait_for_selector("#status .state", timeout=30_000)
    first = page.inner_text("#status")
    assert "queued" in first or "running" in first
    page.wait_for_selector(
        "#status .state.succeeded, #status .state.failed, #status .state.infeasible",
        timeout=240_000,
    )
    assert "succeeded" in page.inner_text("#status .state"), page.inner_text("#status")
    page.wait_for_selector("#cert .passed", timeout=30_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "job.png"), full_page=True)

    assert "PASSED" in page.inner_text("#cert")
    assert page.locator("#blocks table tr").count() == 13  # header + 12 blocks
    assert page.locator("#latency svg polyline").count() >= 2  # measured, predicted, budget
    assert "certify" in page.inner_text("#rounds")
    assert "model.onnx" in page.inner_text("#status")

    page.goto(f"{stack.url}/ui/#/jobs")
    page.wait_for_selector("#jobs tr[data-id]")
    assert job.id[:8] in page.inner_text("#jobs")
    page.goto(f"{stack.url}/ui/#/devices")
    page.wait_for_selector("#devices")
    assert "ui-agent" in page.inner_text("#devices")


def test_without_a_token_the_page_asks_for_one(stack):
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{stack.url}/ui/")
        page.wait_for_selector("#view p")
        assert "Enter your API token" in page.inner_text("#view")
        browser.close()
