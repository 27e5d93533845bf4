"""Latency and throughput of the scoring API on loopback: GET /customers/{id} and POST /score.

    python bench/bench_api.py [RUN_DIR] [--concurrency 100] [--requests 3000] [--score-requests 300]
                              [--workers 1] [--rates 100,200] [--score-rates 5,10]

Starts ``shopseg serve RUN_DIR`` in its own process (the bundled sample's run is built into bench/out/api-demo
when no RUN_DIR is given) and loads it from this process over keep-alive HTTP/1.1 connections driven by
asyncio (a minimal client, so the load generator takes little of the machine):

* **closed loop**: ``--concurrency`` requests in flight at all times until ``--requests`` are done; latency
  then includes the wait behind the other requests, and throughput is requests / wall time;
* **open loop** (``--rates``): requests started at a fixed rate for ``--seconds`` (at most ``--concurrency`` in
  flight), the latency a client sees at that load.

Lookups cycle through the run's customers; each score request sends one real customer's order lines (from the
run's raw input, 20 to 60 lines, under a new id). Prints one JSON line per scenario and a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {timeout} s")


def _payloads(run_dir: Path, n: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Customer ids to look up, and score bodies made of real customers' raw lines."""
    import duckdb

    con = duckdb.connect(str(run_dir / "shopseg.duckdb"), read_only=True)
    try:
        ids = [r[0] for r in con.execute("SELECT customer_id FROM segments ORDER BY customer_id").fetchall()]
        picked = con.execute(
            "SELECT customer_id FROM segments WHERE n_lines BETWEEN 20 AND 60 ORDER BY customer_id LIMIT ?", [n]
        ).fetchall()
        bodies = []
        for (cid,) in picked:
            frame = con.execute(
                "SELECT order_id, product_id, quantity, unit_price, strftime(ts, '%Y-%m-%d %H:%M:%S') AS ts "
                "FROM transactions WHERE customer_id = ?",
                [cid],
            ).df()
            bodies.append({"customer_id": f"new-{cid}", "orders": frame.to_dict(orient="records"), "n": 10})
    finally:
        con.close()
    return ids, bodies


def _stats(lat: list[float], wall: float, errors: int) -> dict[str, Any]:
    if not lat:
        raise SystemExit(f"every request failed ({errors} errors)")
    lat_ms = sorted(x * 1000 for x in lat)
    q = statistics.quantiles(lat_ms, n=100, method="inclusive") if len(lat_ms) > 1 else lat_ms * 99
    return {
        "requests": len(lat_ms),
        "errors": errors,
        "p50_ms": round(q[49], 2),
        "p90_ms": round(q[89], 2),
        "p99_ms": round(q[98], 2),
        "max_ms": round(lat_ms[-1], 2),
        "throughput_rps": round(len(lat_ms) / wall, 1),
    }


