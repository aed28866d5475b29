"""What a request pays for API-key authentication.

Over HTTP: uvicorn serves a trivial ASGI app in a separate process, once bare and once
behind :class:`keyledger.adapters.driving.asgi.ApiKeyMiddleware`; an httpx client sends
sequential keep-alive requests and times each one. Configurations are interleaved run by
run, a hundred requests at a time, and each run's median is kept; the report gives the
median of those medians and the difference over the bare app (the floor measured in the
same run).

In process: the median cost of ``ledger.verify`` on a working key, and of one call of
the bare app and of the app behind the middleware, timed in batches.

    .venv/bin/python bench/auth_overhead.py [--runs 3] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from keyledger import Actor, Ledger, Permission
from keyledger.adapters.driving.asgi import ApiKeyMiddleware, Message, Receive, Scope, Send

WARMUP = 200
CHUNK = 100
BATCH = 1000
BATCHES = 50
TIMEOUT = 10.0


async def trivial_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The app alone: 200 and two bytes, for HTTP; lifespan is acknowledged."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def serve(url: str, protected: bool, ports: Any) -> None:
    """Run uvicorn in this (child) process on a free port, reported through ``ports``."""
    ledger = Ledger.open(url)
    app = ApiKeyMiddleware(trivial_app, ledger) if protected else trivial_app
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    ports.put(sock.getsockname()[1])
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
    ledger.close()


class Server:
    """A uvicorn process serving the trivial app, bare or protected."""

    def __init__(self, url: str, *, protected: bool) -> None:
        context = multiprocessing.get_context("spawn")
        ports = context.Queue()
        self.process = context.Process(target=serve, args=(url, protected, ports), daemon=True)
        self.process.start()
        self.base_url = f"http://127.0.0.1:{ports.get(timeout=30)}"
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=1.0, trust_env=False) as probe:
            while True:
                try:
                    probe.get(self.base_url + "/")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(30)


def over_http(
    url: str, key: str, runs: int, requests: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Per configuration, the median microseconds per request of each run, and the paired
    overhead: the median, over all turns, of its turn median minus the bare app's.

    Each configuration has its own keep-alive connection; within a run they take turns
    every ``CHUNK`` requests, so a change in machine load falls on all of them alike.
    """
    bare, protected = Server(url, protected=False), Server(url, protected=True)
    basic = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    cases: dict[str, tuple[str, dict[str, str], int]] = {
        "app alone": (bare.base_url, {}, 200),
        "app alone, Bearer header": (bare.base_url, {"Authorization": f"Bearer {key}"}, 200),
        "middleware, Bearer key": (protected.base_url, {"Authorization": f"Bearer {key}"}, 200),
        "middleware, Basic key": (protected.base_url, {"Authorization": basic}, 200),
        "middleware, no key (401)": (protected.base_url, {}, 401),
    }
    clients = {
        name: httpx.Client(base_url=base_url, headers=headers, timeout=TIMEOUT, trust_env=False)
        for name, (base_url, headers, _) in cases.items()
    }
    medians: dict[str, list[float]] = {name: [] for name in cases}
    differences: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for client in clients.values():
            for _ in range(WARMUP):
                client.get("/")
        for _ in range(runs):
            samples: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(0, requests, CHUNK):
                turn: dict[str, float] = {}
                for name, client in clients.items():
                    expect = cases[name][2]
                    chunk = []
                    for _ in range(CHUNK):
                        start = time.perf_counter_ns()
                        response = client.get("/")
                        chunk.append((time.perf_counter_ns() - start) / 1000)
                        if response.status_code != expect:
                            raise SystemExit(f"{name}: expected {expect}, got {response.status_code}")
                    samples[name] += chunk
                    turn[name] = statistics.median(chunk)
                for name, value in turn.items():
                    differences[name].append(value - turn["app alone"])
            for name, values in samples.items():
                medians[name].append(statistics.median(values))
    finally:
        for client in clients.values():
            client.close()
        bare.stop()
        protected.stop()
    return medians, {name: statistics.median(values) for name, values in differences.items()}


def per_call_ns(call: Callable[[], object]) -> float:
    """The median over batches of the mean nanoseconds of one call."""
    means = []
    for _ in range(BATCHES):
        start = time.perf_counter_ns()
        for _ in range(BATCH):
            call()
        means.append((time.perf_counter_ns() - start) / BATCH)
    return statistics.median(means)


async def per_await_ns(app: Any, scope: Scope) -> float:
    """The median over batches of the mean nanoseconds of one ``await app(scope, ...)``."""

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    means = []
    for _ in range(BATCHES):
        start = time.perf_counter_ns()
        for _ in range(BATCH):
            await app(dict(scope), receive, send)
        means.append((time.perf_counter_ns() - start) / BATCH)
    return statistics.median(means)


def in_process(ledger: Ledger, key: str) -> dict[str, float]:
    basic = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    scope: Scope = {
        "type": "http",
        "path": "/",
        "method": "GET",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {key}".encode())],
    }
    return {
        "verify(raw key)": per_call_ns(lambda: ledger.verify(key)),
        "verify('Bearer ...')": per_call_ns(lambda: ledger.verify(f"Bearer {key}")),
        "verify('Basic ...')": per_call_ns(lambda: ledger.verify(basic)),
        "verify(malformed)": per_call_ns(lambda: ledger.verify("Bearer nope")),
        "await app alone": asyncio.run(per_await_ns(trivial_app, scope)),
        "await middleware + app": asyncio.run(per_await_ns(ApiKeyMiddleware(trivial_app, ledger), scope)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        with Ledger.open(url) as ledger:
            issued = ledger.create_key(Actor("bench", "bench", {Permission.INTEGRATION}), name="bench")
            key = issued.secret.get_secret_value()
            local = in_process(ledger, key)
        medians, paired = over_http(url, key, args.runs, args.requests)

    print(
        f"over HTTP: uvicorn (h11, asyncio), httpx sequential keep-alive, {args.runs} runs x {args.requests}"
    )
    floor = statistics.median(medians["app alone"])
    for name, values in medians.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:.1f}" for v in values)
        overhead = f"{median - floor:+7.1f} us (paired {paired[name]:+6.1f} us)  x{median / floor:.3f}"
        print(f"  {name:<26} {median:8.1f} us/request  {overhead}  runs: {runs}")
    print("in process (median of batch means):")
    app_alone = local["await app alone"]
    for name, value in local.items():
        print(f"  {name:<26} {value:8.0f} ns  x{value / app_alone:.2f} of the app alone")


if __name__ == "__main__":
    main()
