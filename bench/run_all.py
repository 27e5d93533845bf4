"""Run the benchmarks of the foundation issue and append the figures to bench/results.jsonl.

    python bench/run_all.py                    # Online Retail + 10M + 50M generated rows
    python bench/run_all.py --sizes 10000000   # only the 10M file

For each data set: ``shopseg run`` end to end and the notebook-style pandas + scikit-learn reference
(bench/reference_pandas.py), each a separate process measured by bench/measure.py (wall, peak RSS), one after
the other on an otherwise idle machine. Generated files are written once to bench/data/ (ignored by git).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ONLINE_RETAIL = ROOT.parent / "shared" / "data" / "online_retail" / "online_retail.parquet"


def measure(label: str, cmd: list[str]) -> dict[str, object]:
    p = subprocess.run(
        [PY, str(ROOT / "bench" / "measure.py"), "--label", label, "--", *cmd],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    result: dict[str, object] = json.loads(lines[-1]) if lines else {"label": label, "error": p.stderr[-2000:]}
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000_000, 50_000_000])
    ap.add_argument("--skip-online-retail", action="store_true")
    ap.add_argument("--skip-reference", action="store_true")
    args = ap.parse_args()
    datasets: list[tuple[str, Path]] = []
    if not args.skip_online_retail and ONLINE_RETAIL.is_file():
        datasets.append(("online_retail", ONLINE_RETAIL))
    for n in args.sizes:
        path = ROOT / "bench" / "data" / f"gen_{n // 1_000_000}m.parquet"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([PY, str(ROOT / "bench" / "generate.py"), "--rows", str(n), "--out", str(path)], check=True)
        datasets.append((f"generated_{n // 1_000_000}m", path))
    out = ROOT / "bench" / "results.jsonl"
    shopseg = str(Path(PY).with_name("shopseg"))
    for name, path in datasets:
        runs = [("shopseg", [shopseg, "run", str(path), "--out", str(ROOT / "bench" / "out" / name), "-q"])]
        if not args.skip_reference:
            runs.append(("pandas_reference", [PY, str(ROOT / "bench" / "reference_pandas.py"), "--input", str(path)]))
        for tool, cmd in runs:
            r = measure(f"{name}/{tool}", cmd)
            r["date"] = time.strftime("%Y-%m-%d %H:%M")
            if tool == "shopseg":
                manifest = ROOT / "bench" / "out" / name / "manifest.json"
                if manifest.is_file():
                    m = json.loads(manifest.read_text())
                    r["steps"] = m["timings"]
                    r["rows"] = m["rows"]["input_rows"]
                    r["customers"] = m["rows"]["customers"]
            print(json.dumps(r), flush=True)
            with out.open("a") as fh:
                fh.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
