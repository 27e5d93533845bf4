"""DuckDB vs Spark local mode on the engine's share of a run: read → clean (rules, duplicates, reconciliation,
returns) → the 30 customer features, from the same SQL on both engines.

    python bench/bench_spark.py run --sizes 1000000 10000000 50000000   # every size, both engines
    python bench/bench_spark.py one --engine spark --input bench/data/gen_10m.parquet --work /tmp/w

``run`` measures each (size, engine) as its own process with bench/measure.py (wall time, peak RSS of the
Python process) and appends one JSON line per measurement to bench/results.jsonl. ``one`` is that process: it
prints the step timings, row counts and the peak resident memory of the Python process and, for Spark, of the
JVM it started (``VmHWM`` from /proc), as the last JSON line. Generated files (bench/generate.py, seed 0) are
written once to bench/data/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _hwm_mib(pid: int | str = "self") -> float | None:
    """Peak resident set of a process (VmHWM), MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        return None
    return None


def one(engine: str, path: Path, work: Path, master: str, driver_memory: str) -> dict[str, Any]:
    from shopseg.backends import open_engine
    from shopseg.backends.duckdb import DuckDBBackend
    from shopseg.clean import clean_transactions
    from shopseg.config import EngineConfig
    from shopseg.features import build_features
    from shopseg.ingest import ingest_transactions

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    database = DuckDBBackend(work / "shopseg.duckdb", memory_limit="4GB")
    cfg = EngineConfig(name=engine, spark_master=master, spark_driver_memory=driver_memory)  # type: ignore[arg-type]
    backend = open_engine(cfg, work, database)
    timings["start"] = time.perf_counter() - t0
    jvm_pid = None
    if engine == "spark":
        gateway = getattr(backend.spark.sparkContext, "_gateway", None)  # type: ignore[attr-defined]
        proc = getattr(gateway, "proc", None)
        jvm_pid = getattr(proc, "pid", None)
    t = time.perf_counter()
    ingest = ingest_transactions(backend, [path], work=work / ".work")
    timings["ingest"] = time.perf_counter() - t
    t = time.perf_counter()
    clean = clean_transactions(backend, ingest)
    timings["clean"] = time.perf_counter() - t
    t = time.perf_counter()
    features = build_features(backend, present_columns=set(ingest.mapping.source))
    timings["features"] = time.perf_counter() - t
    jvm_hwm = _hwm_mib(jvm_pid) if jvm_pid else None
    if backend is not database:
        backend.close()
    database.close()
    timings["total"] = time.perf_counter() - t0
    return {
        "engine": engine,
        "input": str(path),
        "rows": clean.input_rows,
        "clean_rows": clean.clean_rows,
        "customers": len(features.frame),
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "python_peak_mib": _hwm_mib(),
        "jvm_peak_mib": jvm_hwm,
    }


def _data(n: int) -> Path:
    name = f"gen_{n // 1_000_000}m.parquet" if n % 1_000_000 == 0 else f"gen_{n}.parquet"
    path = ROOT / "bench" / "data" / name
    if not path.is_file():
        subprocess.run([PY, str(ROOT / "bench" / "generate.py"), "--rows", str(n), "--out", str(path)], check=True)
    return path


def run(sizes: list[int], engines: list[str], master: str, driver_memory: str, work: Path) -> int:
    out = ROOT / "bench" / "results.jsonl"
    rows = []
    for n in sizes:
        path = _data(n)
        for engine in engines:
            label = f"engine_{engine}_{n // 1_000_000}m"
            cmd = [PY, str(Path(__file__).resolve()), "one", "--engine", engine, "--input", str(path)]
            cmd += ["--work", str(work / label), "--master", master, "--driver-memory", driver_memory]
            p = subprocess.run(
                [PY, str(ROOT / "bench" / "measure.py"), "--label", label, "--", *cmd],
                capture_output=True,
                text=True,
                check=False,
                cwd=ROOT,
            )
            lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
            result: dict[str, Any] = json.loads(lines[-1]) if lines else {"label": label, "error": p.stderr[-3000:]}
            result["date"] = time.strftime("%Y-%m-%d %H:%M")
            with out.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(result) + "\n")
            rows.append(result)
            child = result.get("child") or {}
            print(
                f"{label:<22} wall {result.get('wall_s')} s, python peak {result.get('peak_rss_mib')} MiB, "
                f"JVM peak {child.get('jvm_peak_mib')} MiB, steps {child.get('timings')}",
                flush=True,
            )
            shutil.rmtree(work / label, ignore_errors=True)
    return 0 if all("error" not in r and r.get("returncode") == 0 for r in rows) else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="measure every size on every engine")
    r.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    r.add_argument("--engines", nargs="+", default=["duckdb", "spark"], choices=["duckdb", "spark"])
    r.add_argument("--master", default="local[*]")
    r.add_argument("--driver-memory", default="4g")
    r.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "spark_bench")
    o = sub.add_parser("one", help="one engine on one file (the measured process)")
    o.add_argument("--engine", choices=["duckdb", "spark"], required=True)
    o.add_argument("--input", type=Path, required=True)
    o.add_argument("--work", type=Path, required=True)
    o.add_argument("--master", default="local[*]")
    o.add_argument("--driver-memory", default="4g")
    args = ap.parse_args(argv)
    if args.cmd == "one":
        print(json.dumps(one(args.engine, args.input, args.work, args.master, args.driver_memory)), flush=True)
        return 0
    return run(args.sizes, args.engines, args.master, args.driver_memory, args.work)


if __name__ == "__main__":
    raise SystemExit(main())
