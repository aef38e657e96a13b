"""On a failed end-to-end test, the report carries the end of every service log the test wrote:
CI keeps only the printed report, not the temporary folders the processes logged to."""

from __future__ import annotations

import time

import pytest

_STARTED = pytest.StashKey[float]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    if call.when == "setup":
        item.stash[_STARTED] = time.time() - 1
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    since = item.stash.get(_STARTED, time.time() - 600)
    base = item.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    logs = sorted(p for p in base.glob("*/**/logs/*.log") if p.stat().st_mtime >= since)
    for path in logs[:12]:
        lines = path.read_text(errors="replace").splitlines()[-40:]
        report.sections.append((f"log {path.relative_to(base)}", "\n".join(lines)))
