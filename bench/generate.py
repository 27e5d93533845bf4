"""Write a synthetic Online Retail-like Parquet file for benchmarks.

Usage: python bench/generate.py --rows 10000000 --out bench/data/gen_10m.parquet [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from shopseg.datasets import write_parquet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, required=True, help="number of order lines to write")
    parser.add_argument("--out", type=Path, required=True, help="output Parquet path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-rows", type=int, default=2_000_000, help="rows generated per chunk")
    parser.add_argument("--compression-level", type=int, default=None, help="zstd level (default: pyarrow's)")
    args = parser.parse_args(argv)
    if args.rows < 0:
        parser.error("--rows must be non-negative")

    t0 = time.perf_counter()
    path = write_parquet(
        args.out, args.rows, args.seed, chunk_rows=args.chunk_rows, compression_level=args.compression_level
    )
    seconds = time.perf_counter() - t0
    result = {
        "out": str(path),
        "rows": args.rows,
        "seed": args.seed,
        "seconds": round(seconds, 3),
        "rows_per_s": round(args.rows / seconds) if seconds > 0 else None,
        "bytes": path.stat().st_size,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
