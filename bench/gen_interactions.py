"""Generate customer × product interactions at scale (1M customers × 50k products × 20M pairs), seeded.

Shaped like a shop rather than uniform noise: product popularity is Zipf-like; products belong to themes of
100 and each customer has a home theme that most of their products come from (so item neighbours exist);
customers' numbers of distinct products are log-normal (heavy-tailed); a third of the products are
"consumables" that are often re-bought; the last purchase is exponentially distributed in the past.

    python bench/gen_interactions.py --customers 1000000 --products 50000 --interactions 20000000

Used by bench/bench_recommend.py (in memory; nothing is written unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from shopseg.recommend.base import Interactions  # noqa: E402
from shopseg.recommend.sql import from_codes  # noqa: E402

AS_OF = datetime(2024, 1, 1)
THEME = 100


def generate_interactions(
    customers: int = 1_000_000,
    products: int = 50_000,
    interactions: int = 20_000_000,
    *,
    seed: int = 0,
    home_share: float = 0.7,
    half_life_days: float = 60.0,
) -> Interactions:
    """About ``interactions`` distinct (customer, product) pairs (duplicates drawn are merged)."""
    rng = np.random.default_rng(seed)
    # distinct products per customer: log-normal, at least 1, scaled to the wanted total (with 35% extra for
    # the duplicates merged below; the surplus is dropped at random)
    raw = rng.lognormal(mean=0.0, sigma=1.0, size=customers)
    k = np.maximum(1, np.round(raw / raw.sum() * interactions * 1.35)).astype(np.int64)
    k = np.minimum(k, products // 2)
    total = int(k.sum())
    cust = np.repeat(np.arange(customers, dtype=np.int64), k)
    # global popularity: Zipf-like over a random order of the products
    rank_w = 1.0 / np.power(np.arange(products) + 10.0, 0.9)
    global_cdf = np.cumsum(rank_w / rank_w.sum())
    perm = rng.permutation(products)
    themes = max(1, products // THEME)
    home = rng.integers(0, themes, size=customers)
    in_theme_w = 1.0 / np.power(np.arange(THEME) + 2.0, 0.8)
    theme_cdf = np.cumsum(in_theme_w / in_theme_w.sum())
    from_home = rng.random(total) < home_share
    prod = np.empty(total, dtype=np.int64)
    n_home = int(from_home.sum())
    pos = np.minimum(np.searchsorted(theme_cdf, rng.random(n_home)), THEME - 1)
    prod[from_home] = np.minimum(home[cust[from_home]] * THEME + pos, products - 1)
    n_glob = total - n_home
    prod[~from_home] = perm[np.minimum(np.searchsorted(global_cdf, rng.random(n_glob)), products - 1)]
    key = np.unique(cust * products + prod)
    if len(key) > interactions:
        key = np.sort(key[rng.permutation(len(key))[:interactions]])
    u = key // products
    i = key % products
    n = len(key)
    consumable = rng.random(products) < 1 / 3
    rebuy_p = np.where(consumable[i], 0.55, 0.08)
    orders = 1 + np.where(rng.random(n) < rebuy_p, rng.geometric(0.5, size=n), 0)
    recency = np.minimum(rng.exponential(120.0, size=n), 730.0)
    quantity = orders * (1 + rng.poisson(1.5, size=n))
    weight = orders * np.power(0.5, recency / half_life_days)
    seen = np.unique(u)
    # customers without any pair (rare) are dropped; ids are zero-padded so that sorted strings keep the order
    remap = np.full(customers, -1, dtype=np.int64)
    remap[seen] = np.arange(len(seen))
    cust_ids = np.char.add("C", np.char.zfill(seen.astype(str), 7))
    prod_ids = np.char.add("P", np.char.zfill(np.arange(products).astype(str), 6))
    return from_codes(
        cust_ids,
        prod_ids,
        remap[u],
        i,
        orders.astype(np.float64),
        quantity.astype(np.float64),
        recency,
        weight,
        as_of=AS_OF,
        half_life_days=half_life_days,
        segments=(home[seen] % 8).astype(np.int64),
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--products", type=int, default=50_000)
    ap.add_argument("--interactions", type=int, default=20_000_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    x = generate_interactions(args.customers, args.products, args.interactions, seed=args.seed)
    per_customer = np.diff(x.orders.indptr)
    print(
        f"{x.n_customers:,} customers × {x.n_products:,} products, {x.orders.nnz:,} pairs "
        f"(median {np.median(per_customer):.0f}, max {per_customer.max():,} per customer; "
        f"{(x.orders.data >= 2).mean():.1%} re-bought) in {time.perf_counter() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
