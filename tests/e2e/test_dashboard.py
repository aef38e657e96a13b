"""The dashboard in a real browser (Debian's Chromium driven by Playwright): submit a job over
the API, watch its page update live to done (over server-sent events, and again with the
stream refused, by polling), screenshot it, check what it shows."""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from budgetprune.client import Client
from budgetprune.schemas import JobCreate
from budgetprune.stack import Stack, stack_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (make tools)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "screenshots"
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"
# CIFAR-10's 10 classes; 16x16 input (16 patches of 4x4) keeps measuring and training fast
MODEL, IMG_SIZE = "deit_tiny_patch4_32", 16
DONE = "#status .state.succeeded, #status .state.failed, #status .state.infeasible"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    data = tmp_path_factory.mktemp("stack-ui")
    with Stack(data, stack_env(data, embedded=True)) as s:
        s.start_all(agents=("ui-agent",))
        yield s


@pytest.fixture(scope="module")
def cifar_subset(tmp_path_factory) -> Path:
    """A fixed, class-balanced slice of the shared CIFAR-10 zip: 4 training and 2 test
    images of each of the 10 classes, the first by name."""
    if not CIFAR.exists():
        pytest.skip(f"the shared CIFAR-10 zip is not at {CIFAR}")
    per_split = {"train": 4, "test": 2}
    out = tmp_path_factory.mktemp("data") / "cifar-tiny.zip"
    with zipfile.ZipFile(CIFAR) as src, zipfile.ZipFile(out, "w") as dst:
        taken: dict[tuple[str, str], int] = {}
        for name in sorted(n for n in src.namelist() if n.endswith(".jpg")):
            split, cls, _ = name.split("/", 2)
            if split in per_split and taken.get((split, cls), 0) < per_split[split]:
                taken[(split, cls)] = taken.get((split, cls), 0) + 1
                dst.writestr(name, src.read(name))
    assert len(taken) == 20 and set(taken.values()) == {4, 2}
    return out


def _submit_with_data(stack: Stack, dataset: Path) -> str:
    with Client(stack.url, stack.user_token) as client:
        job = client.submit(
            JobCreate(
                model=MODEL,
                img_size=IMG_SIZE,
                budget_fraction=0.7,
                slack=0.5,  # no give-back rounds: each is one more certification
                dataset=client.upload(dataset),
                finetune_steps=10,
                batch_size=8,
                eval_per_class=2,
            )
        )
    return job.id


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
        page.requested = []  # every URL the page fetched, in order
        page.on("request", lambda request: page.requested.append(request.url))
        yield page
        browser.close()


def _history_polls(page) -> list[int]:
    """The `after` of every GET /events the page made past its first load."""
    urls = [urlparse(u) for u in page.requested if "/events" in u]
    return [int(parse_qs(u.query)["after"][0]) for u in urls if "after" in parse_qs(u.query)]


def _points(page, selector: str) -> list[tuple[float, float]]:
    raw = page.get_attribute(selector, "points") or ""
    return [tuple(float(v) for v in p.split(",")) for p in raw.split()]


