"""Segmentation benchmarks of issue 4; each case runs in its own process, measured by bench/measure.py.

    python bench/bench_segment.py                  # every case below, appended to bench/results.jsonl
    python bench/bench_segment.py --case selection # one case in this process (prints one JSON line)

Cases (seeded Gaussian blobs: 8 groups of unequal size, unequal spread, in ``d`` float64 features):

* ``selection``: the model selection on 1,000,000 customers x 30 features — k = 2..10 with every index (elbow,
  silhouette on a 5,000-customer sample, Calinski-Harabasz, Davies-Bouldin, gap statistic with 10 reference
  sets) on the 20,000-customer selection sample — as part of a full ``KMeansSegmenter.fit`` (preprocessing,
  final K-Means with 10 inits on everyone, 20 bootstrap refits for stability); the phases are timed apart.
* ``sklearn_sweep``: the anchor, scikit-learn K-Means k = 4..10 with one init each on the same 1M x 30.
* ``ward``: exact Ward (``WardSegmenter``) on 20,000 customers x 30 features: one tree for every k, indices,
  gap statistic, stability; the tree alone timed too.
* ``ward_scipy``: scipy's ``linkage(x, "ward")`` on the same 20,000 x 30, for comparison (what scikit-learn's
  AgglomerativeClustering runs).

Threads: everything runs under shopseg's one-thread limit for OpenMP and BLAS (as in a run; see
``shopseg.segment.base.compute_limits``). Memory: measure.py gives the process's peak; the cases also report
the peak during the fit alone (Linux VmHWM, reset after the data is generated).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def blobs(n: int, d: int, seed: int = 0, groups: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-6, 6, size=(groups, d))
    shares = rng.dirichlet(np.full(groups, 3.0))
    spread = rng.uniform(0.5, 1.5, size=groups)
    x = np.empty((n, d))
    for s in range(0, n, 100_000):  # in chunks, so generating the data does not set the peak memory
        m = min(100_000, n - s)
        which = rng.choice(groups, size=m, p=shares)
        x[s : s + m] = centres[which] + rng.standard_normal((m, d)) * spread[which, None]
    frame = pd.DataFrame({f"f{i:02d}": x[:, i].copy() for i in range(d)})
    del x
    return frame


def reset_peak() -> None:
    """Reset the process's peak resident set (Linux: VmHWM) so that the fit's own peak is measured."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")


def peak_mib(field: str = "VmHWM") -> float | None:
    """Peak (VmHWM) or current (VmRSS) resident set of this process in MiB (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def case_selection(n: int, d: int) -> dict[str, Any]:
    from shopseg.segment import KMeansSegmenter

    frame = blobs(n, d)
    data_mib = peak_mib()
    reset_peak()
    start_mib = peak_mib("VmRSS")
    t0 = time.perf_counter()
    seg = KMeansSegmenter(list(frame.columns), seed=0).fit(frame)
    total = time.perf_counter() - t0
    sel = seg.selection_
    return {
        "n": n,
        "d": d,
        "fit_s": round(total, 2),
        "peak_mib_before_fit": data_mib,
        "rss_mib_at_fit_start": start_mib,
        "peak_mib_during_fit": peak_mib(),
        "phases_s": seg.timings_,
        "k": seg.k_,
        "indices": [c for c in sel.table.columns if c not in ("k", "points")],
        "reason": sel.reason,
        "stability": seg.stability_.summary() if seg.stability_ is not None else None,
    }


def case_sklearn_sweep(n: int, d: int) -> dict[str, Any]:
    from sklearn.cluster import KMeans

    from shopseg.segment.base import compute_limits

    x = blobs(n, d).to_numpy()
    reset_peak()
    t0 = time.perf_counter()
    with compute_limits():
        for k in range(4, 11):
            KMeans(n_clusters=k, n_init=1, random_state=0).fit(x)
    return {"n": n, "d": d, "sweep_s": round(time.perf_counter() - t0, 2), "peak_mib_during_fit": peak_mib()}


def case_ward(n: int, d: int) -> dict[str, Any]:
    from shopseg.segment import WardSegmenter, ward_tree
    from shopseg.segment.base import compute_limits

    frame = blobs(n, d)
    data_mib = peak_mib()
    reset_peak()
    start_mib = peak_mib("VmRSS")
    t0 = time.perf_counter()
    seg = WardSegmenter(list(frame.columns), seed=0).fit(frame)
    total = time.perf_counter() - t0
    fit_mib = peak_mib()
    x = seg.transform(frame)
    t1 = time.perf_counter()
    with compute_limits():
        ward_tree(x)
    return {
        "n": n,
        "d": d,
        "fit_s": round(total, 2),
        "phases_s": seg.timings_,
        "tree_only_s": round(time.perf_counter() - t1, 2),
        "peak_mib_before_fit": data_mib,
        "rss_mib_at_fit_start": start_mib,
        "peak_mib_during_fit": fit_mib,
        "ward": seg.fit_info_["ward"],
        "k": seg.k_,
    }


def case_ward_scipy(n: int, d: int) -> dict[str, Any]:
    from scipy.cluster.hierarchy import linkage

    x = blobs(n, d).to_numpy()
    reset_peak()
    t0 = time.perf_counter()
    linkage(x, method="ward")
    return {"n": n, "d": d, "linkage_s": round(time.perf_counter() - t0, 2), "peak_mib_during_fit": peak_mib()}


CASES = {
    "selection": (case_selection, 1_000_000, 30),
    "sklearn_sweep": (case_sklearn_sweep, 1_000_000, 30),
    "ward": (case_ward, 20_000, 30),
    "ward_scipy": (case_ward_scipy, 20_000, 30),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=sorted(CASES), help="run one case here and print its JSON line")
    ap.add_argument("--n", type=int, help="customers (default: the case's)")
    ap.add_argument("--d", type=int, help="features (default: the case's)")
    ap.add_argument("--only", nargs="*", choices=sorted(CASES), help="cases to run (default: all)")
    args = ap.parse_args()
    if args.case:
        func, n, d = CASES[args.case]
        print(json.dumps({"case": args.case, **func(args.n or n, args.d or d)}))
        return 0
    out = ROOT / "bench" / "results.jsonl"
    for name in args.only or list(CASES):
        cmd = [sys.executable, str(ROOT / "bench" / "bench_segment.py"), "--case", name]
        p = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "measure.py"), "--label", f"segment:{name}", "--", *cmd],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        result = json.loads(lines[-1]) if lines else {"label": name, "error": p.stderr[-2000:]}
        result["time"] = time.strftime("%Y-%m-%d %H:%M")
        with out.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(result) + "\n")
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
