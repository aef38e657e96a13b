"""Load test of one API process against the real Redis and PostgreSQL of this machine.

200 job submissions and 100 concurrent status pollers, plus 8 agents long-polling for tasks,
all on 127.0.0.1. Reports status-endpoint latency percentiles, submissions per second, errors,
and whether every submitted job is in the store and in the queue.

    .venv/bin/python bench/load_test.py [--submissions 200] [--pollers 100] [--agents 8]
        [--poll-interval 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import numpy as np
import psycopg
import redis

from budgetprune.stack import Stack, stack_env

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/11"


async def main(args: argparse.Namespace) -> dict[str, object]:
    db = f"bp_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    redis.Redis.from_url(REDIS_URL).flushdb()
    data = Path(f"/tmp/{db}")
    env = stack_env(
        data,
        embedded=False,
        extra={
            "REDIS_URL": REDIS_URL,
            "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}",
            "BUDGETPRUNE_RECONCILE_INTERVAL_S": "3600",
        },
    )
    try:
        with Stack(data, env) as stack:
            stack.start_api(workers=args.api_workers)
            token = stack.create_user("load")
            return await _load(stack, token, args)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


async def _load(stack: Stack, token: str, args) -> dict[str, object]:
    # aiohttp, not httpx: at a hundred concurrent requests httpx's pool spent a whole core of
    # its own, so the generator, not the API, set the latency (the first runs of this file).
    user = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=args.pollers + 40)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        base_url=stack.url, headers=user, connector=connector, timeout=timeout
    ) as http:
        agents = []
        for i in range(args.agents):
            async with http.post(
                "/v1/agents/register",
                headers={"Authorization": f"Bearer {stack.agent_token}"},
                json={
                    "name": f"load-agent-{i}",
                    "runtimes": [{"name": "onnxruntime", "version": "x"}],
                },
            ) as r:
                body = await r.json()
            agents.append((body["id"], {"Authorization": f"Bearer {body['token']}"}))
        async with http.post(
            "/v1/jobs", json={"model": "deit_tiny_patch16_224", "budget_ms": 10}
        ) as first:
            job_ids = [(await first.json())["id"]]
        errors: list[str] = []
        status_ms: list[float] = []
        agent_polls = 0
        stop = asyncio.Event()

        async def poller() -> None:
            # A user's page or script polls about once a second; start out of phase.
            await asyncio.sleep(random.random() * args.poll_interval)
            while not stop.is_set():
                t = time.perf_counter()
                async with http.get(f"/v1/jobs/{random.choice(job_ids)}") as r:
                    await r.read()
                status_ms.append((time.perf_counter() - t) * 1000)
                if r.status != 200:
                    errors.append(f"status {r.status}")
                await asyncio.sleep(max(0.0, args.poll_interval - (time.perf_counter() - t)))

        async def agent(agent_id: str, headers: dict[str, str]) -> None:
            nonlocal agent_polls
            while not stop.is_set():
                async with http.get(
                    f"/v1/agents/{agent_id}/tasks/next", params={"wait": 2}, headers=headers
                ) as r:
                    await r.read()
                agent_polls += 1
                if r.status not in (200, 204):
                    errors.append(f"agent {r.status}")

        async def submit(n: int) -> None:
            async with http.post(
                "/v1/jobs", json={"model": "deit_tiny_patch16_224", "budget_ms": 5 + n % 7}
            ) as r:
                body = await r.text()
            if r.status != 202:
                errors.append(f"submit {r.status}: {body[:100]}")
            else:
                job_ids.append(json.loads(body)["id"])

        tasks = [asyncio.create_task(poller()) for _ in range(args.pollers)]
        tasks += [asyncio.create_task(agent(a, h)) for a, h in agents]
        await asyncio.sleep(1.0)
        t0 = time.perf_counter()
        sem = asyncio.Semaphore(10)

        async def bounded(n: int) -> None:
            async with sem:
                await submit(n)

        await asyncio.gather(*(bounded(n) for n in range(args.submissions)))
        submit_s = time.perf_counter() - t0
        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.gather(*tasks)
        async with http.get("/v1/jobs", params={"limit": 500}) as r:
            listed = (await r.json())["count"]
    queued = redis.Redis.from_url(REDIS_URL).llen("jobs")
    lat = np.array(status_ms)
    return {
        "submissions": args.submissions,
        "submissions_per_s": round(args.submissions / submit_s, 1),
        "status_requests": int(lat.size),
        "status_p50_ms": round(float(np.percentile(lat, 50)), 2),
        "status_p99_ms": round(float(np.percentile(lat, 99)), 2),
        "pollers": args.pollers,
        "poll_interval_s": args.poll_interval,
        "agents": args.agents,
        "api_workers": args.api_workers,
        "agent_polls": agent_polls,
        "errors": len(errors),
        "error_samples": errors[:5],
        "jobs_in_store": listed,
        "jobs_in_queue": queued,
        "jobs_lost": args.submissions + 1 - listed,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--submissions", type=int, default=200)
    parser.add_argument("--pollers", type=int, default=100)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--api-workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        help="seconds between one poller's requests (0: closed loop)",
    )
    parser.add_argument("--out", type=Path, help="also write the result here (JSON)")
    args = parser.parse_args()
    result = asyncio.run(main(args))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    sys.exit(1 if result["errors"] or result["jobs_lost"] else 0)