def _follow_to_done(stack, page, job_id: str) -> dict:
    """Open the job's page while the job is still going, wait until it shows done, and check
    what a finished page shows; returns the job's report."""
    page.goto(f"{stack.url}/ui/#/jobs/{job_id}")
    page.wait_for_selector("#status .state", timeout=30_000)
    first = page.inner_text("#status")
    assert "queued" in first or "running" in first
    page.wait_for_selector(DONE, timeout=240_000)
    assert "succeeded" in page.inner_text("#status .state"), page.inner_text("#status")
    page.wait_for_selector("#cert .passed", timeout=30_000)
    assert "PASSED" in page.inner_text("#cert")
    assert page.locator("#blocks table tr").count() == 13  # header + 12 blocks
    assert "certify" in page.inner_text("#rounds")
    assert "model.onnx" in page.inner_text("#status")
    assert page.inner_text("#live") == ""  # no live-update error left on the page

    headers = {"Authorization": f"Bearer {stack.user_token}"}
    base = f"{stack.url}/v1/jobs/{job_id}"
    report = httpx.get(f"{base}/artifacts/report.json", headers=headers).json()
    events = httpx.get(f"{base}/events", headers=headers).json()["data"]

    # the training curve: the fine-tunes' logged losses, every one a point of the line
    assert report["training_curve"], report["accuracy"]
    loss = _points(page, "#training svg g[data-series=loss] polyline")
    assert len(loss) == len(report["training_curve"]) >= 2
    assert page.locator("#training svg circle").count() == len(loss)

    # latency: one x per round, measured and predicted of the same round at the same x
    rounds = report["rounds"]
    measured = _points(page, "#latency svg g[data-series=measured] polyline")
    predicted = _points(page, "#latency svg g[data-series=predicted] polyline")
    assert len(measured) == len(predicted) == len(rounds) >= 2
    assert [x for x, _ in measured] == [x for x, _ in predicted]
    titles = page.locator("#latency g[data-series=measured] circle title").all_text_contents()
    assert [t.partition(": measured ")[0] for t in titles] == [
        f"round {r['round']} ({r['kind']})" for r in rounds
    ]
    for series in ("budget", "dense"):  # from the progress history, not the report
        assert len(_points(page, f"#latency svg g[data-series={series}] polyline")) == 2

    # while the job ran, the page paired the history the same way: the same measurements in
    # the same order, each with its own prediction. The first (the smallest network) is the
    # exception: its progress event carries the prediction made after the predictor learned
    # that very measurement, so only its measured value is compared.
    live = page.evaluate("events => roundsFromEvents(events)", events)
    assert [r["measured_ms"] for r in live] == pytest.approx([r["measured_ms"] for r in rounds])
    assert [r["predicted_ms"] for r in live[1:]] == pytest.approx(
        [r["predicted_ms"] for r in rounds[1:]]
    )
    return report


def test_job_page_updates_live_to_done(stack, page, cifar_subset):
    job_id = _submit_with_data(stack, cifar_subset)
    _follow_to_done(stack, page, job_id)
    assert _history_polls(page) == [0]  # the stream carried everything after the first load
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "job.png"), full_page=True)

    page.goto(f"{stack.url}/ui/#/jobs")
    page.wait_for_selector("#jobs tr[data-id]")
    assert job_id[:8] in page.inner_text("#jobs")
    page.goto(f"{stack.url}/ui/#/devices")
    page.wait_for_selector("#devices")
    assert "ui-agent" in page.inner_text("#devices")


def test_without_the_stream_the_page_polls_to_done(stack, page, cifar_subset):
    """The stream refused at the network (a proxy that drops it, a browser that cannot read
    it): the page polls the history and the job instead, and shows the same finished page."""
    refused: list[str] = []

    def refuse(route):
        refused.append(route.request.url)
        route.abort()

    page.route(re.compile(r".*/v1/jobs/[^/]+/stream$"), refuse)
    job_id = _submit_with_data(stack, cifar_subset)
    _follow_to_done(stack, page, job_id)
    assert refused == [f"{stack.url}/v1/jobs/{job_id}/stream"]
    polls = _history_polls(page)
    assert polls[0] == 0 and len(polls) >= 3, polls
    assert polls == sorted(polls) and polls[-1] > 0  # each poll asks only for what is new
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "job-polled.png"), full_page=True)


def test_an_infeasible_job_shows_the_rounds_it_measured_and_why(stack, page):
    """A budget under the smallest network: no certificate, but the page shows the round that
    proved it and the reason, from the job's report."""
    with Client(stack.url, stack.user_token) as client:
        job = client.submit(JobCreate(model=MODEL, img_size=IMG_SIZE, budget_ms=0.001))
    page.goto(f"{stack.url}/ui/#/jobs/{job.id}")
    page.wait_for_selector("#status .state.infeasible", timeout=120_000)
    page.wait_for_selector("#cert .notpassed", timeout=30_000)
    assert "smallest allowed sub-network" in page.inner_text("#cert")
    assert "smallest" in page.inner_text("#rounds")
    assert page.locator("#rounds table tr").count() == 3  # header + the smallest, twice
    assert "report.json" in page.inner_text("#status")


def test_without_a_token_the_page_asks_for_one(stack):
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{stack.url}/ui/")
        page.wait_for_selector("#view p")
        assert "Enter your API token" in page.inner_text("#view")
        browser.close()
