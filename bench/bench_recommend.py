"""Recommendation benchmarks of issue 5.

    python bench/bench_recommend.py online-retail
        The issue's protocol on Online Retail after cleaning (last 30 days held out, users with purchases on
        both sides, k = 10, all items and new items) for every recommender, the re-buy policies of the blend on
        the month before (to choose the default without looking at the evaluated month), and fit +
        recommend-all timings on the whole file.

    python bench/measure.py -- python bench/bench_recommend.py generated --method blend
        Fit + recommend-all on generated interactions (default 1M customers × 50k products × 20M pairs,
        bench/gen_interactions.py); wall time per phase, and peak memory from bench/measure.py.

Each run prints a readable summary and, last, one JSON line (bench/measure.py keeps it as "child").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from shopseg.recommend import (  # noqa: E402
    ALS,
    BPR,
    Blend,
    Cooccurrence,
    Interactions,
    ItemKNN,
    OwnHistory,
    Popularity,
    Recommender,
    SegmentTop,
    Trending,
    evaluate,
    time_split,
)

ONLINE_RETAIL = ROOT.parent / "shared" / "data" / "online_retail" / "online_retail.parquet"
THREADS = os.cpu_count() or 1


def clean_lines(path: Path) -> pd.DataFrame:
    """Online Retail through shopseg's ingest and cleaning (missing ids, cancellations, non-positive
    quantity/price, non-product codes and duplicates removed)."""
    from shopseg.backends import DuckDBBackend
    from shopseg.clean import clean_transactions
    from shopseg.config import CleanConfig, InputConfig
    from shopseg.ingest import ingest_transactions

    with tempfile.TemporaryDirectory() as d:
        b = DuckDBBackend(Path(d) / "t.duckdb")
        try:
            ing = ingest_transactions(b, [str(path)], InputConfig(), work=Path(d) / "work")
            clean_transactions(b, ing, CleanConfig())
            return b.df("SELECT customer_id, order_id, product_id, quantity, unit_price, ts FROM transactions")
        finally:
            b.close()


def classic_segments(lines: pd.DataFrame, as_of: datetime, k: int = 4, seed: int = 0) -> pd.Series:
    """The notebooks' approach: K-Means (k = 4) on standardised log recency, frequency and amount."""
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    f = lines[lines["ts"] < as_of].assign(amount=lambda d: d["quantity"] * d["unit_price"])
    g = f.groupby("customer_id").agg(last=("ts", "max"), frequency=("order_id", "nunique"), amount=("amount", "sum"))
    rfa = np.column_stack(
        [
            np.log1p((as_of - g["last"]).dt.days.to_numpy()),
            np.log1p(g["frequency"].to_numpy()),
            np.log1p(np.maximum(g["amount"].to_numpy(), 0)),
        ]
    )
    labels = KMeans(k, n_init=10, random_state=seed).fit_predict(StandardScaler().fit_transform(rfa))
    return pd.Series(labels, index=g.index.astype(str))


def models(threads: int) -> dict[str, Recommender]:
    return {
        "popularity (by buyers)": Popularity(),
        "trending (14 days)": Trending(),
        "segment top by buyers (K-Means k=4 on log R/F/A)": SegmentTop(),
        "segment top by lift": SegmentTop("lift"),
        "own history (most orders)": OwnHistory(),
        "association rules (confidence)": Cooccurrence(num_threads=threads),
        "association rules (lift)": Cooccurrence(metric="lift", num_threads=threads),
        "item-kNN BM25": ItemKNN(num_threads=threads),
        "item-kNN cosine": ItemKNN(similarity="cosine", num_threads=threads),
        "ALS (64 factors)": ALS(num_threads=threads),
        "BPR (64 factors)": BPR(),
        "blend (default)": Blend(knn=ItemKNN(num_threads=threads)),
    }


def protocol(lines: pd.DataFrame, as_of: datetime) -> dict[str, Any]:
    cutoff = as_of - timedelta(days=30)
    seg = classic_segments(lines, cutoff)
    train, truth = time_split(lines, 30, as_of, segments=seg)
    fitted: dict[str, Recommender] = {}
    fit_s: dict[str, float] = {}
    for name, m in models(THREADS).items():
        t0 = time.perf_counter()
        fitted[name] = m.fit(train)
        fit_s[name] = round(time.perf_counter() - t0, 2)
    ev = evaluate(fitted, train, truth)
    out: dict[str, Any] = {"users": ev.users, "repurchase_share": ev.info["repurchase_share"], "fit_s": fit_s}
    for mode, t in ev.tables.items():
        out[mode] = t.to_dict(orient="records")
    # the re-buy default, chosen on the month before the evaluated one (never looking at the evaluated month)
    inner_train, inner_truth = time_split(lines[lines["ts"] < cutoff], 30, cutoff, segments=seg)
    variants = {
        f"blend, rebuy={r}": Blend(rebuy=r, knn=ItemKNN(num_threads=THREADS)) for r in ("always", "often", "never")
    }
    variants["own history, rebuy=often"] = OwnHistory(rebuy="often")
    # the classic approach and popularity under each policy (the table above uses their default, "often")
    for r in ("always", "never"):
        variants[f"segment top by buyers, rebuy={r}"] = SegmentTop(rebuy=r)
        variants[f"popularity, rebuy={r}"] = Popularity(rebuy=r)
    rows = {}
    for split, (tr, tt) in {
        "month before (choice)": (inner_train, inner_truth),
        "evaluated month": (train, truth),
    }.items():
        fitted_v = {k: v.fit(tr) for k, v in variants.items()}
        e = evaluate(fitted_v, tr, tt, ks=(10,), modes=("all",))
        rows[split] = e.tables["all"].set_index("method")["recall@10"].round(4).to_dict()
    out["rebuy"] = rows
    return out


