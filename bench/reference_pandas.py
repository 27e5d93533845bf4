"""Reference pipeline: notebook-style RFM + K-Means in pandas and scikit-learn.

This is what the classic Kaggle "Online Retail customer segmentation" notebooks do, kept deliberately close
to them (``groupby.agg`` with a lambda for recency, full pandas materialisation), so shopseg has a baseline
to compare against:

1. read: ``pd.read_parquet`` of the whole file;
2. clean: drop missing CustomerID, cancellations (InvoiceNo starting with "C"), non-positive Quantity and
   UnitPrice; ``TotalPrice = Quantity * UnitPrice``;
3. rfm features: ``groupby("CustomerID").agg({"InvoiceDate": lambda x: (snapshot - x.max()).days,
   "InvoiceNo": "nunique", "TotalPrice": "sum"})`` with snapshot = last date + 1 day; log1p; StandardScaler;
4. clustering: KMeans for k = 2..10 (n_init=10, random_state=0) with the silhouette score of each, then the
   final model with k = 4.

Wall seconds per stage and in total are printed as JSON on the last line.

Usage: python bench/reference_pandas.py --input PATH [--silhouette-sample N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="Online Retail layout Parquet file")
    parser.add_argument("--k-min", type=int, default=2)
    parser.add_argument("--k-max", type=int, default=10)
    parser.add_argument("--k", type=int, default=4, help="k of the final model")
    parser.add_argument(
        "--silhouette-sample",
        type=int,
        default=10_000,
        help="rows sampled for the silhouette score (it is quadratic); 0 = all customers as the notebooks do",
    )
    args = parser.parse_args(argv)

    t_start = time.perf_counter()
    stages: dict[str, float] = {}

    t = time.perf_counter()
    import numpy as np
    import pandas as pd
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    stages["import"] = time.perf_counter() - t

    t = time.perf_counter()
    df = pd.read_parquet(args.input)
    stages["read"] = time.perf_counter() - t
    n_rows = len(df)

    t = time.perf_counter()
    df = df.dropna(subset=["CustomerID"])
    df = df[~df["InvoiceNo"].astype(str).str.startswith("C")]
    df = df[(df["Quantity"] > 0) & (df["UnitPrice"] > 0)]
    df["TotalPrice"] = df["Quantity"] * df["UnitPrice"]
    stages["clean"] = time.perf_counter() - t
    n_clean = len(df)

    t = time.perf_counter()
    snapshot = df["InvoiceDate"].max() + pd.Timedelta(days=1)
    rfm = df.groupby("CustomerID").agg(
        {
            "InvoiceDate": lambda x: (snapshot - x.max()).days,  # type: ignore[misc]
            "InvoiceNo": "nunique",
            "TotalPrice": "sum",
        }
    )
    rfm.columns = ["Recency", "Frequency", "Monetary"]
    rfm = rfm[rfm["Monetary"] > 0]
    rfm_log = np.log1p(rfm)
    x = StandardScaler().fit_transform(rfm_log)
    stages["rfm_features"] = time.perf_counter() - t

    t = time.perf_counter()
    sample = args.silhouette_sample if 0 < args.silhouette_sample < len(x) else None
    scores: dict[int, dict[str, float]] = {}
    for k in range(args.k_min, args.k_max + 1):
        km = KMeans(n_clusters=k, n_init=10, random_state=0).fit(x)
        sil = silhouette_score(x, km.labels_, sample_size=sample, random_state=0)
        scores[k] = {"inertia": float(km.inertia_), "silhouette": float(sil)}
        print(f"k={k} inertia={km.inertia_:.1f} silhouette={sil:.4f}")
    final = KMeans(n_clusters=args.k, n_init=10, random_state=0).fit(x)
    rfm["Cluster"] = final.labels_
    profile = rfm.groupby("Cluster").agg(
        Recency=("Recency", "mean"),
        Frequency=("Frequency", "mean"),
        Monetary=("Monetary", "mean"),
        Customers=("Recency", "size"),
    )
    stages["clustering"] = time.perf_counter() - t
    print(profile.round(1).to_string())

    result: dict[str, Any] = {
        "input": str(args.input),
        "rows": n_rows,
        "rows_clean": n_clean,
        "customers": len(rfm),
        "k": args.k,
        "silhouette_sample": sample,
        "best_k_by_silhouette": max(scores, key=lambda k: scores[k]["silhouette"]),
        **{f"{name}_s": round(value, 3) for name, value in stages.items()},
        "total_s": round(time.perf_counter() - t_start, 3),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
