"""API benchmarks — prints a markdown table.

    python bench/api.py [--ticks 10000000] [--symbols 100] [--queries 300]
                        [--rate 2000] [--clients 200] [--seconds 10] [--batch 10] [--warmup 2]
                        [--ack both|queued|stored] [--ack-rounds 2]

1. History: `--ticks` sentiment ticks (1 per second per symbol) are generated straight into
   ClickHouse (`INSERT … SELECT FROM numbers()`), aggregated into 1-minute `sentiment_bars`
   (`INSERT … SELECT … GROUP BY`; the EMA columns are filled with the bar mean — the bench
   measures query cost, not EMA math), then `GET /api/sentiment/history` is timed over HTTP
   for random symbols and ranges (6 h at 1m, 24 h at 5m, the whole range at 1h).
2. Live: `--clients` SSE clients on `/stream/sentiment` (spread over the symbols) while ticks
   are POSTed at `--rate` ticks/s in batches of `--batch`, through the real embedded system
   (HTTP ingest -> the signals dataflow -> live bus -> SSE, coalescing to SSE_MAX_RATE_HZ per
   symbol included). Clients run in a separate process; latency = receive wall-clock minus
   the server's receipt stamp (`ingest_ts`) of the newest tick in the delivered state. The
   first `--warmup` seconds are posted at the rate but not measured.
   `--stand-in` replaces the dataflow by a stub that publishes each tick directly.
3. Ack modes: the live part runs once per `--ack` mode (default both, alternating
   `--ack-rounds` times), each on a fresh embedded system and database in the same run:
   `queued` answers 202 when the records are in the ingest buffer, `stored` when their rows
   are in ClickHouse (TICKCAST_INGEST_ACK). The table gives each mode's POST latency and
   POST → SSE, and the stored/queued ratio of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

T0 = 1_763_683_200_000  # 2025-11-21T00:00:00Z
KEY = "bench-key"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# --- server --------------------------------------------------------------------------------
def _serve(store: Any, ingest: Any, bus: Any, **settings: Any) -> tuple[str, Any, threading.Thread]:
    import uvicorn

    from api.app import create_app
    from api.context import AppContext
    from tickcast.jobs import JobCenter
    from tickcast.settings import Settings

    cfg = Settings(_env_file=None, API_KEYS=(KEY,), **settings)  # type: ignore[call-arg]
    ctx = AppContext(
        settings=cfg,
        store=store,
        bus=bus,
        ingest=ingest,
        jobs=JobCenter(store, bus=bus),
        registry_root=Path(tempfile.mkdtemp(prefix="tickcast-bench-reg-")),
    )
    port = _port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ctx), host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1, backlog=4096
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}", server, thread


def _serve_embedded(store: Any, workdir: Path, ack: str = "stored") -> tuple[str, Any, threading.Thread, Any]:
    import uvicorn

    from tickcast.app.embedded import EmbeddedSystem
    from tickcast.settings import load_settings

    settings = load_settings(
        API_KEYS=KEY,
        MODEL_STORE_DIR=str(workdir / "models"),
        SENTIMENT_HISTORY_MAX_POINTS=100_000,
        TICKCAST_LOG_LEVEL="WARNING",
        TICKCAST_INGEST_ACK=ack,
    )
    system = EmbeddedSystem(settings, simulator=False, store=store)
    app = system.app()
    from tickcast.gc_tuning import tune_gc

    tune_gc()  # as `tickcast up` does
    system.start_flow()
    port = _port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1, backlog=4096)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}", server, thread, system


# --- 1. history ----------------------------------------------------------------------------
def generate(store: Any, ticks: int, symbols: int) -> dict[str, float]:
    t = time.perf_counter()
    store.command(
        "INSERT INTO {db}.sentiment_ticks (id, symbol, ts, score, polarity, provider, weight, meta, ingest_ts) "
        "SELECT toString(number), concat('SYM', toString(number % {s:UInt32})), "
        "fromUnixTimestamp64Milli(toInt64({t0:Int64} + intDiv(number, {s:UInt32}) * 1000 + number % 997), 'UTC'), "
        "(cityHash64(number) % 2001) / 1000.0 - 1.0 AS sc, toInt8(sign(sc)), 'sim', 1.0, '{}', "
        "fromUnixTimestamp64Milli(toInt64({t0:Int64} + intDiv(number, {s:UInt32}) * 1000 + 1500), 'UTC') "
        "FROM numbers({n:UInt64})",
        {"s": symbols, "t0": T0, "n": ticks},
    )
    t_ticks = time.perf_counter() - t
    t = time.perf_counter()
    store.command(
        "INSERT INTO {db}.sentiment_bars SELECT symbol, '1m', toStartOfMinute(ts) + INTERVAL 1 MINUTE AS bar_end, "
        "avg(score), toUInt32(count()), avgIf(1.0, polarity = 1) , NULL, NULL, NULL, "
        "avg(score), avg(score), avg(score), NULL, 0 FROM {db}.sentiment_ticks GROUP BY symbol, bar_end"
    )
    t_bars = time.perf_counter() - t
    return {"ticks_s": t_ticks, "bars_s": t_bars, "bars": store.count("sentiment_bars")}


def history_bench(base: str, store: Any, symbols: int, span_ms: int, queries: int) -> list[tuple[str, list[float]]]:
    import httpx

    rng = random.Random(0)
    shapes = [
        ("6 h @ 1m (360 pts)", 6 * 3600_000, "1m"),
        ("24 h @ 5m (288 pts)", 24 * 3600_000, "5m"),
        (f"all {span_ms / 3600_000:.0f} h @ 1h", span_ms, "1h"),
    ]
    out = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for name, width, step in shapes:
            width = min(width, span_ms)
            lat = []
            for i in range(queries // len(shapes) + 5):
                start = T0 + rng.randrange(0, max(1, span_ms - width + 1), 60_000)
                params: dict[str, Any] = {
                    "symbol": f"SYM{rng.randrange(symbols)}",
                    "start": start,
                    "end": start + width,
                    "step": step,
                    "agg": rng.choice(["mean", "last", "max"]),
                }
                t = time.perf_counter()
                r = client.get("/api/sentiment/history", params=params)
                dt = (time.perf_counter() - t) * 1000
                if r.status_code != 200:
                    raise RuntimeError(f"history query failed: {r.status_code} {r.text}")
                if i >= 5:  # warm-up
                    lat.append(dt)
            out.append((name, lat))
    return out


# --- 2. live: POST -> SSE ------------------------------------------------------------------
async def _clients_main(
    base: str, symbols: int, clients: int, rate: int, seconds: float, batch: int, warmup: float
) -> dict:
    import httpx

    latencies: list[float] = []
    received = 0
    ready = 0
    all_ready = asyncio.Event()
    measure_from = float("inf")  # wall time: states of ticks posted during the warm-up are not measured

    async def reader(i: int, client: httpx.AsyncClient) -> None:
        nonlocal received, ready
        params = {"symbol": f"SYM{i % symbols}", "api_key": KEY}
        async with client.stream("GET", "/stream/sentiment", params=params) as r:
            first = True
            async for line in r.aiter_lines():
                if first:
                    first = False
                    ready += 1
                    if ready == clients:
                        all_ready.set()
                if line.startswith("data: "):
                    now = time.time()
                    data = json.loads(line[6:])
                    if data.get("kind") == "bar":
                        continue  # bar closes are event-time driven, not a reply to a POST
                    # stand-in: the poster's stamp; real flow: the server's receipt stamp of the
                    # newest tick in this state (its ingest_ts)
                    sent_at = data["t_post"] if data.get("t_post") else data["as_of"] / 1000
                    if sent_at >= measure_from:
                        latencies.append((now - sent_at) * 1000)
                        received += 1

    post_lat: list[float] = []
    sent = 0

    async def poster(client: httpx.AsyncClient) -> None:
        nonlocal sent, measure_from
        interval = batch / rate
        next_at = time.perf_counter()
        measuring = next_at + warmup
        measure_from = time.time() + warmup
        end = measuring + seconds
        seq = 0
        tasks = set()

        async def one(body: dict, measured: bool) -> None:
            t = time.perf_counter()
            r = await client.post("/api/sentiment/ticks", json=body, headers={"X-API-Key": KEY})
            if measured:
                post_lat.append((time.perf_counter() - t) * 1000)
            if r.status_code != 202:
                raise RuntimeError(f"POST failed: {r.status_code} {r.text}")

        while next_at < end:
            now_wall = time.time()
            ticks = []
            for _ in range(batch):
                ticks.append(
                    {
                        "symbol": f"SYM{seq % symbols}",
                        "ts": int(now_wall * 1000),
                        "score": 0.1,
                        "provider": "bench",
                        "meta": {"t_post": now_wall},
                    }
                )
                seq += 1
            measured = next_at >= measuring
            task = asyncio.create_task(one({"ticks": ticks}, measured))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += batch if measured else 0
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await asyncio.gather(*tasks)

    limits = httpx.Limits(max_connections=clients + 64, max_keepalive_connections=clients + 64)
    async with (
        httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(60.0), limits=limits) as sse_client,
        httpx.AsyncClient(  # stored acks keep ~rate × latency POSTs in flight
            base_url=base,
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(max_connections=1024, max_keepalive_connections=1024),
        ) as post_client,
    ):
        readers = [asyncio.create_task(reader(i, sse_client)) for i in range(clients)]
        await asyncio.wait_for(all_ready.wait(), 60)
        t = time.perf_counter()
        await poster(post_client)
        achieved = sent / (time.perf_counter() - t - warmup)
        await asyncio.sleep(1.0)  # let the last coalesced states arrive
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return {"latencies": latencies, "received": received, "sent": sent, "post_lat": post_lat, "achieved": achieved}


def live_bench(base: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--client",
        base,
        "--symbols",
        str(args.symbols),
        "--clients",
        str(args.clients),
        "--rate",
        str(args.rate),
        "--seconds",
        str(args.seconds),
        "--batch",
        str(args.batch),
        "--warmup",
        str(args.warmup),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.warmup + args.seconds + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"client process failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def stand_in_flow(bus: Any, ids: Any) -> Any:
    from tickcast.bus import Event

    def ingest(records: list[dict[str, Any]]) -> None:
        for rec in records:
            meta = rec.get("meta") or {}
            bus.publish(
                Event(
                    "sentiment",
                    ids.next(),
                    {
                        "kind": "tick",
                        "symbol": rec["symbol"],
                        "sent_ema_5m": rec["score"],
                        "t_post": meta.get("t_post"),
                    },
                    rec["symbol"],
                    rec["ts"],
                )
            )

    return ingest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=10_000_000)
    ap.add_argument("--symbols", type=int, default=200, help="one per SSE client by default")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rate", type=int, default=2000, help="ticks/s posted")
    ap.add_argument("--clients", type=int, default=200, help="SSE clients")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=10, help="ticks per POST")
    ap.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds posted at the rate before measuring (the first ticks load the Numba kernels "
        "and create every symbol's state)",
    )
    ap.add_argument("--stand-in", action="store_true", help="live part without the dataflow (API + bus + SSE only)")
    ap.add_argument(
        "--ack", choices=["both", "queued", "stored"], default="both", help="TICKCAST_INGEST_ACK of the live part"
    )
    ap.add_argument("--ack-rounds", type=int, default=2, help="live runs per ack mode (alternating)")
    ap.add_argument("--client", help=argparse.SUPPRESS)  # internal: run the client side against this base URL
    args = ap.parse_args(argv)
    if args.client:
        result = asyncio.run(
            _clients_main(args.client, args.symbols, args.clients, args.rate, args.seconds, args.batch, args.warmup)
        )
        print(json.dumps(result))
        return

    from tickcast.bus import IdClock, LocalBus
    from tickcast.store import Store

    workdir = Path(tempfile.mkdtemp(prefix="tickcast-bench-api-"))
    try:
        store = Store(f"chdb://{workdir}", database="bench")
        store.migrate()
        gen = generate(store, args.ticks, args.symbols)
        span_ms = (args.ticks // args.symbols) * 1000
        if args.stand_in:
            bus, ids = LocalBus(), IdClock()
            base, server, thread = _serve(store, stand_in_flow(bus, ids), bus, SENTIMENT_HISTORY_MAX_POINTS=100_000)
            hist = history_bench(base, store, args.symbols, span_ms, args.queries)
            lives = {"stand-in": [live_bench(base, args)]}
            server.should_exit = True
            thread.join(timeout=10)
        else:
            modes = ["queued", "stored"] if args.ack == "both" else [args.ack]
            base, server, thread, system = _serve_embedded(store, workdir, modes[0])
            hist = history_bench(base, store, args.symbols, span_ms, args.queries)
            server.should_exit = True
            thread.join(timeout=10)
            system.stop(timeout=10)
            lives = {mode: [] for mode in modes}
            for round_no in range(args.ack_rounds):
                for mode in modes:  # alternating: machine noise spreads over both modes
                    live_store = Store(f"chdb://{workdir}", database=f"live_{mode}_{round_no}")
                    live_store.migrate()
                    base, server, thread, system = _serve_embedded(live_store, workdir, mode)
                    lives[mode].append(live_bench(base, args))
                    server.should_exit = True
                    thread.join(timeout=10)
                    system.stop(timeout=10)

        rows = [
            ("setup", f"{args.ticks:,} ticks generated", f"{gen['ticks_s']:.1f} s", "", ""),
            ("setup", f"{gen['bars']:,} bars aggregated", f"{gen['bars_s']:.1f} s", "", ""),
        ]
        for name, lat in hist:
            rows.append(
                ("history GET", name, f"{len(lat)} queries", f"{_pct(lat, 50):.1f} ms", f"{_pct(lat, 99):.1f} ms")
            )
        medians: dict[str, tuple[float, float]] = {}
        for mode, runs in lives.items():
            post_lat = [x for live in runs for x in live["post_lat"]]
            lat = [x for live in runs for x in live["latencies"]]
            achieved = sum(live["achieved"] for live in runs) / len(runs)
            sent = sum(live["sent"] for live in runs)
            received = sum(live["received"] for live in runs)
            medians[mode] = (_pct(post_lat, 50), _pct(lat, 50))
            tag = f" (ack={mode})" if mode != "stand-in" else ""
            rows.append(
                (
                    f"tick POST{tag}",
                    f"{achieved:.0f} ticks/s in batches of {args.batch}",
                    f"{len(post_lat)} POSTs",
                    f"{_pct(post_lat, 50):.1f} ms",
                    f"{_pct(post_lat, 99):.1f} ms",
                )
            )
            per_client = args.clients * sent / args.symbols  # each client follows one symbol
            rows.append(
                (
                    f"POST → SSE{tag}",
                    f"{args.clients} clients, coalesced ≤ 10 Hz/symbol",
                    f"{received:,} delivered of {per_client:,.0f} posted-for-them",
                    f"{_pct(lat, 50):.1f} ms",
                    f"{_pct(lat, 99):.1f} ms",
                )
            )
        if "stored" in medians and "queued" in medians:
            (pq, sq), (ps, ss) = medians["queued"], medians["stored"]
            rows.append(
                ("ratio", "stored / queued (medians)", "", f"POST ×{ps / pq:.1f}", f"POST → SSE ×{ss / sq:.2f}")
            )
        how = "an in-process stand-in for the flow" if args.stand_in else "the real embedded dataflow"
        rounds = "" if args.stand_in else f"; live part: {args.ack_rounds} round(s) per ack mode, alternating"
        print(f"\nAPI bench ({os.cpu_count()} CPUs; {args.symbols} symbols; live part through {how}{rounds})\n")
        print("| part | case | volume | p50 | p99 |")
        print("|---|---|---|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