class _Conn:
    """One keep-alive HTTP/1.1 connection, spoken by hand: a load generator much lighter than an HTTP client
    library, so that on a small machine the server, not the client, is what is measured."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        fresh = self.writer is None
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(raw)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            # the server closes keep-alive connections idle for 5 s: reconnect once, as HTTP clients do
            partial = getattr(exc, "partial", b"")
            if fresh or partial:
                raise
            self.close()
            self.writer = None
            return await self.request(raw)
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length)
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _requests(kind: str, ids: list[str], bodies: list[dict[str, Any]], port: int) -> list[bytes]:
    host = f"127.0.0.1:{port}"
    if kind == "lookup":
        return [f"GET /customers/{i} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode() for i in ids]
    out = []
    for b in bodies:
        payload = json.dumps(b).encode()
        out.append(
            f"POST /score HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
    return out


async def _one(conn: _Conn, raw: bytes) -> float:
    t0 = time.perf_counter()
    status, body = await conn.request(raw)
    dt = time.perf_counter() - t0
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
    return dt


async def closed_loop(port: int, raws: list[bytes], total: int, conc: int) -> dict[str, Any]:
    lat: list[float] = []
    errors = 0
    counter = iter(range(total))
    conns = [_Conn("127.0.0.1", port) for _ in range(conc)]
    for i, c in enumerate(conns):  # open every connection and warm the server
        await _one(c, raws[i % len(raws)])

    async def worker(conn: _Conn) -> None:
        nonlocal errors
        for i in counter:
            try:
                lat.append(await _one(conn, raws[i % len(raws)]))
            except (RuntimeError, OSError, asyncio.IncompleteReadError) as exc:
                errors += 1
                if errors <= 3:
                    print(f"error: {exc!r}", file=sys.stderr)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    wall = time.perf_counter() - t0
    for c in conns:
        c.close()
    return {"mode": "closed", "concurrency": conc, **_stats(lat, wall, errors)}


async def open_loop(port: int, raws: list[bytes], rate: float, seconds: float, conc: int) -> dict[str, Any]:
    lat: list[float] = []
    errors = 0
    idle: asyncio.Queue[_Conn] = asyncio.Queue()
    for _ in range(conc):
        idle.put_nowait(_Conn("127.0.0.1", port))
    for i in range(min(conc, 10)):  # warm-up
        c = await idle.get()
        await _one(c, raws[i % len(raws)])
        idle.put_nowait(c)

    async def fire(i: int) -> None:
        nonlocal errors
        conn = await idle.get()  # at most `conc` requests in flight
        try:
            lat.append(await _one(conn, raws[i % len(raws)]))
        except (RuntimeError, OSError, asyncio.IncompleteReadError) as exc:
            errors += 1
            if errors <= 3:
                print(f"error: {exc!r}", file=sys.stderr)
            conn.close()
            conn = _Conn("127.0.0.1", port)
        idle.put_nowait(conn)

    n = int(rate * seconds)
    tasks = []
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(i)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    while not idle.empty():
        idle.get_nowait().close()
    return {"mode": "open", "rate_rps": rate, "max_in_flight": conc, **_stats(lat, wall, errors)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", nargs="?", type=Path, default=None)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--requests", type=int, default=3000, help="lookups in the closed-loop test")
    ap.add_argument("--score-requests", type=int, default=300, help="score calls in the closed-loop test")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes")
    ap.add_argument("--rates", default="100,200", help="open-loop lookup rates (requests/s), comma-separated")
    ap.add_argument("--score-rates", default="5,10", help="open-loop score rates (requests/s)")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each open-loop test")
    args = ap.parse_args(argv)

    run_dir = args.run_dir
    if run_dir is None:
        run_dir = ROOT / "bench" / "out" / "api-demo"
        if not (run_dir / "manifest.json").is_file():
            import shopseg

            print(f"building the sample run in {run_dir} …", file=sys.stderr)
            shopseg.run([shopseg.sample_path()], run_dir)
    ids, bodies = _payloads(run_dir, 50)
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shopseg.cli",
            "serve",
            str(run_dir),
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--no-access-log",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    results: list[dict[str, Any]] = []
    try:
        _wait(f"{base}/health", proc)
        common = {
            "customers": len(ids),
            "server_workers": args.workers,
            "score_lines": [len(b["orders"]) for b in bodies[:1]],
        }
        for kind, total in (("lookup", args.requests), ("score", args.score_requests)):
            raws = _requests(kind, ids, bodies, port)
            r = asyncio.run(closed_loop(port, raws, total, args.concurrency))
            results.append({"route": "GET /customers/{id}" if kind == "lookup" else "POST /score", **r, **common})
            print(json.dumps(results[-1]), flush=True)
        for kind, rates in (("lookup", args.rates), ("score", args.score_rates)):
            raws = _requests(kind, ids, bodies, port)
            for rate in [float(x) for x in rates.split(",") if x]:
                r = asyncio.run(open_loop(port, raws, rate, args.seconds, args.concurrency))
                results.append({"route": "GET /customers/{id}" if kind == "lookup" else "POST /score", **r, **common})
                print(json.dumps(results[-1]), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print()
    print("| route | load | requests | p50 ms | p99 ms | throughput req/s | errors |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        load = (
            f"{r['concurrency']} in flight (closed loop)"
            if r["mode"] == "closed"
            else f"{r['rate_rps']:g} req/s (open loop)"
        )
        print(
            f"| {r['route']} | {load} | {r['requests']:,} | {r['p50_ms']} | {r['p99_ms']} | {r['throughput_rps']} | "
            f"{r['errors']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
