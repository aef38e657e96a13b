"""The REST client's paging: the events endpoint answers a page at a time."""

from __future__ import annotations

import httpx

from budgetprune.client import Client

PAGE = 3


def _server(events: int):
    asked: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        after = int(request.url.params["after"])
        asked.append(after)
        ids = [i for i in range(1, events + 1) if i > after][:PAGE]
        data = [
            {"id": i, "at": "2026-12-05T00:00:00Z", "phase": "fit", "progress": i / events}
            for i in ids
        ]
        return httpx.Response(200, json={"data": data, "count": len(data)})

    return handler, asked


def test_events_reads_every_page():
    handler, asked = _server(events=7)
    with Client("http://api", "t", transport=httpx.MockTransport(handler)) as client:
        events = client.events("j")
    assert [e.id for e in events] == list(range(1, 8))
    assert asked == [0, 3, 6, 7]


def test_events_after_an_id():
    handler, _ = _server(events=4)
    with Client("http://api", "t", transport=httpx.MockTransport(handler)) as client:
        assert [e.id for e in client.events("j", after=2)] == [3, 4]
