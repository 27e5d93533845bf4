"""Events → features benchmark: generated clickstreams of 10M and 100M events.

    python bench/bench_events.py generate --events 10000000            # bench/data/events_10m/events.parquet
    python bench/bench_events.py features bench/data/events_10m/events.parquet   # one measured run (JSON line)
    python bench/bench_events.py run --events 10000000 [--delete]      # generate if missing, then measure

"events → features" is what a run does before segmentation: read the Parquet file into DuckDB and map the
columns (ingest), apply the cleaning rules with the exact reconciliation and the sessions (clean), and compute
every registered behavioural feature in SQL (features). It runs in a fresh process under ``bench/measure.py``,
which reports wall time and the peak resident memory; the step timings come from inside the process. The
DuckDB memory limit is the run's default (``[engine] memory_limit = 4GB``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
OUT = ROOT / "bench" / "out"


def _label(n: int) -> str:
    return f"{n // 1_000_000}m" if n >= 1_000_000 else f"{n // 1000}k"


def generate(n_events: int, out: Path | None = None, seed: int = 0) -> Path:
    from shopseg.datasets_events import write_event_shop

    out = out or DATA / f"events_{_label(n_events)}"
    t0 = time.perf_counter()
    files = write_event_shop(out, n_events=n_events, seed=seed, orders=False, customers=False)
    print(
        json.dumps(
            {
                "generated": str(files.events),
                "events": files.counts["events"],
                "customers": files.counts["customers"],
                "seconds": round(time.perf_counter() - t0, 1),
                "bytes": files.events.stat().st_size,
            }
        ),
        flush=True,
    )
    return files.events


def features(path: Path, work: Path) -> dict[str, object]:
    """ingest → clean → features on ``path`` in a fresh run database under ``work``; step timings."""
    t_start = time.perf_counter()
    from shopseg.backends import DuckDBBackend
    from shopseg.clean.events import clean_events
    from shopseg.config import RunConfig
    from shopseg.features.events import build_event_features
    from shopseg.ingest.events import ingest_events

    cfg = RunConfig()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    backend = DuckDBBackend(work / "shopseg.duckdb", memory_limit=cfg.engine.memory_limit, threads=cfg.engine.threads)
    timings: dict[str, float] = {"imports": round(time.perf_counter() - t_start, 2)}
    cpu: dict[str, float] = {"imports": round(_cpu(), 2)}
    t, c = time.perf_counter(), _cpu()
    ing = ingest_events(backend, [path], cfg.events, work=work / ".work")
    timings["ingest"], cpu["ingest"] = round(time.perf_counter() - t, 2), round(_cpu() - c, 2)
    t, c = time.perf_counter(), _cpu()
    cl = clean_events(backend, ing, cfg.events)
    timings["clean"], cpu["clean"] = round(time.perf_counter() - t, 2), round(_cpu() - c, 2)
    t, c = time.perf_counter(), _cpu()
    fs = build_event_features(backend, present_columns=set(ing.mapping.source))
    timings["features"], cpu["features"] = round(time.perf_counter() - t, 2), round(_cpu() - c, 2)
    backend.close()
    timings["total"], cpu["total"] = round(time.perf_counter() - t_start, 2), round(_cpu(), 2)
    shutil.rmtree(work, ignore_errors=True)
    return {
        "events": cl.input_rows,
        "clean": cl.clean_rows,
        "customers": len(fs.frame),
        "features": len(fs.numeric),
        "timings": timings,
        "cpu_seconds": cpu,
    }


def _cpu() -> float:
    """CPU seconds (user + system) this process has used: on a shared machine the part of the wall time that
    is the work itself."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(n_events: int, *, delete: bool) -> dict[str, object]:
    path = DATA / f"events_{_label(n_events)}" / "events.parquet"
    if not path.is_file():
        generate(n_events)
    cmd = [sys.executable, str(ROOT / "bench" / "measure.py"), "--label", f"events_{_label(n_events)}", "--"]
    cmd += [sys.executable, str(Path(__file__).resolve()), "features", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    with (ROOT / "bench" / "results.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(result) + "\n")
    if delete:
        shutil.rmtree(path.parent, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write generated events to Parquet")
    g.add_argument("--events", type=int, required=True)
    g.add_argument("--out", type=Path, default=None)
    g.add_argument("--seed", type=int, default=0)
    f = sub.add_parser("features", help="one events → features run (JSON line with step timings)")
    f.add_argument("path", type=Path)
    f.add_argument("--work", type=Path, default=None)
    r = sub.add_parser("run", help="generate if missing, then measure events → features")
    r.add_argument("--events", type=int, required=True)
    r.add_argument("--delete", action="store_true", help="delete the generated data afterwards")
    args = p.parse_args(argv)
    if args.cmd == "generate":
        generate(args.events, args.out, args.seed)
    elif args.cmd == "features":
        work = args.work or OUT / f"events_features_{args.path.parent.name}"
        print(json.dumps(features(args.path, work)), flush=True)
    else:
        run(args.events, delete=args.delete)
    return 0


if __name__ == "__main__":
    sys.exit(main())