def fit_recommend_all(lines: pd.DataFrame) -> dict[str, float]:
    x = Interactions.from_lines(lines)
    out = {}
    for name, m in {
        "blend": Blend(knn=ItemKNN(num_threads=THREADS)),
        "item_knn": ItemKNN(num_threads=THREADS),
        "popularity": Popularity(),
        "als": ALS(num_threads=THREADS),
    }.items():
        t0 = time.perf_counter()
        m.fit(x)
        ids, _ = m.recommend(x.customers, 10)
        out[name] = round(time.perf_counter() - t0, 2)
        assert ids.shape == (x.n_customers, 10)
    return out


def online_retail(args: argparse.Namespace) -> dict[str, Any]:
    path = Path(args.path)
    if not path.is_file():
        raise SystemExit(f"Online Retail not found at {path}")
    lines = clean_lines(path)
    as_of = (lines["ts"].max().normalize() + pd.Timedelta(days=1)).to_pydatetime()
    t0 = time.perf_counter()
    result = protocol(lines, as_of)
    result["protocol_s"] = round(time.perf_counter() - t0, 1)
    result["fit_recommend_all_s"] = fit_recommend_all(lines)
    result["customers"] = int(lines["customer_id"].nunique())
    cols = ["precision@10", "recall@10", "ndcg@10", "map@10", "hit_rate@10", "coverage@10", "novelty@10"]
    for mode in ("all", "new"):
        print(f"\n{mode} items: {result['users'][mode]:,} users")
        print("| method | " + " | ".join(cols) + " | fit s |")
        print("|---" * (len(cols) + 2) + "|")
        for row in result[mode]:
            vals = " | ".join(f"{row[c]:.4f}" if "novelty" not in c else f"{row[c]:.2f}" for c in cols)
            print(f"| {row['method']} | {vals} | {result['fit_s'][row['method']]} |")
    print(f"\nre-purchase share of the held-out pairs: {result['repurchase_share']:.1%}")
    print("re-buy policy, all-items recall@10:", json.dumps(result["rebuy"], indent=1))
    print(f"fit + recommend-all ({result['customers']:,} customers), seconds: {result['fit_recommend_all_s']}")
    return result


def generated(args: argparse.Namespace) -> dict[str, Any]:
    from gen_interactions import generate_interactions

    t0 = time.perf_counter()
    x = generate_interactions(args.customers, args.products, args.interactions, seed=args.seed)
    gen_s = time.perf_counter() - t0
    fit_x = x
    if args.fit_customers:
        rng = np.random.default_rng(args.seed)
        rows = np.sort(rng.choice(x.n_customers, size=min(args.fit_customers, x.n_customers), replace=False))
        fit_x = x.rows(rows)
    model: Recommender = {
        "blend": lambda: Blend(knn=ItemKNN(num_threads=THREADS)),
        "item_knn": lambda: ItemKNN(num_threads=THREADS),
        "popularity": lambda: Popularity(),
        "cooccurrence": lambda: Cooccurrence(num_threads=THREADS),
        "als": lambda: ALS(num_threads=THREADS),
    }[args.method]()
    t0 = time.perf_counter()
    model.fit(fit_x)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    users = x.customers if not args.users else x.customers[: args.users]
    codes, _, _ = model.recommend_codes(users, 10, history=x)
    rec_s = time.perf_counter() - t0
    filled = float((codes >= 0).sum(axis=1).mean())
    result = {
        "method": args.method,
        "customers": int(x.n_customers),
        "products": int(x.n_products),
        "pairs": int(x.orders.nnz),
        "fit_customers": int(fit_x.n_customers),
        "recommended_customers": len(users),
        "generate_s": round(gen_s, 1),
        "fit_s": round(fit_s, 1),
        "recommend_s": round(rec_s, 1),
        "fit_plus_recommend_s": round(fit_s + rec_s, 1),
        "mean_list_length": round(filled, 2),
        "peak_rss_mib_self": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": THREADS,
    }
    print(
        f"{args.method}: {x.n_customers:,} customers × {x.n_products:,} products, {x.orders.nnz:,} pairs; "
        f"fit on {fit_x.n_customers:,} in {fit_s:.1f} s, top-10 for {len(users):,} in {rec_s:.1f} s"
    )
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("online-retail")
    o.add_argument("--path", default=str(ONLINE_RETAIL))
    g = sub.add_parser("generated")
    g.add_argument("--method", default="blend", choices=["blend", "item_knn", "popularity", "cooccurrence", "als"])
    g.add_argument("--customers", type=int, default=1_000_000)
    g.add_argument("--products", type=int, default=50_000)
    g.add_argument("--interactions", type=int, default=20_000_000)
    g.add_argument("--fit-customers", type=int, default=0, help="fit on a seeded sample of this many (0 = all)")
    g.add_argument("--users", type=int, default=0, help="recommend for the first N customers only (0 = all)")
    g.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    result = online_retail(args) if args.cmd == "online-retail" else generated(args)
    print(json.dumps({"bench": "recommend", "cmd": args.cmd, "at": datetime.now().isoformat(), **result}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
