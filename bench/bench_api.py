"""Latency and throughput of the scoring API on loopback: GET /customers/{id} and POST /score.

    python bench/bench_api.py [RUN_DIR] [--workers 1,2] [--seconds 10] [--concurrency 100] [--client auto]

Starts ``shopseg serve RUN_DIR --workers W`` in its own process (the bundled sample's run is built into
bench/out/api-demo when no RUN_DIR is given) and holds ``--concurrency`` requests in flight at all times (closed
loop, like ``wrk -c 100``) for ``--seconds`` per route: latency includes the wait behind the other requests,
throughput is requests / wall time. The load comes from ``wrk`` (C, one thread; with a Lua script that cycles
through the run's customers and through score bodies) when it is installed (``apt-get install wrk``), else from
a minimal asyncio HTTP/1.1 client in this process (``--client python``). Each score request sends one real
customer's order lines (from the run's database, 20 to 60 lines, under a new id).

Prints one JSON line per scenario, then one Markdown table (with the client's CPU time and the load average
before/after each scenario, since the client shares the machine with the server). ``--rates`` adds open-loop
runs (requests started at fixed rates) with the asyncio client.
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


def _payloads(run_dir: Path, n: int, recent: bool = False) -> tuple[list[str], list[dict[str, Any]]]:
    """Customer ids to look up, and score bodies made of real customers' raw lines; ``recent`` moves each
    customer's lines so that their last order falls 1-30 days after the run's as-of (new customers ordering
    now: each is scored as of the day after their own last order, so a pass mixes many dates)."""
    import duckdb
    import pandas as pd

    con = duckdb.connect(str(run_dir / "shopseg.duckdb"), read_only=True)
    try:
        ids = [r[0] for r in con.execute("SELECT customer_id FROM segments ORDER BY customer_id").fetchall()]
        picked = con.execute(
            "SELECT customer_id FROM segments WHERE n_lines BETWEEN 20 AND 60 ORDER BY customer_id LIMIT ?", [n]
        ).fetchall()
        as_of = pd.Timestamp(json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))["as_of"])
        bodies = []
        for (cid,) in picked:
            frame = con.execute(
                "SELECT order_id, product_id, quantity, unit_price, strftime(ts, '%Y-%m-%d %H:%M:%S') AS ts "
                "FROM transactions WHERE customer_id = ?",
                [cid],
            ).df()
            if recent:
                times = pd.to_datetime(frame["ts"])
                shift = as_of - times.max() + pd.Timedelta(days=1 + len(bodies) % 30)
                frame["ts"] = (times + shift).dt.strftime("%Y-%m-%d %H:%M:%S")
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


_LUA_COMMON = """
local i = 0
request = function()
  i = i + 1
  local r = reqs[(i % #reqs) + 1]
  return wrk.format(r[1], r[2], r[3], r[4])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def _lua_string(text: str) -> str:
    level = "=" * 4
    assert f"]{level}]" not in text
    return f"[{level}[{text}]{level}]"


def _wrk_script(kind: str, ids: list[str], bodies: list[dict[str, Any]]) -> str:
    """A wrk Lua script that cycles through the lookups or the score bodies."""
    lines = ["reqs = {"]
    if kind == "lookup":
        from urllib.parse import quote

        lines += [f'  {{"GET", {_lua_string("/customers/" + quote(str(i), safe=""))}, nil, nil}},' for i in ids]
    else:
        headers = '{["Content-Type"] = "application/json"}'
        lines += [f'  {{"POST", "/score", {headers}, {_lua_string(json.dumps(b))}}},' for b in bodies]
    lines.append("}")
    return "\n".join(lines) + _LUA_COMMON


def wrk_closed(
    port: int, kind: str, ids: list[str], bodies: list[dict[str, Any]], seconds: float, conc: int, tmp: Path
) -> dict[str, Any]:
    import resource

    script = tmp / f"{kind}.lua"
    script.write_text(_wrk_script(kind, ids, bodies), encoding="utf-8")
    cmd = ["wrk", "-t", "1", "-c", str(conc), "--timeout", "60s", "-s", str(script)]
    url = f"http://127.0.0.1:{port}/"
    subprocess.run([*cmd, "-d", "2s", url], check=True, capture_output=True)  # warm-up
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([*cmd, "-d", f"{seconds:g}s", url], check=True, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no summary:\n{out}")
    r = json.loads(line[8:])
    wall = r["duration_us"] / 1e6
    return {
        "mode": "closed",
        "concurrency": conc,
        "client": "wrk",
        "requests": r["requests"],
        "errors": r["errors"],
        "p50_ms": round(r["p50_us"] / 1000, 2),
        "p90_ms": round(r["p90_us"] / 1000, 2),
        "p99_ms": round(r["p99_us"] / 1000, 2),
        "max_ms": round(r["max_us"] / 1000, 2),
        "throughput_rps": round(r["requests"] / wall, 1),
        "client_cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
        "wall_s": round(wall, 2),
    }


def python_closed(port: int, raws: list[bytes], seconds: float, conc: int) -> dict[str, Any]:
    """The asyncio client, closed loop for about ``seconds`` (a first pass sizes the request count)."""
    probe = asyncio.run(closed_loop(port, raws, conc * 5, conc))
    total = max(conc * 5, int(probe["throughput_rps"] * seconds))
    cpu1 = time.process_time()
    r = asyncio.run(closed_loop(port, raws, total, conc))
    cpu2 = time.process_time()
    wall = r["requests"] / max(r["throughput_rps"], 1e-9)
    return {**r, "client": "python", "client_cpu_s": round(cpu2 - cpu1, 2), "wall_s": round(wall, 2)}


def _serve(run_dir: Path, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "shopseg.cli", "serve", str(run_dir), "--port", str(port)]
    cmd += ["--workers", str(workers), "--no-access-log"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return proc, port


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def main(argv: list[str] | None = None) -> int:
    import shutil
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", nargs="?", type=Path, default=None)
    ap.add_argument("--workers", default="1,2", help="server worker processes to try, comma-separated")
    ap.add_argument("--concurrency", type=int, default=100, help="requests in flight (closed loop)")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each scenario")
    ap.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    ap.add_argument("--routes", default="lookup,score", help="lookup, score or both")
    ap.add_argument("--rates", default="", help="open-loop lookup rates (req/s, asyncio client), e.g. 100,200")
    ap.add_argument("--score-rates", default="", help="open-loop score rates (req/s, asyncio client)")
    ap.add_argument(
        "--recent",
        action="store_true",
        help="score bodies whose last order is 1-30 days after the run's as-of (a pass then mixes many dates)",
    )
    args = ap.parse_args(argv)
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"

    run_dir = args.run_dir
    if run_dir is None:
        run_dir = ROOT / "bench" / "out" / "api-demo"
        if not (run_dir / "manifest.json").is_file():
            import shopseg

            print(f"building the sample run in {run_dir} …", file=sys.stderr)
            shopseg.run([shopseg.sample_path()], run_dir)
    ids, bodies = _payloads(run_dir, 50, recent=args.recent)
    routes = [r for r in args.routes.split(",") if r]
    results: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    try:
        for workers in [int(w) for w in args.workers.split(",") if w]:
            proc, port = _serve(run_dir, workers)
            try:
                _wait(f"http://127.0.0.1:{port}/health", proc)
                common = {"customers": len(ids), "server_workers": workers, "score_lines": len(bodies[0]["orders"])}
                for kind in routes:
                    route = "GET /customers/{id}" if kind == "lookup" else "POST /score"
                    load0 = _load()
                    if client == "wrk":
                        r = wrk_closed(port, kind, ids, bodies, args.seconds, args.concurrency, tmp)
                    else:
                        r = python_closed(port, _requests(kind, ids, bodies, port), args.seconds, args.concurrency)
                    results.append({"route": route, **r, **common, "load_avg": f"{load0} / {_load()}"})
                    print(json.dumps(results[-1]), flush=True)
                for kind, rates in (("lookup", args.rates), ("score", args.score_rates)):
                    raws = _requests(kind, ids, bodies, port)
                    route = "GET /customers/{id}" if kind == "lookup" else "POST /score"
                    for rate in [float(x) for x in rates.split(",") if x]:
                        load0 = _load()
                        cpu = time.process_time()
                        r = asyncio.run(open_loop(port, raws, rate, args.seconds, args.concurrency))
                        r["client"], r["client_cpu_s"] = "python", round(time.process_time() - cpu, 2)
                        r["wall_s"] = args.seconds
                        results.append({"route": route, **r, **common, "load_avg": f"{load0} / {_load()}"})
                        print(json.dumps(results[-1]), flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(
        "| route | load | workers | requests | p50 ms | p99 ms | throughput req/s | errors | client CPU | "
        "load avg before / after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        load = (
            f"{r['concurrency']} in flight (closed, {r['client']})"
            if r["mode"] == "closed"
            else f"{r['rate_rps']:g} req/s (open, python)"
        )
        cpu = f"{r['client_cpu_s']:.1f} s / {r['wall_s']:.0f} s"
        print(
            f"| {r['route']} | {load} | {r['server_workers']} | {r['requests']:,} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['throughput_rps']:,} | {r['errors']} | {cpu} | {r['load_avg']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
