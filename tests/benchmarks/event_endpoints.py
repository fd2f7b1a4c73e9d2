"""Benchmark: events/s delivered to NATS JetStream through the event endpoint, against a plain nats-py JetStream
publisher with the same in-flight window on the same stream, measured in the same run. One JSON line per figure.

    .venv/bin/python -m tests.benchmarks.event_endpoints [--events 20000] [--batch 500] [--window 256] [--rounds 3]

The endpoint encodes each TwinEvent as a CloudEvent and keeps up to 4 batches submitted (as a route does), their
events sharing one window; the raw publisher sends the same pre-encoded bodies with the same headers (Nats-Msg-Id)
and window, batch by batch, so the ratio is the endpoint's whole cost (encoding, the thread hop) over bare
JetStream publishing.
Rounds alternate raw and endpoint; the median of each is printed. Needs NATS with JetStream on 127.0.0.1:4222.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository's packages, not this folder's scripts

import nats

from connectors.events import (
    EndpointOptions,
    TwinEvent,
    open_endpoint,
    to_cloudevent_json,
)

NATS_URL = "nats://127.0.0.1:4222"


def emit(figure: str, value: float, **extra: object) -> None:
    """One JSON line per figure, with the load average."""
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(
        json.dumps(
            {
                "benchmark": "event_endpoints",
                "figure": figure,
                "value": round(value, 3),
                "loadavg": " ".join(load),
                **extra,
            }
        ),
        flush=True,
    )


def make_events(count: int, first: int) -> list[TwinEvent]:
    """count twin.updated events with ids first..first+count-1 over 100 twins."""
    now = datetime.now(UTC)
    return [
        TwinEvent(
            str(first + i),
            "/enterprise-twin/bench",
            "twin.updated",
            f"Employee:{i % 100}",
            now,
            {"patch": [{"op": "replace", "path": "/salary", "value": 50_000 + i}]},
        )
        for i in range(count)
    ]


async def manage_stream(stream: str, prefix: str, create: bool) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        if create:
            await js.add_stream(name=stream, subjects=[f"{prefix}.>"])
        else:
            await js.delete_stream(stream)
    finally:
        await nc.close()


async def raw_publish(events: list[TwinEvent], prefix: str, window: int, batch: int) -> float:
    """Seconds for a plain nats-py JetStream publisher to get every PubAck, batch by batch, `window` in flight."""
    bodies = [(e.id, f"{prefix}.{e.type}", to_cloudevent_json(e)) for e in events]
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        semaphore = asyncio.Semaphore(window)

        async def one(msg_id: str, subject: str, body: bytes) -> None:
            async with semaphore:
                await js.publish(
                    subject, body, headers={"Nats-Msg-Id": msg_id, "content-type": "application/cloudevents+json"}
                )

        start = time.perf_counter()
        for i in range(0, len(bodies), batch):
            await asyncio.gather(*(one(*b) for b in bodies[i : i + batch]))
        return time.perf_counter() - start
    finally:
        await nc.close()


async def raw_publish_async(events: list[TwinEvent], prefix: str, window: int) -> float:
    """Seconds for a plain nats-py publisher using `publish_async` (`window` unacknowledged at most, no batch
    barrier) to get every PubAck: the fastest plain JetStream publisher nats-py offers."""
    bodies = [(e.id, f"{prefix}.{e.type}", to_cloudevent_json(e)) for e in events]
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream(publish_async_max_pending=window)
        start = time.perf_counter()
        futures = [
            await js.publish_async(
                subject, body, headers={"Nats-Msg-Id": msg_id, "content-type": "application/cloudevents+json"}
            )
            for msg_id, subject, body in bodies
        ]
        await asyncio.gather(*futures)
        return time.perf_counter() - start
    finally:
        await nc.close()


def endpoint_publish(events: list[TwinEvent], stream: str, prefix: str, window: int, batch: int) -> float:
    """Seconds for the event endpoint to deliver every event, up to 4 batches submitted at a time."""
    with open_endpoint(f"{NATS_URL}/{stream}/{prefix}", EndpointOptions(max_in_flight=window)) as endpoint:
        endpoint.publish(events[:10])  # connection and first-publish warm-up, ids reused below are deduped
        start = time.perf_counter()
        in_flight: list = []
        for i in range(0, len(events), batch):
            if len(in_flight) == 4:
                in_flight.pop(0).result()
            in_flight.append(endpoint.submit(events[i : i + batch]))
        for delivery in in_flight:
            delivery.result()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    stream, prefix = f"BENCH_{uuid.uuid4().hex[:8].upper()}", f"bench-{uuid.uuid4().hex[:8]}"
    asyncio.run(manage_stream(stream, prefix, True))
    raw_rates, endpoint_rates = [], []
    try:
        for round_no in range(args.rounds):
            base = round_no * 2 * args.events
            raw_events = make_events(args.events, base + 1)
            endpoint_events = make_events(args.events, base + args.events + 1)
            raw_rates.append(args.events / asyncio.run(raw_publish(raw_events, prefix, args.window, args.batch)))
            endpoint_rates.append(
                args.events / endpoint_publish(endpoint_events, stream, prefix, args.window, args.batch)
            )
    finally:
        asyncio.run(manage_stream(stream, prefix, False))
    common = {"events": args.events, "batch": args.batch, "window": args.window, "rounds": args.rounds}
    endpoint_rate, raw_rate = statistics.median(endpoint_rates), statistics.median(raw_rates)
    emit("endpoint_nats_events_per_s", endpoint_rate, **common)
    emit("raw_nats_publish_per_s", raw_rate, **common)
    emit("endpoint_to_raw_nats_ratio", endpoint_rate / raw_rate, **common)


if __name__ == "__main__":
    main()
